/* SPDX-License-Identifier: MIT */
/*
 * bench_ref: the speed-of-light reference for Verify.  The smallest server
 * that does the same verify work as apikeyd, and nothing else: one thread,
 * epoll, a UNIX socket; a request is a u16 little-endian length and the
 * token; the id is looked up in the daemon's own keys.mdb with raw LMDB
 * calls (one reused read transaction), the token hashed with keyed BLAKE2b
 * (the pepper file), the hash at offset 16 of the record (record.h)
 * compared in constant time; the reply is one byte: 1 valid, 0 not, 2
 * malformed.  No JSON, no policy, no logging, no copies of the record.
 *
 *   bench_ref --state-dir DIR --socket PATH
 *
 * Stops on SIGTERM or SIGINT, removing its socket.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <lmdb.h>
#include <sodium.h>

#include "record.h"
#include "token.h"

#define HASH_OFFSET  16 /* of the hash in an encoded record (record.h) */
#define PEPPER_BYTES 32
#define IN_SIZE      4096
#define OUT_SIZE     4096

enum { REPLY_NOT_VALID = 0, REPLY_VALID = 1, REPLY_MALFORMED = 2 };

struct ref {
        MDB_env *env;
        MDB_dbi keys;
        MDB_txn *txn; /* reset between requests, renewed for the next */
        uint8_t pepper[PEPPER_BYTES];
        int epfd;
};

struct conn {
        int fd;
        uint32_t events; /* what epoll watches for it */
        size_t in_len, out_len, out_sent;
        uint8_t in[IN_SIZE];
        uint8_t out[OUT_SIZE];
};

static int read_pepper(const char *dir, uint8_t ret[PEPPER_BYTES])
{
        char path[4096];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "%s/pepper", dir);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, ret, PEPPER_BYTES);
        close(fd);
        return n == PEPPER_BYTES ? 0 : -EBADMSG;
}

static int open_store(struct ref *r, const char *dir)
{
        char path[4096];
        MDB_txn *txn;
        int rc;

        snprintf(path, sizeof(path), "%s/keys.mdb", dir);
        rc = mdb_env_create(&r->env);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_set_maxdbs(r->env, 8);
        if (rc == MDB_SUCCESS)
                rc = mdb_env_open(r->env, path, MDB_RDONLY | MDB_NOSUBDIR | MDB_NOTLS, 0600);
        if (rc == MDB_SUCCESS)
                rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
        if (rc == MDB_SUCCESS) {
                /* The handle outlives the transaction only once it commits. */
                rc = mdb_dbi_open(txn, "keys", 0, &r->keys);
                if (rc == MDB_SUCCESS)
                        rc = mdb_txn_commit(txn);
                else
                        mdb_txn_abort(txn);
        }
        if (rc == MDB_SUCCESS)
                rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &txn);
        if (rc == MDB_SUCCESS)
                mdb_txn_reset(txn);
        if (rc != MDB_SUCCESS) {
                fprintf(stderr, "bench_ref: %s: %s\n", path, mdb_strerror(rc));
                return -EIO;
        }
        r->txn = txn;
        return 0;
}

/* The read transaction for one lookup; follows the daemon growing the map. */
static int read_txn(struct ref *r)
{
        int rc = mdb_txn_renew(r->txn);

        if (rc == MDB_MAP_RESIZED) {
                mdb_txn_abort(r->txn);
                r->txn = NULL;
                rc = mdb_env_set_mapsize(r->env, 0);
                if (rc == MDB_SUCCESS)
                        rc = mdb_txn_begin(r->env, NULL, MDB_RDONLY, &r->txn);
        }
        return rc;
}

static uint8_t verify(struct ref *r, const char *tok, size_t len)
{
        static const uint8_t nothing[KEY_HASH_SIZE];
        uint8_t hash[KEY_HASH_SIZE];
        const char *sep = memchr(tok, '_', len < TOKEN_PREFIX_MAX + 1 ? len : TOKEN_PREFIX_MAX + 1);
        size_t plen = sep ? (size_t)(sep - tok) : 0;
        MDB_val k, v;
        bool found, equal;

        if (plen < TOKEN_PREFIX_MIN || len != TOKEN_LEN(plen) ||
            tok[plen + 1 + TOKEN_ID_LEN] != '_')
                return REPLY_MALFORMED;
        crypto_generichash(hash, sizeof(hash), (const unsigned char *)tok, len - TOKEN_CHECK_LEN,
                           r->pepper, PEPPER_BYTES);
        if (read_txn(r) != MDB_SUCCESS)
                return REPLY_NOT_VALID;
        k = (MDB_val){TOKEN_ID_LEN, (void *)(tok + plen + 1)};
        found = mdb_get(r->txn, r->keys, &k, &v) == MDB_SUCCESS &&
                v.mv_size >= HASH_OFFSET + KEY_HASH_SIZE;
        /* An unknown id costs the same compare, as in the daemon. */
        equal = sodium_memcmp(hash, found ? (const uint8_t *)v.mv_data + HASH_OFFSET : nothing,
                              KEY_HASH_SIZE) == 0;
        mdb_txn_reset(r->txn);
        sodium_memzero(hash, sizeof(hash));
        return found && equal ? REPLY_VALID : REPLY_NOT_VALID;
}

