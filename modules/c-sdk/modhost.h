/* modhost.h: write a modhost module (ABI 1, docs/ABI.md) in C.
 *
 * Header only. It declares the host imports, decodes the envelopes of docs/wire-format.md
 * (HttpRequest, Message) into views of the host's buffer, encodes responses and messages, and
 * defines the exports every module needs when one file says MODHOST_EXPORTS() (the ABI
 * version, `alloc`, `dealloc`). The module itself defines `handle` and, if it wants them,
 * `init` and `drain` with the export names below; a module that takes bus messages says
 * MODHOST_MESSAGE_EXPORTS(handler) for `on_message` and `on_messages` (below).
 *
 *   #include "modhost.h"
 *   MODHOST_EXPORTS()
 *
 *   MODHOST_EXPORT("handle") uint64_t handle(uint8_t *ptr, uint32_t len) {
 *       mh_request req;
 *       if (mh_request_decode(ptr, len, &req) != 0) return mh_respond_text(400, "bad request");
 *       return mh_respond_text(200, "hello from C");   // ptr is ours: freed below
 *   }
 *
 * Build (what `crates/build` runs for every .c file of modules/<name>/wasm):
 *   clang --target=wasm32-wasi -mexec-model=reactor -Os -I modules/c-sdk -o NAME.wasm main.c ...
 * The reactor start-up file provides `_initialize`, which runs the C constructors.
 */
#ifndef MODHOST_H
#define MODHOST_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODHOST_EXPORT(name) __attribute__((export_name(name)))
#define MODHOST_IMPORT(name) __attribute__((import_module("env"), import_name(name)))

/* ---- host imports (namespace env) ---- */
MODHOST_IMPORT("publish_message") int32_t mh_sys_publish_message(const uint8_t *ptr, uint32_t len);
MODHOST_IMPORT("publish_batch") int32_t mh_sys_publish_batch(const uint8_t *ptr, uint32_t len, int32_t timeout_ms);
MODHOST_IMPORT("subscribe_topic") int32_t mh_sys_subscribe_topic(const char *ptr, uint32_t len, int32_t handler);
MODHOST_IMPORT("request") int64_t mh_sys_request(const uint8_t *ptr, uint32_t len, int32_t timeout_ms);
MODHOST_IMPORT("log_at") void mh_sys_log_at(int32_t level, const char *ptr, uint32_t len);
MODHOST_IMPORT("ws_broadcast") void mh_sys_ws_broadcast(const char *topic, uint32_t topic_len, const uint8_t *payload, uint32_t payload_len);

/* Return codes of the imports (docs/ABI.md). */
enum {
    MH_INVALID = -1, MH_LIMIT = -2, MH_CLOSED = -3, MH_TIMED_OUT = -4, MH_NO_SUBSCRIBER = -5, MH_OVERLOADED = -6
};
/* Message kinds. */
enum { MH_EVENT = 0, MH_REQUEST = 1, MH_RESPONSE = 2, MH_ERROR = 3 };
/* Log levels. */
enum { MH_TRACE = 0, MH_DEBUG = 1, MH_INFO = 2, MH_WARN = 3, MH_ERROR_LEVEL = 4 };

/* The exports every ABI 1 module has: write MODHOST_EXPORTS() in exactly one file. Buffers
 * come from malloc: the host writes requests into them and hands responses back to free. */
#define MODHOST_EXPORTS()                                                                     \
    MODHOST_EXPORT("modhost_abi_version") int32_t mh_abi_version(void) { return 1; }          \
    MODHOST_EXPORT("alloc") void *mh_alloc(uint32_t len) { return malloc(len ? len : 1); }    \
    MODHOST_EXPORT("dealloc") void mh_dealloc(void *ptr, uint32_t len) { (void)len; free(ptr); }

/* Opt-in, in one file: the module keeps nothing in its instance that another instance would
 * need (its state, if any, is in the key-value store), so the server may run several
 * instances side by side (docs/ABI.md, `modhost_shared_nothing`). */
#define MODHOST_SHARED_NOTHING() \
    MODHOST_EXPORT("modhost_shared_nothing") void mh_shared_nothing(void) {}

/* ---- decoding: views into the input, every length checked against what remains ---- */

typedef struct { const uint8_t *ptr; uint64_t len; } mh_bytes;

