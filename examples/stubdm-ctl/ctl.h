/*
 * stubdm-ctl internals: the command table's row, the table-driven option
 * parser every subcommand shares, exit codes and output helpers.
 *
 * The commands are listed in main.c's table; each cmd_*.c defines one
 * subcommand's handler, its option table and its help text.
 */
#ifndef STUBDM_CTL_H
#define STUBDM_CTL_H

#include <libstubdm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, one per cause, documented in stubdm-ctl(1) and the usage
 * text; ctl_exit_code() maps every library code to one of them. */
enum ctl_exit {
    CTL_EXIT_OK = 0,
    CTL_EXIT_FAIL = 1,        /* EFAIL, ENOMEM, ESTATE, EBUFFERFULL,
                                 ERECURSIVE; a file or process of ours */
    CTL_EXIT_USAGE = 2,       /* bad command line */
    CTL_EXIT_TIMEOUT = 3,     /* STUBDM_ETIMEDOUT */
    CTL_EXIT_DOMAIN_GONE = 4, /* STUBDM_EDOMAIN_GONE */
    CTL_EXIT_XENSTORE = 5,    /* STUBDM_EXENSTORE, STUBDM_EPERM, ENOENT */
    CTL_EXIT_INTERRUPTED = 6, /* SIGINT / SIGTERM, STUBDM_ECANCELED */
    CTL_EXIT_QMP_ERROR = 7,   /* QEMU answered with an error */
    CTL_EXIT_PROTOCOL = 8,    /* STUBDM_EPROTO, STUBDM_EVCHAN, QMP lost */
    CTL_EXIT_INVALID = 9,     /* input refused: EINVAL, ELIMIT, ENOTSTUBDOM */
    CTL_EXIT_BUSY = 10,       /* STUBDM_EBUSY */
    CTL_EXIT_NOTSUP = 11,     /* STUBDM_ENOTSUP, STUBDM_EXEN */
};

/* The options before COMMAND (main.c's global table). */
struct ctl_global {
    bool json;            /* --json: machine-readable output on stdout */
    bool verbose;         /* -v: library debug log on stderr */
    bool sim;             /* --sim: the simulated host */
    bool no_hotplug;      /* --no-hotplug: run no hotplug scripts */
    bool version;         /* --version */
    bool help;            /* -h, --help */
    bool tty;             /* stderr is a terminal: show progress */
    const char *crash_at; /* test hook: see ctl_crash_point */
    const char *control;  /* --control: stubdmd's control socket */
};

/* ---- options --------------------------------------------------------------
 * A subcommand describes its options in a table: each row names the option,
 * the kind of its argument and where the parser stores the value (an
 * offset into the subcommand's own options struct).  The parser is the
 * only code that reads argv: numbers are checked once, here, and every
 * refusal is a usage error naming the option (exit 2). */

enum ctl_arg_kind {
    CTL_ARG_FLAG,    /* no argument; bool = true */
    CTL_ARG_STRING,  /* const char * (the last one given) */
    CTL_ARG_STRINGS, /* repeatable; appended to a struct ctl_strv */
    CTL_ARG_UINT,    /* uint64_t, decimal, in [min, max] */
    CTL_ARG_DOMID,   /* uint32_t, decimal, 0 .. CTL_DOMID_MAX */
    CTL_ARG_SECONDS, /* "30", "2.5": int milliseconds, > 0 */
    CTL_ARG_CHOICE,  /* one name of .choices: int */
};

struct ctl_choice {
    const char *name;
    int value;
};

struct ctl_option {
    const char *name; /* long name without "--"; NULL ends a table */
    char letter;      /* short form ("-v"), or 0 */
    enum ctl_arg_kind kind;
    size_t offset;     /* where the value goes in the options struct */
    const char *arg;   /* the argument in messages ("DOMID") */
    uint64_t min, max; /* CTL_ARG_UINT bounds */
    const struct ctl_choice *choices; /* CTL_ARG_CHOICE; ends with NULL */
    const struct ctl_option *more;    /* in the end row: a table shared
                                         with other commands, searched next */
};

