/* SPDX-License-Identifier: MIT */
/* The Varlink server: sockets, connections, framing and limits; see server.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "keys_proto.h"
#include "log.h"
#include "server.h"

/* Stop reading from a client whose replies pile up unread beyond this. */
#define OUTPUT_HIGH_WATER (1u << 20)
/* Calls handled per wakeup of one connection before the others get a turn. */
#define PROCESS_BUDGET 4
/* How long accepting pauses when the process is out of file descriptors. */
#define ACCEPT_PAUSE_USEC (100u * 1000u)
#define LOG_INTERVAL      (10u * 1000000u)

struct connection {
        struct server *server;
        struct connection *prev, *next;
        int fd; /* in the server's epoll set, edge-triggered */
        /* Closes an idle or stalled client.  Armed lazily: `since` only moves
         * forward, so when it fires early it is set again for the deadline
         * as it stands then, instead of being moved on every call. */
        sd_event_source *timer;
        bool timer_armed;
        /* Calls wait in the input: come back for them after the others had a
         * turn.  A timer that is already due, because timers are collected
         * together with socket events (a deferred source would run before
         * the loop looks at any socket again). */
        sd_event_source *resume;
        struct caller caller;
        bool privileged; /* root or the daemon's user: may use the reserve */
        void *data;      /* connection_set_data() */
        struct varlink_buffer in;
        char *out;
        size_t out_size, out_sent, out_alloc;
        uint64_t since; /* start of the current wait: idle, partial message or blocked output */
        bool in_call, call_oneway, call_more, replied_final;
        bool closing;  /* close once the output is flushed */
        bool eof;      /* the client shut its writing side: answer what came, then close */
        bool backlog;  /* complete calls may still wait in the input */
        bool readable; /* the socket may hold unread bytes (edge-triggered: until EAGAIN) */
        bool want_out; /* EPOLLOUT is asked for: answers wait for room in the socket */
        bool deferred; /* the call being answered replies later (connection_defer) */
        bool dead;     /* closed while deferred: connection_resume() frees it */
};

/* Socket events taken from the connections' epoll set at once. */
#define EVENT_BATCH 64

struct server {
        sd_event *event;
        /*
         * The connections' sockets are in an epoll set of their own, which
         * the loop watches as one source: one wakeup takes the events of
         * every ready connection.  (sd-event asks the kernel again before
         * each source it runs, so a source per connection cost a system
         * call per call answered.)  While a batch is handled, `batch`
         * points at it, so that a connection freed meanwhile is struck out
         * of what is left.
         */
        int conn_epfd;
        sd_event_source *conn_source;
        struct epoll_event *batch;
        int batch_i, batch_n;
        sd_event_source *listen_source;
        sd_event_source *accept_pause; /* re-enables accepting after EMFILE */
        int listen_fd;
        struct server_options opts;
        server_dispatch_fn dispatch;
        server_fast_fn fast;
        void *userdata;
        struct connection *connections;
        unsigned n_connections;
        /* Of those, the connections of users other than root and the
         * daemon's own (uid `own_uid`), and how many of them are allowed. */
        unsigned n_ordinary, max_ordinary;
        uid_t own_uid;
};

static uint64_t limit_log_last;
static unsigned limit_log_suppressed;

int server_listen_unix(const char *path, int *ret_fd)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        size_t len = strlen(path);
        mode_t old;
        int r;

        if (len == 0 || len >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, len);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A socket file left by a daemon that died is stale; one that still
         * answers belongs to a running daemon and must not be stolen. */
        if (access(path, F_OK) == 0) {
                int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe < 0)
                        return -errno;
                r = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
                close(probe);
                if (r == 0)
                        return -EADDRINUSE;
                (void)unlink(path);
        }
        /* Authorization is by peer credentials, so anyone may connect. */
        old = umask(0);
        r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
        umask(old);
        if (r < 0)
                return -errno;
        if (chmod(path, 0666) < 0)
                return -errno;
        if (listen(fd, SOMAXCONN) < 0)
                return -errno;
        *ret_fd = TAKE_FD(fd);
        return 0;
}

