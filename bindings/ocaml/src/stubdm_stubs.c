/* OCaml stubs over libstubdm's public API (include/libstubdm.h).
 *
 * Threads.  A stubdm_ctx belongs to one thread at a time (docs/embedding.md,
 * "Threads"); OCaml threads share it.  Every ctx has a mutex and one
 * "driver": the thread that runs stubdm_ctx_run_once, with the mutex
 * released and the OCaml runtime released.  Blocking calls start their
 * operation asynchronously (its completion written into a C record, never
 * into OCaml memory), then either drive the ctx or wait on its condition
 * variable while another thread drives it; a thread that needs the ctx
 * while another drives wakes it (stubdm_ctx_wake, thread-safe) and waits
 * for the dispatch to end.  So 4 OCaml threads each blocked in a QMP
 * command have their commands on the wire together, and the library's
 * callbacks only ever run inside run_once, on a thread that holds no OCaml
 * value: no C -> OCaml call from any thread.
 *
 * Cancellation.  Ctx.interrupt cancels every blocking call running on the
 * ctx, a Cancel.t the calls it was given; both set a flag under the mutex
 * and wake the driver, and the waiting call cancels its own operation
 * (stubdm_op_cancel) and waits for its ECANCELED completion.
 *
 * Lifetimes.  Every handle is a custom block holding a pointer to a malloc'd
 * wrapper (compaction moves custom blocks; the library and other threads
 * keep pointers only to the wrappers).  Handles hold a reference on their
 * ctx wrapper, so the stubdm_ctx is freed after its last handle.  A
 * handle's C object is freed once: by close (idempotent) or its finaliser;
 * a finaliser that runs while another thread drives the ctx queues the
 * object, and the driver frees it when its dispatch ends. */

#define CAML_NAME_SPACE
#include <caml/alloc.h>
#include <caml/callback.h>
#include <caml/custom.h>
#include <caml/fail.h>
#include <caml/memory.h>
#include <caml/mlvalues.h>
#include <caml/signals.h>
#include <caml/threads.h>

#include <errno.h>
#include <libstubdm.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- ctx wrapper ------------------------------------------------------- */

struct deferred {
    struct deferred *next;
    int kind; /* DEF_* */
    void *obj;
};

enum { DEF_QMP, DEF_STUBDOM };

struct octx {
    stubdm_ctx *ctx;
    pthread_mutex_t m;
    pthread_cond_t cv;
    int driving;           /* a thread is inside run_once */
    int want;              /* threads waiting to use the ctx */
    unsigned interrupt;    /* bumped by Ctx.interrupt */
    int refs;              /* the Ctx.t value, handles, cancel tokens */
    int closed;            /* Ctx.close was called */
    struct deferred *todo; /* freed by the next thread using the ctx */
};

struct oqmp {
    struct octx *c;
    stubdm_qmp *q;
};

struct ostub {
    struct octx *c;
    stubdm_stubdom *s;
};

struct ocancel {
    struct octx *c;
    int cancelled; /* under c->m */
};

/* The wrapper a custom block points to (the block's only field). */
#define Wrap_val(v, type) (*((type **)Data_custom_val(v)))

static void octx_free_now(struct octx *c)
{
    stubdm_ctx_free(c->ctx);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->m);
    free(c);
}

/* Free what finalisers queued; m held, nobody driving. */
static void run_deferred(struct octx *c)
{
    while (c->todo) {
        struct deferred *d = c->todo;
        c->todo = d->next;
        if (d->kind == DEF_QMP)
            stubdm_qmp_free(d->obj);
        else
            stubdm_stubdom_free(d->obj);
        c->refs--;
        free(d);
    }
}

/* m held; drops one reference, frees the ctx with its last.  Returns 1 if
 * freed (m is then gone). */
static int octx_unref_locked(struct octx *c)
{
    if (--c->refs > 0)
        return 0;
    pthread_mutex_unlock(&c->m);
    octx_free_now(c);
    return 1;
}

/* Wait, m held, until no thread drives the ctx: then the caller may call
 * into it.  Wakes the driver out of run_once. */
static void acquire_ctx(struct octx *c)
{
    c->want++;
    while (c->driving) {
        stubdm_ctx_wake(c->ctx);
        pthread_cond_wait(&c->cv, &c->m);
    }
    c->want--;
    run_deferred(c);
}

static void release_ctx(struct octx *c)
{
    pthread_cond_broadcast(&c->cv);
}

/* ---- errors ------------------------------------------------------------- */

static value code_of_rc(int rc)
{
    const char *name = stubdm_errname(rc);

    if (strncmp(name, "STUBDM_", 7) || !strcmp(name, "STUBDM_E?") ||
        !strcmp(name, "STUBDM_OK"))
        name = "STUBDM_EFAIL";
    return caml_hash_variant(name + 7);
}

/* Raise Stubdm.Error (code, msg); msg is C memory the caller frees after
 * (copied here). */
static void raise_rc(int rc, const char *msg)
{
    CAMLparam0();
    CAMLlocal2(m, arg);
    const value *exn = caml_named_value("stubdm.error");

    m = caml_copy_string(msg && *msg ? msg : stubdm_strerror(rc));
    arg = caml_alloc_tuple(2);
    Store_field(arg, 0, code_of_rc(rc));
    Store_field(arg, 1, m);
    if (!exn)
        caml_failwith(String_val(m));
    caml_raise_with_arg(*exn, arg);
    CAMLnoreturn;
}

/* A failure's message copied while the caller still owns the ctx. */
static char *dup_msg(const char *s)
{
    return strdup(s ? s : "");
}

/* Raise for rc != 0 with a malloc'd message, freed first. */
static void check_rc(int rc, char *msg)
{
    char buf[1024];

    if (rc == 0) {
        free(msg);
        return;
    }
    snprintf(buf, sizeof(buf), "%s", msg ? msg : "");
    free(msg);
    raise_rc(rc, buf);
}

CAMLprim value stubdm_ml_strerror(value code)
{
    CAMLparam1(code);
    CAMLreturn(caml_copy_string(stubdm_strerror(Int_val(code))));
}

CAMLprim value stubdm_ml_errname(value code)
{
    CAMLparam1(code);
    CAMLreturn(caml_copy_string(stubdm_errname(Int_val(code))));
}

CAMLprim value stubdm_ml_version(value unit)
{
    CAMLparam1(unit);
    CAMLreturn(caml_copy_string(stubdm_version()));
}

/* ---- custom blocks ------------------------------------------------------ */

static void ctx_finalize(value v);
static void qmp_finalize(value v);
static void stub_finalize(value v);
static void cancel_finalize(value v);

static struct custom_operations ctx_ops = {
    "org.libstubdm.ctx",        ctx_finalize,
    custom_compare_default,     custom_hash_default,
    custom_serialize_default,   custom_deserialize_default,
    custom_compare_ext_default, custom_fixed_length_default};
static struct custom_operations qmp_ops = {
    "org.libstubdm.qmp",        qmp_finalize,
    custom_compare_default,     custom_hash_default,
    custom_serialize_default,   custom_deserialize_default,
    custom_compare_ext_default, custom_fixed_length_default};
