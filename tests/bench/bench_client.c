/* SPDX-License-Identifier: MIT */
/*
 * bench_client: the load generator.  One thread, epoll, many connections,
 * each with one call in flight, sending the next as soon as the reply is in.
 *
 *   bench_client run --socket PATH --state-dir DIR [--proto varlink|ref]
 *                    [--conns N] [--creators K] [--listers L] [--seconds T]
 *                    [--warmup W] [--requests R] [--mix VALID,WRONG,UNKNOWN]
 *                    [--pool P] [--list-limit M] [--server-pid PID] [--reconnect]
 *   bench_client create-one --socket PATH --owner USER
 *
 * `run`: N connections send Verify calls (the PAM module's shape: brief,
 * user, service, rhost, token) from a pool of P requests drawn from the keys of
 * the state directory's seed file, in the mix given in percent (default
 * 80,10,10: valid, wrong secret, unknown id); K connections send Create
 * calls, L connections List calls of M keys from random cursors.  After W
 * seconds of warm-up, T seconds are measured; with --requests, exactly R
 * calls are made on the verify connections and all of them are measured
 * (for instruction counts).  With --reconnect, each verify goes over a new
 * connection, as pam_apikey's do.  Every reply is checked: a valid token must
 * answer valid, any other must not.  Prints key=value lines per kind of
 * call (count, rate, latency percentiles in µs) and the CPU share of the
 * client and, with --server-pid, of the server over the measured window.
 * Exits 3 if a reply was wrong, 1 on a transport failure.
 *
 * `create-one`: create a key owned by USER and print its token.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include <sodium.h>

#include "bench_keys.h"

#define BUF_SIZE (256u * 1024u)
#define IFACE    "io.apikeyd.Keys"

enum proto { PROTO_VARLINK, PROTO_REF };
enum role { ROLE_VERIFY, ROLE_CREATE, ROLE_LIST, N_ROLES };
enum kind { KIND_VALID, KIND_WRONG, KIND_UNKNOWN };

static const char *const role_names[N_ROLES] = {"verify", "create", "list"};

struct request {
        const char *msg;
        size_t len;
        uint8_t kind;
};

struct pool {
        struct request *reqs;
        size_t n;
        char *blob;
        char (*ids)[TOKEN_ID_LEN + 1]; /* cursors for List */
        size_t n_ids;
};

struct latencies {
        uint32_t *ns;
        size_t n, alloc;
};

struct conn {
        int fd;
        enum role role;
        size_t next; /* pool position (verify) or sequence number */
        uint64_t sent_ns;
        uint8_t kind; /* of the verify in flight */
        size_t len;
        char *buf;
        char msg[512]; /* create and list calls are built here */
};

struct stats {
        uint64_t count[N_ROLES];
        uint64_t keys_listed;
        struct latencies lat[N_ROLES];
        uint64_t wrong;
        char first_wrong[256];
};

struct options {
        const char *socket, *state_dir, *owner;
        enum proto proto;
        unsigned conns, creators, listers;
        double seconds, warmup;
        uint64_t requests;
        unsigned mix[3];
        size_t pool;
        unsigned list_limit;
        int server_pid;
        bool reconnect;
};

static uint64_t now_ns(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int connect_unix(const char *path)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
        while (n > 0) {
                ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                p += k;
                n -= (size_t)k;
        }
        return 0;
}