static void connection_free(struct connection *c)
{
        struct server *s = c->server;

        if (c->dead) {
                if (!c->deferred)
                        free(c);
                return;
        }
        if (c->prev)
                c->prev->next = c->next;
        else
                s->connections = c->next;
        if (c->next)
                c->next->prev = c->prev;
        s->n_connections--;
        if (!c->privileged)
                s->n_ordinary--;
        c->server = NULL;
        if (s->batch)
                for (int i = s->batch_i + 1; i < s->batch_n; i++)
                        if (s->batch[i].data.ptr == c)
                                s->batch[i].data.ptr = NULL;
        (void)epoll_ctl(s->conn_epfd, EPOLL_CTL_DEL, c->fd, NULL);
        c->timer = sd_event_source_disable_unref(c->timer);
        c->resume = sd_event_source_disable_unref(c->resume);
        closep(&c->fd);
        free(c->data);
        c->data = NULL;
        varlink_buffer_done(&c->in);
        /* Replies may hold a token (Create): nothing is left in freed memory. */
        erase(c->out, c->out_alloc);
        free(c->out);
        c->out = NULL;
        c->out_size = c->out_sent = c->out_alloc = 0;
        c->dead = true;
        /* Whoever answers the deferred call still holds it. */
        if (!c->deferred)
                free(c);
}

static int connection_update(struct connection *c);

static int connection_flush(struct connection *c)
{
        while (c->out_sent < c->out_size) {
                ssize_t n = send(c->fd, c->out + c->out_sent, c->out_size - c->out_sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                return 0;
                        return -errno;
                }
                c->out_sent += (size_t)n;
        }
        erase(c->out, c->out_size);
        c->out_size = c->out_sent = 0;
        return 0;
}

static int connection_queue(struct connection *c, const char *msg, size_t len)
{
        bool was_empty = c->out_size == c->out_sent;

        if (c->out_sent > 0 && c->out_sent == c->out_size)
                c->out_size = c->out_sent = 0;
        if (c->out_alloc - c->out_size < len) {
                size_t want = c->out_alloc ? c->out_alloc : 4096;
                char *n;

                while (want - c->out_size < len)
                        want *= 2;
                /* Not realloc: the old block must be erased before it is freed. */
                n = malloc(want);
                if (!n)
                        return -ENOMEM;
                if (c->out) {
                        memcpy(n, c->out, c->out_size);
                        erase(c->out, c->out_alloc);
                        free(c->out);
                }
                c->out = n;
                c->out_alloc = want;
        }
        memcpy(c->out + c->out_size, msg, len);
        c->out_size += len;
        if (was_empty)
                c->since = varlink_now_usec();
        return 0;
}

static int append_to_output(const char *buffer, size_t size, void *data)
{
        return connection_queue(data, buffer, size) < 0 ? -1 : 0;
}

/* Serialize straight into the output buffer: one pass, no copy in between. */
/* Where the next message starts in the output; -ECONNRESET once the connection is closed. */
static int message_begin(struct connection *c, size_t *ret_start)
{
        if (c->dead)
                return -ECONNRESET;
        if (c->out_sent == c->out_size)
                c->out_size = c->out_sent = 0;
        *ret_start = c->out_size;
        return 0;
}

/* End the message begun at `start` with its NUL, or drop what was written of it. */
static int message_end(struct connection *c, size_t start, bool written)
{
        if (written && connection_queue(c, "", 1) >= 0)
                return 0;
        /* A half-written message goes: the stream must stay framed. */
        erase(c->out + start, c->out_size - start);
        c->out_size = start;
        return -ENOMEM;
}

static int connection_send_object(struct connection *c, json_t *obj)
{
        size_t start;
        int r = message_begin(c, &start);

        if (r < 0)
                return r;
        return message_end(c, start,
                           json_dump_callback(obj, append_to_output, c, JSON_COMPACT) >= 0);
}

