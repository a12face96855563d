/*
 * libstubdm — the toolstack side of the Xen Linux-stubdomain protocol.
 *
 * A dom0 toolstack (libxl, xapi, or your own) uses this library to run an
 * HVM guest's QEMU inside a small PV "stubdomain" instead of in dom0:
 *
 *   - encode the QEMU argv into xenstore (/vm/<uuid>/image/dm-argv/NNN);
 *   - write the rest of the xenstore contract (target, device-model
 *     directory, consoles) with exact permissions;
 *   - wait, from any event loop, for the device model to report "running",
 *     failing fast with the real cause when the stubdomain dies instead;
 *   - hold the single QMP connection to the QEMU in the stubdomain, which is
 *     treated as hostile.
 *
 * The specification of the protocol, as this library implements it, is
 * docs/protocol.md; the event model is explained in docs/architecture.md.
 *
 * ------------------------------------------------------------------------
 * Conventions used throughout this header
 * ------------------------------------------------------------------------
 *
 * Errors.  Every function that can fail returns int: 0 (STUBDM_OK) on
 * success or one of the negative STUBDM_E* codes below.  Where a function's
 * documentation lists no codes (the option setters, mostly), it returns 0,
 * STUBDM_EINVAL (a NULL object or a value out of range) or STUBDM_ENOMEM
 * (copying a string).  Getters on a NULL handle return 0 or NULL.  When a
 * function that takes a ctx fails, stubdm_ctx_errmsg() holds a sentence
 * that says what failed and why (naming the argument, path or domain
 * involved), and stubdm_ctx_os_errno() the errno of the failing system or
 * Xen library call (0 when there was none).  Both stay valid until the next
 * call on that ctx.
 *
 * Names (docs/api-naming.md).  stubdm_OBJECT_VERB: the object first
 * (ctx, op, nodes, dm_argv, contract, dm, qmp, qmp_proxy, spawn_opts,
 * stubdom, stubdom_list, console, ...), then what is done to it.  Options
 * objects are stubdm_OBJECT_opts (_new, _set_*, _free).  Outputs come
 * last.  Predicates are _is_*.
 *
 * Ownership.  Handles (stubdm_ctx, stubdm_op, stubdm_qmp, ...) are opaque,
 * created by the library and released by the matching *_free function (the
 * one release verb), which accepts NULL.  Strings passed in are copied
 * unless the documentation says otherwise.  Strings returned are borrowed
 * ("valid until ...") unless the documentation says "free with free()".
 *
 * Statistics.  Counters are read one way: a struct per object
 * (stubdm_qmp_stats, stubdm_console_stats, stubdm_qmp_proxy_stats) filled
 * by one call, stubdm_OBJECT_get_stats(obj, &stats, sizeof(stats)).  The
 * size is the struct's size as the caller was compiled: later versions only
 * append fields, the library fills what both sides know and zeroes the rest
 * of the caller's struct, so old callers and new libraries (and the
 * reverse) agree.  A NULL object gives STUBDM_EINVAL and a zeroed struct.
 *
 * Callbacks run only from the dispatch entry points and the *_sync
 * wrappers, never from the call that starts an operation (see "Event-loop
 * integration" and "Asynchronous operations").
 *
 * Threads.  A ctx and everything created from it belong to one thread at a
 * time; the library creates no threads of its own (libxenstore may create a
 * reader thread for watches, which the library never calls back from).
 * Separate ctxs are fully independent: the library has no global state.
 * Exactly two functions may be called on a ctx from any thread (and from a
 * signal handler) while its owner uses it: stubdm_ctx_wake and
 * stubdm_ctx_interrupt.  Every other function, on that ctx or an object of
 * it, is called by the owning thread only.
 *
 * Fork.  Every descriptor the library opens is close-on-exec.  A child that
 * forks without exec and goes on to use the library calls
 * stubdm_ctx_postfork_child on each ctx it inherited, then only
 * stubdm_ctx_free on it (see there).
 *
 * Domain ids are uint32_t; a valid domid is below 0x7FF0
 * (DOMID_FIRST_RESERVED).
 */
#ifndef LIBSTUBDM_H
#define LIBSTUBDM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(STUBDM_BUILDING_LIBRARY) && defined(__GNUC__)
#define STUBDM_EXPORT __attribute__((visibility("default")))
#else
#define STUBDM_EXPORT
#endif

/* ------------------------------------------------------------------------
 * Version and features
 * ------------------------------------------------------------------------ */

#define STUBDM_VERSION_MAJOR 0
#define STUBDM_VERSION_MINOR 1
#define STUBDM_VERSION_PATCH 0
/** The version as one comparable number: 0xMMmmpp. */
#define STUBDM_VERSION_HEX                                                    \
    ((STUBDM_VERSION_MAJOR << 16) | (STUBDM_VERSION_MINOR << 8) |             \
     STUBDM_VERSION_PATCH)

/*
 * Feature macros: defined when the feature exists in this header, so a
 * toolstack can build against several versions (the LIBXL_HAVE_* pattern).
 * All of them are here, in this one block; a later version adds its own
 * at the end.
 */
#define STUBDM_HAVE_LOOP_HOOKS 1      /* stubdm_ctx_set_loop and friends  */
#define STUBDM_HAVE_POLL 1            /* stubdm_ctx_poll_prepare/dispatch */
#define STUBDM_HAVE_DM_ARGV 1         /* stubdm_dm_argv_*                 */
#define STUBDM_HAVE_CONTRACT 1        /* stubdm_contract_*                */
#define STUBDM_HAVE_DM_WAIT_RUNNING 1 /* stubdm_dm_wait_running           */
#define STUBDM_HAVE_QMP 1             /* stubdm_qmp_*, the QMP proxy      */
#define STUBDM_HAVE_SPAWN 1           /* stubdm_spawn, stubdm_stubdom_*   */
/* Spawn-served consoles, stubdm_stubdom_save, stubdm_dm_save, restore fd,
 * pause. */
#define STUBDM_HAVE_DM_STATE 1
#define STUBDM_HAVE_CONSOLE_SERVE 1   /* stubdm_console_serve             */
#define STUBDM_HAVE_QMP_LIBXL_LOCK 1  /* STUBDM_QMP_LOCK_LIBXL            */
#define STUBDM_HAVE_QMP_EVENT_QUEUE 1 /* stubdm_qmp_events_enable        */
#define STUBDM_HAVE_DM_SAVE_QMP 1     /* stubdm_dm_save_qmp               */
/* stubdm_qmp_proxy_opts, stubdm_qmp_proxy_new_ext; a proxy made before its
 * handle is ready. */
#define STUBDM_HAVE_QMP_PROXY_OPTS 1
/* stubdm_ctx_*_ext and stubdm_ctx_dispatch_data */
#define STUBDM_HAVE_DISPATCH_DATA 1
#define STUBDM_HAVE_WAKE 1     /* stubdm_ctx_wake, stubdm_ctx_interrupt */
#define STUBDM_HAVE_POSTFORK 1 /* stubdm_ctx_postfork_child            */
/* stubdm_spawn_opts_set_domain: the spawn of a domain the caller built. */
#define STUBDM_HAVE_SPAWN_ADOPT 1
/* stubdm_contract_set_consoles, stubdm_contract_set_dm_version and their
 * spawn options. */
#define STUBDM_HAVE_CONTRACT_CONSOLES 1
/* stubdm_contract_set_service, stubdm_spawn_opts_set_service. */
#define STUBDM_HAVE_SERVICE 1
/* stubdm_pci_addr_*, stubdm_pci_dev_*, stubdm_pci_attach/detach,
 * stubdm_pci_list_*, stubdm_spawn_opts_add_pci. */
#define STUBDM_HAVE_PCI 1

/**
 * The version of the library actually loaded, as "MAJOR.MINOR.PATCH".
 * Compare with STUBDM_VERSION_* to detect a header/library mismatch.
 * @return a static string; never NULL.
 */
STUBDM_EXPORT const char *stubdm_version(void);

/**
 * The loaded library's version as STUBDM_VERSION_HEX would compute it.
 */
STUBDM_EXPORT unsigned stubdm_version_hex(void);

/* ------------------------------------------------------------------------
 * Error codes
 * ------------------------------------------------------------------------ */

/**
 * Return codes.  0 is success; everything else is negative.  New codes may
 * be added at the end in later versions; treat unknown codes as STUBDM_EFAIL.
 * docs/errors.md maps them onto libxl's ERROR_* codes.
 */
typedef enum stubdm_err {
    STUBDM_OK = 0,
    STUBDM_EFAIL = -1,        /**< unspecified; see stubdm_ctx_errmsg()     */
    STUBDM_EINVAL = -2,       /**< bad argument (a caller bug or bad input) */
    STUBDM_ENOMEM = -3,       /**< out of memory                            */
    STUBDM_ESTATE = -4,       /**< not valid in the object's current state  */
    STUBDM_EXENSTORE = -5,    /**< a xenstore request failed; see os_errno  */
    STUBDM_ETIMEDOUT = -6,    /**< the caller's deadline passed             */
    STUBDM_ECANCELED = -7,    /**< the operation was cancelled              */
    STUBDM_EDOMAIN_GONE = -8, /**< the stubdomain died or was destroyed     */
    STUBDM_EPROTO = -9,       /**< malformed or oversized data from the peer */
    STUBDM_EQMP = -10,        /**< QEMU answered with a QMP error object    */
    STUBDM_EVCHAN = -11,      /**< the QMP channel failed (vchan or socket) */
    STUBDM_EBUFFERFULL = -12, /**< a caller-supplied array is too small     */
    STUBDM_ERECURSIVE = -13,  /**< dispatch called from inside a callback   */
    STUBDM_ENOENT = -14,      /**< a node, domain or file does not exist    */
    STUBDM_EPERM = -15,       /**< permission denied (xenstore EACCES, ...) */
    STUBDM_EBUSY = -16,       /**< another client holds the QMP connection  */
    STUBDM_ELIMIT = -17,  /**< input exceeds a protocol or configured limit */
    STUBDM_ENOTSUP = -18, /**< not supported here (e.g. no Xen present)  */
    STUBDM_EXEN = -19,    /**< a hypervisor call failed; see os_errno   */
    STUBDM_ENOTSTUBDOM = -20, /**< the domain is not a stubdomain (destroy) */
    STUBDM_EAGAIN = -21,      /**< nothing to take yet (an empty queue)     */
} stubdm_err;

/**
 * A short, static, English description of an error code ("stubdomain died
 * or was destroyed").  Unknown codes give "unknown error".
 * @return a static string; never NULL.
 */
STUBDM_EXPORT const char *stubdm_strerror(int rc);

/**
 * The identifier of an error code ("STUBDM_ETIMEDOUT"), for logs and JSON.
 * @return a static string; never NULL ("STUBDM_E?" for unknown codes).
 */
STUBDM_EXPORT const char *stubdm_errname(int rc);

/* ------------------------------------------------------------------------
 * Context
 * ------------------------------------------------------------------------ */

typedef struct stubdm_ctx stubdm_ctx;

/**
 * Create a context.
 *
 * The ctx owns one xenstore connection, opened on first use with the real
 * libxenstore (so XENSTORED_PATH, XENSTORED_RUNDIR and /dev/xen/xenbus are
 * honoured exactly as for every other Xen tool).  Opening lazily means pure
 * functions (encoding, layout) work on machines without xenstore.
 *
 * @param[out] out  receives the new ctx; set to NULL on failure.
 * @return 0, STUBDM_EINVAL (out is NULL) or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_ctx_new(stubdm_ctx **out);

/**
 * Free a context and everything still attached to it.
 *
 * Pending operations are dropped without their callbacks being called,
 * fds are unwatched through the loop hooks and the timer is disarmed.
 * Teardowns are finished first, blocking (no loop turns after this): a
 * pending spawn's rollback, a failed spawn's rollback or a destroy still
 * running its hotplug scripts (each bounded by 20 s) complete inside this
 * call, so no domain and no node they own is left.
 * May be called from inside a library callback: the ctx is then freed when
 * the dispatching call returns, and no further callback is made.
 * @param ctx  the ctx, or NULL (no effect).
 */
STUBDM_EXPORT void stubdm_ctx_free(stubdm_ctx *ctx);

/**
 * In a child of fork(2) that does not exec: drop the ctx the child
 * inherited without disturbing the parent, which goes on using its copy.
 * Nothing is said on anything shared with the parent: no xenstore request
 * on the inherited connection (its watches stay the parent's), the QMP
 * lock is closed without LOCK_UN (the lock belongs to the file description
 * both processes share), no QMP, console or vchan peer is written to or
 * told anything, no hotplug script is killed, no spawn is rolled back (its
 * domain is the parent's), no bound socket path is unlinked, and the loop
 * hooks are not called (they are the parent's loop's).  The child's
 * descriptors are closed and the memory is freed, except what the parent
 * shares through Xen: a QMP vchan's mapping and its two descriptors stay
 * (closing one tells the server, as libxenvchan_close does).
 *
 * Afterwards the only valid call on the ctx, and on every object of it, is
 * stubdm_ctx_free (operation handles the caller holds: stubdm_op_free).
 * A child that needs the library again makes a new ctx, which opens its own
 * connections.  Called from inside a callback (the fork happened in one),
 * the descriptors are closed when stubdm_ctx_free's deferred free runs, at
 * the end of the dispatch; nothing is said either way.  Calling it twice
 * is harmless.  Not thread-safe (the child has one thread anyway).
 * @return 0 or STUBDM_EINVAL (NULL ctx).
 */
STUBDM_EXPORT int stubdm_ctx_postfork_child(stubdm_ctx *ctx);

/**
 * The detailed message of the last failure on this ctx ("" if none).
 * @return a string owned by the ctx, valid until the next call on it.
 */
STUBDM_EXPORT const char *stubdm_ctx_errmsg(const stubdm_ctx *ctx);

/**
 * The OS errno of the system or Xen library call behind the last failure
 * on this ctx, or 0 if the failure did not come from one.
 */
STUBDM_EXPORT int stubdm_ctx_os_errno(const stubdm_ctx *ctx);

/* ------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------ */

/**
 * Log levels.  The numeric values are those of xentoollog_level
 * (<xentoollog.h>), so a libxl embedder can forward messages to its
 * xentoollog_logger unchanged: see examples/adapters/stubdm-xtl.h.
 */
typedef enum stubdm_log_level {
    STUBDM_LOG_DEBUG = 1,
    STUBDM_LOG_VERBOSE = 2,
    STUBDM_LOG_DETAIL = 3,
    STUBDM_LOG_PROGRESS = 4,
    STUBDM_LOG_INFO = 5,
    STUBDM_LOG_NOTICE = 6,
    STUBDM_LOG_WARN = 7,
    STUBDM_LOG_ERROR = 8,
    STUBDM_LOG_CRITICAL = 9,
} stubdm_log_level;

/**
 * A log hook.
 * @param user      the pointer given to stubdm_ctx_set_log().
 * @param level     the message's level (>= the minimum level set).
 * @param os_errno  errno of the failing call the message is about, or 0
 *                  (xentoollog's errnoval, with 0 for -1).
 * @param context   the library module speaking ("xs", "wait", "qmp", ...),
 *                  xentoollog's "context" argument.
 * @param msg       the message, without a trailing newline.
 * The hook must not call back into the library on the same ctx.
 */
typedef void stubdm_log_fn(void *user, stubdm_log_level level, int os_errno,
                           const char *context, const char *msg);

/**
 * Install (or with fn == NULL remove) the ctx's log hook.  A new ctx is
 * silent.  Messages below min_level are not even formatted.
 */
STUBDM_EXPORT void stubdm_ctx_set_log(stubdm_ctx *ctx, stubdm_log_fn *fn,
                                      void *user, stubdm_log_level min_level);

/* ------------------------------------------------------------------------
 * Event-loop integration
 * ------------------------------------------------------------------------
 *
 * The library never blocks and never runs a loop of its own (except in the
 * explicitly blocking *_sync wrappers).  It needs the application to watch
 * a set of fds, which changes over time, and one timer per ctx.  There are
 * two ways to provide them; both are built on the same registry and may be
 * mixed on one ctx:
 *
 * 1. Push (curl-multi / c-ares style, for libxl, glib, libevent, epoll):
 *    install stubdm_loop_hooks.  The library calls watch_fd() whenever the
 *    events it wants on an fd change (events == 0: stop watching the fd),
 *    and set_timer() with the absolute CLOCK_MONOTONIC deadline, in
 *    milliseconds, at which the application must call
 *    stubdm_ctx_timer_fired() (-1: no deadline).  When a watched fd is
 *    ready, the application calls stubdm_ctx_fd_ready().
 *    examples/loop-epoll.c and examples/loop-glib.c are complete adapters.
 *
 * 2. Poll (for simple programs and tests): stubdm_ctx_poll_prepare() fills
 *    a struct pollfd array and a timeout, the program calls poll(2), then
 *    stubdm_ctx_poll_dispatch().  stubdm_ctx_run_once() does all three.
 *
 * Callbacks run only from the dispatch entry points (fd_ready, timer_fired,
 * poll_dispatch, run_once) and from the *_sync wrappers, never from the call
 * that started an operation.  Calling a dispatch entry point from inside a
 * callback on the same ctx is refused with STUBDM_ERECURSIVE.
 *
 * One dispatch does bounded work, so that a stubdomain flooding the loop
 * cannot starve the others: at most 1024 xenstore watch events are taken
 * (each watch's callback runs once for all of its events), 32 rounds of
 * each console's pump, 1 MiB read from each QMP connection, 4 reads from
 * each QMP proxy client.  What is left is resumed by a timer whose
 * deadline has already passed when the dispatch returns (set_timer() is
 * then called with it, or poll_prepare() returns a zero timeout): the
 * application calls stubdm_ctx_timer_fired() on its next iteration, after
 * serving its other fds and timers.  A timer armed during a dispatch never
 * runs within that dispatch, whatever its deadline.
 */

/** The version of struct stubdm_loop_hooks this header describes. */
#define STUBDM_LOOP_HOOKS_VERSION 1

typedef struct stubdm_loop_hooks {
    /** Must be STUBDM_LOOP_HOOKS_VERSION. */
    unsigned version;
    /**
     * Watch fd for events (POLLIN / POLLOUT bits of <poll.h>), replacing
     * what was asked before for that fd; events == 0 means stop watching
     * it (the fd may be closed right after this call returns).
     * @return 0, or a negative value to refuse.  A refused watch fails
     *         what needed it with STUBDM_EFAIL: the call that started an
     *         operation, or, during a dispatch, the operation or connection
     *         (a QMP connection fails its commands, a proxy drops the
     *         client).  A refused stop (events == 0), which nothing waits
     *         on, sets the ctx's error and logs a warning.
     */
    int (*watch_fd)(void *user, int fd, short events);
    /**
     * Arm the ctx's single timer for the absolute CLOCK_MONOTONIC time
     * deadline_ms (milliseconds; may be in the past: fire as soon as
     * possible), replacing any earlier deadline; -1 disarms it.
     * @return 0, or a negative value to refuse.  Outside a dispatch, the
     *         call that armed the timer fails with STUBDM_EFAIL (the timer
     *         is not armed).  At the end of a dispatch, with nobody to
     *         tell, the ctx's error is set, a warning logged, and the
     *         deadline offered again at the end of the next dispatch.
     */
    int (*set_timer)(void *user, int64_t deadline_ms);
} stubdm_loop_hooks;

/**
 * Install loop hooks.  The ctx immediately reports every fd it already
 * watches and its current deadline through the new hooks.  Passing NULL
 * hooks removes them (the poll interface keeps working).
 * @param hooks  copied; hooks->version must be STUBDM_LOOP_HOOKS_VERSION.
 * @return 0, STUBDM_EINVAL, or STUBDM_EFAIL if a hook refused.
 */
STUBDM_EXPORT int stubdm_ctx_set_loop(stubdm_ctx *ctx,
                                      const stubdm_loop_hooks *hooks,
                                      void *user);

