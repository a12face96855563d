/*
 * Private declarations shared by the library's modules.  Nothing here is
 * part of the ABI: every symbol is hidden (the build uses
 * -fvisibility=hidden and lib/libstubdm.map exports only stubdm_*).
 *
 * Naming: public functions are stubdm_*, internal ones stubdm__* (two
 * underscores), file-local ones are static and unprefixed.
 */
#ifndef STUBDM_INTERNAL_H
#define STUBDM_INTERNAL_H

#include "libstubdm.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct xs_handle;

#define STUBDM_PRINTF(f, a) __attribute__((format(printf, f, a)))
/* Failure and logging paths: the compiler moves their call sites out of
 * the hot code (fewer cache lines on the common paths). */
#define STUBDM_COLD __attribute__((cold))
#define STUBDM_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define STUBDM_CONTAINER_OF(ptr, type, member)                                \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Room for the detailed message of a ctx or an op. */
#define STUBDM_ERRMSG_MAX 512

/* ------------------------------------------------------------------------
 * Consoles of the stubdomain protocol
 * ------------------------------------------------------------------------ */

/* How many a stubdomain can have: log, save, restore, then the serials. */
#define STUBDM__NCONSOLES (STUBDM_CONSOLE_SERIAL0 + STUBDM_MAX_SERIALS)

/* The role of console n in the stubdomain protocol, for messages. */
static inline const char *stubdm__console_role(unsigned n)
{
    return n == STUBDM_CONSOLE_LOG       ? "log"
           : n == STUBDM_CONSOLE_SAVE    ? "save"
           : n == STUBDM_CONSOLE_RESTORE ? "restore"
                                         : "serial";
}

/* ------------------------------------------------------------------------
 * Intrusive doubly linked list (circular, with a sentinel head).
 * ------------------------------------------------------------------------ */

struct stubdm__list {
    struct stubdm__list *prev, *next;
};

static inline void stubdm__list_init(struct stubdm__list *l)
{
    l->prev = l->next = l;
}

static inline bool stubdm__list_empty(const struct stubdm__list *l)
{
    return l->next == l;
}

/* A node unlinked with list_del is self-linked, so deleting twice is safe. */
static inline void stubdm__list_del(struct stubdm__list *n)
{
    n->prev->next = n->next;
    n->next->prev = n->prev;
    n->prev = n->next = n;
}

static inline void stubdm__list_add_tail(struct stubdm__list *head,
                                         struct stubdm__list *n)
{
    n->prev = head->prev;
    n->next = head;
    head->prev->next = n;
    head->prev = n;
}

/* ------------------------------------------------------------------------
 * Errors and logging (error.c, log.c)
 * ------------------------------------------------------------------------ */

/*
 * Record a failure on the ctx (message and OS errno), log it at debug
 * level, and return rc, so call sites read "return stubdm__fail(...)".
 */
int stubdm__fail(stubdm_ctx *ctx, int rc, int os_errno, const char *fmt, ...)
    STUBDM_PRINTF(4, 5) STUBDM_COLD;
int stubdm__vfail(stubdm_ctx *ctx, int rc, int os_errno, const char *fmt,
                  va_list ap) STUBDM_PRINTF(4, 0) STUBDM_COLD;

/* Forget the previous failure (successful public calls may leave it). */
void stubdm__clear_error(stubdm_ctx *ctx);

void stubdm__log(stubdm_ctx *ctx, stubdm_log_level level, int os_errno,
                 const char *module, const char *fmt, ...)
    STUBDM_PRINTF(5, 6) STUBDM_COLD;
/* Whether a message at level would reach the ctx's log hook (inline, at
 * the end of this header: it reads the ctx). */
static inline bool stubdm__log_enabled(const stubdm_ctx *ctx,
                                       stubdm_log_level level);

#define STUBDM_LOG(ctx, lvl, mod, ...)                                        \
    do {                                                                      \
        if (__builtin_expect(stubdm__log_enabled((ctx), (lvl)), 0))          \
            stubdm__log((ctx), (lvl), 0, (mod), __VA_ARGS__);                 \
    } while (0)
