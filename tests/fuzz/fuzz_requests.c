/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the daemon's whole request path: the Varlink server (apikeyd/base/server.c)
 * framing a connection's byte stream, varlink_call_parse(), api_dispatch()
 * and every method of io.apikeyd.Keys and org.varlink.service, with the
 * authorization, the keystore, the lockout and the last-used batch behind
 * them, wired as apikeyd.c wires them.
 *
 * Each input is the byte stream one client sends on one connection: Varlink
 * messages, each a JSON object ended by a NUL (one is appended if the input
 * does not end with one).  The client is this process over a socketpair, so
 * it is uid 0 and an admin, which reaches the most code.  A hash of the
 * input decides how the stream is cut into writes, whether the server has
 * the smallest message limit the config allows, whether the client shuts
 * its writing side before reading, and whether api_flush() runs after.
 *
 * The keystore lives in a fresh state directory with a fixed pepper and a
 * few keys of every kind (admin, custom with scope, read-only, disabled,
 * revoked, expired, one use left under a rate limit) whose tokens the seed corpus uses in `auth`
 * and Verify.  It is recreated every FUZZ_REQUESTS_RESET inputs (default 32; 1 makes every input
 * independent of the ones before it, which the replay runs use), and checked with
 * keystore_check_indexes() before it goes. The directory's files are unlinked as soon as they are
 * open, so nothing is left behind, even by a crash.
 *
 * FUZZ_REQUESTS_TRACE=1 prints every reply, FUZZ_LOG=1 the daemon's log.
 *
 * Checks: the server writes only well-formed Varlink replies; every call
 * but a oneway one gets exactly one final reply, in order, and only calls
 * that asked for `more` get replies with `continues`; the connection is
 * gone once the client hangs up; the keystore's indexes stay consistent.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-event.h>

#include "api.h"
#include "dispatch.h"
#include "config.h"
#include "keystore.h"
#include "log.h"
#include "server.h"
#include "timeutil.h"
#include "token_crypto.h"
#include "writer.h"
#include "fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);

#define DEFAULT_RESET_EVERY 32
/* Rounds of the event loop an input may take before it counts as a hang. */
#define MAX_ROUNDS 100000
/* The smallest max_message_size the config accepts. */
#define SMALL_MAX_MESSAGE 1024
/* 1 MiB, the smallest map_size the config accepts, so map growth is exercised too. */
#define FUZZ_MAP_SIZE (1024 * 1024)
#define FUZZ_SOCKET   "/run/apikeyd/io.apikeyd.Keys"

/* 32 bytes: every run hashes the fixture tokens the same way. */
static const uint8_t fixed_pepper[PEPPER_SIZE] = "apikeyd fuzz pepper, not secret";

#define T_2025_01_01 UINT64_C(1735689600000000)
#define T_2025_01_02 UINT64_C(1735776000000000)
#define T_2099_01_01 UINT64_C(4070908800000000)

/*
 * The keys every state directory starts with.  A key's token is
 * apk_<id>_<secret><check>, the secret being `secret` padded with '0' to
 * 43 characters; the seeds in tests/fuzz/corpus/fuzz_requests use them.
 */
struct fixture {
        const char *id, *secret, *name, *owner, *description;
        uint8_t status, role, permissions;
        uint64_t expires_at, last_used_at;
        const char *scope[3];
};

