/*
 * QMP framing and parsing, without I/O ("sans-I/O"): bytes from QEMU go in,
 * classified messages come out; commands go out as bytes.  The connection
 * layer (qmp.c) owns the channel, the ids and the state machine.
 *
 * Everything received is untrusted.  The wire
 *   - parses with json.c's bounded streaming parser, so a message may be
 *     split at any byte across feeds and memory stays bounded;
 *   - enforces stubdm__qmp_limits per message and on the queue of parsed
 *     messages not yet taken;
 *   - turns any malformed, oversized or unclassifiable input into a sticky
 *     error (STUBDM_EPROTO / STUBDM_ELIMIT / STUBDM_ENOMEM) with a message
 *     for the log; after one, the connection must be closed.
 *
 * Messages on the wire are JSON objects separated by optional whitespace
 * (QEMU ends each with "\r\n"); several may arrive in one read.
 */
#ifndef STUBDM_QMP_WIRE_H
#define STUBDM_QMP_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/mem.h"
#include "qmp/json.h"

/* ---- Limits ------------------------------------------------------------- */

/* Zero fields mean "the default". */
struct stubdm__qmp_limits {
    /* Bytes of one message's text, from its '{' (whitespace between
     * messages is skipped and costs nothing but the reading). */
    size_t max_message; /* default 16 MiB */
    unsigned max_depth; /* nesting of one message; default 64 */
    size_t max_values;  /* values in one message; default 1,000,000 */
    size_t max_string;  /* one string or key; default max_message */
    /* Parsed messages waiting for stubdm__qmp_wire_next(): feed() stops
     * consuming input when either bound is reached. */
    size_t max_queued;       /* default 1024 messages */
    size_t max_queued_bytes; /* default 16 MiB of message text */
    /* Discard-until-greeting mode: bytes examined before a greeting is
     * found, re-examinations included (so CPU is bounded as well as the
     * bytes dropped).  Default 1 MiB. */
    size_t max_discard;
};

#define STUBDM__QMP_DEFAULT_MAX_MESSAGE ((size_t)16 << 20)
#define STUBDM__QMP_DEFAULT_MAX_DEPTH 64u
#define STUBDM__QMP_DEFAULT_MAX_VALUES ((size_t)1000000)
#define STUBDM__QMP_DEFAULT_MAX_QUEUED ((size_t)1024)
#define STUBDM__QMP_DEFAULT_MAX_QUEUED_BYTES ((size_t)16 << 20)
#define STUBDM__QMP_DEFAULT_MAX_DISCARD ((size_t)1 << 20)
/* In discard mode a candidate greeting larger than this is not one
 * (QEMU's greeting is about 150 bytes). */
#define STUBDM__QMP_MAX_GREETING ((size_t)64 << 10)

void stubdm__qmp_limits_default(struct stubdm__qmp_limits *lim);

/* ---- Messages ----------------------------------------------------------- */

enum stubdm__qmp_msg_type {
    STUBDM__QMP_GREETING, /* {"QMP": {"version": ..., "capabilities": [...]}} */
    STUBDM__QMP_RETURN,   /* {"return": <any>, "id": ...} */
    STUBDM__QMP_ERROR,    /* {"error": {"class": s, "desc": s}, "id": ...} */
    STUBDM__QMP_EVENT,    /* {"event": s, "data": {...}, "timestamp": {...}} */
};

/*
 * The library sends "id": <unsigned integer>.  A reply's id is ours only if
 * it is a JSON integer in [0, UINT64_MAX]; any other id (a string, negative,
 * a fraction, 1e3, too large, null, ...) is FOREIGN: the connection layer
 * drops such replies as unknown, as the QMP spec says to.
 */
enum stubdm__qmp_id_kind {
    STUBDM__QMP_ID_NONE,    /* no "id" member */
    STUBDM__QMP_ID_NUMBER,  /* msg->id holds it */
    STUBDM__QMP_ID_FOREIGN, /* present, but not an id we could have sent */
};

/*
 * A classified message.  Every pointer is borrowed from the message and
 * valid until stubdm__qmp_msg_free(); strings are NUL-terminated, valid
 * UTF-8 (they may hold NUL bytes, which end them early as C strings).
 * Members other than the ones listed are ignored.
 */
