/* SPDX-License-Identifier: MIT */
/*
 * Varlink messages as JSON trees, and a small blocking client.
 *
 * A call is {"method": "iface.Method", "parameters": {...}, "oneway"?: bool,
 * "more"?: bool}; a reply is {"parameters": {...}, "continues"?: bool} or
 * {"error": "iface.ErrorName", "parameters": {...}}.
 *
 * The framing and the transport (connect, send, receive one message, the
 * deadline) are in varlink_wire.h, included here; this half decodes and
 * builds the JSON with jansson, for the daemon and apikeyctl.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "macro.h"
#include "varlink_wire.h"

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

/*
 * free() that erases the whole block first, for jansson:
 * json_set_alloc_funcs(malloc, erasing_free) at start, before any JSON is
 * made.  The trees and strings jansson frees held messages, and messages
 * carry tokens (a call's auth, Create's reply), so none may go back to
 * the allocator readable.
 */
void erasing_free(void *p);

/* --- Client --- */

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
