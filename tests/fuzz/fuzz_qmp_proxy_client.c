/*
 * libFuzzer target for the QMP proxy's client side (lib/qmp/proxy.c):
 * whatever a local client sends it.
 *
 * Set up once (LLVMFuzzerInitialize): the simulated host of the QMP suites
 * (tests/support/qmp_peer.c: a mock xenstored, a sim directory) with a fake
 * QEMU in a child process that answers every command {"return": {}} with
 * the library's id, a ctx, a QMP handle open on it and a proxy on
 * <simdir>/proxy.sock (client buffer 64 KiB, the smallest allowed).  Per
 * input, one client connects, reads the greeting, sends the input's bytes
 * (in chunks of a size the input chooses), reads everything the proxy
 * answers while the library runs, and closes.
 *
 * Input: byte 0: bits 0-1 the chunk size (1, 7, 64, 4096 bytes), bit 2
 * negotiate first (so most inputs reach forwarding), bit 3 end with an
 * unterminated 70 KiB string (the input bound), bit 4 two clients at once,
 * the chunks alternating between them.  The rest is the stream.
 *
 * The same bytes go through a JSON parser with the proxy's limits (the
 * library's, fuzzed on its own by fuzz_qmp_wire) to know which commands
 * the proxy saw and whether it must give up on the stream.
 * Invariants: the greeting first, with no capabilities; every line the
 * proxy sends is one JSON object ending "\r\n"; every reply carries the
 * id of a command that client sent (exactly its JSON value, whatever the
 * library used upstream) or none when the command had none, and every
 * command is answered exactly once (return or error) unless the client
 * was disconnected, which happens only for a stream the parser refuses or
 * a reply over the client's buffer; no answer takes longer than the
 * bound below (a hang is a finding); after the client closes, the proxy
 * holds no client; the QMP connection stays up across all inputs.
 */
#include "core/mem.h"
#include "qmp/json.h"
#include "qmp_peer.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void kill_children(void);

