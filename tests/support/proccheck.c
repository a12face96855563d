#include "proccheck.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define READ_MAX 65536
#define SETTLE_TRIES 100 /* of 20 ms */

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
