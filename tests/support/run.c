/* See run.h. */
#include "run.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The loop's wait per turn: short, so a condition set outside the loop
 * (another process, a file) is seen within 10 ms. */
#define TICK_MS 10

void ts_record(struct ts_result *r, stubdm_op *op, int rc)
{
    r->calls++;
    r->done = true;
    r->rc = rc;
    r->at_ms = stubdm_now_ms();
    snprintf(r->msg, sizeof(r->msg), "%s", op ? stubdm_op_errmsg(op) : "");
}

void ts_on_done(stubdm_op *op, int rc, void *user)
{
    ts_record(user, op, rc);
}

static void turn(stubdm_ctx *ctx)
{
    int rc = stubdm_ctx_run_once(ctx, TICK_MS);
    if (rc != 0)
        ck_abort_msg("stubdm_ctx_run_once: %d", rc);
}

bool ts_run_until(stubdm_ctx *ctx, bool (*pred)(void *), void *arg, int ms)
{
    int64_t end = stubdm_now_ms() + ms;

    while (!pred(arg) && stubdm_now_ms() < end)
        turn(ctx);
    return pred(arg);
}

static bool flag_set(void *arg)
{
    return *(const bool *)arg;
}

bool ts_run_until_flag(stubdm_ctx *ctx, const bool *flag, int ms)
{
    return ts_run_until(ctx, flag_set, (void *)flag, ms);
}

struct count_arg {
    const int *count;
    int want;
};

static bool count_reached(void *arg)
{
    const struct count_arg *c = arg;
    return *c->count >= c->want;
}

bool ts_run_until_count(stubdm_ctx *ctx, const int *count, int want, int ms)
{
    struct count_arg c = {count, want};
    return ts_run_until(ctx, count_reached, &c, ms);
}

void ts_run_until_done(stubdm_ctx *ctx, struct ts_result *r, int ms)
{
    ts_run_until_count(ctx, &r->calls, 1, ms);
    ck_assert_int_eq(r->calls, 1);
}

void ts_spin(stubdm_ctx *ctx, int ms)
{
    int64_t end = stubdm_now_ms() + ms;
    while (stubdm_now_ms() < end)
        turn(ctx);
}

int ts_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

int ts_time_scale(void)
{
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload") ? 10 : 1;
}

char *ts_slurp(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf;
    long n;

    if (!fp)
        return NULL;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, fp), n);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

int ts_exe_relative(char *out, size_t len, const char *rel)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    char *slash;
    int r;

    if (n <= 0)
        return -1;
    self[n] = '\0';
    slash = strrchr(self, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    r = snprintf(out, len, "%s/%s", self, rel);
    return r < 0 || (size_t)r >= len ? -1 : 0;
}

stubdm_qmp_stats ts_qmp_stats(const stubdm_qmp *q)
{
    stubdm_qmp_stats st;

    ck_assert_int_eq(stubdm_qmp_get_stats(q, &st, sizeof(st)), 0);
    return st;
}

stubdm_qmp_proxy_stats ts_proxy_stats(const stubdm_qmp_proxy *p)
{
    stubdm_qmp_proxy_stats st;

    ck_assert_int_eq(stubdm_qmp_proxy_get_stats(p, &st, sizeof(st)), 0);
    return st;
}

stubdm_console_stats ts_console_stats(const stubdm_console *c)
{
    stubdm_console_stats st;

    ck_assert_int_eq(stubdm_console_get_stats(c, &st, sizeof(st)), 0);
    return st;
}