/* Value of a CTL_ARG_STRINGS option; free with ctl_opts_free. */
struct ctl_strv {
    const char **v;
    size_t n;
};

/* Unset markers: options whose absence leaves the library's default. */
#define CTL_DOMID_MAX 0x7FEFu /* the last domid below DOMID_FIRST_RESERVED */
#define CTL_UNSET_DOMID UINT32_MAX
#define CTL_UNSET_UINT UINT64_MAX
#define CTL_UNSET_CHOICE (-1)

/* What is left once options are parsed.  At most CTL_MAX_POS positional
 * arguments; what follows "--" is rest (for commands taking a QEMU argv). */
#define CTL_MAX_POS 4
struct ctl_args {
    const char *pos[CTL_MAX_POS];
    int npos;
    const char *const *rest;
    size_t nrest;
    bool dashdash; /* "--" was given */
};

struct ctl_command;

/*
 * Parse argv[1..argc) against cmd's option table into opts (a struct the
 * table's offsets point into, with the command's defaults already set).
 * With stop_at_pos, parsing ends at the first positional argument (the
 * global options before COMMAND); args->npos is then 1 and args->rest the
 * remaining argv.  Returns 0 or CTL_EXIT_USAGE (message printed).
 */
int ctl_parse(const struct ctl_command *cmd, const struct ctl_option *table,
              int argc, char **argv, bool stop_at_pos, void *opts,
              struct ctl_args *args);
/* Free what ctl_parse allocated in opts (the CTL_ARG_STRINGS lists). */
void ctl_opts_free(const struct ctl_option *table, void *opts);

/*
 * The CLI's number parsers, strict: decimal digits only (no sign, space,
 * base prefix, exponent or trailing text), range-checked before any
 * overflow.  Return 0, or CTL_NUM_SYNTAX / CTL_NUM_RANGE.
 */
enum { CTL_NUM_SYNTAX = 1, CTL_NUM_RANGE = 2 };
int ctl_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Seconds with an optional fraction ("30", "2.5"), > 0 and at most 24
 * days, rounded to milliseconds. */
int ctl_parse_seconds(const char *s, int *ms_out);
bool ctl_parse_domid(const char *s, uint32_t *out);

/* ---- commands ----------------------------------------------------------- */

typedef int ctl_run_fn(stubdm_ctx *ctx, const struct ctl_global *g,
                       const struct ctl_command *cmd, int argc, char **argv);

/* A row of main.c's command table. */
struct ctl_command {
    const char *name;
    ctl_run_fn *run;                  /* argv[0] is the command name */
    const char *summary;              /* one line, for `stubdm-ctl --help` */
    const struct ctl_option *options; /* for ctl_parse */
    const char *usage;                /* the arguments, after the name */
    const char *help;                 /* `stubdm-ctl NAME --help` */
};

/* The subcommands (cmd_*.c): handler, option table, help text. */
#define CTL_DECLARE_COMMAND(id)                                               \
    ctl_run_fn ctl_##id##_run;                                                \
    extern const struct ctl_option ctl_##id##_options[];                      \
    extern const char ctl_##id##_help[]
CTL_DECLARE_COMMAND(spawn);
CTL_DECLARE_COMMAND(destroy);
CTL_DECLARE_COMMAND(list);
CTL_DECLARE_COMMAND(wait);
CTL_DECLARE_COMMAND(qmp);
CTL_DECLARE_COMMAND(qmp_proxy);
CTL_DECLARE_COMMAND(save);
CTL_DECLARE_COMMAND(dmargv);
CTL_DECLARE_COMMAND(layout);
CTL_DECLARE_COMMAND(sim);
CTL_DECLARE_COMMAND(console);
CTL_DECLARE_COMMAND(restore);
CTL_DECLARE_COMMAND(pci_attach);
CTL_DECLARE_COMMAND(pci_detach);
CTL_DECLARE_COMMAND(pci_list);

