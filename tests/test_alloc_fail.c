/*
 * Allocation failures along the main paths (nghttp2's failmalloc style):
 * for N = 1, 2, ... the Nth allocation made while the path runs fails,
 * until the path completes without reaching N.  Each run must end in an
 * error code or a complete success (a failure absorbed: the QMP reader's
 * quick parse declines and the full parser takes the message), never in
 * a crash or an abort,
 * and must leave nothing behind: every allocation of the run freed, the
 * store as before, no process of the simulated host (and ASan's and
 * valgrind's checks, in their stages).
 *
 * Only the library's own allocations fail: the link wraps its calls to
 * malloc & co (below), on the test's thread, armed only around the path
 * (Check and the fixtures allocate freely).  Allocations inside
 * libxenstore and yajl are left alone: a failed one leaves the xenstore
 * connection in a state the library cannot know (libxenstore's reader
 * thread ends, and the connection with it; a reply it could not read
 * after sending a transaction's commit leaves the commit's outcome
 * unknown), and yajl_alloc() dereferences its own failed malloc (seen
 * with an interposed malloc failing every caller): their behaviour, not
 * the library's.  TEST_ALLOC_FAIL_VERBOSE=1 prints where each run failed.
 */
#include "core/base.h"
#include "mockxs.h"
#include "proccheck.h"
#include "qmp_peer.h"
#include "run.h"
#include "simcons.h"
#include "spawnfix.h"
#include "xsfix.h"

#include <check.h>
#include <errno.h>
#include <execinfo.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xenstore.h>

/* ---- the wrapped allocator ---------------------------------------------- */

/*
 * The link wraps (tests/CMakeLists.txt: -Wl,--wrap=...) every call to
 * malloc, calloc, realloc, strdup, strndup, vasprintf and free made by
 * code linked into this executable: the library (its static archive),
 * the test, its support code.  Allocations made inside libxenstore, yajl
 * and libc are not wrapped.
 */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);
void __real_free(void *p);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);
void __wrap_free(void *p);

static atomic_long
    countdown; /* > 0: armed; the allocation taking it to 0 fails */
static atomic_long counted; /* allocations seen while armed */
static atomic_bool hit;     /* the Nth allocation was failed */
static pthread_t armed_by;  /* the test's thread */
static void *hit_stack[16]; /* where it was failed */
static int hit_depth;

/* Allocations made while armed and not freed yet: left at the end of a
 * run, they are leaks.  Open addressing, deletion by tombstone. */
#define LIVE_SLOTS 65536
#define TOMB ((void *)1)
static void *live[LIVE_SLOTS];
static size_t n_live, n_used;
static bool live_full;

static size_t slot_of(const void *p)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(x >> 48) % LIVE_SLOTS;
}

static bool armed_here(void)
{
    return atomic_load(&countdown) > 0 &&
           pthread_equal(pthread_self(), armed_by);
}

static void *track(void *p)
{
    size_t i;

    if (!p || !armed_here())
        return p;
    if (n_used + 1 >= LIVE_SLOTS / 2) {
        live_full = true;
        return p;
    }
    for (i = slot_of(p); live[i] && live[i] != TOMB; i = (i + 1) % LIVE_SLOTS)
        ;
    if (!live[i])
        n_used++;
    live[i] = p;
    n_live++;
    return p;
}

static void untrack(void *p)
{
    if (!p || !n_live)
        return;
    for (size_t i = slot_of(p); live[i]; i = (i + 1) % LIVE_SLOTS)
        if (live[i] == p) {
            live[i] = TOMB;
            n_live--;
            return;
        }
}

static void live_reset(void)
{
    memset(live, 0, sizeof(live));
    n_live = n_used = 0;
    live_full = false;
}

/* Whether this allocation is the one to fail. */
static bool fail_this(void)
{
    long left;

    if (!armed_here())
        return false;
    atomic_fetch_add(&counted, 1);
    left = atomic_fetch_sub(&countdown, 1) - 1;
    if (left != 0)
        return false;
    atomic_store(&hit, true);
    hit_depth = backtrace(hit_stack, 16);
    errno = ENOMEM;
    return true;
}

void *__wrap_malloc(size_t n)
{
    return fail_this() ? NULL : track(__real_malloc(n));
}

void *__wrap_calloc(size_t n, size_t size)
{
    return fail_this() ? NULL : track(__real_calloc(n, size));
}