static const struct fixture fixtures[] = {
    {"fuzzAdmin001",
     "admin",
     "fuzz-admin",
     "root",
     "an admin key",
     KEY_STATUS_ENABLED,
     KEY_ROLE_ADMIN,
     KEY_PERM_ALL,
     0,
     T_2025_01_02,
     {NULL}},
    {"fuzzUser0001",
     "user",
     "deploy",
     "nobody",
     "CI deploys",
     KEY_STATUS_ENABLED,
     KEY_ROLE_CUSTOM,
     KEY_PERM_CREATE | KEY_PERM_READ | KEY_PERM_WRITE | KEY_PERM_INVITE,
     T_2099_01_01,
     0,
     {"sshd", "apikeyd"}},
    {"fuzzReadOnly",
     "readonly",
     "reader",
     "root",
     NULL,
     KEY_STATUS_ENABLED,
     KEY_ROLE_READONLY,
     KEY_PERM_READ,
     0,
     0,
     {"sudo"}},
    {"fuzzDisabled",
     "disabled",
     "paused",
     "daemon",
     NULL,
     KEY_STATUS_DISABLED,
     KEY_ROLE_CUSTOM,
     KEY_PERM_CREATE | KEY_PERM_READ,
     0,
     0,
     {NULL}},
    {"fuzzRevoked1",
     "revoked",
     "gone",
     "root",
     NULL,
     KEY_STATUS_REVOKED,
     KEY_ROLE_READONLY,
     KEY_PERM_READ,
     0,
     0,
     {NULL}},
    {"fuzzExpired1",
     "expired",
     "old",
     "root",
     NULL,
     KEY_STATUS_ENABLED,
     KEY_ROLE_CUSTOM,
     KEY_PERM_DELETE,
     T_2025_01_02,
     0,
     {NULL}},
    {"fuzzLimited1",
     "limited",
     "metered",
     "root",
     NULL,
     KEY_STATUS_ENABLED,
     KEY_ROLE_READONLY,
     KEY_PERM_READ,
     0,
     0,
     {NULL}},
};

/* The fixtures' limits, by id: max_uses, and a rate limit of that many a minute. */
static const struct {
        const char *id;
        uint64_t max_uses;
        uint32_t rate_limit_count;
} fixture_limits[] = {
    {"fuzzLimited1", 1, 2},
};

static struct {
        bool initialized, open, trace;
        unsigned reset_every, inputs;
        struct apikeyd_config config;
        sd_event *event;
        struct server *server, *server_small;
        char dir[4096];
        uint8_t *pepper;
        struct api api;
} F;

static _Noreturn _printf_(1, 2) void die(const char *fmt, ...)
{
        int saved = errno;
        va_list ap;

        va_start(ap, fmt);
        fputs("fuzz_requests: ", stderr);
        errno = saved;
        vfprintf(stderr, fmt, ap);
        fprintf(stderr, "\n");
        va_end(ap);
        abort();
}

static void put_fixture(struct keystore *ks, const struct fixture *fx)
{
        char secret[TOKEN_SECRET_LEN + 1], token[TOKEN_MAX_LEN + 1];
        struct key_record rec = {
            .status = fx->status,
            .role = fx->role,
            .permissions = fx->permissions,
            .created_at = T_2025_01_01,
            .expires_at = fx->expires_at,
            .last_used_at = fx->last_used_at,
            .name = fx->name,
            .description = fx->description,
            .owner = fx->owner,
            .created_by = "uid=0(root)",
            .last_used_service = fx->last_used_at ? "sshd" : NULL,
            .last_used_from = fx->last_used_at ? "192.0.2.1" : NULL,
        };
        struct token t;
        int r;

        memset(secret, '0', TOKEN_SECRET_LEN);
        memcpy(secret, fx->secret, strlen(fx->secret));
        secret[TOKEN_SECRET_LEN] = '\0';
        snprintf(rec.id, sizeof(rec.id), "%s", fx->id);
        r = token_format(TOKEN_DEFAULT_PREFIX, fx->id, secret, token, sizeof(token));
        if (r < 0 || token_parse(token, (size_t)r, NULL, &t, NULL) < 0)
                die("fixture %s has a malformed token", fx->id);
        token_hash(F.pepper, &t, rec.hash);
        for (size_t i = 0; i < ELEMENTSOF(fixture_limits); i++)
                if (strcmp(fixture_limits[i].id, fx->id) == 0) {
                        rec.max_uses = fixture_limits[i].max_uses;
                        rec.rate_limit_count = fixture_limits[i].rate_limit_count;
                        rec.rate_limit_window = 60 * USEC_PER_SEC;
                }
        while (rec.n_scope < ELEMENTSOF(fx->scope) && fx->scope[rec.n_scope]) {
                rec.scope[rec.n_scope] = fx->scope[rec.n_scope];
                rec.n_scope++;
        }
        r = keystore_put_key(ks, &rec);
        if (r < 0)
                die("storing fixture %s: %s", fx->id, strerror(-r));
}

