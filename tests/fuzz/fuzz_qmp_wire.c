/*
 * libFuzzer target for qmp/wire.c and json.c: everything QEMU can send.
 *
 * Input layout: byte 0 selects the mode (bit 0: discard-until-greeting)
 * and bytes 1..4 the chunk sizes the rest is fed in (cycled), so the
 * fuzzer explores split points as well as content.  Limits are small so
 * they are reached often.  Every message is drained and its accessors
 * touched and its tree compared with a fresh incremental parse of its text;
 * the encoder is exercised with the message text as arguments.
 */
#include "core/mem.h"
#include "qmp/wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t touch(const struct stubdm__json *v, unsigned depth)
{
    size_t n = 1;
    if (depth > 80)
        abort(); /* deeper than any limit allows */
    for (size_t i = 0; i < stubdm__json_len(v); i++) {
        const char *key = NULL;
        const struct stubdm__json *c = stubdm__json_member(v, i, &key, NULL);
        if (!c)
            c = stubdm__json_at(v, i);
        if (!c)
            abort();
        n += touch(c, depth + 1);
    }
    size_t len;
    const char *s = stubdm__json_as_string(v, &len);
    if (s && s[len] != '\0')
        abort();
    return n;
}

static void use_message(struct stubdm__qmp_msg *m)
{
    if (m->raw[m->raw_len] != '\0' || m->raw[0] != '{')
        abort();
    touch(m->root, 0);
    /* The tree is the one the incremental parser builds from the same text
     * (the wire may have used the parser's quick path). */
    struct stubdm__json_limits jl = {4096, 16, 512, 4096};
    struct stubdm__json_doc *again = NULL;
    if (stubdm__json_parse(m->raw, m->raw_len, &jl, &again, NULL) != 0 ||
        !stubdm__json_equal(m->root, stubdm__json_doc_root(again)))
        abort();
    stubdm__json_doc_free(again);
    switch (m->type) {
    case STUBDM__QMP_ERROR:
        if (!m->error_class || !m->error_desc)
            abort();
        break;
    case STUBDM__QMP_EVENT:
        if (!m->event)
            abort();
        break;
    case STUBDM__QMP_GREETING:
        if (!m->capabilities || !m->qemu_package)
            abort();
        break;
    case STUBDM__QMP_RETURN:
        break;
    }
    /* Re-encoding a received object as arguments must succeed. */
    struct stubdm__buf out;
    stubdm__buf_init(&out, 0);
    if (stubdm__qmp_encode_command(&out, "x", m->raw, m->raw_len, m->id, false,
                                   NULL, 0) == STUBDM_EINVAL)
        abort();
    stubdm__buf_dispose(&out);
    stubdm__qmp_msg_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    bool discard = data[0] & 1;
    size_t chunks[4];
    for (int i = 0; i < 4; i++)
        chunks[i] = (size_t)data[1 + i] + 1;
    data += 5;
    size -= 5;

    struct stubdm__qmp_limits lim = {
        .max_message = 4096,
        .max_depth = 16,
        .max_values = 512,
        .max_queued = 4,
        .max_queued_bytes = 8192,
        .max_discard = 16384,
    };
    struct stubdm__qmp_wire w;
    if (stubdm__qmp_wire_init(&w, &lim, discard) == 0) {
        size_t off = 0, k = 0;
        int rc = 0;
        while (off < size && rc == 0) {
            size_t n = chunks[k++ % 4];
            if (n > size - off)
                n = size - off;
            size_t used;
            rc = stubdm__qmp_wire_feed(&w, data + off, n, &used);
            if (used > n || w.queued > lim.max_queued)
                abort();
            off += used;
            struct stubdm__qmp_msg *m;
            while (stubdm__qmp_wire_next(&w, &m) == 0)
                use_message(m);
            if (rc == 0 && used == 0 && w.queued == 0 && n > 0)
                abort(); /* no progress with room to spare */
        }
        if (rc == 0)
            rc = stubdm__qmp_wire_eof(&w);
        if (rc != 0 && stubdm__qmp_wire_errmsg(&w)[0] == '\0')
            abort();
        if (rc != 0 && rc != STUBDM_EPROTO && rc != STUBDM_ELIMIT &&
            rc != STUBDM_ENOMEM)
            abort();
    }
    stubdm__qmp_wire_dispose(&w);
    return 0;
}