typedef struct { const uint8_t *at; const uint8_t *end; int failed; } mh_reader;

static inline uint64_t mh_read_uint(mh_reader *r, unsigned size) {
    uint64_t value = 0;
    if (r->failed || (uint64_t)(r->end - r->at) < size) { r->failed = 1; return 0; }
    for (unsigned i = 0; i < size; i++) value |= (uint64_t)r->at[i] << (8 * i);
    r->at += size;
    return value;
}

static inline mh_bytes mh_read_bytes(mh_reader *r) {
    mh_bytes out = {0, 0};
    uint64_t len = mh_read_uint(r, 8);
    if (r->failed || len > (uint64_t)(r->end - r->at)) { r->failed = 1; return out; }
    out.ptr = r->at;
    out.len = len;
    r->at += len;
    return out;
}

/* Whether b holds exactly the NUL-terminated text s. */
static inline int mh_equals(mh_bytes b, const char *s) {
    size_t n = strlen(s);
    return b.len == n && (n == 0 || memcmp(b.ptr, s, n) == 0);
}

typedef struct {
    mh_bytes method, path, query;
    uint64_t header_count;
    const uint8_t *headers; /* header_count × (name, value), each a u64 length then bytes */
    mh_bytes body;
} mh_request;

/* Decodes an HttpRequest; 0 on success, -1 when it is malformed (truncated, a count larger
 * than the input can hold, trailing bytes). UTF-8 is not checked: the host sends valid text. */
static inline int mh_request_decode(const uint8_t *ptr, uint32_t len, mh_request *out) {
    mh_reader r = {ptr, ptr + len, 0};
    out->method = mh_read_bytes(&r);
    out->path = mh_read_bytes(&r);
    out->query = mh_read_bytes(&r);
    out->header_count = mh_read_uint(&r, 8);
    if (r.failed || out->header_count > (uint64_t)(r.end - r.at) / 16) return -1;
    out->headers = r.at;
    for (uint64_t i = 0; i < out->header_count; i++) { mh_read_bytes(&r); mh_read_bytes(&r); }
    out->body = mh_read_bytes(&r);
    return r.failed || r.at != r.end ? -1 : 0;
}

/* The value of the first header called name (lower-case, as the server passes names);
 * 1 when found. */
static inline int mh_request_header(const mh_request *req, const char *name, mh_bytes *value) {
    mh_reader r = {req->headers, req->body.ptr, 0};
    for (uint64_t i = 0; i < req->header_count; i++) {
        mh_bytes n = mh_read_bytes(&r), v = mh_read_bytes(&r);
        if (!r.failed && mh_equals(n, name)) { *value = v; return 1; }
    }
    return 0;
}

typedef struct { mh_bytes topic; uint32_t kind, id; mh_bytes payload; } mh_message;

/* Decodes a Message; 0 on success, -1 when it is malformed or its kind is unknown. */
static inline int mh_message_decode(const uint8_t *ptr, uint32_t len, mh_message *out) {
    mh_reader r = {ptr, ptr + len, 0};
    out->topic = mh_read_bytes(&r);
    out->kind = (uint32_t)mh_read_uint(&r, 4);
    out->id = (uint32_t)mh_read_uint(&r, 4);
    out->payload = mh_read_bytes(&r);
    return r.failed || r.at != r.end || out->kind > MH_ERROR ? -1 : 0;
}

/* Hands each message of a MessageBatch (docs/wire-format.md) at ptr to handler, in order,
 * decoding one at a time. Before each it writes the message's index into the batch's count
 * field (the first 8 bytes): after an `on_messages` call that trapped or ran out of time the
 * host reads there which message failed (docs/ABI.md). 0 when the whole batch was handled,
 * -1 when it is malformed (the messages before the malformed one were handled). */
