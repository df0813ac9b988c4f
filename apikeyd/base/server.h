/* SPDX-License-Identifier: MIT */
/*
 * The Varlink server: the listening socket, one connection per client on an
 * sd-event loop, NUL framing, limits (message size, connection count,
 * timeouts), peer credentials, and the reply helpers method handlers use.
 *
 * Handlers run synchronously on the loop, one call at a time per
 * connection, so replies leave in the order calls arrived (pipelining
 * works).  A handler replies exactly once, or with `continues` several
 * times when the call asked for `more`.  For `oneway` calls the server
 * drops whatever the handler replies.  A handler may also defer its reply
 * (connection_defer()) to a later event: the connection's next calls then
 * wait, so the order holds.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "macro.h"
#include "varlink.h"

#define SERVER_MAX_GROUPS 256

struct server;
struct connection;

/* Who is at the other end, from SO_PEERCRED and SO_PEERGROUPS. */
struct caller {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        size_t n_groups;
        gid_t groups[SERVER_MAX_GROUPS];
};

typedef void (*server_dispatch_fn)(struct connection *c, struct varlink_call *call, void *userdata);
/*
 * A cheaper way to answer some calls: given the raw message, it either
 * replies exactly once and returns true, or leaves the message untouched
 * and returns false, and the call goes through the decoder and
 * server_dispatch_fn as usual.  It must answer only calls whose meaning it
 * reads exactly as the decoder would.
 */
typedef bool (*server_fast_fn)(struct connection *c, const char *msg, size_t len, void *userdata);

struct server_options {
        size_t max_message; /* bytes */
        unsigned max_connections;
        /* Of each caller other than root and the daemon's own user. */
        unsigned max_connections_per_uid;
        /* Of max_connections, never given to those callers (0: none). */
        unsigned reserved_connections;
        uint64_t client_timeout; /* µs */
};

/* Bind a listening socket at `path` (mode 0666), replacing a stale one. */
int server_listen_unix(const char *path, int *ret_fd) _warn_unused_;

/* `listen_fd` < 0: no listener; connections come through server_add_connection(). */
int server_new(sd_event *event, int listen_fd, const struct server_options *opts,
               server_dispatch_fn dispatch, void *userdata, struct server **ret) _warn_unused_;
/*
 * Serve a connected stream socket (non-blocking, close-on-exec), taking
 * ownership of it; used by the listener, and by tests and fuzzers over a
 * socketpair.  Refused (and closed) beyond the connection limits: -EUSERS.
 * Root and the daemon's own user are refused only when all max_connections
 * are taken; everyone else also at max_connections_per_uid, and when they
 * hold max_connections - reserved_connections together, so however many
 * users flood the socket, the reserve stays for sshd, sudo and the daemon.
 */
int server_add_connection(struct server *s, int fd);
/* Try `fast` on every message before decoding it (NULL: never). */
void server_set_fast_path(struct server *s, server_fast_fn fast);
/* Stop accepting; connections in flight stay. */
void server_stop_listening(struct server *s);
/* Close every connection and free the server (not the listening fd's owner's path). */
void server_free(struct server *s);
unsigned server_connection_count(const struct server *s);

const struct caller *connection_caller(const struct connection *c);
/* The connection's socket, for reading more of the peer (SO_PEERPIDFD). */
int connection_fd(const struct connection *c);

/*
 * What the layer above keeps per connection (the caller's resolved
 * identity): a malloc()ed block, freed with the connection.
 */
void *connection_get_data(const struct connection *c);
void connection_set_data(struct connection *c, void *data);
/* Whether the call being handled asked for `more`. */
bool connection_wants_more(const struct connection *c);

/*
 * Answer the call being handled later: the handler returns without a
 * reply, and a later event on the loop replies as usual and then calls
 * connection_resume().  Meanwhile the connection handles none of its
 * further calls (they wait in the input), reads nothing and has no idle
 * timeout: the wait is the daemon's, not the client's.  If the connection
 * is closed meanwhile (the server is freed, or sending failed), replies go
 * nowhere and connection_resume() frees what is left of it.
 */
void connection_defer(struct connection *c);
/* The deferred call is answered: go on with the calls that waited. */
void connection_resume(struct connection *c);

/* Reply with `parameters` (stolen; NULL = {}); `continues` only when the call asked for more. */
int connection_reply(struct connection *c, json_t *parameters, bool continues);
/* Reply with a Varlink error; `parameters` stolen (NULL = {}). */
int connection_reply_error(struct connection *c, const char *error, json_t *parameters);
/* Reply with a whole message the caller serialized (a JSON object, without the NUL). */
int connection_reply_raw(struct connection *c, const char *msg, size_t len);
/* org.varlink.service.InvalidParameter naming `parameter`. */
int connection_reply_invalid_parameter(struct connection *c, const char *parameter);
