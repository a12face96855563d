/*
 * stubdm-ctl sim start|stop|status [--dir DIR]
 *
 * The simulated Xen host: stubdm-mock-xenstored run as a daemon in a
 * runtime directory, playing xenstored and the hypervisor
 * (docs/simulated-host.md).  Also the automatic use of a running simulated
 * host by every other subcommand (ctl_sim_prepare, called from main.c).
 */
#include "ctl.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef STUBDM_LIBEXECDIR
#define STUBDM_LIBEXECDIR "/usr/local/libexec/libstubdm"
#endif

/* The default runtime directory: $STUBDM_SIM_DIR, else
 * $XDG_RUNTIME_DIR/libstubdm-sim, else /run/libstubdm-sim for root, else
 * /tmp/libstubdm-sim-<uid>. */
static void default_dir(char *out, size_t len)
{
    const char *e = getenv("STUBDM_SIM_DIR");

    if (e && *e) {
        snprintf(out, len, "%s", e);
        return;
    }
    e = getenv("XDG_RUNTIME_DIR");
    if (e && *e)
        snprintf(out, len, "%s/libstubdm-sim", e);
    else if (geteuid() == 0)
        snprintf(out, len, "/run/libstubdm-sim");
    else
        snprintf(out, len, "/tmp/libstubdm-sim-%u", (unsigned)geteuid());
}

/*
 * Open the runtime directory, refusing one that is not ours alone: a
 * directory (no symlink) owned by our effective uid, without group or other
 * access.  /tmp/libstubdm-sim-<uid> is predictable; whoever creates it
 * first would own the pid file `sim stop` signals, the socket every
 * subcommand takes for xenstored (whose backend script paths `destroy`
 * runs) and qmp-vchan, whose files `sim stop` deletes.  With create, a
 * missing directory is made (0700).  Returns the directory's fd, or -1:
 * errno ENOENT (missing, nothing printed) or a message on stderr.
 */
static int open_dir(const char *dir, bool create)
{
    struct stat st;
    int fd;

    if (create && mkdir(dir, 0700) && errno != EEXIST) {
        fprintf(stderr, "stubdm-ctl sim: cannot create %s: %s\n", dir,
                strerror(errno));
        errno = EPERM; /* reported */
        return -1;
    }
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        if (err == ENOENT)
            return -1;
        if (lstat(dir, &st) == 0 && S_ISLNK(st.st_mode))
            fprintf(stderr,
                    "stubdm-ctl sim: refusing %s: it is a symbolic "
                    "link, not a directory\n",
                    dir);
        else if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode))
            goto refuse; /* not ours: say whose */
        else
            fprintf(stderr, "stubdm-ctl sim: cannot open %s: %s\n", dir,
                    strerror(err));
        errno = EPERM;
        return -1;
    }
    if (fstat(fd, &st)) {
        fprintf(stderr, "stubdm-ctl sim: cannot stat %s: %s\n", dir,
                strerror(errno));
        close(fd);
        errno = EPERM;
        return -1;
    }
    if (st.st_uid == geteuid() && !(st.st_mode & (S_IRWXG | S_IRWXO)))
        return fd;
    close(fd);
refuse:
    fprintf(stderr,
            "stubdm-ctl sim: refusing %s: owned by uid %ld with mode "
            "%04o; it must belong to uid %ld with no group or other "
            "access (mode 0700)\n",
            dir, (long)st.st_uid, (unsigned)(st.st_mode & 07777),
            (long)geteuid());
    errno = EPERM;
    return -1;
}

/* The pid in dfd's pid file (a regular file of ours, never followed), if
 * that process is alive and the socket is there; else 0. */
