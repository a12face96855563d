/* The simulated Xen host's hypervisor side.
 *
 * A simulated domain is a domid the mock has handed out (sim-create) and,
 * once "unpaused" (sim-start), a process group running a program that acts
 * as the domain: it talks to xenstore through DIR/domain-<domid>.sock.
 * When the process exits, the mock records why, as a toolstack would see
 * a domain die, and releases the domain (@releaseDomain).  The domain
 * itself stays allocated, like a crashed Xen domain, until sim-destroy.
 *
 *   sim-create [DOMID]            -> "DOMID" (allocated when absent)
 *   sim-start DOMID PROGRAM [ARG]... -> "PID"
 *   sim-destroy DOMID             -> "OK" (kills, releases, forgets)
 *   sim-pause DOMID               -> "OK" (SIGSTOP to the process group)
 *   sim-unpause DOMID             -> "OK" (SIGCONT to the process group)
 *   sim-list                      -> "DOMID STATE PID\n"...
 *
 * The library starts no process for a simulated domain: all their process
 * handling is here. */
#include "simhost.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIM_FIRST_RESERVED 0x7FF0u

enum simstate { SIM_NONE, SIM_CREATED, SIM_RUNNING, SIM_EXITED };

struct simdom {
	enum simstate state;
	pid_t pid; /* also the process group id */
};

/* One daemon per process: the table is file-local. */
static struct simdom sims[SIM_FIRST_RESERVED];
static unsigned next_domid = 1;

static const char *state_name(enum simstate s)
{
	switch (s) {
	case SIM_CREATED:
		return "created";
	case SIM_RUNNING:
		return "running";
	case SIM_EXITED:
		return "exited";
	default:
		return "none";
	}
}

static bool parse_simdomid(const char *s, unsigned *out)
{
	char *end;
	if (!s || s[0] < '0' || s[0] > '9')
		return false;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || v == 0 || v >= SIM_FIRST_RESERVED)
		return false;
	*out = (unsigned)v;
	return true;
}

static bool domid_in_use(struct daemon *d, unsigned domid)
{
	char path[48];
	struct view v = {&d->store, NULL};

	if (sims[domid].state != SIM_NONE || d->doms[domid].introduced)
		return true;
	snprintf(path, sizeof(path), "/local/domain/%u", domid);
	return v_get(&v, path) != NULL;
}

static void reply_fmt(struct buf *out, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void reply_fmt(struct buf *out, const char *fmt, ...)
{
	char s[128];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s, sizeof(s), fmt, ap);
	va_end(ap);
	buf_add(out, s, strlen(s));
}

static int sim_create(struct daemon *d, const char *const *argv, unsigned argc,
		      struct buf *out)
{
	unsigned domid = 0;

	if (argc >= 2 && argv[1][0]) {
		if (!parse_simdomid(argv[1], &domid))
			return EINVAL;
		if (domid_in_use(d, domid))
			return EEXIST;
	} else {
		/* Round robin from the last allocation, as Xen does. */
		for (unsigned i = 0; i < SIM_FIRST_RESERVED - 1; i++) {
			unsigned cand = next_domid;
			next_domid = next_domid + 1 >= SIM_FIRST_RESERVED
					     ? 1
					     : next_domid + 1;
			if (!domid_in_use(d, cand)) {
				domid = cand;
				break;
			}
		}
		if (!domid)
			return ENOSPC;
	}
	sims[domid].state = SIM_CREATED;
	sims[domid].pid = 0;
	vlog(d, "sim: created domain %u", domid);
	reply_fmt(out, "%u", domid);
	return 0;
}

/* A bare program name is looked up next to this binary first (the
 * simulated stubdomain is installed beside the mock), then in $PATH. */
static char *resolve_program(const char *prog)
{
	char self[PATH_MAX];
	ssize_t n;

	if (strchr(prog, '/'))
		return xstrdup(prog);
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) {
			struct buf b = {0};
			buf_add(&b, self, (size_t)(slash - self) + 1);
			buf_adds(&b, prog);
			if (access(b.d, X_OK) == 0)
				return b.d;
			buf_free(&b);
		}
	}
	return xstrdup(prog);
}

static void child_exec(struct daemon *d, unsigned domid, const char *prog,
		       char **args, int errfd, pid_t daemon_pid)
{
	char val[PATH_MAX + 32];
	sigset_t none;
	int err;

	/* A domain does not outlive its host: when the daemon dies, even by
	 * SIGKILL, so does the stubdomain (and, through its own
	 * PR_SET_PDEATHSIG, the stubdomain's QEMU). */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != daemon_pid)
		_exit(127);
	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	int null = open("/dev/null", O_RDONLY);
	if (null >= 0 && null != 0) {
		dup2(null, 0);
		close(null);
	}
	snprintf(val, sizeof(val), "%s/domain-%u.sock", d->dir, domid);
	setenv("XENSTORED_PATH", val, 1);
	snprintf(val, sizeof(val), "%u", domid);
	setenv("STUBDM_SIM_DOMID", val, 1);
	setenv("STUBDM_SIM_DIR", d->dir, 1);
	unsetenv("XENSTORED_RUNDIR");
	execvp(prog, args);
	err = errno;
	if (write(errfd, &err, sizeof(err)) < 0)
		_exit(127);
	_exit(127);
}