void *__wrap_realloc(void *p, size_t n)
{
    void *q;

    if (fail_this())
        return NULL;
    q = __real_realloc(p, n);
    if (q || n == 0)
        untrack(p);
    return track(q);
}

char *__wrap_strdup(const char *s)
{
    return fail_this() ? NULL : track(__real_strdup(s));
}

char *__wrap_strndup(const char *s, size_t n)
{
    return fail_this() ? NULL : track(__real_strndup(s, n));
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
    int r;

    if (fail_this())
        return -1;
    r = __real_vasprintf(out, fmt, ap);
    if (r >= 0)
        track(*out);
    return r;
}

void __wrap_free(void *p)
{
    untrack(p);
    __real_free(p);
}

/* Fail the nth allocation from now (n >= 1). */
static void arm(long n)
{
    atomic_store(&hit, false);
    atomic_store(&counted, 0);
    armed_by = pthread_self();
    live_reset();
    atomic_store(&countdown, n);
}

/* Stop failing; whether the armed allocation was reached. */
static bool disarm(void)
{
    atomic_store(&countdown, 0);
    return atomic_load(&hit);
}

/* ---- the sweep ---------------------------------------------------------- */

/* A path: returns 0 on success, or the library's error code.  Runs no
 * Check assertion (Check allocates), leaves everything as it found it. */
typedef int path_fn(void *arg);

static long sweep_n; /* the allocation failed in the current run */

struct sweep_stats {
    long runs, errors, absorbed;
};

/*
 * check(arg) runs after each run, with assertions: nothing of the run is
 * left (the store, processes).
 */
static struct sweep_stats sweep(const char *name, path_fn *fn, void *arg,
                                void (*check)(void *))
{
    struct sweep_stats st = {0};
    long n, total;
    int rc;

    /* Warm-up: one-time allocations (libxenstore's, glibc's) happen now,
     * and the path's length is known. */
    ck_assert_int_eq(fn(arg), 0);
    arm(LONG_MAX);
    rc = fn(arg);
    disarm();
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(n_live == 0, "%s: %zu allocations not freed", name, n_live);
    total = atomic_load(&counted);
    if (check)
        check(arg);
    for (n = 1;; n++) {
        sweep_n = n;
        arm(n);
        rc = fn(arg);
        if (!disarm()) {
            ck_assert_msg(rc == 0,
                          "%s: run %ld reached no failure but "
                          "returned %d",
                          name, n, rc);
            break;
        }
        st.runs++;
        if (rc == 0)
            st.absorbed++;
        else
            st.errors++;
        if (getenv("TEST_ALLOC_FAIL_VERBOSE")) {
            fprintf(stderr, "%s: allocation %ld failed: rc %d at\n", name, n,
                    rc);
            backtrace_symbols_fd(hit_stack, hit_depth, 2);
        }
        ck_assert_msg(rc <= 0, "%s: allocation %ld failed: returned %d", name,
                      n, rc);
        if (check)
            check(arg);
        ck_assert_msg(!live_full, "%s: too many allocations to track", name);
        ck_assert_msg(n_live == 0,
                      "%s: allocation %ld failed: %zu "
                      "allocations of the run not freed",
                      name, n, n_live);
    }
    fprintf(stderr,
            "alloc-fail %-12s %ld allocations, %ld failing runs: "
            "%ld errors, %ld absorbed\n",
            name, total, st.runs, st.errors, st.absorbed);
    ck_assert_int_gt(st.runs, 0);
    return st;
}

/* ---- paths -------------------------------------------------------------- */

/* Each path makes and frees its own ctx: whatever a failed run left
 * behind then shows as an allocation not freed, not hidden in a ctx's
 * caches. */
static int sim_ctx(stubdm_ctx **out)
{
    int rc = stubdm_ctx_new(out);

    if (!rc && (rc = stubdm_ctx_set_host(*out, STUBDM_HOST_SIM))) {
        stubdm_ctx_free(*out);
        *out = NULL;
    }
    return rc;
}

static int path_ctx(void *arg)
{
    stubdm_ctx *ctx = NULL;
    int rc = sim_ctx(&ctx);

    (void)arg;
    stubdm_ctx_free(ctx);
    return rc;
}

START_TEST(alloc_ctx)
{
    sweep("ctx", path_ctx, NULL, NULL);
}
END_TEST