#define LOG_DEBUG(ctx, mod, ...) STUBDM_LOG(ctx, STUBDM_LOG_DEBUG, mod, __VA_ARGS__)
#define LOG_INFO(ctx, mod, ...) STUBDM_LOG(ctx, STUBDM_LOG_INFO, mod, __VA_ARGS__)
#define LOG_WARN(ctx, mod, ...) STUBDM_LOG(ctx, STUBDM_LOG_WARN, mod, __VA_ARGS__)
#define LOG_ERROR(ctx, mod, ...) STUBDM_LOG(ctx, STUBDM_LOG_ERROR, mod, __VA_ARGS__)

/*
 * A xentoollog logger (for libxenctrl, libxenvchan) forwarding to the ctx's
 * log hook at debug level; context names the module of messages that carry
 * none (a string that must outlive the logger).  NULL: out of memory.
 */
struct xentoollog_logger;
struct xentoollog_logger *stubdm__xtl_logger_new(stubdm_ctx *ctx,
                                                 const char *context);
/* Accepts NULL. */
void stubdm__xtl_logger_free(struct xentoollog_logger *logger);

/* Map an errno from libxenstore onto a STUBDM_E* code. */
int stubdm__xs_errno_to_rc(int err);

/* ------------------------------------------------------------------------
 * Memory helpers (mem.c): abort-free, NULL on failure, overflow-checked.
 * ------------------------------------------------------------------------ */

void *stubdm__calloc(size_t n, size_t size);
/* Uninitialised, for buffers filled at once (I/O, arena chunks). */
void *stubdm__malloc(size_t size);
void *stubdm__reallocarray(void *p, size_t n, size_t size);
char *stubdm__strdup(const char *s);
char *stubdm__strndup(const char *s, size_t n);
char *stubdm__sprintf(const char *fmt, ...) STUBDM_PRINTF(1, 2);
char *stubdm__vsprintf(const char *fmt, va_list ap) STUBDM_PRINTF(1, 0);

/* A growable byte buffer, bounded by 'limit' (0: SIZE_MAX). */
struct stubdm__buf {
    char *data;
    size_t len, cap, limit;
};
static inline void stubdm__buf_init(struct stubdm__buf *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit ? limit : SIZE_MAX;
}
void stubdm__buf_dispose(struct stubdm__buf *b);
/* 0, STUBDM_ENOMEM, or STUBDM_ELIMIT when len would exceed limit. */
int stubdm__buf_append(struct stubdm__buf *b, const void *p, size_t n);
/* Drop the first n bytes. */
void stubdm__buf_consume(struct stubdm__buf *b, size_t n);
/* Capacity for n more bytes (limit not checked): where they go, to be
 * written and then accounted for by the caller (len, NUL); NULL: out of
 * memory. */
char *stubdm__buf_room(struct stubdm__buf *b, size_t n);

/* Memory kept for reuse (op blocks, docs) is off limits while it waits:
 * use after free is still caught by ASan, and by memcheck when its header
 * is there. */
#if defined(__SANITIZE_ADDRESS__)
#define STUBDM__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STUBDM__ASAN 1
#endif
#endif
#if defined(STUBDM__ASAN)
#include <sanitizer/asan_interface.h>
#define STUBDM__MEM_HIDE(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define STUBDM__MEM_SHOW(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#elif defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define STUBDM__MEM_HIDE(p, n) VALGRIND_MAKE_MEM_NOACCESS((p), (n))
#define STUBDM__MEM_SHOW(p, n) VALGRIND_MAKE_MEM_UNDEFINED((p), (n))
#endif
#endif
#ifndef STUBDM__MEM_HIDE
#define STUBDM__MEM_HIDE(p, n) ((void)(p), (void)(n))
#define STUBDM__MEM_SHOW(p, n) ((void)(p), (void)(n))
#endif