static int sim_start(struct daemon *d, const char *const *argv, unsigned argc,
		     struct buf *out)
{
	unsigned domid;
	int pfd[2], err = 0;

	if (argc < 3 || !parse_simdomid(argv[1], &domid) || !argv[2][0])
		return EINVAL;
	if (sims[domid].state == SIM_NONE)
		return ENOENT;
	if (sims[domid].state != SIM_CREATED)
		return EBUSY;

	char *prog = resolve_program(argv[2]);
	char **args = xcalloc(argc - 1, sizeof(char *));
	args[0] = prog;
	for (unsigned i = 3; i < argc; i++)
		args[i - 2] = (char *)argv[i];

	/* A close-on-exec pipe tells us whether exec worked. */
	if (pipe2(pfd, O_CLOEXEC)) {
		err = errno;
		goto out;
	}
	pid_t self = getpid(), pid = fork();
	if (pid < 0) {
		err = errno;
		close(pfd[0]);
		close(pfd[1]);
		goto out;
	}
	if (pid == 0) {
		close(pfd[0]);
		child_exec(d, domid, prog, args, pfd[1], self);
	}
	/* Both sides set the group, so it exists whoever runs first. */
	setpgid(pid, pid);
	close(pfd[1]);
	ssize_t n;
	do
		n = read(pfd[0], &err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(pfd[0]);
	if (n == (ssize_t)sizeof(err)) {
		/* exec failed: the child is exiting; reap it here. */
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		vlog(d, "sim: domain %u: cannot run %s: %s", domid, prog,
		     strerror(err));
		goto out;
	}
	err = 0;
	sims[domid].state = SIM_RUNNING;
	sims[domid].pid = pid;
	vlog(d, "sim: domain %u runs %s as pid %ld", domid, prog, (long)pid);
	reply_fmt(out, "%ld", (long)pid);
out:
	free(prog);
	free(args);
	return err;
}

static void rm_if_empty(struct daemon *d, const char *path, struct evlist *ev)
{
	struct view v = {&d->store, NULL};
	struct who dom0 = {0, true, NO_TARGET};
	struct node *n = v_get(&v, path);
	if (n && n->nkids == 0 && n->vlen == 0)
		op_rm(&v, &dom0, path, ev);
}

/* Kill the whole process group (the program and, e.g., its QEMU). */
static void kill_and_wait(struct simdom *s)
{
	if (s->state != SIM_RUNNING || s->pid <= 0)
		return;
	kill(-s->pid, SIGKILL);
	kill(s->pid, SIGKILL);
	while (waitpid(s->pid, NULL, 0) < 0 && errno == EINTR)
		;
}

static int sim_destroy(struct daemon *d, const char *const *argv, unsigned argc,
		       struct buf *out)
{
	unsigned domid;

