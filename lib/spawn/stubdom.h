/*
 * The stubdomain handle (spawn.c): what dm_state.c reads of it.
 */
#ifndef STUBDM_SPAWN_STUBDOM_H
#define STUBDM_SPAWN_STUBDOM_H

#include "core/base.h"

/* The save or restore op running on a stubdomain (NULL: none). */
stubdm_op **stubdm__stubdom_dm_op(stubdm_stubdom *s);
bool stubdm__stubdom_paused(const stubdm_stubdom *s);
stubdm_ctx *stubdm__stubdom_ctx(const stubdm_stubdom *s);

#endif /* STUBDM_SPAWN_STUBDOM_H */