/* ------------------------------------------------------------------------
 * Event loop (loop.c): fd watches and timers multiplexed onto the
 * application's hooks or the poll interface.
 * ------------------------------------------------------------------------ */

struct stubdm__fd;
typedef void stubdm__fd_cb(stubdm_ctx *ctx, struct stubdm__fd *w,
                           short revents);

struct stubdm__fd {
    stubdm__fd_cb *cb;
    int fd;       /* -1 while not watching */
    short events; /* what we want; 0 is a valid "registered, idle" state */
    /* run_once's epoll set (loop.c): registered there with 'events'; or
     * refused by epoll (a regular file), which makes run_once poll. */
    bool in_ep, ep_refused;
};

void stubdm__fd_init(struct stubdm__fd *w, stubdm__fd_cb *cb);
/* Start watching fd, or change the events of an active watch. */
int stubdm__fd_watch(stubdm_ctx *ctx, struct stubdm__fd *w, int fd,
                     short events);
/* Stop watching.  Idempotent; the fd itself is not closed.  Stop a watch
 * BEFORE closing its fd: stubdm_ctx_run_once keeps the watches in an epoll
 * set, which must drop the fd while it still names the watched file. */
void stubdm__fd_stop(stubdm_ctx *ctx, struct stubdm__fd *w);
static inline bool stubdm__fd_active(const struct stubdm__fd *w)
{
    return w->fd >= 0;
}

struct stubdm__timer;
typedef void stubdm__timer_cb(stubdm_ctx *ctx, struct stubdm__timer *t);

struct stubdm__timer {
    stubdm__timer_cb *cb;
    int64_t deadline_ms;
    size_t heap_index; /* SIZE_MAX while not armed; with fresh, the index
                        * in the loop's fresh array instead of the heap */
    bool fresh;
};

static inline void stubdm__timer_init(struct stubdm__timer *t,
                                      stubdm__timer_cb *cb)
{
    t->cb = cb;
    t->deadline_ms = 0;
    t->heap_index = (size_t)-1; /* not armed */
    t->fresh = false;
}
/* Arm (or re-arm) for an absolute deadline.  Armed during a dispatch, the
 * timer runs on a later dispatch at the earliest, whatever its deadline:
 * a callback that re-arms itself for "now" yields to the fds and other
 * timers instead of running again in the same pass. */
int stubdm__timer_arm(stubdm_ctx *ctx, struct stubdm__timer *t,
                      int64_t deadline_ms);
void stubdm__timer_stop(stubdm_ctx *ctx, struct stubdm__timer *t);
static inline bool stubdm__timer_armed(const struct stubdm__timer *t)
{
    return t->heap_index != (size_t)-1;
}

/* Loop state embedded in the ctx. */
struct stubdm__loop {
    stubdm_loop_hooks hooks;
    void *hooks_user;
    bool have_hooks;
    struct stubdm__fd **by_fd; /* indexed by fd number */
    size_t by_fd_cap;
    size_t nwatched;
    struct stubdm__timer **heap;
    size_t heap_len, heap_cap;
    /* Timers armed during the current dispatch, kept out of the heap until
     * it ends (the heap has room reserved for them). */
    struct stubdm__timer **fresh;
    size_t fresh_len, fresh_cap;
    int64_t reported_deadline; /* last value given to set_timer */
    /* stubdm_ctx_run_once's kernel side, created on its first call: an
     * epoll set holding every watch with events (kept in step by
     * fd_watch/fd_stop), and a timerfd in it for the timers.  The timerfd
     * is armed lazily: only when the earliest deadline moves before the
     * expiry it already has, so a stream of commands whose deadlines only
     * move later re-arms nothing (a spurious expiry re-arms it once).
     * epfd -1: none yet; ep_off: epoll unusable, run_once polls. */
    int epfd, tfd;
    int64_t tfd_armed;   /* ms (CLOCK_MONOTONIC), -1: not armed */
    unsigned ep_forkgen; /* fork generation the set was made in */
    size_t ep_refused;   /* watches epoll refused: run_once polls */
    bool ep_off;
};

