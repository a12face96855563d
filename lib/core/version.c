#include "core/base.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const char *stubdm_version(void)
{
    return STR(STUBDM_VERSION_MAJOR) "." STR(STUBDM_VERSION_MINOR) "." STR(
        STUBDM_VERSION_PATCH);
}

unsigned stubdm_version_hex(void)
{
    return STUBDM_VERSION_HEX;
}
