/* Behaviour of the mock xenstored through the real libxenstore (and raw
 * sockets where libxenstore would hide the wire). */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xen/io/xs_wire.h>
#include <xenstore.h>

#include "mockxs.h"

static struct mockxs mx;
static struct xs_handle *xs0;

static void start(const struct mockxs_opts *o)
{
	ck_assert_int_eq(mockxs_start(&mx, o), 0);
	xs0 = mockxs_open_as(&mx, 0);
	ck_assert_ptr_nonnull(xs0);
}

static void stop(void)
{
	if (xs0)
		xs_close(xs0);
	xs0 = NULL;
	ck_assert_msg(mockxs_stop(&mx) == 0, "daemon did not exit cleanly");
}

static const unsigned doms[] = {5, 6, 9};
static const struct mockxs_opts dom_opts = {.domids = doms, .n_domids = 3};

static void start_doms(void)
{
	start(&dom_opts);
}

/* Waits up to ms for a watch event; returns false on timeout. */
static bool next_event(struct xs_handle *h, int ms, char *path, char *token)
{
	for (;;) {
		char **v = xs_check_watch(h);
		if (v) {
			snprintf(path, 4096, "%s", v[XS_WATCH_PATH]);
			snprintf(token, 4096, "%s", v[XS_WATCH_TOKEN]);
			free(v);
			return true;
		}
		struct pollfd p = {xs_fileno(h), POLLIN, 0};
		if (poll(&p, 1, ms) <= 0)
			return false;
	}
}

static void expect_event(struct xs_handle *h, const char *path, const char *token)
{
	static char p[4096], t[4096];
	ck_assert_msg(next_event(h, 2000, p, t), "no event, wanted %s", path);
	ck_assert_str_eq(p, path);
	ck_assert_str_eq(t, token);
}

static void expect_no_event(struct xs_handle *h)
{
	static char p[4096], t[4096];
	bool got = next_event(h, 150, p, t);
	ck_assert_msg(!got, "unexpected event %s %s", p, t);
}

static void write_s(struct xs_handle *h, const char *path, const char *val)
{
	ck_assert_msg(xs_write(h, XBT_NULL, path, val, (unsigned)strlen(val)),
		      "write %s: %s", path, strerror(errno));
}

static void expect_read(struct xs_handle *h, const char *path, const char *val)
{
	unsigned len;
	char *v = xs_read(h, XBT_NULL, path, &len);
	ck_assert_msg(v != NULL, "read %s: %s", path, strerror(errno));
	ck_assert_uint_eq(len, strlen(val));
	ck_assert_str_eq(v, val);
	free(v);
}

static void expect_read_err(struct xs_handle *h, const char *path, int err)
{
	unsigned len;
	errno = 0;
	char *v = xs_read(h, XBT_NULL, path, &len);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(errno, err);
}

static void set_perms(struct xs_handle *h, const char *path, const char *spec)
{
	struct xs_permissions p[8];
	unsigned n = 0;
	char *copy = strdup(spec), *save = NULL;
	for (char *tok = strtok_r(copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save)) {
		p[n].id = (unsigned)atoi(tok + 1);
		p[n].perms = tok[0] == 'r'   ? XS_PERM_READ
			     : tok[0] == 'w' ? XS_PERM_WRITE
			     : tok[0] == 'b' ? XS_PERM_READ | XS_PERM_WRITE
					     : XS_PERM_NONE;
		n++;
	}
	free(copy);
	ck_assert_msg(xs_set_permissions(h, XBT_NULL, path, p, n),
		      "chmod %s: %s", path, strerror(errno));
}

static void expect_perms(const char *path, const char *want)
{
	unsigned n;
	struct xs_permissions *p = xs_get_permissions(xs0, XBT_NULL, path, &n);
	ck_assert_ptr_nonnull(p);
	char got[256] = "";
	for (unsigned i = 0; i < n; i++) {
		static const char l[4] = {'n', 'r', 'w', 'b'};
		char one[24];
		snprintf(one, sizeof(one), "%s%c%u", i ? "," : "",
			 l[p[i].perms & 3], p[i].id);
		strcat(got, one);
	}
	free(p);
	ck_assert_str_eq(got, want);
}