void stubdm__loop_init(struct stubdm__loop *l);
void stubdm__loop_dispose(stubdm_ctx *ctx);
/* The deadline the application must honour (-1 none, 0 right away). */
int64_t stubdm__loop_deadline(stubdm_ctx *ctx);
/* Push the current deadline to the hooks if it changed. */
void stubdm__loop_sync_timer(stubdm_ctx *ctx);

/* Dispatch bracket, used by every public entry point that runs callbacks. */
int stubdm__dispatch_enter(stubdm_ctx *ctx);
void stubdm__dispatch_leave(stubdm_ctx *ctx);
/* Bracket for calling one user callback; false: stop, the ctx is dying. */
void stubdm__callback_enter(stubdm_ctx *ctx);
bool stubdm__callback_leave(stubdm_ctx *ctx);

/* ------------------------------------------------------------------------
 * Operations (op.c)
 * ------------------------------------------------------------------------ */

struct stubdm__op_type {
    const char *name;
    /* Release the op's I/O resources (watches, timers, fds).  Called once,
     * when the op completes or is freed while pending.  May be NULL. */
    void (*stop)(stubdm_op *op);
    /* Free what the op type allocated, besides the op itself.  May be NULL. */
    void (*destroy)(stubdm_op *op);
};

enum stubdm__op_state {
    STUBDM__OP_PENDING,
    STUBDM__OP_QUEUED, /* completed, callback not yet run */
    STUBDM__OP_DONE,
};

struct stubdm_op {
    stubdm_ctx *ctx;
    const struct stubdm__op_type *type;
    enum stubdm__op_state state;
    int rc;
    bool floating;      /* no caller handle: free after the callback */
    bool handle_freed;  /* the caller freed its handle during the callback */
    bool in_callback;
    stubdm_done_fn *done;
    void *user;
    struct stubdm__list link; /* ctx->ops_pending or ctx->ops_queued */
    size_t size;              /* of the block (for its reuse) */
    char errmsg[STUBDM_ERRMSG_MAX];
};

/*
 * Allocate an op of 'size' bytes (a type-specific struct whose first member
 * is the struct stubdm_op), zeroed, pending, linked into the ctx.
 */
stubdm_op *stubdm__op_new(stubdm_ctx *ctx, const struct stubdm__op_type *type,
                          size_t size, stubdm_done_fn *done, void *user);
/* Free the blocks kept for reuse (ctx teardown, after the ops). */
void stubdm__op_cache_dispose(stubdm_ctx *ctx);
/* Hand the op to the caller (op_out) or make it floating (op_out NULL). */
static inline void stubdm__op_started(stubdm_op *op, stubdm_op **op_out)
{
    op->floating = op_out == NULL;
    if (op_out)
        *op_out = op;
}
/* Free an op that was never started (the starter failed). */
void stubdm__op_abandon(stubdm_op *op);
/*
 * Complete a pending op: stop its resources, record rc and the message,
 * and queue its callback for the end of the current (or next) dispatch.
 * No effect on an op that is not pending.
 */
void stubdm__op_complete(stubdm_op *op, int rc, const char *fmt, ...)
    STUBDM_PRINTF(3, 4);
/*
 * For blocking wrappers.  sync_check refuses (STUBDM_ERECURSIVE, with a
 * message naming 'what') when called from a callback, since running the
 * loop there would dispatch recursively.  op_wait runs the ctx's poll loop
 * until op completes and returns the loop's error (op still pending; the
 * caller frees it) or op's result, its message copied to the ctx.  The op
 * is not freed.
 */
int stubdm__sync_check(stubdm_ctx *ctx, const char *what);
int stubdm__op_wait(stubdm_op *op);
/* Run queued completions; called by dispatch_leave. */
void stubdm__ops_run_queued(stubdm_ctx *ctx);
/* Drop every op without callbacks (ctx teardown). */
void stubdm__ops_dispose(stubdm_ctx *ctx);