static int latencies_add(struct latencies *l, uint64_t ns)
{
        if (l->n == l->alloc) {
                size_t want = l->alloc ? 2 * l->alloc : 65536;
                uint32_t *v = realloc(l->ns, want * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                l->ns = v;
                l->alloc = want;
        }
        l->ns[l->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
        return 0;
}

static int cmp_u32(const void *a, const void *b)
{
        uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

        return x < y ? -1 : x > y;
}

/* The q-quantile in µs (nearest rank) of sorted latencies. */
static double quantile_us(const struct latencies *l, double q)
{
        size_t i;

        if (l->n == 0)
                return 0;
        i = (size_t)(q * (double)l->n);
        if (i >= l->n)
                i = l->n - 1;
        return l->ns[i] / 1000.0;
}

/* utime + stime of a process, in seconds. */
static double process_cpu(int pid)
{
        char path[64], buf[1024], *p;
        unsigned long ut = 0, st = 0;
        FILE *f;
        size_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        p = strrchr(buf, ')');
        /* After the name: state, then fields 4..13, then utime and stime. */
        if (!p ||
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
                return -1;
        return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static double self_cpu(void)
{
        struct rusage ru;

        getrusage(RUSAGE_SELF, &ru);
        return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
}

/* Append one Verify request for `token` to the blob at `*off`. */
static size_t put_request(char *blob, size_t off, enum proto proto, const char *token, size_t tlen,
                          const char *user)
{
        int n;

        if (proto == PROTO_REF) {
                blob[off] = (char)(tlen & 0xff);
                blob[off + 1] = (char)(tlen >> 8);
                memcpy(blob + off + 2, token, tlen);
                return 2 + tlen;
        }
        n = sprintf(
            blob + off,
            "{\"method\":\"" IFACE ".Verify\",\"parameters\":{\"brief\":true,"
            "\"user\":\"%s\",\"service\":\"sshd\",\"rhost\":\"127.0.0.1\",\"token\":\"%.*s\"}}",
            user, (int)tlen, token);
        return (size_t)n + 1; /* with the NUL that ends a Varlink message */
}

static int pool_build(struct pool *p, const struct options *o, const struct bench_seed *s)
{
        uint64_t rng = 0x5eed;
        size_t off = 0;

        p->n = o->pool;
        p->reqs = calloc(p->n, sizeof(*p->reqs));
        p->blob = malloc(p->n * 256);
        p->n_ids = p->n < s->n_keys ? p->n : s->n_keys;
        p->ids = calloc(p->n_ids, sizeof(*p->ids));
        if (!p->reqs || !p->blob || !p->ids)
                return -ENOMEM;
        for (int b = 0; b < 8; b++)
                rng ^= (uint64_t)s->seed[b] << (8 * b);

        for (size_t j = 0; j < p->n; j++) {
                uint64_t x = bench_rand(&rng) % 100, i = bench_rand(&rng) % s->n_keys;
                char token[TOKEN_MAX_LEN + 1], owner[BENCH_OWNER_MAX];
                int len;
                uint8_t kind;

                if (x < o->mix[0]) {
                        kind = KIND_VALID;
                        if (bench_key_is_decoy(i))
                                i--;
                        len = bench_key_token(s, i, false, token);
                } else if (x < o->mix[0] + o->mix[1]) {
                        kind = KIND_WRONG;
                        if (s->n_keys >= 10)
                                i = i / 10 * 10 + 9 < s->n_keys ? i / 10 * 10 + 9 : 9;
                        len = bench_key_token(s, i, true, token);
                } else {
                        char id[TOKEN_ID_LEN + 1];

                        kind = KIND_UNKNOWN;
                        bench_unknown_id(s, j, id);
                        len = bench_token_for_id(s, id, j, token);
                }
                if (len < 0)
                        return -EINVAL;
                bench_key_owner(i, owner);
                p->reqs[j] = (struct request){.msg = p->blob + off, .kind = kind};
                p->reqs[j].len = put_request(p->blob, off, o->proto, token, (size_t)len, owner);
                off += p->reqs[j].len;
        }
        for (size_t j = 0; j < p->n_ids; j++)
                bench_key_id(s, bench_rand(&rng) % s->n_keys, p->ids[j]);
        return 0;
}

static int conn_send(struct conn *c, const struct pool *p, const struct options *o)
{
        const char *msg = c->msg;
        size_t len;

        switch (c->role) {
        case ROLE_VERIFY: {
                const struct request *q = &p->reqs[c->next];
                c->next = (c->next + 1) % p->n;
                c->kind = q->kind;
                msg = q->msg;
                len = q->len;
                break;
        }
        case ROLE_CREATE:
                len = (size_t)snprintf(c->msg, sizeof(c->msg),
                                       "{\"method\":\"" IFACE ".Create\",\"parameters\":{"
                                       "\"name\":\"c-%d-%d-%zu\",\"owner\":\"bench-create\"}}",
                                       (int)getpid(), c->fd, c->next++) +
                      1;
                break;
        case ROLE_LIST:
        default:
                len = (size_t)snprintf(c->msg, sizeof(c->msg),
                                       "{\"method\":\"" IFACE ".List\",\"parameters\":{"
                                       "\"limit\":%u,\"cursor\":\"%s\"}}",
                                       o->list_limit, p->ids[c->next++ % p->n_ids]) +
                      1;
                break;
        }
        c->sent_ns = now_ns();
        return send_all(c->fd, msg, len);
}

/*
 * The next call of `c`; with --reconnect a verify connection first closes
 * and connects again, as pam_apikey does for each authentication, and the
 * call's latency includes the new connection.
 */
static int conn_next(struct conn *c, int ep, const struct pool *p, const struct options *o)
{
        uint64_t start = now_ns();
        int r;

        if (o->reconnect && c->role == ROLE_VERIFY) {
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = connect_unix(o->socket);
                if (c->fd < 0)
                        return c->fd;
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                        return -errno;
        }
        r = conn_send(c, p, o);
        if (o->reconnect)
                c->sent_ns = start;
        return r;
}

static size_t count_substr(const char *s, size_t n, const char *needle)
{
        size_t k = 0, nl = strlen(needle);
        const char *p = s, *end = s + n;

        while ((p = memmem(p, (size_t)(end - p), needle, nl))) {
                k++;
                p += nl;
        }
        return k;
}

static void note_wrong(struct stats *st, const char *what, const char *reply, size_t len)
{
        if (st->wrong++ == 0)
                snprintf(st->first_wrong, sizeof(st->first_wrong), "%s: %.*s", what,
                         (int)(len > 160 ? 160 : len), reply);
}

/* Judge one complete reply of `c`'s call; for List, the number of keys in it. */
static size_t check_reply(struct stats *st, const struct options *o, struct conn *c,
                          const char *reply, size_t len)
{
        static const char *const kind_names[] = {"valid token", "wrong secret", "unknown id"};
        const char *want;

        if (o->proto == PROTO_REF) {
                want = reply[0] == 1 ? "answered valid" : "answered not valid";
                if ((reply[0] == 1) != (c->kind == KIND_VALID) || reply[0] == 2)
                        note_wrong(st, kind_names[c->kind], want, strlen(want));
                return 0;
        }
        if (len < 14 || memcmp(reply, "{\"parameters\":", 14) != 0) {
                note_wrong(st, role_names[c->role], reply, len);
                return 0;
        }
        switch (c->role) {
        case ROLE_VERIFY:
                want = c->kind == KIND_VALID ? "\"valid\":true" : "\"valid\":false";
                if (!memmem(reply, len, want, strlen(want)))
                        note_wrong(st, kind_names[c->kind], reply, len);
                break;
        case ROLE_CREATE:
                if (!memmem(reply, len, "\"token\":\"", 9))
                        note_wrong(st, "create", reply, len);
                break;
        case ROLE_LIST:
        default:
                return count_substr(reply, len, "{\"id\":\"");
        }
        return 0;
}

static int run(const struct options *o)
{
        struct bench_seed seed;
        struct pool pool = {0};
        struct stats st = {0};
        unsigned n_conns = o->conns + o->creators + o->listers;
        struct conn *conns = calloc(n_conns, sizeof(*conns));
        uint64_t t0, t_measure, t_end, done_requests = 0, sent_requests = 0;
        double cpu0 = 0, cpu1 = 0, srv0 = 0, srv1 = 0, seconds;
        bool measuring, stop = false;
        int ep, r;

        if (!conns)
                return -ENOMEM;
        if (o->conns > 0 || o->listers > 0) {
                r = bench_seed_read(o->state_dir, &seed);
                if (r < 0) {
                        fprintf(stderr, "bench_client: cannot read %s/%s: %s\n", o->state_dir,
                                BENCH_SEED_FILE, strerror(-r));
                        return r;
                }
                r = pool_build(&pool, o, &seed);
                if (r < 0)
                        return r;
        }
        ep = epoll_create1(EPOLL_CLOEXEC);
        if (ep < 0)
                return -errno;
        for (unsigned i = 0; i < n_conns; i++) {
                struct conn *c = &conns[i];
                struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};

                c->role = i < o->conns                 ? ROLE_VERIFY
                          : i < o->conns + o->creators ? ROLE_CREATE
                                                       : ROLE_LIST;
                c->next = c->role == ROLE_VERIFY ? (size_t)i * pool.n / o->conns : 0;
                c->buf = malloc(BUF_SIZE);
                c->fd = connect_unix(o->socket);
                if (!c->buf || c->fd < 0) {
                        fprintf(stderr, "bench_client: cannot connect to %s: %s\n", o->socket,
                                strerror(c->fd < 0 ? -c->fd : ENOMEM));
                        return -EIO;
                }
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
                        return -errno;
        }

        t0 = now_ns();
        measuring = o->requests > 0 || o->warmup <= 0;
        t_measure = t0 + (uint64_t)(o->warmup * 1e9);
        t_end = o->requests > 0 ? UINT64_MAX : t_measure + (uint64_t)(o->seconds * 1e9);
        cpu0 = self_cpu();
        if (o->server_pid > 0)
                srv0 = process_cpu(o->server_pid);
        if (measuring)
                t_measure = t0;
        for (unsigned i = 0; i < n_conns; i++) {
                if (conns[i].role == ROLE_VERIFY && o->requests > 0 && sent_requests >= o->requests)
                        continue;
                sent_requests += conns[i].role == ROLE_VERIFY;
                if (conn_send(&conns[i], &pool, o) < 0)
                        return -EIO;
        }

        while (!stop) {
                struct epoll_event evs[128];
                uint64_t now = now_ns();
                int n, timeout = t_end == UINT64_MAX ? 10000 : (int)((t_end - now) / 1000000 + 1);

                if (now >= t_end)
                        break;
                n = epoll_wait(ep, evs, 128, timeout);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0 && t_end == UINT64_MAX) {
                        fprintf(stderr, "bench_client: no reply for 10 s\n");
                        return -ETIMEDOUT;
                }
                for (int e = 0; e < n && !stop; e++) {
                        struct conn *c = evs[e].data.ptr;
                        ssize_t k = recv(c->fd, c->buf + c->len, BUF_SIZE - c->len, MSG_DONTWAIT);
                        size_t used = 0;

                        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                                continue;
                        if (k <= 0) {
                                fprintf(stderr, "bench_client: the server closed a connection\n");
                                return -ECONNRESET;
                        }
                        c->len += (size_t)k;
                        for (;;) {
                                size_t rlen, listed;
                                char *end;

                                if (o->proto == PROTO_REF) {
                                        if (c->len - used < 1)
                                                break;
                                        rlen = 1;
                                } else {
                                        end = memchr(c->buf + used, '\0', c->len - used);
                                        if (!end)
                                                break;
                                        rlen = (size_t)(end - (c->buf + used));
                                }
                                now = now_ns();
                                if (!measuring && now >= t_measure) {
                                        measuring = true;
                                        cpu0 = self_cpu();
                                        if (o->server_pid > 0)
                                                srv0 = process_cpu(o->server_pid);
                                }
                                listed = check_reply(&st, o, c, c->buf + used, rlen);
                                if (measuring && now < t_end) {
                                        st.count[c->role]++;
                                        st.keys_listed += listed;
                                        if (latencies_add(&st.lat[c->role], now - c->sent_ns) < 0)
                                                return -ENOMEM;
                                }
                                used += rlen + (o->proto == PROTO_VARLINK);
                                if (c->role == ROLE_VERIFY)
                                        done_requests++;
                                if (o->requests > 0 && done_requests >= o->requests) {
                                        stop = true;
                                        break;
                                }
                                if (c->role == ROLE_VERIFY && o->requests > 0 &&
                                    sent_requests >= o->requests)
                                        continue;
                                if (now < t_end) {
                                        sent_requests += c->role == ROLE_VERIFY;
                                        if (conn_next(c, ep, &pool, o) < 0) {
                                                fprintf(stderr, "bench_client: send failed\n");
                                                return -EIO;
                                        }
                                }
                        }
                        memmove(c->buf, c->buf + used, c->len - used);
                        c->len -= used;
                        if (c->len == BUF_SIZE) {
                                fprintf(stderr, "bench_client: a reply over %u bytes\n", BUF_SIZE);
                                return -EMSGSIZE;
                        }
                }
        }
        cpu1 = self_cpu();
        if (o->server_pid > 0)
                srv1 = process_cpu(o->server_pid);
        seconds = o->requests > 0 ? (double)(now_ns() - t0) / 1e9 : o->seconds;
        if (o->requests > 0)
                t_end = now_ns();

        printf("seconds=%.3f\n", seconds);
        for (int role = 0; role < N_ROLES; role++) {
                struct latencies *l = &st.lat[role];

                if ((role == ROLE_VERIFY && !o->conns) || (role == ROLE_CREATE && !o->creators) ||
                    (role == ROLE_LIST && !o->listers))
                        continue;
                qsort(l->ns, l->n, sizeof(*l->ns), cmp_u32);
                printf("%s_count=%" PRIu64 "\n%s_rate=%.1f\n%s_p50_us=%.1f\n%s_p99_us=%.1f\n"
                       "%s_p999_us=%.1f\n",
                       role_names[role], st.count[role], role_names[role],
                       (double)st.count[role] / seconds, role_names[role], quantile_us(l, 0.5),
                       role_names[role], quantile_us(l, 0.99), role_names[role],
                       quantile_us(l, 0.999));
                free(l->ns);
        }
        if (o->listers)
                printf("list_keys_per_reply=%.1f\n",
                       st.count[ROLE_LIST] ? (double)st.keys_listed / (double)st.count[ROLE_LIST]
                                           : 0.0);
        printf("client_cpu_pct=%.1f\n", 100.0 * (cpu1 - cpu0) / seconds);
        if (o->server_pid > 0)
                printf("server_cpu_pct=%.1f\n", 100.0 * (srv1 - srv0) / seconds);
        printf("wrong_replies=%" PRIu64 "\n", st.wrong);
        if (st.wrong)
                fprintf(stderr, "bench_client: %" PRIu64 " wrong replies; the first: %s\n",
                        st.wrong, st.first_wrong);
        for (unsigned i = 0; i < n_conns; i++) {
                close(conns[i].fd);
                free(conns[i].buf);
        }
        free(conns);
        close(ep);
        if (pool.blob)
                sodium_memzero(pool.blob, pool.n * 256);
        free(pool.blob);
        free(pool.reqs);
        free(pool.ids);
        return st.wrong ? 3 : 0;
}

/* Create one key for `owner` and print its token. */
static int create_one(const struct options *o)
{
        char msg[512], *buf = malloc(BUF_SIZE), *tok, *end;
        size_t len = 0;
        int fd, n;

        if (!buf)
                return -ENOMEM;
        fd = connect_unix(o->socket);
        if (fd < 0) {
                free(buf);
                return fd;
        }
        n = snprintf(msg, sizeof(msg),
                     "{\"method\":\"" IFACE ".Create\",\"parameters\":{\"name\":\"bench-%d-%" PRIu64
                     "\",\"owner\":\"%s\"}}",
                     (int)getpid(), now_ns(), o->owner);
        if (send_all(fd, msg, (size_t)n + 1) < 0) {
                close(fd);
                free(buf);
                return -EIO;
        }
        while (!memchr(buf, '\0', len) && len < BUF_SIZE) {
                ssize_t k = recv(fd, buf + len, BUF_SIZE - len, 0);
                if (k <= 0)
                        break;
                len += (size_t)k;
        }
        close(fd);
        tok = memchr(buf, '\0', len) ? strstr(buf, "\"token\":\"") : NULL;
        end = tok ? strchr(tok + 9, '"') : NULL;
        if (!end) {
                fprintf(stderr, "bench_client: Create failed: %.*s\n", (int)(len > 300 ? 300 : len),
                        buf);
                free(buf);
                return -EIO;
        }
        printf("%.*s\n", (int)(end - tok - 9), tok + 9);
        sodium_memzero(buf, BUF_SIZE);
        free(buf);
        return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
        static const struct option longopts[] = {
            {"socket", required_argument, NULL, 'S'},
            {"state-dir", required_argument, NULL, 'd'},
            {"proto", required_argument, NULL, 'p'},
            {"conns", required_argument, NULL, 'c'},
            {"creators", required_argument, NULL, 'C'},
            {"listers", required_argument, NULL, 'L'},
            {"seconds", required_argument, NULL, 't'},
            {"warmup", required_argument, NULL, 'w'},
            {"requests", required_argument, NULL, 'r'},
            {"mix", required_argument, NULL, 'm'},
            {"pool", required_argument, NULL, 'P'},
            {"list-limit", required_argument, NULL, 'l'},
            {"server-pid", required_argument, NULL, 's'},
            {"owner", required_argument, NULL, 'o'},
            {"reconnect", no_argument, NULL, 'R'},
            {NULL, 0, NULL, 0},
        };
        int c;

        *o = (struct options){
            .proto = PROTO_VARLINK,
            .conns = 1,
            .seconds = 2,
            .warmup = 0.5,
            .mix = {80, 10, 10},
            .pool = 65536,
            .list_limit = 100,
        };
        while ((c = getopt_long(argc, argv, "", longopts, NULL)) >= 0) {
                switch (c) {
                case 'S':
                        o->socket = optarg;
                        break;
                case 'd':
                        o->state_dir = optarg;
                        break;
                case 'p':
                        if (STREQ(optarg, "ref"))
                                o->proto = PROTO_REF;
                        else if (!STREQ(optarg, "varlink"))
                                return -EINVAL;
                        break;
                case 'c':
                        o->conns = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'C':
                        o->creators = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 'L':
                        o->listers = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 't':
                        o->seconds = strtod(optarg, NULL);
                        break;
                case 'w':
                        o->warmup = strtod(optarg, NULL);
                        break;
                case 'r':
                        o->requests = strtoull(optarg, NULL, 10);
                        break;
                case 'm':
                        if (sscanf(optarg, "%u,%u,%u", &o->mix[0], &o->mix[1], &o->mix[2]) != 3 ||
                            o->mix[0] + o->mix[1] + o->mix[2] != 100)
                                return -EINVAL;
                        break;
                case 'P':
                        o->pool = strtoull(optarg, NULL, 10);
                        break;
                case 'l':
                        o->list_limit = (unsigned)strtoul(optarg, NULL, 10);
                        break;
                case 's':
                        o->server_pid = atoi(optarg);
                        break;
                case 'o':
                        o->owner = optarg;
                        break;
                case 'R':
                        o->reconnect = true;
                        break;
                default:
                        return -EINVAL;
                }
        }
        return optind == argc && o->socket ? 0 : -EINVAL;
}

static bool run_options_valid(const struct options *o)
{
        if (o->pool == 0 || o->seconds <= 0 || o->conns + o->creators + o->listers == 0)
                return false;
        if (o->proto == PROTO_REF && (o->creators || o->listers))
                return false;
        return !((o->conns || o->listers) && !o->state_dir);
}

int main(int argc, char **argv)
{
        struct options o;
        const char *cmd = argc > 1 ? argv[1] : "";
        int r;

        if (sodium_init() < 0)
                return 1;
        if (STREQ(cmd, "create-one")) {
                if (parse_args(argc - 1, argv + 1, &o) < 0 || !o.owner) {
                        fprintf(stderr, "usage: bench_client create-one --socket PATH --owner "
                                        "USER\n");
                        return 2;
                }
                return create_one(&o) < 0 ? 1 : 0;
        }
        if (!STREQ(cmd, "run") || parse_args(argc - 1, argv + 1, &o) < 0 ||
            !run_options_valid(&o)) {
                fprintf(stderr, "usage: bench_client run --socket PATH --state-dir DIR "
                                "[--proto varlink|ref] [--conns N]\n"
                                "         [--creators K] [--listers L] [--seconds T] "
                                "[--warmup W] [--requests R]\n"
                                "         [--mix V,W,U] [--pool P] [--list-limit M] "
                                "[--server-pid PID] [--reconnect]\n"
                                "       bench_client create-one --socket PATH --owner USER\n");
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        r = run(&o);
        if (r < 0) {
                fprintf(stderr, "bench_client: %s\n", strerror(-r));
                return 1;
        }
        return r;
}
