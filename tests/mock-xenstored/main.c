/* stubdm-mock-xenstored: a xenstored speaking the real wire protocol on
 * unix sockets, for tests and the simulated Xen host.  See
 * docs/mock-xenstored.md. */
#include "daemon.h"
#include "simhost.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t child_exited; /* a simulated domain's process */

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void on_sigchld(int sig)
{
	(void)sig;
	child_exited = 1;
}

void vlog(const struct daemon *d, const char *fmt, ...)
{
	if (!d->cfg.verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	fputs("mock-xenstored: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* epoll data of a listener: this bit plus its fd; of a connection: the
 * struct conn pointer (connections are only freed by conn_reap, after the
 * batch of events that may name them). */
#define LISTENER_TAG (UINT64_C(1) << 63)

int listener_add(struct daemon *d, unsigned domid, const char *path,
		 bool introduced)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "mock-xenstored: socket path too long: %s\n",
			path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 128)) {
		fprintf(stderr, "mock-xenstored: cannot listen on %s: %s\n",
			path, strerror(errno));
		close(fd);
		return -1;
	}
	struct listener *l = xcalloc(1, sizeof(*l));
	l->fd = fd;
	l->domid = domid;
	l->path = xstrdup(path);
	l->introduced = introduced;
	l->next = d->listeners;
	d->listeners = l;
	struct epoll_event ev = {.events = EPOLLIN,
				 .data.u64 = LISTENER_TAG | (uint64_t)fd};
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev))
		perror("mock-xenstored: epoll_ctl listener");
	vlog(d, "listening on %s as domain %u", path, domid);
	return 0;
}

static void listener_free(struct listener *l)
{
	close(l->fd);
	unlink(l->path);
	free(l->path);
	free(l);
}

void listener_del_introduced(struct daemon *d, unsigned domid)
{
	for (struct listener **pp = &d->listeners; *pp;) {
		struct listener *l = *pp;
		if (l->introduced && l->domid == domid) {
			*pp = l->next;
			listener_free(l);
		} else {
			pp = &l->next;
		}
	}
}

static void accept_all(struct daemon *d, struct listener *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct conn *c = conn_new(d, fd, l->domid);
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev))
			perror("mock-xenstored: epoll_ctl conn");
	}
}

static void usage(FILE *f)
{
	fputs("usage: stubdm-mock-xenstored --dir DIR [--pidfile F] "
	      "[--daemon]\n"
	      "         [--entry-size N] [--quota-nodes N] [--quota-watches "
	      "N]\n"
	      "         [--quota-transactions N] [--max-output BYTES]\n"
	      "         [--domain-socket DOMID:PATH]... [--ready-fd N] "
	      "[--verbose]\n",
	      f);
}

static bool parse_num(const char *s, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max || s[0] == '-')
		return false;
	*out = v;
	return true;
}

/* Create the pidfile afresh: a stale one is removed (a symlink itself,
 * never its target), then O_EXCL|O_NOFOLLOW, so nothing is ever written
 * through a link someone else planted in a shared directory. */
static int write_pidfile(const char *path, pid_t pid)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)pid);

	if (unlink(path) && errno != ENOENT)
		return -1;
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		      0644);
	if (fd < 0)
		return -1;
	if (write(fd, buf, (size_t)n) != n) {
		int err = errno;
		close(fd);
		unlink(path);
		errno = err ? err : EIO;
		return -1;
	}
	return close(fd);
}