/* Raw protocol: one request, one reply (skipping watch events). */
static ssize_t raw_req(int fd, uint32_t type, uint32_t tx, const void *data,
		       size_t len, uint32_t *rtype, char *out, size_t outsz)
{
	struct xsd_sockmsg h = {type, 42, tx, (uint32_t)len};
	ck_assert_int_eq(send(fd, &h, sizeof(h), MSG_NOSIGNAL),
			 (ssize_t)sizeof(h));
	if (len)
		ck_assert_int_eq(send(fd, data, len, MSG_NOSIGNAL), (ssize_t)len);
	for (;;) {
		struct xsd_sockmsg r;
		ssize_t n = recv(fd, &r, sizeof(r), MSG_WAITALL);
		if (n != (ssize_t)sizeof(r))
			return -1;
		ck_assert_uint_le(r.len, outsz);
		if (r.len)
			ck_assert_int_eq(recv(fd, out, r.len, MSG_WAITALL),
					 (ssize_t)r.len);
		if (r.type == XS_WATCH_EVENT)
			continue;
		ck_assert_uint_eq(r.req_id, 42);
		*rtype = r.type;
		return r.len;
	}
}

START_TEST(test_initial_tree_and_binary_values)
{
	start(NULL);
	char *dump;
	ck_assert_int_eq(mockxs_dump(&mx, &dump), 0);
	ck_assert_str_eq(dump, "/ = \"\" (n0)\n"
			       "/local = \"\" (n0)\n"
			       "/local/domain = \"\" (n0)\n"
			       "/tool = \"\" (n0)\n"
			       "/tool/xenstored = \"\" (n0)\n");
	free(dump);

	static const char bin[] = {'a', 0, '\n', (char)0xff, 'z'};
	ck_assert(xs_write(xs0, XBT_NULL, "/t/bin", bin, sizeof(bin)));
	unsigned len;
	char *v = xs_read(xs0, XBT_NULL, "/t/bin", &len);
	ck_assert_uint_eq(len, sizeof(bin));
	ck_assert_int_eq(memcmp(v, bin, sizeof(bin)), 0);
	free(v);
	ck_assert_int_eq(mockxs_dump(&mx, &dump), 0);
	ck_assert_ptr_nonnull(
		strstr(dump, "/t/bin = \"a\\x00\\x0a\\xffz\" (n0)\n"));
	free(dump);

	/* Empty value, mkdir of existing node, rm of missing child. */
	ck_assert(xs_write(xs0, XBT_NULL, "/t/empty", "", 0));
	expect_read(xs0, "/t/empty", "");
	ck_assert(xs_mkdir(xs0, XBT_NULL, "/t/bin"));
	ck_assert(xs_rm(xs0, XBT_NULL, "/t/nothere"));
	errno = 0;
	ck_assert(!xs_rm(xs0, XBT_NULL, "/nope/nothere"));
	ck_assert_int_eq(errno, ENOENT);
	errno = 0;
	ck_assert(!xs_rm(xs0, XBT_NULL, "/"));
	ck_assert_int_eq(errno, EINVAL);
	expect_read_err(xs0, "/t/missing", ENOENT);
	expect_read_err(xs0, "/t//x", EINVAL);
	expect_read_err(xs0, "/t/x/", EINVAL);
	expect_read_err(xs0, "/t/x y", EINVAL);
	expect_read_err(xs0, "@releaseDomain", EINVAL);

	/* Relative paths of dom0 live under /local/domain/0. */
	write_s(xs0, "rel", "r");
	expect_read(xs0, "/local/domain/0/rel", "r");
	char *p = xs_get_domain_path(xs0, 17);
	ck_assert_str_eq(p, "/local/domain/17");
	free(p);
	stop();
}
END_TEST