struct stubdm__qmp_msg {
    enum stubdm__qmp_msg_type type;

    /* RETURN and ERROR */
    enum stubdm__qmp_id_kind id_kind;
    uint64_t id;

    /* The payload: RETURN the "return" value (any type); ERROR the "error"
     * object; EVENT "data" (an object, or NULL when absent); GREETING the
     * "QMP" object. */
    const struct stubdm__json *value;

    /* ERROR: both required strings. */
    const char *error_class;
    const char *error_desc;

    /* EVENT: the name (required); the timestamp (required, integers). */
    const char *event;
    int64_t ts_seconds, ts_microseconds;

    /* GREETING: version.qemu.{major,minor,micro} (required, 0..UINT32_MAX),
     * version.package (optional, "" when absent), capabilities (required
     * array of strings) and whether it contains "oob". */
    uint32_t qemu_major, qemu_minor, qemu_micro;
    const char *qemu_package;
    const struct stubdm__json *capabilities;
    bool oob;

    /* The exact JSON text of the message (NUL-terminated; raw_len bytes,
     * without the "\r\n"), for logs and for callers that want the text. */
    const char *raw;
    size_t raw_len;

    /* The whole message as a tree. */
    const struct stubdm__json *root;
    struct stubdm__json_doc *doc; /* private */
    struct stubdm__qmp_msg *next; /* private: the wire's queue */
};

/* Accepts NULL. */
void stubdm__qmp_msg_free(struct stubdm__qmp_msg *msg);

struct stubdm__qmp_wire;
/* stubdm__qmp_msg_free, keeping the memory for w's next message (msg may
 * come from any wire).  Accepts NULL. */
void stubdm__qmp_wire_recycle(struct stubdm__qmp_wire *w,
                              struct stubdm__qmp_msg *msg);

/* "greeting", "return", "error", "event". */
const char *stubdm__qmp_msg_type_name(enum stubdm__qmp_msg_type t);

/*
 * Classify a parsed object (used by the wire; exposed for tests).  On
 * success msg is filled (msg->doc, raw and next untouched) and 0 returned;
 * otherwise STUBDM_EPROTO and a reason ("has both \"return\" and
 * \"error\"") in why.
 */
int stubdm__qmp_classify(const struct stubdm__json *root,
                         struct stubdm__qmp_msg *msg, char *why,
                         size_t why_len);

/* ---- Receiving ---------------------------------------------------------- */

struct stubdm__qmp_wire {
    struct stubdm__qmp_limits lim;
    struct stubdm__json_limits jl_msg; /* lim, for a message's parse */
    struct stubdm__json_parser *parser;
    bool in_message;    /* the parser holds part of a message */
    uint64_t fed;       /* bytes accepted by feed() so far */
    uint64_t msg_start; /* stream offset of the current message's '{' */
    /* Parsed messages, oldest first. */
    struct stubdm__qmp_msg *head, *tail;
    size_t queued, queued_bytes;
    /* Discard-until-greeting. */
    bool discarding;
    struct stubdm__buf resync; /* bytes under examination / left over */
    size_t resync_pos;         /* next byte of resync to look at */
    size_t attempt_start;      /* resync offset of the candidate's '{' */
    uint64_t discarded, discard_work;
    /* Sticky failure. */
    int error;
    char errmsg[256];
};

/*
 * Set up a wire.  lim is copied (NULL: defaults).
 * @param discard_until_greeting  start in discard mode: input is dropped
 *        until a well-formed greeting ({"QMP": {...}}) has been parsed;
 *        the greeting is the first message next() returns.  Use it on a
 *        fresh vchan connection, where an earlier client may have left
 *        bytes (garbage, half messages, stale replies or events) in the
 *        ring.  Resynchronisation restarts a parse at each '{' after a
 *        failed candidate, so a greeting after garbage or after half a
 *        message is found.
 * @return 0 or STUBDM_ENOMEM (then dispose is still safe).
 */
int stubdm__qmp_wire_init(struct stubdm__qmp_wire *w,
                          const struct stubdm__qmp_limits *lim,
                          bool discard_until_greeting);
/* Free everything, including messages not taken.  Idempotent. */
void stubdm__qmp_wire_dispose(struct stubdm__qmp_wire *w);

