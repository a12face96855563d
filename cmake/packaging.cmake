# What libstubdm installs besides the library and its header: the
# pkg-config file, the CMake package (libstubdm::stubdm and
# libstubdm::stubdm_static), and man pages.  Included from the top-level
# CMakeLists.txt after lib/.
include(CMakePackageConfigHelpers)

# The pkg-config modules behind the PkgConfig::<PREFIX> targets the static
# library links, as PREFIX=module.  The .pc file's Requires.private and the
# CMake package config are both generated from this one list, and the check
# below keeps it in step with lib/CMakeLists.txt.
set(STUBDM_PKG_DEPS
  XENSTORE=xenstore
  XENVCHAN=xenvchan
  XENCTRL=xencontrol
  XENGUEST=xenguest
  XENFOREIGNMEMORY=xenforeignmemory
  XENGNTTAB=xengnttab
  XENEVTCHN=xenevtchn
  XENTOOLLOG=xentoollog
  YAJL=yajl)

set(STUBDM_PC_REQUIRES_PRIVATE "")
set(_stubdm_prefixes "")
foreach(dep IN LISTS STUBDM_PKG_DEPS)
  string(REPLACE "=" ";" _pair "${dep}")
  list(GET _pair 0 _prefix)
  list(GET _pair 1 _module)
  list(APPEND _stubdm_prefixes ${_prefix})
  string(APPEND STUBDM_PC_REQUIRES_PRIVATE " ${_module}")
endforeach()
string(STRIP "${STUBDM_PC_REQUIRES_PRIVATE}" STUBDM_PC_REQUIRES_PRIVATE)

get_target_property(_stubdm_links stubdm_static INTERFACE_LINK_LIBRARIES)
foreach(_lib IN LISTS _stubdm_links)
  if(_lib MATCHES "^PkgConfig::(.+)$")
    if(NOT CMAKE_MATCH_1 IN_LIST _stubdm_prefixes)
      message(FATAL_ERROR "stubdm_static links ${_lib}, which STUBDM_PKG_DEPS "
        "in cmake/packaging.cmake does not list: add PREFIX=module there so "
        "the .pc file and the CMake package carry it")
    endif()
  elseif(NOT _lib MATCHES "^\\$<")
    message(FATAL_ERROR "stubdm_static links ${_lib}; only PkgConfig:: "
      "targets can be exported (see cmake/packaging.cmake)")
  endif()
endforeach()

# Same spelling whether libstubdm is add_subdirectory()'d or installed.
if(NOT TARGET libstubdm::stubdm)
  add_library(libstubdm::stubdm ALIAS stubdm)
  add_library(libstubdm::stubdm_static ALIAS stubdm_static)
endif()

# pkg-config file.  GNUInstallDirs paths are relative to the prefix unless
# the user gave absolute ones.
set(STUBDM_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
foreach(_kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_kind}}")
    set(STUBDM_PC_${_kind} "${CMAKE_INSTALL_${_kind}}")
  elseif(_kind STREQUAL "LIBDIR")
    set(STUBDM_PC_${_kind} "\${exec_prefix}/${CMAKE_INSTALL_${_kind}}")
  else()
    set(STUBDM_PC_${_kind} "\${prefix}/${CMAKE_INSTALL_${_kind}}")
  endif()
endforeach()
configure_file(${PROJECT_SOURCE_DIR}/pkgconfig/libstubdm.pc.in
  ${PROJECT_BINARY_DIR}/pkgconfig/libstubdm.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/libstubdm.pc
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# CMake package.
set(STUBDM_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/libstubdm)
string(REPLACE ";" " " STUBDM_CONFIG_DEPS "${STUBDM_PKG_DEPS}")
install(EXPORT libstubdmTargets
  NAMESPACE libstubdm::
  FILE libstubdmTargets.cmake
  DESTINATION ${STUBDM_CMAKE_DIR})
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/libstubdmConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cmake/libstubdmConfig.cmake
  INSTALL_DESTINATION ${STUBDM_CMAKE_DIR})
# SOVERSION is the major version, so any x.y >= the requested one with the
# same major is compatible.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/cmake/libstubdmConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMajorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/cmake/libstubdmConfig.cmake
  ${PROJECT_BINARY_DIR}/cmake/libstubdmConfigVersion.cmake
  DESTINATION ${STUBDM_CMAKE_DIR})

# Man pages, docs/man/<name>.<section>, whichever exist.
foreach(_section 1 3 5 7 8)
  file(GLOB _stubdm_man CONFIGURE_DEPENDS
    ${PROJECT_SOURCE_DIR}/docs/man/*.${_section})
  if(_stubdm_man)
    install(FILES ${_stubdm_man}
      DESTINATION ${CMAKE_INSTALL_MANDIR}/man${_section})
  endif()
endforeach()
# Every function of the API has its name in section 3: a symlink to its
# area's page (docs/man/man3.links, made by docs/man/gen-man3.py), as
# Debian policy prefers to .so requests.
file(STRINGS ${PROJECT_SOURCE_DIR}/docs/man/man3.links _stubdm_man3_links
  REGEX "^stubdm_")
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/docs/man/man3.links)
set(_stubdm_link_code "")
foreach(_line IN LISTS _stubdm_man3_links)
  string(REPLACE " " ";" _pair "${_line}")
  list(GET _pair 0 _fn)
  list(GET _pair 1 _page)
  string(APPEND _stubdm_link_code " ${_fn}=${_page}")
endforeach()
install(CODE "
  set(dir \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_MANDIR}/man3\")
  if(IS_ABSOLUTE \"${CMAKE_INSTALL_MANDIR}\")
    set(dir \"\$ENV{DESTDIR}${CMAKE_INSTALL_MANDIR}/man3\")
  endif()
  foreach(pair ${_stubdm_link_code})
    string(REPLACE \"=\" \";\" pair \"\${pair}\")
    list(GET pair 0 fn)
    list(GET pair 1 page)
    file(REMOVE \"\${dir}/\${fn}.3\")
    file(CREATE_LINK \"\${page}.3\" \"\${dir}/\${fn}.3\" SYMBOLIC)
  endforeach()
  message(STATUS \"Installing: \${dir}/stubdm_*.3 (symlinks to the area pages)\")")