int connection_reply(struct connection *c, json_t *parameters, bool continues)
{
        json_t *obj;
        int r;

        if (!parameters)
                parameters = json_object();
        if (c->replied_final || (continues && !c->call_more)) {
                json_decref(parameters);
                return -EINVAL;
        }
        if (!continues)
                c->replied_final = true;
        if (c->call_oneway) {
                json_decref(parameters);
                return 0;
        }
        obj = json_pack("{s:o}", "parameters", parameters);
        if (!obj)
                return -ENOMEM;
        if (continues && json_object_set_new(obj, "continues", json_true()) < 0) {
                json_decref(obj);
                return -ENOMEM;
        }
        r = connection_send_object(c, obj);
        json_decref(obj);
        return r;
}

int connection_reply_error(struct connection *c, const char *error, json_t *parameters)
{
        json_t *obj;
        int r;

        if (!parameters)
                parameters = json_object();
        if (c->replied_final) {
                json_decref(parameters);
                return -EINVAL;
        }
        c->replied_final = true;
        if (c->call_oneway) {
                json_decref(parameters);
                return 0;
        }
        obj = json_pack("{s:s, s:o}", "error", error, "parameters", parameters);
        if (!obj)
                return -ENOMEM;
        r = connection_send_object(c, obj);
        json_decref(obj);
        return r;
}

int connection_reply_raw(struct connection *c, const char *msg, size_t len)
{
        size_t start;
        int r;

        if (c->replied_final)
                return -EINVAL;
        c->replied_final = true;
        if (c->call_oneway)
                return 0;
        r = message_begin(c, &start);
        if (r < 0)
                return r;
        return message_end(c, start, connection_queue(c, msg, len) >= 0);
}

int connection_reply_invalid_parameter(struct connection *c, const char *parameter)
{
        return connection_reply_error(c, VARLINK_ERROR_INVALID_PARAMETER,
                                      json_pack("{s:s}", "parameter", parameter));
}

void connection_defer(struct connection *c)
{
        c->deferred = true;
}

void connection_resume(struct connection *c)
{
        int r;

        if (!c->deferred)
                return;
        c->deferred = false;
        if (c->dead) {
                free(c);
                return;
        }
        if (!c->replied_final)
                (void)connection_reply_error(
                    c, KEYS_ERROR_INTERNAL_ERROR,
                    json_pack("{s:s}", "reason", "the method gave no reply"));
        /* The reply leaves now.  Calls that waited (or a hangup already
         * seen) are handled on the next turn (the resume timer), not inside
         * whoever answered; with none, the connection just reads again. */
        c->since = varlink_now_usec();
        c->backlog = varlink_buffer_pending(&c->in) || c->eof;
        r = connection_flush(c);
        if (r >= 0)
                r = connection_update(c);
        if (r < 0)
                connection_free(c);
}

const struct caller *connection_caller(const struct connection *c)
{
        return &c->caller;
}

int connection_fd(const struct connection *c)
{
        return c->fd;
}

void *connection_get_data(const struct connection *c)
{
        return c->data;
}

void connection_set_data(struct connection *c, void *data)
{
        free(c->data);
        c->data = data;
}

bool connection_wants_more(const struct connection *c)
{
        return c->call_more;
}

static void connection_handle_message(struct connection *c, const char *msg, size_t len)
{
        struct varlink_call call;
        int r;

        c->in_call = true;
        c->replied_final = false;
        c->call_oneway = c->call_more = false;

        if (c->server->fast && c->server->fast(c, msg, len, c->server->userdata)) {
                c->in_call = false;
                return;
        }
        r = varlink_call_parse(msg, len, &call);
        if (r < 0) {
                /* Framing is intact, so the connection can go on. */
                (void)connection_reply_error(
                    c, VARLINK_ERROR_INVALID_PARAMETER,
                    json_pack("{s:s}", "parameter",
                              "message: not a JSON object with a string \"method\""));
        } else {
                c->call_oneway = call.oneway;
                c->call_more = call.more && !call.oneway;
                c->server->dispatch(c, &call, c->server->userdata);
                if (!c->replied_final && !c->deferred)
                        (void)connection_reply_error(
                            c, KEYS_ERROR_INTERNAL_ERROR,
                            json_pack("{s:s}", "reason", "the method gave no reply"));
                varlink_call_done(&call);
        }
        c->in_call = false;
}

