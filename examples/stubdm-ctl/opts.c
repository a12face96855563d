/*
 * The option parser every subcommand shares (curl's tool_getparam.c is the
 * model): a subcommand's table says which options exist, what kind of
 * argument each takes and where its value goes; this file is the only code
 * that reads an option's argument.
 */
#include "ctl.h"

#include <stdlib.h>
#include <string.h>

#define SECONDS_MAX (86400u * 24u)

int ctl_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;

    if (!s || !*s)
        return CTL_NUM_SYNTAX;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return CTL_NUM_SYNTAX;
    for (const char *p = s; *p; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (d > max || v > (max - d) / 10)
            return CTL_NUM_RANGE; /* past max, before it could overflow */
        v = v * 10 + d;
    }
    if (v < min)
        return CTL_NUM_RANGE;
    *out = v;
    return 0;
}

bool ctl_parse_domid(const char *s, uint32_t *out)
{
    uint64_t v;

    if (ctl_parse_uint(s, 0, CTL_DOMID_MAX, &v))
        return false;
    *out = (uint32_t)v;
    return true;
}

int ctl_parse_seconds(const char *s, int *ms_out)
{
    size_t whole_len = s ? strspn(s, "0123456789") : 0, frac_len;
    const char *frac = s ? s + whole_len : "";
    uint64_t ms = 0, scale = 100;

    if (*frac == '.')
        frac++;
    frac_len = strspn(frac, "0123456789");
    if (!s || frac[frac_len] || whole_len + frac_len == 0)
        return CTL_NUM_SYNTAX;
    for (size_t i = 0; i < whole_len; i++) {
        ms = ms * 10 + (uint64_t)(s[i] - '0');
        if (ms > SECONDS_MAX)
            return CTL_NUM_RANGE;
    }
    ms *= 1000;
    /* Three decimals, rounded half up on the fourth. */
    for (size_t i = 0; i < frac_len && i < 4; i++, scale /= 10)
        ms += i < 3 ? (uint64_t)(frac[i] - '0') * scale : frac[i] >= '5';
    if (ms == 0 || ms > (uint64_t)SECONDS_MAX * 1000)
        return CTL_NUM_RANGE;
    *ms_out = (int)ms;
    return 0;
}

/* ---- the parser --------------------------------------------------------- */

static const struct ctl_option *find_long(const struct ctl_option *t,
                                          const char *name)
{
    for (; t; t = t->more) {
        for (; t->name; t++)
            if (!strcmp(t->name, name))
                return t;
    }
    return NULL;
}

static const struct ctl_option *find_short(const struct ctl_option *t, char c)
{
    for (; t; t = t->more) {
        for (; t->name; t++)
            if (t->letter && t->letter == c)
                return t;
    }
    return NULL;
}

static int bad_number(const struct ctl_command *cmd,
                      const struct ctl_option *o, const char *v, int why,
                      const char *range)
{
    if (!*v)
        return ctl_usage_error(cmd, "--%s: empty %s", o->name, o->arg);
    if (why == CTL_NUM_RANGE)
        return ctl_usage_error(cmd, "--%s: '%s' is out of range (%s)", o->name,
                               v, range);
    return ctl_usage_error(cmd, "--%s: '%s' is not %s (%s)", o->name, v,
                           o->kind == CTL_ARG_SECONDS
                               ? "a number of seconds"
                               : "an unsigned decimal number",
                           range);
}

static int store_strv(struct ctl_strv *l, const char *v)
{
    const char **n = realloc(l->v, (l->n + 1) * sizeof(*n));

    if (!n)
        return -1;
    l->v = n;
    l->v[l->n++] = v;
    return 0;
}

static int store_choice(const struct ctl_command *cmd,
                        const struct ctl_option *o, const char *v, int *out)
{
    char names[128] = "";

    for (const struct ctl_choice *c = o->choices; c->name; c++)
        if (!strcmp(c->name, v)) {
            *out = c->value;
            return 0;
        }
    for (const struct ctl_choice *c = o->choices; c->name; c++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s",
                 c == o->choices ? "" : ", ", c->name);
    return ctl_usage_error(cmd, "--%s: unknown %s '%s' (one of: %s)", o->name,
                           o->arg, v, names);
}

