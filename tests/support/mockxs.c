#include "mockxs.h"
#include "proccheck.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <xenstore.h>

#ifndef MOCKXS_BINARY
#define MOCKXS_BINARY "stubdm-mock-xenstored"
#endif

static void rm_tree(const char *dir)
{
    pid_t pid = proc_child_fork();
    if (pid == 0) {
        execlp("rm", "rm", "-rf", "--", dir, (char *)NULL);
        _exit(127);
    }
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
}

int mockxs_start(struct mockxs *m, const struct mockxs_opts *opts)
{
    static const struct mockxs_opts none;
    if (!opts)
        opts = &none;
    memset(m, 0, sizeof(*m));
    m->pid = -1;
    if (opts->n_domids > MOCKXS_MAX_DOMAINS) {
        errno = E2BIG;
        return -1;
    }
    /* Whatever kills the test process kills the daemon (proc_child_fork),
     * and a killed runner kills the test process. */
    proc_die_with_parent();
    const char *tmp = getenv("TMPDIR");
    snprintf(m->dir, sizeof(m->dir), "%s/mockxs-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(m->dir))
        return -1;
    snprintf(m->socket, sizeof(m->socket), "%s/socket", m->dir);

    const char *bin = getenv("MOCKXS_BINARY");
    if (!bin || !*bin)
        bin = MOCKXS_BINARY;
    char nums[6][32], dsock[MOCKXS_MAX_DOMAINS][300];
    const char *argv[64];
    int argc = 0, pipefd[2];
    argv[argc++] = bin;
    argv[argc++] = "--dir";
    argv[argc++] = m->dir;
    if (pipe2(pipefd, O_CLOEXEC))
        goto fail;
    /* The write end is moved to fd 3 in the child, past the stdio fds. */
    argv[argc++] = "--ready-fd";
    argv[argc++] = "3";
    if (opts->entry_size) {
        snprintf(nums[0], sizeof(nums[0]), "%u", opts->entry_size);
        argv[argc++] = "--entry-size";
        argv[argc++] = nums[0];
    }
    if (opts->quota_nodes) {
        snprintf(nums[1], sizeof(nums[1]), "%u", opts->quota_nodes);
        argv[argc++] = "--quota-nodes";
        argv[argc++] = nums[1];
    }
    if (opts->quota_watches) {
        snprintf(nums[2], sizeof(nums[2]), "%u", opts->quota_watches);
        argv[argc++] = "--quota-watches";
        argv[argc++] = nums[2];
    }
    if (opts->quota_transactions) {
        snprintf(nums[3], sizeof(nums[3]), "%u", opts->quota_transactions);
        argv[argc++] = "--quota-transactions";
        argv[argc++] = nums[3];
    }
    if (opts->max_output) {
        snprintf(nums[4], sizeof(nums[4]), "%zu", opts->max_output);
        argv[argc++] = "--max-output";
        argv[argc++] = nums[4];
    }
    if (opts->verbose)
        argv[argc++] = "--verbose";
    for (size_t i = 0; i < opts->n_domids; i++) {
        m->domids[i] = opts->domids[i];
        snprintf(m->domain_sockets[i], sizeof(m->domain_sockets[i]),
                 "%s/dom%u.sock", m->dir, opts->domids[i]);
        snprintf(dsock[i], sizeof(dsock[i]), "%u:%s", opts->domids[i],
                 m->domain_sockets[i]);
        argv[argc++] = "--domain-socket";
        argv[argc++] = dsock[i];
    }
    m->n_domains = opts->n_domids;
    argv[argc] = NULL;

    /* The daemon dies with the test (proc_child_fork), and with it the
     * simulated stubdomains it started (theirs die with it). */
    m->pid = proc_child_fork();
    if (m->pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        goto fail;
    }
    if (m->pid == 0) {
        proc_child_cloexec();
        /* dup2() onto itself would leave close-on-exec set. */
        if (pipefd[1] == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(pipefd[1], 3) < 0)
            _exit(127);
        execv(bin, (char *const *)argv);
        fprintf(stderr, "mockxs: cannot run %s: %s\n", bin, strerror(errno));
        _exit(127);
    }
    close(pipefd[1]);

    /* Bounded wait for "ready\n"; EOF means the daemon died. */
    char buf[8];
    size_t got = 0;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (got < 6) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = 5000 - ((now.tv_sec - start.tv_sec) * 1000 +
                            (now.tv_nsec - start.tv_nsec) / 1000000);
        struct pollfd p = {pipefd[0], POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t r = read(pipefd[0], buf + got, sizeof(buf) - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(pipefd[0]);
    if (got < 6 || memcmp(buf, "ready\n", 6)) {
        (void)mockxs_stop(m);
        errno = ETIMEDOUT;
        return -1;
    }
    return 0;
fail:;
    int e = errno;
    rm_tree(m->dir);
    m->dir[0] = '\0';
    errno = e;
    return -1;
}

int mockxs_stop(struct mockxs *m)
{
    int ret = 0;
    if (m->pid > 0) {
        int status = 0;
        kill(m->pid, SIGTERM);
        while (waitpid(m->pid, &status, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            ret = -1;
        m->pid = -1;
    }
    if (m->dir[0]) {
        rm_tree(m->dir);
        m->dir[0] = '\0';
    }
    return ret;
}

const char *mockxs_socket(const struct mockxs *m)
{
    return m->socket;
}

const char *mockxs_domain_socket(const struct mockxs *m, unsigned domid)
{
    if (domid == 0)
        return m->socket;
    for (size_t i = 0; i < m->n_domains; i++)
        if (m->domids[i] == domid)
            return m->domain_sockets[i];
    return NULL;
}

struct xs_handle *mockxs_open_as(const struct mockxs *m, unsigned domid)
{
    const char *path = mockxs_domain_socket(m, domid);
    if (!path) {
        errno = ENOENT;
        return NULL;
    }
    /* libxenstore reads XENSTORED_PATH when opening. */
    char *saved = getenv("XENSTORED_PATH");
    saved = saved ? strdup(saved) : NULL;
    setenv("XENSTORED_PATH", path, 1);
    struct xs_handle *h = xs_open(XS_OPEN_SOCKETONLY);
    int e = errno;
    if (saved) {
        setenv("XENSTORED_PATH", saved, 1);
        free(saved);
    } else {
        unsetenv("XENSTORED_PATH");
    }
    errno = e;
    return h;
}

int mockxs_connect_raw(const struct mockxs *m, unsigned domid)
{
    const char *path = mockxs_domain_socket(m, domid);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (!path || strlen(path) >= sizeof(sa.sun_path)) {
        errno = ENOENT;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

struct line {
    char *path;
    char *text;
};

struct dump {
    struct line *l;
    size_t n, cap;
};

static int walk(struct xs_handle *xs, const char *path, struct dump *d)
{
    unsigned len = 0, np = 0, nk = 0;
    char *val = xs_read(xs, XBT_NULL, path, &len);
    struct xs_permissions *perms = xs_get_permissions(xs, XBT_NULL, path, &np);
    char **kids = xs_directory(xs, XBT_NULL, path, &nk);
    int ret = -1;
    if (!val || !perms || !kids)
        goto out;

    size_t cap = strlen(path) + 4 * (size_t)len + 16 * (np + 1) + 16, used = 0;
    char *t = malloc(cap);
    if (!t)
        goto out;
    used += (size_t)snprintf(t + used, cap - used, "%s = \"", path);
    for (unsigned i = 0; i < len; i++) {
        unsigned char c = (unsigned char)val[i];
        if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
            t[used++] = (char)c;
        else
            used += (size_t)snprintf(t + used, cap - used, "\\x%02x", c);
    }
    used += (size_t)snprintf(t + used, cap - used, "\" (");
    for (unsigned i = 0; i < np; i++) {
        static const char letters[4] = {'n', 'r', 'w', 'b'};
        used += (size_t)
            snprintf(t + used, cap - used, "%s%c%u", i ? "," : "",
                     letters[perms[i].perms & (XS_PERM_READ | XS_PERM_WRITE)],
                     perms[i].id);
    }
    snprintf(t + used, cap - used, ")");
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 64;
        struct line *nl = realloc(d->l, d->cap * sizeof(*nl));
        if (!nl) {
            free(t);
            goto out;
        }
        d->l = nl;
    }
    d->l[d->n].path = strdup(path);
    d->l[d->n++].text = t;
    ret = 0;
    for (unsigned i = 0; i < nk && ret == 0; i++) {
        size_t cl = strlen(path) + strlen(kids[i]) + 2;
        char *c = malloc(cl);
        if (!c) {
            ret = -1;
            break;
        }
        snprintf(c, cl, "%s/%s", strcmp(path, "/") ? path : "", kids[i]);
        ret = walk(xs, c, d);
        free(c);
    }
out:
    free(val);
    free(perms);
    free(kids);
    return ret;
}

static int cmp_line(const void *a, const void *b)
{
    return strcmp(((const struct line *)a)->path,
                  ((const struct line *)b)->path);
}

int mockxs_dump(const struct mockxs *m, char **out)
{
    struct xs_handle *xs = mockxs_open_as(m, 0);
    if (!xs)
        return -1;
    struct dump d = {0};
    int ret = walk(xs, "/", &d);
    xs_close(xs);
    qsort(d.l, d.n, sizeof(*d.l), cmp_line);
    size_t total = 1;
    for (size_t i = 0; i < d.n; i++)
        total += strlen(d.l[i].text) + 1;
    char *s = ret == 0 ? malloc(total) : NULL;
    if (s) {
        size_t used = 0;
        for (size_t i = 0; i < d.n; i++)
            used += (size_t)sprintf(s + used, "%s\n", d.l[i].text);
        s[used] = '\0';
    }
    for (size_t i = 0; i < d.n; i++) {
        free(d.l[i].path);
        free(d.l[i].text);
    }
    free(d.l);
    if (!s)
        return -1;
    *out = s;
    return 0;
}