static bool output_backed_up(const struct connection *c)
{
        return c->out_size - c->out_sent > OUTPUT_HIGH_WATER;
}

/*
 * Handle the complete messages waiting in the input, until replies back
 * up because the client does not read them; the rest waits in the buffer
 * until the output drains.
 */
static int connection_process(struct connection *c)
{
        struct server *s = c->server;

        c->backlog = false;
        for (unsigned n = 0; !c->closing; n++) {
                const char *msg;
                size_t len;
                int r;

                if (c->deferred || output_backed_up(c) || n >= PROCESS_BUDGET) {
                        c->backlog = true;
                        return 0;
                }
                r = varlink_buffer_next(&c->in, &msg, &len);
                if (r == -EMSGSIZE) {
                        log_ratelimited(
                            LOG_WARNING, &limit_log_last, &limit_log_suppressed, LOG_INTERVAL,
                            "client uid %u pid %d sent a message over %zu bytes; "
                            "closing its connection",
                            (unsigned)c->caller.uid, (int)c->caller.pid, s->opts.max_message);
                        c->replied_final = false;
                        c->call_oneway = false;
                        (void)connection_reply_error(
                            c, KEYS_ERROR_MESSAGE_TOO_LARGE,
                            json_pack("{s:I}", "limit", (json_int_t)s->opts.max_message));
                        c->closing = true;
                        return 0;
                }
                if (r <= 0)
                        return r;
                connection_handle_message(c, msg, len);
                c->since = varlink_now_usec();
        }
        return 0;
}

/* Read one chunk (the loop comes back while there may be more) and handle it. */
static int connection_read(struct connection *c)
{
        char *p;
        size_t room;
        ssize_t n;
        int r;

        r = varlink_buffer_reserve(&c->in, 4096, &p, &room);
        if (r < 0)
                return r;
        if (room > 65536)
                room = 65536;
        do
                n = recv(c->fd, p, room, MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                if (errno != EAGAIN)
                        return -errno;
                c->readable = false;
                return 0;
        }
        /* A short read emptied the socket; what arrives later is a new edge. */
        if ((size_t)n < room)
                c->readable = false;
        if (n == 0) {
                /* A client may send its calls and shut its writing side (as
                 * socat does): it still gets every answer. */
                c->eof = true;
                return connection_process(c);
        }
        bool had_partial = varlink_buffer_pending(&c->in);
        varlink_buffer_commit(&c->in, (size_t)n);
        if (!had_partial)
                c->since = varlink_now_usec();
        return connection_process(c);
}

static int on_timer(sd_event_source *es, uint64_t usec, void *userdata)
{
        struct connection *c = userdata;
        uint64_t deadline = c->since + c->server->opts.client_timeout;

        c->timer_armed = false;
        if (varlink_now_usec() < deadline) {
                /* Active since it was armed: wait for the deadline as it is now. */
                if (sd_event_source_set_time(es, deadline) >= 0 &&
                    sd_event_source_set_enabled(es, SD_EVENT_ONESHOT) >= 0) {
                        c->timer_armed = true;
                        return 0;
                }
        }

        log_ratelimited(LOG_INFO, &limit_log_last, &limit_log_suppressed, LOG_INTERVAL,
                        "client uid %u pid %d was idle or stalled for longer than the client "
                        "timeout; closing its connection",
                        (unsigned)c->caller.uid, (int)c->caller.pid);
        connection_free(c);
        return 0;
}

/*
 * One turn of a connection: send what is queued, handle the calls waiting
 * (at most PROCESS_BUDGET of them), read more only when none wait, and
 * close once a finished client has all its answers.  Every connection gets
 * a turn before any gets a second one.
 */
