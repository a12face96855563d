/*
 * The public header must be usable from C++ (a toolstack in C++, or C++
 * tests): extern "C" linkage, no C-only constructs, no warnings.
 */
#include <libstubdm.h>
#include <libstubdm.h>

static_assert(STUBDM_VERSION_HEX >= 0, "version is a constant expression");
static_assert(STUBDM_OK == 0, "STUBDM_OK is 0");

int main()
{
    stubdm_loop_hooks hooks = {STUBDM_LOOP_HOOKS_VERSION, nullptr, nullptr};
    stubdm_err rc = STUBDM_OK;
    /* Function pointers to the library have C linkage. */
    const char *(*version)(void) = &stubdm_version;

    (void)hooks;
    (void)version;
    return static_cast<int>(rc);
}