/**
 * Tell the ctx that fd is ready.  Runs callbacks.
 * @param revents  the poll(2) revents bits seen (POLLIN, POLLOUT, POLLERR,
 *                 POLLHUP); extra readiness is harmless (non-blocking I/O).
 * @return 0; STUBDM_ERECURSIVE from inside a callback; an fd the ctx does
 *         not watch is ignored (it may have been unwatched meanwhile).
 */
STUBDM_EXPORT int stubdm_ctx_fd_ready(stubdm_ctx *ctx, int fd, short revents);

/**
 * Tell the ctx that its timer fired.  Spurious or early calls are harmless.
 * @return 0 or STUBDM_ERECURSIVE.
 */
STUBDM_EXPORT int stubdm_ctx_timer_fired(stubdm_ctx *ctx);

struct pollfd;

/**
 * Fill fds[0..*nfds_io) with the fds the ctx watches and *timeout_ms with
 * how long poll(2) may sleep (-1: forever, 0: don't sleep).
 * @param[in,out] nfds_io  in: capacity of fds; out: entries used, or, with
 *                         STUBDM_EBUFFERFULL, the capacity needed.
 * @return 0, STUBDM_EBUFFERFULL or STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_ctx_poll_prepare(stubdm_ctx *ctx, struct pollfd *fds,
                                          size_t *nfds_io, int *timeout_ms);

/**
 * Dispatch the results of poll(2) on an array from poll_prepare (entries
 * for fds the ctx does not own are ignored) and any expired deadline.
 * @return 0 or STUBDM_ERECURSIVE.
 */
STUBDM_EXPORT int stubdm_ctx_poll_dispatch(stubdm_ctx *ctx,
                                           const struct pollfd *fds,
                                           size_t nfds);

/**
 * One loop iteration: wait for the ctx's fds for at most max_wait_ms (-1:
 * no bound other than the ctx's own deadline), dispatch.  Equivalent to
 * prepare, poll(2), dispatch; it waits in an epoll set with a timerfd and
 * the eventfd of stubdm_ctx_wake, made on the first call and kept until
 * the ctx is freed (three descriptors, close-on-exec), or with poll(2)
 * while a regular file is watched.
 * @return 0, STUBDM_ERECURSIVE, STUBDM_ENOMEM, STUBDM_ESTATE after
 *         stubdm_ctx_postfork_child, or STUBDM_EFAIL if the wait failed
 *         (EINTR is not a failure: it returns 0).
 */
STUBDM_EXPORT int stubdm_ctx_run_once(stubdm_ctx *ctx, int max_wait_ms);

/*
 * Dispatch data.  A toolstack whose callbacks need its own per-dispatch
 * context (libxl's "egc", the event-generation context every libxl
 * callback takes) hands it to the _ext form of the entry point it calls;
 * every library callback the dispatch runs (operation completions, QMP
 * replies and events, progress reports, proxy and console callbacks) reads
 * it with stubdm_ctx_dispatch_data.  Optional: the plain forms pass NULL,
 * and so do the *_sync wrappers.
 */

/** stubdm_ctx_fd_ready with dispatch data. */
STUBDM_EXPORT int stubdm_ctx_fd_ready_ext(stubdm_ctx *ctx, int fd,
                                          short revents, void *dispatch_data);
/** stubdm_ctx_timer_fired with dispatch data. */
STUBDM_EXPORT int stubdm_ctx_timer_fired_ext(stubdm_ctx *ctx,
                                             void *dispatch_data);
/** stubdm_ctx_poll_dispatch with dispatch data. */
STUBDM_EXPORT int stubdm_ctx_poll_dispatch_ext(stubdm_ctx *ctx,
                                               const struct pollfd *fds,
                                               size_t nfds,
                                               void *dispatch_data);
/** stubdm_ctx_run_once with dispatch data. */
STUBDM_EXPORT int stubdm_ctx_run_once_ext(stubdm_ctx *ctx, int max_wait_ms,
                                          void *dispatch_data);

/**
 * The dispatch data of the dispatch running now: what the _ext entry point
 * running the calling callback was given; NULL outside a dispatch, and in
 * one entered through a plain (non-_ext) form.
 */
STUBDM_EXPORT void *stubdm_ctx_dispatch_data(const stubdm_ctx *ctx);

/**
 * Wake the ctx's stubdm_ctx_run_once (and so the loop of a *_sync call)
 * from any thread, or from a signal handler: a run_once waiting returns 0
 * after dispatching what is ready; one not waiting yet returns without
 * sleeping.  Thread-safe and async-signal-safe (lock-free atomics and one
 * write(2) to an eventfd run_once's first call makes; errno preserved).
 * The ctx must stay allocated during the call: the caller orders it
 * before stubdm_ctx_free.  Only run_once is woken; with loop hooks, the
 * application wakes its own loop.
 */
STUBDM_EXPORT void stubdm_ctx_wake(stubdm_ctx *ctx);

/**
 * Make the *_sync call blocked on the ctx return STUBDM_ECANCELED, from any
 * thread (thread-safe and async-signal-safe, as stubdm_ctx_wake): its
 * operation is cancelled as stubdm_op_cancel does (resources released,
 * rollback as for a cancellation) and the call returns.  One interrupt is
 * consumed by one *_sync call: the one running now, or, if none is, the
 * next one started on the ctx (which then returns STUBDM_ECANCELED at
 * once).  A plain stubdm_ctx_run_once is only woken.
 */
STUBDM_EXPORT void stubdm_ctx_interrupt(stubdm_ctx *ctx);

/**
 * The current CLOCK_MONOTONIC time in milliseconds, the clock of every
 * deadline the library reports.
 */
STUBDM_EXPORT int64_t stubdm_now_ms(void);

/* ------------------------------------------------------------------------
 * Asynchronous operations
 * ------------------------------------------------------------------------
 *
 * Functions that take time start an operation (stubdm_op) and return at
 * once.  The contract, for every kind of operation:
 *
 *  - A started operation completes exactly once: its callback is called
 *    once, with 0 or a negative STUBDM_E* code, unless the operation is
 *    freed or its ctx is freed first (then it is never called).
 *  - The callback is never called from inside the function that started
 *    the operation, even when the operation fails at once; it runs from a
 *    later dispatch (for the poll interface: the next run_once).
 *  - stubdm_op_cancel() is idempotent: on a pending operation it arranges
 *    completion with STUBDM_ECANCELED (from a later dispatch); on a
 *    completed one it does nothing.  An operation that must undo what it
 *    made (a spawn: its rollback, see stubdm_spawn) stays pending until
 *    that is done, and completes with STUBDM_ECANCELED then.
 *  - Handles: if the starter is given op_out == NULL, the operation is
 *    "floating" and the library frees it after its callback returns.
 *    Otherwise the caller owns *op_out and must stubdm_op_free() it, before
 *    or after completion; freeing a pending operation cancels it silently
 *    (no callback).
 *  - Freeing an operation, a QMP connection or the ctx from inside any
 *    callback is safe, including the callback of that very object.
 *
 * One shape for every start:
 *
 *   int stubdm_OBJECT_VERB(subject, inputs..., [progress,]
 *                          stubdm_done_fn *done, void *user,
 *                          [OBJECT **obj_out,] stubdm_op **op_out);
 *
 * done and user come right before the outputs; the object the start
 * creates (a QMP handle, a stubdomain) is required and comes first; the op
 * is always last and optional.  The blocking form is the same name with
 * _sync, without done, user and op_out.  Services that run until stopped
 * (stubdm_console_serve, stubdm_qmp_proxy_new) are objects, not
 * operations: their handle carries their state and freeing it stops them.
 */

typedef struct stubdm_op stubdm_op;

/**
 * Cancel a pending operation (see above).  NULL is ignored.
 */
STUBDM_EXPORT void stubdm_op_cancel(stubdm_op *op);

/**
 * Release an operation handle held by the caller.  A pending operation is
 * cancelled without its callback being called.  NULL is ignored.
 */
STUBDM_EXPORT void stubdm_op_free(stubdm_op *op);

/**
 * Whether the operation has completed (its callback has been called or is
 * about to be, in the current dispatch).
 */
STUBDM_EXPORT int stubdm_op_is_done(const stubdm_op *op);

/**
 * The operation's result: 0 or a negative code once done; STUBDM_ESTATE
 * while pending.
 */
STUBDM_EXPORT int stubdm_op_result(const stubdm_op *op);

/**
 * The detailed message of a failed operation (what it waited for, the last
 * value seen, the cause of a domain's death, ...); "" when it succeeded or
 * is pending.  Valid until the operation is freed.
 */
STUBDM_EXPORT const char *stubdm_op_errmsg(const stubdm_op *op);

/**
 * The generic completion callback.
 * @param op    the operation (valid during the call even if floating).
 * @param rc    0 or a negative STUBDM_E* code; details: stubdm_op_errmsg().
 * @param user  the pointer given when the operation was started.
 */
typedef void stubdm_done_fn(stubdm_op *op, int rc, void *user);

/* ------------------------------------------------------------------------
 * Node lists: what the library writes to xenstore, as data
 * ------------------------------------------------------------------------
 *
 * The xenstore contract is computed by pure functions into a node list
 * (path, value, permissions) before any I/O, so it can be printed
 * (stubdm-ctl layout), golden-tested and reviewed.  Writers do the I/O.
 */

typedef struct stubdm_nodes stubdm_nodes;

/** Number of nodes in the list. */
STUBDM_EXPORT size_t stubdm_nodes_count(const stubdm_nodes *nodes);

/** Absolute path of node i (i < count), borrowed from the list. */
STUBDM_EXPORT const char *stubdm_nodes_path(const stubdm_nodes *nodes,
                                            size_t i);

/**
 * Value of node i, borrowed from the list; *len_out (if not NULL) receives
 * its length, since values may contain any byte (they are NUL-terminated
 * for convenience too).
 */
STUBDM_EXPORT const char *stubdm_nodes_value(const stubdm_nodes *nodes,
                                             size_t i, size_t *len_out);

/**
 * Permissions set explicitly on node i, in xenstore-chmod syntax with the
 * owner first ("n0 r5"), or NULL when the node inherits its parent's
 * permissions.
 */
STUBDM_EXPORT const char *stubdm_nodes_perms(const stubdm_nodes *nodes,
                                             size_t i);

/** Free a node list.  NULL is ignored. */
STUBDM_EXPORT void stubdm_nodes_free(stubdm_nodes *nodes);

/* ------------------------------------------------------------------------
 * dm-argv: the QEMU command line in xenstore
 * ------------------------------------------------------------------------
 *
 * "args" below are QEMU's arguments without argv[0]: args[0] is stored as
 * dm-argv/001.  See docs/protocol.md for the format and why each refusal
 * exists: a real stubdomain lists the keys, sorts them as text and joins
 * the values with newlines, so an argument containing '\n' would become
 * two arguments and a 1000th argument would sort before the 101st.
 */

/** How the argv is stored. */
typedef enum stubdm_dm_argv_encoding {
    /** /vm/<uuid>/image/dm-argv/NNN, one key per argument (Xen >= 4.14). */
    STUBDM_DM_ARGV_DIRECTORY = 0,
    /** /vm/<uuid>/image/dmargs, one space-joined string (MiniOS stubdom). */
    STUBDM_DM_ARGV_MINIOS_DMARGS = 1,
    /** /vm/<uuid>/image/dmargs, one string with ESC (0x1b) separators (Qubes
     *  2017-2019, read with xenstore-read -R). */
    STUBDM_DM_ARGV_ESC_STRING = 2,
} stubdm_dm_argv_encoding;

/** Default bound on one xenstore value: xenstored's entry-size quota. */
#define STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN 2048
/** At most this many arguments in the directory encoding. */
#define STUBDM_DM_ARGV_MAX_ARGS 999

/**
 * Encode args into the nodes that dm-argv writing would create, without
 * any I/O.
 *
 * @param ctx            for the error message (may not be NULL).
 * @param vm_path        the guest's vm path, "/vm/<uuid>".
 * @param stubdom_domid  the stubdomain, which gets read access.
 * @param encoding       a stubdm_dm_argv_encoding.
 * @param max_value_len  bound on each value in bytes; 0 means
 *                       STUBDM_DM_ARGV_DEFAULT_MAX_VALUE_LEN.
 * @param args           the arguments (not argv[0]).
 * @param nargs          how many there are.
 * @param[out] out       receives the node list (free with
 *                       stubdm_nodes_free); NULL on failure.
 * @return 0; STUBDM_EINVAL for an empty argv, a bad vm_path or domid, or
 *         an argument the encoding cannot carry (a newline, a NUL-free
 *         argument containing the separator, ...); STUBDM_ELIMIT for an
 *         argument longer than max_value_len or more than
 *         STUBDM_DM_ARGV_MAX_ARGS arguments; STUBDM_ENOMEM.  The message names
 *         the offending argument by its index.
 */
STUBDM_EXPORT int stubdm_dm_argv_encode(stubdm_ctx *ctx, const char *vm_path,
                                        uint32_t stubdom_domid,
                                        stubdm_dm_argv_encoding encoding,
                                        size_t max_value_len,
                                        const char *const *args, size_t nargs,
                                        stubdm_nodes **out);

/**
 * Write args into xenstore, in one transaction retried on EAGAIN a bounded
 * number of times; keys left from an earlier start are removed in the same
 * transaction.  Refused input writes nothing.  Blocking (a few xenstore
 * round trips).
 * @return as stubdm_dm_argv_encode, plus STUBDM_EXENSTORE / STUBDM_EPERM
 *         for xenstore failures (the message names the path).
 */
STUBDM_EXPORT int stubdm_dm_argv_write(stubdm_ctx *ctx, const char *vm_path,
                                       uint32_t stubdom_domid,
                                       stubdm_dm_argv_encoding encoding,
                                       size_t max_value_len,
                                       const char *const *args, size_t nargs);

/**
 * Read the argv back the way a real stubdomain does (list the keys, sort
 * them as text, read the values), with bounded sizes.  For the legacy
 * encodings, split the single string as the stubdomain would.
 * @param[out] args_out   a NULL-terminated array of strings; free it with
 *                        stubdm_dm_argv_free().
 * @param[out] nargs_out  number of arguments (may be NULL).
 * @return 0, STUBDM_ENOENT (no argv stored), STUBDM_EXENSTORE, STUBDM_EPERM,
 *         STUBDM_ELIMIT, STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_dm_argv_read(stubdm_ctx *ctx, const char *vm_path,
                                      stubdm_dm_argv_encoding encoding,
                                      char ***args_out, size_t *nargs_out);

/** Free an array from stubdm_dm_argv_read().  NULL is ignored. */
STUBDM_EXPORT void stubdm_dm_argv_free(char **args);

/* ------------------------------------------------------------------------
 * The xenstore contract of a stubdomain start
 * ------------------------------------------------------------------------
 *
 * Everything a stubdomain needs in xenstore besides its own domain-builder
 * nodes: dm-argv, target, device-model-domid, the device-model directory
 * it writes "state" and "qmp-vchan" into, its consoles and, optionally, the
 * guest's hvmloader keys.  Configure a stubdm_contract with the setters,
 * then compute (stubdm_contract_layout), write (stubdm_contract_write) or
 * remove (stubdm_contract_remove) it.
 */

typedef struct stubdm_contract stubdm_contract;

/** Who serves the stubdomain's consoles (the frontend "type" key). */
typedef enum stubdm_console_backend {
    /** a QEMU in dom0 ("ioemu"), as libxl */
    STUBDM_CONSOLE_BACKEND_IOEMU = 0,
    /** xenconsoled ("xenconsoled") */
    STUBDM_CONSOLE_BACKEND_XENCONSOLED = 1,
    /** this library's own backend ("libstubdm") */
    STUBDM_CONSOLE_BACKEND_LIBSTUBDM = 2,
} stubdm_console_backend;

/** Console roles, by console number. */
#define STUBDM_CONSOLE_LOG 0     /**< QEMU and stubdomain log            */
#define STUBDM_CONSOLE_SAVE 1    /**< QEMU device state, out             */
#define STUBDM_CONSOLE_RESTORE 2 /**< QEMU device state, in (restore)    */
#define STUBDM_CONSOLE_SERIAL0 3 /**< first guest serial                 */
/** At most this many guest serials. */
#define STUBDM_CONSOLE_MAX_SERIALS 16

/**
 * Create an empty contract.  Defaults: toolstack domid 0, console backend
 * IOEMU, directory argv encoding, max value length 2048, not restoring, no
 * serials, no hvmloader keys.
 * @return 0, STUBDM_EINVAL or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_contract_new(stubdm_contract **out);

/** Free a contract.  NULL is ignored. */
STUBDM_EXPORT void stubdm_contract_free(stubdm_contract *c);

/** Set the guest (target) and stubdomain domids (required). */
STUBDM_EXPORT int stubdm_contract_set_domains(stubdm_contract *c,
                                              uint32_t guest_domid,
                                              uint32_t stubdom_domid);

/**
 * Set the guest's vm path ("/vm/<uuid>").  If unset, write() reads it from
 * /local/domain/<guest>/vm, as libxl does, and layout() refuses.
 */
STUBDM_EXPORT int stubdm_contract_set_vm_path(stubdm_contract *c,
                                              const char *vm_path);

/** Set the QEMU arguments (copied; not argv[0]). */
STUBDM_EXPORT int stubdm_contract_set_args(stubdm_contract *c,
                                           const char *const *args,
                                           size_t nargs);

/** Choose the argv encoding and the per-value bound (0: default). */
STUBDM_EXPORT int stubdm_contract_set_argv_encoding(
    stubdm_contract *c, stubdm_dm_argv_encoding encoding,
    size_t max_value_len);

/**
 * Choose who serves the consoles (the frontend "type" of each).  With
 * STUBDM_CONSOLE_BACKEND_XENCONSOLED the layout has console 0 only:
 * xenconsoled serves nothing else, and a Linux stubdomain would wait 25 s at
 * boot for each console nobody serves; an output set for console 1, 2 or a
 * serial then makes layout/write fail with STUBDM_EINVAL (docs/protocol.md
 * section 4).
 */
STUBDM_EXPORT int stubdm_contract_set_console_backend(
    stubdm_contract *c, stubdm_console_backend backend);

/**
 * Set console n's "output" (QEMU chardev syntax, e.g. "file:/var/log/x",
 * "pty", "pipe:/path").  n = 0 (log), 1 (save), 2 (restore: setting it
 * means "restoring"), 3.. (serials, in order, without gaps).  NULL output
 * removes the console (n >= 3) or its output key.
 */
STUBDM_EXPORT int stubdm_contract_set_console_output(stubdm_contract *c,
                                                     unsigned n,
                                                     const char *output);

/**
 * Console 0's ring and event channel, as returned by the domain builder
 * (written as ring-ref and port in the console 0 frontend).  Optional.
 */
STUBDM_EXPORT int stubdm_contract_set_console0_ring(stubdm_contract *c,
                                                    uint64_t ring_mfn,
                                                    uint32_t port);

/**
 * Write the guest's hvmloader keys as libxl does for qemu-xen: bios
 * ("seabios" or "ovmf") and allow-memory-relocate.  bios NULL: none.
 */
STUBDM_EXPORT int stubdm_contract_set_hvmloader(stubdm_contract *c,
                                                const char *bios,
                                                int allow_memory_relocate);

/** The domid of the toolstack (console backends, vchan peer); default 0. */
STUBDM_EXPORT int stubdm_contract_set_toolstack_domid(stubdm_contract *c,
                                                      uint32_t domid);

/** Console n (0 .. 2 + STUBDM_CONSOLE_MAX_SERIALS) in a console selection. */
#define STUBDM_CONTRACT_CONSOLE(n) (1u << (n))
/** Every console: the default selection. */
#define STUBDM_CONTRACT_CONSOLES_ALL 0x7ffffu
/** No console: the toolstack writes (and serves) them all itself. */
#define STUBDM_CONTRACT_CONSOLES_NONE 0u