/* Store option o's argument v (NULL for a flag) into opts. */
static int store(const struct ctl_command *cmd, const struct ctl_option *o,
                 const char *v, void *opts)
{
    char *at = (char *)opts + o->offset;
    char range[64];
    uint64_t n;
    int rc;

    switch (o->kind) {
    case CTL_ARG_FLAG:
        *(bool *)at = true;
        return 0;
    case CTL_ARG_STRING:
        *(const char **)at = v;
        return 0;
    case CTL_ARG_STRINGS:
        if (store_strv((struct ctl_strv *)at, v))
            return ctl_usage_error(cmd, "--%s: out of memory", o->name);
        return 0;
    case CTL_ARG_UINT:
        snprintf(range, sizeof(range), "%llu to %llu",
                 (unsigned long long)o->min, (unsigned long long)o->max);
        if ((rc = ctl_parse_uint(v, o->min, o->max, &n)))
            return bad_number(cmd, o, v, rc, range);
        *(uint64_t *)at = n;
        return 0;
    case CTL_ARG_DOMID:
        snprintf(range, sizeof(range), "0 to %u", CTL_DOMID_MAX);
        if ((rc = ctl_parse_uint(v, 0, CTL_DOMID_MAX, &n)))
            return bad_number(cmd, o, v, rc, range);
        *(uint32_t *)at = (uint32_t)n;
        return 0;
    case CTL_ARG_SECONDS:
        snprintf(range, sizeof(range), "0.001 to %u seconds", SECONDS_MAX);
        if ((rc = ctl_parse_seconds(v, (int *)at)))
            return bad_number(cmd, o, v, rc, range);
        return 0;
    case CTL_ARG_CHOICE:
        return store_choice(cmd, o, v, (int *)at);
    }
    return ctl_usage_error(cmd, "--%s: bad option table", o->name);
}

/* One option at argv[*i] ("--name", "--name=value", "-x", "-x value"). */
static int parse_option(const struct ctl_command *cmd,
                        const struct ctl_option *table, int argc, char **argv,
                        int *i, void *opts)
{
    const char *a = argv[*i], *v = NULL;
    const struct ctl_option *o;
    char name[64];

    if (a[1] == '-') {
        const char *eq = strchr(a + 2, '=');
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (len >= sizeof(name))
            return ctl_usage_error(cmd, "unknown option '%s'", a);
        memcpy(name, a + 2, len);
        name[len] = '\0';
        o = find_long(table, name);
        v = eq ? eq + 1 : NULL;
    } else {
        o = a[2] ? NULL : find_short(table, a[1]);
    }
    if (!o)
        return ctl_usage_error(cmd, "unknown option '%s'", a);
    if (o->kind == CTL_ARG_FLAG) {
        if (v)
            return ctl_usage_error(cmd, "--%s takes no value", o->name);
        return store(cmd, o, NULL, opts);
    }
    if (!v) {
        if (*i + 1 >= argc)
            return ctl_usage_error(cmd, "--%s needs %s", o->name, o->arg);
        v = argv[++*i];
    }
    return store(cmd, o, v, opts);
}

int ctl_parse(const struct ctl_command *cmd, const struct ctl_option *table,
              int argc, char **argv, bool stop_at_pos, void *opts,
              struct ctl_args *args)
{
    int i, rc;

    memset(args, 0, sizeof(*args));
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            args->dashdash = true;
            i++;
            break;
        }
        if (a[0] == '-' && a[1]) {
            if ((rc = parse_option(cmd, table, argc, argv, &i, opts)))
                return rc;
            continue;
        }
        if (args->npos >= CTL_MAX_POS)
            return ctl_usage_error(cmd, "unexpected argument '%s'", a);
        args->pos[args->npos++] = a;
        if (stop_at_pos) {
            i++;
            break;
        }
    }
    args->rest = (const char *const *)argv + i;
    args->nrest = (size_t)(argc - i);
    return 0;
}

void ctl_opts_free(const struct ctl_option *t, void *opts)
{
    for (; t; t = t->more) {
        for (; t->name; t++)
            if (t->kind == CTL_ARG_STRINGS) {
                struct ctl_strv *l = (struct ctl_strv *)((char *)opts +
                                                         t->offset);
                free(l->v);
                l->v = NULL;
                l->n = 0;
            }
    }
}