/* No reading while calls wait or answers pile up unread: the input stays bounded. */
static bool may_read(const struct connection *c)
{
        return c->readable && !c->closing && !c->eof && !c->backlog && !c->deferred &&
               !output_backed_up(c);
}

static void connection_turn(struct connection *c, uint32_t revents)
{
        int r = 0;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLERR))
                c->readable = true;
        if (revents & EPOLLOUT)
                r = connection_flush(c);
        if (r >= 0 && c->backlog)
                r = connection_process(c); /* waiting calls first */
        if (r >= 0 && may_read(c))
                r = connection_read(c);
        if (r >= 0)
                r = connection_flush(c);
        if (r >= 0 && !c->deferred && (c->closing || (c->eof && !c->backlog)) &&
            c->out_size == c->out_sent)
                r = -ECONNRESET;
        if (r >= 0)
                r = connection_update(c);
        if (r < 0) {
                if (r != -ECONNRESET && r != -EPIPE)
                        log_debug("connection of uid %u closed: %s", (unsigned)c->caller.uid,
                                  strerror(-r));
                connection_free(c);
        }
}

static int on_connections(sd_event_source *es, int fd, uint32_t revents, void *userdata)
{
        struct server *s = userdata;
        struct epoll_event evs[EVENT_BATCH];
        int n = epoll_wait(s->conn_epfd, evs, EVENT_BATCH, 0);

        if (n < 0) {
                if (errno != EINTR)
                        log_ratelimited(LOG_WARNING, &limit_log_last, &limit_log_suppressed,
                                        LOG_INTERVAL, "waiting for connections failed: %m");
                return 0; /* an error would turn the source off for good */
        }
        s->batch = evs;
        s->batch_n = n;
        for (s->batch_i = 0; s->batch_i < n; s->batch_i++) {
                struct connection *c = evs[s->batch_i].data.ptr;
                uint32_t events = evs[s->batch_i].events;

                if (!c)
                        continue; /* freed by an earlier turn of this batch */
                /* Waiting for the daemon: note what the socket has, and act
                 * on it once the answer is out (connection_resume()). */
                if (c->deferred) {
                        if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                                c->readable = true;
                        continue;
                }
                connection_turn(c, events);
        }
        s->batch = NULL;
        return 0;
}

static int on_resume(sd_event_source *es, uint64_t usec, void *userdata)
{
        connection_turn(userdata, 0);
        return 0;
}

/* Whether to come back for the connection, and the deadline of its current wait. */
static int connection_update(struct connection *c)
{
        int r;

        /* Waiting for the daemon: nothing is read, and a hangup waits until
         * the answer is ready too (on_connections() only notes events). */
        if (c->deferred) {
                r = sd_event_source_set_enabled(c->resume, SD_EVENT_OFF);
                if (r >= 0)
                        r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
                c->timer_armed = false;
                return r;
        }
        /* EPOLLOUT only while answers wait: asked for always, every read of
         * an answer by the client would wake the loop.  Changing the events
         * also reports anew what is ready. */
        if (c->want_out != (c->out_size > c->out_sent)) {
                struct epoll_event ev = {.data.ptr = c};

                c->want_out = !c->want_out;
                ev.events = EPOLLIN | EPOLLET | (c->want_out ? EPOLLOUT : 0);
                if (epoll_ctl(c->server->conn_epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0)
                        return -errno;
        }
        /* Calls left waiting, or a read that filled the buffer: no new edge
         * will come for those, so come back after the others had a turn.
         * Answers backed up wait for the socket to take more (EPOLLOUT). */
        r = sd_event_source_set_enabled(c->resume, !c->closing && !output_backed_up(c) &&
                                                           (c->backlog || may_read(c))
                                                       ? SD_EVENT_ONESHOT
                                                       : SD_EVENT_OFF);
        if (r < 0)
                return r;
        if (c->timer_armed)
                return 0;
        r = sd_event_source_set_time(c->timer, c->since + c->server->opts.client_timeout);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT);
        c->timer_armed = r >= 0;
        return r;
}

