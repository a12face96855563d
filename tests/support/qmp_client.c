/*
 * qmp-client PATH COMMAND [TIMEOUT_S]: a minimal QMP client for the shell
 * tests, as libxl's ev_qmp speaks: connect to the unix socket PATH, read
 * the greeting, negotiate, execute COMMAND and print its reply line.
 * Exit 0 with the reply printed, 1 on any failure (the reason on stderr).
 * With "hold" after TIMEOUT_S: then stay connected until the server
 * closes (print "closed", exit 0) or TIMEOUT_S passes (exit 1), as a
 * client listening for events does.
 */
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static char buf[65536];
static size_t have;
static long deadline_ms;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* The next line from the server, NUL-terminated in place, or NULL. */
static char *next_line(int fd, char **rest)
{
    for (;;) {
        char *nl = memchr(buf, '\n', have);
        if (nl) {
            *nl = '\0';
            *rest = nl + 1;
            return buf;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        long left = deadline_ms - now_ms();
        if (left <= 0 || have == sizeof(buf) || poll(&p, 1, (int)left) <= 0)
            return NULL;
        ssize_t n = read(fd, buf + have, sizeof(buf) - have);
        if (n <= 0)
            return NULL;
        have += (size_t)n;
    }
}

static void consume(char *rest)
{
    have -= (size_t)(rest - buf);
    memmove(buf, rest, have);
}

/* The next line that is not an event. */
static char *reply(int fd)
{
    char *rest, *l;
    static char out[65536];

    while ((l = next_line(fd, &rest))) {
        bool event = strstr(l, "\"event\"") != NULL;
        snprintf(out, sizeof(out), "%s", l);
        consume(rest);
        if (!event)
            return out;
    }
    return NULL;
}

static int say(int fd, const char *cmd)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "{\"execute\": \"%s\"}\n", cmd);
    return write(fd, line, (size_t)n) == n ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char *r;
    int fd;

    if (argc < 3 || strlen(argv[1]) >= sizeof(a.sun_path)) {
        fprintf(stderr, "usage: qmp-client PATH COMMAND [TIMEOUT_S [hold]]\n");
        return 2;
    }
    deadline_ms = now_ms() + 1000L * (argc > 3 ? atol(argv[3]) : 10);
    strcpy(a.sun_path, argv[1]);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        perror("qmp-client: connect");
        return 1;
    }
    if (!(r = reply(fd)) || !strstr(r, "\"QMP\"")) {
        fprintf(stderr, "qmp-client: no greeting: %s\n", r ? r : "(none)");
        return 1;
    }
    if (say(fd, "qmp_capabilities") || !(r = reply(fd)) ||
        !strstr(r, "\"return\"")) {
        fprintf(stderr, "qmp-client: negotiation: %s\n", r ? r : "(none)");
        return 1;
    }
    if (say(fd, argv[2]) || !(r = reply(fd))) {
        fprintf(stderr, "qmp-client: no reply to %s\n", argv[2]);
        return 1;
    }
    printf("%s\n", r);
    fflush(stdout);
    if (!strstr(r, "\"return\""))
        return 1;
    if (argc > 4 && !strcmp(argv[4], "hold")) {
        while (reply(fd))
            ; /* a reply without a command: keep holding */
        if (now_ms() >= deadline_ms) {
            fprintf(stderr, "qmp-client: still connected\n");
            return 1;
        }
        printf("closed\n");
    }
    close(fd);
    return 0;
}