#define GUEST 4
#define STUB 5
#define VM "/vm/00000000-0000-0000-0000-000000000004"

static const char *const dm_args[] = {"-xen-domid", "4",  "-machine",
                                      "xenfv",      "-m", "256"};

static int path_dmargs(void *arg)
{
    stubdm_ctx *ctx = NULL;
    stubdm_nodes *nodes = NULL;
    int rc = sim_ctx(&ctx);

    (void)arg;
    if (!rc)
        rc = stubdm_dm_argv_encode(ctx, VM, STUB, STUBDM_DM_ARGV_DIRECTORY, 0,
                                   dm_args, STUBDM_ARRAY_SIZE(dm_args),
                                   &nodes);
    stubdm_nodes_free(nodes);
    stubdm_ctx_free(ctx);
    return rc;
}

START_TEST(alloc_dmargs)
{
    sweep("dm-argv", path_dmargs, NULL, NULL);
}
END_TEST

/* ---- contract: the mock's store as test_contract's -------------------- */

static struct mockxs mock;
static struct xs_handle *xs0;
static char *dump_before;

static void store_setup(void)
{
    static const unsigned doms[] = {GUEST, STUB};
    struct mockxs_opts o = {.domids = doms, .n_domids = 2};

    ck_assert_int_eq(mockxs_start(&mock, &o), 0);
    setenv("XENSTORED_PATH", mockxs_socket(&mock), 1);
    unsetenv("STUBDM_SIM_DIR");
    xs0 = mockxs_open_as(&mock, 0);
    ck_assert_ptr_nonnull(xs0);
    ck_assert(xs_introduce_domain(xs0, STUB, 1, 1));
    xsfix_guest(xs0, GUEST, STUB, VM);
    xsfix_dir(xs0, "/libxl/4", 0, 0);
}

static void store_teardown(void)
{
    free(dump_before);
    dump_before = NULL;
    xs_close(xs0);
    ck_assert_int_eq(mockxs_stop(&mock), 0);
}

static void store_unchanged(void *arg)
{
    char *d = NULL;

    (void)arg;
    ck_assert_int_eq(mockxs_dump(&mock, &d), 0);
    ck_assert_msg(strcmp(d, dump_before) == 0,
                  "allocation %ld failed: the store afterwards:\n%s", sweep_n,
                  d);
    free(d);
}

