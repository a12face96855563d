/* Test fixture: runs stubdm-mock-xenstored in a private temporary
 * directory and hands out connections acting as dom0 or other domains.
 * See docs/mock-xenstored.md. */
#ifndef STUBDM_TESTS_MOCKXS_H
#define STUBDM_TESTS_MOCKXS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct xs_handle;

#define MOCKXS_MAX_DOMAINS 16

struct mockxs_opts {
    /* Domains the tests want to act as (each gets a socket). */
    const unsigned *domids;
    size_t n_domids;
    /* 0 keeps the daemon's default (2048 / 1000 / 128 / 10 / 4 MiB). */
    unsigned entry_size;
    unsigned quota_nodes;
    unsigned quota_watches;
    unsigned quota_transactions;
    size_t max_output;
    bool verbose; /* daemon logs every request to stderr */
};

struct mockxs {
    pid_t pid;
    char dir[200];
    char socket[256];
    size_t n_domains;
    unsigned domids[MOCKXS_MAX_DOMAINS];
    char domain_sockets[MOCKXS_MAX_DOMAINS][256];
};

/* Starts the daemon (binary: $MOCKXS_BINARY or the one built with this
 * fixture) and waits up to 5 s for it to listen.  opts may be NULL.
 * The daemon, and the simulated stubdomains it starts, die with the
 * calling thread; the calling process from then on dies with its parent
 * (proccheck.h: proc_child_fork, proc_die_with_parent).
 * Returns 0, or -1 with errno set. */
int mockxs_start(struct mockxs *m, const struct mockxs_opts *opts);
/* SIGTERM, wait, remove the temporary directory.  Idempotent.  Returns 0
 * if the daemon exited with status 0 (so sanitizer or valgrind reports
 * at exit fail the test), -1 otherwise. */
int mockxs_stop(struct mockxs *m);

/* The dom0 (privileged) socket, suitable for XENSTORED_PATH. */
const char *mockxs_socket(const struct mockxs *m);
/* The socket acting as domid (0: the dom0 socket); NULL if domid was not
 * in opts->domids. */
const char *mockxs_domain_socket(const struct mockxs *m, unsigned domid);
/* A libxenstore handle acting as domid; NULL with errno on failure. */
struct xs_handle *mockxs_open_as(const struct mockxs *m, unsigned domid);
/* A raw connected unix socket acting as domid, or -1. */
int mockxs_connect_raw(const struct mockxs *m, unsigned domid);

/* A deterministic dump of the whole tree: one line per node, sorted by
 * path, "PATH = \"VALUE\" (PERMS)" with non-printable bytes as \xNN.
 * Returns 0 and a malloc'ed string in *out, or -1. */
int mockxs_dump(const struct mockxs *m, char **out);

#endif