/* cmd_sim.c: point the library at a running simulated host when it will
 * use one and XENSTORED_PATH is unset. */
void ctl_sim_prepare(stubdm_ctx *ctx);

/* ---- output and exit ---------------------------------------------------- */

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

/* A QMP handle that is no longer ready (the connection was lost): the
 * same report, and exit code, as a failed channel. */
int ctl_report_qmp_lost(stubdm_ctx *ctx, const struct ctl_global *g,
                        const char *what);

/* Print a usage error for cmd (NULL: the global options) and return
 * CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl_command *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Drive the ctx until *done: cancel op on SIGINT/SIGTERM, call tick (may
 * be NULL) every 100 ms while not done.  Returns 0, or the loop's failure
 * (reported as what).
 */
int ctl_run_until(stubdm_ctx *ctx, const struct ctl_global *g,
                  const char *what, stubdm_op *op, const bool *done,
                  void (*tick)(void *), void *user);

/* Write s as a JSON string literal (with quotes). */
void ctl_json_string(FILE *f, const char *s);
void ctl_json_string_n(FILE *f, const char *s, size_t n);

/* Print a node list (layout, dm-argv encode): text or JSON. */
void ctl_print_nodes(const struct ctl_global *g, const char *command,
                     const stubdm_nodes *nodes);
/* The --encoding names (dm-argv, layout). */
extern const struct ctl_choice ctl_encodings[];
/* The --console-backend names (spawn, layout). */
extern const struct ctl_choice ctl_console_backends[];

/* ---- stubdmd's control socket (stubdmd_client.c) -------------------------
 * Commands ask stubdmd when it runs (list: who serves what; save of a
 * stubdomain it serves; console; restore) and behave as without it when
 * nothing answers on the socket. */
#define CTL_CONTROL_DEFAULT "/run/stubdmd/control"
const char *ctl_control_path(const struct ctl_global *g);
/* 0 and *fd_out, or -errno. */
int ctl_stubdmd_connect(const struct ctl_global *g, int *fd_out);
/* No stubdmd runs (connect's -ENOENT or -ECONNREFUSED). */
bool ctl_stubdmd_absent(int err);
struct ctl_stubdmd_reply {
    char *text; /* every line, the last cut to its text */
    size_t len;
    char *last; /* the last line after "ok " or "error NAME " */
    int rc;     /* 0 (ok) or the STUBDM_E* code NAME names */
    int fd;     /* an fd the reply carried, or -1 */
    bool reset; /* a read failed with ECONNRESET once */
};
/* Send req (with fd if >= 0) and read the whole reply within timeout_ms
 * (<= 0: no bound; SIGINT ends it).  0, or -errno (no reply).  Free r
 * with ctl_stubdmd_reply_free either way. */
int ctl_stubdmd_call(int sock, const char *req, int fd, int timeout_ms,
                     struct ctl_stubdmd_reply *r);
void ctl_stubdmd_reply_free(struct ctl_stubdmd_reply *r);
/* The VALUE of " KEY=VALUE" in line, into out. */
bool ctl_stubdmd_value(const char *line, const char *key, char *out,
                       size_t cap);
/* Report a connect failure other than ctl_stubdmd_absent (EACCES: the
 * socket is root's). */
int ctl_stubdmd_unreachable(stubdm_ctx *ctx, const struct ctl_global *g,
                            const char *what, int err);
/* Report an error reply as ctl_report_error does; returns the exit code. */
int ctl_stubdmd_report(const struct ctl_global *g, const char *what,
                       const struct ctl_stubdmd_reply *r);

/* SIGINT/SIGTERM seen since ctl_signals_install(). */
void ctl_signals_install(void);
bool ctl_interrupted(void);

#endif
