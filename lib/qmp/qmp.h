/*
 * QMP connections (qmp.c): what the ctx's teardown and the device-model
 * save need of them.
 */
#ifndef STUBDM_QMP_QMP_H
#define STUBDM_QMP_QMP_H

#include "core/base.h"

/* Free every QMP connection and handle without callbacks (ctx teardown,
 * after stubdm__ops_dispose: ops may close their handles as they stop). */
void stubdm__qmp_dispose(stubdm_ctx *ctx);

/* The (stubdom, guest) a handle's connection is for. */
void stubdm__qmp_domids(const stubdm_qmp *q, uint32_t *stubdom,
                        uint32_t *guest);

#endif /* STUBDM_QMP_QMP_H */