static struct custom_operations stub_ops = {
    "org.libstubdm.stubdom",    stub_finalize,
    custom_compare_default,     custom_hash_default,
    custom_serialize_default,   custom_deserialize_default,
    custom_compare_ext_default, custom_fixed_length_default};
static struct custom_operations cancel_ops = {
    "org.libstubdm.cancel",     cancel_finalize,
    custom_compare_default,     custom_hash_default,
    custom_serialize_default,   custom_deserialize_default,
    custom_compare_ext_default, custom_fixed_length_default};

static value wrap(struct custom_operations *ops, void *p)
{
    value v = caml_alloc_custom(ops, sizeof(void *), 0, 1);
    *((void **)Data_custom_val(v)) = p;
    return v;
}

/* Closing the ctx: no new calls; the stubdm_ctx goes with its last
 * handle.  m held; returns 1 if the wrapper was freed. */
static int ctx_drop_user_ref(struct octx *c)
{
    if (c->closed)
        return 0;
    c->closed = 1;
    acquire_ctx(c);
    release_ctx(c);
    return octx_unref_locked(c);
}

static void ctx_finalize(value v)
{
    struct octx *c = Wrap_val(v, struct octx);

    if (!c)
        return;
    Wrap_val(v, struct octx) = NULL;
    pthread_mutex_lock(&c->m);
    if (!c->closed) {
        if (!ctx_drop_user_ref(c))
            pthread_mutex_unlock(&c->m);
    } else if (!octx_unref_locked(c)) {
        pthread_mutex_unlock(&c->m);
    }
}

/* The handle's C object: freed now if nobody drives the ctx, else queued
 * for the thread that does.  Never waits (finalisers may run anywhere). */
static void release_handle(struct octx *c, int kind, void *obj)
{
    pthread_mutex_lock(&c->m);
    if (c->driving || c->want) {
        struct deferred *d = malloc(sizeof(*d));
        if (d) {
            d->kind = kind;
            d->obj = obj;
            d->next = c->todo;
            c->todo = d;
            pthread_mutex_unlock(&c->m);
            return;
        }
        acquire_ctx(c);
    }
    if (kind == DEF_QMP)
        stubdm_qmp_free(obj);
    else
        stubdm_stubdom_free(obj);
    release_ctx(c);
    if (!octx_unref_locked(c))
        pthread_mutex_unlock(&c->m);
}

static void qmp_finalize(value v)
{
    struct oqmp *o = Wrap_val(v, struct oqmp);

    if (!o)
        return;
    Wrap_val(v, struct oqmp) = NULL;
    if (o->q)
        release_handle(o->c, DEF_QMP, o->q);
    else {
        pthread_mutex_lock(&o->c->m);
        if (!octx_unref_locked(o->c))
            pthread_mutex_unlock(&o->c->m);
    }
    free(o);
}

static void stub_finalize(value v)
{
    struct ostub *o = Wrap_val(v, struct ostub);

    if (!o)
        return;
    Wrap_val(v, struct ostub) = NULL;
    if (o->s)
        release_handle(o->c, DEF_STUBDOM, o->s);
    else {
        pthread_mutex_lock(&o->c->m);
        if (!octx_unref_locked(o->c))
            pthread_mutex_unlock(&o->c->m);
    }
    free(o);
}

static void cancel_finalize(value v)
{
    struct ocancel *k = Wrap_val(v, struct ocancel);

    if (!k)
        return;
    Wrap_val(v, struct ocancel) = NULL;
    pthread_mutex_lock(&k->c->m);
    if (!octx_unref_locked(k->c))
        pthread_mutex_unlock(&k->c->m);
    free(k);
}

/* The ctx of a Ctx.t, locked and acquired; raises if closed.  The caller
 * releases with ctx_leave. */
static struct octx *ctx_enter(struct octx *c)
{
    if (!c)
        raise_rc(STUBDM_ESTATE, "Stubdm: the ctx is closed");
    pthread_mutex_lock(&c->m);
    if (c->closed) {
        pthread_mutex_unlock(&c->m);
        raise_rc(STUBDM_ESTATE, "Stubdm: the ctx is closed");
    }
    return c;
}

/* For a call that releases the runtime: a reference on the ctx of a
 * Ctx.t for the call's duration (Ctx.close may run meanwhile), taken with
 * the runtime held; raises if closed.  m is never held across
 * caml_release_runtime_system: releasing the runtime may run a signal
 * handler (the threads library's preemption: Thread.yield), and a thread
 * holding the runtime may be waiting for m. */
static struct octx *ctx_ref(struct octx *c)
{
    ctx_enter(c);
    c->refs++;
    pthread_mutex_unlock(&c->m);
    return c;
}

/* The runtime released: lock m and take the ctx (see acquire_ctx). */
static void blocking_lock(struct octx *c)
{
    caml_release_runtime_system();
    pthread_mutex_lock(&c->m);
    acquire_ctx(c);
}

/* m held: release the ctx, unlock m, take the runtime back. */
static void blocking_unlock(struct octx *c)
{
    release_ctx(c);
    pthread_mutex_unlock(&c->m);
    caml_acquire_runtime_system();
}

/* m held: release the ctx, drop ctx_ref's reference, unlock m, take the
 * runtime back. */
static void blocking_unref(struct octx *c)
{
    release_ctx(c);
    if (!octx_unref_locked(c))
        pthread_mutex_unlock(&c->m);
    caml_acquire_runtime_system();
}

/* ---- Ctx ---------------------------------------------------------------- */

