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

static struct ctl_command cmd_sim;

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

static pid_t running_pid(const char *dir)
{
    char p[PATH_MAX];
    long pid = 0;
    FILE *f;

    snprintf(p, sizeof(p), "%s/pid", dir);
    f = fopen(p, "r");
    if (!f)
        return 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 0 || kill((pid_t)pid, 0) != 0)
        return 0;
    snprintf(p, sizeof(p), "%s/socket", dir);
    if (access(p, F_OK) != 0)
        return 0;
    return (pid_t)pid;
}

static bool hypervisor_present(void)
{
    return access("/dev/xen/privcmd", F_OK) == 0 ||
           access("/proc/xen/privcmd", F_OK) == 0;
}

/* Declared here and in main.c: the one hook main.c calls. */
int ctl_sim_prepare(stubdm_ctx *ctx, bool force_sim);
int ctl_sim_prepare(stubdm_ctx *ctx, bool force_sim)
{
    char dir[PATH_MAX - 16], sock[PATH_MAX];

    if (force_sim)
        stubdm_ctx_set_host(ctx, STUBDM_HOST_SIM);
    if (getenv("XENSTORED_PATH") || (!force_sim && hypervisor_present()))
        return 0;
    default_dir(dir, sizeof(dir));
    if (!running_pid(dir))
        return 0;
    snprintf(sock, sizeof(sock), "%s/socket", dir);
    setenv("XENSTORED_PATH", sock, 1);
    return 0;
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

static int sim_start(const struct ctl_global *g, const char *dir,
                     bool verbose)
{
    char bin[PATH_MAX], pidfile[PATH_MAX], sock[PATH_MAX];
    pid_t pid, child;
    int status;

    pid = running_pid(dir);
    if (pid) {
        if (!g->json)
            fprintf(stderr, "simulated host already running (pid %ld) in %s\n",
                    (long)pid, dir);
        print_env(g, dir, pid, "running");
        return CTL_EXIT_OK;
    }
    if (mkdir(dir, 0700) && errno != EEXIST) {
        fprintf(stderr, "stubdm-ctl sim: cannot create %s: %s\n", dir,
                strerror(errno));
        return CTL_EXIT_FAIL;
    }
    mock_binary(bin, sizeof(bin));
    snprintf(pidfile, sizeof(pidfile), "%s/pid", dir);
    snprintf(sock, sizeof(sock), "%s/socket", dir);
    unlink(pidfile);
    child = fork();
    if (child < 0) {
        fprintf(stderr, "stubdm-ctl sim: fork: %s\n", strerror(errno));
        return CTL_EXIT_FAIL;
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
        return CTL_EXIT_FAIL;
    }
    /* The daemon forks after its sockets listen; the pidfile follows. */
    for (int i = 0; i < 500 && !(pid = running_pid(dir)); i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    if (!pid) {
        fprintf(stderr, "stubdm-ctl sim: the simulated host did not come up "
                        "in %s\n", dir);
        return CTL_EXIT_FAIL;
    }
    if (!g->json)
        fprintf(stderr, "simulated host started (pid %ld) in %s\n", (long)pid,
                dir);
    print_env(g, dir, pid, "started");
    return CTL_EXIT_OK;
}

static int sim_stop(const struct ctl_global *g, const char *dir)
{
    pid_t pid = running_pid(dir);
    char p[PATH_MAX];

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
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    if (kill(pid, 0) == 0) {
        fprintf(stderr, "stubdm-ctl sim: pid %ld did not exit; killing it\n",
                (long)pid);
        kill(pid, SIGKILL);
    }
    /* What the simulated stubdomains and QMP locks left. */
    snprintf(p, sizeof(p), "%s/qmp-vchan", dir);
    DIR *d = opendir(p);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            char f[PATH_MAX * 2];
            if (e->d_name[0] == '.')
                continue;
            snprintf(f, sizeof(f), "%s/%s", p, e->d_name);
            unlink(f); /* sockets and lock files only: never a directory */
        }
        closedir(d);
        rmdir(p);
    }
    rmdir(dir);
    if (g->json)
        printf("{\"state\":\"stopped\",\"dir\":\"%s\",\"pid\":%ld}\n", dir,
               (long)pid);
    else
        fprintf(stderr, "simulated host stopped (pid %ld)\n", (long)pid);
    return CTL_EXIT_OK;
}

static int sim_status(stubdm_ctx *ctx, const struct ctl_global *g,
                      const char *dir)
{
    pid_t pid = running_pid(dir);
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
    rc = stubdm_list(ctx, &l);
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

static int run_sim(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
                   char **argv)
{
    char dir[PATH_MAX - 32];
    const char *action = NULL;
    bool verbose = false;

    default_dir(dir, sizeof(dir));
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir")) {
            if (++i >= argc || !argv[i][0])
                return ctl_usage_error(&cmd_sim, "--dir needs a directory");
            snprintf(dir, sizeof(dir), "%s", argv[i]);
        } else if (!strcmp(argv[i], "--verbose")) {
            verbose = true;
        } else if (!action && argv[i][0] != '-') {
            action = argv[i];
        } else {
            return ctl_usage_error(&cmd_sim, "unexpected argument '%s'",
                                   argv[i]);
        }
    }
    if (!action)
        return ctl_usage_error(&cmd_sim, "need start, stop or status");
    if (strlen(dir) > 80)
        return ctl_usage_error(&cmd_sim, "directory too long for unix "
                                         "socket paths (80 bytes at most)");
    if (!strcmp(action, "start"))
        return sim_start(g, dir, verbose);
    if (!strcmp(action, "stop"))
        return sim_stop(g, dir);
    if (!strcmp(action, "status"))
        return sim_status(ctx, g, dir);
    return ctl_usage_error(&cmd_sim, "unknown action '%s'", action);
}

CTL_COMMAND(cmd_sim) = {
    .name = "sim",
    .usage = "start|stop|status [--dir DIR] [--verbose]",
    .summary = "run the simulated Xen host (no hypervisor needed)",
    .help =
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
        "  --verbose  the daemon logs every request on stderr\n",
    .run = run_sim,
};