START_TEST(test_transactions)
{
	start(NULL);
	write_s(xs0, "/t/a", "1");
	write_s(xs0, "/t/b", "1");

	/* Outside change to a node the transaction read: EAGAIN. */
	xs_transaction_t t = xs_transaction_start(xs0);
	ck_assert_uint_ne(t, XBT_NULL);
	unsigned len;
	free(xs_read(xs0, t, "/t/a", &len));
	ck_assert(xs_write(xs0, t, "/t/c", "tx", 2));
	write_s(xs0, "/t/a", "2");
	errno = 0;
	ck_assert(!xs_transaction_end(xs0, t, false));
	ck_assert_int_eq(errno, EAGAIN);
	expect_read_err(xs0, "/t/c", ENOENT);

	/* Outside change elsewhere: no conflict; the commit applies. */
	t = xs_transaction_start(xs0);
	free(xs_read(xs0, t, "/t/a", &len));
	ck_assert(xs_write(xs0, t, "/t/a", "3", 1));
	write_s(xs0, "/other", "x");
	write_s(xs0, "/t/b", "2");
	expect_read(xs0, "/t/a", "2"); /* isolation */
	ck_assert(xs_transaction_end(xs0, t, false));
	expect_read(xs0, "/t/a", "3");

	/* The absence of a node is part of what was read. */
	t = xs_transaction_start(xs0);
	ck_assert_ptr_null(xs_read(xs0, t, "/t/new", &len));
	write_s(xs0, "/t/new", "outside");
	ck_assert(xs_write(xs0, t, "/t/z", "1", 1));
	errno = 0;
	ck_assert(!xs_transaction_end(xs0, t, false));
	ck_assert_int_eq(errno, EAGAIN);

	/* A directory listing conflicts with a child created outside. */
	t = xs_transaction_start(xs0);
	unsigned n;
	free(xs_directory(xs0, t, "/t", &n));
	ck_assert_uint_eq(n, 3); /* a, b, new */
	write_s(xs0, "/t/d", "1");
	errno = 0;
	ck_assert(!xs_transaction_end(xs0, t, false));
	ck_assert_int_eq(errno, EAGAIN);

	/* Abort discards; rm inside a transaction. */
	t = xs_transaction_start(xs0);
	ck_assert(xs_rm(xs0, t, "/t"));
	ck_assert_ptr_null(xs_read(xs0, t, "/t/a", &len));
	expect_read(xs0, "/t/a", "3");
	ck_assert(xs_transaction_end(xs0, t, true));
	expect_read(xs0, "/t/a", "3");
	t = xs_transaction_start(xs0);
	ck_assert(xs_rm(xs0, t, "/t"));
	ck_assert(xs_transaction_end(xs0, t, false));
	expect_read_err(xs0, "/t/a", ENOENT);

	/* Unknown transaction. */
	errno = 0;
	ck_assert_ptr_null(xs_read(xs0, 9999, "/other", &len));
	ck_assert_int_eq(errno, ENOENT);
	errno = 0;
	ck_assert(!xs_transaction_end(xs0, 9999, false));
	ck_assert_int_eq(errno, ENOENT);
	stop();
}
END_TEST

START_TEST(test_watches)
{
	start_doms();
	struct xs_handle *w = mockxs_open_as(&mx, 0);
	ck_assert(xs_watch(w, "/w", "tok"));
	expect_event(w, "/w", "tok"); /* fires at once, even if absent */
	errno = 0;
	ck_assert(!xs_watch(w, "/w", "tok"));
	ck_assert_int_eq(errno, EEXIST);

	write_s(xs0, "/w/a/b", "1");
	expect_event(w, "/w/a/b", "tok");
	write_s(xs0, "/wx", "1"); /* sibling with a common prefix */
	expect_no_event(w);
	set_perms(xs0, "/w/a", "n0,r5");
	expect_event(w, "/w/a", "tok");

	/* rm of an ancestor fires watches on the removed descendants. */
	ck_assert(xs_watch(w, "/w/a/b", "deep"));
	expect_event(w, "/w/a/b", "deep");
	ck_assert(xs_rm(xs0, XBT_NULL, "/w"));
	char p[4096], t[4096];
	int seen_deep = 0, seen_top = 0;
	for (int i = 0; i < 2; i++) {
		ck_assert(next_event(w, 2000, p, t));
		if (!strcmp(t, "deep") && !strcmp(p, "/w/a/b"))
			seen_deep++;
		if (!strcmp(t, "tok") && !strcmp(p, "/w"))
			seen_top++;
	}
	ck_assert_int_eq(seen_deep, 1);
	ck_assert_int_eq(seen_top, 1);
	expect_no_event(w);

	ck_assert(xs_unwatch(w, "/w/a/b", "deep"));
	errno = 0;
	ck_assert(!xs_unwatch(w, "/w/a/b", "deep"));
	ck_assert_int_eq(errno, ENOENT);

	/* Transactions fire at commit only. */
	xs_transaction_t tx = xs_transaction_start(xs0);
	ck_assert(xs_write(xs0, tx, "/w/t", "1", 1));
	expect_no_event(w);
	ck_assert(xs_transaction_end(xs0, tx, false));
	expect_event(w, "/w/t", "tok");

	/* A domain's relative watch reports relative paths, and it only
	 * hears about nodes it may read. */
	ck_assert(xs_mkdir(xs0, XBT_NULL, "/local/domain/5"));
	set_perms(xs0, "/local/domain/5", "n5");
	struct xs_handle *d5 = mockxs_open_as(&mx, 5);
	ck_assert(xs_watch(d5, "device", "rel"));
	expect_event(d5, "device", "rel");
	write_s(xs0, "/local/domain/5/device/vif/0", "x");
	expect_event(d5, "device/vif/0", "rel");
	write_s(d5, "device/own", "y");
	expect_event(d5, "device/own", "rel");
	ck_assert(xs_watch(d5, "/secret", "abs"));
	expect_event(d5, "/secret", "abs");
	write_s(xs0, "/secret/x", "hidden"); /* n0: dom5 may not read */
	expect_no_event(d5);
	set_perms(xs0, "/secret/x", "n0,r5");
	expect_event(d5, "/secret/x", "abs");
	write_s(xs0, "/secret/x", "visible");
	expect_event(d5, "/secret/x", "abs");

	xs_close(d5);
	xs_close(w);
	stop();
}
END_TEST