/* ------------------------------------------------------------------------
 * Xenstore (xs.c): one libxenstore connection per ctx, watches dispatched
 * by token in O(1).
 * ------------------------------------------------------------------------ */

/* Open the connection on first use. */
int stubdm__xs_handle(stubdm_ctx *ctx, struct xs_handle **out);

struct stubdm__xswatch;
/* Events are coalesced: a watch's callback runs at most once per dispatch,
 * however many events it had (a peer rewriting a watched node in a loop
 * costs one callback per dispatch), so it must re-read what it watches.
 * path is the watched path (not the node that changed), valid until the
 * watch is stopped. */
typedef void stubdm__xswatch_cb(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                                const char *path);

struct stubdm__xswatch {
    stubdm__xswatch_cb *cb;
    char *path;       /* NULL while not watching */
    uint64_t id;      /* the token, "stubdm/<id>" */
    struct stubdm__xswatch *hash_next;
    struct stubdm__list pending; /* in the ctx's list while an event waits */
};

void stubdm__xswatch_init(struct stubdm__xswatch *w, stubdm__xswatch_cb *cb);
/* Register a watch; xenstore fires it once right away, then on changes. */
int stubdm__xswatch_start(stubdm_ctx *ctx, struct stubdm__xswatch *w,
                          const char *path);
/* Idempotent. */
void stubdm__xswatch_stop(stubdm_ctx *ctx, struct stubdm__xswatch *w);

/*
 * Read path in transaction t (0 for none), refusing values longer than
 * max_len: the value comes from a possibly hostile writer.  *val_out is
 * NUL-terminated, free() it.  STUBDM_ENOENT when absent.
 */
int stubdm__xs_read(stubdm_ctx *ctx, uint32_t t, const char *path,
                    size_t max_len, char **val_out, size_t *len_out);

/* One transaction, retried on EAGAIN up to STUBDM__XS_TXN_RETRIES times. */
#define STUBDM__XS_TXN_RETRIES 16
typedef int stubdm__xs_txn_fn(stubdm_ctx *ctx, struct xs_handle *xsh,
                              uint32_t t, void *arg);
int stubdm__xs_transaction(stubdm_ctx *ctx, const char *what,
                           stubdm__xs_txn_fn *fn, void *arg,
                           unsigned *attempts_out);

/* Count of xenstore requests made on this ctx (for benchmarks). */
uint64_t stubdm__xs_requests(const stubdm_ctx *ctx);
void stubdm__xs_count(stubdm_ctx *ctx, unsigned n);

struct stubdm__xs_state {
    struct xs_handle *xsh;
    struct stubdm__fd fdw;
    /* Watches with an event not yet delivered; a zero-delay timer that
     * takes the next share of libxenstore's queue on a later dispatch. */
    struct stubdm__list pending;
    struct stubdm__timer more;
    struct stubdm__xswatch **buckets;
    size_t nbuckets, nwatches;
    uint64_t next_id;
    uint64_t requests;
};
void stubdm__xs_init(stubdm_ctx *ctx);
void stubdm__xs_dispose(stubdm_ctx *ctx);

/* ------------------------------------------------------------------------
 * Domains (domain.c): is a domain alive, and if not, why.
 * ------------------------------------------------------------------------ */

enum stubdm__dom_state {
    STUBDM__DOM_RUNNING,   /* exists and is not shutting down */
    STUBDM__DOM_SHUTDOWN,  /* shut down cleanly (poweroff, reboot, ...) */
    STUBDM__DOM_CRASHED,
    STUBDM__DOM_DYING,
    STUBDM__DOM_GONE,      /* no longer exists (destroyed / released) */
};

/* Describe the state; detail receives a human-readable cause. */
int stubdm__domain_state(stubdm_ctx *ctx, uint32_t domid,
                         enum stubdm__dom_state *state, char *detail,
                         size_t detail_len);
