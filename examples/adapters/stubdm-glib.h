/*
 * Header-only adapter: attach a stubdm_ctx to a GLib GMainContext.
 *
 *   struct stubdm_glib *a = stubdm_glib_attach(ctx, NULL);  // default ctx
 *   g_main_loop_run(loop);
 *   stubdm_glib_detach(a);  // before stubdm_ctx_free
 *
 * Each fd the library watches gets a GSource (g_unix_fd_source_new); the
 * ctx's timer is one timeout GSource re-created on every set_timer.
 */
#ifndef STUBDM_GLIB_H
#define STUBDM_GLIB_H

#include <libstubdm.h>

#include <glib-unix.h>
#include <glib.h>
#include <poll.h>

struct stubdm_glib {
    stubdm_ctx *ctx;
    GMainContext *gctx;
    GHashTable *fds; /* fd -> GSource* */
    GSource *timer;
};

static gboolean stubdm_glib__on_fd(gint fd, GIOCondition cond, gpointer user)
{
    struct stubdm_glib *a = (struct stubdm_glib *)user;
    short rev = (short)((cond & G_IO_IN ? POLLIN : 0) |
                        (cond & G_IO_OUT ? POLLOUT : 0) |
                        (cond & G_IO_ERR ? POLLERR : 0) |
                        (cond & G_IO_HUP ? POLLHUP : 0));
    stubdm_ctx_fd_ready(a->ctx, fd, rev);
    return G_SOURCE_CONTINUE; /* removal goes through watch_fd(fd, 0) */
}

static int stubdm_glib__watch_fd(void *user, int fd, short events)
{
    struct stubdm_glib *a = (struct stubdm_glib *)user;
    GSource *s = (GSource *)g_hash_table_lookup(a->fds, GINT_TO_POINTER(fd));

    if (s) {
        g_source_destroy(s);
        g_hash_table_remove(a->fds, GINT_TO_POINTER(fd));
    }
    if (!events)
        return 0;
    s = g_unix_fd_source_new(fd,
                             (GIOCondition)((events & POLLIN ? G_IO_IN : 0) |
                                            (events & POLLOUT ? G_IO_OUT
                                                              : 0)));
    g_source_set_callback(s, (GSourceFunc)(void (*)(void))stubdm_glib__on_fd,
                          a, NULL);
    g_source_attach(s, a->gctx);
    g_hash_table_insert(a->fds, GINT_TO_POINTER(fd), s);
    return 0;
}

static gboolean stubdm_glib__on_timer(gpointer user)
{
    struct stubdm_glib *a = (struct stubdm_glib *)user;
    GSource *t = a->timer;

    /* The source is spent; the library re-arms through set_timer. */
    a->timer = NULL;
    stubdm_ctx_timer_fired(a->ctx);
    if (t)
        g_source_unref(t);
    return G_SOURCE_REMOVE;
}

static int stubdm_glib__set_timer(void *user, int64_t deadline_ms)
{
    struct stubdm_glib *a = (struct stubdm_glib *)user;
    int64_t wait;

    if (a->timer) {
        g_source_destroy(a->timer);
        g_source_unref(a->timer);
        a->timer = NULL;
    }
    if (deadline_ms < 0)
        return 0;
    wait = deadline_ms - stubdm_now_ms();
    a->timer = g_timeout_source_new(wait > 0 ? (guint)wait : 0);
    g_source_set_callback(a->timer, stubdm_glib__on_timer, a, NULL);
    g_source_attach(a->timer, a->gctx);
    return 0;
}

static void stubdm_glib__unref_source(gpointer p)
{
    g_source_unref((GSource *)p);
}

static inline struct stubdm_glib *stubdm_glib_attach(stubdm_ctx *ctx,
                                                     GMainContext *gctx)
{
    static const stubdm_loop_hooks hooks = {STUBDM_LOOP_HOOKS_VERSION,
                                            stubdm_glib__watch_fd,
                                            stubdm_glib__set_timer};
    struct stubdm_glib *a = g_new0(struct stubdm_glib, 1);

    a->ctx = ctx;
    a->gctx = gctx ? g_main_context_ref(gctx)
                   : g_main_context_ref_thread_default();
    a->fds = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL,
                                   stubdm_glib__unref_source);
    if (stubdm_ctx_set_loop(ctx, &hooks, a) != 0) {
        g_hash_table_destroy(a->fds);
        g_main_context_unref(a->gctx);
        g_free(a);
        return NULL;
    }
    return a;
}

static inline void stubdm_glib_detach(struct stubdm_glib *a)
{
    GHashTableIter it;
    gpointer k, v;

    if (!a)
        return;
    stubdm_ctx_set_loop(a->ctx, NULL, NULL);
    g_hash_table_iter_init(&it, a->fds);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_source_destroy((GSource *)v);
    g_hash_table_destroy(a->fds);
    if (a->timer) {
        g_source_destroy(a->timer);
        g_source_unref(a->timer);
    }
    g_main_context_unref(a->gctx);
    g_free(a);
}

#endif
