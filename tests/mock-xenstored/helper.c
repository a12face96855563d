/* stubdm-mockxs-helper: the few xenstore requests the xenstore-* tools
 * cannot send, through the real libxenstore so it works against any
 * xenstored named by XENSTORED_PATH.
 *   set-target DOMID TARGET | introduce DOMID MFN PORT | release DOMID
 *   is-introduced DOMID | domain-path DOMID
 *   read PATH | write PATH VALUE  (print strerror(errno) on failure, which
 *   the xenstore-* tools do not)
 *   control CMD [ARG...]  an XS_CONTROL command, its reply on stdout
 *   (the simulated host's sim-list, say: xenstore-control needs Xen) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xenstore.h>

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s set-target|introduce|release|is-introduced|domain-path|read|write|control ARGS\n",
			argv[0]);
		return 2;
	}
	struct xs_handle *xs = xs_open(0);
	if (!xs) {
		perror("xs_open");
		return 1;
	}
	const char *cmd = argv[1];
	unsigned a = (unsigned)strtoul(argv[2], NULL, 10);
	bool ok = false;
	if (!strcmp(cmd, "set-target") && argc == 4) {
		ok = xs_set_target(xs, a, (unsigned)strtoul(argv[3], NULL, 10));
	} else if (!strcmp(cmd, "introduce") && argc == 5) {
		ok = xs_introduce_domain(xs, a, strtoul(argv[3], NULL, 10),
					 (unsigned)strtoul(argv[4], NULL, 10));
	} else if (!strcmp(cmd, "release") && argc == 3) {
		ok = xs_release_domain(xs, a);
	} else if (!strcmp(cmd, "is-introduced") && argc == 3) {
		errno = 0;
		bool r = xs_is_domain_introduced(xs, a);
		ok = r || errno == 0;
		if (ok)
			puts(r ? "T" : "F");
	} else if (!strcmp(cmd, "read") && argc == 3) {
		unsigned len;
		char *v = xs_read(xs, XBT_NULL, argv[2], &len);
		ok = v != NULL;
		if (v)
			printf("%.*s\n", (int)len, v);
		free(v);
	} else if (!strcmp(cmd, "write") && argc == 4) {
		ok = xs_write(xs, XBT_NULL, argv[2], argv[3],
			      (unsigned)strlen(argv[3]));
	} else if (!strcmp(cmd, "control")) {
		char buf[4000];
		size_t n = 0;
		for (int i = 3; i < argc; i++) {
			size_t l = strlen(argv[i]) + 1;
			if (n + l > sizeof(buf)) {
				fprintf(stderr, "control: too long\n");
				xs_close(xs);
				return 2;
			}
			memcpy(buf + n, argv[i], l);
			n += l;
		}
		char *r = xs_control_command(xs, argv[2], buf, (unsigned)n);
		ok = r != NULL;
		if (r)
			fputs(r, stdout);
		free(r);
	} else if (!strcmp(cmd, "domain-path") && argc == 3) {
		char *p = xs_get_domain_path(xs, a);
		ok = p != NULL;
		if (p)
			puts(p);
		free(p);
	} else {
		fprintf(stderr, "bad command\n");
		xs_close(xs);
		return 2;
	}
	if (!ok)
		printf("error: %s\n", strerror(errno));
	xs_close(xs);
	return ok ? 0 : 1;
}
