/* hello-c: a module in C, through modules/c-sdk/modhost.h (ABI 1).
 *
 *   GET /m/hello-c               answers `hello from C`
 *   ANY /m/hello-c/echo?...      answers `METHOD PATH?QUERY (N bytes, x-token: T)`
 *   requests on `hello.c`        are answered `hello, PAYLOAD` (an Error reply when empty):
 *                                `POST /m/sender/ask?topic=hello.c` makes the Rust `sender` ask
 *   events on `hello.c`          are counted
 *   GET /m/hello-c/count         answers how many requests, bus questions and events it served
 */
#include "modhost.h"

MODHOST_EXPORTS()

static uint32_t served, answered, events;

MODHOST_EXPORT("init") void init(void) {
    int32_t code = mh_subscribe("hello.c");
    if (code < 0) {
        mh_log(MH_ERROR_LEVEL, "subscribing to hello.c failed: %d", code);
        abort(); /* refuses this version: the host keeps the previous one */
    }
    mh_log(MH_INFO, "hello-c started");
}

MODHOST_EXPORT("handle") uint64_t handle(uint8_t *ptr, uint32_t len) {
    mh_request req;
    uint64_t out;
    served++;
    if (mh_request_decode(ptr, len, &req) != 0) {
        out = mh_respond_text(400, "malformed request");
    } else if (req.path.len == 0 || mh_equals(req.path, "/")) {
        out = mh_respond_text(200, "hello from C");
    } else if (mh_equals(req.path, "/echo")) {
        char text[1024];
        mh_bytes token = {(const uint8_t *)"-", 1};
        mh_request_header(&req, "x-token", &token);
        int n = snprintf(text, sizeof text, "%.*s %.*s%s%.*s (%llu bytes, x-token: %.*s)",
                         (int)req.method.len, (const char *)req.method.ptr, (int)req.path.len,
                         (const char *)req.path.ptr, req.query.len ? "?" : "", (int)req.query.len,
                         (const char *)req.query.ptr, (unsigned long long)req.body.len,
                         (int)token.len, (const char *)token.ptr);
        out = mh_respond(200, "text/plain; charset=utf-8", text, n < (int)sizeof text ? (uint64_t)n : sizeof text - 1);
    } else if (mh_equals(req.path, "/count")) {
        char text[96];
        int n = snprintf(text, sizeof text, "{\"served\":%u,\"answered\":%u,\"events\":%u}", served, answered, events);
        out = mh_respond(200, "application/json", text, (uint64_t)n);
    } else {
        out = mh_respond_text(404, "not found");
    }
    free(ptr); /* the request buffer is ours; the views above are not used past here */
    return out;
}

/* Every bus message, one at a time, whether it came alone (`on_message`) or with others queued
 * behind it (`on_messages`): MODHOST_MESSAGE_EXPORTS below defines both around it. */
static void on_bus_message(const mh_message *msg) {
    if (msg->kind == MH_EVENT && mh_equals(msg->topic, "hello.c")) {
        events++;
    } else if (msg->kind == MH_REQUEST && mh_equals(msg->topic, "hello.c")) {
        if (msg->payload.len == 0) {
            const char *reason = "say who to greet";
            mh_reply(msg, MH_ERROR, reason, strlen(reason));
        } else {
            char text[600];
            int n = snprintf(text, sizeof text, "hello, %.*s", (int)(msg->payload.len > 512 ? 512 : msg->payload.len),
                             (const char *)msg->payload.ptr);
            answered++;
            mh_reply(msg, MH_RESPONSE, text, (uint64_t)n);
        }
    }
}

MODHOST_MESSAGE_EXPORTS(on_bus_message)

MODHOST_EXPORT("drain") int32_t drain(void) { return 0; }