/* A failed check takes the helper processes with it (abort skips atexit). */
#define CHECK(c)                                                              \
    do {                                                                      \
        if (!(c)) {                                                           \
            fprintf(stderr,                                                   \
                    "fuzz_qmp_proxy_client: check failed at line "            \
                    "%d: %s\n",                                               \
                    __LINE__, #c);                                            \
            kill_children();                                                  \
            abort();                                                          \
        }                                                                     \
    } while (0)

#define STUBDOM 7
#define GUEST 3
#define CLIENT_BUFFER (64u << 10)
/* The proxy's command timeout, and the harness's bound on any answer:
 * longer, since a command QEMU does not answer is answered by the proxy
 * with an error at its timeout (still exactly one answer). */
#define COMMAND_TIMEOUT_MS 5000
#define MAX_WAIT_MS (COMMAND_TIMEOUT_MS + 2000)
#define MAX_CMDS 256

static struct qmp_sim sim;
static struct qmp_peer peer;
static stubdm_ctx *ctx;
static stubdm_qmp *q;
static stubdm_qmp_proxy *proxy;
static char proxy_path[400];

static void kill_children(void)
{
    if (peer.pid > 0)
        kill(peer.pid, SIGKILL);
    if (sim.mock.pid > 0)
        kill(sim.mock.pid, SIGKILL);
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/common_interface_defs.h>
#define HAVE_DEATH_CALLBACK 1
#endif
#endif

static void cleanup(void)
{
    stubdm_qmp_proxy_free(proxy);
    stubdm_qmp_free(q);
    stubdm_ctx_free(ctx);
    qmp_peer_stop(&peer);
    qmp_sim_stop(&sim);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const struct qmp_peer_step script[] = {QP_HS(), QP_ANS(), QP_E()};
    stubdm_qmp_opts *o = NULL;

    (void)argc, (void)argv;
    peer.pid = -1;
    CHECK(qmp_sim_start(&sim, STUBDOM, GUEST) == 0);
    CHECK(stubdm_ctx_new(&ctx) == 0);
    CHECK(qmp_peer_start(&peer, sim.sock, script) == 0);
    CHECK(qmp_sim_server_ready(&sim) == 0);
    CHECK(stubdm_qmp_opts_new(&o) == 0);
    CHECK(stubdm_qmp_opts_set_transport(o, STUBDM_QMP_TRANSPORT_SIMULATED) ==
          0);
    CHECK(stubdm_qmp_open_sync(ctx, STUBDOM, GUEST, o, &q) == 0);
    stubdm_qmp_opts_free(o);
    snprintf(proxy_path, sizeof(proxy_path), "%s/proxy.sock", sim.simdir);
    CHECK(stubdm_qmp_proxy_new(q, proxy_path, COMMAND_TIMEOUT_MS, &proxy) ==
          0);
    CHECK(stubdm_qmp_proxy_set_limits(proxy, 4, CLIENT_BUFFER) == 0);
    atexit(cleanup);
#ifdef HAVE_DEATH_CALLBACK
    __sanitizer_set_death_callback(kill_children);
#endif
    return 0;
}

/* ---- the client ---------------------------------------------------------- */

struct client {
    int fd;
    char in[4 * CLIENT_BUFFER];
    size_t inlen;
    bool eof, greeted;
    /* ids of the commands not answered yet (JSON text; NULL: no id) */
    char *want[MAX_CMDS];
    bool want_used[MAX_CMDS];
    size_t nwant, answered, ncmds;
    bool overflow; /* more commands than tracked: answers not matched */
    struct model {
        struct stubdm__json_parser *p;
        bool failed;
        bool big; /* a command large enough that its answer may overflow */
    } m;
};

static void on_line(struct client *c, const char *line, size_t len)
{
    struct stubdm__json_doc *doc = NULL;
    const struct stubdm__json *root, *id;

    CHECK(len >= 1 && line[len - 1] == '\r');
    CHECK(stubdm__json_parse(line, len - 1, NULL, &doc, NULL) == 0);
    root = stubdm__json_doc_root(doc);
    CHECK(stubdm__json_is(root, STUBDM__JSON_OBJECT));
    if (!c->greeted) {
        const struct stubdm__json *caps =
            stubdm__json_get(stubdm__json_get(root, "QMP"), "capabilities");
        CHECK(caps && stubdm__json_len(caps) == 0);
        c->greeted = true;
        stubdm__json_doc_free(doc);
        return;
    }
    CHECK(!!stubdm__json_get(root, "return") !=
          !!stubdm__json_get(root, "error"));
    c->answered++;
    id = stubdm__json_get(root, "id");
    if (!c->overflow) {
        size_t k;
        for (k = 0; k < c->nwant; k++) {
            struct stubdm__json_doc *w = NULL;
            bool same;
            if (c->want_used[k])
                continue;
            if (!c->want[k] || !id) {
                same = !c->want[k] && !id;
            } else {
                CHECK(stubdm__json_parse(c->want[k], strlen(c->want[k]), NULL,
                                         &w, NULL) == 0);
                same = stubdm__json_equal(stubdm__json_doc_root(w), id);
                stubdm__json_doc_free(w);
            }
            if (same)
                break;
        }
        /* The final parse error has no id and answers no command. */
        if (k == c->nwant) {
            CHECK(!id && stubdm__json_get(root, "error"));
        } else {
            c->want_used[k] = true;
        }
    }
    stubdm__json_doc_free(doc);
}

static struct client clients[2];
static size_t nclients;

/* Take what the proxy sent to c. */
static void take(struct client *c)
{
    while (!c->eof) {
        ssize_t n = recv(c->fd, c->in + c->inlen, sizeof(c->in) - c->inlen,
                         MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            c->eof = true;
            break;
        }
        c->inlen += (size_t)n;
        for (;;) {
            char *nl = memchr(c->in, '\n', c->inlen);
            if (!nl)
                break;
            size_t l = (size_t)(nl - c->in);
            on_line(c, c->in, l);
            memmove(c->in, nl + 1, c->inlen - l - 1);
            c->inlen -= l + 1;
        }
        CHECK(c->inlen < sizeof(c->in));
    }
}

/* Run the library once (waiting up to wait_ms for an event) and take what
 * the proxy sent to every client (a client not read could be dropped for
 * not reading, which is not what is tested). */
static void pump(int wait_ms)
{
    stubdm_ctx_run_once(ctx, wait_ms);
    CHECK(stubdm_qmp_is_ready(q));
    for (size_t i = 0; i < nclients; i++)
        take(&clients[i]);
}

static void send_all(struct client *c, const void *p, size_t len)
{
    int64_t end = stubdm_now_ms() + MAX_WAIT_MS;

    while (len && !c->eof) {
        ssize_t n = send(c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            p = (const char *)p + n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            break; /* the proxy closed on us: seen as eof by pump */
        }
        pump(0);
        CHECK(stubdm_now_ms() < end);
    }
}

/* ---- what the proxy must have seen ------------------------------------- */

/* What the proxy must have seen from c after these bytes. */
static void model_feed(struct client *c, const char *data, size_t len)
{
    struct model *m = &c->m;
    size_t off = 0;

    while (off < len && !m->failed) {
        size_t used = 0;
        int rc = stubdm__json_parser_feed(m->p, data + off, len - off, &used);
        off += used;
        if (rc == STUBDM__JSON_MORE)
            break;
        if (rc < 0) {
            m->failed = true;
            break;
        }
        struct stubdm__json_doc *doc = stubdm__json_parser_take(m->p);
        stubdm__json_parser_reset(m->p, NULL);
        const struct stubdm__json *id =
            stubdm__json_get(stubdm__json_doc_root(doc), "id");
        size_t tlen = 0;
        stubdm__json_doc_text(doc, &tlen);
        if (tlen > CLIENT_BUFFER / 4)
            m->big = true;
        c->ncmds++;
        if (c->nwant == MAX_CMDS) {
            c->overflow = true;
        } else {
            char *idj = NULL;
            if (id) {
                struct stubdm__buf b;
                struct stubdm__json_writer *w;
                stubdm__buf_init(&b, 0);
                w = stubdm__json_writer_new(&b);
                stubdm__json_w_value(w, id);
                CHECK(stubdm__json_writer_end(w) == 0 &&
                      stubdm__buf_append(&b, "", 0) == 0);
                idj = b.data;
            }
            c->want[c->nwant++] = idj;
        }
        stubdm__json_doc_free(doc);
    }
}

static bool all_answered(const struct client *c)
{
    if (c->overflow)
        return c->answered >= c->ncmds;
    for (size_t k = 0; k < c->nwant; k++)
        if (!c->want_used[k])
            return false;
    return !c->overflow;
}

static void client_open(struct client *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stubdm__json_limits lim;
    int64_t end;

    memset(c, 0, sizeof(*c));
    stubdm__json_limits_default(&lim);
    lim.max_bytes = CLIENT_BUFFER;
    lim.max_string = CLIENT_BUFFER;
    CHECK(stubdm__json_parser_new(&c->m.p, &lim) == 0);
    stubdm__json_parser_require_object(c->m.p, true);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(c->fd >= 0);
    memcpy(sa.sun_path, proxy_path, strlen(proxy_path) + 1);
    CHECK(connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    end = stubdm_now_ms() + MAX_WAIT_MS;
    while (!c->greeted) {
        pump(10);
        CHECK(!c->eof && stubdm_now_ms() < end);
    }
}

static void client_send(struct client *c, const char *p, size_t len)
{
    model_feed(c, p, len);
    send_all(c, p, len);
}

/* Every command answered, or the client dropped for a reason. */
static void client_finish(struct client *c)
{
    int64_t end = stubdm_now_ms() + MAX_WAIT_MS;

    while (!c->eof && !all_answered(c)) {
        pump(10);
        CHECK(stubdm_now_ms() < end);
    }
    if (c->m.failed) {
        /* The proxy must give up on a stream the parser refuses. */
        while (!c->eof) {
            pump(10);
            CHECK(stubdm_now_ms() < end);
        }
    }
    if (c->eof)
        CHECK(c->m.failed || c->m.big);
}

static void client_free(struct client *c)
{
    for (size_t k = 0; k < c->nwant; k++)
        free(c->want[k]);
    stubdm__json_parser_free(c->m.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[4] = {1, 7, 64, 4096};
    static const char nego[] = "{\"execute\": \"qmp_capabilities\"}\n";
    int64_t end;

    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    size_t chunk = chunks[mode & 3];
    data++;
    size--;

    /* Bit 4: two clients, the chunks alternating between them (the same
     * ids in both: each must get its own answers only). */
    nclients = 0;
    for (size_t i = 0; i < ((mode & 16) ? 2u : 1u); i++) {
        nclients = i + 1; /* pumped while it waits for its greeting */
        client_open(&clients[i]);
    }
    if (mode & 4)
        for (size_t i = 0; i < nclients; i++)
            client_send(&clients[i], nego, sizeof(nego) - 1);
    for (size_t off = 0, k = 0; off < size; off += chunk, k++) {
        size_t n = size - off < chunk ? size - off : chunk;
        struct client *c = &clients[k % nclients];
        if (!c->eof)
            client_send(c, (const char *)data + off, n);
        pump(0);
    }
    if (mode & 8) {
        static char pad[70 << 10];
        static const char head[] = "{\"execute\": \"x\", \"id\": \"";
        if (!pad[0])
            memset(pad, 'a', sizeof(pad));
        client_send(&clients[0], head, sizeof(head) - 1);
        client_send(&clients[0], pad, sizeof(pad));
    }
    for (size_t i = 0; i < nclients; i++)
        client_finish(&clients[i]);
    for (size_t i = 0; i < nclients; i++)
        close(clients[i].fd);
    end = stubdm_now_ms() + MAX_WAIT_MS;
    for (;;) {
        stubdm_qmp_proxy_stats st;

        stubdm_qmp_proxy_get_stats(proxy, &st, sizeof(st));
        if (st.clients == 0)
            break;
        stubdm_ctx_run_once(ctx, 10);
        CHECK(stubdm_now_ms() < end);
    }
    for (size_t i = 0; i < nclients; i++)
        client_free(&clients[i]);
    nclients = 0;
    return 0;
}