/**
 * Choose the consoles the contract writes, layout() shows and remove()
 * removes: a mask of STUBDM_CONTRACT_CONSOLE(n) bits (default
 * STUBDM_CONTRACT_CONSOLES_ALL).  Of the selected consoles, those that
 * exist for the backend and outputs (docs/protocol.md section 4) are
 * written as before; an unselected console is the toolstack's: its
 * frontend (/local/domain/S/console for 0, .../device/console/N) and its
 * backend (/local/domain/T/backend/console/S/N) are neither written nor
 * removed.  A toolstack keeping its own console backend (libxl's dom0
 * QEMU, xenconsoled) selects none, or what it leaves to the library.  A
 * Linux stubdomain numbers its hvc devices by probe order, so a toolstack
 * writing some consoles itself keeps the numbering whole (console 2 before
 * serials).  An output set for an unselected console makes layout() and
 * write() fail with STUBDM_EINVAL.
 * @return 0 or STUBDM_EINVAL (NULL c, bits beyond the last console).
 */
STUBDM_EXPORT int stubdm_contract_set_consoles(stubdm_contract *c,
                                               unsigned mask);

/**
 * Whether the contract writes /libxl/<guest>/dm-version = "qemu_xen"
 * (default: yes, for libxl's tools, docs/protocol.md).  0: the toolstack
 * keeps that node itself (libxl writes it before the stubdomain starts and
 * reads it after the stubdomain is gone, in dm_destroy_cb): the contract
 * neither writes nor removes it.  @return 0 or STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_contract_set_dm_version(stubdm_contract *c,
                                                 int write);

/** The adoption node's key below /local/domain/<guest>/image/. */
#define STUBDM_SERVICE_KEY "device-model-service"
/** The adoption node's value for STUBDM_SERVICE_ADOPT. */
#define STUBDM_SERVICE_VALUE "libstubdm"
/** The adoption node's value for STUBDM_SERVICE_SERVE_ONLY. */
#define STUBDM_SERVICE_VALUE_SERVE_ONLY "libstubdm-serve-only"

/** What a long-lived service (stubdmd) is asked to do for a stubdomain:
 *  stubdm_contract_set_service, stubdm_spawn_opts_set_service. */
enum stubdm_service_mode {
    /** No service: the caller serves the consoles and holds QMP. */
    STUBDM_SERVICE_NONE = 0,
    /** Serve it, and once it dies (crashed, shut down or destroyed by
     *  anyone) tear down what is left: the domain, its backends with
     *  their hotplug scripts, the contract
     *  (stubdm_stubdom_destroy_by_domid).  For a stubdomain the library
     *  spawned, whose spawner may exit. */
    STUBDM_SERVICE_ADOPT = 1,
    /** Serve it only: the toolstack that built the stubdomain tears it
     *  down, also after it crashed (libxl destroys a crashed stubdomain
     *  with its devices in its own failure path and in `xl destroy`; two
     *  teardowns at once would run the block script's remove twice).  The
     *  service removes only what it made itself (its QMP sockets, the
     *  serials' tty nodes). */
    STUBDM_SERVICE_SERVE_ONLY = 2,
};

/**
 * Ask a long-lived service (stubdmd) to adopt the stubdomain: serve its
 * consoles and hold its QMP connection for the toolstack, which may exit.
 * With mode STUBDM_SERVICE_ADOPT or STUBDM_SERVICE_SERVE_ONLY the contract
 * writes /local/domain/<guest>/image/device-model-service =
 * STUBDM_SERVICE_VALUE or STUBDM_SERVICE_VALUE_SERVE_ONLY
 * (STUBDM_SERVICE_KEY), inheriting [n0, rG]: neither the guest nor the
 * stubdomain can forge it, and a service adopts only a dom0-owned node
 * (docs/protocol.md section 2a).  Needs the console backend
 * STUBDM_CONSOLE_BACKEND_LIBSTUBDM: layout() and write() refuse any other
 * with STUBDM_EINVAL.  remove() removes the node whatever this setting.
 * Default: STUBDM_SERVICE_NONE.
 * @return 0, or STUBDM_EINVAL (c NULL, mode not an enum stubdm_service_mode).
 */
STUBDM_EXPORT int stubdm_contract_set_service(stubdm_contract *c, int mode);

/**
 * Compute every node write() would create, in write order, without I/O.
 * @return 0, STUBDM_EINVAL (incomplete or inconsistent contract; the
 *         message names the field), the dm-argv refusals, STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_contract_layout(stubdm_ctx *ctx,
                                         const stubdm_contract *c,
                                         stubdm_nodes **out);

/**
 * Write the contract: all nodes in one transaction (retried on EAGAIN a
 * bounded number of times), then the xenstore target relation
 * (xs_set_target).  Every failure is reported, and a failed write leaves
 * nothing behind.  Blocking.
 * @return 0 or a negative code; the message names the failing path.
 */
STUBDM_EXPORT int stubdm_contract_write(stubdm_ctx *ctx,
                                        const stubdm_contract *c);

/**
 * Remove exactly what write() of this contract created, and what the
 * stubdomain wrote below the directories it owns there, in one
 * transaction.  Missing nodes are not an error; removing twice is fine.
 * Blocking.  It removes:
 *   - V/image/dm-argv and V/image/dmargs (V: the vm path, or the dom0-owned
 *     /local/domain/G/vm; when that node is gone the argv is left alone
 *     and a warning logged);
 *   - /libxl/G/dm-version, unless stubdm_contract_set_dm_version(c, 0);
 *   - /local/domain/G/image/device-model-domid, /local/domain/S/target;
 *   - /local/domain/G/image/device-model-service (whether or not this
 *     contract asks for a service);
 *   - /local/domain/G/hvmloader/{bios,allow-memory-relocate} if this
 *     contract sets a bios;
 *   - /local/domain/S/device-model/G, whole (the stubdomain's state and
 *     qmp-vchan nodes);
 *   - for each console selected (stubdm_contract_set_consoles, default
 *     all 19), its frontend and backend directories, whole;
 *   - then, only when left empty, the containers the write may have
 *     created: /local/domain/T/backend/console/S,
 *     /local/domain/T/backend/console, /local/domain/S/device/console,
 *     /local/domain/S/device-model, /local/domain/G/image and (with a
 *     bios) /local/domain/G/hvmloader.
 * Nothing else: not V, V/image, /local/domain/S, /local/domain/G,
 * /libxl/G or anything in them a toolstack wrote (its dm-version with
 * set_dm_version(c, 0), the console directories it keeps), so a toolstack
 * reading its own nodes after the stubdomain is gone still finds them.
 * The xenstore target relation (xs_set_target) has no undo: it ends when
 * the stubdomain is released.
 */
STUBDM_EXPORT int stubdm_contract_remove(stubdm_ctx *ctx,
                                         const stubdm_contract *c);

/* ------------------------------------------------------------------------
 * Waiting for the device model
 * ------------------------------------------------------------------------ */

/**
 * Wait until /local/domain/<stubdom>/device-model/<guest>/state reads
 * "running".
 *
 * Watch-driven (no polling); also watches the special path
 * "\@releaseDomain" so that the death of the stubdomain ends the wait
 * within milliseconds.  The ctx holds one such watch for all its waits,
 * QMP opens and spawns, kept while any of them is pending: every one sees
 * its own stubdomain's death, whatever died before.  Completion codes:
 *   0                    "running" was read;
 *   STUBDM_ETIMEDOUT     timeout_ms passed; the message says how long it
 *                        waited and the last state value seen;
 *   STUBDM_EDOMAIN_GONE  the stubdomain crashed, shut down or was destroyed
 *                        (the message says which, when known);
 *   STUBDM_EXENSTORE     xenstore failed;
 *   STUBDM_ECANCELED     cancelled.
 * Values other than "running" are ignored (logged at debug); the value is
 * written by the stubdomain, so it is read with a size bound.
 *
 * @param timeout_ms  > 0; there is no default: the caller chooses.
 * @param done        called once (see "Asynchronous operations").
 * @param[out] op_out the operation handle, or NULL for a floating op.
 * @return 0 if started (done will be called), or STUBDM_EINVAL/ENOMEM
 *         (nothing started, done will not be called).
 */
STUBDM_EXPORT int stubdm_dm_wait_running(stubdm_ctx *ctx,
                                         uint32_t stubdom_domid,
                                         uint32_t guest_domid, int timeout_ms,
                                         stubdm_done_fn *done, void *user,
                                         stubdm_op **op_out);

/**
 * Blocking form of stubdm_dm_wait_running, running the ctx's poll loop until
 * the wait completes.  Other operations on the ctx progress meanwhile.
 * @return the completion code; the message is in stubdm_ctx_errmsg().
 */
STUBDM_EXPORT int stubdm_dm_wait_running_sync(stubdm_ctx *ctx,
                                              uint32_t stubdom_domid,
                                              uint32_t guest_domid,
                                              int timeout_ms);

/* ------------------------------------------------------------------------
 * QMP: the connection to the QEMU in a stubdomain
 * ------------------------------------------------------------------------
 *
 * The stubdomain serves QMP over one libxenvchan channel at
 * /local/domain/<stubdom>/device-model/<guest>/qmp-vchan, which accepts a
 * single client.  The library is that client, with no helper process: on a
 * Xen host it speaks libxenvchan directly; on the simulated host (no
 * hypervisor) a unix socket stands in for the rings (docs/qmp.md gives the
 * exact mapping).
 *
 * Sharing.  Within one ctx there is at most one connection per
 * (stubdom, guest); every stubdm_qmp handle opened for that pair shares it
 * (reference counted).  Each handle's commands and subscriptions are its
 * own.  Across processes a lock file, flock()ed while the connection
 * exists, keeps a second client away (STUBDM_EBUSY) or makes it wait, as
 * the caller chooses.
 *
 * Trust.  Everything QEMU sends is treated as hostile: messages are bounded
 * in size and nesting, a silent peer runs into the open or command
 * timeout, and an unparsable stream ends the connection with STUBDM_EPROTO.
 *
 * Lifecycle of a handle:
 *
 *   open ---> connecting ---> ready ---> lost (connection failed; commands
 *              |   (done: 0)     |        failed once with STUBDM_EVCHAN)
 *              |                 |          |
 *              +--> failed <-----+  stubdm_qmp_reconnect() --> connecting
 *                  (done: rc)
 *
 * stubdm_qmp_free() is valid in every state.
 */

typedef struct stubdm_qmp stubdm_qmp;
typedef struct stubdm_qmp_opts stubdm_qmp_opts;
typedef struct stubdm_qmp_reply stubdm_qmp_reply;
typedef struct stubdm_qmp_event stubdm_qmp_event;
typedef struct stubdm_qmp_sub stubdm_qmp_sub;

/** How to reach the stubdomain's QMP server. */
typedef enum stubdm_qmp_transport {
    /** libxenvchan when a hypervisor is present, else the simulated host. */
    STUBDM_QMP_TRANSPORT_AUTO = 0,
    /** libxenvchan (a real Xen host). */
    STUBDM_QMP_TRANSPORT_VCHAN = 1,
    /** The simulated host: <sim dir>/qmp-vchan/<stubdom>.<guest>.sock. */
    STUBDM_QMP_TRANSPORT_SIMULATED = 2,
} stubdm_qmp_transport;

/** What to do when another process holds the QMP lock. */
typedef enum stubdm_qmp_lock_mode {
    STUBDM_QMP_LOCK_FAIL = 0, /**< fail the open with STUBDM_EBUSY       */
    STUBDM_QMP_LOCK_WAIT = 1, /**< retry (on a timer) until the open
                                   timeout, then STUBDM_ETIMEDOUT         */
    STUBDM_QMP_LOCK_NONE = 2, /**< take no lock (the caller serialises)  */
    /** libxl's qmp-socket-lock protocol, waiting as WAIT does
     *  (stubdm_qmp_opts_set_libxl_lock) */
    STUBDM_QMP_LOCK_LIBXL = 3,
} stubdm_qmp_lock_mode;

/** XEN_LIB_DIR of a libxl built with the default paths (Debian's too). */
#define STUBDM_QMP_LIBXL_LIB_DIR "/var/lib/xen"

/** QEMU's in-band queue holds at most 8 commands: never more in flight. */
#define STUBDM_QMP_MAX_IN_FLIGHT 8
/** Default bound on one message from QEMU (bytes). */
#define STUBDM_QMP_DEFAULT_MAX_MESSAGE (16u << 20)
/** Default bound on the nesting of one message from QEMU. */
#define STUBDM_QMP_DEFAULT_MAX_DEPTH 64u
/** Default bound on commands waiting in the library behind the 8. */
#define STUBDM_QMP_DEFAULT_MAX_QUEUED 256u
/** Default time allowed for connect + greeting + capabilities. */
#define STUBDM_QMP_DEFAULT_OPEN_TIMEOUT_MS 10000

/**
 * Create connection options with the defaults: transport AUTO, sim dir from
 * $STUBDM_SIM_DIR or else the directory of $XENSTORED_PATH, open timeout
 * STUBDM_QMP_DEFAULT_OPEN_TIMEOUT_MS, no reconnect marker, no OOB, the
 * STUBDM_QMP_DEFAULT_* limits, lock mode FAIL at the default lock path
 * (docs/qmp.md: /run/xen/libstubdm/qmp-<stubdom>-<guest>.lock on Xen,
 * <sim dir>/qmp-vchan/<stubdom>.<guest>.lock when simulated).
 * @return 0, STUBDM_EINVAL (out is NULL) or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_opts_new(stubdm_qmp_opts **out);
/** Free options.  NULL is ignored. */
STUBDM_EXPORT void stubdm_qmp_opts_free(stubdm_qmp_opts *opts);
/** Choose the transport.  @return 0 or STUBDM_EINVAL. */
STUBDM_EXPORT int stubdm_qmp_opts_set_transport(stubdm_qmp_opts *opts,
                                                stubdm_qmp_transport t);
/** The simulated host's runtime directory (copied); NULL: the default. */
STUBDM_EXPORT int stubdm_qmp_opts_set_sim_dir(stubdm_qmp_opts *opts,
                                              const char *dir);
/** Bound on connect + greeting + negotiation (and lock wait), > 0 ms. */
STUBDM_EXPORT int stubdm_qmp_opts_set_open_timeout(stubdm_qmp_opts *opts,
                                                   int timeout_ms);
/** Send Qubes' reconnect marker (one 0x01 byte) first on every
 *  connection; only for a Qubes vchan-socket-proxy --reconnect-marker=1. */
STUBDM_EXPORT int stubdm_qmp_opts_set_reconnect_marker(stubdm_qmp_opts *opts,
                                                       int on);
/** Enable out-of-band execution when QEMU offers it (off by default). */
STUBDM_EXPORT int stubdm_qmp_opts_set_oob(stubdm_qmp_opts *opts, int on);
/**
 * Limits on what QEMU sends and on the local queue.
 * @param max_message  bytes of one message (>= 4096), 0: default.
 * @param max_depth    nesting of one message (1..1024), 0: default.
 * @param max_queued   commands waiting behind the 8 in flight, per
 *                     connection; 0: default.  Beyond it execute() fails
 *                     with STUBDM_ELIMIT.
 * @return 0 or STUBDM_EINVAL (out of range).
 */
STUBDM_EXPORT int stubdm_qmp_opts_set_limits(stubdm_qmp_opts *opts,
                                             size_t max_message,
                                             unsigned max_depth,
                                             size_t max_queued);
/**
 * The cross-process lock: its path (copied; NULL: the default) and mode.
 * STUBDM_QMP_LOCK_LIBXL needs an absolute path, the one libxl locks (as
 * stubdm_qmp_opts_set_libxl_lock builds it).
 * @return 0, STUBDM_EINVAL or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_opts_set_lock(stubdm_qmp_opts *opts,
                                           const char *path,
                                           stubdm_qmp_lock_mode mode);
/**
 * Lock as libxl's own QMP clients (libxl__ev_qmp) do, so that a library
 * connection and libxl never talk to one QEMU at the same time: mode
 * STUBDM_QMP_LOCK_LIBXL on <lib_dir>/userdata-l.<guest>.<guest_uuid>.
 * qmp-socket-lock (libxl__userdata_path of the guest, whose QMP libxl
 * reaches through its vchan-socket-proxy), following libxl's protocol:
 * flock(LOCK_EX) the file; then the inode locked must still be the one at
 * the path (fstat against stat), else start again; release by unlinking
 * the file, then LOCK_UN, then close.  The library never blocks in flock:
 * a busy lock is retried every 100 ms until the open timeout
 * (STUBDM_ETIMEDOUT "waiting for the QMP lock at ...").  Unlike the
 * library's own lock, the directory is not created.
 *
 * Scope: the lock is held for the life of the connection, from before the
 * connect until it fails or its last handle is freed, which is the scope
 * libxl gives its own (one libxl__ev_qmp: lock, connect, its commands,
 * dispose).  libxl waits for the lock without a bound of its own (a
 * forked child blocked in flock; only an operation's own timer, where it
 * has one, ends the wait), so every libxl QMP user of that guest (save,
 * PCI and disk changes, xl qemu-monitor-command, ...) stalls for as long
 * as a library handle is open.  Next to libxl, hold a connection per
 * exchange: open, execute, stubdm_qmp_free, and keep no long-lived handle
 * (no proxy, no event subscription that must outlive the exchange).
 *
 * @param guest_uuid  the guest's UUID as libxl prints it (LIBXL_UUID_FMT:
 *                    36 characters, lower-case hex); copied.
 * @param lib_dir     libxl's XEN_LIB_DIR (absolute; copied), NULL for
 *                    STUBDM_QMP_LIBXL_LIB_DIR.
 * @return 0, STUBDM_EINVAL (NULL opts, a UUID not in libxl's spelling, a
 *         relative lib_dir) or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_opts_set_libxl_lock(stubdm_qmp_opts *opts,
                                                 const char *guest_uuid,
                                                 const char *lib_dir);

/**
 * Open a handle on the QMP connection of (stubdom, guest).
 *
 * If the ctx already has that connection, the handle shares it (and the
 * connection-level options of opts are ignored: transport, sim dir, marker,
 * OOB, limits and lock belong to the connection and come from its first
 * opener; the open timeout is per handle).  Otherwise the connection is
 * made: take the lock; wait (xenstore watch) for the stubdomain's
 * qmp-vchan/ring-ref and event-channel; connect; discard whatever an
 * earlier client left in the ring until a well-formed greeting; send
 * qmp_capabilities (with "oob" if offered and asked for); wait for its
 * answer.  The stubdomain dying meanwhile ends it at once.
 *
 * done is called once (see "Asynchronous operations") with:
 *   0                    ready: commands may be executed;
 *   STUBDM_ETIMEDOUT     the open timeout passed (the message says in
 *                        which step: lock, ring-ref, greeting, negotiation);
 *   STUBDM_EBUSY         another process holds the lock (mode FAIL);
 *   STUBDM_EDOMAIN_GONE  the stubdomain died or was destroyed;
 *   STUBDM_EPROTO        QEMU sent something malformed or over a limit;
 *   STUBDM_EQMP          QEMU refused qmp_capabilities;
 *   STUBDM_EVCHAN        the channel failed or was closed;
 *   STUBDM_ECANCELED     the handle was freed first (done is then called
 *                        from a later dispatch with q already invalid:
 *                        don't use q in it);
 *   STUBDM_EXENSTORE, STUBDM_EPERM, STUBDM_ENOMEM.
 * A failed handle stays valid: free it or stubdm_qmp_reconnect() it.
 *
 * @param opts     NULL for the defaults; copied, may be freed at once.
 * @param done     may be NULL (then watch the op or stubdm_qmp_is_ready()).
 * @param[out] q_out   the handle (required), set before return (also on
 *                     failure, to NULL).  Free it with stubdm_qmp_free().
 * @param[out] op_out  the open's operation, or NULL for a floating op.
 *                     Cancelling or freeing it ends the open with
 *                     STUBDM_ECANCELED and leaves q as a failed handle
 *                     (reconnect it or free it); freeing q first completes
 *                     it with STUBDM_ECANCELED.
 * @return 0 if started, or STUBDM_EINVAL / STUBDM_ENOMEM (nothing started,
 *         done not called).
 */