START_TEST(test_directory_part)
{
	start(NULL);
	/* 300 * 24 bytes of names: well over one 4096-byte payload, so
	 * libxenstore gets E2BIG and falls back to DIRECTORY_PART. */
	xs_transaction_t t = xs_transaction_start(xs0);
	char path[128];
	for (int i = 0; i < 300; i++) {
		snprintf(path, sizeof(path), "/big/child-with-long-name-%04d", i);
		ck_assert(xs_write(xs0, t, path, "", 0));
	}
	ck_assert(xs_transaction_end(xs0, t, false));
	unsigned n;
	char **kids = xs_directory(xs0, XBT_NULL, "/big", &n);
	ck_assert_ptr_nonnull(kids);
	ck_assert_uint_eq(n, 300);
	for (unsigned i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "child-with-long-name-%04u", i);
		ck_assert_str_eq(kids[i], path);
	}
	free(kids);

	/* The wire: plain DIRECTORY says E2BIG, the parts end with "". */
	int fd = mockxs_connect_raw(&mx, 0);
	char buf[4200];
	uint32_t rt;
	ssize_t len = raw_req(fd, XS_DIRECTORY, 0, "/big", 5, &rt, buf,
			      sizeof(buf));
	ck_assert_uint_eq(rt, XS_ERROR);
	ck_assert_int_eq(len, 6);
	ck_assert_str_eq(buf, "E2BIG");
	len = raw_req(fd, XS_DIRECTORY_PART, 0,
		      "/big\0"
		      "7774",
		      10, &rt, buf, sizeof(buf));
	ck_assert_uint_eq(rt, XS_DIRECTORY_PART);
	size_t gl = strlen(buf) + 1;
	/* Offset 7774 = 299 names of 26 bytes: the last one, then "". */
	ck_assert_int_eq(len, (ssize_t)(gl + 26 + 1));
	ck_assert_str_eq(buf + gl, "child-with-long-name-0299");
	ck_assert_int_eq(buf[gl + 26], 0);
	close(fd);
	stop();
}
END_TEST