CAMLprim value stubdm_ml_ctx_new(value host)
{
    CAMLparam1(host);
    CAMLlocal1(v);
    struct octx *c = calloc(1, sizeof(*c));
    int rc;

    if (!c)
        raise_rc(STUBDM_ENOMEM, NULL);
    rc = stubdm_ctx_new(&c->ctx);
    if (rc == 0)
        rc = stubdm_ctx_set_host(c->ctx, (stubdm_host)Int_val(host));
    if (rc) {
        stubdm_ctx_free(c->ctx);
        free(c);
        raise_rc(rc, "Stubdm.Ctx.create");
    }
    pthread_mutex_init(&c->m, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->refs = 1;
    v = wrap(&ctx_ops, c);
    CAMLreturn(v);
}

CAMLprim value stubdm_ml_ctx_close(value v)
{
    CAMLparam1(v);
    struct octx *c = Wrap_val(v, struct octx);

    if (c) {
        /* Cleared with the runtime held: a call that saw the pointer took
         * its own reference first (ctx_ref), and the finaliser will not
         * drop the user's reference again. */
        Wrap_val(v, struct octx) = NULL;
        /* Waiting for a driver to leave run_once: other threads' calls
         * must be able to finish meanwhile. */
        caml_release_runtime_system();
        pthread_mutex_lock(&c->m);
        if (!ctx_drop_user_ref(c))
            pthread_mutex_unlock(&c->m);
        caml_acquire_runtime_system();
    }
    CAMLreturn(Val_unit);
}

CAMLprim value stubdm_ml_ctx_host(value v)
{
    CAMLparam1(v);
    struct octx *c = ctx_ref(Wrap_val(v, struct octx));
    int host;

    /* Even a short call waits for the thread running the ctx's loop to
     * come out of a dispatch (which may run hotplug scripts): without the
     * runtime, so that other threads run meanwhile. */
    blocking_lock(c);
    host = (int)stubdm_ctx_host(c->ctx);
    blocking_unref(c);
    CAMLreturn(Val_int(host));
}

CAMLprim value stubdm_ml_ctx_set_hotplug(value v, value on)
{
    CAMLparam2(v, on);
    struct octx *c = ctx_ref(Wrap_val(v, struct octx));
    int run = Bool_val(on), rc;

    blocking_lock(c);
    rc = stubdm_ctx_set_hotplug(c->ctx, run);
    blocking_unref(c);
    check_rc(rc, NULL);
    CAMLreturn(Val_unit);
}

CAMLprim value stubdm_ml_ctx_interrupt(value v)
{
    CAMLparam1(v);
    struct octx *c = Wrap_val(v, struct octx);

    if (c) {
        pthread_mutex_lock(&c->m);
        c->interrupt++;
        if (c->driving)
            stubdm_ctx_wake(c->ctx);
        pthread_cond_broadcast(&c->cv);
        pthread_mutex_unlock(&c->m);
    }
    CAMLreturn(Val_unit);
}

CAMLprim value stubdm_ml_cancel_new(value v)
{
    CAMLparam1(v);
    CAMLlocal1(r);
    struct octx *c = ctx_enter(Wrap_val(v, struct octx));
    struct ocancel *k = calloc(1, sizeof(*k));

    if (!k) {
        pthread_mutex_unlock(&c->m);
        raise_rc(STUBDM_ENOMEM, NULL);
    }
    k->c = c;
    c->refs++;
    pthread_mutex_unlock(&c->m);
    r = wrap(&cancel_ops, k);
    CAMLreturn(r);
}

CAMLprim value stubdm_ml_cancel_cancel(value v)
{
    CAMLparam1(v);
    struct ocancel *k = Wrap_val(v, struct ocancel);

    pthread_mutex_lock(&k->c->m);
    k->cancelled = 1;
    if (k->c->driving)
        stubdm_ctx_wake(k->c->ctx);
    pthread_cond_broadcast(&k->c->cv);
    pthread_mutex_unlock(&k->c->m);
    CAMLreturn(Val_unit);
}

CAMLprim value stubdm_ml_cancel_is_cancelled(value v)
{
    CAMLparam1(v);
    struct ocancel *k = Wrap_val(v, struct ocancel);
    int r;

    pthread_mutex_lock(&k->c->m);
    r = k->cancelled;
    pthread_mutex_unlock(&k->c->m);
    CAMLreturn(Val_bool(r));
}

/* ---- the blocking loop -------------------------------------------------- */

/* One blocking call: its operation's completion, written by the library's
 * callback inside run_once (any thread), read under m. */
struct call {
    struct octx *c;
    stubdm_op *op;
    int done, rc;
    char *msg;              /* the op's message, copied at completion */
    unsigned interrupt;     /* c->interrupt when the call began */
    struct ocancel *cancel; /* or NULL */
    int cancelled;          /* stubdm_op_cancel was called */
    int64_t deadline;       /* for next_event; -1: none */
    /* The event queue of next_event instead of an op. */
    stubdm_qmp *events_of;
    stubdm_qmp_event *ev;
    /* A QMP reply, copied in the callback. */
    char *reply_json, *return_json, *error_class, *error_desc;
    uint64_t bytes;
};

static void call_done(stubdm_op *op, int rc, void *user)
{
    struct call *k = user;

    k->done = 1;
    k->rc = rc;
    k->msg = dup_msg(stubdm_op_errmsg(op));
    k->bytes = stubdm_dm_save_bytes(op);
}

static int call_wants_cancel(const struct call *k)
{
    return k->interrupt != k->c->interrupt ||
           (k->cancel && k->cancel->cancelled);
}

/* Ready to return?  m held, ctx acquired. */
static int call_check(struct call *k)
{
    if (k->events_of) {
        int rc = stubdm_qmp_event_next(k->events_of, &k->ev);
        if (rc != STUBDM_EAGAIN) {
            k->done = 1;
            k->rc = rc;
            if (rc)
                k->msg = dup_msg(stubdm_ctx_errmsg(k->c->ctx));
            return 1;
        }
        if (call_wants_cancel(k)) {
            k->done = 1;
            k->rc = STUBDM_ECANCELED;
            k->msg = dup_msg("next_event: cancelled");
            return 1;
        }
        if (k->deadline >= 0 && stubdm_now_ms() >= k->deadline) {
            k->done = 1;
            k->rc = STUBDM_EAGAIN; /* no event within the timeout */
            return 1;
        }
        return 0;
    }
    if (k->done)
        return 1;
    if (!k->cancelled && call_wants_cancel(k)) {
        k->cancelled = 1;
        stubdm_op_cancel(k->op);
    }
    return 0;
}

static void timespec_at(struct timespec *ts, int64_t deadline_ms)
{
    int64_t now = stubdm_now_ms(), rel = deadline_ms - now;

    clock_gettime(CLOCK_REALTIME, ts);
    if (rel < 0)
        rel = 0;
    ts->tv_sec += rel / 1000;
    ts->tv_nsec += (rel % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* Run the ctx until the call is done.  m held and the ctx acquired on
 * entry and on return; the OCaml runtime released by the caller. */
static void call_wait(struct call *k)
{
    struct octx *c = k->c;

    for (;;) {
        int wait_ms = -1;

        if (call_check(k))
            return;
        if (c->want > 0) {
            /* Another thread wants the ctx: let it in first. */
            pthread_cond_wait(&c->cv, &c->m);
        } else {
            if (k->deadline >= 0) {
                int64_t left = k->deadline - stubdm_now_ms();
                wait_ms = left < 0 ? 0 : left > 60000 ? 60000 : (int)left;
            }
            c->driving = 1;
            pthread_mutex_unlock(&c->m);
            (void)stubdm_ctx_run_once(c->ctx, wait_ms);
            pthread_mutex_lock(&c->m);
            c->driving = 0;
            pthread_cond_broadcast(&c->cv);
            run_deferred(c);
            continue;
        }
        /* Woken: wait for the driver to leave (it may complete us). */
        while (c->driving) {
            if (k->deadline >= 0 || call_wants_cancel(k)) {
                struct timespec ts;
                if (call_wants_cancel(k) || stubdm_now_ms() >= k->deadline) {
                    acquire_ctx(c);
                    break;
                }
                timespec_at(&ts, k->deadline);
                pthread_cond_timedwait(&c->cv, &c->m, &ts);
            } else {
                pthread_cond_wait(&c->cv, &c->m);
            }
        }
    }
}

static void call_init(struct call *k, struct octx *c, value cancel)
{
    memset(k, 0, sizeof(*k));
    k->c = c;
    k->interrupt = c->interrupt;
    k->deadline = -1;
    if (Is_block(cancel))
        k->cancel = Wrap_val(Field(cancel, 0), struct ocancel);
}

/* What is left of a call once it left the ctx (call_finish ran). */
static void call_free(struct call *k)
{
    free(k->msg);
    free(k->reply_json);
    free(k->return_json);
    free(k->error_class);
    free(k->error_desc);
}

/* The op and the event belong to the ctx's lists until freed: freed with
 * the ctx held (m held, acquired), before it is released. */
static void call_finish(struct call *k)
{
    stubdm_op_free(k->op);
    k->op = NULL;
    stubdm_qmp_event_free(k->ev);
    k->ev = NULL;
}

/* The end of a blocking call: m held, ctx acquired.  Leaves both. */
static void call_leave(struct call *k)
{
    call_finish(k);
    release_ctx(k->c);
    pthread_mutex_unlock(&k->c->m);
}

/* A start that failed at once: its message from the ctx. */
static int call_started(struct call *k, int rc)
{
    if (rc) {
        k->done = 1;
        k->rc = rc;
        k->msg = dup_msg(stubdm_ctx_errmsg(k->c->ctx));
    }
    return rc;
}

/* The call's result, raised after the runtime is back: rc 0 returns. */
static void call_raise(struct call *k)
{
    char buf[1024];
    int rc = k->rc;

    if (rc == 0)
        return;
    snprintf(buf, sizeof(buf), "%s", k->msg ? k->msg : "");
    call_free(k);
    raise_rc(rc, buf);
}

/* ---- strings in --------------------------------------------------------- */

/* A NULL-terminated C copy of an OCaml string list (count in *n). */
static char **strv_of_list(value l, size_t *n)
{
    size_t count = 0, i = 0;
    char **v;

    for (value x = l; Is_block(x); x = Field(x, 1))
        count++;
    v = calloc(count + 1, sizeof(*v));
    if (!v)
        caml_raise_out_of_memory();
    for (value x = l; Is_block(x); x = Field(x, 1)) {
        v[i] = strdup(String_val(Field(x, 0)));
        if (!v[i]) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            caml_raise_out_of_memory();
        }
        i++;
    }
    *n = count;
    return v;
}

static void strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

static char *opt_strdup(value o)
{
    return Is_block(o) ? strdup(String_val(Field(o, 0))) : NULL;
}

static value opt_string(const char *s)
{
    CAMLparam0();
    CAMLlocal2(r, str);
    if (!s)
        CAMLreturn(Val_none);
    str = caml_copy_string(s);
    r = caml_alloc_some(str);
    CAMLreturn(r);
}

/* ---- Wait --------------------------------------------------------------- */

CAMLprim value stubdm_ml_wait_running(value vc, value cancel, value stub,
                                      value guest, value timeout)
{
    CAMLparam5(vc, cancel, stub, guest, timeout);
    struct octx *c = ctx_ref(Wrap_val(vc, struct octx));
    uint32_t stubdom = (uint32_t)Long_val(stub), g = (uint32_t)Long_val(guest);
    int ms = Int_val(timeout);
    struct call k;

    call_init(&k, c, cancel);
    blocking_lock(c);
    if (!call_started(&k, stubdm_dm_wait_running(c->ctx, stubdom, g, ms,
                                                 call_done, &k, &k.op)))
        call_wait(&k);
    call_finish(&k);
    blocking_unref(c);
    call_raise(&k);
    call_free(&k);
    CAMLreturn(Val_unit);
}

/* ---- QMP ---------------------------------------------------------------- */

CAMLprim value stubdm_ml_qmp_open(value vc, value cancel, value stub,
                                  value guest, value timeout)
{
    CAMLparam5(vc, cancel, stub, guest, timeout);
    CAMLlocal1(r);
    struct octx *c = ctx_ref(Wrap_val(vc, struct octx));
    struct oqmp *o = calloc(1, sizeof(*o));
    uint32_t stubdom = (uint32_t)Long_val(stub), g = (uint32_t)Long_val(guest);
    int ms = Int_val(timeout);
    stubdm_qmp_opts *opts = NULL;
    struct call k;
    int rc;

    call_init(&k, c, cancel);
    blocking_lock(c);
    rc = o ? stubdm_qmp_opts_new(&opts) : STUBDM_ENOMEM;
    if (rc == 0 && ms > 0)
        rc = stubdm_qmp_opts_set_open_timeout(opts, ms);
    if (rc)
        call_started(&k, rc);
    else if (!call_started(&k, stubdm_qmp_open(c->ctx, stubdom, g, opts,
                                               call_done, &k, &o->q, &k.op)))
        call_wait(&k);
    stubdm_qmp_opts_free(opts);
    if (k.rc && o && o->q) {
        stubdm_qmp_free(o->q);
        o->q = NULL;
    }
    if (k.rc == 0) {
        o->c = c;
        c->refs++;
    }
    call_finish(&k);
    blocking_unref(c);
    if (k.rc)
        free(o);
    call_raise(&k);
    call_free(&k);
    r = wrap(&qmp_ops, o);
    CAMLreturn(r);
}

/* For a call that releases the runtime: the handle, not locked (see
 * ctx_ref); the call checks o->q again under m. */
static struct oqmp *qmp_check(value v)
{
    struct oqmp *o = Wrap_val(v, struct oqmp);

    if (!o)
        raise_rc(STUBDM_ESTATE, "Stubdm.Qmp: the handle is closed");
    return o;
}

/* A short call on an open handle: the runtime released, m held, the ctx
 * acquired (see stubdm_ml_ctx_host); raises if the handle is closed. */
static struct oqmp *qmp_enter(value v)
{
    struct oqmp *o = Wrap_val(v, struct oqmp);

    if (!o || !o->q)
        raise_rc(STUBDM_ESTATE, "Stubdm.Qmp: the handle is closed");
    blocking_lock(o->c);
    if (!o->q) {
        blocking_unlock(o->c);
        raise_rc(STUBDM_ESTATE, "Stubdm.Qmp: the handle is closed");
    }
    return o;
}

static void qmp_leave(struct oqmp *o)
{
    blocking_unlock(o->c);
}

CAMLprim value stubdm_ml_qmp_close(value v)
{
    CAMLparam1(v);
    struct oqmp *o = Wrap_val(v, struct oqmp);

    if (o && o->q) {
        blocking_lock(o->c);
        stubdm_qmp_free(o->q);
        o->q = NULL;
        blocking_unlock(o->c);
    }
    CAMLreturn(Val_unit);
}

static void reply_cb(stubdm_qmp *q, stubdm_op *op, int rc,
                     const stubdm_qmp_reply *reply, void *user)
{
    struct call *k = user;

    (void)q;
    if (reply) {
        k->reply_json = dup_msg(stubdm_qmp_reply_json(reply));
        if (stubdm_qmp_reply_return_json(reply))
            k->return_json = dup_msg(stubdm_qmp_reply_return_json(reply));
        if (stubdm_qmp_reply_error_class(reply))
            k->error_class = dup_msg(stubdm_qmp_reply_error_class(reply));
        if (stubdm_qmp_reply_error_desc(reply))
            k->error_desc = dup_msg(stubdm_qmp_reply_error_desc(reply));
    }
    call_done(op, rc, user);
}

/* Returns the reply record {json; return_json; error_class; error_desc};
 * raises for every code but 0 and EQMP. */
CAMLprim value stubdm_ml_qmp_execute(value vq, value cancel, value cmd,
                                     value args, value timeout)
{
    CAMLparam5(vq, cancel, cmd, args, timeout);
    CAMLlocal2(r, s);
    struct oqmp *o = qmp_check(vq);
    struct octx *c = o->c;
    char *command = strdup(String_val(cmd));
    char *args_json = opt_strdup(args);
    int nomem = !command || (Is_block(args) && !args_json);
    int ms = Int_val(timeout);
    struct call k;

    call_init(&k, c, cancel);
    blocking_lock(c);
    if (nomem)
        call_started(&k, STUBDM_ENOMEM);
    else if (!o->q)
        k.done = 1, k.rc = STUBDM_ESTATE,
        k.msg = dup_msg("Stubdm.Qmp: the handle is closed");
    else if (!call_started(&k, stubdm_qmp_execute(o->q, command, args_json, ms,
                                                  reply_cb, &k, &k.op)))
        call_wait(&k);
    call_leave(&k);
    caml_acquire_runtime_system();
    free(command);
    free(args_json);
    if (k.rc != 0 && k.rc != STUBDM_EQMP)
        call_raise(&k);
    r = caml_alloc_tuple(4);
    s = caml_copy_string(k.reply_json ? k.reply_json : "");
    Store_field(r, 0, s);
    s = opt_string(k.return_json);
    Store_field(r, 1, s);
    s = opt_string(k.error_class);
    Store_field(r, 2, s);
    s = opt_string(k.error_desc);
    Store_field(r, 3, s);
    call_free(&k);
    CAMLreturn(r);
}

CAMLprim value stubdm_ml_qmp_events_enable(value vq, value capacity,
                                           value drop_newest)
{
    CAMLparam3(vq, capacity, drop_newest);
    size_t cap = (size_t)Long_val(capacity);
    stubdm_qmp_events_overflow policy = Bool_val(drop_newest)
                                            ? STUBDM_QMP_EVENTS_DROP_NEWEST
                                            : STUBDM_QMP_EVENTS_DROP_OLDEST;
    struct oqmp *o = qmp_enter(vq);
    int rc;
    char *msg = NULL;

    rc = stubdm_qmp_events_enable(o->q, cap, policy);
    if (rc)
        msg = dup_msg(stubdm_ctx_errmsg(o->c->ctx));
    qmp_leave(o);
    check_rc(rc, msg);
    CAMLreturn(Val_unit);
}

/* Some (name, json, data_json, (sec, usec)) or None at the timeout (ms;
 * negative: none). */
CAMLprim value stubdm_ml_qmp_next_event(value vq, value cancel, value timeout)
{
    CAMLparam3(vq, cancel, timeout);
    CAMLlocal3(r, t, s);
    struct oqmp *o = qmp_check(vq);
    struct octx *c = o->c;
    struct call k;
    int64_t sec = -1, usec = -1;
    char *name = NULL, *json = NULL, *data = NULL;

    call_init(&k, c, cancel);
    if (Long_val(timeout) >= 0)
        k.deadline = stubdm_now_ms() + Long_val(timeout);
    blocking_lock(c);
    k.events_of = o->q;
    if (!o->q)
        k.done = 1, k.rc = STUBDM_ESTATE,
        k.msg = dup_msg("Stubdm.Qmp: the handle is closed");
    else
        call_wait(&k);
    if (k.rc == 0 && k.ev) {
        name = dup_msg(stubdm_qmp_event_name(k.ev));
        json = dup_msg(stubdm_qmp_event_json(k.ev));
        if (stubdm_qmp_event_data_json(k.ev))
            data = dup_msg(stubdm_qmp_event_data_json(k.ev));
        stubdm_qmp_event_timestamp(k.ev, &sec, &usec);
    }
    call_leave(&k);
    caml_acquire_runtime_system();
    if (k.rc == STUBDM_EAGAIN) {
        call_free(&k);
        CAMLreturn(Val_none);
    }
    call_raise(&k);
    t = caml_alloc_tuple(5);
    s = caml_copy_string(name ? name : "");
    Store_field(t, 0, s);
    s = caml_copy_string(json ? json : "");
    Store_field(t, 1, s);
    s = opt_string(data);
    Store_field(t, 2, s);
    s = caml_copy_int64(sec);
    Store_field(t, 3, s);
    s = caml_copy_int64(usec);
    Store_field(t, 4, s);
    free(name);
    free(json);
    free(data);
    call_free(&k);
    r = caml_alloc_some(t);
    CAMLreturn(r);
}

CAMLprim value stubdm_ml_qmp_greeting(value vq)
{
    CAMLparam1(vq);
    CAMLlocal1(r);
    struct oqmp *o = qmp_enter(vq);
    char *g;

    g = stubdm_qmp_greeting_json(o->q)
            ? dup_msg(stubdm_qmp_greeting_json(o->q))
            : NULL;
    qmp_leave(o);
    r = opt_string(g);
    free(g);
    CAMLreturn(r);
}

/* (commands_sent, replies, events, events_queued, events_dropped) */
CAMLprim value stubdm_ml_qmp_stats(value vq)
{
    CAMLparam1(vq);
    CAMLlocal2(r, s);
    struct oqmp *o = qmp_enter(vq);
    stubdm_qmp_stats st;
    uint64_t f[5];

    stubdm_qmp_get_stats(o->q, &st, sizeof(st));
    qmp_leave(o);
    f[0] = st.commands_sent;
    f[1] = st.replies;
    f[2] = st.events;
    f[3] = st.events_queued;
    f[4] = st.events_dropped;
    r = caml_alloc_tuple(5);
    for (int i = 0; i < 5; i++) {
        s = caml_copy_int64((int64_t)f[i]);
        Store_field(r, i, s);
    }
    CAMLreturn(r);
}

/* ---- Spawn, Stubdom ----------------------------------------------------- */

/* Fields of Stubdm.Spawn.config, in order. */
enum {
    SP_GUEST,
    SP_UUID,
    SP_NAME,
    SP_ARGS,
    SP_MEMORY_KIB,
    SP_VCPUS,
    SP_KERNEL,
    SP_RAMDISK,
    SP_CMDLINE,
    SP_DISKS,
    SP_CONSOLES,
    SP_CONSOLE_BACKEND,
    SP_RESTORE_FD,
    SP_TIMEOUT_MS,
    SP_QMP,
    SP_SIM_PROGRAM,
    SP_SIM_ARGS,
    SP_STUBDOM_DOMID
};

static const char *opt_cstr(value o)
{
    return Is_block(o) ? String_val(Field(o, 0)) : NULL;
}

/* The spawn options of a config, built with the runtime held (options are
 * plain memory: no ctx, no I/O).  Returns rc, message in *msg. */
static int spawn_opts_of(value cfg, stubdm_spawn_opts **out, char **msg)
{
    stubdm_spawn_opts *o = NULL;
    char **args = NULL, **sim = NULL;
    size_t nargs = 0, nsim = 0;
    int rc;

    *msg = NULL;
    rc = stubdm_spawn_opts_new(&o);
#define SP_STEP(what, call)                                                   \
    if (rc == 0 && (rc = (call)) != 0)                                        \
        *msg = dup_msg("Stubdm.Spawn: " what);
    SP_STEP("guest",
            stubdm_spawn_opts_set_guest(
                o, (uint32_t)Long_val(Field(cfg, SP_GUEST)),
                opt_cstr(Field(cfg, SP_UUID)), opt_cstr(Field(cfg, SP_NAME))));
    if (rc == 0)
        args = strv_of_list(Field(cfg, SP_ARGS), &nargs);
    SP_STEP("args",
            stubdm_spawn_opts_set_args(o, (const char *const *)args, nargs));
    if (Long_val(Field(cfg, SP_MEMORY_KIB)) > 0)
        SP_STEP("memory_kib",
                stubdm_spawn_opts_set_memory_kib(
                    o, (uint64_t)Long_val(Field(cfg, SP_MEMORY_KIB))));
    if (Long_val(Field(cfg, SP_VCPUS)) > 0)
        SP_STEP("vcpus",
                stubdm_spawn_opts_set_vcpus(o, (unsigned)Long_val(
                                                   Field(cfg, SP_VCPUS))));
    if (Is_block(Field(cfg, SP_KERNEL)))
        SP_STEP("kernel", stubdm_spawn_opts_set_kernel(
                              o, opt_cstr(Field(cfg, SP_KERNEL)),
                              opt_cstr(Field(cfg, SP_RAMDISK)),
                              opt_cstr(Field(cfg, SP_CMDLINE))));
    for (value l = Field(cfg, SP_DISKS); rc == 0 && Is_block(l);
         l = Field(l, 1)) {
        value d = Field(l, 0); /* (target, format option, readonly) */
        SP_STEP("disks", stubdm_spawn_opts_add_disk(o, String_val(Field(d, 0)),
                                                    opt_cstr(Field(d, 1)),
                                                    Bool_val(Field(d, 2))));
    }
    for (value l = Field(cfg, SP_CONSOLES); rc == 0 && Is_block(l);
         l = Field(l, 1)) {
        value d = Field(l, 0); /* (n, output) */
        SP_STEP("consoles", stubdm_spawn_opts_set_console_output(
                                o, (unsigned)Long_val(Field(d, 0)),
                                String_val(Field(d, 1))));
    }
    if (Long_val(Field(cfg, SP_CONSOLE_BACKEND)) >= 0)
        SP_STEP("console_backend",
                stubdm_spawn_opts_set_console_backend(
                    o, (stubdm_console_backend)Long_val(
                           Field(cfg, SP_CONSOLE_BACKEND))));
    if (Long_val(Field(cfg, SP_RESTORE_FD)) >= 0)
        SP_STEP("restore_fd",
                stubdm_spawn_opts_set_restore_fd(
                    o, (int)Long_val(Field(cfg, SP_RESTORE_FD))));
    if (Long_val(Field(cfg, SP_TIMEOUT_MS)) > 0)
        SP_STEP("timeout_ms",
                stubdm_spawn_opts_set_timeout(
                    o, (int)Long_val(Field(cfg, SP_TIMEOUT_MS))));
    SP_STEP("qmp",
            stubdm_spawn_opts_set_qmp(o, Bool_val(Field(cfg, SP_QMP)), 0));
    if (rc == 0)
        sim = strv_of_list(Field(cfg, SP_SIM_ARGS), &nsim);
    if (Is_block(Field(cfg, SP_SIM_PROGRAM)) || nsim)
        SP_STEP("sim_program", stubdm_spawn_opts_set_sim_program(
                                   o, opt_cstr(Field(cfg, SP_SIM_PROGRAM)),
                                   (const char *const *)sim, nsim));
    if (Long_val(Field(cfg, SP_STUBDOM_DOMID)) > 0)
        SP_STEP("stubdom_domid",
                stubdm_spawn_opts_set_stubdom_domid(
                    o, (uint32_t)Long_val(Field(cfg, SP_STUBDOM_DOMID))));
#undef SP_STEP
    strv_free(args);
    strv_free(sim);
    if (rc) {
        stubdm_spawn_opts_free(o);
        o = NULL;
    }
    *out = o;
    return rc;
}

CAMLprim value stubdm_ml_spawn(value vc, value cancel, value cfg)
{
    CAMLparam3(vc, cancel, cfg);
    CAMLlocal1(r);
    struct octx *c = Wrap_val(vc, struct octx);
    struct ostub *o;
    stubdm_spawn_opts *opts;
    char *msg;
    struct call k;
    int rc = spawn_opts_of(cfg, &opts, &msg);

    check_rc(rc, msg);
    if (!c)
        stubdm_spawn_opts_free(opts);
    c = ctx_ref(c);
    o = calloc(1, sizeof(*o));
    call_init(&k, c, cancel);
    blocking_lock(c);
    if (!o)
        call_started(&k, STUBDM_ENOMEM);
    else if (!call_started(&k, stubdm_spawn(c->ctx, opts, NULL, call_done, &k,
                                            &o->s, &k.op)))
        call_wait(&k);
    stubdm_spawn_opts_free(opts);
    if (k.rc && o && o->s) {
        /* A failed spawn has rolled back already; only the handle is left. */
        stubdm_stubdom_free(o->s);
        o->s = NULL;
    }
    if (k.rc == 0) {
        o->c = c;
        c->refs++;
    }
    call_finish(&k);
    blocking_unref(c);
    if (k.rc)
        free(o);
    call_raise(&k);
    call_free(&k);
    r = wrap(&stub_ops, o);
    CAMLreturn(r);
}

static struct ostub *stub_enter(value v)
{
    struct ostub *o = Wrap_val(v, struct ostub);

    if (!o || !o->s)
        raise_rc(STUBDM_ESTATE, "Stubdm.Stubdom: the handle is closed");
    blocking_lock(o->c);
    if (!o->s) {
        blocking_unlock(o->c);
        raise_rc(STUBDM_ESTATE, "Stubdm.Stubdom: the handle is closed");
    }
    return o;
}

static void stub_leave(struct ostub *o)
{
    blocking_unlock(o->c);
}

/* (domid, guest, step name) */
CAMLprim value stubdm_ml_stubdom_info(value v)
{
    CAMLparam1(v);
    CAMLlocal2(r, s);
    struct ostub *o = stub_enter(v);
    uint32_t domid = stubdm_stubdom_domid(o->s);
    uint32_t guest = stubdm_stubdom_guest(o->s);
    const char *step = stubdm_spawn_step_name(stubdm_stubdom_step(o->s));

    stub_leave(o);
    r = caml_alloc_tuple(3);
    Store_field(r, 0, Val_long(domid));
    Store_field(r, 1, Val_long(guest));
    s = caml_copy_string(step ? step : "");
    Store_field(r, 2, s);
    CAMLreturn(r);
}

CAMLprim value stubdm_ml_stubdom_close(value v)
{
    CAMLparam1(v);
    struct ostub *o = Wrap_val(v, struct ostub);

    if (o && o->s) {
        blocking_lock(o->c);
        stubdm_stubdom_free(o->s);
        o->s = NULL;
        stub_leave(o);
    }
    CAMLreturn(Val_unit);
}

CAMLprim value stubdm_ml_stubdom_destroy(value v, value cancel)
{
    CAMLparam2(v, cancel);
    struct ostub *o = Wrap_val(v, struct ostub);
    struct call k;

    if (!o || !o->s)
        raise_rc(STUBDM_ESTATE, "Stubdm.Stubdom: the handle is closed");
    call_init(&k, o->c, cancel);
    blocking_lock(o->c);
    if (!o->s)
        k.done = 1, k.rc = STUBDM_ESTATE,
        k.msg = dup_msg("Stubdm.Stubdom: the handle is closed");
    else if (!call_started(&k,
                           stubdm_stubdom_destroy(o->s, call_done, &k, &k.op)))
        call_wait(&k);
    call_leave(&k);
    caml_acquire_runtime_system();
    call_raise(&k);
    call_free(&k);
    CAMLreturn(Val_unit);
}

CAMLprim value stubdm_ml_destroy_by_domid(value vc, value cancel, value domid,
                                          value force)
{
    CAMLparam4(vc, cancel, domid, force);
    struct octx *c = ctx_ref(Wrap_val(vc, struct octx));
    uint32_t d = (uint32_t)Long_val(domid);
    unsigned flags = Bool_val(force) ? STUBDM_STUBDOM_DESTROY_FORCE : 0;
    struct call k;

    call_init(&k, c, cancel);
    blocking_lock(c);
    if (!call_started(&k,
                      stubdm_stubdom_destroy_by_domid(c->ctx, d, flags,
                                                      call_done, &k, &k.op)))
        call_wait(&k);
    call_finish(&k);
    blocking_unref(c);
    call_raise(&k);
    call_free(&k);
    CAMLreturn(Val_unit);
}

CAMLprim value stubdm_ml_stubdom_pause(value v, value pause)
{
    CAMLparam2(v, pause);
    int p = Bool_val(pause);
    struct ostub *o = stub_enter(v);
    int rc = p ? stubdm_stubdom_pause(o->s) : stubdm_stubdom_unpause(o->s);
    char *msg = rc ? dup_msg(stubdm_ctx_errmsg(o->c->ctx)) : NULL;

    stub_leave(o);
    check_rc(rc, msg);
    CAMLreturn(Val_unit);
}

/* ---- Dm_state (save through console 1) ------------------------------- */

CAMLprim value stubdm_ml_stubdom_save(value v, value cancel, value fd,
                                      value timeout)
{
    CAMLparam4(v, cancel, fd, timeout);
    struct ostub *o = Wrap_val(v, struct ostub);
    int out = Int_val(fd), ms = Int_val(timeout);
    struct call k;

    if (!o || !o->s)
        raise_rc(STUBDM_ESTATE, "Stubdm.Stubdom: the handle is closed");
    call_init(&k, o->c, cancel);
    blocking_lock(o->c);
    if (!o->s)
        k.done = 1, k.rc = STUBDM_ESTATE,
        k.msg = dup_msg("Stubdm.Stubdom: the handle is closed");
    else if (!call_started(&k, stubdm_stubdom_save(o->s, out, ms, call_done,
                                                   &k, &k.op)))
        call_wait(&k);
    call_leave(&k);
    caml_acquire_runtime_system();
    call_raise(&k);
    call_free(&k);
    CAMLreturn(caml_copy_int64((int64_t)k.bytes));
}

CAMLprim value stubdm_ml_dm_save(value vc, value cancel, value stub,
                                 value guest, value fd, value timeout)
{
    CAMLparam5(vc, cancel, stub, guest, fd);
    CAMLxparam1(timeout);
    struct octx *c = ctx_ref(Wrap_val(vc, struct octx));
    uint32_t stubdom = (uint32_t)Long_val(stub), g = (uint32_t)Long_val(guest);
    int out = Int_val(fd), ms = Int_val(timeout);
    struct call k;

    call_init(&k, c, cancel);
    blocking_lock(c);
    if (!call_started(&k, stubdm_dm_save(c->ctx, stubdom, g, out, ms,
                                         call_done, &k, &k.op)))
        call_wait(&k);
    call_finish(&k);
    blocking_unref(c);
    call_raise(&k);
    call_free(&k);
    CAMLreturn(caml_copy_int64((int64_t)k.bytes));
}

CAMLprim value stubdm_ml_dm_save_byte(value *argv, int argn)
{
    (void)argn;
    return stubdm_ml_dm_save(argv[0], argv[1], argv[2], argv[3], argv[4],
                             argv[5]);
}

/* ---- Console ------------------------------------------------------------ */

/* Some (state, result, bytes_out, bytes_in, bytes_dropped, tty option) of
 * the spawn's console n, or None when the spawn serves no console n. */
CAMLprim value stubdm_ml_console_info(value v, value n)
{
    CAMLparam2(v, n);
    CAMLlocal3(r, t, s);
    unsigned num = (unsigned)Long_val(n);
    struct ostub *o = stub_enter(v);
    stubdm_console *con = stubdm_stubdom_console(o->s, num);
    stubdm_console_stats st;
    int state = 0, result = 0;
    char *tty = NULL;

    memset(&st, 0, sizeof(st));
    if (con) {
        state = stubdm_console_state(con);
        result = stubdm_console_result(con);
        stubdm_console_get_stats(con, &st, sizeof(st));
        if (stubdm_console_tty(con))
            tty = dup_msg(stubdm_console_tty(con));
    }
    stub_leave(o);
    if (!con)
        CAMLreturn(Val_none);
    t = caml_alloc_tuple(6);
    Store_field(t, 0, Val_int(state));
    Store_field(t, 1, Val_int(result));
    s = caml_copy_int64((int64_t)st.bytes_out);
    Store_field(t, 2, s);
    s = caml_copy_int64((int64_t)st.bytes_in);
    Store_field(t, 3, s);
    s = caml_copy_int64((int64_t)st.bytes_dropped);
    Store_field(t, 4, s);
    s = opt_string(tty);
    Store_field(t, 5, s);
    free(tty);
    r = caml_alloc_some(t);
    CAMLreturn(r);
}

/* ---- nodes -------------------------------------------------------------- */

/* A list of (path, value, perms option), in the list's order. */
static value nodes_to_list(stubdm_nodes *nodes)
{
    CAMLparam0();
    CAMLlocal4(l, cell, t, s);
    size_t n = stubdm_nodes_count(nodes);

    l = Val_emptylist;
    for (size_t i = n; i-- > 0;) {
        size_t len = 0;
        const char *val = stubdm_nodes_value(nodes, i, &len);
        t = caml_alloc_tuple(3);
        s = caml_copy_string(stubdm_nodes_path(nodes, i));
        Store_field(t, 0, s);
        s = caml_alloc_initialized_string(len, val);
        Store_field(t, 1, s);
        s = opt_string(stubdm_nodes_perms(nodes, i));
        Store_field(t, 2, s);
        cell = caml_alloc(2, 0);
        Store_field(cell, 0, t);
        Store_field(cell, 1, l);
        l = cell;
    }
    CAMLreturn(l);
}

/* ---- Dm_argv ------------------------------------------------------------ */

/* op 0: encode (returns nodes), 1: write (returns []). */
CAMLprim value stubdm_ml_dm_argv(value vc, value op, value vm, value stub,
                                 value enc, value maxlen, value args)
{
    CAMLparam5(vc, op, vm, stub, enc);
    CAMLxparam2(maxlen, args);
    CAMLlocal1(r);
    size_t nargs = 0;
    char **argv = strv_of_list(args, &nargs);
    struct octx *c;
    char *vm_path = strdup(String_val(vm));
    uint32_t stubdom = (uint32_t)Long_val(stub);
    stubdm_dm_argv_encoding e = Int_val(enc);
    size_t max = (size_t)Long_val(maxlen);
    int encode = Int_val(op) == 0;
    stubdm_nodes *nodes = NULL;
    char *msg = NULL;
    int rc;

    if (!Wrap_val(vc, struct octx)) {
        free(vm_path);
        strv_free(argv);
    }
    c = ctx_ref(Wrap_val(vc, struct octx));
    blocking_lock(c);
    if (!vm_path)
        rc = STUBDM_ENOMEM;
    else if (encode)
        rc = stubdm_dm_argv_encode(c->ctx, vm_path, stubdom, e, max,
                                   (const char *const *)argv, nargs, &nodes);
    else
        rc = stubdm_dm_argv_write(c->ctx, vm_path, stubdom, e, max,
                                  (const char *const *)argv, nargs);
    if (rc)
        msg = dup_msg(stubdm_ctx_errmsg(c->ctx));
    blocking_unref(c);
    free(vm_path);
    strv_free(argv);
    check_rc(rc, msg);
    r = nodes ? nodes_to_list(nodes) : Val_emptylist;
    stubdm_nodes_free(nodes);
    CAMLreturn(r);
}

CAMLprim value stubdm_ml_dm_argv_byte(value *argv, int argn)
{
    (void)argn;
    return stubdm_ml_dm_argv(argv[0], argv[1], argv[2], argv[3], argv[4],
                             argv[5], argv[6]);
}

CAMLprim value stubdm_ml_dm_argv_read(value vc, value vm, value enc)
{
    CAMLparam3(vc, vm, enc);
    CAMLlocal3(l, cell, s);
    struct octx *c = ctx_ref(Wrap_val(vc, struct octx));
    char *vm_path = strdup(String_val(vm));
    stubdm_dm_argv_encoding e = Int_val(enc);
    char **args = NULL;
    size_t n = 0;
    char *msg = NULL;
    int rc;

    blocking_lock(c);
    rc = vm_path ? stubdm_dm_argv_read(c->ctx, vm_path, e, &args, &n)
                 : STUBDM_ENOMEM;
    if (rc)
        msg = dup_msg(stubdm_ctx_errmsg(c->ctx));
    blocking_unref(c);
    free(vm_path);
    check_rc(rc, msg);
    l = Val_emptylist;
    for (size_t i = n; i-- > 0;) {
        s = caml_copy_string(args[i]);
        cell = caml_alloc(2, 0);
        Store_field(cell, 0, s);
        Store_field(cell, 1, l);
        l = cell;
    }
    stubdm_dm_argv_free(args);
    CAMLreturn(l);
}

/* ---- Contract ----------------------------------------------------------- */

/* Fields of Stubdm.Contract.t, in order. */
enum {
    CT_GUEST,
    CT_STUBDOM,
    CT_VM_PATH,
    CT_ARGS,
    CT_ENCODING,
    CT_BACKEND,
    CT_CONSOLES,
    CT_HVMLOADER_BIOS,
    CT_TOOLSTACK_DOMID,
    CT_DM_VERSION
};

static int contract_of(value t, stubdm_contract **out, char **msg)
{
    stubdm_contract *c = NULL;
    char **args = NULL;
    size_t nargs = 0;
    int rc = stubdm_contract_new(&c);

    *msg = NULL;
#define CT_STEP(what, call)                                                   \
    if (rc == 0 && (rc = (call)) != 0)                                        \
        *msg = dup_msg("Stubdm.Contract: " what);
    CT_STEP("domains", stubdm_contract_set_domains(
                           c, (uint32_t)Long_val(Field(t, CT_GUEST)),
                           (uint32_t)Long_val(Field(t, CT_STUBDOM))));
    if (Is_block(Field(t, CT_VM_PATH)))
        CT_STEP("vm_path",
                stubdm_contract_set_vm_path(c,
                                            opt_cstr(Field(t, CT_VM_PATH))));
    if (rc == 0)
        args = strv_of_list(Field(t, CT_ARGS), &nargs);
    CT_STEP("args",
            stubdm_contract_set_args(c, (const char *const *)args, nargs));
    CT_STEP("encoding", stubdm_contract_set_argv_encoding(
                            c, Int_val(Field(t, CT_ENCODING)), 0));
    CT_STEP("backend",
            stubdm_contract_set_console_backend(c, Int_val(
                                                       Field(t, CT_BACKEND))));
    for (value l = Field(t, CT_CONSOLES); rc == 0 && Is_block(l);
         l = Field(l, 1)) {
        value d = Field(l, 0);
        CT_STEP("consoles", stubdm_contract_set_console_output(
                                c, (unsigned)Long_val(Field(d, 0)),
                                String_val(Field(d, 1))));
    }
    if (Is_block(Field(t, CT_HVMLOADER_BIOS)))
        CT_STEP("hvmloader", stubdm_contract_set_hvmloader(
                                 c, opt_cstr(Field(t, CT_HVMLOADER_BIOS)), 1));
    CT_STEP("toolstack_domid",
            stubdm_contract_set_toolstack_domid(
                c, (uint32_t)Long_val(Field(t, CT_TOOLSTACK_DOMID))));
    CT_STEP("dm_version",
            stubdm_contract_set_dm_version(c,
                                           Bool_val(Field(t, CT_DM_VERSION))));
#undef CT_STEP
    strv_free(args);
    if (rc) {
        stubdm_contract_free(c);
        c = NULL;
    }
    *out = c;
    return rc;
}

/* op 0: layout (returns nodes), 1: write, 2: remove. */
CAMLprim value stubdm_ml_contract(value vc, value op, value t)
{
    CAMLparam3(vc, op, t);
    CAMLlocal1(r);
    struct octx *c = Wrap_val(vc, struct octx);
    stubdm_contract *ct;
    stubdm_nodes *nodes = NULL;
    char *msg;
    int what = Int_val(op);
    int rc = contract_of(t, &ct, &msg);

    check_rc(rc, msg);
    if (!c)
        stubdm_contract_free(ct);
    c = ctx_ref(c);
    blocking_lock(c);
    if (what == 0)
        rc = stubdm_contract_layout(c->ctx, ct, &nodes);
    else if (what == 1)
        rc = stubdm_contract_write(c->ctx, ct);
    else
        rc = stubdm_contract_remove(c->ctx, ct);
    msg = rc ? dup_msg(stubdm_ctx_errmsg(c->ctx)) : NULL;
    blocking_unref(c);
    stubdm_contract_free(ct);
    check_rc(rc, msg);
    r = nodes ? nodes_to_list(nodes) : Val_emptylist;
    stubdm_nodes_free(nodes);
    CAMLreturn(r);
}