static void read_peer(int fd, struct caller *ret)
{
        struct ucred uc;
        socklen_t sl = sizeof(uc);
        socklen_t gl = sizeof(ret->groups);

        *ret = (struct caller){.uid = (uid_t)-1, .gid = (gid_t)-1};
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &sl) == 0) {
                ret->uid = uc.uid;
                ret->gid = uc.gid;
                ret->pid = uc.pid;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, ret->groups, &gl) == 0)
                ret->n_groups = gl / sizeof(gid_t);
}

static unsigned connections_of(const struct server *s, uid_t uid)
{
        unsigned n = 0;

        for (const struct connection *c = s->connections; c; c = c->next)
                n += c->caller.uid == uid;
        return n;
}

enum refusal {
        REFUSE_TOTAL,
        REFUSE_PER_UID,
        REFUSE_ORDINARY,
        _REFUSE_MAX,
};

/*
 * Each limit's log line is rate-limited on its own: a flood refused at the
 * per-user limit must not hide that root was refused at the total.
 */
static void refuse_connection(struct server *s, int fd, unsigned limit, enum refusal which)
{
        static const char *const names[_REFUSE_MAX] = {
            [REFUSE_TOTAL] = "total",
            [REFUSE_PER_UID] = "per-user",
            [REFUSE_ORDINARY] = "ordinary users'",
        };
        static uint64_t log_last[_REFUSE_MAX];
        static unsigned log_suppressed[_REFUSE_MAX];
        json_t *obj = json_pack("{s:s, s:{s:I}}", "error", KEYS_ERROR_TOO_MANY_CONNECTIONS,
                                "parameters", "limit", (json_int_t)limit);
        size_t len;
        char *msg = obj ? varlink_message_dump(obj, &len) : NULL;

        /* Logged before the client is told, so whoever reads the refusal
         * finds the line already written. */
        log_ratelimited(LOG_WARNING, &log_last[which], &log_suppressed[which], LOG_INTERVAL,
                        "%s connection limit of %u reached; refusing new clients", names[which],
                        limit);
        if (msg)
                (void)send(fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        free(msg);
        json_decref(obj);
        close(fd);
}

int server_add_connection(struct server *s, int fd)
{
        struct connection *c;
        int r;

        if (s->n_connections >= s->opts.max_connections) {
                refuse_connection(s, fd, s->opts.max_connections, REFUSE_TOTAL);
                return -EUSERS;
        }
        c = calloc(1, sizeof(*c));
        if (!c) {
                close(fd);
                return -ENOMEM;
        }
        read_peer(fd, &c->caller);
        /* sshd and sudo call as root: key logins depend on the reserve. */
        c->privileged = c->caller.uid == 0 || c->caller.uid == s->own_uid;
        if (!c->privileged && s->opts.max_connections_per_uid &&
            connections_of(s, c->caller.uid) >= s->opts.max_connections_per_uid) {
                free(c);
                refuse_connection(s, fd, s->opts.max_connections_per_uid, REFUSE_PER_UID);
                return -EUSERS;
        }
        if (!c->privileged && s->n_ordinary >= s->max_ordinary) {
                free(c);
                refuse_connection(s, fd, s->max_ordinary, REFUSE_ORDINARY);
                return -EUSERS;
        }
        c->server = s;
        c->fd = fd;
        c->since = varlink_now_usec();
        /* The input may hold tokens: erase it as it is consumed. */
        varlink_buffer_init(&c->in, s->opts.max_message, true);
        c->next = s->connections;
        if (c->next)
                c->next->prev = c;
        s->connections = c;
        s->n_connections++;
        if (!c->privileged)
                s->n_ordinary++;

        /* Edge-triggered: a socket with unread bytes is read until it is
         * empty (or the turn ends and the resume timer brings it back), not
         * reported again by every wait. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = c};
        r = epoll_ctl(s->conn_epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_add_time(s->event, &c->timer, CLOCK_MONOTONIC,
                                      c->since + s->opts.client_timeout, 0, on_timer, c);
        c->timer_armed = r >= 0;
        if (r >= 0)
                r = sd_event_add_time(s->event, &c->resume, CLOCK_MONOTONIC, 1, 1, on_resume, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->resume, SD_EVENT_OFF);

        if (r < 0) {
                connection_free(c);
                return r;
        }
        return 0;
}

static int on_accept_pause_end(sd_event_source *es, uint64_t usec, void *userdata)
{
        struct server *s = userdata;

        if (s->listen_source)
                (void)sd_event_source_set_enabled(s->listen_source, SD_EVENT_ON);
        return 0;
}

static void pause_accepting(struct server *s)
{
        uint64_t until = varlink_now_usec() + ACCEPT_PAUSE_USEC;

        if (sd_event_source_set_enabled(s->listen_source, SD_EVENT_OFF) < 0)
                return;
        if (s->accept_pause) {
                (void)sd_event_source_set_time(s->accept_pause, until);
                (void)sd_event_source_set_enabled(s->accept_pause, SD_EVENT_ONESHOT);
        } else if (sd_event_add_time(s->event, &s->accept_pause, CLOCK_MONOTONIC, until, 0,
                                     on_accept_pause_end, s) < 0)
                (void)sd_event_source_set_enabled(s->listen_source, SD_EVENT_ON);
}

static int on_accept(sd_event_source *es, int lfd, uint32_t revents, void *userdata)
{
        struct server *s = userdata;

        for (unsigned i = 0; i < 64; i++) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

                if (fd < 0) {
                        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                                return 0;
                        log_ratelimited(LOG_WARNING, &limit_log_last, &limit_log_suppressed,
                                        LOG_INTERVAL, "accept failed: %m; pausing new connections");
                        /* The connection stays queued and the listener readable:
                         * without a pause the loop would spin on it. */
                        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                            errno == ENOMEM)
                                pause_accepting(s);
                        return 0;
                }
                (void)server_add_connection(s, fd);
        }
        return 0;
}