START_TEST(test_introduce_release)
{
	start_doms();
	struct xs_handle *w = mockxs_open_as(&mx, 0);
	ck_assert(xs_watch(w, "@introduceDomain", "in"));
	expect_event(w, "@introduceDomain", "in");
	ck_assert(xs_watch(w, "@releaseDomain", "out"));
	expect_event(w, "@releaseDomain", "out");

	ck_assert(!xs_is_domain_introduced(xs0, 12));
	ck_assert(xs_introduce_domain(xs0, 12, 1234, 7));
	expect_event(w, "@introduceDomain", "in");
	ck_assert(xs_is_domain_introduced(xs0, 12));
	char sock[512];
	snprintf(sock, sizeof(sock), "%s/domain-12.sock", mx.dir);
	struct stat st;
	ck_assert_int_eq(stat(sock, &st), 0);

	/* Only the toolstack may introduce. */
	struct xs_handle *d5 = mockxs_open_as(&mx, 5);
	errno = 0;
	ck_assert(!xs_introduce_domain(d5, 13, 1, 1));
	ck_assert_int_eq(errno, EACCES);
	xs_close(d5);

	/* A connection acting as dom12 through its socket. */
	char *saved = getenv("XENSTORED_PATH");
	(void)saved;
	setenv("XENSTORED_PATH", sock, 1);
	struct xs_handle *d12 = xs_open(XS_OPEN_SOCKETONLY);
	unsetenv("XENSTORED_PATH");
	ck_assert_ptr_nonnull(d12);
	ck_assert(xs_mkdir(xs0, XBT_NULL, "/local/domain/12"));
	set_perms(xs0, "/local/domain/12", "n12");
	write_s(d12, "data", "mine");
	expect_perms("/local/domain/12/data", "n12");

	ck_assert(xs_release_domain(xs0, 12));
	expect_event(w, "@releaseDomain", "out");
	ck_assert(!xs_is_domain_introduced(xs0, 12));
	ck_assert_int_ne(stat(sock, &st), 0);
	unsigned len;
	errno = 0;
	ck_assert_ptr_null(xs_read(d12, XBT_NULL, "data", &len)); /* dropped */
	xs_close(d12);
	errno = 0;
	ck_assert(!xs_release_domain(xs0, 12));
	ck_assert_int_eq(errno, ENOENT);

	/* sim-release: reason recorded, then released. */
	ck_assert(xs_introduce_domain(xs0, 14, 1, 1));
	expect_event(w, "@introduceDomain", "in");
	static const char args[] = "14\0guest crashed";
	char *r = xs_control_command(xs0, "sim-release", (void *)args,
				     sizeof(args));
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r, "OK");
	free(r);
	expect_event(w, "@releaseDomain", "out");
	expect_read(xs0, "/tool/stubdm-sim/domain/14/exit", "guest crashed");
	expect_perms("/tool/stubdm-sim/domain/14/exit", "n0");
	ck_assert(!xs_is_domain_introduced(xs0, 14));
	xs_close(w);
	stop();
}
END_TEST

START_TEST(test_permissions)
{
	start_doms();
	struct xs_handle *d5 = mockxs_open_as(&mx, 5);
	struct xs_handle *d6 = mockxs_open_as(&mx, 6);

	/* Inheritance, and an unprivileged creator owning what it makes. */
	write_s(xs0, "/shared/x", "0");
	set_perms(xs0, "/shared", "n0,w5,r6");
	write_s(d5, "/shared/a/b", "from5");
	expect_perms("/shared/a", "n5,w5,r6");
	expect_perms("/shared/a/b", "n5,w5,r6");
	write_s(xs0, "/shared/c", "from0");
	expect_perms("/shared/c", "n0,w5,r6");
	expect_read(d6, "/shared/a/b", "from5");
	errno = 0;
	ck_assert(!xs_write(d6, XBT_NULL, "/shared/a/b", "x", 1));
	ck_assert_int_eq(errno, EACCES);
	errno = 0;
	ck_assert(!xs_write(d6, XBT_NULL, "/shared/new", "x", 1));
	ck_assert_int_eq(errno, EACCES);
	/* dom5 may write but not read a node made by dom0 with w5. */
	write_s(d5, "/shared/c", "by5");
	expect_read_err(d5, "/shared/c", EACCES);
	expect_read_err(d5, "/shared/x", EACCES);
	/* Missing below an unreadable node: EACCES, not ENOENT. */
	expect_read_err(d5, "/tool/nothere", EACCES);
	expect_read_err(d6, "/shared/nothere", ENOENT);

	/* Only the owner sets perms; only dom0 gives a node away. */
	errno = 0;
	struct xs_permissions p1 = {6, XS_PERM_NONE};
	ck_assert(!xs_set_permissions(d6, XBT_NULL, "/shared/a", &p1, 1));
	ck_assert_int_eq(errno, EACCES);
	errno = 0;
	ck_assert(!xs_set_permissions(d5, XBT_NULL, "/shared/a", &p1, 1));
	ck_assert_int_eq(errno, EPERM);
	set_perms(d5, "/shared/a", "n5,b6");
	write_s(d6, "/shared/a/by6", "x");
	expect_perms("/shared/a/by6", "n6,b6");
	errno = 0;
	ck_assert(!xs_rm(d6, XBT_NULL, "/shared/a/b"));
	ck_assert_int_eq(errno, EACCES);
	ck_assert(xs_rm(d5, XBT_NULL, "/shared/a"));

	/* Target: dom9 (a device model) acts for dom5. */
	ck_assert(xs_mkdir(xs0, XBT_NULL, "/local/domain/5/device-model"));
	set_perms(xs0, "/local/domain/5", "n5");
	set_perms(xs0, "/local/domain/5/device-model", "n0,r5");
	write_s(xs0, "/local/domain/5/device-model/state", "s");
	write_s(d5, "/local/domain/5/own", "o");
	struct xs_handle *d9 = mockxs_open_as(&mx, 9);
	expect_read_err(d9, "/local/domain/5/own", EACCES);
	expect_read_err(d9, "/local/domain/5/device-model/state", EACCES);
	errno = 0;
	ck_assert(!xs_set_target(d5, 9, 5));
	ck_assert_int_eq(errno, EACCES);
	ck_assert(xs_set_target(xs0, 9, 5));
	expect_read(d9, "/local/domain/5/own", "o");
	expect_read(d9, "/local/domain/5/device-model/state", "s");
	write_s(d9, "/local/domain/5/own", "o9");
	errno = 0;
	ck_assert(!xs_write(d9, XBT_NULL, "/local/domain/5/device-model/state",
			    "x", 1));
	ck_assert_int_eq(errno, EACCES);
	set_perms(d9, "/local/domain/5/own", "n5,r6");
	expect_read(d6, "/local/domain/5/own", "o9");

	xs_close(d9);
	xs_close(d5);
	xs_close(d6);
	stop();
}
END_TEST

