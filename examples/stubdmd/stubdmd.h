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

struct xs_handle;

struct stubdmd_conf {
    const char *run_dir; /* the lock (pidfile) */
    const char *log_dir; /* qemu-dm-<name>.log */
    const char *qmp_dir; /* qmp-libxl-<guest> */
    uint64_t log_cap;
    unsigned log_rotations;
    int qmp_open_timeout_ms;
    stubdm_log_level level;
};

/* What an outer epoll event belongs to. */
enum stubdmd_src_kind { SRC_SIGNAL, SRC_XENSTORE, SRC_SERVED };

struct stubdmd_src {
    enum stubdmd_src_kind kind;
    struct stubdmd_served *served; /* SRC_SERVED */
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
    stubdm_qmp_proxy *proxy;
    char proxy_path[256];
    bool gone; /* the stubdomain died: dropped after the dispatch */
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

#endif