STUBDM_EXPORT int stubdm_qmp_open(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                  uint32_t guest_domid,
                                  const stubdm_qmp_opts *opts,
                                  stubdm_done_fn *done, void *user,
                                  stubdm_qmp **q_out, stubdm_op **op_out);

/**
 * Blocking form of stubdm_qmp_open: runs the ctx's poll loop until the
 * handle is ready or failed.  On failure *q_out is NULL (the handle was
 * closed) and the message is in stubdm_ctx_errmsg().
 * @return the completion code of the open.
 */
STUBDM_EXPORT int stubdm_qmp_open_sync(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                       uint32_t guest_domid,
                                       const stubdm_qmp_opts *opts,
                                       stubdm_qmp **q_out);

/**
 * Reconnect after the connection was lost or the open failed: shared
 * handles of the same connection all see it come back.  done and op_out
 * as for stubdm_qmp_open.
 * Safe from any callback, including one of this connection called in the
 * middle of a read (an event callback that sees a write fail, say): the
 * read stops at once and the rest of what was read is dropped with the
 * old connection, never fed to the new one.
 * @return 0 if started; STUBDM_ESTATE if the handle is connecting or
 *         ready (nothing to do); STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_qmp_reconnect(stubdm_qmp *q, stubdm_done_fn *done,
                                       void *user, stubdm_op **op_out);

/**
 * Be told when q's connection is lost: done is called once (see
 * "Asynchronous operations") when the connection, having been ready, goes
 * down, with the cause as a command in flight would see it before its own
 * mapping (STUBDM_EVCHAN: the channel failed or the peer closed it;
 * STUBDM_EPROTO; STUBDM_EDOMAIN_GONE; STUBDM_ETIMEDOUT: wedged, commands
 * unanswered; STUBDM_ENOMEM) and the connection's message; or with
 * STUBDM_ECANCELED when q is freed first.  An open or reconnect that
 * fails is reported to its own done, not here.  One watch sees one loss:
 * watch again (from done, say) for the next.  For a caller that keeps a
 * connection up (stubdm_qmp_reconnect after a loss) without a command of
 * its own in flight to learn of it.
 * @param[out] op_out  the op, or NULL for a floating op; freeing it while
 *                     pending ends the watch (no callback).
 * @return 0; STUBDM_EINVAL (NULL or freed q); STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_watch_lost(stubdm_qmp *q, stubdm_done_fn *done,
                                        void *user, stubdm_op **op_out);

/**
 * Free a handle.  Its pending commands complete with STUBDM_ECANCELED
 * (their callbacks receive q == NULL), a pending open and its loss
 * watches with STUBDM_ECANCELED, its subscriptions are dropped.  The
 * connection closes (and the lock is released) with its last handle.  Safe
 * from any callback.  NULL is ignored.  Freeing the ctx closes every handle of
 * it; handles must not be used afterwards.
 */
STUBDM_EXPORT void stubdm_qmp_free(stubdm_qmp *q);

/** 1 if the handle's connection is ready for commands, else 0. */
STUBDM_EXPORT int stubdm_qmp_is_ready(const stubdm_qmp *q);

/**
 * QEMU's version from its greeting.
 * @return 0, or STUBDM_ESTATE before the greeting was received.
 */
STUBDM_EXPORT int stubdm_qmp_qemu_version(const stubdm_qmp *q, int *major,
                                          int *minor, int *micro);

/** 1 if out-of-band execution was negotiated, else 0. */
STUBDM_EXPORT int stubdm_qmp_is_oob_enabled(const stubdm_qmp *q);

/**
 * The greeting as QEMU sent it (JSON text), or NULL before it arrived.
 * Valid until the connection is lost or closed.
 */
STUBDM_EXPORT const char *stubdm_qmp_greeting_json(const stubdm_qmp *q);

/**
 * A command's completion.
 * @param q      the handle, or NULL if it was freed (rc ECANCELED).
 * @param op     the command's operation (valid during the call).
 * @param rc     0: QEMU returned success; STUBDM_EQMP: QEMU returned an
 *               error (class and description in reply); STUBDM_ETIMEDOUT:
 *               no reply within timeout_ms; STUBDM_EVCHAN: connection lost
 *               before the reply; STUBDM_EPROTO: the connection was ended
 *               by a protocol violation; STUBDM_ECANCELED.
 * @param reply  with rc 0 or STUBDM_EQMP, a view of QEMU's message, valid
 *               only during the call; NULL otherwise.
 */
typedef void stubdm_qmp_reply_fn(stubdm_qmp *q, stubdm_op *op, int rc,
                                 const stubdm_qmp_reply *reply, void *user);

/**
 * Execute a QMP command.
 *
 * The library chooses the "id" (an integer, unique on the connection) and
 * matches replies strictly by it; replies carrying an unknown id are
 * dropped and logged.  At most STUBDM_QMP_MAX_IN_FLIGHT commands of the
 * connection are on the wire at once; more wait in the library in FIFO
 * order, up to the connection's max_queued.  A command that times out fails
 * with STUBDM_ETIMEDOUT; if it was already sent, its id stays reserved and
 * a late reply is dropped quietly (docs/qmp.md, "Timeouts").
 *
 * @param command    the command name ("query-status"); ASCII letters,
 *                   digits, '-' and '_' only.
 * @param args_json  the "arguments" object as JSON text, or NULL.
 *                   Validated (must be one JSON object).
 * @param timeout_ms > 0, counted from this call.
 * @param cb         called once (see "Asynchronous operations").
 * @param[out] op_out  the operation handle, or NULL for a floating op.
 * @return 0 if started; STUBDM_EINVAL (bad command or arguments);
 *         STUBDM_ESTATE (the handle is not ready); STUBDM_ELIMIT (the
 *         queue is full); STUBDM_ENOMEM.  Nothing is called back on error.
 */
STUBDM_EXPORT int stubdm_qmp_execute(stubdm_qmp *q, const char *command,
                                     const char *args_json, int timeout_ms,
                                     stubdm_qmp_reply_fn *cb, void *user,
                                     stubdm_op **op_out);

/**
 * Blocking form of stubdm_qmp_execute.
 * @param[out] reply_json_out  (may be NULL) with 0 or STUBDM_EQMP, QEMU's
 *             whole reply message; free with free().  NULL otherwise.
 * @return the completion code; the message is in stubdm_ctx_errmsg()
 *         (for STUBDM_EQMP: "<class>: <desc>").
 */
STUBDM_EXPORT int stubdm_qmp_execute_sync(stubdm_qmp *q, const char *command,
                                          const char *args_json,
                                          int timeout_ms,
                                          char **reply_json_out);

/** The whole reply message as QEMU sent it (JSON text). */
STUBDM_EXPORT const char *stubdm_qmp_reply_json(const stubdm_qmp_reply *r);
/** The "return" member as JSON text; NULL for an error reply. */
STUBDM_EXPORT const char *stubdm_qmp_reply_return_json(
    const stubdm_qmp_reply *r);
/** error.class ("CommandNotFound", "GenericError", ...); NULL on success. */
STUBDM_EXPORT const char *stubdm_qmp_reply_error_class(
    const stubdm_qmp_reply *r);
/** error.desc, a human-readable sentence; NULL on success. */
STUBDM_EXPORT const char *stubdm_qmp_reply_error_desc(
    const stubdm_qmp_reply *r);

/**
 * An event callback.  Events are delivered from dispatch as they are read,
 * never buffered by the library: a slow subscriber slows reading, and the
 * channel's own flow control holds QEMU back, so a flood cannot grow
 * memory.  ev is valid only during the call.  (Without callbacks: the
 * event queue, stubdm_qmp_events_enable.)
 */
typedef void stubdm_qmp_event_fn(stubdm_qmp *q, const stubdm_qmp_event *ev,
                                 void *user);

/** The event's name ("STOP"). */
STUBDM_EXPORT const char *stubdm_qmp_event_name(const stubdm_qmp_event *ev);
/** The whole event message (JSON text). */
STUBDM_EXPORT const char *stubdm_qmp_event_json(const stubdm_qmp_event *ev);
/** The "data" member as JSON text, or NULL when absent. */
STUBDM_EXPORT const char *stubdm_qmp_event_data_json(
    const stubdm_qmp_event *ev);
/** QEMU's timestamp (seconds, microseconds); -1/-1 when absent. */
STUBDM_EXPORT void stubdm_qmp_event_timestamp(const stubdm_qmp_event *ev,
                                              int64_t *seconds,
                                              int64_t *microseconds);

/**
 * Subscribe the handle to events named name (NULL: all events).
 * @param[out] sub_out  the subscription (may be NULL if never removed
 *                      before the handle is freed); stubdm_qmp_sub_free()
 *                      or freeing the handle frees it.
 * @return 0, STUBDM_EINVAL or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_subscribe(stubdm_qmp *q, const char *name,
                                       stubdm_qmp_event_fn *fn, void *user,
                                       stubdm_qmp_sub **sub_out);
/** Remove a subscription; safe from any callback.  NULL is ignored. */
STUBDM_EXPORT void stubdm_qmp_sub_free(stubdm_qmp_sub *sub);

/** What a full event queue drops (stubdm_qmp_events_enable). */
typedef enum stubdm_qmp_events_overflow {
    /** Keep the newest: the oldest queued event goes (for state a caller
     *  tracks, where the last STOP or RESUME is the one that counts). */
    STUBDM_QMP_EVENTS_DROP_OLDEST = 0,
    /** Keep what is queued: the new event goes. */
    STUBDM_QMP_EVENTS_DROP_NEWEST = 1,
} stubdm_qmp_events_overflow;

/** The largest queue capacity (events). */
#define STUBDM_QMP_EVENTS_MAX_CAPACITY 65536u
/** The most event text a queue holds (bytes), whatever its capacity. */
#define STUBDM_QMP_EVENTS_MAX_BYTES (16u << 20)

/**
 * Queue the handle's events for stubdm_qmp_event_next, for callers that
 * cannot take calls from C (language bindings), next to or instead of
 * callbacks.  Every event the handle receives from now on (all names) is
 * queued as it is read, after the handle's callbacks for it, in the order
 * QEMU sent them; the queue outlives connection losses and reconnects, and
 * stubdm_qmp_free frees what is still in it.
 *
 * Bounded: at most capacity events and STUBDM_QMP_EVENTS_MAX_BYTES of
 * their text.  On overflow the policy drops the oldest or the new event;
 * each drop counts in stubdm_qmp_stats.events_dropped (summed over the
 * connection's handles), each event queued in events_queued.  An event
 * larger than the byte bound is dropped whatever the policy.
 *
 * Draining: events arrive only while the ctx dispatches (the host's loop,
 * stubdm_ctx_run_once, a _sync call).  Either drain after each dispatch
 * (run_once, then stubdm_qmp_event_next until STUBDM_EAGAIN) or poll
 * stubdm_qmp_events_fd for readability.  Not thread-safe: the calls take
 * the ctx's single-thread rule.
 *
 * @param capacity  1..STUBDM_QMP_EVENTS_MAX_CAPACITY events.
 * @return 0; STUBDM_ESTATE (already enabled); STUBDM_EINVAL; STUBDM_ENOMEM;
 *         STUBDM_EFAIL (no eventfd).
 */
STUBDM_EXPORT int stubdm_qmp_events_enable(
    stubdm_qmp *q, size_t capacity, stubdm_qmp_events_overflow overflow);
/** Stop queueing and free the queued events (and the fd of
 *  stubdm_qmp_events_fd).  Safe from any callback.  NULL, or a handle
 *  without a queue, is ignored. */
STUBDM_EXPORT void stubdm_qmp_events_disable(stubdm_qmp *q);
/**
 * Take the oldest queued event.
 * @param[out] ev_out  the event, owned by the caller: read it with the
 *                     stubdm_qmp_event_* getters, free it with
 *                     stubdm_qmp_event_free (it may outlive q).  NULL on
 *                     any error.
 * @return 0; STUBDM_EAGAIN (the queue is empty); STUBDM_ESTATE (no queue
 *         enabled); STUBDM_EINVAL; STUBDM_ENOMEM (the event stays queued).
 */
STUBDM_EXPORT int stubdm_qmp_event_next(stubdm_qmp *q,
                                        stubdm_qmp_event **ev_out);
/** Free an event from stubdm_qmp_event_next (never one a callback got).
 *  NULL is ignored. */
STUBDM_EXPORT void stubdm_qmp_event_free(stubdm_qmp_event *ev);
/**
 * A descriptor readable exactly while the queue holds events (an eventfd
 * the library reads and writes; O_CLOEXEC, non-blocking), for a caller
 * that polls it next to the ctx's own fds.  Owned by the queue: do not
 * read, write or close it; valid until stubdm_qmp_events_disable or
 * stubdm_qmp_free.
 * @return the fd, or -1 (NULL q, no queue).
 */
STUBDM_EXPORT int stubdm_qmp_events_fd(stubdm_qmp *q);

/**
 * Counters of a handle's connection, since the open that made it
 * (reconnects included, until its last handle is freed; shared handles see
 * the same counters).  Read with stubdm_qmp_get_stats(); see "Statistics"
 * for the size argument.
 */
typedef struct stubdm_qmp_stats {
    uint64_t commands_sent;
    uint64_t replies;         /**< matched to a command                  */
    uint64_t replies_dropped; /**< unknown, late or bad id               */
    uint64_t events;          /**< events received                       */
    uint64_t bytes_discarded; /**< stale bytes before a greeting         */
    uint64_t bytes_in;
    uint64_t bytes_out;
    uint64_t connects;       /**< successful negotiations               */
    uint64_t events_queued;  /**< put in handles' event queues          */
    uint64_t events_dropped; /**< dropped by full event queues          */
} stubdm_qmp_stats;

/**
 * Read the counters of q's connection into *stats.
 * @param size  sizeof(*stats) as the caller was compiled (see "Statistics").
 * @return 0, or STUBDM_EINVAL (NULL q or stats, size 0).
 */
STUBDM_EXPORT int stubdm_qmp_get_stats(const stubdm_qmp *q,
                                       stubdm_qmp_stats *stats, size_t size);

/* ------------------------------------------------------------------------
 * QMP multiplexing proxy
 * ------------------------------------------------------------------------
 *
 * Serves any number of local QMP clients (libvirt, xl, a monitoring agent)
 * over one stubdm_qmp handle.  Each client on the unix socket gets its own
 * greeting (QEMU's version, no capabilities), must negotiate
 * qmp_capabilities itself (answered locally), and has its own id space:
 * the proxy gives each forwarded command a library id and echoes back the
 * client's own "id" value exactly.  Events go to every negotiated client.
 * Each client's input and output are bounded: a client that sends an
 * oversized message or stops reading is disconnected.
 */

typedef struct stubdm_qmp_proxy stubdm_qmp_proxy;

/** Default bound on what is buffered for one client (bytes). */
#define STUBDM_QMP_PROXY_DEFAULT_CLIENT_BUFFER (4u << 20)
/** Default bound on simultaneous clients. */
#define STUBDM_QMP_PROXY_DEFAULT_MAX_CLIENTS 64u
/** Default mode of the socket file the proxy makes. */
#define STUBDM_QMP_PROXY_DEFAULT_MODE 0600
/** Default bound on each forwarded command (as libxl's QMP commands). */
#define STUBDM_QMP_PROXY_DEFAULT_COMMAND_TIMEOUT_MS 10000
/** Default bound on a client's wait for the handle to be ready (as
 *  libxl's wait for a stubdomain to start). */
#define STUBDM_QMP_PROXY_DEFAULT_READY_TIMEOUT_MS 30000

/**
 * Listen on a unix socket and serve clients through q, in any state (see
 * "Clients before the handle is ready" below).  The socket file is created
 * mode 0600 exactly, owned by the caller, whatever the umask (which is
 * neither read nor changed): it is bound in a private directory next to
 * listen_path (".qmp-proxy.XXXXXX", removed at once), given its mode there
 * and renamed into place, so listen_path never names a socket with another
 * mode, and a stale socket file there is replaced without a moment where
 * the path names nothing; any other kind of file is not replaced.  Every
 * client is identified by its credentials at connect (SO_PEERCRED) and
 * logged (pid, uid, gid; STUBDM_LOG_INFO); only root and the proxy's own
 * effective uid are served, plus a group given to
 * stubdm_qmp_proxy_allow_group() or stubdm_qmp_proxy_opts_set_group(); any
 * other client is closed at once and logged (STUBDM_LOG_WARN).  The proxy
 * borrows q: free the proxy before q.
 *
 * Clients before the handle is ready.  A client that connects while q is
 * not ready (still opening, or lost and not reconnected yet) waits: its
 * greeting is withheld and what it sends meanwhile is kept (within the
 * client buffer), until q is ready (then it is greeted and served, with a
 * greeting made from QEMU's of that connection) or its wait bound passes
 * (STUBDM_QMP_PROXY_DEFAULT_READY_TIMEOUT_MS, or
 * stubdm_qmp_proxy_opts_set_timeouts): then it receives
 * {"error": {"class": "GenericError", "desc": "libstubdm proxy: ... not
 * ready within N ms"}} in place of the greeting and is closed, logged
 * (STUBDM_LOG_WARN) and counted (clients_timed_out).  Readiness is checked
 * every 20 ms while a client waits.  When q's connection is lost, the
 * greeted clients are disconnected at once, idle ones too (their QEMU
 * session is gone; the proxy watches q with stubdm_qmp_watch_lost); new ones
 * wait for it to come back as above.  Reconnecting q is the caller's
 * (stubdm_qmp_reconnect): the proxy never does.
 * @param command_timeout_ms  bound on each forwarded command (> 0).
 * @return 0, STUBDM_EINVAL, STUBDM_ELIMIT (path too long), STUBDM_EFAIL
 *         (listen_path is another kind of file, or socket, bind, listen,
 *         chmod or rename failed; see stubdm_ctx_os_errno), STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_proxy_new(stubdm_qmp *q, const char *listen_path,
                                       int command_timeout_ms,
                                       stubdm_qmp_proxy **out);

/** What stubdm_qmp_proxy_new_ext is given; copied by it. */
typedef struct stubdm_qmp_proxy_opts stubdm_qmp_proxy_opts;

/**
 * Options with the defaults: no path and no fd (one of the two must be
 * set), mode STUBDM_QMP_PROXY_DEFAULT_MODE, no group, the default
 * timeouts.  @return 0, STUBDM_EINVAL (out NULL) or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_proxy_opts_new(stubdm_qmp_proxy_opts **out);
/** Free options.  NULL is ignored. */
STUBDM_EXPORT void stubdm_qmp_proxy_opts_free(stubdm_qmp_proxy_opts *opts);
/**
 * Make the socket file at path (copied; NULL: none), as
 * stubdm_qmp_proxy_new does; the proxy removes it when freed, if it is
 * still the file it made.  @return 0, STUBDM_EINVAL (empty path) or
 * STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_proxy_opts_set_path(stubdm_qmp_proxy_opts *opts,
                                                 const char *path);
/**
 * Serve a listening socket the caller made (bound where it chose, or
 * received by socket activation: systemd's fd 3 and LISTEN_FDS are the
 * caller's to read).  It must be a unix stream socket, listening
 * (SO_DOMAIN, SO_TYPE, SO_ACCEPTCONN are checked by
 * stubdm_qmp_proxy_new_ext, STUBDM_EINVAL otherwise).  The fd stays the
 * caller's: the proxy never closes it and never removes or changes its file
 * (mode, group, name are the caller's), neither on failure nor when freed;
 * close it after stubdm_qmp_proxy_free.  The proxy sets O_NONBLOCK on it
 * (on its open file description, so on every dup of it too).  -1: none.
 * @return 0 or STUBDM_EINVAL (fd < -1).
 */
STUBDM_EXPORT int stubdm_qmp_proxy_opts_set_listen_fd(
    stubdm_qmp_proxy_opts *opts, int fd);
