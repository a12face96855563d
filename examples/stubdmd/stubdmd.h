/*
 * stubdmd: the host's long-lived service for stubdomains whose contract
 * asks for one (/local/domain/<guest>/image/device-model-service, written
 * by stubdm_contract_set_service).  It serves what must outlive the
 * toolstack process that spawned them: console 0 into a capped log file
 * and the single QMP connection behind a multiplexing proxy at libxl's
 * path.  It uses only the public API of libstubdm (and libxenstore for its
 * own watches): it is also the proof that the API suffices.
 */
#ifndef STUBDMD_H
#define STUBDMD_H

#include "stubdm-epoll.h"

#include <libstubdm.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

struct xs_handle;

struct stubdmd_conf {
    const char *run_dir;     /* the lock (pidfile), the control socket */
    const char *log_dir;     /* qemu-dm-<name>.log */
    const char *qmp_dir;     /* qmp-libxl-<guest>, qmp-event-<guest> */
    const char *hotplug_dir; /* trusted remove scripts; NULL: the default */
    uint64_t log_cap;
    unsigned log_rotations;
    int qmp_open_timeout_ms;
    stubdm_log_level level;
    uint64_t console_rate; /* stubdm_ctx_set_console_limits; 0: none */
    int ready_fd;          /* --ready-fd: a newline when ready; -1: none */
};

/* A listening socket that outlives the process (systemd.c): given to the
 * service manager's fd store under name, taken back by the next one. */
struct stubdmd_sock {
    int fd;
    char name[64]; /* FDNAME: qmp-libxl-<guest> */
    char path[256];
    dev_t dev; /* the file made or taken: removed only while still it */
    ino_t ino;
};

/* An fd the service manager passed at start ($LISTEN_FDS), by name. */
struct stubdmd_passed {
    int fd; /* -1: taken or dropped */
    char name[64];
};

/* The service manager, if any ($NOTIFY_SOCKET). */
struct stubdmd_sd {
    int notify_fd; /* -1: none */
    struct sockaddr_un addr;
    socklen_t addrlen;
    struct stubdmd_passed *passed;
    size_t npassed;
    size_t status_served; /* the count last sent in STATUS= */
};

/* What an outer epoll event belongs to. */
enum stubdmd_src_kind {
    SRC_SIGNAL,
    SRC_XENSTORE,
    SRC_SERVED,
    SRC_TIMER,
    SRC_CONTROL,
    SRC_CLIENT
};

/* A failed QMP open is retried after 1 s, 2 s, 4 s ... at most 30 s. */
#define STUBDMD_QMP_RETRY_FIRST_MS 1000
#define STUBDMD_QMP_RETRY_MAX_MS 30000
/* The wait before cleaning up after a destroyed stubdomain (cleanup.c). */
#define STUBDMD_CLEANUP_GRACE_MS 1000

struct stubdmd_src {
    enum stubdmd_src_kind kind;
    struct stubdmd_served *served;           /* SRC_SERVED, SRC_TIMER */
    void (*timer)(struct stubdmd_served *s); /* SRC_TIMER: read its fd */
    struct stubdmd_client *client;           /* SRC_CLIENT */
};

/* A guest serial: console n (>= 3) of the stubdomain, served as a pty. */
struct stubdmd_serial {
    struct stubdmd_served *s;
    unsigned n;
    stubdm_console *con; /* NULL: the stubdomain has no console n */
};

/* One adopted stubdomain: its own ctx, so every library line names it. */
struct stubdmd_served {
    struct stubdmd *d;
    uint32_t stub, guest;
    char name[64];
    stubdm_ctx *ctx;
    struct stubdm_epoll ep;
    bool ep_attached;
    struct stubdmd_src src;
    stubdm_console *con0;
    struct stubdmd_serial serial[STUBDM_CONSOLE_MAX_SERIALS]; /* 3 + i */
    stubdm_qmp *q;
    /* the proxies on q: [0] libxl's path, [1] xenopsd's */
    stubdm_qmp_proxy *proxy[2];
    char proxy_path[2][256];
    struct stubdmd_sock proxy_sock[2]; /* kept by a service manager */
    stubdm_op *lost;                   /* stubdm_qmp_watch_lost while ready */
    int retry_fd; /* timerfd of the next QMP retry, or -1 */
    struct stubdmd_src retry_src;
    unsigned qmp_retries; /* failed attempts since it was last ready */
    bool serve_only;      /* its builder tears it down, not stubdmd */
    bool gone;            /* the stubdomain died: cleaned up, then dropped */
    int64_t died_ms;      /* when its cleanup began (CLOCK_MONOTONIC) */
    stubdm_op *cleanup;   /* stubdm_stubdom_destroy_by_domid running */
    int cleanup_fd;       /* timerfd of the grace before it, or -1 */
    struct stubdmd_src cleanup_src;
    bool cleaned; /* nothing left to do: freed after the dispatch */
    struct stubdmd_served *next;
};

