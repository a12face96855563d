/*
 * stubdm-ctl internals: subcommand registration, shared option parsing,
 * exit codes and output helpers.  Subcommands live in cmd_*.c and register
 * themselves with CTL_COMMAND, so adding one touches no shared table.
 */
#ifndef STUBDM_CTL_H
#define STUBDM_CTL_H

#include <libstubdm.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, one per cause, documented in stubdm-ctl(1). */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAIL = 1,        /* any other failure */
    CTL_EXIT_USAGE = 2,       /* bad command line */
    CTL_EXIT_TIMEOUT = 3,     /* STUBDM_ETIMEDOUT */
    CTL_EXIT_DOMAIN_GONE = 4, /* STUBDM_EDOMAIN_GONE */
    CTL_EXIT_XENSTORE = 5,    /* STUBDM_EXENSTORE, STUBDM_EPERM, ENOENT */
    CTL_EXIT_INTERRUPTED = 6, /* SIGINT / SIGTERM, STUBDM_ECANCELED */
    CTL_EXIT_QMP_ERROR = 7,   /* QEMU answered with an error */
    CTL_EXIT_PROTOCOL = 8,    /* STUBDM_EPROTO, STUBDM_EVCHAN */
    CTL_EXIT_INVALID = 9,     /* input refused: EINVAL, ELIMIT, ENOTSTUBDOM */
    CTL_EXIT_BUSY = 10,       /* STUBDM_EBUSY */
    CTL_EXIT_NOTSUP = 11,     /* STUBDM_ENOTSUP, STUBDM_EXEN */
};

struct ctl_global {
    bool json;     /* --json: machine-readable output on stdout */
    bool verbose;  /* -v: library debug log on stderr */
    bool tty;      /* stderr is a terminal: show progress */
    const char *crash_at; /* test hook: see ctl_crash_point */
};

struct ctl_command {
    const char *name;
    const char *usage;   /* arguments, after the name */
    const char *summary; /* one line */
    const char *help;    /* details for `stubdm-ctl NAME --help` */
    int (*run)(stubdm_ctx *ctx, const struct ctl_global *g, int argc,
               char **argv); /* argv[0] is the command name */
    struct ctl_command *next;
};

void ctl_register(struct ctl_command *cmd);

/*
 * Define and register a subcommand:
 *     CTL_COMMAND(cmd_x) = { .name = "x", ... };
 * Use it once per command; a forward reference (for usage errors inside
 * the run function) is a plain `static struct ctl_command cmd_x;`.
 */
#define CTL_COMMAND(var)                                                      \
    static struct ctl_command var;                                            \
    static void __attribute__((constructor)) var##_register(void)             \
    {                                                                         \
        ctl_register(&var);                                                   \
    }                                                                         \
    static struct ctl_command var

/*
 * Test hook, not an interface: with STUBDM_CTL_CRASH_AT=TEXT in the
 * environment, the process kills itself with SIGKILL right after printing
 * a stderr line (a -v log line or a spawn step) that contains TEXT.  That
 * crashes a spawn at an exact point between two of its actions, which a
 * signal sent from outside cannot hit: the steps between two waits run
 * back to back within a millisecond (tests/spawn-crash.sh).
 */
void ctl_crash_point(const struct ctl_global *g, const char *line);

/* The exit code for a library return code. */
int ctl_exit_code(int rc);

/* Report a library failure: text on stderr, or a JSON object on stdout.
 * Returns the exit code. */
int ctl_report_error(stubdm_ctx *ctx, const struct ctl_global *g,
                     const char *what, int rc, const char *detail);

/* Print a usage error for cmd and return CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Parse a domid argument ("5"); false on anything else. */
bool ctl_parse_domid(const char *s, uint32_t *out);
/* Parse a duration in seconds ("30", "2.5") into milliseconds. */
bool ctl_parse_seconds(const char *s, int *ms_out);

/* Write s as a JSON string literal (with quotes). */
void ctl_json_string(FILE *f, const char *s);
void ctl_json_string_n(FILE *f, const char *s, size_t n);

/* Print a node list (layout, dm-argv encode): text or JSON. */
void ctl_print_nodes(const struct ctl_global *g, const char *command,
                     const stubdm_nodes *nodes);
/* "directory" | "minios" | "esc" */
bool ctl_parse_encoding(const char *s, stubdm_argv_encoding *out);

/* SIGINT/SIGTERM seen since ctl_signals_install(). */
void ctl_signals_install(void);
bool ctl_interrupted(void);

#endif