/* Unlink every file in F.dir and the directory itself. */
static void remove_dir(void)
{
        DIR *d = opendir(F.dir);
        struct dirent *de;

        if (!d)
                die("opendir %s: %m", F.dir);
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
                        (void)unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
        if (rmdir(F.dir) < 0)
                die("rmdir %s: %m", F.dir);
}

static void state_open(void)
{
        struct keystore_options kopts = {
            .mapsize = FUZZ_MAP_SIZE,
            .audit_max = F.config.audit_max_events,
            .flags = KEYSTORE_NOSYNC,
        };
        const char *tmp = getenv("TMPDIR");
        char path[sizeof(F.dir) + 16], *err = NULL;
        struct keystore *ks = NULL;
        int fd, r;

        snprintf(F.dir, sizeof(F.dir), "%s/apikeyd-fuzz-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(F.dir))
                die("mkdtemp %s: %m", F.dir);
        snprintf(path, sizeof(path), "%s/%s", F.dir, PEPPER_FILE);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, fixed_pepper, PEPPER_SIZE) != PEPPER_SIZE)
                die("writing %s: %m", path);
        close(fd);

        F.pepper = sodium_malloc(PEPPER_SIZE);
        if (!F.pepper)
                die("sodium_malloc failed");
        r = pepper_load(F.dir, false, F.pepper, &err);
        if (r < 0)
                die("pepper_load: %s", err ? err : strerror(-r));
        r = keystore_open(F.dir, &kopts, &ks, &err);
        if (r < 0)
                die("keystore_open: %s", err ? err : strerror(-r));
        for (size_t i = 0; i < ELEMENTSOF(fixtures); i++)
                put_fixture(ks, &fixtures[i]);

        F.api = (struct api){
            .config = &F.config,
            .ks = ks,
            .pepper = F.pepper,
            .state_dir = F.dir,
            .socket_path = FUZZ_SOCKET,
            .started_at = T_2025_01_01,
        };
        lastused_init(&F.api.lastused);
        r = api_init(&F.api);
        if (r < 0)
                die("api_init: %s", strerror(-r));
        /* Without a thread: the writes run from the loop, so runs repeat exactly. */
        r = writer_new(F.event, ks, false, &F.api.writer);
        if (r < 0)
                die("writer_new: %s", strerror(-r));
        /* Open files stay usable; the directory goes now, so nothing outlives us. */
        remove_dir();
        F.open = true;
}

static void state_close(void)
{
        char *err = NULL;
        int r;

        if (!F.open)
                return;
        api_finish(&F.api);
        writer_free(F.api.writer);
        r = keystore_check_indexes(F.api.ks, &err);
        if (r < 0)
                die("the keystore's indexes are inconsistent: %s", err ? err : strerror(-r));
        lastused_done(&F.api.lastused);
        api_done(&F.api);
        keystore_close(F.api.ks);
        F.api = (struct api){0};
        sodium_free(F.pepper);
        F.pepper = NULL;
        F.open = false;
}

static void teardown(void)
{
        state_close();
        server_free(F.server);
        server_free(F.server_small);
        sd_event_unref(F.event);
        config_done(&F.config);
        F.initialized = false;
}

