#include "proccheck.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define READ_MAX 65536
#define SETTLE_TRIES 100 /* of 20 ms */

/* Check's message file: "<tmpdir>/check_XXXXXX", unlinked once opened. */
static bool is_check_message_file(const char *target)
{
    static const char deleted[] = " (deleted)";
    const char *base = strrchr(target, '/');
    size_t n = strlen(target), dn = sizeof(deleted) - 1;

    return base && strncmp(base + 1, "check_", 6) == 0 && n > dn &&
           strcmp(target + n - dn, deleted) == 0;
}

/* Points every fd on Check's message file at /dev/null. */
static void mute_check_messages(void)
{
    int fds[16], n = 0, null;
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d)) && n < (int)(sizeof(fds) / sizeof(fds[0]))) {
        char link[300], target[512];
        ssize_t len;

        if (e->d_name[0] == '.')
            continue;
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (is_check_message_file(target))
            fds[n++] = atoi(e->d_name);
    }
    closedir(d);
    if (!n || (null = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
        return;
    for (int i = 0; i < n; i++)
        dup2(null, fds[i]);
    close(null);
}

pid_t proc_child_fork(void)
{
    pid_t parent = getpid(), pid;

    fflush(NULL);
    pid = fork();
    if (pid != 0)
        return pid;
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127); /* the parent is already gone: so is the test */
    mute_check_messages();
    return 0;
}

void proc_die_with_parent(void)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) == 0 && getppid() == 1)
        _exit(127);
}

void proc_child_cloexec(void)
{
    DIR *d;
    struct dirent *e;

    if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) == 0)
        return;
    /* Kernels before 5.11: one by one. */
    d = opendir("/proc/self/fd");
    if (!d)
        return;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (fd >= 3 && fd != dirfd(d))
            fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    closedir(d);
}

bool proc_gone(pid_t pid)
{
    char p[64], *b, *rp, state = 0;
    bool gone;

    snprintf(p, sizeof(p), "/proc/%ld/stat", (long)pid);
    b = proc_read_file(p);
    if (!b)
        return true;
    /* "pid (comm) state ...": comm may hold spaces and parentheses */
    gone = (rp = strrchr(b, ')')) && sscanf(rp + 1, " %c", &state) == 1 &&
           (state == 'Z' || state == 'X');
    free(b);
    return gone;
}

int proc_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the DIR's own fd */
}

char *proc_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    size_t n;

    if (!f)
        return NULL;
    buf = calloc(1, READ_MAX);
    if (!buf) {
        fclose(f);
        return NULL;
    }
    n = fread(buf, 1, READ_MAX - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (!buf[i])
            buf[i] = ' ';
    return buf;
}

bool proc_file_mentions(const char *path, const char *needle)
{
    char *b = proc_read_file(path);
    bool r = b && strstr(b, needle);

    free(b);
    return r;
}

/* The processes in /proc besides mock_pid and this one that match. */
static int count_processes(bool (*match)(long pid, const char *arg),
                           const char *arg, pid_t mock_pid)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    if (!d)
        return -1;
    while ((e = readdir(d))) {
        long pid = strtol(e->d_name, NULL, 10);
        if (pid > 0 && pid != (long)mock_pid && pid != (long)getpid() &&
            match(pid, arg))
            n++;
    }
    closedir(d);
    return n;
}

static bool mentions_dir(long pid, const char *dir)
{
    char p[64];

    snprintf(p, sizeof(p), "/proc/%ld/cmdline", pid);
    if (proc_file_mentions(p, dir))
        return true;
    snprintf(p, sizeof(p), "/proc/%ld/environ", pid);
    return proc_file_mentions(p, dir);
}

static bool is_child(long pid, const char *unused)
{
    char p[64], *b, *rp;
    long ppid = 0;
    bool r;

    (void)unused;
    snprintf(p, sizeof(p), "/proc/%ld/stat", pid);
    b = proc_read_file(p);
    /* "pid (comm) state ppid ...": comm may hold spaces */
    r = b && (rp = strrchr(b, ')')) &&
        sscanf(rp + 1, " %*c %ld", &ppid) == 1 && ppid == (long)getpid();
    free(b);
    return r;
}

int proc_count_sim(const char *dir, pid_t mock_pid)
{
    return count_processes(mentions_dir, dir, mock_pid);
}

int proc_count_children(pid_t mock_pid)
{
    return count_processes(is_child, NULL, mock_pid);
}

/* count(dir, mock_pid) until it is 0, for up to SETTLE_TRIES * 20 ms. */
static int settle(int (*count)(const char *, pid_t), const char *dir,
                  pid_t mock_pid)
{
    int n = count(dir, mock_pid);

    for (int i = 0; n && i < SETTLE_TRIES; i++) {
        usleep(20000);
        n = count(dir, mock_pid);
    }
    return n;
}

static int children_of(const char *dir, pid_t mock_pid)
{
    (void)dir;
    return proc_count_children(mock_pid);
}

int proc_sim_settled(const char *dir, pid_t mock_pid)
{
    return settle(proc_count_sim, dir, mock_pid);
}

int proc_children_settled(pid_t mock_pid)
{
    return settle(children_of, NULL, mock_pid);
}
