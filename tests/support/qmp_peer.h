/*
 * Test support for the QMP connection layer (tests/test_qmp*.c,
 * bench/bench_qmp.c):
 *
 *  - qmp_sim_*: the simulated host around a test: a mock xenstored, a sim
 *    directory, an introduced stubdomain, and the xenstore choreography a
 *    stubdomain performs (qmp-vchan/ring-ref, event-channel).
 *  - qmp_peer_*: a scripted fake QMP server listening on the simulated
 *    vchan socket, run in a child process: send bytes, read a command,
 *    reply with its id, delay, send slowly, flood, close.
 *
 * Part of stubdm_testsupport (tests/support/CMakeLists.txt).
 */
#ifndef STUBDM_TESTS_QMP_PEER_H
#define STUBDM_TESTS_QMP_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "mockxs.h"

/* ---- the simulated host ---------------------------------------------- */

struct qmp_sim {
    struct mockxs mock;
    char simdir[256];
    char sock[320]; /* <simdir>/qmp-vchan/<stubdom>.<guest>.sock */
    char lock[320]; /* <simdir>/qmp-vchan/<stubdom>.<guest>.lock */
    unsigned stubdom, guest;
    struct xs_handle *xs; /* dom0 */
};

/* Start the mock (sets XENSTORED_PATH and STUBDM_SIM_DIR), make the sim
 * directory, introduce the stubdomain and create its device-model dir.
 * Returns 0 or -1. */
int qmp_sim_start(struct qmp_sim *s, unsigned stubdom, unsigned guest);
/* Write qmp-vchan/ring-ref and event-channel as the stubdomain would. */
int qmp_sim_server_ready(struct qmp_sim *s);
/* Release (destroy) the stubdomain in the mock. */
int qmp_sim_kill_stubdom(struct qmp_sim *s);
void qmp_sim_stop(struct qmp_sim *s);

/* ---- the scripted peer ------------------------------------------------ */

enum qmp_peer_op {
    QP_END = 0,
    QP_SEND,      /* text (len, or strlen) */
    QP_GREET,     /* the standard greeting (QEMU 7.2.0, caps ["oob"]) */
    QP_READ_CMD,  /* read one line; text (optional) must occur in it */
    QP_REPLY,     /* printf(text, id-of-last-command) + "\r\n" */
    QP_HANDSHAKE, /* GREET + READ_CMD qmp_capabilities + reply {} */
    QP_DELAY,     /* sleep ms */
    QP_SLOW,      /* send text one byte every ms */
    QP_FLOOD,     /* n events "FLOOD" (as fast as the socket takes) */
    QP_HOLD,      /* keep the connection open for ms (reading, ignoring) */
    QP_ANSWER,    /* answer every command with {"return":{}} until EOF */
    QP_ECHO,      /* echo bytes back until EOF (raw baseline) */
    QP_CLOSE,     /* close the connection (end of script) */
    QP_ACCEPT,    /* close, then accept the next connection */
    QP_SHUTRD,    /* shutdown(SHUT_RD): the client's next write fails */
};

struct qmp_peer_step {
    enum qmp_peer_op op;
    const char *text;
    size_t len;
    int ms;
    long n;
};

#define QP_S(t)                                                               \
    {                                                                         \
        QP_SEND, (t), 0, 0, 0                                                 \
    }
#define QP_SN(t, l)                                                           \
    {                                                                         \
        QP_SEND, (t), (l), 0, 0                                               \
    }
#define QP_G()                                                                \
    {                                                                         \
        QP_GREET, NULL, 0, 0, 0                                               \
    }
#define QP_R(sub)                                                             \
    {                                                                         \
        QP_READ_CMD, (sub), 0, 0, 0                                           \
    }
#define QP_REP(fmt)                                                           \
    {                                                                         \
        QP_REPLY, (fmt), 0, 0, 0                                              \
    }
#define QP_HS()                                                               \
    {                                                                         \
        QP_HANDSHAKE, NULL, 0, 0, 0                                           \
    }
#define QP_D(ms)                                                              \
    {                                                                         \
        QP_DELAY, NULL, 0, (ms), 0                                            \
    }
#define QP_SLOWLY(t, ms)                                                      \
    {                                                                         \
        QP_SLOW, (t), 0, (ms), 0                                              \
    }
#define QP_FL(n)                                                              \
    {                                                                         \
        QP_FLOOD, NULL, 0, 0, (n)                                             \
    }
#define QP_H(ms)                                                              \
    {                                                                         \
        QP_HOLD, NULL, 0, (ms), 0                                             \
    }
#define QP_ANS()                                                              \
    {                                                                         \
        QP_ANSWER, NULL, 0, 0, 0                                              \
    }
#define QP_ECHOALL()                                                          \
    {                                                                         \
        QP_ECHO, NULL, 0, 0, 0                                                \
    }
#define QP_C()                                                                \
    {                                                                         \
        QP_CLOSE, NULL, 0, 0, 0                                               \
    }
#define QP_ACC()                                                              \
    {                                                                         \
        QP_ACCEPT, NULL, 0, 0, 0                                              \
    }
#define QP_SHR()                                                              \
    {                                                                         \
        QP_SHUTRD, NULL, 0, 0, 0                                              \
    }
#define QP_E()                                                                \
    {                                                                         \
        QP_END, NULL, 0, 0, 0                                                 \
    }

struct qmp_peer {
    pid_t pid;
    int listen_fd;
};

/* Listen on path (now, so a client can connect as soon as this returns),
 * and run steps (terminated by QP_END) in a child on the first accepted
 * connection.  Returns 0 or -1. */
int qmp_peer_start(struct qmp_peer *p, const char *path,
                   const struct qmp_peer_step *steps);
/* Wait (bounded by timeout_ms, then SIGKILL) for the child; returns its
 * exit status: 0 when the script ran to its end, 1..: the failing step + 1,
 * -1 when killed. */
int qmp_peer_wait(struct qmp_peer *p, int timeout_ms);
/* Kill and reap.  Idempotent. */
void qmp_peer_stop(struct qmp_peer *p);

/* ---- a real QEMU ----------------------------------------------------- */

/* qemu-system-x86_64 -machine none (TCG), its QMP server listening on
 * path, stdin and stdout on /dev/null; it dies with the calling thread
 * (proc_child_fork).  Returns its pid once QEMU's main loop has answered
 * on a second, pre-connected monitor, or -1 (QEMU killed).  Not sooner:
 * QEMU 7.2 watches a listening QMP socket from two threads until its
 * monitor I/O thread first runs, and a client connecting in that window
 * can be greeted and then never answered (fixed in QEMU 11.0); the
 * second monitor is created after the listening one, so its answer
 * proves the window closed.  The caller kills and reaps it (SIGKILL,
 * waitpid). */
pid_t qmp_qemu_start(const char *path);

/* The greeting QP_GREET sends. */
extern const char qmp_peer_greeting[];

#endif
