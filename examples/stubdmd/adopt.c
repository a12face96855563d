/*
 * Finding the stubdomains to serve, and serving them.
 *
 * A stubdomain is adopted when its guest G has the adoption node
 * /local/domain/G/image/device-model-service = "libstubdm" owned by dom0,
 * G's dom0-owned image/device-model-domid names it (S), and S's dom0-owned
 * target names G (docs/protocol.md section 2a): nothing a guest or a
 * stubdomain can write decides it.  At start every listed stubdomain is
 * considered; afterwards each domain's adoption node is watched (one
 * watch per domain, added on @introduceDomain, dropped on
 * @releaseDomain), so a contract written later adopts its stubdomain at
 * once, before it is unpaused: the proxy's socket exists before QEMU is.
 */
#include "stubdmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <xenstore.h>

#define SVC_FMT "/local/domain/%u/image/" STUBDM_SERVICE_KEY
#define DOMID_MAX 0x7fefu

/* ---- strict reads --------------------------------------------------------- */

/* A domid as the library writes it: digits, no leading zero, in range. */
static bool parse_domid(const char *s, uint32_t *out)
{
    uint32_t v = 0;

    if (!s || !*s || (s[0] == '0' && s[1]) || strlen(s) > 5)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (uint32_t)(*p - '0');
    }
    if (v > DOMID_MAX)
        return false;
    *out = v;
    return true;
}

/* The value of path if dom0 owns it (value and owner from one
 * transaction), at most max bytes, NUL-terminated; else false. */
static bool read_dom0_owned(struct xs_handle *xs, const char *path, char *buf,
                            size_t max)
{
    for (int tries = 0; tries < 8; tries++) {
        xs_transaction_t t = xs_transaction_start(xs);
        struct xs_permissions *perms;
        unsigned len = 0, nperms = 0;
        char *v;
        bool ok;

        if (t == XBT_NULL)
            return false;
        v = xs_read(xs, t, path, &len);
        perms = v ? xs_get_permissions(xs, t, path, &nperms) : NULL;
        ok = v && perms && nperms >= 1 && perms[0].id == 0 && len < max &&
             strlen(v) == len;
        if (ok)
            memcpy(buf, v, (size_t)len + 1);
        free(v);
        free(perms);
        if (xs_transaction_end(xs, t, false))
            return ok;
        if (errno != EAGAIN)
            return false;
    }
    return false;
}

/* The stubdomain's name for its log file: [A-Za-z0-9._-] only, else
 * "dom<S>" (a name is the toolstack's, but a file name must not climb). */
static void stub_name(struct xs_handle *xs, uint32_t S, char *out, size_t sz)
{
    char path[64];
    unsigned len = 0;
    char *v;
    bool ok;

    snprintf(path, sizeof(path), "/local/domain/%u/name", S);
    v = xs_read(xs, XBT_NULL, path, &len);
    ok = v && len > 0 && len < sz && strlen(v) == len && v[0] != '.';
    for (unsigned i = 0; ok && i < len; i++)
        ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
             (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == '_' ||
             v[i] == '-';
    if (ok)
        memcpy(out, v, (size_t)len + 1);
    else
        snprintf(out, sz, "dom%u", S);
    free(v);
}

/* G asks for the service and names S, and S's target is G: S is G's
 * stubdomain, by dom0's nodes only.  *serve_only: its builder tears it
 * down (STUBDM_SERVICE_SERVE_ONLY). */
static bool wants_service(struct xs_handle *xs, uint32_t G, uint32_t *S,
                          bool *serve_only)
{
    char path[96], v[32];
    uint32_t target;

    snprintf(path, sizeof(path), SVC_FMT, G);
    if (!read_dom0_owned(xs, path, v, sizeof(v)))
        return false;
    if (!strcmp(v, STUBDM_SERVICE_VALUE))
        *serve_only = false;
    else if (!strcmp(v, STUBDM_SERVICE_VALUE_SERVE_ONLY))
        *serve_only = true;
    else
        return false;
    snprintf(path, sizeof(path), "/local/domain/%u/image/device-model-domid",
             G);
    if (!read_dom0_owned(xs, path, v, sizeof(v)) || !parse_domid(v, S))
        return false;
    snprintf(path, sizeof(path), "/local/domain/%u/target", *S);
    return read_dom0_owned(xs, path, v, sizeof(v)) &&
           parse_domid(v, &target) && target == G;
}

/* ---- adopting ------------------------------------------------------------ */

static struct stubdmd_served *find_guest(struct stubdmd *d, uint32_t G)
{
    for (struct stubdmd_served *s = d->served; s; s = s->next)
        if (s->guest == G)
            return s;
    return NULL;
}

/* Serve S, or (dead: it died while no stubdmd ran) clean up after it. */
static void adopt(struct stubdmd *d, uint32_t S, uint32_t G, bool serve_only,
                  const char *dead)
{
    struct stubdmd_served *s = calloc(1, sizeof(*s));

    if (!s) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "adopting %u: out of memory", S);
        return;
    }
    s->d = d;
    s->stub = S;
    s->guest = G;
    s->serve_only = serve_only;
    s->src.kind = SRC_SERVED;
    s->src.served = s;
    s->ep.epfd = s->ep.tfd = -1;
    s->retry_fd = s->cleanup_fd = -1;
    s->proxy_sock[0].fd = s->proxy_sock[1].fd = -1;
    stub_name(d->xs, S, s->name, sizeof(s->name));
    stubdmd_log(STUBDM_LOG_INFO, s, "adopting %s%s%s%s", s->name,
                serve_only ? " (serve only: its toolstack tears it down)" : "",
                dead ? ": died while no stubdmd ran: " : "", dead ? dead : "");
    s->gone = dead != NULL; /* cleaned up by the loop's first sweep */
    if (dead ? stubdmd_served_attach(s) : stubdmd_served_start(s)) {
        stubdmd_log(STUBDM_LOG_ERROR, s, "not served");
        stubdmd_served_free(s);
        return;
    }
    s->next = d->served;
    d->served = s;
}

