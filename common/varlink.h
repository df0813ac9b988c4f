/* SPDX-License-Identifier: MIT */
/*
 * Varlink framing and a small blocking client.
 *
 * A Varlink message is one JSON object followed by a NUL byte.  A call is
 * {"method": "iface.Method", "parameters": {...}, "oneway"?: bool,
 * "more"?: bool}; a reply is {"parameters": {...}, "continues"?: bool} or
 * {"error": "iface.ErrorName", "parameters": {...}}.
 *
 * The framer (varlink_buffer) is shared by the daemon and its clients; the
 * client calls keep one deadline on the monotonic clock for connect, send
 * and receive, so a stalled daemon never hangs the caller (the PAM module
 * runs inside sshd).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "macro.h"

#define VARLINK_DEFAULT_MAX_MESSAGE (64u * 1024u)

/* Growing input buffer that hands out complete NUL-terminated messages. */
struct varlink_buffer {
        char *data;
        size_t size;     /* bytes in data */
        size_t consumed; /* bytes at the front already handed out */
        size_t alloc;
        size_t max_message;
        bool secret; /* erase memory before freeing or moving it */
};

void varlink_buffer_init(struct varlink_buffer *b, size_t max_message, bool secret);
void varlink_buffer_done(struct varlink_buffer *b);

/*
 * Room to read into: at least `min` free bytes at `*ret_ptr`, `*ret_len` of
 * them.  Then varlink_buffer_commit(b, n) after reading n bytes.
 */
int varlink_buffer_reserve(struct varlink_buffer *b, size_t min, char **ret_ptr,
                           size_t *ret_len) _warn_unused_;
void varlink_buffer_commit(struct varlink_buffer *b, size_t n);

/*
 * Next complete message: 1 with `*ret_msg` (NUL-terminated, valid until the
 * next call on `b`) and its length without the NUL; 0 if none is complete
 * yet; -EMSGSIZE if the pending message already exceeds max_message.
 */
int varlink_buffer_next(struct varlink_buffer *b, const char **ret_msg,
                        size_t *ret_len) _warn_unused_;

/* Whether bytes of an incomplete message are pending. */
bool varlink_buffer_pending(const struct varlink_buffer *b);

/* A decoded call. `parameters` is borrowed from `root`. */
struct varlink_call {
        json_t *root;
        const char *method;
        json_t *parameters; /* always an object (empty if absent) */
        bool oneway, more, upgrade;
};

/*
 * Decode one call message (untrusted bytes). 0, or -EBADMSG for anything
 * that is not a JSON object with a string "method", an optional object
 * "parameters" and optional booleans "oneway", "more", "upgrade" (other
 * members are ignored, as Varlink asks).  Free with varlink_call_done().
 */
int varlink_call_parse(const char *msg, size_t len, struct varlink_call *ret) _warn_unused_;
void varlink_call_done(struct varlink_call *c);

/* Serialize `obj` compactly and append a NUL; free() the result. */
char *varlink_message_dump(const json_t *obj, size_t *ret_len);

/* --- Client --- */

/* Deadline helpers on CLOCK_MONOTONIC, in µs. */
uint64_t varlink_now_usec(void);

/*
 * Connect to the UNIX socket at `path` before `deadline`.  The fd is
 * non-blocking, close-on-exec and never 0, 1 or 2.  On success, the peer's
 * uid in `*ret_peer_uid` (if non-NULL).  Negative errno: -ENOENT /
 * -ECONNREFUSED when no daemon listens, -ETIMEDOUT.
 */
int varlink_connect(const char *path, uint64_t deadline, int *ret_fd,
                    uid_t *ret_peer_uid) _warn_unused_;

/* Send one message (with its NUL) completely before `deadline`. */
int varlink_send(int fd, const char *msg, size_t len, uint64_t deadline) _warn_unused_;

/*
 * Receive one reply before `deadline` and decode it: `*ret_reply` is the
 * whole object (json_decref it); `*ret_error` points into it (NULL if the
 * reply is not an error), `*ret_parameters` too (an object), and
 * `*ret_continues` tells whether more replies follow.  -EBADMSG on a
 * malformed reply, -ECONNRESET if the daemon closed the connection.
 */
int varlink_recv(int fd, struct varlink_buffer *b, uint64_t deadline, json_t **ret_reply,
                 const char **ret_error, json_t **ret_parameters,
                 bool *ret_continues) _warn_unused_;

/*
 * One complete call: send {"method", "parameters"} and receive the single
 * reply.  `parameters` may be NULL.  Returns 0 (the reply's fields as in
 * varlink_recv), or a negative errno for transport failures.  Secret
 * parameters are erased from the serialized request before it is freed.
 */
int varlink_call(int fd, const char *method, json_t *parameters, uint64_t deadline,
                 json_t **ret_reply, const char **ret_error, json_t **ret_parameters) _warn_unused_;