static pid_t running_pid(int dfd)
{
    char buf[32];
    struct stat st;
    uint64_t pid;
    ssize_t n;
    int fd;

    fd = openat(dfd, "pid", O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
        close(fd);
        return 0;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (ctl_parse_uint(buf, 1, INT_MAX, &pid) || kill((pid_t)pid, 0) != 0)
        return 0;
    if (fstatat(dfd, "socket", &st, AT_SYMLINK_NOFOLLOW) ||
        !S_ISSOCK(st.st_mode))
        return 0;
    return (pid_t)pid;
}

void ctl_sim_prepare(stubdm_ctx *ctx)
{
    char dir[PATH_MAX - 16], sock[PATH_MAX];
    pid_t pid;
    int dfd;

    /* The library's host choice (--sim, else a hypervisor probe). */
    if (getenv("XENSTORED_PATH") || stubdm_ctx_host(ctx) != STUBDM_HOST_SIM)
        return;
    default_dir(dir, sizeof(dir));
    dfd = open_dir(dir, false);
    if (dfd < 0)
        return;
    pid = running_pid(dfd);
    close(dfd);
    if (!pid)
        return;
    snprintf(sock, sizeof(sock), "%s/socket", dir);
    setenv("XENSTORED_PATH", sock, 1);
}

/* The mock xenstored: $STUBDM_MOCK_XENSTORED, the build tree's when this
 * stubdm-ctl runs from the build tree, else the installed one. */
static void mock_binary(char *out, size_t len)
{
    const char *e = getenv("STUBDM_MOCK_XENSTORED");

    if (e && *e) {
        snprintf(out, len, "%s", e);
        return;
    }
#ifdef STUBDM_MOCKXS_BUILD_PATH
    {
        char self[PATH_MAX], root[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        const char *build = STUBDM_MOCKXS_BUILD_PATH;
        /* <build>/tests/mock-xenstored/stubdm-mock-xenstored */
        const char *cut = strstr(build, "/tests/mock-xenstored/");
        if (n > 0 && cut && access(build, X_OK) == 0) {
            self[n] = '\0';
            snprintf(root, sizeof(root), "%.*s/", (int)(cut - build), build);
            if (!strncmp(self, root, strlen(root))) {
                snprintf(out, len, "%s", build);
                return;
            }
        }
    }
#endif
    snprintf(out, len, "%s/stubdm-mock-xenstored", STUBDM_LIBEXECDIR);
}

static void print_env(const struct ctl_global *g, const char *dir, pid_t pid,
                      const char *state)
{
    if (g->json) {
        printf("{\"state\":");
        ctl_json_string(stdout, state);
        printf(",\"dir\":");
        ctl_json_string(stdout, dir);
        printf(",\"socket\":\"");
        printf("%s/socket\",\"pid\":%ld}\n", dir, (long)pid);
        return;
    }
    printf("export XENSTORED_PATH=%s/socket\n", dir);
}

/* Run the mock xenstored as a daemon in dir; true once it forked off. */
static bool run_daemon(const char *dir, bool verbose)
{
    char bin[PATH_MAX], pidfile[PATH_MAX];
    pid_t child;
    int status;

    mock_binary(bin, sizeof(bin));
    snprintf(pidfile, sizeof(pidfile), "%s/pid", dir);
    child = fork();
    if (child < 0) {
        fprintf(stderr, "stubdm-ctl sim: fork: %s\n", strerror(errno));
        return false;
    }
    if (child == 0) {
        /* The daemon must not keep our stdout: a $(stubdm-ctl sim start)
         * would wait for it forever. */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 1);
            if (!verbose)
                dup2(null, 2);
        }
        execl(bin, bin, "--dir", dir, "--daemon", "--pidfile", pidfile,
              verbose ? "--verbose" : (char *)NULL, (char *)NULL);
        fprintf(stderr, "stubdm-ctl sim: cannot run %s: %s\n", bin,
                strerror(errno));
        _exit(127);
    }
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "stubdm-ctl sim: %s failed to start\n", bin);
        return false;
    }
    return true;
}

static int sim_start(const struct ctl_global *g, const char *dir, int dfd,
                     bool verbose)
{
    pid_t pid = running_pid(dfd);

    if (pid) {
        if (!g->json)
            fprintf(stderr, "simulated host already running (pid %ld) in %s\n",
                    (long)pid, dir);
        print_env(g, dir, pid, "running");
        return CTL_EXIT_OK;
    }
    /* A stale one (the link itself if it is one, never its target). */
    unlinkat(dfd, "pid", 0);
    if (!run_daemon(dir, verbose))
        return CTL_EXIT_FAIL;
    /* The daemon forks after its sockets listen; the pidfile follows. */
    for (int i = 0; i < 500 && !(pid = running_pid(dfd)); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!pid) {
        fprintf(stderr,
                "stubdm-ctl sim: the simulated host did not come up "
                "in %s\n",
                dir);
        return CTL_EXIT_FAIL;
    }
    if (!g->json)
        fprintf(stderr, "simulated host started (pid %ld) in %s\n", (long)pid,
                dir);
    print_env(g, dir, pid, "started");
    return CTL_EXIT_OK;
}

static int sim_stop(const struct ctl_global *g, const char *dir, int dfd)
{
    pid_t pid = running_pid(dfd);
    int qfd;

    if (!pid) {
        if (g->json)
            printf("{\"state\":\"stopped\",\"dir\":\"%s\"}\n", dir);
        else
            fprintf(stderr, "no simulated host running in %s\n", dir);
        return CTL_EXIT_OK;
    }
    kill(pid, SIGTERM);
    /* It kills and reaps its simulated domains, then exits. */
    for (int i = 0; i < 500 && kill(pid, 0) == 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (kill(pid, 0) == 0) {
        fprintf(stderr, "stubdm-ctl sim: pid %ld did not exit; killing it\n",
                (long)pid);
        kill(pid, SIGKILL);
    }
    /* What the simulated stubdomains and QMP locks left: removed relative
     * to the opened directories, so a qmp-vchan that is a symlink is
     * never followed into another directory. */
    qfd = openat(dfd, "qmp-vchan",
                 O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *d = qfd >= 0 ? fdopendir(qfd) : NULL;
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            /* sockets and lock files only: never a directory */
            unlinkat(dirfd(d), e->d_name, 0);
        }
        closedir(d);
    } else if (qfd >= 0) {
        close(qfd);
    }
    unlinkat(dfd, "qmp-vchan", AT_REMOVEDIR);
    unlinkat(dfd, "pid", 0);
    rmdir(dir);
    if (g->json)
        printf("{\"state\":\"stopped\",\"dir\":\"%s\",\"pid\":%ld}\n", dir,
               (long)pid);
    else
        fprintf(stderr, "simulated host stopped (pid %ld)\n", (long)pid);
    return CTL_EXIT_OK;
}