const char *stubdm__dom_state_name(enum stubdm__dom_state s);

/*
 * Domain-death monitor: one @releaseDomain watch per ctx, shared by every
 * subscriber, so N waits cost one xenstore watch, not N (xenstored limits
 * watches per connection).  The callback runs from dispatch when the
 * domain is found not running.
 */
struct stubdm__domwatch;
typedef void stubdm__domwatch_cb(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                                 enum stubdm__dom_state state,
                                 const char *detail);
struct stubdm__domwatch {
    stubdm__domwatch_cb *cb;
    uint32_t domid;
    bool active;
    struct stubdm__list link;
};
void stubdm__domwatch_init(struct stubdm__domwatch *dw,
                           stubdm__domwatch_cb *cb);
/*
 * Subscribe.  Checks the domain once now: if it is already not running,
 * *state_out/detail say so and the watch is NOT started.
 */
int stubdm__domwatch_start(stubdm_ctx *ctx, struct stubdm__domwatch *dw,
                           uint32_t domid, enum stubdm__dom_state *state_out,
                           char *detail, size_t detail_len);
void stubdm__domwatch_stop(stubdm_ctx *ctx, struct stubdm__domwatch *dw);

/*
 * The hypervisor interface (xenctrl.c, the only file that includes
 * <xenctrl.h>: libxenctrl has no stable ABI).  Opened lazily; on a machine
 * without Xen "present" stays false and the simulated host is used.
 */
struct stubdm__hv {
    void *xch; /* xc_interface * */
    void *xtl; /* the logger handed to libxenctrl */
    bool probed, present;
};

struct stubdm__xc_dominfo {
    bool exists, dying, shutdown, crashed;
    unsigned shutdown_reason; /* SHUTDOWN_* of <xen/sched.h> */
};

/* true if a hypervisor is reachable (probes once). */
bool stubdm__xc_present(stubdm_ctx *ctx);
int stubdm__xc_domain_info(stubdm_ctx *ctx, uint32_t domid,
                           struct stubdm__xc_dominfo *info);
void stubdm__xc_dispose(stubdm_ctx *ctx);

/* ------------------------------------------------------------------------
 * Host backends (spawn.c): who creates, starts and destroys a stubdomain.
 * The real one is in xenctrl.c (libxenctrl/libxenguest); the simulated one
 * in host_sim.c (control commands to the mock xenstored, which plays the
 * hypervisor).  Everything else a spawn does is plain xenstore, shared.
 * ------------------------------------------------------------------------ */

/* What to build, and what the builder returns. */
struct stubdm__build {
    /* in */
    uint32_t domid_req; /* 0: let the hypervisor choose */
    uint32_t guest;
    const char *name;
    const char *kernel, *ramdisk, *cmdline;
    uint64_t memory_kib;
    unsigned vcpus;
    const char *xsm_label; /* NULL: default label */
    uint8_t uuid[16];
    /* the simulated host's stand-in program and its arguments */
    const char *sim_program;
    const char *const *sim_args;
    size_t sim_nargs;
    /* out */
    uint32_t domid;
    uint64_t store_mfn, console_mfn;
    uint32_t store_port, console_port;
};

struct stubdm__host_ops {
    const char *name; /* "xen", "simulated" */
    bool simulated;
    /* Create the domain paused and load its kernel; fills the out fields.
     * On failure nothing is left (the builder destroys what it made). */
    int (*create)(stubdm_ctx *ctx, struct stubdm__build *b);
    /* The hypervisor side of the target relation (xenstore's is the
     * contract's xs_set_target). */
    int (*set_target)(stubdm_ctx *ctx, uint32_t domid, uint32_t guest);
    int (*unpause)(stubdm_ctx *ctx, const struct stubdm__build *b);
    /* Destroy; a domain that no longer exists is not an error. */
    int (*destroy)(stubdm_ctx *ctx, uint32_t domid);
    /* Pause (true) or unpause (false) a domain that has been started. */
    int (*pause)(stubdm_ctx *ctx, uint32_t domid, bool pause);
};