static void conn_close(struct ref *r, struct conn *c)
{
        epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        sodium_memzero(c->in, sizeof(c->in));
        free(c);
}

/* Send what is queued; 0 (maybe with output left), or -1 to close. */
static int conn_flush(struct ref *r, struct conn *c)
{
        while (c->out_sent < c->out_len) {
                ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : -1;
                c->out_sent += (size_t)n;
        }
        c->out_len = c->out_sent = 0;
        return 0;
}

static int conn_read(struct ref *r, struct conn *c)
{
        for (;;) {
                size_t used = 0;
                ssize_t n;

                if (c->out_len >= OUT_SIZE)
                        return 0; /* the client does not read its replies: wait */
                n = recv(c->fd, c->in + c->in_len, IN_SIZE - c->in_len, MSG_DONTWAIT);
                if (n < 0)
                        return errno == EAGAIN || errno == EINTR ? 0 : -1;
                if (n == 0)
                        return -1;
                c->in_len += (size_t)n;
                while (c->in_len - used >= 2 && c->out_len < OUT_SIZE) {
                        size_t len = (size_t)c->in[used] | (size_t)c->in[used + 1] << 8;

                        if (len > IN_SIZE - 2)
                                return -1;
                        if (c->in_len - used - 2 < len)
                                break;
                        c->out[c->out_len++] = verify(r, (const char *)c->in + used + 2, len);
                        used += 2 + len;
                }
                sodium_memzero(c->in, used);
                memmove(c->in, c->in + used, c->in_len - used);
                c->in_len -= used;
                if (conn_flush(r, c) < 0)
                        return -1;
                if ((size_t)n < IN_SIZE)
                        return 0;
        }
}

static int listen_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        (void)unlink(path);
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, SOMAXCONN) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int serve(struct ref *r, int lfd, int sfd)
{
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}, evs[64];

        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, lfd, &ev) < 0)
                return -errno;
        ev.data.ptr = &sfd;
        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, sfd, &ev) < 0)
                return -errno;
        for (;;) {
                int n = epoll_wait(r->epfd, evs, 64, -1);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                for (int i = 0; i < n; i++) {
                        struct conn *c = evs[i].data.ptr;

                        if (evs[i].data.ptr == &sfd)
                                return 0;
                        if (!c) {
                                int fd;

                                while ((fd = accept4(lfd, NULL, NULL,
                                                     SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                                        struct epoll_event cev = {.events = EPOLLIN};

                                        c = calloc(1, sizeof(*c));
                                        if (!c) {
                                                close(fd);
                                                continue;
                                        }
                                        c->fd = fd;
                                        c->events = EPOLLIN;
                                        cev.data.ptr = c;
                                        if (epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &cev) < 0) {
                                                close(fd);
                                                free(c);
                                        }
                                }
                                continue;
                        }
                        if (conn_flush(r, c) < 0 || conn_read(r, c) < 0) {
                                conn_close(r, c);
                                continue;
                        }
                        uint32_t want = c->out_len > c->out_sent ? EPOLLOUT : EPOLLIN;
                        struct epoll_event cev = {.events = want, .data.ptr = c};
                        if (want == c->events)
                                continue;
                        c->events = want;
                        if (epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &cev) < 0)
                                conn_close(r, c);
                }
        }
}

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
            {"state-dir", required_argument, NULL, 's'},
            {"socket", required_argument, NULL, 'S'},
            {NULL, 0, NULL, 0},
        };
        const char *dir = NULL, *sock = NULL;
        struct ref r = {.epfd = -1};
        sigset_t mask;
        int c, lfd, sfd, rc;

        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                if (c == 's')
                        dir = optarg;
                else if (c == 'S')
                        sock = optarg;
                else
                        return 2;
        }
        if (!dir || !sock || optind != argc) {
                fprintf(stderr, "usage: bench_ref --state-dir DIR --socket PATH\n");
                return 2;
        }
        if (sodium_init() < 0 || read_pepper(dir, r.pepper) < 0) {
                fprintf(stderr, "bench_ref: cannot read %s/pepper\n", dir);
                return 1;
        }
        if (open_store(&r, dir) < 0)
                return 1;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
        sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        r.epfd = epoll_create1(EPOLL_CLOEXEC);
        lfd = listen_unix(sock);
        if (sfd < 0 || r.epfd < 0 || lfd < 0) {
                fprintf(stderr, "bench_ref: cannot listen on %s: %s\n", sock,
                        strerror(lfd < 0 ? -lfd : errno));
                return 1;
        }
        rc = serve(&r, lfd, sfd);
        if (rc < 0)
                fprintf(stderr, "bench_ref: %s\n", strerror(-rc));
        (void)unlink(sock);
        close(lfd);
        mdb_txn_abort(r.txn);
        mdb_env_close(r.env);
        sodium_memzero(r.pepper, sizeof(r.pepper));
        return rc < 0 ? 1 : 0;
}