static void setup(void)
{
        struct server_options sopts;
        const char *s = getenv("FUZZ_REQUESTS_RESET");
        int r;

        if (F.initialized)
                return;
        F.reset_every = s && atoi(s) > 0 ? (unsigned)atoi(s) : DEFAULT_RESET_EVERY;
        F.trace = getenv("FUZZ_REQUESTS_TRACE") != NULL;
        /* The daemon's log would drown the fuzzer's; FUZZ_LOG=1 keeps it. */
        log_set_max_level(getenv("FUZZ_LOG") ? LOG_DEBUG : -1);
        signal(SIGPIPE, SIG_IGN);
        if (token_crypto_init() < 0)
                die("cannot initialise libsodium");
        json_set_alloc_funcs(malloc, erasing_free);
        if (config_init_defaults(&F.config) < 0)
                die("out of memory");

        r = sd_event_new(&F.event);
        if (r < 0)
                die("sd_event_new: %s", strerror(-r));
        sopts = (struct server_options){
            .max_message = F.config.max_message_size,
            .max_connections = F.config.max_connections,
            .max_connections_per_uid = F.config.max_connections_per_uid,
            .reserved_connections = config_reserved_connections(&F.config),
            .client_timeout = F.config.client_timeout_usec,
        };
        r = server_new(F.event, -1, &sopts, api_dispatch, &F.api, &F.server);
        if (r >= 0) {
                /* The daemon's Verify fast path on the main server; the small one
                 * decodes every call the general way. */
                server_set_fast_path(F.server, api_fast_path);
                sopts.max_message = SMALL_MAX_MESSAGE;
                r = server_new(F.event, -1, &sopts, api_dispatch, &F.api, &F.server_small);
        }
        if (r < 0)
                die("server_new: %s", strerror(-r));
        F.initialized = true;
        atexit(teardown);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
        setup();
        return 0;
}

/* What the client expects back, call by call, and checks the replies against. */
struct expect {
        bool *more;     /* per call that gets replies: whether it may get `continues` ones */
        size_t n, done; /* calls expecting a reply; final replies seen */
        bool too_large; /* a message is over the limit: the server replies and hangs up */
        struct varlink_buffer in;
};

static void expect_build(struct expect *e, const char *stream, size_t len, size_t max_message)
{
        const char *p = stream, *end = stream + len;

        *e = (struct expect){.more = calloc(len + 1, sizeof(bool))};
        if (!e->more)
                die("out of memory");
        varlink_buffer_init(&e->in, 64u * 1024u * 1024u, false);
        while (p < end) {
                const char *nul = memchr(p, '\0', (size_t)(end - p));
                size_t n = (size_t)(nul - p);
                struct varlink_call call;

                CHECK(nul != NULL);
                if (n > max_message) {
                        e->too_large = true;
                        break;
                }
                if (varlink_call_parse(p, n, &call) < 0)
                        e->more[e->n++] = false;
                else {
                        if (!call.oneway)
                                e->more[e->n++] = call.more;
                        varlink_call_done(&call);
                }
                p = nul + 1;
        }
}

static void expect_done(struct expect *e)
{
        free(e->more);
        varlink_buffer_done(&e->in);
}

/* One reply from the server: well-formed, and one the calls so far allow. */
static void check_reply(struct expect *e, const char *msg, size_t len)
{
        json_error_t err;
        json_t *reply = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &err), *v;
        const char *key;
        bool continues;

        if (F.trace)
                fprintf(stderr, "<- %.*s\n", (int)len, msg);
        if (!reply)
                die("the server sent a reply that is not JSON (%s): %.*s", err.text, (int)len, msg);
        CHECK(json_is_object(reply));
        json_object_foreach(reply, key, v)
        {
                if (strcmp(key, "parameters") == 0)
                        CHECK(json_is_object(v));
                else if (strcmp(key, "error") == 0)
                        CHECK(json_is_string(v) && json_string_length(v) > 0);
                else if (strcmp(key, "continues") == 0)
                        CHECK(json_is_boolean(v));
                else
                        die("the server sent a reply with a member \"%s\"", key);
        }
        continues = json_is_true(json_object_get(reply, "continues"));
        if (continues)
                CHECK(json_object_get(reply, "error") == NULL);
        if (!e->too_large) {
                CHECK(e->done < e->n);
                if (continues)
                        CHECK(e->more[e->done]);
        }
        if (!continues)
                e->done++;
        json_decref(reply);
}

/* Read what the server wrote; returns how many bytes. */
static size_t drain(int fd, struct expect *e)
{
        size_t total = 0;

        for (;;) {
                const char *msg;
                char *p;
                size_t room, len;
                ssize_t n;
                int r;

                CHECK(varlink_buffer_reserve(&e->in, 65536, &p, &room) == 0);
                n = recv(fd, p, room, MSG_DONTWAIT);
                if (n <= 0)
                        break;
                varlink_buffer_commit(&e->in, (size_t)n);
                total += (size_t)n;
                while ((r = varlink_buffer_next(&e->in, &msg, &len)) > 0)
                        check_reply(e, msg, len);
                CHECK(r == 0);
        }
        return total;
}

