/*
 * Child processes (child.c): the hotplug scripts, started, watched in the
 * ctx's loop or waited for, signalled through their pidfd, and reaped by
 * the library or, in STUBDM_CHILD_REAPING_HOST, by the host, which hands
 * the status over (stubdm_ctx_child_exited).
 */
#ifndef STUBDM_SPAWN_CHILD_H
#define STUBDM_SPAWN_CHILD_H

#include <sys/types.h>

#include "core/base.h"
#include "core/list.h"
#include "core/loop.h"

#define STUBDM__CHILD_TAIL 4096 /* bytes of output kept for the log */
/* Host mode: how long after its pidfd says a child ended the library waits
 * for the host to hand its status over before calling it unknown.  The
 * host reaps it on the SIGCHLD of that same exit, from its loop: one turn
 * of that loop, far below this. */
#define STUBDM__CHILD_HOST_GRACE_MS 3000

/* Why a child's status is unknown (wstatus -1). */
enum stubdm__child_lost {
    STUBDM__CHILD_LOST_NONE,
    STUBDM__CHILD_LOST_STOLEN,   /* library mode: reaped by someone else */
    STUBDM__CHILD_LOST_SILENT,   /* host mode: never handed over */
    STUBDM__CHILD_LOST_BLOCKING, /* host mode, in a blocking wait */
};

struct stubdm__child;
/* The child ended (status known, or why not: lost); called once, from
 * dispatch, with its output read to the end of what is there. */
typedef void stubdm__child_end_fn(stubdm_ctx *ctx, struct stubdm__child *c);

struct stubdm__child {
    stubdm_ctx *ctx;
    pid_t pid; /* 0: never started */
    int pidfd; /* -1: none */
    int outfd; /* read end of stdout+stderr, -1 once closed */
    bool host; /* the host reaps it (the ctx's mode when it started) */
    bool exited;
    int wstatus; /* waitpid's status; -1: unknown (see lost) */
    enum stubdm__child_lost lost;
    size_t total; /* bytes of output seen */
    size_t len;   /* bytes in tail */
    char tail[STUBDM__CHILD_TAIL];
    /* watched in the loop (stubdm__child_watch) */
    stubdm__child_end_fn *end;
    struct stubdm__fd outw, pidw;
    struct stubdm__timer poll; /* reaping without a pidfd; host's grace */
    int poll_ms;
    int64_t gone_ms; /* host mode: when it was seen ended, 0: not yet */
    bool ended;      /* end was called */
    struct stubdm__list link; /* ctx->children while listed */
    bool listed;
};

void stubdm__child_init(struct stubdm__child *c);
/* posix_spawn path with argv and env, stdin /dev/null, stdout and stderr
 * to a pipe, no other fd, its own process group, from "/"; the ctx then
 * knows it (stubdm_ctx_child_exited).  0 or the failure (message on ctx:
 * STUBDM_ENOENT no such file, STUBDM_EFAIL). */
int stubdm__child_spawn(stubdm_ctx *ctx, struct stubdm__child *c,
                        const char *path, char *const *argv, char *const *env);
/* Watch the child in the loop: its output, its end (pidfd, or polling),
 * the host's status in host mode; end runs once it ended. */
int stubdm__child_watch(stubdm_ctx *ctx, struct stubdm__child *c,
                        stubdm__child_end_fn *end);
/* Wait for the end, blocking, until deadline_ms (then false: the caller
 * kills).  Host mode: the status is read without reaping (waitid
 * WNOWAIT) when the host has not reaped it yet, else it is unknown
 * (LOST_BLOCKING): no status can be handed over while this blocks. */
bool stubdm__child_wait(stubdm_ctx *ctx, struct stubdm__child *c,
                        int64_t deadline_ms);
/* SIGKILL a child still running, with its process group, through its
 * pidfd; library mode: reap it (at once: SIGKILL cannot be caught); host
 * mode: the host reaps it (and still hands the status over). */
void stubdm__child_kill(struct stubdm__child *c);
/* Stop watching, close its fds, forget it; in host mode a child whose
 * status was not handed over yet stays owed (stubdm_ctx_child_exited
 * still answers 1 for it).  Idempotent. */
void stubdm__child_release(struct stubdm__child *c);

bool stubdm__child_ok(const struct stubdm__child *c);
/* "exited with status 1", "killed by signal 9", or why it is unknown. */
void stubdm__child_describe(const struct stubdm__child *c, char *out,
                            size_t len);
/* Read what is there; true at end of file (or a read error). */
bool stubdm__child_drain(struct stubdm__child *c);
/* The kept output as warnings, "who: output, part n: ...". */
void stubdm__child_log_output(stubdm_ctx *ctx, const struct stubdm__child *c,
                              const char *who);

#endif /* STUBDM_SPAWN_CHILD_H */