static void run(struct daemon *d)
{
	/* epoll, not poll: with a thousand simulated stubdomains the daemon
	 * holds a thousand domain sockets and as many connections, and
	 * polling all of them for every request dominated the benchmarks. */
	struct epoll_event evs[256];
	sigset_t empty;
	sigemptyset(&empty);

	while (!stop_requested) {
		/* Output interest follows each connection's queue. */
		for (struct conn *c = d->conns; c; c = c->next) {
			bool want = c->oh != NULL;
			if (c->dead || want == c->ep_out)
				continue;
			struct epoll_event ev = {.events = EPOLLIN |
							   (want ? EPOLLOUT : 0u),
						 .data.ptr = c};
			if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0)
				c->ep_out = want;
		}
		/* Signals are blocked except while waiting, so a SIGTERM can
		 * not slip in between the check and the wait. */
		int n = epoll_pwait(d->epfd, evs,
				    (int)(sizeof(evs) / sizeof(evs[0])), -1,
				    &empty);
		int err = errno;
		if (child_exited) {
			child_exited = 0;
			simhost_reap(d);
		}
		errno = err; /* reaping used waitpid */
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("mock-xenstored: epoll_pwait");
			break;
		}
		for (int i = 0; i < n; i++) {
			if (evs[i].data.u64 & LISTENER_TAG) {
				int fd = (int)(evs[i].data.u64 & ~LISTENER_TAG);
				/* Looked up afresh: RELEASE may have closed it. */
				for (struct listener *l = d->listeners; l;
				     l = l->next)
					if (l->fd == fd)
						accept_all(d, l);
				continue;
			}
			struct conn *c = evs[i].data.ptr;
			if (c->dead)
				continue;
			if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
				conn_on_readable(d, c);
			if (!c->dead && (evs[i].events & EPOLLOUT))
				conn_on_writable(d, c);
		}
		conn_reap(d);
	}
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"dir", required_argument, NULL, 'd'},
		{"pidfile", required_argument, NULL, 'p'},
		{"daemon", no_argument, NULL, 'D'},
		{"entry-size", required_argument, NULL, 'e'},
		{"quota-nodes", required_argument, NULL, 'n'},
		{"quota-watches", required_argument, NULL, 'w'},
		{"quota-transactions", required_argument, NULL, 't'},
		{"max-output", required_argument, NULL, 'o'},
		{"domain-socket", required_argument, NULL, 's'},
		{"ready-fd", required_argument, NULL, 'r'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct daemon d;
	const char *pidfile = NULL;
	bool daemonize = false;
	int ready_fd = -1;
	char **dsock = xcalloc((size_t)argc, sizeof(char *));
	size_t ndsock = 0;
	unsigned long v;
	int opt, ret = 1;

	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d.epfd < 0) {
		perror("mock-xenstored: epoll_create1");
		return 1;
	}
	d.cfg.entry_size = 2048;
	d.cfg.quota_nodes = 1000;
	d.cfg.quota_watches = 128;
	d.cfg.quota_transactions = 10;
	d.cfg.max_output = 4u << 20;

	while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (opt) {
		case 'd':
			d.dir = optarg;
			break;
		case 'p':
			pidfile = optarg;
			break;
		case 'D':
			daemonize = true;
			break;
		case 'v':
			d.cfg.verbose = true;
			break;
		case 's':
			dsock[ndsock++] = optarg;
			break;
		case 'h':
			usage(stdout);
			free(dsock);
			return 0;
		case 'e':
		case 'n':
		case 'w':
		case 't':
		case 'o':
		case 'r':
			if (!parse_num(optarg, opt == 'o' ? ULONG_MAX : INT_MAX,
				       &v)) {
				fprintf(stderr,
					"mock-xenstored: bad number '%s'\n",
					optarg);
				free(dsock);
				return 2;
			}
			if (opt == 'e')
				d.cfg.entry_size = v;
			if (opt == 'n')
				d.cfg.quota_nodes = (unsigned)v;
			if (opt == 'w')
				d.cfg.quota_watches = (unsigned)v;
			if (opt == 't')
				d.cfg.quota_transactions = (unsigned)v;
			if (opt == 'o')
				d.cfg.max_output = v;
			if (opt == 'r')
				ready_fd = (int)v;
			break;
		default:
			usage(stderr);
			free(dsock);
			return 2;
		}
	}
	if (!d.dir || optind != argc) {
		usage(stderr);
		free(dsock);
		return 2;
	}

	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, NULL);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	struct sigaction sc = {.sa_handler = on_sigchld,
			       .sa_flags = SA_NOCLDSTOP};
	sigaction(SIGCHLD, &sc, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Benchmarks hold a connection per simulated stubdomain. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}

	d.doms = xcalloc(DOMID_LIMIT, sizeof(*d.doms));
	for (unsigned i = 0; i < DOMID_LIMIT; i++)
		d.doms[i].target = NO_TARGET;
	store_init(&d.store, &d.cfg);
	hmap_init(&d.watches);

	mkdir(d.dir, 0700);
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/socket", d.dir);
	if (listener_add(&d, 0, path, false))
		goto out;
	for (size_t i = 0; i < ndsock; i++) {
		char *colon = strchr(dsock[i], ':');
		if (colon)
			*colon = '\0';
		if (!colon || !parse_num(dsock[i], DOMID_LIMIT - 1, &v) ||
		    v == 0 || !colon[1]) {
			fprintf(stderr, "mock-xenstored: bad --domain-socket, "
					"want DOMID:PATH\n");
			goto out;
		}
		if (listener_add(&d, (unsigned)v, colon + 1, false))
			goto out;
	}

	if (daemonize) {
		pid_t pid = fork();
		if (pid < 0)
			goto out;
		if (pid > 0) {
			/* The parent leaves only once the pidfile names the child. */
			if (pidfile && write_pidfile(pidfile, pid)) {
				perror("mock-xenstored: pidfile");
				kill(pid, SIGTERM);
				_exit(1);
			}
			_exit(0);
		}
		setsid();
		int null = open("/dev/null", O_RDWR);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			if (!d.cfg.verbose)
				dup2(null, 2);
			if (null > 2)
				close(null);
		}
	} else if (pidfile && write_pidfile(pidfile, getpid())) {
		perror("mock-xenstored: pidfile");
		goto out;
	}
	if (ready_fd >= 0) {
		if (write(ready_fd, "ready\n", 6) != 6)
			perror("mock-xenstored: ready-fd");
		close(ready_fd);
	}

	run(&d);
	ret = 0;
	vlog(&d, "exiting");
out:
	simhost_shutdown(&d);
	while (d.conns) {
		for (struct conn *c = d.conns; c; c = c->next)
			c->dead = true;
		conn_reap(&d);
	}
	while (d.listeners) {
		struct listener *l = d.listeners;
		d.listeners = l->next;
		listener_free(l);
	}
	if (pidfile && ret == 0)
		unlink(pidfile);
	hmap_destroy(&d.watches, NULL);
	store_destroy(&d.store);
	free(d.doms);
	free(d.drop_on);
	free(dsock);
	return ret;
}