static void consider_guest(struct stubdmd *d, uint32_t G)
{
    uint32_t S;
    bool serve_only;

    if (find_guest(d, G) || !wants_service(d->xs, G, &S, &serve_only))
        return;
    adopt(d, S, G, serve_only, NULL);
}

/* ---- watches ------------------------------------------------------------- */

static bool watched(const struct stubdmd *d, uint32_t D)
{
    for (size_t i = 0; i < d->nwatched; i++)
        if (d->watched[i] == D)
            return true;
    return false;
}

static void watch_domain(struct stubdmd *d, uint32_t D)
{
    char path[96];

    if (watched(d, D))
        return;
    if (d->nwatched == d->capwatched) {
        size_t cap = d->capwatched ? 2 * d->capwatched : 16;
        uint32_t *w = realloc(d->watched, cap * sizeof(*w));
        if (!w)
            return;
        d->watched = w;
        d->capwatched = cap;
    }
    snprintf(path, sizeof(path), SVC_FMT, D);
    /* xenstored fires a new watch once at once: that event considers D. */
    if (!xs_watch(d->xs, path, "svc"))
        stubdmd_log(STUBDM_LOG_WARN, NULL, "watching %s: %s", path,
                    strerror(errno));
    else
        d->watched[d->nwatched++] = D;
}

static bool domain_exists(struct xs_handle *xs, uint32_t D)
{
    char path[32];
    unsigned len;
    char *v;

    snprintf(path, sizeof(path), "/local/domain/%u", D);
    v = xs_read(xs, XBT_NULL, path, &len);
    free(v);
    return v != NULL;
}

static void scan_domains(struct stubdmd *d)
{
    unsigned n = 0;
    char **ents = xs_directory(d->xs, XBT_NULL, "/local/domain", &n);

    for (unsigned i = 0; ents && i < n; i++) {
        uint32_t D;
        if (parse_domid(ents[i], &D) && D != 0)
            watch_domain(d, D);
    }
    free(ents);
}

static void released(struct stubdmd *d)
{
    for (size_t i = 0; i < d->nwatched;) {
        char path[96];
        if (domain_exists(d->xs, d->watched[i])) {
            i++;
            continue;
        }
        snprintf(path, sizeof(path), SVC_FMT, d->watched[i]);
        xs_unwatch(d->xs, path, "svc");
        d->watched[i] = d->watched[--d->nwatched];
    }
    for (struct stubdmd_served *s = d->served; s; s = s->next)
        if (!domain_exists(d->xs, s->stub))
            s->gone = true;
}

void stubdmd_xs_events(struct stubdmd *d)
{
    char **ev;

    while ((ev = xs_check_watch(d->xs))) {
        const char *path = ev[XS_WATCH_PATH], *token = ev[XS_WATCH_TOKEN];
        unsigned G;
        char tail[2];

        if (!strcmp(token, "intro"))
            scan_domains(d);
        else if (!strcmp(token, "release"))
            released(d);
        else if (sscanf(path, "/local/domain/%u/image/%1s", &G, tail) == 2)
            consider_guest(d, G);
        free(ev);
    }
    /* Those found gone are freed by the loop after its batch of events:
     * one of theirs may follow in it. */
}

int stubdmd_xs_start(struct stubdmd *d)
{
    d->xs = xs_open(0);
    if (!d->xs) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "cannot open xenstore: %s",
                    strerror(errno));
        return -1;
    }
    d->xsfd = xs_fileno(d->xs);
    if (d->xsfd < 0 || !xs_watch(d->xs, "@introduceDomain", "intro") ||
        !xs_watch(d->xs, "@releaseDomain", "release")) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "cannot watch xenstore: %s",
                    strerror(errno));
        return -1;
    }
    return 0;
}

void stubdmd_xs_stop(struct stubdmd *d)
{
    if (d->xs)
        xs_close(d->xs);
    d->xs = NULL;
    free(d->watched);
    d->watched = NULL;
    d->nwatched = d->capwatched = 0;
}

/* The stubdomains running now (stubdm_stubdom_list_new), then a watch on
 * every domain's adoption node for those to come. */
int stubdmd_adopt_existing(struct stubdmd *d)
{
    stubdm_ctx *ctx = NULL;
    stubdm_stubdom_list *l = NULL;
    int rc = stubdm_ctx_new(&ctx);

    if (!rc)
        rc = stubdm_stubdom_list_new(ctx, &l);
    if (rc) {
        stubdmd_log(STUBDM_LOG_ERROR, NULL, "listing the stubdomains: %s: %s",
                    stubdm_errname(rc), ctx ? stubdm_ctx_errmsg(ctx) : "");
        stubdm_ctx_free(ctx);
        return -1;
    }
    for (size_t i = 0; i < stubdm_stubdom_list_count(l); i++) {
        const char *state = stubdm_stubdom_list_state(l, i);
        uint32_t S, G = stubdm_stubdom_list_guest(l, i);
        bool dead = strcmp(state, "running") && strcmp(state, "starting");
        bool serve_only;

        if (!find_guest(d, G) && wants_service(d->xs, G, &S, &serve_only) &&
            S == stubdm_stubdom_list_domid(l, i))
            adopt(d, S, G, serve_only, dead ? state : NULL);
    }
    stubdm_stubdom_list_free(l);
    stubdm_ctx_free(ctx);
    scan_domains(d);
    return 0;
}