/**
 * The socket file's permission bits (0..0777, applied exactly, whatever the
 * umask), with a path only: for a caller's fd, stubdm_qmp_proxy_new_ext
 * refuses a mode (STUBDM_EINVAL).  The credential check still applies to
 * whoever the mode lets connect.  @return 0 or STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_qmp_proxy_opts_set_mode(stubdm_qmp_proxy_opts *opts,
                                                 unsigned mode);
/**
 * Serve the members of group gid (as stubdm_qmp_proxy_allow_group).  With
 * a path, the socket file is also given to gid before it appears at the
 * path (the caller must be allowed to chown to gid); its mode is still the
 * one set (give 0660 for the group to connect).  With a caller's fd, only
 * the credential check changes.  @return 0 or STUBDM_EINVAL (gid
 * (uint32_t)-1).
 */
STUBDM_EXPORT int stubdm_qmp_proxy_opts_set_group(stubdm_qmp_proxy_opts *opts,
                                                  uint32_t gid);
/**
 * Bounds, in ms (0: the default): on each forwarded command
 * (STUBDM_QMP_PROXY_DEFAULT_COMMAND_TIMEOUT_MS) and on a client's wait for
 * the handle to be ready (STUBDM_QMP_PROXY_DEFAULT_READY_TIMEOUT_MS; see
 * stubdm_qmp_proxy_new).  @return 0 or STUBDM_EINVAL (negative).
 */
STUBDM_EXPORT int stubdm_qmp_proxy_opts_set_timeouts(
    stubdm_qmp_proxy_opts *opts, int command_timeout_ms, int ready_timeout_ms);
/**
 * stubdm_qmp_proxy_new with options: a path or a caller's listening fd
 * (exactly one), mode, group, timeouts.  Everything else as
 * stubdm_qmp_proxy_new.
 * @return 0, STUBDM_EINVAL (NULL argument; neither or both of path and fd;
 *         a mode with an fd; the fd is not a listening unix stream socket),
 *         STUBDM_ELIMIT, STUBDM_EFAIL (as stubdm_qmp_proxy_new, or chown to
 *         the group failed), STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_qmp_proxy_new_ext(stubdm_qmp *q,
                                           const stubdm_qmp_proxy_opts *opts,
                                           stubdm_qmp_proxy **out);
/**
 * Bounds: max_clients (0: default) and the bytes buffered per client in
 * each direction (0: default; at least 64 KiB).  Existing clients keep
 * theirs.  @return 0 or STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_qmp_proxy_set_limits(stubdm_qmp_proxy *p,
                                              size_t max_clients,
                                              size_t client_buffer);
/** The counters of a proxy, since it was created. */
typedef struct stubdm_qmp_proxy_stats {
    uint64_t clients;           /**< connected now                         */
    uint64_t clients_dropped;   /**< disconnected for exceeding a bound    */
    uint64_t clients_refused;   /**< refused for their credentials (see
                                     stubdm_qmp_proxy_new); each refusal is
                                     also logged (STUBDM_LOG_WARN)         */
    uint64_t clients_waiting;   /**< connected now, waiting for the handle
                                     to be ready (counted in clients too)   */
    uint64_t clients_timed_out; /**< closed after waiting longer than the
                                     ready bound (logged, STUBDM_LOG_WARN) */
} stubdm_qmp_proxy_stats;
/**
 * Read the proxy's counters into *stats (see "Statistics").
 * @return 0, or STUBDM_EINVAL (NULL p or stats, size 0).
 */
STUBDM_EXPORT int stubdm_qmp_proxy_get_stats(const stubdm_qmp_proxy *p,
                                             stubdm_qmp_proxy_stats *stats,
                                             size_t size);
/**
 * Also serve the members of group gid: a client whose gid at connect is
 * gid, or whose supplementary groups include it (SO_PEERGROUPS, Linux
 * 4.13; its first 64 groups).  The socket file the proxy made is given to
 * that group with mode 0660, through an fd of the socket file itself
 * (opened O_PATH | O_NOFOLLOW: a path replaced by a symlink meanwhile is
 * refused, never followed); the process umask is not touched.  The file of
 * a caller's fd (stubdm_qmp_proxy_opts_set_listen_fd) is not touched: only
 * the credential check changes.  To have the socket appear with its group
 * and mode, use stubdm_qmp_proxy_opts_set_group and _set_mode instead.  The
 * caller must be allowed to chown to gid (root, or a member of it).  Call again
 * to change the group (the last call's group is the one allowed).  Clients
 * already connected are not re-checked.  Logged at STUBDM_LOG_INFO.  May be
 * called from a callback (the ctx's one-thread rule applies, see "Threads").
 * @return 0, STUBDM_EINVAL (NULL p, gid (uint32_t)-1), STUBDM_EFAIL (the
 *         path is not the proxy's socket any more, or the chown or chmod
 *         failed; see stubdm_ctx_os_errno).  On failure the group allowed
 *         before (if any) stays allowed, and the file may have been given
 *         to gid already (mode unchanged).
 */
STUBDM_EXPORT int stubdm_qmp_proxy_allow_group(stubdm_qmp_proxy *p,
                                               uint32_t gid);
/**
 * Stop listening (the socket file the proxy made is removed, if it is still
 * that file; a caller's fd is left open and its file alone), disconnect
 * every client and cancel their commands.  Safe from callbacks.  NULL is
 * ignored.
 */
STUBDM_EXPORT void stubdm_qmp_proxy_free(stubdm_qmp_proxy *p);

/* ------------------------------------------------------------------------
 * PCI passthrough (docs/pci.md)
 * ------------------------------------------------------------------------
 *
 * A host PCI device given to an HVM guest served by a stubdomain: assigned
 * to the guest in the IOMMU, its BARs and interrupt permitted to both
 * domains, seen by the stubdomain's Linux through pcifront, emulated by
 * its QEMU (xen-pci-passthrough) at a virtual slot of the guest's bus.
 */

/** A host PCI address, "SSSS:BB:DD.F" (segment, bus, device, function). */
typedef struct stubdm_pci_addr {
    uint16_t domain; /**< the PCI segment                */
    uint8_t bus;
    uint8_t dev;  /**< 0 .. 31 */
    uint8_t func; /**< 0 .. 7  */
} stubdm_pci_addr;

/** Room for "SSSS:BB:DD.F" and its NUL. */
#define STUBDM_PCI_ADDR_STRLEN 13

/**
 * Parse a PCI address: "SSSS:BB:DD.F" or "BB:DD.F" (segment 0), lower or
 * upper case hex, each field exactly its width (4, 2, 2 hex digits, one
 * digit 0-7): nothing else is accepted (no spaces, no "0x", no sign, no
 * trailing byte), so one device has one spelling (up to case).  The one
 * parser the library uses for addresses from callers and from sysfs.
 * @return 0 with *out set, or STUBDM_EINVAL (NULL, malformed, device
 *         above 31) with *out untouched.
 */
STUBDM_EXPORT int stubdm_pci_addr_parse(const char *s, stubdm_pci_addr *out);
/**
 * Format a as "SSSS:BB:DD.F" (lower case) into buf.
 * @return 0, STUBDM_EINVAL (NULL, a field out of range), STUBDM_ELIMIT
 *         (len below STUBDM_PCI_ADDR_STRLEN; buf then holds "").
 */
STUBDM_EXPORT int stubdm_pci_addr_format(const stubdm_pci_addr *a, char *buf,
                                         size_t len);

/**
 * Where the PCI calls find sysfs: pciback's directory
 * (ROOT/bus/pci/drivers/pciback: slots, do_flr, permissive,
 * allow_interrupt_control) and the devices (ROOT/bus/pci/devices/<BDF>:
 * driver, resource, irq, reset).  For tests and simulated hosts, which
 * point it at a fake tree.  root is copied.
 * @param root  an absolute path without a trailing '/', at most 200
 *              bytes; NULL: "/sys" (the default).
 * @return 0 or STUBDM_EINVAL (the ctx keeps its root).
 */
STUBDM_EXPORT int stubdm_ctx_set_sysfs_root(stubdm_ctx *ctx, const char *root);

/** Options of one device given to a guest (an options object, copied by
 *  the calls that take it). */
typedef struct stubdm_pci_dev stubdm_pci_dev;

/** Flags of stubdm_pci_dev_set_flags (pciback's opts-N and QEMU's
 *  properties; docs/pci.md). */
enum {
    /** Let the guest write any config register (pciback "permissive",
     *  QEMU's permissive=true): for devices with registers pciback does
     *  not know. */
    STUBDM_PCI_PERMISSIVE = 1u << 0,
    /** opts-N msitranslate=1 (pciback translates MSI to INTx). */
    STUBDM_PCI_MSITRANSLATE = 1u << 1,
    /** opts-N power_mgmt=1, and QEMU's power_mgmt=true (a Qubes QEMU
     *  property: set it only for a QEMU that has it). */
    STUBDM_PCI_POWER_MGMT = 1u << 2,
    /** Reserved device memory: strict (fail the assignment on a conflict)
     *  instead of relaxed, the default, as libxl's rdm_policy. */
    STUBDM_PCI_RDM_STRICT = 1u << 3,
    /** Do not give the stubdomain pciback's allow_interrupt_control (or
     *  allow_msi_enable): its QEMU then cannot enable MSI/MSI-X. */
    STUBDM_PCI_NO_INTERRUPT_CONTROL = 1u << 4,
};

/**
 * New device options for the host device at bdf (stubdm_pci_addr_parse's
 * forms): no flags, the virtual slot chosen by QEMU.
 * @param[out] out  the options (free with stubdm_pci_dev_free); NULL on
 *                  failure.
 * @return 0, STUBDM_EINVAL (out NULL, bdf malformed), STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_pci_dev_new(const char *bdf, stubdm_pci_dev **out);
/** Free device options.  NULL is ignored. */
STUBDM_EXPORT void stubdm_pci_dev_free(stubdm_pci_dev *d);
/** The virtual slot on the guest's bus, 1 .. 31, or -1 (the default):
 *  QEMU chooses.  @return 0 or STUBDM_EINVAL. */
STUBDM_EXPORT int stubdm_pci_dev_set_vslot(stubdm_pci_dev *d, int vslot);
/** Set the STUBDM_PCI_* flags (replacing the previous ones).
 *  @return 0 or STUBDM_EINVAL (an unknown bit). */
STUBDM_EXPORT int stubdm_pci_dev_set_flags(stubdm_pci_dev *d, unsigned flags);
/** The device's host address (zeroed for NULL d). */
STUBDM_EXPORT stubdm_pci_addr stubdm_pci_dev_addr(const stubdm_pci_dev *d);
/** The virtual slot asked for, or -1. */
STUBDM_EXPORT int stubdm_pci_dev_vslot(const stubdm_pci_dev *d);
/** The flags. */
STUBDM_EXPORT unsigned stubdm_pci_dev_flags(const stubdm_pci_dev *d);

/**
 * Attach a host PCI device to a running guest through its stubdomain
 * (docs/pci.md): pciback's check and reset, the device's I/O ports, MMIO
 * and irq permitted to the guest and to the stubdomain, the assignment to
 * the guest, the device on the stubdomain's PCI bus (pcifront), then,
 * once pciback reports the bus Connected, QMP device_add of
 * xen-pci-passthrough and query-pci for the slot QEMU chose
 * (stubdm_pci_list shows it).  A failure or a cancel undoes every step
 * done, in reverse, before done runs: nothing is left granted, assigned
 * or written.
 * @param d           copied.
 * @param q           an open QMP handle to the stubdomain's QEMU,
 *                    borrowed: it must outlive the op.
 * @param timeout_ms  > 0: the bound on the whole attach (libxl waits 60 s
 *                    for the backend).
 * @param done        called once, from the loop: 0; STUBDM_EPERM (not
 *                    pciback's, the message names its driver),
 *                    STUBDM_ENOENT (no such device), STUBDM_ENOTSUP (no
 *                    IOMMU), STUBDM_EXEN (a hypervisor call, named),
 *                    STUBDM_EBUSY (already on the bus), STUBDM_EPROTO
 *                    (sysfs or QEMU's answer malformed), STUBDM_EQMP
 *                    (device_add refused: QEMU's reason),
 *                    STUBDM_ETIMEDOUT (the backend never connected),
 *                    STUBDM_EDOMAIN_GONE (the stubdomain died), ...
 * @return 0 if started; STUBDM_EINVAL (bad arguments), STUBDM_ENOMEM:
 *         nothing started, done not called.
 */
STUBDM_EXPORT int stubdm_pci_attach(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                    uint32_t guest_domid,
                                    const stubdm_pci_dev *d, stubdm_qmp *q,
                                    int timeout_ms, stubdm_done_fn *done,
                                    void *user, stubdm_op **op_out);

/**
 * Detach a PCI device from a running guest (docs/pci.md, "Hot-unplug"):
 * QMP device_del, QEMU's DEVICE_DELETED for it, the entry closed on the
 * stubdomain's PCI bus and removed, the permissions of both domains
 * revoked and the device deassigned from the guest.  Works on a device
 * another process attached (what it undoes is read from xenstore and
 * sysfs again).
 * @param q           an open QMP handle to the stubdomain's QEMU,
 *                    borrowed: it must outlive the op.
 * @param timeout_ms  > 0: the bound on QEMU's DEVICE_DELETED and
 *                    pciback's answer.
 * @param done        0; STUBDM_ENOENT (not attached); STUBDM_ETIMEDOUT
 *                    (QEMU did not let the device go: it stays attached,
 *                    nothing revoked); STUBDM_EQMP (device_del refused);
 *                    STUBDM_EXEN (a revocation failed); ...  The
 *                    stubdomain dying during the detach is no error: the
 *                    device is then freed without QEMU.
 * @return 0 if started; STUBDM_EINVAL, STUBDM_ENOMEM: done not called.
 */
STUBDM_EXPORT int stubdm_pci_detach(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                    uint32_t guest_domid,
                                    const stubdm_pci_addr *addr, stubdm_qmp *q,
                                    int timeout_ms, stubdm_done_fn *done,
                                    void *user, stubdm_op **op_out);

/** A snapshot of the PCI devices on a stubdomain's bus. */
typedef struct stubdm_pci_list stubdm_pci_list;

/**
 * The devices on stubdomain's PCI bus, read from its backend in xenstore
 * (blocking, a few reads per device, no callback).
 * @param[out] out  the list (free with stubdm_pci_list_free), empty when
 *                  there is no bus; NULL on failure.
 * @return 0, STUBDM_EINVAL, STUBDM_EPROTO (a malformed entry),
 *         STUBDM_EXENSTORE, STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_pci_list_new(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                      stubdm_pci_list **out);
/** Number of devices (0 for NULL). */
STUBDM_EXPORT size_t stubdm_pci_list_count(const stubdm_pci_list *l);
/** Device i's host address (zeroed out of range). */
STUBDM_EXPORT stubdm_pci_addr stubdm_pci_list_addr(const stubdm_pci_list *l,
                                                   size_t i);
/** The guest's slot QEMU put device i at, or -1 (not known yet). */
STUBDM_EXPORT int stubdm_pci_list_vslot(const stubdm_pci_list *l, size_t i);
/** Free a list.  NULL is ignored. */
STUBDM_EXPORT void stubdm_pci_list_free(stubdm_pci_list *l);

/* ------------------------------------------------------------------------
 * Spawning stubdomains
 * ------------------------------------------------------------------------
 *
 * The whole start of a stubdomain for an HVM guest, and its teardown:
 *
 *   create and build the PV domain, paused (kernel, ramdisk, memory,
 *   vCPUs, console and xenstore rings, introduction to xenstore, the
 *   /local/domain/<stubdom> and /vm/<uuid> basics, the hypervisor target)
 *   -> stubdm_contract_write (dm-argv, target, device-model dir, consoles)
 *   -> disks (xvda, xvdb, ... in guest order) and nics as PV devices
 *   -> their hotplug scripts (stubdm_ctx_set_hotplug)
 *   -> unpause -> wait for "running" (as stubdm_dm_wait_running)
 *   -> optionally open QMP (as stubdm_qmp_open).
 *
 * Any failure at any step destroys what was made (domain, xenstore nodes,
 * fds) before the completion callback runs; the message names the step:
 * "spawn: waiting for running: stubdomain 7 crashed (signal 11) ...".
 *
 * A toolstack with its own domain builder (libxl) builds the domain and
 * hands it to the spawn with stubdm_spawn_opts_set_domain: everything
 * from the contract on, and a rollback that never destroys that domain
 * unless asked (docs/embedding.md).
 *
 * Hosts.  On a Xen host the domain is built with libxenctrl/libxenguest
 * (docs/real-xen.md).  Without Xen, the simulated host is used: the
 * mock xenstored (stubdm-ctl sim start) plays the hypervisor and runs
 * stubdm-sim-stubdom as the stubdomain, which runs a real QEMU.
 */
typedef struct stubdm_console stubdm_console;

/** Which host a ctx spawns on. */
typedef enum stubdm_host {
    STUBDM_HOST_AUTO = 0, /**< Xen if a hypervisor is present, else SIM */
    STUBDM_HOST_XEN = 1,  /**< libxenctrl/libxenguest                   */
    STUBDM_HOST_SIM = 2,  /**< the simulated host's xenstored          */
} stubdm_host;

/** Choose the host (default AUTO).  @return 0 or STUBDM_EINVAL. */
STUBDM_EXPORT int stubdm_ctx_set_host(stubdm_ctx *ctx, stubdm_host host);

/** The host spawns use: STUBDM_HOST_XEN or STUBDM_HOST_SIM (AUTO is
 *  resolved by probing for a hypervisor once). */
STUBDM_EXPORT stubdm_host stubdm_ctx_host(stubdm_ctx *ctx);

/**
 * Whether this ctx runs the backends' hotplug scripts (default: yes, as
 * libxl with xl.conf's run_hotplug_scripts=1; Xen 4.17 on Debian has no
 * udev rules that would run them).  With it on, a spawn runs, for every
 * raw disk (backend type phy) and every nic of the stubdomain, once the
 * backend reached InitWait (state 2):
 *
 *   <script> add                  (vbd)
 *   <script> online type_if=vif   (vif)
 *
 * with only this environment: script=<script>, XENBUS_TYPE=vbd|vif,
 * XENBUS_PATH=backend/<type>/<stubdom>/<devid> (relative to dom0's home),
 * XENBUS_BASE_PATH=backend, for a vif also netdev= (empty) and
 * vif=vif<stubdom>.<devid>; PATH (the caller's, else
 * /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin) and, when
 * the caller has it, XENSTORED_PATH.  stdin is /dev/null, stdout and
 * stderr go to a pipe whose last 4 KiB are logged (warning) when the
 * script fails; no other fd is inherited; the script runs in its own
 * process group from "/".  The spawn's step HOTPLUG completes when every
 * script exited 0 and its backend's hotplug-status is "connected"; only
 * then is the stubdomain unpaused.  A script exiting non-zero or killed,
 * a hotplug-status "error" or "busy" (with the backend's hotplug-error in
 * the message), no "connected" within the spawn's timeout
 * (stubdm_spawn_opts_set_timeout; the script's process group is then
 * killed) or the stubdomain dying fail the spawn, which then tears down
 * as any failure does.
 *
 * Teardown (stubdm_stubdom_destroy, stubdm_stubdom_destroy_by_domid, a
 * failed spawn), after the domain is destroyed: "<script> remove" (vbd) or
 * "<script> offline type_if=vif" (vif), same environment, for every backend
 * whose add ran (marked "libstubdm-hotplug" in the backend), one after
 * another, each bounded by 20 s; then the backend nodes are removed.  The
 * destroys run them from the ctx's loop (no dispatch waits for a script);
 * a failed spawn's teardown, which runs before its done, still waits for
 * them inside the dispatch that ends the spawn.  A failure there is logged
 * and returned as the teardown's first error; the rest still runs.
 *
 * Off (run_scripts 0): the library still writes the backends' "script"
 * keys but runs nothing and waits for nothing; the caller's toolstack (or
 * udev) runs them, e.g. from the progress callback at HOTPLUG, and removes
 * what they made after a destroy.
 *
 * Child processes: started with posix_spawn, watched through a pidfd in
 * the ctx's loop (or, where pidfd_open is missing, by polling on the ctx's
 * timer), signalled only through that pidfd (never kill(pid): the pid may
 * be another process's once the host reaped it), and reaped as
 * stubdm_ctx_set_child_reaping says.  The library installs no SIGCHLD
 * handler.
 * @return 0 or STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_ctx_set_hotplug(stubdm_ctx *ctx, int run_scripts);

/** Who reaps the library's child processes (the hotplug scripts). */
typedef enum stubdm_child_reaping {
    /** The library: waitpid(pid) for each of its own children, once its
     *  pidfd says it ended (default). */
    STUBDM_CHILD_REAPING_LIBRARY = 0,
    /** The host: it reaps every child (waitpid(-1)) and hands each status
     *  over with stubdm_ctx_child_exited; the library never reaps. */
    STUBDM_CHILD_REAPING_HOST = 1,
} stubdm_child_reaping;

