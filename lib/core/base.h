/*
 * What every module of the library shares: the public header, attribute
 * macros, and the checks on a domid and a service mode.
 *
 * Nothing under lib/ is part of the ABI: every symbol is hidden (the build
 * uses -fvisibility=hidden and lib/libstubdm.map exports only stubdm_*).
 * Naming: public functions are stubdm_*, internal ones stubdm__* (two
 * underscores), file-local ones are static and unprefixed.
 */
#ifndef STUBDM_CORE_BASE_H
#define STUBDM_CORE_BASE_H

#include "core/base.h"
#include "libstubdm.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STUBDM_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* Failure and logging paths: the compiler moves their call sites out of
 * the hot code (fewer cache lines on the common paths). */
#define STUBDM_COLD __attribute__((cold))
#define STUBDM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define STUBDM_CONTAINER_OF(ptr, type, member)                                \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Room for the detailed message of a ctx or an op. */
#define STUBDM_ERRMSG_MAX 512

/* Domid validity: below DOMID_FIRST_RESERVED. */
#define STUBDM__DOMID_MAX 0x7FEFu
static inline bool stubdm__domid_ok(uint32_t d)
{
    return d <= STUBDM__DOMID_MAX;
}

/* An enum stubdm_service_mode value a caller may pass. */
static inline bool stubdm__service_mode_ok(int mode)
{
    return mode == STUBDM_SERVICE_NONE || mode == STUBDM_SERVICE_ADOPT ||
           mode == STUBDM_SERVICE_SERVE_ONLY;
}

#endif /* STUBDM_CORE_BASE_H */