int server_new(sd_event *event, int listen_fd, const struct server_options *opts,
               server_dispatch_fn dispatch, void *userdata, struct server **ret)
{
        struct server *s = calloc(1, sizeof(*s));
        int r;

        if (!s)
                return -ENOMEM;
        s->event = event;
        s->listen_fd = listen_fd;
        s->opts = *opts;
        s->max_ordinary = opts->reserved_connections < opts->max_connections
                              ? opts->max_connections - opts->reserved_connections
                              : 0;
        s->own_uid = geteuid();
        s->dispatch = dispatch;
        s->userdata = userdata;
        s->conn_epfd = epoll_create1(EPOLL_CLOEXEC);
        r = s->conn_epfd < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_add_io(event, &s->conn_source, s->conn_epfd, EPOLLIN, on_connections,
                                    s);
        /* Without a listener, connections come through server_add_connection(). */
        if (r >= 0 && listen_fd >= 0) {
                int fl = fcntl(listen_fd, F_GETFL);
                if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
                        r = -errno;
                else
                        r = sd_event_add_io(event, &s->listen_source, listen_fd, EPOLLIN, on_accept,
                                            s);
        }
        if (r < 0) {
                sd_event_source_disable_unref(s->conn_source);
                if (s->conn_epfd >= 0)
                        close(s->conn_epfd);
                free(s);
                return r;
        }
        *ret = s;
        return 0;
}

void server_set_fast_path(struct server *s, server_fast_fn fast)
{
        s->fast = fast;
}

void server_stop_listening(struct server *s)
{
        s->listen_source = sd_event_source_disable_unref(s->listen_source);
        s->accept_pause = sd_event_source_disable_unref(s->accept_pause);
}

void server_free(struct server *s)
{
        if (!s)
                return;
        server_stop_listening(s);
        while (s->connections)
                connection_free(s->connections);
        sd_event_source_disable_unref(s->conn_source);
        close(s->conn_epfd);
        free(s);
}

unsigned server_connection_count(const struct server *s)
{
        return s->n_connections;
}