static int sim_status(stubdm_ctx *ctx, const struct ctl_global *g,
                      const char *dir, int dfd)
{
    pid_t pid = running_pid(dfd);
    stubdm_stubdom_list *l = NULL;
    char sock[PATH_MAX];
    int rc;

    if (!pid) {
        if (g->json)
            printf("{\"state\":\"stopped\",\"dir\":\"%s\"}\n", dir);
        else
            printf("simulated host: not running (%s)\n", dir);
        return CTL_EXIT_FAIL;
    }
    snprintf(sock, sizeof(sock), "%s/socket", dir);
    setenv("XENSTORED_PATH", sock, 1);
    rc = stubdm_stubdom_list_new(ctx, &l);
    if (rc)
        return ctl_report_error(ctx, g, "sim status", rc, NULL);
    if (g->json) {
        printf("{\"state\":\"running\",\"dir\":");
        ctl_json_string(stdout, dir);
        printf(",\"socket\":");
        ctl_json_string(stdout, sock);
        printf(",\"pid\":%ld,\"stubdomains\":%zu}\n", (long)pid,
               stubdm_stubdom_list_count(l));
    } else {
        printf("simulated host: running (pid %ld)\n"
               "  dir         %s\n  socket      %s\n  stubdomains %zu\n",
               (long)pid, dir, sock, stubdm_stubdom_list_count(l));
    }
    stubdm_stubdom_list_free(l);
    return CTL_EXIT_OK;
}

struct sim_opts {
    const char *dir;
    bool verbose;
};

const struct ctl_option ctl_sim_options[] = {
    {"dir", 0, CTL_ARG_STRING, offsetof(struct sim_opts, dir), "DIR", 0, 0,
     NULL, NULL},
    {"verbose", 0, CTL_ARG_FLAG, offsetof(struct sim_opts, verbose), NULL, 0,
     0, NULL, NULL},
    {NULL, 0, CTL_ARG_FLAG, 0, NULL, 0, 0, NULL, NULL},
};

int ctl_sim_run(stubdm_ctx *ctx, const struct ctl_global *g,
                const struct ctl_command *cmd, int argc, char **argv)
{
    char dir[PATH_MAX - 32];
    struct sim_opts o = {0};
    struct ctl_args a;
    const char *action;
    int dfd, rc;

    if ((rc = ctl_parse(cmd, cmd->options, argc, argv, false, &o, &a)))
        return rc;
    if (a.npos > 1 || a.nrest)
        return ctl_usage_error(cmd, "unexpected argument '%s'",
                               a.npos > 1 ? a.pos[1] : a.rest[0]);
    if (!a.npos)
        return ctl_usage_error(cmd, "need start, stop or status");
    action = a.pos[0];
    if (o.dir && !*o.dir)
        return ctl_usage_error(cmd, "--dir needs a directory");
    if (o.dir)
        snprintf(dir, sizeof(dir), "%s", o.dir);
    else
        default_dir(dir, sizeof(dir));
    if (strlen(dir) > 80)
        return ctl_usage_error(cmd, "directory too long for unix "
                                    "socket paths (80 bytes at most)");
    if (strcmp(action, "start") && strcmp(action, "stop") &&
        strcmp(action, "status"))
        return ctl_usage_error(cmd, "unknown action '%s'", action);
    dfd = open_dir(dir, !strcmp(action, "start"));
    if (dfd < 0 && errno != ENOENT)
        return CTL_EXIT_FAIL;
    if (!strcmp(action, "start"))
        rc = dfd < 0 ? CTL_EXIT_FAIL : sim_start(g, dir, dfd, o.verbose);
    else if (!strcmp(action, "stop"))
        rc = dfd < 0 ? sim_stop(g, dir, -1) : sim_stop(g, dir, dfd);
    else
        rc = sim_status(ctx, g, dir, dfd);
    if (dfd >= 0)
        close(dfd);
    return rc;
}

const char ctl_sim_help[] =
    "start   start stubdm-mock-xenstored as a daemon in DIR (it plays\n"
    "        xenstored and the hypervisor) and print\n"
    "        `export XENSTORED_PATH=DIR/socket`; already running: the\n"
    "        same line, exit 0.\n"
    "stop    stop it; it kills its simulated stubdomains first.\n"
    "status  running or not, and how many stubdomains it holds\n"
    "        (exit 1 when not running).\n\n"
    "DIR defaults to $STUBDM_SIM_DIR, else $XDG_RUNTIME_DIR/libstubdm-sim,\n"
    "else /run/libstubdm-sim (root) or /tmp/libstubdm-sim-UID.  Every\n"
    "other subcommand uses a running simulated host automatically when\n"
    "XENSTORED_PATH is unset and no hypervisor is present (or with the\n"
    "global --sim).  See docs/simulated-host.md.\n"
    "  --verbose  the daemon logs every request on stderr\n";