struct stubdmd {
    const struct stubdmd_conf *conf;
    int epfd, sigfd, xsfd;
    struct xs_handle *xs;
    struct stubdmd_src sig_src, xs_src;
    struct stubdmd_served *served;
    uint32_t *watched; /* domains whose adoption node is watched */
    size_t nwatched, capwatched;
    int ctlfd; /* the control socket (control.c) */
    struct stubdmd_src ctl_src;
    struct stubdmd_client *clients;
    unsigned nclients;
    struct stubdmd_sd sd;
    bool stop;
};

/* Log a line of the daemon's own; stub/guest 0: not about one. */
void stubdmd_log(stubdm_log_level level, const struct stubdmd_served *s,
                 const char *fmt, ...) __attribute__((format(printf, 3, 4)));
extern stubdm_log_level stubdmd_min_level;

/* adopt.c: finding the stubdomains to serve */
int stubdmd_xs_start(struct stubdmd *d);
void stubdmd_xs_events(struct stubdmd *d);
int stubdmd_adopt_existing(struct stubdmd *d);
void stubdmd_xs_stop(struct stubdmd *d);

/* served.c: one served stubdomain */
int stubdmd_served_attach(struct stubdmd_served *s);
int stubdmd_served_start(struct stubdmd_served *s);
void stubdmd_served_free(struct stubdmd_served *s);
void stubdmd_served_dispatch(struct stubdmd_served *s);
void stubdmd_sweep(struct stubdmd *d, bool all);

/* console.c: its consoles */
int stubdmd_console_start(struct stubdmd_served *s);
void stubdmd_console_stop(struct stubdmd_served *s);
/* The pty of serial console n (3 + serial index) while it is served,
 * else NULL. */
const char *stubdmd_console_serial_tty(const struct stubdmd_served *s,
                                       unsigned n);

/* qmp.c: its QMP connection and proxy */
int stubdmd_qmp_start(struct stubdmd_served *s);
void stubdmd_qmp_stop(struct stubdmd_served *s);

/* cleanup.c: after a dead stubdomain */
void stubdmd_cleanup_begin(struct stubdmd_served *s);
void stubdmd_cleanup_stop(struct stubdmd_served *s);

/* control.c: the control socket (docs/stubdmd.md, "Control socket") */
int stubdmd_control_start(struct stubdmd *d);
void stubdmd_control_accept(struct stubdmd *d);
void stubdmd_control_event(struct stubdmd_client *c, uint32_t events);
/* Free the clients that ended in this batch of events (all: at exit). */
void stubdmd_control_sweep(struct stubdmd *d, bool all);
/* s is about to be freed: end the requests that use it. */
void stubdmd_control_forget(struct stubdmd_served *s);
void stubdmd_control_stop(struct stubdmd *d);

/* systemd.c: the service manager (sd_notify and its fd store, by hand) */
int stubdmd_sd_start(struct stubdmd *d);
void stubdmd_sd_ready(struct stubdmd *d, int ready_fd);
void stubdmd_sd_status(struct stubdmd *d);
void stubdmd_sd_stopping(struct stubdmd *d);
void stubdmd_sd_stop(struct stubdmd *d);
/* A listening socket for path: the one passed under name at start, else a
 * new one (mode 0600, a stale socket replaced), given to the store.
 * Returns its fd (out->fd) or -1, logged. */
int stubdmd_sock_listen(struct stubdmd *d, const char *name, const char *path,
                        struct stubdmd_sock *out);
/* Close it.  gone (the stubdomain died), or no manager to keep it: out of
 * the store and its file removed; else both kept for the next instance. */
void stubdmd_sock_close(struct stubdmd *d, struct stubdmd_sock *k, bool gone);

#endif