START_TEST(test_quotas)
{
	static const unsigned d[] = {5};
	struct mockxs_opts o = {.domids = d,
				.n_domids = 1,
				.quota_nodes = 4,
				.quota_watches = 2,
				.quota_transactions = 2};
	start(&o);
	static char big[4001];
	memset(big, 'v', 4000);
	errno = 0;
	ck_assert(!xs_write(xs0, XBT_NULL, "/q", big, 4000));
	ck_assert_int_eq(errno, E2BIG);
	ck_assert(!xs_write(xs0, XBT_NULL, "/q", big, 2049));
	ck_assert(xs_write(xs0, XBT_NULL, "/q", big, 2048));

	struct xs_handle *d5 = mockxs_open_as(&mx, 5);
	write_s(xs0, "/local/domain/5", "");
	set_perms(xs0, "/local/domain/5", "n5");
	/* dom5 owns 1 node now; 3 more fit. */
	write_s(d5, "a", "1");
	write_s(d5, "b/c", "1");
	write_s(d5, "b/c", "2"); /* rewriting needs no new node */
	errno = 0;
	ck_assert(!xs_write(d5, XBT_NULL, "d", "1", 1));
	ck_assert_int_eq(errno, EINVAL); /* EQUOTA, unknown to libxenstore */
	ck_assert(xs_rm(d5, XBT_NULL, "b"));
	write_s(d5, "d", "1");

	ck_assert(xs_watch(d5, "a", "1"));
	ck_assert(xs_watch(d5, "a", "2"));
	errno = 0;
	ck_assert(!xs_watch(d5, "a", "3"));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert(xs_watch(xs0, "/a", "3")); /* dom0 is exempt */
	ck_assert(xs_watch(xs0, "/a", "4"));
	ck_assert(xs_watch(xs0, "/a", "5"));

	xs_transaction_t t1 = xs_transaction_start(d5);
	xs_transaction_t t2 = xs_transaction_start(d5);
	ck_assert_uint_ne(t1, XBT_NULL);
	ck_assert_uint_ne(t2, XBT_NULL);
	ck_assert_uint_eq(xs_transaction_start(d5), XBT_NULL);
	ck_assert(xs_transaction_end(d5, t1, true));
	ck_assert(xs_transaction_end(d5, t2, true));

	/* The raw error string is oxenstored's. */
	write_s(d5, "e", "1"); /* the 4th node */
	int fd = mockxs_connect_raw(&mx, 5);
	char buf[64];
	uint32_t rt;
	ck_assert_int_eq(raw_req(fd, XS_WRITE, 0, "f\0x", 3, &rt, buf,
				 sizeof(buf)),
			 7);
	ck_assert_uint_eq(rt, XS_ERROR);
	ck_assert_str_eq(buf, "EQUOTA");
	close(fd);
	xs_close(d5);
	stop();
}
END_TEST

