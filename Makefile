# Thin wrapper over CMake and the test stages; see docs/building.md.
#
#   make deps     install the Debian packages the build and tests need
#   make build    configure and build in build/
#   make test     deps + every test stage (.ci/test-all.sh); ends with
#                 "N passed, N failed"
#   make demo     deps + build + examples/demo.sh
#   make bench    build + run every bench/bench_* binary
#   make format   reformat every tracked .c/.h file (.clang-format, clang-format 14)
#   make install  install build/ (PREFIX=/usr/local, DESTDIR honoured)
#   make clean    remove the build directories

SHELL := /bin/bash
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
BUILD_DIR ?= build
PREFIX ?= /usr/local
CMAKE_ARGS ?=

# Everything needed to build, test, fuzz and run the demo on Debian 12
# (the OCaml packages: bindings/ocaml, docs/ocaml.md).
DEPS := build-essential cmake pkg-config libxen-dev xenstore-utils xen-utils-4.17 \
	libyajl-dev check libglib2.0-dev qemu-system-x86 valgrind clang libclang-rt-14-dev \
	binutils coreutils procps clang-format \
	ocaml-nox ocaml-dune ocaml-findlib libalcotest-ocaml-dev
# examples/libxl-4.17/build.sh (the nested Xen's section libxl): Xen 4.17's
# tools/libs.  Not libnl-3-dev (docs/libxl.md).
DEPS += acpica-tools bison flex uuid-dev libncurses-dev python3-dev zlib1g-dev curl xz-utils patch
# The release checks: Debian packages (.ci/package.sh: dpkg-buildpackage,
# lintian, the install test's debootstrap chroot), the ABI baseline
# (abidw/abidiff) and the man pages' lint (mandoc).
DEPS += dpkg-dev debhelper lintian abigail-tools mandoc debootstrap
DEPS += $(EXTRA_DEPS)

.PHONY: all deps build test demo bench format install clean test-xen

all: build

# Installs only what is missing; runs apt-get update only if the install
# fails without it (fresh machine, stale lists).
deps:
	@missing=""; \
	for p in $(DEPS); do \
	  dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all installed"; exit 0; fi; \
	sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
	echo "deps: installing$$missing"; \
	$$apt install -y -q --no-install-recommends $$missing < /dev/null || \
	  { $$apt update -q < /dev/null && \
	    $$apt install -y -q --no-install-recommends $$missing < /dev/null; }

build:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS)
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: deps
	JOBS=$(JOBS) CMAKE_ARGS="$(CMAKE_ARGS)" ./.ci/test-all.sh

demo: deps build
	@if [ -f examples/demo.sh ]; then \
	  bash examples/demo.sh; \
	else \
	  echo "demo: examples/demo.sh does not exist yet; built $(BUILD_DIR)/ only"; \
	fi

bench: build
	sh bench/run-all.sh $(BUILD_DIR)

# The check is CI's format stage (.ci/format.sh --check).
format:
	./.ci/format.sh

install: build
	cmake --install $(BUILD_DIR)

# Real Xen end to end: boots Xen 4.17 + a Debian dom0 under QEMU (TCG) and
# runs tests/xen/payload.sh there (docs/real-xen.md).  Root; cold ~4 min
# (debootstrap), warm a few minutes.  XT_TESTS / XT_TIMEOUT / XT_WORK tune it.
test-xen:
	sudo=; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	$$sudo env XT_BUILD="$(CURDIR)/$(BUILD_DIR)-xen" ./tests/xen/run.sh

clean:
	rm -rf $(BUILD_DIR) build-asan build-fuzz build-xen build-xen.log build-pkg build-pkg.log build-pkg-base.log
