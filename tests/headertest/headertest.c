/*
 * The public header must compile alone, first, in strict ISO C with every
 * warning an embedder might use: it may not rely on anything included
 * before it, on GNU extensions, or on the library's build flags.  Built by
 * ctest (tests/headertest/CMakeLists.txt) as C99 and C11 with -pedantic.
 */
#include <libstubdm.h>
#include <libstubdm.h> /* the include guard works */

/* The version macros are integer constant expressions. */
typedef char
    stubdm_headertest_version_is_constant[(STUBDM_VERSION_HEX >= 0) ? 1 : -1];

/* Public enums keep their documented values. */
typedef char stubdm_headertest_ok_is_zero[(STUBDM_OK == 0) ? 1 : -1];

int main(void)
{
    stubdm_loop_hooks hooks = {STUBDM_LOOP_HOOKS_VERSION, NULL, NULL};
    stubdm_err rc = STUBDM_OK;
    stubdm_log_level level = STUBDM_LOG_ERROR;
    stubdm_dm_argv_encoding encoding = STUBDM_DM_ARGV_DIRECTORY;

    (void)hooks;
    (void)level;
    (void)encoding;
    return (int)rc;
}
