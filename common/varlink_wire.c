/* SPDX-License-Identifier: MIT */
/* Varlink framing and the blocking transport, without JSON; see varlink_wire.h. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "varlink_wire.h"

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

int varlink_recv_message(int fd, struct varlink_buffer *b, uint64_t deadline, const char **ret_msg,
                         size_t *ret_len)
{
        int r;

        for (;;) {
                char *p;
                size_t room;
                ssize_t n;

                r = varlink_buffer_next(b, ret_msg, ret_len);
                if (r < 0)
                        return r;
                if (r > 0)
                        return 0;
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
}
