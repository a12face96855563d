/*
 * QMP connections (qmp.c): what the ctx's teardown needs of them.
 */
#ifndef STUBDM_QMP_QMP_H
#define STUBDM_QMP_QMP_H

#include "core/base.h"

/* Free every QMP connection and handle without callbacks (ctx teardown,
 * after stubdm__ops_dispose: ops may close their handles as they stop). */
void stubdm__qmp_dispose(stubdm_ctx *ctx);

#endif /* STUBDM_QMP_QMP_H */