/* Run the loop and read replies until neither has anything left to do. */
static void run_until_idle(int fd, struct expect *e)
{
        for (unsigned i = 0;; i++) {
                int r = sd_event_run(F.event, 0);
                size_t got = drain(fd, e);

                CHECK(r >= 0);
                if (r == 0 && got == 0)
                        return;
                if (i >= MAX_ROUNDS)
                        die("the server is still busy after %u rounds of the event loop", i);
        }
}

static uint64_t hash_input(const uint8_t *data, size_t size)
{
        uint64_t h = UINT64_C(14695981039346656037);

        for (size_t i = 0; i < size; i++)
                h = (h ^ data[i]) * UINT64_C(1099511628211);
        return h ^ (h >> 29);
}

static int compare_size(const void *a, const void *b)
{
        size_t x = *(const size_t *)a, y = *(const size_t *)b;

        return x < y ? -1 : x > y;
}

static void serve(const char *stream, size_t len, uint64_t h)
{
        struct server *srv = (h >> 61) == 0 ? F.server_small : F.server;
        size_t max_message = srv == F.server_small ? SMALL_MAX_MESSAGE : F.config.max_message_size;
        bool half_close = ((h >> 55) & 7) == 0;
        size_t cuts[5], n_cuts = 1 + (h & 3), sent = 0;
        struct expect e;
        int fds[2], r;
        uint64_t x = h;

        /* Up to four cut points anywhere in the stream, and its end. */
        for (size_t i = 0; i + 1 < n_cuts; i++) {
                x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
                cuts[i] = (size_t)((x >> 33) % (len + 1));
        }
        cuts[n_cuts - 1] = len;
        qsort(cuts, n_cuts, sizeof(cuts[0]), compare_size);

        expect_build(&e, stream, len, max_message);
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) < 0)
                die("socketpair: %m");
        F.api.server = srv;
        r = server_add_connection(srv, fds[0]);
        if (r < 0)
                die("server_add_connection: %s", strerror(-r));

        for (size_t i = 0; i < n_cuts; i++) {
                unsigned stalls = 0;

                while (sent < cuts[i]) {
                        ssize_t n = send(fds[1], stream + sent, cuts[i] - sent, MSG_NOSIGNAL);

                        if (n > 0) {
                                sent += (size_t)n;
                                stalls = 0;
                        } else if (n < 0 && errno != EAGAIN)
                                break; /* the server hung up (message too large) */
                        else if (++stalls > 1000)
                                die("the server stopped reading with %zu of %zu bytes sent", sent,
                                    len);
                        run_until_idle(fds[1], &e);
                }
                run_until_idle(fds[1], &e);
        }
        if (half_close) {
                (void)shutdown(fds[1], SHUT_WR);
                run_until_idle(fds[1], &e);
        }
        /* Everything was read and answered: each call got its final reply,
         * also when the client shut its writing side first. */
        if (!e.too_large) {
                if (e.done != e.n)
                        die("%zu calls sent, %zu final replies received", e.n, e.done);
                CHECK(!varlink_buffer_pending(&e.in));
        }

        close(fds[1]);
        for (unsigned i = 0; server_connection_count(srv) > 0; i++) {
                if (i >= MAX_ROUNDS)
                        die("the connection outlived its client");
                CHECK(sd_event_run(F.event, 0) >= 0);
        }
        expect_done(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint64_t h = hash_input(data, size);
        char *stream;
        size_t len = size;

        setup();
        if (!F.open)
                state_open();

        stream = malloc(size + 1);
        if (!stream)
                die("out of memory");
        if (size > 0)
                memcpy(stream, data, size);
        if (size == 0 || data[size - 1] != '\0')
                stream[len++] = '\0';

        serve(stream, len, h);
        free(stream);

        if (((h >> 58) & 7) == 0)
                api_flush(&F.api);
        if (++F.inputs >= F.reset_every) {
                state_close();
                F.inputs = 0;
        }
        return 0;
}