extern const struct stubdm__host_ops stubdm__host_xen; /* xenctrl.c */
extern const struct stubdm__host_ops stubdm__host_sim; /* host_sim.c */

/* The backend chosen for the ctx (stubdm_ctx_set_host; AUTO: Xen if a
 * hypervisor is present, else simulated). */
const struct stubdm__host_ops *stubdm__host(stubdm_ctx *ctx);

/* ------------------------------------------------------------------------
 * The context
 * ------------------------------------------------------------------------ */

struct stubdm_ctx {
    /* error state */
    char errmsg[STUBDM_ERRMSG_MAX];
    int os_errno;
    /* logging */
    stubdm_log_fn *log_fn;
    void *log_user;
    stubdm_log_level log_min;
    /* loop and dispatch */
    struct stubdm__loop loop;
    unsigned dispatch_depth; /* >0 while a dispatch entry point runs */
    unsigned callback_depth; /* >0 while a user callback runs */
    bool free_requested;
    /* operations */
    struct stubdm__list ops_pending;
    struct stubdm__list ops_queued;
    /* Blocks of released ops, reused by the next op of the same size (a
     * command per round trip would otherwise be a calloc and a free). */
    struct {
        void *block;
        size_t size;
    } op_cache[8];
    unsigned n_op_cache;
    /* xenstore */
    struct stubdm__xs_state xs;
    /* hypervisor */
    struct stubdm__hv hv;
    /* domain-death monitor: the subscribers (while a release is handled,
     * those not yet checked sit in the handler's batch, so the list alone
     * does not say whether any is left: the count does) */
    struct stubdm__list domwatches;
    size_t n_domwatches;
    struct stubdm__xswatch release_watch;
    /* spawning: stubdm_host as set by stubdm_ctx_set_host (0: AUTO) */
    int host_kind;
    /* hotplug scripts (hotplug.c): not run (stubdm_ctx_set_hotplug 0);
     * pidfd_open found missing (ENOSYS: Linux < 5.3, or valgrind 3.19),
     * so children are reaped by polling from then on */
    bool no_hotplug, no_pidfd;
    /* a device-model save's stream bound (dm_state.c; 0: the default) */
    uint64_t save_limit;
    /* stubdm_ctx_set_hotplug_dir ("": /etc/xen/scripts) */
    char hotplug_dir[256];
    /* QMP connections (qmp.c), each shared by the handles opened on it */
    struct stubdm__list qmp_conns;
    /* stubdm_ctx_set_console_limits (console.c; the defaults from ctx_new) */
    uint64_t console_rate;
    unsigned console_rotate_ms;
};

/* Free every QMP connection and handle without callbacks (ctx teardown,
 * after stubdm__ops_dispose: ops may close their handles as they stop). */
void stubdm__qmp_dispose(stubdm_ctx *ctx);

/* ------------------------------------------------------------------------
 * Console internals shared with spawn.c and dm_state.c (console.c)
 * ------------------------------------------------------------------------ */

/* Role save with no destination yet: the frontend's bytes stay in the ring
 * (backpressure) until a save attaches an fd. */
void stubdm__console_opts_set_save_held(stubdm_console_opts *o);
/* Role restore with no source: console 2 as the placeholder that keeps
 * the serials' numbering (contract.c); served so the frontend connects
 * (Linux waits 25 s at boot for an unconnected console), its output is
 * dropped, it never completes. */
void stubdm__console_opts_set_placeholder(stubdm_console_opts *o);
/* Stop serving without telling the frontend to close: the backend state
 * goes back to InitWait and the frontend stays connected, so another
 * backend (process) can take the console over.  As stubdm_console_close
 * otherwise (no callback; a console that already ended is just freed). */
void stubdm__console_release(stubdm_console *c);
/* Give a held save console its destination (made non-blocking, not
 * closed).  STUBDM_ESTATE (not a served save console), STUBDM_EBUSY (one is
 * attached already), STUBDM_EINVAL. */