/**
 * Choose who reaps the ctx's children (default LIBRARY).  Applies to the
 * children started afterwards.
 *
 * LIBRARY needs a host that leaves the library's children alone: no
 * waitpid(-1) or wait(), SIGCHLD not ignored (SIG_IGN makes the kernel
 * reap).  libxl's libxl_sigchld_owner_libxl_always_selective_reap (libxl
 * reaps only its own children, by pid) is such a host, as is a program
 * that has no SIGCHLD handler of its own.  A host that takes the status
 * away anyway makes the script fail with "ended with an unknown status
 * (reaped by someone else ...)".
 *
 * HOST is for a host that reaps every child: libxl's default
 * libxl_sigchld_owner_libxl (libxl's SIGCHLD self-pipe handler calls
 * waitpid(-1) and passes each child that is not libxl's to the
 * application's libxl_childproc_hooks.reaped_callback, which calls
 * stubdm_ctx_child_exited) and libxl_sigchld_owner_mainloop (the
 * application reaps every child, and offers each status to
 * libxl_childproc_reaped and to stubdm_ctx_child_exited, in either
 * order: each answers for its own pids only); likewise a program with a
 * SIGCHLD handler calling waitpid(-1).  In this mode the library never
 * calls waitpid (nor waitid without WNOWAIT) on its children.  It still
 * holds a pidfd for each: the pidfd becomes readable when the child
 * exits, whether or not anyone reaped it yet, so the library knows the
 * child ended and waits for its status: up to 3 s after the exit, then
 * the script counts as failed ("the host ... did not hand its status
 * over"); and the pidfd makes every signal the library sends reach that
 * child only, never a process that got its pid after the host reaped it.
 * The statuses come from the host's loop, so in HOST mode only the
 * asynchronous calls get them: a blocking call (stubdm_spawn_sync,
 * stubdm_stubdom_destroy_sync, ..., and the teardown a failed spawn runs
 * from its op) reads the status without reaping (waitid WNOWAIT) when the
 * child is still a zombie, else reports it unknown.
 * @return 0 or STUBDM_EINVAL (NULL ctx, unknown mode).
 */
STUBDM_EXPORT int stubdm_ctx_set_child_reaping(stubdm_ctx *ctx,
                                               stubdm_child_reaping mode);

/**
 * Hand the library the status of a child the host reaped (waitpid's pid
 * and wstatus), as libxl_childproc_reaped.  Call it for every child the
 * host reaps, from the host's loop or any place no call on this ctx is
 * running (not from a signal handler; from a library callback is fine):
 * the library records the status and goes on from its next dispatch (a
 * timer of "now").  Safe in either reaping mode.  A child the library gave
 * up on (killed at a cancel) still counts as the library's until its
 * status is handed over: a host must hand over every status of the
 * library's children, or use LIBRARY mode.
 * @return 1 the pid is the library's (the status is taken); 0 it is not
 *         (the host's own, or another library's: chain on); STUBDM_EINVAL
 *         (NULL ctx, pid <= 0).
 */
STUBDM_EXPORT int stubdm_ctx_child_exited(stubdm_ctx *ctx, pid_t pid,
                                          int wstatus);

/**
 * The directory of hotplug scripts a teardown may run when it reads a
 * script back from a backend's "script" node
 * (stubdm_stubdom_destroy_by_domid of a domain another process spawned;
 * default and NULL: /etc/xen/scripts).  That node is read only when dom0
 * owns it, and its path is run only when it names an entry of this
 * directory (no "..", "." or "//" in it) or is one of the scripts the
 * tearing-down spawn's own configuration names; any other is not run,
 * logged, and reported as the teardown's failure (STUBDM_EPERM; the rest of
 * the teardown still runs).  Applies to every teardown started afterwards
 * (stubdm_stubdom_destroy_by_domid, stubdm_stubdom_destroy and their
 * _sync forms, a failed or cancelled spawn).  dir is copied (the
 * caller keeps its string); only the path is checked here, not that it
 * exists.
 * @param dir  an absolute path without a trailing '/' and without a "."
 *             or ".." component or "//", printable, at most 253 bytes;
 *             NULL restores the default.
 * @return 0 or STUBDM_EINVAL (NULL ctx, or dir refused: the ctx keeps the
 *         directory it had).
 */
STUBDM_EXPORT int stubdm_ctx_set_hotplug_dir(stubdm_ctx *ctx, const char *dir);

typedef struct stubdm_spawn_opts stubdm_spawn_opts;

/** libxl's default stubdomain memory: 128 MiB. */
#define STUBDM_SPAWN_DEFAULT_MEMORY_KIB (128u * 1024u)
/** The smallest memory accepted. */
#define STUBDM_SPAWN_MIN_MEMORY_KIB (16u * 1024u)
/** Emulated disks are xvda..xvdz. */
#define STUBDM_SPAWN_MAX_DISKS 26
/** Default bound on waiting for "running" (libxl's 30 s). */
#define STUBDM_SPAWN_DEFAULT_TIMEOUT_MS 30000

/**
 * Create a configuration.  Defaults: 128 MiB, 1 vCPU, no disks or nics,
 * console backend IOEMU, running timeout 30 s, QMP not opened, the
 * simulated stubdomain program "stubdm-sim-stubdom" with no arguments.
 * Required: the guest and the QEMU args; on Xen also the kernel.
 * @return 0, STUBDM_EINVAL or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_spawn_opts_new(stubdm_spawn_opts **out);
/** Free a configuration.  NULL is ignored. */
STUBDM_EXPORT void stubdm_spawn_opts_free(stubdm_spawn_opts *opts);

/**
 * The guest: its domid, uuid (vm path "/vm/<uuid>"; NULL: read
 * /local/domain/<guest>/vm) and name (NULL: read it, else "guest<domid>";
 * the stubdomain is named "<name>-dm").
 */
STUBDM_EXPORT int stubdm_spawn_opts_set_guest(stubdm_spawn_opts *opts,
                                              uint32_t guest_domid,
                                              const char *uuid,
                                              const char *name);
/** The stubdomain's name (default "<guest name>-dm"); NULL: default. */
STUBDM_EXPORT int stubdm_spawn_opts_set_name(stubdm_spawn_opts *opts,
                                             const char *name);
/** Kernel (required on Xen), ramdisk and command line (each may be NULL). */
STUBDM_EXPORT int stubdm_spawn_opts_set_kernel(stubdm_spawn_opts *opts,
                                               const char *kernel,
                                               const char *ramdisk,
                                               const char *cmdline);
/** Memory in KiB (default STUBDM_SPAWN_DEFAULT_MEMORY_KIB). */
STUBDM_EXPORT int stubdm_spawn_opts_set_memory_kib(stubdm_spawn_opts *opts,
                                                   uint64_t kib);
/** vCPUs, 1..128 (default 1). */
STUBDM_EXPORT int stubdm_spawn_opts_set_vcpus(stubdm_spawn_opts *opts,
                                              unsigned vcpus);
/** The QEMU arguments (not argv[0]); copied. */
STUBDM_EXPORT int stubdm_spawn_opts_set_args(stubdm_spawn_opts *opts,
                                             const char *const *args,
                                             size_t nargs);
/** Console n's output, as stubdm_contract_set_console_output: 0 log,
 *  1 save, 2 restore, 3.. serials (in order). */
STUBDM_EXPORT int stubdm_spawn_opts_set_console_output(stubdm_spawn_opts *opts,
                                                       unsigned n,
                                                       const char *output);
/**
 * Who serves consoles.  Default: STUBDM_CONSOLE_BACKEND_LIBSTUBDM on the
 * simulated host, STUBDM_CONSOLE_BACKEND_IOEMU (libxl's dom0 QEMU,
 * unchanged) on Xen: a Xen caller opts in by choosing LIBSTUBDM
 * (docs/real-xen.md).
 *
 * With XENCONSOLED the stubdomain gets console 0 only (no save console:
 * stubdm_dm_save fails at once); a console 1, 2 or serial output, or a
 * restore fd, is refused with STUBDM_EINVAL before anything is made.
 *
 * With LIBSTUBDM the spawn serves the consoles itself (stubdm_console_serve,
 * from the DEVICES step, before the domain runs; docs/consoles.md):
 *   0  the log, when console 0's output is "file:/PATH" (capped and
 *      rotated, stubdm_spawn_opts_set_log_limits); no output, or a
 *      service asked for (stubdm_spawn_opts_set_service): not served;
 *   1  save: held (nothing consumed) until stubdm_stubdom_save();
 *   2  restore: fed from stubdm_spawn_opts_set_restore_fd();
 *   3+ serials: output "pty" (path published in "tty",
 *      stubdm_console_tty()) or "file:/PATH" (capped as the log).
 *   2  without a restore but with serials: the numbering placeholder,
 *      served (output dropped) so the frontend connects.
 * A console that fails on its own (STUBDM_EPROTO from a hostile ring, a
 * failing fd) ends alone, logged as a warning: the stubdomain runs on.
 * STUBDM_EDOMAIN_GONE ends them all and is reported by the spawn or by
 * the caller's own death handling.  Destroying the handle stops serving
 * them (backend Closing, Closed); freeing it while the stubdomain runs
 * lets them go instead (backend back to InitWait, the frontend stays
 * connected), so another process can serve them: a Linux frontend
 * removes its tty for good when the backend closes.
 */
STUBDM_EXPORT int stubdm_spawn_opts_set_console_backend(
    stubdm_spawn_opts *opts, stubdm_console_backend backend);
/**
 * Size cap and rotations of the log (console 0) and of serial files when
 * the library serves them (default: STUBDM_CONSOLE_DEFAULT_FILE_CAP, 10
 * rotations as libxl).  @return 0 or STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_spawn_opts_set_log_limits(stubdm_spawn_opts *opts,
                                                   uint64_t max_bytes,
                                                   unsigned rotations);
/**
 * Restore: the device model's saved state is read from fd (stays the
 * caller's, made non-blocking) and given to QEMU through console 2; the
 * argv gets libxl's "-incoming $STUBDOM_RESTORE_INCOMING_ARG" unless it
 * has an -incoming.  The spawn completes when the restored device model
 * reports running.  Needs the LIBSTUBDM console backend.  -1: not
 * restoring (default).
 */
STUBDM_EXPORT int stubdm_spawn_opts_set_restore_fd(stubdm_spawn_opts *opts,
                                                   int fd);
/**
 * Append a disk: the next one is xvda, then xvdb, ... (the guest's order).
 * @param target    the backend's "params": a block device or image file.
 * @param format    "raw" (backend type phy, block script) or "qcow2"
 *                  (type qdisk: a QEMU in dom0 serves it; no hotplug
 *                  script); NULL: raw.
 * @param readonly  non-zero: mode "r".
 */
STUBDM_EXPORT int stubdm_spawn_opts_add_disk(stubdm_spawn_opts *opts,
                                             const char *target,
                                             const char *format, int readonly);
/**
 * The hotplug script of disk n (0: xvda; raw disks only), written to the
 * backend's "script" and run as stubdm_ctx_set_hotplug() says.  A name
 * without a '/' is taken in /etc/xen/scripts (as libxl does).  NULL: the
 * default "/etc/xen/scripts/block".
 * @return 0, STUBDM_EINVAL (no disk n, or a qcow2 disk, or a script that
 *         is empty or not printable ASCII), STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_spawn_opts_set_disk_script(stubdm_spawn_opts *opts,
                                                    size_t n,
                                                    const char *script);
/**
 * Append a nic (vif devid 0, 1, ...).
 * @param mac     "xx:xx:xx:xx:xx:xx", or NULL for a random 00:16:3e one.
 * @param bridge  NULL: "xenbr0".
 * @param script  hotplug script for the backend node; a name without a
 *                '/' is taken in /etc/xen/scripts; NULL:
 *                "/etc/xen/scripts/vif-bridge".  Run as
 *                stubdm_ctx_set_hotplug() says.
 */
STUBDM_EXPORT int stubdm_spawn_opts_add_nic(stubdm_spawn_opts *opts,
                                            const char *mac,
                                            const char *bridge,
                                            const char *script);
/**
 * Give the guest a host PCI device (docs/pci.md): it is attached while the
 * stubdomain is still paused, before its QEMU starts and so before the
 * spawn completes and the guest runs.  d is copied.  The same device twice
 * fails the validation (the spawn), naming it.  The stubdomain's kernel
 * must let its QEMU map the device's BARs for the guest: a Linux with the
 * restricted privcmd ("xen/privcmd: restrict usage in unprivileged domU")
 * needs xen_privcmd.unrestricted=1 on its command line (docs/pci.md, "The
 * stubdomain's kernel"); the library does not add it.
 * @return 0, STUBDM_EINVAL (NULL), STUBDM_ELIMIT (more than 16 devices:
 *         one pcifront bus), STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_spawn_opts_add_pci(stubdm_spawn_opts *opts,
                                            const stubdm_pci_dev *d);
/** The XSM (FLASK) label of the stubdomain; NULL: the default. */
STUBDM_EXPORT int stubdm_spawn_opts_set_xsm_label(stubdm_spawn_opts *opts,
                                                  const char *label);
/** Ask for this stubdomain domid (0, the default: the host chooses). */
STUBDM_EXPORT int stubdm_spawn_opts_set_stubdom_domid(stubdm_spawn_opts *opts,
                                                      uint32_t domid);
/** Bound on waiting for "running", > 0 ms. */
STUBDM_EXPORT int stubdm_spawn_opts_set_timeout(stubdm_spawn_opts *opts,
                                                int timeout_ms);
/** Open QMP once running (open != 0), with this open timeout (0: the
 *  default).  The handle is then stubdm_stubdom_qmp(). */
STUBDM_EXPORT int stubdm_spawn_opts_set_qmp(stubdm_spawn_opts *opts, int open,
                                            int open_timeout_ms);
/**
 * The simulated host only: the program the simulated hypervisor runs as
 * the stubdomain (NULL: "stubdm-sim-stubdom", found next to the mock
 * xenstored) and its arguments (e.g. "--die-at=after-argv", "--no-qemu").
 * A stubdomain author points this at a stand-in of their own.
 */
STUBDM_EXPORT int stubdm_spawn_opts_set_sim_program(stubdm_spawn_opts *opts,
                                                    const char *program,
                                                    const char *const *args,
                                                    size_t nargs);

/** stubdm_spawn_opts_set_domain flags. */
enum {
    /** Do not unpause: the caller does, once the spawn reports
     *  STUBDM_SPAWN_STEP_WAIT (UNPAUSE is skipped, not reported). */
    STUBDM_SPAWN_ADOPT_NO_UNPAUSE = 1u << 0,
    /** Run no hotplug script for this spawn's disks and nics (the caller
     *  runs them, as with stubdm_ctx_set_hotplug(ctx, 0), for this spawn
     *  only). */
    STUBDM_SPAWN_ADOPT_NO_HOTPLUG = 1u << 1,
    /** Hand the domain over: a failed or cancelled spawn and
     *  stubdm_stubdom_destroy destroy it as one the library created. */
    STUBDM_SPAWN_ADOPT_DESTROY = 1u << 2,
};

/**
 * Bring your own domain: the spawn does not create a domain but takes
 * domid, a PV domain the caller built (libxl's libxl__domain_make and
 * libxl__domain_build: paused, introduced to xenstore, its
 * /local/domain/<domid> written), and runs the rest of the flow on it as
 * one asynchronous op, with the same steps, progress, messages and codes
 * as any spawn, from the step CONTRACT on (CREATE is skipped, never
 * reported):
 *
 *   CONTRACT  the guest's vm path (taken only from a dom0-owned
 *             /local/domain/<guest>/vm, or the uuid of set_guest: there is
 *             no stand-in guest, also on the simulated host), the
 *             hypervisor's target relation (xc_domain_set_target, which
 *             Xen accepts once per domain: the caller does not set it),
 *             stubdm_contract_write;
 *   DEVICES   the disks and nics of the options, if any (the caller's own
 *             devices use other devids: xvda is 51712, vif 0 is 0), and
 *             the consoles the library serves (backend LIBSTUBDM);
 *   HOTPLUG   their scripts, unless STUBDM_SPAWN_ADOPT_NO_HOTPLUG or
 *             stubdm_ctx_set_hotplug(ctx, 0);
 *   UNPAUSE   unless STUBDM_SPAWN_ADOPT_NO_UNPAUSE: then the spawn goes
 *             from HOTPLUG to WAIT, and WAIT's progress report says the
 *             domain is ready: the caller unpauses it then (or later,
 *             within the timeout, which runs from there);
 *   WAIT      "running" in device-model/<guest>/state, the domain's death
 *             ending the wait at once (as stubdm_dm_wait_running);
 *   QMP       if asked (stubdm_spawn_opts_set_qmp).
 *
 * Used: the guest, args, consoles and console backend, disks, nics,
 * timeout, QMP, restore fd; on the simulated host the sim program (its
 * UNPAUSE starts it, as the simulated hypervisor boots a domain).  Not
 * used: name, kernel, memory, vCPUs, XSM label (the domain is built);
 * stubdm_spawn_opts_set_stubdom_domid is refused with it.  On Xen a
 * contract with console 0 (the default) needs its ring:
 * stubdm_spawn_opts_set_console0_ring, or leave console 0 to the
 * toolstack (stubdm_spawn_opts_set_consoles).
 *
 * stubdm_spawn then checks, blocking on one xenstore request, that the
 * domain exists (xenstore knows it: introduced) and returns at once,
 * creating nothing and calling nothing back, STUBDM_ENOENT ("spawn:
 * domain 12 does not exist ...") if it does not, STUBDM_ESTATE if it is
 * dying, crashed or shut down.  Progress and done are called as for any
 * spawn: from dispatch, never inside stubdm_spawn; the caller may unpause
 * its domain from inside the WAIT progress callback.
 *
 * Ownership.  Without STUBDM_SPAWN_ADOPT_DESTROY the domain stays the
 * caller's: a failure at any step, a cancellation, freeing a pending
 * handle and stubdm_stubdom_destroy undo exactly what the spawn added --
 * the domain paused again if the spawn unpaused it (a dead one is left
 * as it is), QMP closed, the consoles it served closed, its devices'
 * remove/offline scripts run and their nodes removed, the contract
 * removed (stubdm_contract_remove) -- and never destroy the domain nor
 * remove /local/domain/<domid> or anything else the caller wrote: the
 * store is as before the spawn (the hypervisor and xenstore target
 * relations stay: neither has an undo).  With it, the domain is destroyed
 * and its nodes removed as for a spawn that created it: the domain,
 * /local/domain/<domid>, the /vm entry its dom0-owned "vm" node names,
 * dom0's console, vbd and vif backends of it.  stubdm_stubdom_free on a
 * running handle lets it run either way.
 *
 * @param domid  the domain, or 0 to create one again (the default).
 * @param flags  STUBDM_SPAWN_ADOPT_* bits.
 * @return 0, STUBDM_EINVAL (domid reserved, unknown flags, NULL opts).
 */
STUBDM_EXPORT int stubdm_spawn_opts_set_domain(stubdm_spawn_opts *opts,
                                               uint32_t domid, unsigned flags);