/*
 * Give the wire bytes read from QEMU.  Messages completed by them are
 * parsed and queued for stubdm__qmp_wire_next().
 *
 * Backpressure: feed consumes a PREFIX of the input.  It stops early
 * (*consumed < len) only when the queue is full (max_queued messages or
 * max_queued_bytes of text); the caller must then take messages with
 * next() until it returns 1, and feed the rest (data + *consumed) again.
 * Memory therefore stays bounded however large the input is.
 *
 * @param consumed  receives the number of bytes used (always set).
 * @return 0, or the sticky error: STUBDM_EPROTO (malformed input),
 *         STUBDM_ELIMIT (a limit exceeded) or STUBDM_ENOMEM; the reason is
 *         in stubdm__qmp_wire_errmsg().  Messages queued before the error
 *         can still be taken with next().
 */
int stubdm__qmp_wire_feed(struct stubdm__qmp_wire *w, const void *data,
                          size_t len, size_t *consumed);

/*
 * Take the oldest parsed message.
 * @param out  receives the message (caller frees it with
 *             stubdm__qmp_msg_free), or NULL.
 * @return 0 (got one), 1 (none yet: feed more), or the sticky error once
 *         the queue is empty.
 */
int stubdm__qmp_wire_next(struct stubdm__qmp_wire *w,
                          struct stubdm__qmp_msg **out);

/* At end of input: 0 if no message is partly received, else STUBDM_EPROTO
 * ("connection closed in the middle of a QMP message"), which becomes the
 * sticky error.  In discard mode, STUBDM_EPROTO ("... before a greeting"). */
int stubdm__qmp_wire_eof(struct stubdm__qmp_wire *w);

/* The reason for the sticky error ("" if none).  Owned by the wire. */
const char *stubdm__qmp_wire_errmsg(const struct stubdm__qmp_wire *w);

/* Bytes dropped in discard-until-greeting mode (for a log line). */
uint64_t stubdm__qmp_wire_discarded(const struct stubdm__qmp_wire *w);

/* True while still discarding (no greeting yet). */
bool stubdm__qmp_wire_discarding(const struct stubdm__qmp_wire *w);

/* ---- Sending ------------------------------------------------------------ */

/* Command names: 1..STUBDM__QMP_MAX_COMMAND_NAME of [A-Za-z0-9_-]. */
#define STUBDM__QMP_MAX_COMMAND_NAME 128

/*
 * Append {"execute":"<name>","arguments":<args>,"id":<id>}\r\n to out
 * ("exec-oob" instead of "execute" when oob).  "arguments" is left out
 * when args_json is NULL.
 *
 * @param args_json  the arguments as JSON text (args_len bytes), which
 *        must be a single object; it is parsed with the wire's default
 *        limits and re-emitted, so what is sent is always well-formed.
 * @param why  receives a reason on failure (may be NULL).
 * @return 0; STUBDM_EINVAL (bad name, arguments not valid JSON or not an
 *         object); STUBDM_ELIMIT (arguments too large/deep, or out's limit
 *         reached); STUBDM_ENOMEM.  On failure out is unchanged.
 */
int stubdm__qmp_encode_command(struct stubdm__buf *out, const char *name,
                               const char *args_json, size_t args_len,
                               uint64_t id, bool oob, char *why,
                               size_t why_len);

/* The length of a valid command name (see above), or 0 if it is not one
 * (NULL, empty, too long, another character). */
size_t stubdm__qmp_command_name_len(const char *name);

/* encode_command for a name the caller has already validated with
 * stubdm__qmp_command_name_len (name_len is what it returned). */
int stubdm__qmp_encode_command_n(struct stubdm__buf *out, const char *name,
                                 size_t name_len, const char *args_json,
                                 size_t args_len, uint64_t id, bool oob,
                                 char *why, size_t why_len);

/* Append the capabilities negotiation command with id; with enable_oob,
 * "arguments": {"enable": ["oob"]}.  Returns as encode_command. */
int stubdm__qmp_encode_capabilities(struct stubdm__buf *out, uint64_t id,
                                    bool enable_oob);

#endif /* STUBDM_QMP_WIRE_H */
