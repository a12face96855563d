/*
 * Device-model state (dm_state.c): what a stubdomain's teardown needs.
 */
#ifndef STUBDM_CONSOLE_DM_STATE_H
#define STUBDM_CONSOLE_DM_STATE_H

#include "core/base.h"

/* End a save/restore op with STUBDM_ECANCELED (teardown). */
void stubdm__dm_state_cancel(stubdm_op *op, const char *why);

#endif /* STUBDM_CONSOLE_DM_STATE_H */
