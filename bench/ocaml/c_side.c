/* The C side of bench_qmp_ocaml: the same round trips through the C API
 * directly (stubdm_qmp_execute_sync), and the clock both sides read. */
#define CAML_NAME_SPACE
#include <caml/alloc.h>
#include <caml/memory.h>
#include <caml/mlvalues.h>
#include <caml/threads.h>

#include <libstubdm.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

CAMLprim value bench_now_ns(value unit)
{
    (void)unit;
    return caml_copy_int64(now_ns());
}

/* n round trips of "query-status" from a ctx and QMP handle of their own
 * (opened first, not timed): the latency of each, in microseconds; an
 * empty array if the open or a command failed. */
CAMLprim value bench_c_round_trips(value stub, value guest, value count)
{
    CAMLparam3(stub, guest, count);
    CAMLlocal1(r);
    uint32_t s = (uint32_t)Long_val(stub), g = (uint32_t)Long_val(guest);
    int n = Int_val(count), ok = 0;
    double *lat = calloc((size_t)n + 1, sizeof(*lat));
    stubdm_ctx *ctx = NULL;
    stubdm_qmp *q = NULL;

    caml_release_runtime_system();
    if (lat && stubdm_ctx_new(&ctx) == 0 &&
        stubdm_qmp_open_sync(ctx, s, g, NULL, &q) == 0) {
        ok = 1;
        for (int i = 0; i < n && ok; i++) {
            int64_t t0 = now_ns();
            ok = stubdm_qmp_execute_sync(q, "query-status", NULL, 10000,
                                         NULL) == 0;
            lat[i] = (double)(now_ns() - t0) / 1000.0;
        }
    }
    stubdm_qmp_free(q);
    stubdm_ctx_free(ctx);
    caml_acquire_runtime_system();
    r = caml_alloc_float_array(ok ? (mlsize_t)n : 0);
    for (int i = 0; ok && i < n; i++)
        Store_double_flat_field(r, i, lat[i]);
    free(lat);
    CAMLreturn(r);
}
