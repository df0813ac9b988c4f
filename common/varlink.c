/* SPDX-License-Identifier: MIT */
/* Varlink framing, call decoding and the blocking client; see varlink.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "varlink.h"

void varlink_buffer_init(struct varlink_buffer *b, size_t max_message, bool secret)
{
        *b = (struct varlink_buffer){
            .max_message = max_message ? max_message : VARLINK_DEFAULT_MAX_MESSAGE,
            .secret = secret,
        };
}

void varlink_buffer_done(struct varlink_buffer *b)
{
        if (b->data && b->secret)
                erase(b->data, b->alloc);
        free(b->data);
        *b = (struct varlink_buffer){.max_message = b->max_message, .secret = b->secret};
}

/* Move unconsumed bytes to the front, erasing what they leave behind. */
static void buffer_compact(struct varlink_buffer *b)
{
        size_t rest;

        if (b->consumed == 0)
                return;
        rest = b->size - b->consumed;
        memmove(b->data, b->data + b->consumed, rest);
        if (b->secret)
                erase(b->data + rest, b->size - rest);
        b->size = rest;
        b->consumed = 0;
}

int varlink_buffer_reserve(struct varlink_buffer *b, size_t min, char **ret_ptr, size_t *ret_len)
{
        buffer_compact(b);
        if (b->alloc - b->size < min) {
                size_t want = b->alloc ? b->alloc : 4096;
                char *n;

                while (want - b->size < min)
                        want *= 2;
                if (b->secret) {
                        /* Never leave a copy behind in a block realloc frees. */
                        n = malloc(want);
                        if (!n)
                                return -ENOMEM;
                        if (b->data) {
                                memcpy(n, b->data, b->size);
                                erase(b->data, b->alloc);
                                free(b->data);
                        }
                } else {
                        n = realloc(b->data, want);
                        if (!n)
                                return -ENOMEM;
                }
                b->data = n;
                b->alloc = want;
        }
        *ret_ptr = b->data + b->size;
        *ret_len = b->alloc - b->size;
        return 0;
}

void varlink_buffer_commit(struct varlink_buffer *b, size_t n)
{
        b->size += n;
}

int varlink_buffer_next(struct varlink_buffer *b, const char **ret_msg, size_t *ret_len)
{
        const char *start, *nul;
        size_t avail;

        if (!b->data)
                return 0; /* nothing read yet */
        start = b->data + b->consumed;
        avail = b->size - b->consumed;

        if (b->secret && b->consumed > 0 && avail == 0) {
                /* The previous message is done with: erase it now. */
                erase(b->data, b->size);
                b->size = b->consumed = 0;
                start = b->data;
        }
        if (avail == 0)
                return 0;
        nul = memchr(start, '\0', avail);
        if (!nul)
                return avail > b->max_message ? -EMSGSIZE : 0;
        if ((size_t)(nul - start) > b->max_message)
                return -EMSGSIZE;
        *ret_msg = start;
        *ret_len = (size_t)(nul - start);
        b->consumed += *ret_len + 1;
        return 1;
}

bool varlink_buffer_pending(const struct varlink_buffer *b)
{
        return b->size > b->consumed;
}

int varlink_call_parse(const char *msg, size_t len, struct varlink_call *ret)
{
        json_t *root, *m, *p, *flag;
        json_error_t err;
        static const char *const flags[] = {"oneway", "more", "upgrade"};
        bool values[3] = {false, false, false};

        root = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return -EBADMSG;
        if (!json_is_object(root))
                goto bad;
        m = json_object_get(root, "method");
        if (!json_is_string(m) || json_string_length(m) == 0)
                goto bad;
        p = json_object_get(root, "parameters");
        if (p && !json_is_object(p) && !json_is_null(p))
                goto bad;
        for (size_t i = 0; i < ELEMENTSOF(flags); i++) {
                flag = json_object_get(root, flags[i]);
                if (flag && !json_is_boolean(flag) && !json_is_null(flag))
                        goto bad;
                values[i] = json_is_true(flag);
        }
        if (!p || json_is_null(p)) {
                p = json_object();
                if (!p || json_object_set_new(root, "parameters", p) < 0) {
                        json_decref(root);
                        return -ENOMEM;
                }
        }
        *ret = (struct varlink_call){
            .root = root,
            .method = json_string_value(m),
            .parameters = p,
            .oneway = values[0],
            .more = values[1],
            .upgrade = values[2],
        };
        return 0;
bad:
        json_decref(root);
        return -EBADMSG;
}

void varlink_call_done(struct varlink_call *c)
{
        json_decref(c->root);
        *c = (struct varlink_call){0};
}