START_TEST(test_wire_robustness)
{
	start(NULL);
	char buf[128];
	uint32_t rt;

	/* Unknown type: EINVAL; reply echoes req_id and tx_id. */
	int fd = mockxs_connect_raw(&mx, 0);
	struct xsd_sockmsg h = {999, 77, 0, 0};
	ck_assert_int_eq(send(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	struct xsd_sockmsg r;
	ck_assert_int_eq(recv(fd, &r, sizeof(r), MSG_WAITALL),
			 (ssize_t)sizeof(r));
	ck_assert_uint_eq(r.type, XS_ERROR);
	ck_assert_uint_eq(r.req_id, 77);
	ck_assert_uint_eq(r.len, 7);
	ck_assert_int_eq(recv(fd, buf, 7, MSG_WAITALL), 7);
	ck_assert_str_eq(buf, "EINVAL");
	/* Transaction start replies with the id as a string. */
	ck_assert_int_gt(raw_req(fd, XS_TRANSACTION_START, 0, "", 1, &rt, buf,
				 sizeof(buf)),
			 1);
	ck_assert_uint_eq(rt, XS_TRANSACTION_START);
	uint32_t tid = (uint32_t)strtoul(buf, NULL, 10);
	ck_assert_uint_ne(tid, 0);
	ck_assert_int_eq(raw_req(fd, XS_TRANSACTION_END, tid, "X", 2, &rt, buf,
				 sizeof(buf)),
			 7);
	ck_assert_str_eq(buf, "EINVAL");
	ck_assert_int_eq(raw_req(fd, XS_TRANSACTION_END, tid, "F", 2, &rt, buf,
				 sizeof(buf)),
			 3);
	ck_assert_str_eq(buf, "OK");

	/* Payload > 4096 closes the connection, no reply. */
	h = (struct xsd_sockmsg){XS_WRITE, 1, 0, 5000};
	ck_assert_int_eq(send(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(recv(fd, &r, sizeof(r), MSG_WAITALL), 0);
	close(fd);

	/* The daemon lives on. */
	write_s(xs0, "/alive", "yes");
	expect_read(xs0, "/alive", "yes");
	stop();
}
END_TEST

static long daemon_rss_kb(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmRSS:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

START_TEST(test_slow_reader_dropped)
{
	struct mockxs_opts o = {.max_output = 256 * 1024};
	start(&o);
	int fd = mockxs_connect_raw(&mx, 0);
	int sz = 4096;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	static char payload[3000];
	int pl = snprintf(payload, sizeof(payload), "/flood");
	memset(payload + pl + 1, 't', 2000);
	payload[pl + 1 + 2000] = '\0';
	struct xsd_sockmsg h = {XS_WATCH, 1, 0, (uint32_t)(pl + 2002)};
	ck_assert_int_eq(send(fd, &h, sizeof(h), 0), (ssize_t)sizeof(h));
	ck_assert_int_eq(send(fd, payload, h.len, 0), (ssize_t)h.len);
	usleep(100000);
	long before = daemon_rss_kb(mx.pid);

	/* ~2 KiB per event, never read: 8 MiB worth of events. */
	for (int i = 0; i < 4000; i++)
		ck_assert(xs_write(xs0, XBT_NULL, "/flood", "x", 1));
	long after = daemon_rss_kb(mx.pid);
	ck_assert_int_gt(before, 0);
	/* Unbounded, the queue would hold 8 MiB.  Under a MOCKXS_BINARY
	 * wrapper (valgrind keeps freed blocks around) RSS says nothing. */
	if (!getenv("MOCKXS_BINARY"))
		ck_assert_msg(after - before < 4 * 1024,
			      "rss grew from %ld to %ld kB", before, after);

	/* The reader was dropped: draining its socket ends in EOF. */
	char buf[65536];
	ssize_t n;
	size_t total = 0;
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		total += (size_t)n;
	ck_assert_int_eq(n, 0);
	ck_assert_uint_lt(total, 2 * 1024 * 1024);
	close(fd);
	expect_read(xs0, "/flood", "x");
	stop();
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("mock-xenstored");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_initial_tree_and_binary_values);
	tcase_add_test(tc, test_transactions);
	tcase_add_test(tc, test_watches);
	tcase_add_test(tc, test_directory_part);
	tcase_add_test(tc, test_introduce_release);
	tcase_add_test(tc, test_permissions);
	tcase_add_test(tc, test_quotas);
	tcase_add_test(tc, test_wire_robustness);
	tcase_add_test(tc, test_slow_reader_dropped);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