static int build_contract(stubdm_contract **out, int backend)
{
    stubdm_contract *c = NULL;
    int rc = stubdm_contract_new(&c);

    if (!rc)
        rc = stubdm_contract_set_domains(c, GUEST, STUB);
    if (!rc)
        rc = stubdm_contract_set_vm_path(c, VM);
    if (!rc)
        rc = stubdm_contract_set_args(c, dm_args, STUBDM_ARRAY_SIZE(dm_args));
    if (!rc && backend)
        rc = stubdm_contract_set_console_backend(
            c, STUBDM_CONSOLE_BACKEND_LIBSTUBDM);
    if (!rc)
        rc = stubdm_contract_set_console_output(c, 0, "file:log");
    if (!rc)
        rc = stubdm_contract_set_console_output(c, 1, "file:save");
    if (rc) {
        stubdm_contract_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Build, write, remove: the store ends as it began. */
static int path_contract(void *arg)
{
    stubdm_ctx *ctx = NULL;
    stubdm_contract *c = NULL;
    int rc = build_contract(&c, 0), rm;

    (void)arg;
    if (rc)
        return rc;
    rc = sim_ctx(&ctx);
    if (!rc)
        rc = stubdm_contract_write(ctx, c);
    /* The removal runs unarmed: what a failed write left is the question. */
    long left = atomic_exchange(&countdown, 0);
    rm = rc ? 0 : stubdm_contract_remove(ctx, c);
    atomic_store(&countdown, left);
    stubdm_contract_free(c);
    stubdm_ctx_free(ctx);
    return rc ? rc : rm;
}

START_TEST(alloc_contract)
{
    store_setup();
    ck_assert_int_eq(mockxs_dump(&mock, &dump_before), 0);
    sweep("contract", path_contract, NULL, store_unchanged);
    store_teardown();
}
END_TEST

/* ---- console serve ------------------------------------------------------ */

struct console_arg {
    stubdm_ctx *ctx;
    char log[300];
};

static int path_console_in(struct console_arg *a);

static int path_console(void *arg)
{
    struct console_arg *a = arg;
    int rc = sim_ctx(&a->ctx);

    if (!rc)
        rc = path_console_in(a);
    stubdm_ctx_free(a->ctx);
    a->ctx = NULL;
    return rc;
}

/* Serve console 0 to a log file until Connected, close. */
static int path_console_in(struct console_arg *a)
{
    stubdm_console_opts *o = NULL;
    stubdm_console *c = NULL;
    int64_t end;
    int rc = stubdm_console_opts_new(&o);

    if (!rc)
        rc = stubdm_console_opts_set_transport(
            o, STUBDM_CONSOLE_TRANSPORT_SIMULATED);
    if (!rc)
        rc = stubdm_console_opts_set_log(o, a->log, 65536, 1);
    if (!rc)
        rc = stubdm_console_serve(a->ctx, STUB, 0, o, NULL, NULL, &c);
    stubdm_console_opts_free(o);
    if (rc)
        return rc;
    end = stubdm_now_ms() + 5000;
    while (stubdm_console_state(c) != 4 &&
           stubdm_console_result(c) == STUBDM_ESTATE && stubdm_now_ms() < end)
        if ((rc = stubdm_ctx_run_once(a->ctx, 10)))
            break;
    if (!rc && stubdm_console_result(c) != STUBDM_ESTATE)
        rc = stubdm_console_result(c);
    if (!rc && stubdm_console_state(c) != 4)
        rc = STUBDM_ETIMEDOUT;
    stubdm_console_free(c);
    return rc;
}

START_TEST(alloc_console)
{
    struct console_arg a = {0};
    struct simcons *sc;
    stubdm_contract *c = NULL;

    store_setup();
    ck_assert_int_eq(stubdm_ctx_new(&a.ctx), 0);
    ck_assert_int_eq(build_contract(&c, 1), 0);
    ck_assert_int_eq(stubdm_contract_write(a.ctx, c), 0);
    stubdm_contract_free(c);
    stubdm_ctx_free(a.ctx);
    a.ctx = NULL;
    snprintf(a.log, sizeof(a.log), "%s/console.log", mock.dir);
    ck_assert_int_eq(simcons_open(&sc, mock.dir, STUB, 0), 0);
    ck_assert_int_eq(simcons_publish(sc, xs0), 0);
    sweep("console", path_console, &a, NULL);
    simcons_close(sc);
    store_teardown();
}
END_TEST

/* ---- QMP against the scripted peer ------------------------------------- */

#define QSTUB 7
#define QGUEST 3

struct qmp_arg {
    stubdm_ctx *ctx;
    struct qmp_sim sim;
    struct qmp_peer peer;
};

/* Open (handshake), execute one command, close. */
static int path_qmp(void *arg)
{
    struct qmp_arg *a = arg;
    stubdm_qmp_opts *o = NULL;
    stubdm_qmp *q = NULL;
    char *reply = NULL;
    int rc = sim_ctx(&a->ctx);

    if (!rc)
        rc = stubdm_qmp_opts_new(&o);
    if (!rc)
        rc = stubdm_qmp_opts_set_transport(o, STUBDM_QMP_TRANSPORT_SIMULATED);
    if (!rc)
        rc = stubdm_qmp_opts_set_open_timeout(o, 3000);
    if (!rc)
        rc = stubdm_qmp_open_sync(a->ctx, QSTUB, QGUEST, o, &q);
    stubdm_qmp_opts_free(o);
    if (!rc)
        rc = stubdm_qmp_execute_sync(q, "query-status", NULL, 3000, &reply);
    free(reply);
    stubdm_qmp_free(q);
    stubdm_ctx_free(a->ctx);
    a->ctx = NULL;
    return rc;
}

/* Each run gets a fresh peer (a script serves one connection), started
 * unarmed. */
static int path_qmp_fresh(void *arg)
{
    struct qmp_arg *a = arg;
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    long left = atomic_exchange(&countdown, 0);
    int rc;

    qmp_peer_stop(&a->peer);
    if (qmp_peer_start(&a->peer, a->sim.sock, script))
        return STUBDM_EFAIL;
    atomic_store(&countdown, left);
    rc = path_qmp(arg);
    left = atomic_exchange(&countdown, 0);
    qmp_peer_stop(&a->peer);
    atomic_store(&countdown, left);
    return rc;
}

START_TEST(alloc_qmp)
{
    struct qmp_arg a = {0};

    a.peer.pid = -1;
    ck_assert_int_eq(qmp_sim_start(&a.sim, QSTUB, QGUEST), 0);
    ck_assert_int_eq(qmp_sim_server_ready(&a.sim), 0);
    sweep("qmp", path_qmp_fresh, &a, NULL);
    qmp_peer_stop(&a.peer);
    qmp_sim_stop(&a.sim);
}
END_TEST

/* ---- spawn on the simulated host --------------------------------------- */

static struct spawnfix fx;
static int destroy_retry_rc, destroy_retries;

static int path_spawn(void *arg)
{
    static const char *const args[] = {"-machine", "none"};
    static const char *const sim_args[] = {"--no-qemu"};
    stubdm_spawn_opts *c = NULL;
    stubdm_stubdom *s = NULL;
    stubdm_ctx *ctx = NULL;
    int rc = sim_ctx(&ctx);

    (void)arg;
    if (!rc)
        rc = stubdm_spawn_opts_new(&c);
    if (!rc)
        rc = stubdm_spawn_opts_set_guest(c, 7, NULL, "test");
    if (!rc)
        rc = stubdm_spawn_opts_set_args(c, args, 2);
    if (!rc)
        rc = stubdm_spawn_opts_set_sim_program(c, fx.sim_program, sim_args, 1);
    if (!rc)
        rc = stubdm_spawn_opts_set_timeout(c, 10000);
    if (!rc)
        rc = stubdm_spawn_sync(ctx, c, NULL, NULL, &s);
    stubdm_spawn_opts_free(c);
    if (!rc && (rc = stubdm_stubdom_destroy_sync(s))) {
        /* A failed destroy is reported, and a destroy by domid (what a
         * toolstack does next) then removes everything: run unarmed. */
        long left = atomic_exchange(&countdown, 0);
        destroy_retry_rc = stubdm_stubdom_destroy_by_domid_sync(
            ctx, stubdm_stubdom_domid(s), 0);
        destroy_retries++;
        atomic_store(&countdown, left);
    }
    if (rc && ctx && getenv("TEST_ALLOC_FAIL_VERBOSE"))
        fprintf(stderr, "spawn: %d: %s\n", rc, stubdm_ctx_errmsg(ctx));
    stubdm_stubdom_free(s);
    stubdm_ctx_free(ctx);
    return rc;
}

static void spawn_clean(void *arg)
{
    (void)arg;
    ck_assert_msg(destroy_retry_rc == 0,
                  "allocation %ld failed: the "
                  "destroy by domid after a failed destroy returned %d",
                  sweep_n, destroy_retry_rc);
    spawnfix_assert_clean(&fx, true);
}

START_TEST(alloc_spawn)
{
    static const struct spawnfix_opts o = {
        .verbose_env = "TEST_SPAWN_VERBOSE"};

    struct xs_handle *xsh;
    char *r;

    spawnfix_setup(&fx, &o);
    spawnfix_need_sim_stubdom(&fx);
    /* Hundreds of spawns: the host's round-robin domids come round to the
     * guest's, which only spawn's xenstore placeholder stands for.  A
     * simulated domain holds the guest's domid, as on Xen. */
    xsh = mockxs_open_as(&fx.mock, 0);
    ck_assert_ptr_nonnull(xsh);
    r = xs_control_command(xsh, "sim-create", (char *)"7", 2);
    ck_assert_ptr_nonnull(r);
    free(r);
    xs_close(xsh);
    free(fx.dump_before);
    fx.dump_before = spawnfix_dump(&fx);
    sweep("spawn", path_spawn, NULL, spawn_clean);
    fprintf(stderr,
            "alloc-fail spawn: %d failed destroys completed by a "
            "destroy by domid\n",
            destroy_retries);
    spawnfix_teardown(&fx);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("alloc-fail");
    TCase *tc = tcase_create("sweep");

    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, alloc_ctx);
    tcase_add_test(tc, alloc_dmargs);
    tcase_add_test(tc, alloc_contract);
    tcase_add_test(tc, alloc_console);
    tcase_add_test(tc, alloc_qmp);
    tcase_add_test(tc, alloc_spawn);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    void *warm[1];

    backtrace(warm, 1); /* loads libgcc now, not inside an allocation */
    return ts_run_suite(suite());
}