int stubdm__console_save_attach(stubdm_console *c, int fd);
/* Hold again: stop writing to the fd. */
void stubdm__console_save_detach(stubdm_console *c);
/* 1 if connected and the frontend's output ring is empty, 0 if not, -1 on
 * a bad frontend index. */
int stubdm__console_out_empty(stubdm_console *c);
/* Still serving. */
bool stubdm__console_pending(const stubdm_console *c);
/* Whether the frontend's output ring has been consumed (written to the
 * destination) up to total bytes since the console was created (the
 * frontend's count; compared modulo 2^32 with the ring's out_cons, so it
 * holds across backends: a save by another process than the one that
 * served the earlier bytes). */
bool stubdm__console_out_reached(const stubdm_console *c, uint64_t total);

/* ------------------------------------------------------------------------
 * Device-model state (dm_state.c) and the stubdomain handle (spawn.c)
 * ------------------------------------------------------------------------ */

/* The save or restore op running on a stubdomain (NULL: none). */
stubdm_op **stubdm__stubdom_dm_op(stubdm_stubdom *s);
bool stubdm__stubdom_paused(const stubdm_stubdom *s);
stubdm_ctx *stubdm__stubdom_ctx(const stubdm_stubdom *s);
/* End a save/restore op with STUBDM_ECANCELED (teardown). */
void stubdm__dm_state_cancel(stubdm_op *op, const char *why);

/* ------------------------------------------------------------------------
 * Hotplug scripts of a stubdomain's backends (hotplug.c)
 * ------------------------------------------------------------------------ */

/* The backend key marking that the library ran the add script (so the
 * teardown, maybe by another process, runs remove). */
#define STUBDM__HOTPLUG_MARK "libstubdm-hotplug"
/* Bound on each remove/offline script at teardown. */
#define STUBDM__HOTPLUG_REMOVE_TIMEOUT_MS 20000

struct stubdm__hotplug_dev {
    const char *kind;   /* "vbd" or "vif" */
    unsigned devid;
    const char *script; /* absolute path */
};

/*
 * Run the add (vbd) / online (vif) script of each device of stubdomain
 * domid once its backend (dom0's) reaches InitWait, and complete when
 * every script exited 0 and its hotplug-status is "connected"; a failure,
 * the stubdomain's death or timeout_ms complete it with the cause (the
 * scripts still running are killed).  The devices are copied.
 */
int stubdm__hotplug_add(stubdm_ctx *ctx, uint32_t domid,
                        const struct stubdm__hotplug_dev *devs, size_t n,
                        int timeout_ms, stubdm_done_fn *done, void *user,
                        stubdm_op **op_out);
/*
 * Teardown, blocking: run remove (vbd) / offline (vif) for every backend
 * of domid marked STUBDM__HOTPLUG_MARK, each bounded.  A backend's script
 * runs only when dom0 owns its "script" node and the path is in the ctx's
 * hotplug directory or one of own_scripts (the n paths the spawn itself
 * wrote; may be NULL).  Every one is attempted; 0 or the first failure
 * (message on the ctx), the others logged.
 */
int stubdm__hotplug_remove_all(stubdm_ctx *ctx, uint32_t domid,
                               const char *const *own_scripts, size_t n);

/* Free the ctx now (stubdm_ctx_free defers this while dispatching). */
void stubdm__ctx_destroy(stubdm_ctx *ctx);

/* Domid validity: below DOMID_FIRST_RESERVED. */
#define STUBDM__DOMID_MAX 0x7FEFu
static inline bool stubdm__domid_ok(uint32_t d)
{
    return d <= STUBDM__DOMID_MAX;
}

static inline bool stubdm__log_enabled(const stubdm_ctx *ctx,
                                       stubdm_log_level level)
{
    return ctx && ctx->log_fn && level >= ctx->log_min;
}

#endif /* STUBDM_INTERNAL_H */