static inline int mh_batch_each(uint8_t *ptr, uint32_t len, void (*handler)(const mh_message *msg)) {
    mh_reader r = {ptr, ptr + len, 0};
    uint64_t count = mh_read_uint(&r, 8);
    if (r.failed || count > (uint64_t)(r.end - r.at) / 24) return -1;
    for (uint64_t i = 0; i < count; i++) {
        mh_message msg;
        msg.topic = mh_read_bytes(&r);
        msg.kind = (uint32_t)mh_read_uint(&r, 4);
        msg.id = (uint32_t)mh_read_uint(&r, 4);
        msg.payload = mh_read_bytes(&r);
        if (r.failed || msg.kind > MH_ERROR) return -1;
        for (unsigned b = 0; b < 8; b++) ptr[b] = (uint8_t)(i >> (8 * b));
        handler(&msg);
    }
    return r.at == r.end ? 0 : -1;
}

/* The message exports around `void handler(const mh_message *msg)` (write it in one file):
 * `on_message` decodes one message, `on_messages` takes several queued messages in one host
 * call (mh_batch_each). The views in *msg point into the host's buffer and are valid until the
 * handler returns; the buffer is freed after it. A malformed message is logged at warn level. */
#define MODHOST_MESSAGE_EXPORTS(handler)                                                      \
    MODHOST_EXPORT("on_message") void mh_on_message(uint8_t *ptr, uint32_t len) {             \
        mh_message msg;                                                                       \
        if (mh_message_decode(ptr, len, &msg) != 0) mh_log(MH_WARN, "a malformed message (%u bytes)", len); \
        else handler(&msg);                                                                   \
        free(ptr);                                                                            \
    }                                                                                         \
    MODHOST_EXPORT("on_messages") void mh_on_messages(uint8_t *ptr, uint32_t len) {           \
        if (mh_batch_each(ptr, len, handler) != 0) mh_log(MH_WARN, "a malformed message batch (%u bytes)", len); \
        free(ptr);                                                                            \
    }

/* ---- encoding: a growing malloc'd buffer ---- */

typedef struct { uint8_t *data; uint64_t len, cap; } mh_buf;

static inline void mh_put(mh_buf *b, const void *src, uint64_t n) {
    if (b->len + n > b->cap) {
        uint64_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n) cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) abort(); /* out of memory: a trap, which the host contains */
        b->data = grown;
        b->cap = cap;
    }
    if (n) memcpy(b->data + b->len, src, n);
    b->len += n;
}

static inline void mh_put_uint(mh_buf *b, uint64_t value, unsigned size) {
    uint8_t le[8];
    for (unsigned i = 0; i < size; i++) le[i] = (uint8_t)(value >> (8 * i));
    mh_put(b, le, size);
}

static inline void mh_put_bytes(mh_buf *b, const void *ptr, uint64_t len) {
    mh_put_uint(b, len, 8);
    mh_put(b, ptr, len);
}

/* An HttpResponse: mh_response_begin, then exactly header_count mh_response_header calls, then
 * mh_response_end with the body, which returns what `handle` returns. */
static inline void mh_response_begin(mh_buf *b, uint16_t status, uint64_t header_count) {
    mh_put_uint(b, status, 2);
    mh_put_uint(b, header_count, 8);
}

static inline void mh_response_header(mh_buf *b, const char *name, const void *value, uint64_t len) {
    mh_put_bytes(b, name, strlen(name));
    mh_put_bytes(b, value, len);
}

static inline uint64_t mh_response_end(mh_buf *b, const void *body, uint64_t len) {
    mh_put_bytes(b, body, len);
    return ((uint64_t)(uintptr_t)b->data << 32) | (uint32_t)b->len;
}

/* A whole response with a content type and a body: what `handle` returns. */
static inline uint64_t mh_respond(uint16_t status, const char *content_type, const void *body, uint64_t len) {
    mh_buf b = {0, 0, 0};
    mh_response_begin(&b, status, 1);
    mh_response_header(&b, "content-type", content_type, strlen(content_type));
    return mh_response_end(&b, body, len);
}

static inline uint64_t mh_respond_text(uint16_t status, const char *text) {
    return mh_respond(status, "text/plain; charset=utf-8", text, strlen(text));
}

/* ---- the bus and logs ---- */

static inline int32_t mh_publish_message(const char *topic, uint64_t topic_len, uint32_t kind, uint32_t id,
                                         const void *payload, uint64_t len) {
    mh_buf b = {0, 0, 0};
    mh_put_bytes(&b, topic, topic_len);
    mh_put_uint(&b, kind, 4);
    mh_put_uint(&b, id, 4);
    mh_put_bytes(&b, payload, len);
    int32_t code = mh_sys_publish_message(b.data, (uint32_t)b.len);
    free(b.data);
    return code;
}