	if (argc < 2 || !parse_simdomid(argv[1], &domid))
		return EINVAL;
	struct simdom *s = &sims[domid];
	if (s->state == SIM_NONE)
		return ENOENT;
	kill_and_wait(s);
	s->state = SIM_NONE;
	s->pid = 0;
	/* Destroying a domain releases it from xenstore (xenstored sees
	 * VIRQ_DOM_EXC): its connections go and @releaseDomain fires. */
	if (d->doms[domid].introduced) {
		d->doms[domid].introduced = false;
		d->doms[domid].target = NO_TARGET;
		listener_del_introduced(d, domid);
		for (struct conn *c = d->conns; c; c = c->next)
			if (c->domid == domid)
				conn_kill(d, c);
		struct event e = {0};
		e.path = (char *)"@releaseDomain";
		e.exact = true;
		e.perms = *special_perms(&d->store, "@releaseDomain");
		watch_fire(d, &e);
	}
	/* The death record goes with the domain. */
	struct view v = {&d->store, NULL};
	struct who dom0 = {0, true, NO_TARGET};
	struct evlist ev;
	char path[64];
	evlist_init(&ev);
	snprintf(path, sizeof(path), "/tool/stubdm-sim/domain/%u", domid);
	if (v_get(&v, path))
		op_rm(&v, &dom0, path, &ev);
	rm_if_empty(d, "/tool/stubdm-sim/domain", &ev);
	rm_if_empty(d, "/tool/stubdm-sim", &ev);
	watch_fire_list(d, &ev);
	vlog(d, "sim: destroyed domain %u", domid);
	buf_add(out, "OK", 2);
	return 0;
}

/* A paused Xen domain keeps its memory and stops running: stop the whole
 * process group (the program and its QEMU), continue it on unpause. */
static int sim_pause(const char *const *argv, unsigned argc, struct buf *out,
		     bool pause)
{
	unsigned domid;

	if (argc < 2 || !parse_simdomid(argv[1], &domid))
		return EINVAL;
	struct simdom *s = &sims[domid];
	if (s->state == SIM_NONE)
		return ENOENT;
	if (s->state != SIM_RUNNING || s->pid <= 0)
		return EINVAL; /* not started, or already dead */
	if (kill(-s->pid, pause ? SIGSTOP : SIGCONT) < 0)
		return errno;
	buf_add(out, "OK", 2);
	return 0;
}

static void sim_list(struct buf *out)
{
	for (unsigned i = 1; i < SIM_FIRST_RESERVED; i++)
		if (sims[i].state != SIM_NONE)
			reply_fmt(out, "%u %s %ld\n", i,
				  state_name(sims[i].state), (long)sims[i].pid);
}

int simhost_control(struct daemon *d, const char *const *argv, unsigned argc,
		    struct buf *out)
{
	int err;

	if (argc < 1)
		return -1;
	if (!strcmp(argv[0], "sim-create"))
		err = sim_create(d, argv, argc, out);
	else if (!strcmp(argv[0], "sim-start"))
		err = sim_start(d, argv, argc, out);
	else if (!strcmp(argv[0], "sim-destroy"))
		err = sim_destroy(d, argv, argc, out);
	else if (!strcmp(argv[0], "sim-pause"))
		err = sim_pause(argv, argc, out, true);
	else if (!strcmp(argv[0], "sim-unpause"))
		err = sim_pause(argv, argc, out, false);
	else if (!strcmp(argv[0], "sim-list")) {
		sim_list(out);
		err = 0;
	} else
		return -1;
	if (!err)
		buf_add(out, "", 1);
	return err;
}

void simhost_backends(struct daemon *d, const struct evlist *l)
{
	struct view v = {&d->store, NULL};
	struct who dom0 = {0, true, NO_TARGET};
	struct evlist ev;

	evlist_init(&ev);
	for (const struct event *e = l->head; e; e = e->next) {
		char kind[4];
		unsigned domid, devid;
		int end = 0;
		if (sscanf(e->path,
			   "/local/domain/0/backend/%3[a-z]/%u/%u/state%n",
			   kind, &domid, &devid, &end) != 3 ||
		    !end || e->path[end] ||
		    (strcmp(kind, "vbd") && strcmp(kind, "vif")) || domid == 0 ||
		    domid >= SIM_FIRST_RESERVED || sims[domid].state == SIM_NONE)
			continue;
		struct node *n = v_get(&v, e->path);
		if (!n || n->vlen != 1 || n->val[0] != '1')
			continue;
		if (op_write(&v, &dom0, e->path, "2", 1, &ev) == 0)
			vlog(d, "sim: %s backend %u/%u: InitWait", kind, domid,
			     devid);
	}
	/* Their own events: state "2" matches nothing above, so this ends. */
	if (ev.head)
		watch_fire_list(d, &ev);
	else
		evlist_clear(&ev);
}

static void describe(int status, char *out, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(out, len, "crashed (signal %d%s)", WTERMSIG(status),
			 WCOREDUMP(status) ? ", core dumped" : "");
	else if (WEXITSTATUS(status) == 0)
		snprintf(out, len, "shut down (exit 0)");
	else
		snprintf(out, len, "exited with status %d", WEXITSTATUS(status));
}

void simhost_reap(struct daemon *d)
{
	for (;;) {
		int status;
		pid_t pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			return;
		for (unsigned i = 1; i < SIM_FIRST_RESERVED; i++) {
			if (sims[i].state != SIM_RUNNING || sims[i].pid != pid)
				continue;
			char why[96];
			describe(status, why, sizeof(why));
			sims[i].state = SIM_EXITED;
			/* Whatever the program left in its group goes too. */
			kill(-pid, SIGKILL);
			vlog(d, "sim: domain %u (pid %ld) %s", i, (long)pid, why);
			wire_sim_release(d, i, why, strlen(why));
			break;
		}
	}
}

void simhost_shutdown(struct daemon *d)
{
	(void)d;
	for (unsigned i = 1; i < SIM_FIRST_RESERVED; i++) {
		kill_and_wait(&sims[i]);
		sims[i].state = SIM_NONE;
	}
}