/** The consoles the spawn's contract writes, as
 *  stubdm_contract_set_consoles (default all); with the LIBSTUBDM backend
 *  only those are served.  An output or restore fd for an unselected
 *  console is refused by validation.  @return 0 or STUBDM_EINVAL. */
STUBDM_EXPORT int stubdm_spawn_opts_set_consoles(stubdm_spawn_opts *opts,
                                                 unsigned mask);
/** Whether the spawn's contract writes /libxl/<guest>/dm-version, as
 *  stubdm_contract_set_dm_version (default yes). */
STUBDM_EXPORT int stubdm_spawn_opts_set_dm_version(stubdm_spawn_opts *opts,
                                                   int write);
/** Ask a service (stubdmd) to adopt the stubdomain, as
 *  stubdm_contract_set_service (mode: enum stubdm_service_mode, default
 *  STUBDM_SERVICE_NONE): it serves console 0 (the
 *  spawn then leaves it alone, whatever its output) and the serials, as
 *  ptys (the spawn serves none; a serial output other than "pty" is
 *  refused), and holds the QMP connection behind its proxy, from the
 *  contract's write on.
 *  Needs the LIBSTUBDM console backend (validation refuses another) and
 *  no QMP of the spawn's own (stubdm_spawn_opts_set_qmp: refused, the
 *  service takes the QMP lock as soon as the contract is written).
 *  @return 0, or STUBDM_EINVAL (mode not an enum stubdm_service_mode). */
STUBDM_EXPORT int stubdm_spawn_opts_set_service(stubdm_spawn_opts *cfg,
                                                int mode);
/** Console 0's ring and event channel of an adopted domain on Xen (the
 *  caller's builder chose them), written as the contract's ring-ref and
 *  port (stubdm_contract_set_console0_ring).  Ignored when the spawn
 *  creates the domain.  @return 0 or STUBDM_EINVAL. */
STUBDM_EXPORT int stubdm_spawn_opts_set_console0_ring(stubdm_spawn_opts *opts,
                                                      uint64_t ring_mfn,
                                                      uint32_t port);

/**
 * Validate without creating anything: every field, the files (kernel and
 * ramdisk readable) and the dm-argv (as stubdm_dm_argv_encode).
 * @return 0, or STUBDM_EINVAL / STUBDM_ELIMIT / STUBDM_ENOENT with a
 *         message naming the field ("spawn: memory: 8192 KiB is less than
 *         the minimum 16384 KiB").
 */
STUBDM_EXPORT int stubdm_spawn_opts_validate(stubdm_ctx *ctx,
                                             const stubdm_spawn_opts *opts);

/**
 * Compute every xenstore node a spawn of opts writes, in write order,
 * without I/O (a dry run, as stubdm_contract_layout for the contract):
 * the domain's own nodes (/local/domain/<stubdom>, /vm/<its uuid>), the
 * contract and the disks' and nics' frontends and backends.  stubdom is
 * the stubdomain domid to show; opts must name the guest's uuid (its vm
 * path is /vm/<uuid>).  What only the spawn itself learns is shown as it
 * would be chosen: a new uuid for the stubdomain's /vm entry, the current
 * time, random macs for nics without one, the guest's name "guest<N>"
 * unless set; on Xen the builder's store and console rings as 0.  The
 * simulated host's stand-in guest is not shown.
 * @param out  receives the list (free with stubdm_nodes_free).
 * @return 0, the refusals of stubdm_spawn_opts_validate, STUBDM_EINVAL
 *         (no guest uuid, or stubdom is not another domid), STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_spawn_layout(stubdm_ctx *ctx,
                                      const stubdm_spawn_opts *opts,
                                      uint32_t stubdom, stubdm_nodes **out);

/** The steps of a spawn, in order.  HOTPLUG is reported on every spawn;
 *  it runs scripts only for disks and nics, and only when
 *  stubdm_ctx_set_hotplug() has not turned them off.  A spawn of the
 *  caller's domain (stubdm_spawn_opts_set_domain) starts at CONTRACT, and
 *  with STUBDM_SPAWN_ADOPT_NO_UNPAUSE skips UNPAUSE. */
typedef enum stubdm_spawn_step {
    STUBDM_SPAWN_STEP_CREATE = 0,   /**< "creating the domain"               */
    STUBDM_SPAWN_STEP_CONTRACT = 1, /**< "writing the xenstore contract"     */
    STUBDM_SPAWN_STEP_DEVICES = 2,  /**< "attaching devices"                 */
    STUBDM_SPAWN_STEP_HOTPLUG = 3,  /**< "running hotplug scripts"           */
    STUBDM_SPAWN_STEP_UNPAUSE = 4,  /**< "unpausing"                         */
    STUBDM_SPAWN_STEP_WAIT = 5,     /**< "waiting for running"               */
    STUBDM_SPAWN_STEP_QMP = 6,      /**< "opening QMP"                       */
    STUBDM_SPAWN_STEP_RUNNING = 7,  /**< done: the device model runs         */
    STUBDM_SPAWN_STEP_FAILED = 8,   /**< failed and cleaned up               */
    STUBDM_SPAWN_STEP_DESTROYED = 9, /**< torn down                          */
} stubdm_spawn_step;

/** The step's text as used in messages ("waiting for running"). */
STUBDM_EXPORT const char *stubdm_spawn_step_name(stubdm_spawn_step step);

/** A stubdomain this ctx spawned (or is spawning). */
typedef struct stubdm_stubdom stubdm_stubdom;

/**
 * Progress: called from dispatch as each step starts.  It may free the
 * stubdom or the op (the spawn is then cancelled and cleaned up).
 */
typedef void stubdm_spawn_progress_fn(stubdm_stubdom *s,
                                      stubdm_spawn_step step, void *user);

/**
 * Start spawning.  The config is validated first (on error nothing is
 * created, nothing is called back) and copied.  done is called once
 * (see "Asynchronous operations") with:
 *   0                    running (and QMP ready, if asked);
 *   STUBDM_EDOMAIN_GONE  the stubdomain died (the message says how, and
 *                        at which step);
 *   STUBDM_ETIMEDOUT     no "running" within the timeout, or a hotplug
 *                        script not done within it;
 *   STUBDM_EFAIL         a hotplug script failed (stubdm_ctx_set_hotplug);
 *   STUBDM_ECANCELED     cancelled (stubdm_op_cancel, the stubdom freed,
 *                        or destroyed);
 *   STUBDM_EXEN, STUBDM_EXENSTORE, STUBDM_ENOTSUP (no usable host), the
 *   contract's and QMP's codes.
 * Rollback.  On failure or cancel everything made is undone before done
 * runs (a domain the caller built without STUBDM_SPAWN_ADOPT_DESTROY:
 * only what the spawn added), asynchronously, as stubdm_stubdom_destroy
 * does: the domain is destroyed in the dispatch that ends the spawn (or
 * inside stubdm_op_cancel), its remove/offline scripts run from later
 * dispatches (no dispatch waits for one; up to 20 s each), its nodes go,
 * then done gets the spawn's code and message, with "; cleaning up failed
 * too: ..." appended when the rollback failed.  The step is
 * STUBDM_SPAWN_STEP_FAILED from the end on; stubdm_stubdom_destroy
 * meanwhile is STUBDM_EBUSY.  Cancel follows libxl's ao abort:
 * stubdm_op_cancel returns at once and the op completes with
 * STUBDM_ECANCELED once the rollback ended, so done means nothing is
 * left (stubdm_op_is_done is 0 until then).  Freeing the stubdom while
 * the spawn is pending cancels it the same way (done still runs, after
 * the rollback).  Freeing the op while it is pending or rolling back
 * leaves the rollback running alone (no callback).  stubdm_stubdom_destroy
 * of a pending spawn ends it at once with STUBDM_ECANCELED: the destroy's
 * op tears down.  stubdm_ctx_free runs no loop any more: a rollback (or a
 * destroy) still running, or a spawn still pending, is finished there,
 * blocking (the scripts run inside stubdm_ctx_free), so nothing is left
 * and no domain leaks.
 * @param progress  may be NULL.
 * @param[out] s_out  the stubdomain handle (required); free it with
 *                    stubdm_stubdom_free() before the ctx (freeing the
 *                    ctx tears down a pending spawn; only such a failed
 *                    handle may still be freed afterwards).
 * @param[out] op_out the operation, or NULL for a floating op.
 * @return 0 if started; STUBDM_EINVAL/ELIMIT/ENOENT (validation),
 *         STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_spawn(stubdm_ctx *ctx, const stubdm_spawn_opts *opts,
                               stubdm_spawn_progress_fn *progress,
                               stubdm_done_fn *done, void *user,
                               stubdm_stubdom **s_out, stubdm_op **op_out);

/**
 * Blocking form: runs the ctx's poll loop until the spawn completes.  On
 * failure *s_out is NULL and the message is in stubdm_ctx_errmsg().
 */
STUBDM_EXPORT int stubdm_spawn_sync(stubdm_ctx *ctx,
                                    const stubdm_spawn_opts *opts,
                                    stubdm_spawn_progress_fn *progress,
                                    void *user, stubdm_stubdom **s_out);

/** The stubdomain's domid (0 before the domain was created). */
STUBDM_EXPORT uint32_t stubdm_stubdom_domid(const stubdm_stubdom *s);
/** The guest's domid. */
STUBDM_EXPORT uint32_t stubdm_stubdom_guest(const stubdm_stubdom *s);
/** The current step (RUNNING once spawned). */
STUBDM_EXPORT stubdm_spawn_step stubdm_stubdom_step(const stubdm_stubdom *s);
/** The QMP handle opened by the spawn (borrowed; closed by destroy and
 *  free), or NULL. */
STUBDM_EXPORT stubdm_qmp *stubdm_stubdom_qmp(const stubdm_stubdom *s);

/** Console n served by the spawn (backend LIBSTUBDM), borrowed (valid
 *  until the handle is destroyed or freed), or NULL. */
STUBDM_EXPORT stubdm_console *stubdm_stubdom_console(const stubdm_stubdom *s,
                                                     unsigned n);
/** The console backend the spawn used (the default resolved). */
STUBDM_EXPORT stubdm_console_backend
stubdm_stubdom_console_backend(const stubdm_stubdom *s);

/**
 * Pause / unpause a running stubdomain, e.g. together with its guest
 * (Xen: xc_domain_pause/unpause; simulated: SIGSTOP/SIGCONT of the
 * stubdomain's processes).  Idempotent.  A paused stubdomain cannot save.
 * @return 0, STUBDM_ESTATE (not running), STUBDM_EXEN, STUBDM_ENOTSUP.
 */
STUBDM_EXPORT int stubdm_stubdom_pause(stubdm_stubdom *s);
/** Undo stubdm_stubdom_pause; returns as it does. */
STUBDM_EXPORT int stubdm_stubdom_unpause(stubdm_stubdom *s);

/**
 * Save the device model's state to out_fd (docs/consoles.md, "Save and
 * restore"): QMP "stop", then "xen-save-devices-state" to /dev/fdset/1,
 * which the stubdomain connected to console 1; completion only once the
 * whole stream has been written to out_fd.  The end: a frontend offering
 * "feature-stream-end" reports its byte count (exact); otherwise the ring
 * must stay empty with no new byte for 100 ms (a heuristic).  The device
 * model is left stopped ("cont" resumes it).  out_fd stays the caller's
 * (made non-blocking).  done gets 0, STUBDM_ETIMEDOUT, STUBDM_EQMP,
 * STUBDM_EVCHAN, STUBDM_EDOMAIN_GONE, STUBDM_EFAIL (writing out_fd),
 * STUBDM_ELIMIT (the stream exceeds stubdm_ctx_set_save_limit's bound),
 * STUBDM_ECANCELED (destroyed or freed meanwhile).
 * This form uses the spawn's QMP handle (set_qmp) and its held console 1.
 * @return 0 if started; STUBDM_EINVAL, STUBDM_ESTATE, STUBDM_EBUSY.
 */
STUBDM_EXPORT int stubdm_stubdom_save(stubdm_stubdom *s, int out_fd,
                                      int timeout_ms, stubdm_done_fn *done,
                                      void *user, stubdm_op **op_out);
/**
 * The same for a stubdomain this ctx did not spawn (another process, e.g.
 * stubdm-ctl): opens QMP and serves console 1 for the save's duration,
 * then lets it go (InitWait), so the next save can serve it again.  No
 * other process may serve console 1 meanwhile (one event-channel binding
 * per port).  @return also STUBDM_ENOENT (the stubdomain has no console
 * 1, e.g. spawned with the xenconsoled backend), STUBDM_ENOTSUP
 * (console 1's backend kind is not libstubdm) or STUBDM_EPROTO (console
 * 1's "type" node is not dom0's: the stubdomain, which owns
 * device/console/1, re-created it), at once.
 */
STUBDM_EXPORT int stubdm_dm_save(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                 uint32_t guest_domid, int out_fd,
                                 int timeout_ms, stubdm_done_fn *done,
                                 void *user, stubdm_op **op_out);
/**
 * The same by domids, through a QMP handle the caller already holds (a
 * long-lived holder: stubdm_dm_save opens its own connection, and gets
 * STUBDM_EBUSY while another process or ctx holds the lock).  The save runs
 * on q's ctx, for q's (stubdom, guest), and serves console 1 as
 * stubdm_dm_save does; it sends "stop" and "xen-save-devices-state" on q
 * (besides the caller's own commands, which QEMU runs in order), and
 * leaves q open and the device model stopped.  q must stay valid until
 * done: freeing it during "stop" or "xen-save-devices-state" ends the save
 * with STUBDM_ECANCELED.  The handle's lock mode is the caller's choice;
 * next to libxl (STUBDM_QMP_LOCK_LIBXL) open the handle for the save and
 * free it after.
 * @return as stubdm_dm_save; STUBDM_EINVAL (NULL q); STUBDM_ESTATE (q not
 *         ready).
 */
STUBDM_EXPORT int stubdm_dm_save_qmp(stubdm_qmp *q, int out_fd, int timeout_ms,
                                     stubdm_done_fn *done, void *user,
                                     stubdm_op **op_out);
/**
 * Blocking form of stubdm_stubdom_save: runs the ctx's poll loop until the
 * save completes.
 * @param[out] bytes_out  (may be NULL) the stream's size on success, else 0.
 * @return the completion code (as stubdm_stubdom_save's done gets it, or
 *         its refusal); the message is in stubdm_ctx_errmsg();
 *         STUBDM_ERECURSIVE from inside a callback; STUBDM_EINVAL (NULL s).
 */
STUBDM_EXPORT int stubdm_stubdom_save_sync(stubdm_stubdom *s, int out_fd,
                                           int timeout_ms,
                                           uint64_t *bytes_out);
/**
 * Blocking form of stubdm_dm_save, as stubdm_stubdom_save_sync.
 * @return as stubdm_stubdom_save_sync; STUBDM_EINVAL (NULL ctx).
 */
STUBDM_EXPORT int stubdm_dm_save_sync(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                      uint32_t guest_domid, int out_fd,
                                      int timeout_ms, uint64_t *bytes_out);
/**
 * Blocking form of stubdm_dm_save_qmp, as stubdm_stubdom_save_sync.
 * @return as stubdm_stubdom_save_sync; STUBDM_EINVAL (NULL q).
 */
STUBDM_EXPORT int stubdm_dm_save_qmp_sync(stubdm_qmp *q, int out_fd,
                                          int timeout_ms, uint64_t *bytes_out);
/** Bytes a completed save wrote to out_fd (0 for other ops). */
STUBDM_EXPORT uint64_t stubdm_dm_save_bytes(const stubdm_op *op);

/** Default bound on a save's stream: a device state is kilobytes. */
#define STUBDM_DM_SAVE_DEFAULT_LIMIT (UINT64_C(64) << 20)
/**
 * Bound the stream of every save started on ctx from now on (0: the
 * default, STUBDM_DM_SAVE_DEFAULT_LIMIT).  A stubdomain that streams more
 * ends its save with STUBDM_ELIMIT ("the stream exceeds the limit of N
 * bytes ..."), checked every 5 ms, so out_fd may get what console 1 moves
 * in 5 ms past the limit; a regular-file out_fd is then truncated back to
 * its offset at the start of the save (other kinds cannot be; discard
 * what they got).  The bound is taken when a save starts: saves already
 * running keep theirs.  May be called at any time, also from a callback.
 * @return 0 or STUBDM_EINVAL (NULL ctx).
 */
STUBDM_EXPORT int stubdm_ctx_set_save_limit(stubdm_ctx *ctx,
                                            uint64_t max_bytes);

/**
 * Tear down, asynchronously: a pending spawn completes with
 * STUBDM_ECANCELED (its scripts killed), QMP is closed, the consoles are
 * no longer served, and the domain is destroyed, all inside this call;
 * then, from the ctx's loop, the remove/offline scripts run (each bounded
 * by 20 s, see stubdm_ctx_set_hotplug; no dispatch waits for one) and the
 * contract and every node the spawn wrote go (devices,
 * /local/domain/<stubdom>, its /vm entry).  done gets 0 or the first
 * failure (every step is still attempted), e.g. STUBDM_EFAIL "destroy 7:
 * hotplug scripts: vbd 51712 (/etc/xen/scripts/block remove) of
 * stubdomain 7: exited with status 1".  Each step is logged (debug):
 * "destroy 7: running hotplug scripts (0.002 s)".
 *
 * Cancel (stubdm_op_cancel, or freeing the op while pending): the
 * domain's destruction is the point of no return and is behind when this
 * call returns 0, so a cancel never leaves a live domain: it kills the
 * script that runs, runs no other, removes nothing more, and completes
 * with STUBDM_ECANCELED and a message (also logged as a warning) saying
 * what is left; the contract, the backends whose scripts did not run and
 * the nodes are left as a gone stubdomain (its dom0-owned target still
 * names the guest) that stubdm_stubdom_destroy_by_domid(ctx, domid, 0,
 * ...) finishes.
 *
 * The handle stays valid (step DESTROYED from this call on) until freed;
 * freeing it while the destroy runs leaves the op running alone.
 * Idempotent: once destroyed, a destroy completes with 0 and does
 * nothing.
 *
 * A domain the caller built (stubdm_spawn_opts_set_domain without
 * STUBDM_SPAWN_ADOPT_DESTROY) is not destroyed: it is paused again if the
 * spawn unpaused it (inside this call), and only what the spawn added
 * goes: QMP and its consoles in this call, its devices' remove/offline
 * scripts from the loop as above, then their nodes and the contract; the
 * store is then as the caller left it before stubdm_spawn, and the caller
 * destroys the domain.  A cancel leaves the devices whose scripts did not
 * run, their nodes and the contract (the message says so).
 *
 * One teardown of a stubdomain at a time across processes: every
 * teardown (this, stubdm_stubdom_destroy_by_domid, a spawn's rollback)
 * holds a lock file (/run/xen/libstubdm/teardown-<domid>.lock, on the
 * simulated host in its directory) from its start to its end.  One that
 * finds it held (another process tears the same stubdomain down: a
 * toolstack and stubdmd's cleanup after it) waits, logging so, without
 * destroying anything yet, then goes on and finds what the other left:
 * no remove script runs twice, nothing removed comes back.  It gives up
 * after 120 s with STUBDM_EBUSY.  A lock file that cannot be made is
 * logged (warning) and the teardown goes on without it.
 *
 * stubdm_ctx_free while the destroy runs finishes it there, blocking.
 * @param[out] op_out  the op, or NULL for a floating op.
 * @return 0 if started; STUBDM_EINVAL (NULL s); STUBDM_EBUSY (a destroy
 *         of it, or the rollback of its failed spawn, is running);
 *         STUBDM_ENOMEM; the host's failure to destroy
 *         the domain (STUBDM_EXEN ...: "destroy 7: destroying the domain:
 *         ..."; the handle then still holds the domain, and nothing else
 *         was removed).
 */
STUBDM_EXPORT int stubdm_stubdom_destroy(stubdm_stubdom *s,
                                         stubdm_done_fn *done, void *user,
                                         stubdm_op **op_out);