/* Publishes an event; mailboxes reached, or a negative code. */
static inline int32_t mh_publish(const char *topic, const void *payload, uint64_t len) {
    return mh_publish_message(topic, strlen(topic), MH_EVENT, 0, payload, len);
}

/* A batch for mh_publish_batch: mh_batch b = {{0, 0, 0}, 0}; mh_batch_add(&b, ...) for each
 * message; mh_publish_batch(&b, timeout_ms); mh_batch_free(&b). The buffer is a MessageBatch
 * (docs/wire-format.md): the count, patched as messages are added, then the messages. */
typedef struct { mh_buf buf; uint64_t count; } mh_batch;

static inline void mh_batch_add(mh_batch *batch, const char *topic, uint32_t kind, uint32_t id,
                                const void *payload, uint64_t len) {
    if (batch->buf.len == 0) {
        mh_put_uint(&batch->buf, 0, 8);
    }
    mh_put_bytes(&batch->buf, topic, strlen(topic));
    mh_put_uint(&batch->buf, kind, 4);
    mh_put_uint(&batch->buf, id, 4);
    mh_put_bytes(&batch->buf, payload, len);
    batch->count += 1;
    for (unsigned i = 0; i < 8; i++) {
        batch->buf.data[i] = (uint8_t)(batch->count >> (8 * i));
    }
}

/* Publishes the batch's messages in order in one host call, each once every mailbox it goes to
 * has room, waiting up to timeout_ms in all (and never past the export's deadline). Returns how
 * many, from the first, were published, or a negative code (MH_INVALID: refused whole). */
static inline int32_t mh_publish_batch(const mh_batch *batch, int32_t timeout_ms) {
    static const uint8_t empty[8] = {0};
    if (batch->buf.len == 0) {
        return mh_sys_publish_batch(empty, 8, timeout_ms);
    }
    return mh_sys_publish_batch(batch->buf.data, (uint32_t)batch->buf.len, timeout_ms);
}

static inline void mh_batch_free(mh_batch *batch) {
    free(batch->buf.data);
    batch->buf = (mh_buf){0, 0, 0};
    batch->count = 0;
}

/* Answers a request received in on_message (MH_RESPONSE, or MH_ERROR with a reason). */
static inline int32_t mh_reply(const mh_message *request, uint32_t kind, const void *payload, uint64_t len) {
    return mh_publish_message((const char *)request->topic.ptr, request->topic.len, kind, request->id, payload, len);
}

static inline int32_t mh_subscribe(const char *pattern) {
    return mh_sys_subscribe_topic(pattern, (uint32_t)strlen(pattern), 0);
}

/* Sends a request and waits up to timeout_ms. On success (0) *reply is the decoded reply
 * (MH_RESPONSE or MH_ERROR) viewing *buffer, which the caller frees; otherwise a negative code. */
static inline int64_t mh_ask(const char *topic, const void *payload, uint64_t len, int32_t timeout_ms,
                                 mh_message *reply, uint8_t **buffer) {
    mh_buf b = {0, 0, 0};
    mh_put_bytes(&b, topic, strlen(topic));
    mh_put_uint(&b, MH_REQUEST, 4);
    mh_put_uint(&b, 0, 4);
    mh_put_bytes(&b, payload, len);
    int64_t packed = mh_sys_request(b.data, (uint32_t)b.len, timeout_ms);
    free(b.data);
    if (packed < 0) return packed;
    *buffer = (uint8_t *)(uintptr_t)(packed >> 32);
    if (mh_message_decode(*buffer, (uint32_t)packed, reply) != 0) return MH_INVALID;
    return 0;
}

static inline void mh_broadcast(const char *topic, const void *payload, uint64_t len) {
    mh_sys_ws_broadcast(topic, (uint32_t)strlen(topic), payload, (uint32_t)len);
}

/* A log line, printf-style (up to 512 bytes). */
static inline void mh_log(int32_t level, const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(line, sizeof line, format, args);
    va_end(args);
    if (n < 0) return;
    mh_sys_log_at(level, line, (uint32_t)(n < (int)sizeof line ? n : (int)sizeof line - 1));
}

#endif /* MODHOST_H */