char *varlink_message_dump(const json_t *obj, size_t *ret_len)
{
        size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
        char *s;

        if (n == 0)
                return NULL;
        s = malloc(n + 1);
        if (!s)
                return NULL;
        if (json_dumpb(obj, s, n, JSON_COMPACT) != n) {
                free(s);
                return NULL;
        }
        s[n] = '\0';
        if (ret_len)
                *ret_len = n + 1;
        return s;
}

uint64_t varlink_now_usec(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Wait for `events` on fd until `deadline`: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
        for (;;) {
                struct pollfd pfd = {.fd = fd, .events = events};
                uint64_t now = varlink_now_usec();
                int ms, r;

                if (now >= deadline)
                        return -ETIMEDOUT;
                ms = (int)((deadline - now + 999) / 1000);
                r = poll(&pfd, 1, ms);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r > 0)
                        return 0;
        }
}

int varlink_connect(const char *path, uint64_t deadline, int *ret_fd, uid_t *ret_peer_uid)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        _cleanup_close_ int fd = -1;
        size_t len = strlen(path);
        int r;

        if (len == 0 || len >= sizeof(sa.sun_path))
                return -EINVAL;
        memcpy(sa.sun_path, path, len);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (fd < 3) {
                /* Inside a host process whose stdio is closed, a socket on 0-2
                 * would be written to by the next printf. */
                int moved = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                if (moved < 0)
                        return -errno;
                close(fd);
                fd = moved;
        }

        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if (errno != EINPROGRESS && errno != EAGAIN)
                        return -errno;
                r = wait_fd(fd, POLLOUT, deadline);
                if (r < 0)
                        return r;
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                        return -errno;
                if (soerr != 0)
                        return -soerr;
        }

        if (ret_peer_uid) {
                struct ucred uc;
                socklen_t sl = sizeof(uc);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &sl) < 0)
                        return -errno;
                *ret_peer_uid = uc.uid;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int varlink_send(int fd, const char *msg, size_t len, uint64_t deadline)
{
        while (len > 0) {
                ssize_t n = send(fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                int r = wait_fd(fd, POLLOUT, deadline);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        return -errno;
                }
                msg += n;
                len -= (size_t)n;
        }
        return 0;
}

int varlink_recv(int fd, struct varlink_buffer *b, uint64_t deadline, json_t **ret_reply,
                 const char **ret_error, json_t **ret_parameters, bool *ret_continues)
{
        const char *msg;
        size_t len;
        int r;

        for (;;) {
                char *p;
                size_t room;
                ssize_t n;

                r = varlink_buffer_next(b, &msg, &len);
                if (r < 0)
                        return r;
                if (r > 0)
                        break;
                r = varlink_buffer_reserve(b, 4096, &p, &room);
                if (r < 0)
                        return r;
                n = recv(fd, p, room, MSG_DONTWAIT);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN) {
                                r = wait_fd(fd, POLLIN, deadline);
                                if (r < 0)
                                        return r;
                                continue;
                        }
                        return -errno;
                }
                if (n == 0)
                        return -ECONNRESET;
                varlink_buffer_commit(b, (size_t)n);
        }

        json_error_t err;
        json_t *root = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &err), *params, *e, *cont;

        if (!root)
                return -EBADMSG;
        params = json_object_get(root, "parameters");
        e = json_object_get(root, "error");
        cont = json_object_get(root, "continues");
        if (!json_is_object(root) || (params && !json_is_object(params)) ||
            (e && !json_is_string(e)) || (cont && !json_is_boolean(cont))) {
                json_decref(root);
                return -EBADMSG;
        }
        if (!params) {
                params = json_object();
                if (!params || json_object_set_new(root, "parameters", params) < 0) {
                        json_decref(root);
                        return -ENOMEM;
                }
        }
        *ret_reply = root;
        if (ret_error)
                *ret_error = e ? json_string_value(e) : NULL;
        if (ret_parameters)
                *ret_parameters = params;
        if (ret_continues)
                *ret_continues = json_is_true(cont);
        return 0;
}

int varlink_call(int fd, const char *method, json_t *parameters, uint64_t deadline,
                 json_t **ret_reply, const char **ret_error, json_t **ret_parameters)
{
        struct varlink_buffer b;
        json_t *req;
        char *msg;
        size_t len;
        int r;

        req = json_pack("{s:s}", "method", method);
        if (!req)
                return -ENOMEM;
        if (parameters && json_object_set(req, "parameters", parameters) < 0) {
                json_decref(req);
                return -ENOMEM;
        }
        msg = varlink_message_dump(req, &len);
        json_decref(req);
        if (!msg)
                return -ENOMEM;
        r = varlink_send(fd, msg, len, deadline);
        erase(msg, len);
        free(msg);
        if (r < 0)
                return r;

        varlink_buffer_init(&b, 16u * 1024u * 1024u, false);
        r = varlink_recv(fd, &b, deadline, ret_reply, ret_error, ret_parameters, NULL);
        varlink_buffer_done(&b);
        return r;
}