/**
 * Blocking form of stubdm_stubdom_destroy: runs the ctx's poll loop until
 * the destroy completes (up to 20 s per script).
 * @return as the op completes (the message in stubdm_ctx_errmsg()), its
 *         refusals, STUBDM_ERECURSIVE from inside a callback.
 */
STUBDM_EXPORT int stubdm_stubdom_destroy_sync(stubdm_stubdom *s);

/**
 * Free the handle.  A pending spawn is cancelled (and cleaned up); a
 * running stubdomain keeps running (QMP is closed).  NULL is ignored.
 */
STUBDM_EXPORT void stubdm_stubdom_free(stubdm_stubdom *s);

/** stubdm_stubdom_destroy_by_domid flags. */
enum {
    /** Destroy the domain even when it is not a stubdomain (see below):
     *  the domain, /local/domain/<domid>, its /vm entry and what dom0 holds
     *  for it (console, vbd, vif backends) go; no guest's contract is
     *  touched unless dom0's nodes name the guest. */
    STUBDM_STUBDOM_DESTROY_FORCE = 1u << 0,
};

/**
 * Tear down a stubdomain by domid, e.g. one spawned by another process:
 * reads its guest and vm path from xenstore and judges it (below), then
 * as stubdm_stubdom_destroy: the domain is destroyed in this call, the
 * scripts and node removals follow from the ctx's loop, done gets the
 * result, and a cancel leaves what stubdm_stubdom_destroy's does (a later
 * call finishes it).
 *
 * Only a stubdomain as docs/protocol.md describes it is destroyed, judged
 * on nodes dom0 owns (a domain's own nodes are its claims, not evidence):
 * /local/domain/<stubdom>/target naming its guest, owned by dom0; or,
 * when that is missing or not dom0's, exactly one guest whose
 * image/device-model-domid, owned by dom0, names the stubdomain.  Any
 * other domain that exists (a guest, dom0's other domains, a domain some
 * other toolstack made) is refused with STUBDM_ENOTSTUBDOM and left
 * untouched, unless flags has STUBDM_STUBDOM_DESTROY_FORCE.  A vm path is
 * taken only from a dom0-owned "vm" node.
 *
 * A stubdomain another toolstack destroyed already (xl destroying its
 * guest, say, which removes /local/domain/<stubdom> but knows nothing of
 * the library's devices) leaves backends in dom0: its consoles', vbds'
 * and vifs', and whatever its hotplug scripts made (a loop device).
 * Called for such a domid, this removes them, running the remove/offline
 * scripts as stubdm_ctx_set_hotplug() says, and returns 0.  A guest that
 * lives on keeps the contract: it is found by its
 * image/device-model-domid (taken only when dom0 owns that node) and the
 * contract removed as well.
 *
 * The remove/offline scripts run are the backends' "script" nodes, taken
 * only when dom0 owns the node and the path is an entry of the ctx's
 * hotplug directory (stubdm_ctx_set_hotplug_dir, default /etc/xen/scripts);
 * any other is not run (logged), the rest of the teardown still runs, and
 * the destroy returns STUBDM_EPERM.  No script runs with
 * stubdm_ctx_set_hotplug(ctx, 0).
 *
 * The call itself makes a few xenstore requests and the hypervisor's
 * destroy; it runs no callback.  The domain is judged at the call: a
 * domain that becomes a stubdomain later is not covered by an earlier
 * refusal.  A refusal changes nothing and calls nothing back.
 * @param flags  0 or STUBDM_STUBDOM_DESTROY_FORCE; other bits: STUBDM_EINVAL.
 * @param[out] op_out  the op, or NULL for a floating op.
 * @return 0 if started (done then gets 0, STUBDM_EPERM for a hotplug
 *         script not trusted, see above, or the teardown's first failure:
 *         every step is still attempted); at once: STUBDM_ENOENT (no such
 *         stubdomain: no domain, no backend of it in dom0),
 *         STUBDM_ENOTSTUBDOM (a domain that exists and is not a
 *         stubdomain, without STUBDM_STUBDOM_DESTROY_FORCE: nothing done,
 *         the message says why), STUBDM_EINVAL (NULL ctx, domid 0 or
 *         reserved, unknown flags), STUBDM_ENOMEM, the host's failure to
 *         destroy the domain.
 */
STUBDM_EXPORT int stubdm_stubdom_destroy_by_domid(
    stubdm_ctx *ctx, uint32_t stubdom_domid, unsigned flags,
    stubdm_done_fn *done, void *user, stubdm_op **op_out);

/**
 * Blocking form of stubdm_stubdom_destroy_by_domid: runs the ctx's poll
 * loop until it completes.
 * @return 0, the refusals and the op's failures as above (the message in
 *         stubdm_ctx_errmsg()), STUBDM_ERECURSIVE from inside a callback.
 */
STUBDM_EXPORT int stubdm_stubdom_destroy_by_domid_sync(stubdm_ctx *ctx,
                                                       uint32_t stubdom_domid,
                                                       unsigned flags);

/**
 * The stubdomain serving a guest (/local/domain/<guest>/image/
 * device-model-domid, taken only when dom0 owns it).  @return 0,
 * STUBDM_ENOENT, STUBDM_EPERM (the node is not dom0's), STUBDM_EPROTO (not
 * a domid), STUBDM_EXENSTORE.
 */
STUBDM_EXPORT int stubdm_stubdom_find_by_guest(stubdm_ctx *ctx,
                                               uint32_t guest_domid,
                                               uint32_t *stubdom_out);

/** A snapshot of the stubdomains known to xenstore. */
typedef struct stubdm_stubdom_list stubdm_stubdom_list;

/**
 * Take a snapshot of the stubdomains: every /local/domain/<id> with a
 * "target".  A few xenstore reads per domain; blocking; no callback.
 * @param[out] out  the list (free with stubdm_stubdom_list_free); NULL on
 *                  failure.
 * @return 0, STUBDM_EINVAL, STUBDM_EXENSTORE, STUBDM_EPERM, STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_stubdom_list_new(stubdm_ctx *ctx,
                                          stubdm_stubdom_list **out);
/** Number of stubdomains in the list (0 for NULL).  Entries are indexed
 *  0 .. count - 1 below; an index out of range gives 0 or "". */
STUBDM_EXPORT size_t stubdm_stubdom_list_count(const stubdm_stubdom_list *l);
/** The stubdomain's domid. */
STUBDM_EXPORT uint32_t stubdm_stubdom_list_domid(const stubdm_stubdom_list *l,
                                                 size_t i);
/** The guest it serves (its "target"). */
STUBDM_EXPORT uint32_t stubdm_stubdom_list_guest(const stubdm_stubdom_list *l,
                                                 size_t i);
/** The stubdomain's name ("" if none). */
STUBDM_EXPORT const char *stubdm_stubdom_list_name(
    const stubdm_stubdom_list *l, size_t i);
/** "running" (device model running), "starting", or why the domain is
 *  gone ("crashed (signal 11)", "destroyed"). */
STUBDM_EXPORT const char *stubdm_stubdom_list_state(
    const stubdm_stubdom_list *l, size_t i);
/** Free a list.  NULL is ignored. */
STUBDM_EXPORT void stubdm_stubdom_list_free(stubdm_stubdom_list *l);

/* ------------------------------------------------------------------------
 * Console backend
 * ------------------------------------------------------------------------
 *
 * The library can serve a stubdomain's PV consoles itself, so no QEMU is
 * needed in dom0 (contract backend kind STUBDM_CONSOLE_BACKEND_LIBSTUBDM,
 * frontend "type" = "libstubdm").  Each served console follows the xenbus
 * state machine with the frontend, maps its ring, binds its event channel
 * and moves bytes between the ring and an fd, from the ctx's event loop.
 * Roles, by console number (docs/consoles.md):
 *
 *   0 log      frontend -> a file with a size cap and rotation (or drops,
 *              counted, once the cap is reached without rotation);
 *   1 save     frontend -> the caller's fd (binary);
 *   2 restore  the caller's fd -> frontend (binary); at EOF, once the
 *              frontend has read everything, the console completes with 0;
 *   3..        serials: a pty (its path published in the frontend "tty"
 *              key) or a capped file.
 *
 * Bounds.  Nothing is buffered outside the shared ring: bytes go straight
 * between the ring and the fd.  A slow destination fd stops the ring from
 * being consumed (the frontend blocks: backpressure); a full ring stops
 * the source fd from being read.  Memory per console is constant.
 *
 * Trust.  The frontend is hostile: its ring indexes are validated on every
 * use (an impossible index closes that console with STUBDM_EPROTO), its
 * xenstore values are read with size bounds, and on the simulated host no
 * path is ever taken from xenstore.
 *
 * Completion.  A console is an operation: done is called once when it
 * ends by itself, with
 *   0                    the frontend closed it, or the restore stream was
 *                        delivered (role restore, EOF on the fd);
 *   STUBDM_EPROTO        the frontend broke the ring protocol;
 *   STUBDM_EDOMAIN_GONE  the stubdomain died or was destroyed;
 *   STUBDM_EFAIL         writing or reading the caller's fd failed (EPIPE,
 *                        EIO, ...; os errno in the message);
 *   STUBDM_EXEN, STUBDM_EXENSTORE, STUBDM_ENOTSUP (no usable transport).
 * stubdm_console_free() ends it without a callback.  Either way the
 * handle stays valid (stats readable) until freed.
 */
/* typedef struct stubdm_console stubdm_console: above, with the spawn API */
typedef struct stubdm_console_opts stubdm_console_opts;

/** How the backend reaches the console page and event channel. */
typedef enum stubdm_console_transport {
    /** Xen when a hypervisor is present, else simulated. */
    STUBDM_CONSOLE_TRANSPORT_AUTO = 0,
    /** libxengnttab / libxenforeignmemory / libxenevtchn. */
    STUBDM_CONSOLE_TRANSPORT_XEN = 1,
    /** The simulated host: <sim dir>/console/<stubdom>.<n>.{ring,evtchn}. */
    STUBDM_CONSOLE_TRANSPORT_SIMULATED = 2,
} stubdm_console_transport;

/** Default size cap of a log or serial file: 1 MiB (libxl's "limit"). */
#define STUBDM_CONSOLE_DEFAULT_FILE_CAP (1u << 20)
/** At most this many rotated files (path.1 .. path.N). */
#define STUBDM_CONSOLE_MAX_ROTATIONS 99

/**
 * Create console options: no role yet (one of the set_log / set_save_fd /
 * set_restore_fd / set_serial_* setters is required; the last one called
 * wins), transport AUTO, sim dir from $STUBDM_SIM_DIR or else the
 * directory of $XENSTORED_PATH, toolstack domid 0.
 * @return 0, STUBDM_EINVAL or STUBDM_ENOMEM.
 */
STUBDM_EXPORT int stubdm_console_opts_new(stubdm_console_opts **out);
/** Free options.  NULL is ignored. */
STUBDM_EXPORT void stubdm_console_opts_free(stubdm_console_opts *o);
/**
 * Role log (console 0): append to the file at path (created 0640, never
 * through a symlink).  When it reaches max_bytes (0: the default cap):
 * with rotations > 0, path.N-1 -> path.N, ..., path -> path.1 and a new
 * path is started (at most 1 + rotations files, each at most max_bytes);
 * with rotations == 0, further bytes are consumed and counted as dropped
 * (stubdm_console_stats.bytes_dropped), never written.
 * @return 0 or STUBDM_EINVAL (rotations > STUBDM_CONSOLE_MAX_ROTATIONS).
 */
STUBDM_EXPORT int stubdm_console_opts_set_log(stubdm_console_opts *o,
                                              const char *path,
                                              uint64_t max_bytes,
                                              unsigned rotations);
/**
 * Role save (console 1): bytes from the frontend are written to fd.  The
 * fd stays the caller's (never closed) but is made non-blocking; a write
 * to a pipe whose reader is gone fails the console (no SIGPIPE).
 */
STUBDM_EXPORT int stubdm_console_opts_set_save_fd(stubdm_console_opts *o,
                                                  int fd);
/**
 * Role restore (console 2): bytes read from fd are given to the frontend.
 * The fd stays the caller's but is made non-blocking.
 */
STUBDM_EXPORT int stubdm_console_opts_set_restore_fd(stubdm_console_opts *o,
                                                     int fd);
/**
 * Role serial (consoles 3..): a new pty in raw mode, both ways; its path
 * is written to the frontend's "tty" key and given by stubdm_console_tty().
 * The key is emptied when the console ends or is freed (the pty closes
 * with it and its number may go to another pty).  While no reader has the
 * pty open, output waits in the pty (the kernel's buffer, some KiB), then
 * in the ring: none is dropped, the first reader gets it; what is in the
 * pty when the console goes is lost with the pty (docs/consoles.md).
 */
STUBDM_EXPORT int stubdm_console_opts_set_serial_pty(stubdm_console_opts *o);
/** Role serial to a file, capped and rotated as for the log. */
STUBDM_EXPORT int stubdm_console_opts_set_serial_file(stubdm_console_opts *o,
                                                      const char *path,
                                                      uint64_t max_bytes,
                                                      unsigned rotations);
/** Choose the transport.  @return 0 or STUBDM_EINVAL. */
STUBDM_EXPORT int stubdm_console_opts_set_transport(
    stubdm_console_opts *o, stubdm_console_transport transport);
/** The simulated host's directory (NULL: the default above). */
STUBDM_EXPORT int stubdm_console_opts_set_sim_dir(stubdm_console_opts *o,
                                                  const char *dir);
/** The backend's domid T (/local/domain/T/backend/console/...); default 0. */
STUBDM_EXPORT int stubdm_console_opts_set_toolstack_domid(
    stubdm_console_opts *o, uint32_t domid);

/**
 * Freeing the console hands it over instead of closing it (on = 1):
 * stubdm_console_free() while the console is served writes the backend
 * state back to InitWait, not Closing/Closed, and the frontend stays
 * connected, so another process (a restarted service) can serve it again;
 * a Linux frontend removes its tty for good when its backend closes.  As
 * the consoles of a spawn freed while its stubdomain runs.  Default: off
 * (free closes).  @return 0 or STUBDM_EINVAL.
 */
STUBDM_EXPORT int stubdm_console_opts_set_handover(stubdm_console_opts *o,
                                                   int on);

/**
 * Serve console n of a stubdomain whose contract was written with backend
 * kind STUBDM_CONSOLE_BACKEND_LIBSTUBDM.  Opens the destination (log file,
 * pty) now, writes backend state InitWait (2), then from the loop: waits for
 * the frontend's ring-ref and port (the keys Linux's hvc_xen writes;
 * console 0: ring-ref and port from the domain builder), maps and binds
 * them, writes Connected (4) and
 * moves bytes.  On the end, Closing (5) then Closed (6).
 * @param n     0 .. 2 + STUBDM_CONSOLE_MAX_SERIALS; the role must fit n
 *              (log: 0, save: 1, restore: 2, serial: >= 3).
 * @param opts  copied.
 * @param done  may be NULL (then poll stubdm_console_result()).
 * @param[out] out  the handle (required); release it with
 *                  stubdm_console_free().
 * @return 0 if started; STUBDM_EINVAL, STUBDM_ENOENT / STUBDM_EPERM /
 *         STUBDM_EFAIL (opening the log file or pty), STUBDM_EXENSTORE,
 *         STUBDM_ENOMEM: nothing started, done will not be called.
 */
STUBDM_EXPORT int stubdm_console_serve(stubdm_ctx *ctx, uint32_t stubdom_domid,
                                       unsigned n,
                                       const stubdm_console_opts *opts,
                                       stubdm_done_fn *done, void *user,
                                       stubdm_console **out);

/**
 * Stop serving (if still serving: no callback), write Closing/Closed,
 * unmap and close everything, free the handle.  Pending flushes complete
 * with STUBDM_ECANCELED (from a later dispatch).  Safe from callbacks,
 * including the console's own.  NULL is ignored.  The caller's
 * save/restore fd is not closed.
 */
STUBDM_EXPORT void stubdm_console_free(stubdm_console *c);

/** STUBDM_ESTATE while serving, else the completion code. */
STUBDM_EXPORT int stubdm_console_result(const stubdm_console *c);
/** The completion message ("" while serving or after success). */
STUBDM_EXPORT const char *stubdm_console_errmsg(const stubdm_console *c);
/** The backend's xenbus state as last written (1..6, XenbusState). */
STUBDM_EXPORT int stubdm_console_state(const stubdm_console *c);
/** The pty path of a serial pty console, else NULL.  Valid until freed. */
STUBDM_EXPORT const char *stubdm_console_tty(const stubdm_console *c);
/** The counters of a console, since it was opened. */
typedef struct stubdm_console_stats {
    /** Bytes taken from the frontend's output ring (written or dropped). */
    uint64_t bytes_out;
    /** Bytes given to the frontend's input ring. */
    uint64_t bytes_in;
    /** Bytes consumed but not written: a log or serial file at its cap
     *  without rotation or before the rotation interval has passed, output
     *  over the budget of stubdm_ctx_set_console_limits(), or a failing
     *  log write. */
    uint64_t bytes_dropped;
    /** Log rotations done so far. */
    uint64_t rotations;
} stubdm_console_stats;

/**
 * Read the console's counters into *stats (see "Statistics").  Valid in
 * every state until the console is freed.
 * @return 0, or STUBDM_EINVAL (NULL c or stats, size 0).
 */
STUBDM_EXPORT int stubdm_console_get_stats(const stubdm_console *c,
                                           stubdm_console_stats *stats,
                                           size_t size);

/** Default output budget of a console: 1 MiB per second. */
#define STUBDM_CONSOLE_DEFAULT_RATE (1u << 20)
/** Default minimum interval between two rotations of a console's file. */
#define STUBDM_CONSOLE_DEFAULT_ROTATE_INTERVAL_MS 10000u

/**
 * Bound what a stubdomain makes dom0 write through the consoles served by
 * ctx from now on (stubdm_console_serve, and those of stubdm_spawn).  The
 * frontend decides what is in its ring, so without a bound a compromised
 * QEMU could fill the disk's bandwidth or rotate its own log away.
 * @param bytes_per_second  output a console may write per second (a
 *        budget holding one second's worth, refilled continuously); bytes
 *        beyond it are taken from the ring and dropped.  0: no limit.
 *        Default STUBDM_CONSOLE_DEFAULT_RATE.
 * @param min_rotate_interval_ms  a log or serial file at its cap is
 *        rotated at most once per interval; until the interval has passed
 *        further bytes are dropped.  0: no minimum.  Default
 *        STUBDM_CONSOLE_DEFAULT_ROTATE_INTERVAL_MS.
 * The save console (1) is not limited (its stream must arrive whole; a
 * save is bounded by stubdm_ctx_set_save_limit instead).
 * Dropped bytes count in stubdm_console_stats.bytes_dropped and are logged at
 * warning level at most once per second per console.  The limits are
 * taken when a console is opened: consoles already served keep theirs.
 * May be called at any time, also from a callback.
 * @return 0 or STUBDM_EINVAL (NULL ctx).
 */
STUBDM_EXPORT int stubdm_ctx_set_console_limits(
    stubdm_ctx *ctx, uint64_t bytes_per_second,
    unsigned min_rotate_interval_ms);

/**
 * Wait until everything the frontend has put in its output ring so far
 * has been written to the destination (e.g. the end of a save stream, see
 * docs/consoles.md: libxl never waited for it).  Completes with 0, with
 * STUBDM_ETIMEDOUT after timeout_ms (> 0), or with the console's own code
 * if it ends first (STUBDM_ECANCELED if it was freed).
 * @return 0 if started; STUBDM_EINVAL; STUBDM_ESTATE (console ended).
 */
STUBDM_EXPORT int stubdm_console_flush(stubdm_console *c, int timeout_ms,
                                       stubdm_done_fn *done, void *user,
                                       stubdm_op **op_out);

#ifdef __cplusplus
}
#endif

#endif /* LIBSTUBDM_H */
