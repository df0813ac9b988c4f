/* SPDX-License-Identifier: MIT */
/*
 * What etcd's JSON gateway (etcd 3.4, /v3/...) sends, decoded: pure
 * functions over the bytes received, no I/O, so that every one of them is
 * fuzzed (tests/fuzz/fuzz_etcd_decode.c).  The gateway writes gRPC messages
 * as JSON: keys and values in base64, int64 and uint64 as decimal strings,
 * fields at their zero value left out (a PUT event has no "type").
 *
 *   unary error   {"error":"...","message":"...","code":14}
 *   stream error  {"error":{"grpc_code":14,"http_code":503,"message":"...",...}}
 *   watch         {"result":{"header":{...},"created":true}}
 *                 {"result":{"header":{...},"events":[{"type":"DELETE","kv":{...}},...]}}
 *                 {"result":{"header":{...}}}                       progress notification
 *                 {"result":{"header":{...},"canceled":true,"compact_revision":"3"}}
 *   range         {"header":{...},"kvs":[{"key":"...","value":"...",...}],"more":true,"count":"7"}
 *   txn           {"header":{...},"succeeded":true,"responses":[...]}
 *   authenticate  {"header":{...},"token":"..."}
 *   header        {"cluster_id":"...","member_id":"...","revision":"5","raft_term":"2"}
 *
 * The watch stream is one JSON object a line; etcd_lines splits it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* A line of the watch stream longer than this is refused (the stream is then restarted). */
#define ETCD_LINE_MAX (64u * 1024 * 1024)
/* Decoded keys are at most this long; values are bounded by the line. */
#define ETCD_KEY_MAX 1024

struct etcd_header {
        uint64_t cluster_id, member_id, raft_term;
        int64_t revision; /* 0 when absent (a canceled watch's header has none) */
};

struct etcd_kv {
        char *key; /* decoded, NUL-terminated (a key with a NUL in it is refused) */
        size_t key_len;
        uint8_t *value; /* decoded; NULL with value_len 0 when empty or absent */
        size_t value_len;
        int64_t create_revision, mod_revision, version;
};

enum etcd_event_type {
        ETCD_EVENT_PUT,
        ETCD_EVENT_DELETE,
};

struct etcd_event {
        enum etcd_event_type type;
        struct etcd_kv kv;
};

enum etcd_watch_kind {
        ETCD_WATCH_CREATED,  /* the watch is in place */
        ETCD_WATCH_EVENTS,   /* one or more events (of one revision or several) */
        ETCD_WATCH_PROGRESS, /* nothing happened up to header.revision */
        ETCD_WATCH_CANCELED, /* the server ended the watch; compact_revision if compacted */
        ETCD_WATCH_ERROR,    /* a stream error: grpc_code and message */
};

struct etcd_watch_message {
        enum etcd_watch_kind kind;
        struct etcd_header header;
        struct etcd_event *events;
        size_t n_events;
        int64_t compact_revision; /* > 0: the revision asked for is compacted */
        int grpc_code;            /* ETCD_WATCH_ERROR, or a cancel's reason (0 if none) */
        char *message;            /* ETCD_WATCH_ERROR or cancel_reason; may be NULL */
};

/*
 * Decode one line of the watch stream (without its newline).  0, or
 * -EBADMSG for anything that is not one of the messages above: not JSON,
 * a number that is not a decimal in range, base64 that does not decode, a
 * revision that is negative, events out of revision order.  Free with
 * etcd_watch_message_done() whatever the result.
 */
int etcd_decode_watch_line(const char *line, size_t len,
                           struct etcd_watch_message *ret) _warn_unused_;
void etcd_watch_message_done(struct etcd_watch_message *m);

struct etcd_range {
        struct etcd_header header;
        struct etcd_kv *kvs;
        size_t n_kvs;
        bool more;
        int64_t count;
};

/*
 * A unary answer: a range's (`ret` filled), a txn's (`ret_succeeded`), or
 * an error: -EIO with its gRPC code in `*ret_code` and its message (a
 * malloc'd copy) in `*ret_message`.  -EBADMSG for anything else.  Either
 * output may be NULL.  etcd_range_done() frees what the range holds.
 */
int etcd_decode_range(const char *body, size_t len, struct etcd_range *ret, int *ret_code,
                      char **ret_message) _warn_unused_;
void etcd_range_done(struct etcd_range *r);

int etcd_decode_txn(const char *body, size_t len, struct etcd_header *ret_header,
                    bool *ret_succeeded, int *ret_code, char **ret_message) _warn_unused_;

/*
 * An answer of /v3/auth/authenticate: the token (malloc'd) in `*ret_token`,
 * or an error as above (-EIO, with code and message), or -EBADMSG.
 */
int etcd_decode_auth(const char *body, size_t len, char **ret_token, int *ret_code,
                     char **ret_message) _warn_unused_;

/*
 * A host's report, which each host writes under <prefix>/hosts/<host>/status
 * and a manager reads (hosts may write there, so it is untrusted too):
 * {"applied_revision":"123","reported_at":1700000000000000} (µs, realtime).
 * 0 or -EBADMSG (unknown fields are ignored, for later versions).
 */
struct etcd_host_report {
        int64_t applied_revision;
        uint64_t reported_at;
};

int etcd_decode_host_report(const void *value, size_t len,
                            struct etcd_host_report *ret) _warn_unused_;

/*
 * A host's last use of a key, which each host writes under
 * <prefix>/hosts/<host>/used/<id> and a manager reads (untrusted too):
 * {"at":1700000000000000,"service":"sshd","from":"192.0.2.1"} (µs,
 * realtime; service and from optional).  The texts, at most
 * ETCD_USE_TEXT_MAX bytes without control characters, are copied into
 * `ret` ("" when absent).  0 or -EBADMSG (unknown fields are ignored).
 */
#define ETCD_USE_TEXT_MAX 256

struct etcd_host_use {
        uint64_t at;
        char service[ETCD_USE_TEXT_MAX + 1];
        char from[ETCD_USE_TEXT_MAX + 1];
};

int etcd_decode_host_use(const void *value, size_t len, struct etcd_host_use *ret) _warn_unused_;

/*
 * Splitting a stream into lines: feed it what arrives, in any pieces; it
 * calls `fn` once per complete line (without the newline; a '\r' before it
 * is dropped; empty lines are skipped).  A line longer than `max` is
 * -E2BIG and the buffer is left unusable until etcd_lines_reset().  `fn`'s
 * negative result stops the feed and is returned.
 */
struct etcd_lines {
        char *buf;
        size_t len, allocated, max;
};

typedef int (*etcd_line_fn)(const char *line, size_t len, void *userdata);

void etcd_lines_init(struct etcd_lines *l, size_t max);
int etcd_lines_feed(struct etcd_lines *l, const char *data, size_t len, etcd_line_fn fn,
                    void *userdata) _warn_unused_;
void etcd_lines_reset(struct etcd_lines *l);

/* Base64 of `len` bytes (etcd's keys and values in requests), malloc'd, NUL-terminated. */
char *etcd_base64(const void *data, size_t len);
