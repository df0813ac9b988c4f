/* SPDX-License-Identifier: MIT */
/*
 * apikeyd: the daemon's entry point.  Reads the config, opens the pepper
 * and the keystore, takes the listening socket from systemd or binds its
 * own, and runs the event loop until SIGTERM/SIGINT; then stops accepting,
 * waits for the changes handed to the writer (each is answered), writes
 * the pending last-used times and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include "api.h"
#include "dispatch.h"
#include "fleet.h"
#include "hygiene.h"
#include "config.h"
#include "keystore.h"
#include "log.h"
#include "restore.h"
#include "server.h"
#include "sessions.h"
#include "timeutil.h"
#include "token_crypto.h"
#include "varlink.h"
#include "writer.h"

#define DEFAULT_CONFIG    "/etc/apikeyd/apikeyd.conf"
#define DEFAULT_STATE_DIR "/var/lib/apikeyd"
#define DEFAULT_SOCKET    "/run/apikeyd/io.apikeyd.Keys"

/* The meta entry that keeps the pepper's fingerprint (token_crypto.h). */
#define META_PEPPER_FINGERPRINT PEPPER_FINGERPRINT_META

struct options {
        const char *config;
        bool config_given, no_config, check, debug, fleet_push;
        const char *state_dir;
        const char *restore; /* --restore FILE */
        bool force;
        const char *socket;
};

static void help(void)
{
        printf("Usage: apikeyd [OPTIONS]\n"
               "\n"
               "The API key daemon: keeps the keystore and answers Varlink calls.\n"
               "\n"
               "  -c, --config FILE     read this config file (default " DEFAULT_CONFIG ";\n"
               "                        a missing default file means built-in defaults)\n"
               "      --no-config       use the built-in defaults, read no file\n"
               "  -s, --state-dir DIR   keystore and pepper directory (default " DEFAULT_STATE_DIR
               ")\n"
               "  -S, --socket PATH     socket to bind when not socket-activated\n"
               "                        (default " DEFAULT_SOCKET ")\n"
               "      --check           check the keystore's consistency and exit\n"
               "      --restore FILE    install the backup FILE as the keystore of the\n"
               "                        state directory (the daemon stopped) and exit\n"
               "      --force           with --restore: even if made with another pepper\n"
               "      --fleet-push      move the keys of this host into etcd (fleet mode's\n"
               "                        fleet_endpoints) and exit\n"
               "  -d, --debug           log debug messages\n"
               "  -h, --help            show this help\n"
               "  -V, --version         show the version\n");
}

static int parse_args(int argc, char **argv, struct options *o)
{
        enum { OPT_NO_CONFIG = 0x100, OPT_CHECK, OPT_FLEET_PUSH, OPT_RESTORE, OPT_FORCE };
        static const struct option longopts[] = {
            {"config", required_argument, NULL, 'c'},
            {"no-config", no_argument, NULL, OPT_NO_CONFIG},
            {"state-dir", required_argument, NULL, 's'},
            {"socket", required_argument, NULL, 'S'},
            {"check", no_argument, NULL, OPT_CHECK},
            {"fleet-push", no_argument, NULL, OPT_FLEET_PUSH},
            {"restore", required_argument, NULL, OPT_RESTORE},
            {"force", no_argument, NULL, OPT_FORCE},
            {"debug", no_argument, NULL, 'd'},
            {"help", no_argument, NULL, 'h'},
            {"version", no_argument, NULL, 'V'},
            {NULL, 0, NULL, 0},
        };
        int c;

        *o = (struct options){
            .config = DEFAULT_CONFIG,
            .state_dir = DEFAULT_STATE_DIR,
            .socket = DEFAULT_SOCKET,
        };
        while ((c = getopt_long(argc, argv, "c:s:S:dhV", longopts, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        o->config = optarg;
                        o->config_given = true;
                        break;
                case OPT_NO_CONFIG:
                        o->no_config = true;
                        break;
                case 's':
                        o->state_dir = optarg;
                        break;
                case 'S':
                        o->socket = optarg;
                        break;
                case OPT_CHECK:
                        o->check = true;
                        break;
                case OPT_FLEET_PUSH:
                        o->fleet_push = true;
                        break;
                case OPT_RESTORE:
                        o->restore = optarg;
                        break;
                case OPT_FORCE:
                        o->force = true;
                        break;
                case 'd':
                        o->debug = true;
                        break;
                case 'h':
                        help();
                        exit(0);
                case 'V':
                        printf("apikeyd %s\n", APIKEYD_VERSION);
                        exit(0);
                default:
                        fprintf(stderr, "Try 'apikeyd --help' for more information.\n");
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr,
                        "apikeyd: unexpected argument '%s'\n"
                        "Try 'apikeyd --help' for more information.\n",
                        argv[optind]);
                return -EINVAL;
        }
        if (o->no_config && o->config_given) {
                fprintf(stderr, "apikeyd: --config and --no-config exclude each other\n");
                return -EINVAL;
        }
        if (o->force && !o->restore) {
                fprintf(stderr, "apikeyd: --force goes with --restore\n");
                return -EINVAL;
        }
        return 0;
}

struct daemon {
        struct api api;
        struct server *server;
        sd_event *event;
        sd_event_source *flush_timer;
        uint64_t flush_interval;
};

static int on_flush_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct daemon *d = userdata;

        api_flush(&d->api);
        (void)sd_event_source_set_time(s, usec + d->flush_interval);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ON);
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct daemon *d = userdata;

        log_event(LOG_INFO, MESSAGE_ID_STOPPING,
                  "received %s; finishing calls in flight and stopping",
                  strsignal((int)si->ssi_signo));
        (void)sd_notify(0, "STOPPING=1");
        server_stop_listening(d->server);
        return sd_event_exit(d->event, 0);
}

static int ensure_dir(const char *path, mode_t mode)
{
        struct stat st;

        if (mkdir(path, mode) == 0)
                return 0;
        if (errno != EEXIST)
                return -errno;
        if (stat(path, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

/*
 * The state directory holds the pepper and the keystore: one that another
 * user owns, or group or others may write to, would let them swap either.
 */
static int check_state_dir(const char *dir)
{
        struct stat st;

        if (stat(dir, &st) < 0) {
                log_error("cannot stat state directory %s: %m", dir);
                return -errno;
        }
        if (st.st_uid != geteuid()) {
                log_error("state directory %s is owned by uid %u, not by this daemon (uid %u): "
                          "refusing to keep the pepper and keys there; chown it to uid %u",
                          dir, (unsigned)st.st_uid, (unsigned)geteuid(), (unsigned)geteuid());
                return -EPERM;
        }
        if (st.st_mode & 022) {
                log_error("state directory %s has mode %04o: group or others may write to it and "
                          "replace the pepper or the keystore; refusing to start (chmod 0700 it)",
                          dir, (unsigned)(st.st_mode & 07777));
                return -EPERM;
        }
        return 0;
}

/* 1 if the keystore holds a key (of any status, damaged or not), 0 if none, or a negative errno. */
static int keystore_has_keys(struct keystore *ks)
{
        uint64_t n;
        int r = keystore_n_keys(ks, &n);

        return r < 0 ? r : n > 0;
}

/*
 * The pepper and the keystore, each checked against the other.  The
 * keystore keeps the pepper's fingerprint: a pepper missing or replaced
 * while keys exist stops the start (every key would answer NOT_FOUND and
 * feed the lockouts) with what to restore.  A new pepper is made only for
 * a keystore without keys; a keystore without a fingerprint (made before
 * there was one) gets the present pepper's.
 */
static int open_state(const struct options *o, const struct keystore_options *kopts,
                      uint8_t *pepper, struct keystore **ret_ks)
{
        _cleanup_free_ char *err = NULL, *store = NULL;
        uint8_t kept[PEPPER_FINGERPRINT_SIZE], fp[PEPPER_FINGERPRINT_SIZE];
        const char *dir = o->state_dir;
        struct keystore *ks = NULL;
        bool missing, created = false;
        size_t len = 0;
        int r, keys;

        if (asprintf(&store, "%s/%s", dir, KEYSTORE_FILE) < 0)
                return -ENOMEM;
        r = pepper_load(dir, false, pepper, &err);
        if (r == -ENOENT && !o->check && access(store, F_OK) < 0 && errno == ENOENT) {
                /* A new state directory: the pepper first, then the keystore. */
                free(err);
                err = NULL;
                r = pepper_load(dir, true, pepper, &err);
                created = r >= 0;
        }
        missing = r == -ENOENT;
        if (r < 0 && !missing) {
                log_error("%s", err ? err : strerror(-r));
                return r;
        }
        if (missing && o->check) {
                log_error("%s", err ? err : strerror(ENOENT));
                return -ENOENT;
        }
        free(err);
        err = NULL;
        r = keystore_open(dir, kopts, &ks, &err);
        if (r < 0) {
                log_error("%s", err ? err : strerror(-r));
                return r;
        }
        keys = keystore_has_keys(ks);
        if (keys < 0) {
                log_error("cannot read the keystore %s: %s", store, strerror(-keys));
                r = keys;
                goto fail;
        }
        if (missing && keys > 0) {
                log_error("%s/%s is missing, but the keystore %s holds keys made with it: restore "
                          "%s/%s from the backup taken with %s (a new pepper would make every key "
                          "fail to verify)",
                          dir, PEPPER_FILE, store, dir, PEPPER_FILE, KEYSTORE_FILE);
                r = -ENOENT;
                goto fail;
        }
        if (missing) {
                r = pepper_load(dir, true, pepper, &err);
                if (r < 0) {
                        log_error("%s", err ? err : strerror(-r));
                        goto fail;
                }
                created = true;
        }

        pepper_fingerprint(pepper, fp);
        r = keystore_meta_get(ks, META_PEPPER_FINGERPRINT, kept, sizeof(kept), &len);
        if (r < 0 && r != -ENOENT && r != -ENOBUFS) {
                log_error("cannot read the pepper's fingerprint from %s: %s", store, strerror(-r));
                goto fail;
        }
        if (r == 0 && len == sizeof(kept) && pepper_fingerprint_equal(kept, fp))
                goto done;
        if (r != -ENOENT && keys > 0) {
                log_error("%s/%s is not the pepper the keys in %s were made with (its fingerprint "
                          "differs from the one the keystore keeps): restore %s/%s from the backup "
                          "taken with %s",
                          dir, PEPPER_FILE, store, dir, PEPPER_FILE, KEYSTORE_FILE);
                r = -EBADMSG;
                goto fail;
        }
        if (!o->check) {
                r = keystore_meta_put(ks, META_PEPPER_FINGERPRINT, fp, sizeof(fp));
                if (r < 0) {
                        log_error("cannot record the pepper's fingerprint in %s: %s", store,
                                  strerror(-r));
                        goto fail;
                }
                if (created)
                        log_info("created the pepper %s/%s", dir, PEPPER_FILE);
                else
                        log_info("recorded the fingerprint of %s/%s in the keystore", dir,
                                 PEPPER_FILE);
        }
done:
        *ret_ks = ks;
        return 0;
fail:
        keystore_close(ks);
        return r;
}

/* The socket from systemd, or one we bind; `*ret_bound` tells which. */
static int open_socket(const char *path, int *ret_fd, bool *ret_bound)
{
        int n = sd_listen_fds(1), r;

        if (n < 0)
                return n;
        if (n > 1) {
                log_error("systemd passed %d sockets; expected one", n);
                return -EINVAL;
        }
        if (n == 1) {
                if (sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) <= 0) {
                        log_error(
                            "the socket systemd passed is not a listening UNIX stream socket");
                        return -EINVAL;
                }
                *ret_fd = SD_LISTEN_FDS_START;
                *ret_bound = false;
                return 0;
        }
        /* The socket's directory: create it if it is missing (world-searchable). */
        _cleanup_free_ char *dir = strdup(path);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (!dir)
                return -ENOMEM;
        if (slash && slash != dir) {
                *slash = '\0';
                r = ensure_dir(dir, 0755);
                if (r < 0) {
                        log_error("cannot create socket directory %s: %s", dir, strerror(-r));
                        return r;
                }
        }
        r = server_listen_unix(path, ret_fd);
        if (r == -EADDRINUSE)
                log_error("another apikeyd is already answering on %s", path);
        else if (r < 0)
                log_error("cannot listen on %s: %s", path, strerror(-r));
        *ret_bound = true;
        return r;
}

/*
 * Room for the connections the config allows: raise the soft file limit to
 * the hard one (the loop uses epoll, not select, so large numbers are fine)
 * and, if that is still too few, allow fewer connections and say so.  The
 * connections cut are other users': the reserve for root and the daemon's
 * user stays whole while it fits.
 */
static void fit_connections_to_file_limit(struct apikeyd_config *cfg)
{
        const rlim_t spare = 64; /* the keystore, the listener, the journal, ... */
        struct rlimit rl;

        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        if (rl.rlim_cur < rl.rlim_max) {
                rlim_t want = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
                struct rlimit raised = {.rlim_cur = want, .rlim_max = rl.rlim_max};
                if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
                        rl.rlim_cur = want;
        }
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)cfg->max_connections + spare > rl.rlim_cur) {
                unsigned fit = rl.rlim_cur > spare + 1 ? (unsigned)(rl.rlim_cur - spare) : 1;
                log_warning("max_connections = %u does not fit the open-file limit of %llu; "
                            "serving at most %u connections (raise LimitNOFILE=)",
                            cfg->max_connections, (unsigned long long)rl.rlim_cur, fit);
                cfg->max_connections = fit;
                if (cfg->reserved_connections > fit)
                        cfg->reserved_connections = fit;
                log_warning("of those, %u are kept for root and the daemon's user "
                            "(reserved_connections) and %u are left to other users",
                            config_reserved_connections(cfg),
                            fit - config_reserved_connections(cfg));
        }
        if (cfg->max_connections_per_uid > cfg->max_connections)
                cfg->max_connections_per_uid = cfg->max_connections;
}

static int run(const struct options *o, struct apikeyd_config *cfg)
{
        struct daemon d = {
            .api.config = cfg,
            .api.state_dir = o->state_dir,
            .api.started_at = now_usec(),
            .flush_interval = cfg->last_used_flush_interval_usec,
        };
        struct keystore_options kopts = {.mapsize = cfg->map_size,
                                         .audit_max = cfg->audit_max_events};
        _cleanup_free_ char *err = NULL;
        uint8_t *pepper = NULL;
        bool bound = false;
        _cleanup_close_ int lock_fd = -1;
        int fd = -1, r;
        sigset_t mask;

        fit_connections_to_file_limit(cfg);
        r = ensure_dir(o->state_dir, 0700);
        if (r < 0) {
                log_error("cannot create state directory %s: %s", o->state_dir, strerror(-r));
                return r;
        }
        r = check_state_dir(o->state_dir);
        if (r < 0)
                return r;
        /* No restore into the state directory while it is in use (restore.h). */
        if (!o->check) {
                r = state_dir_lock(o->state_dir, "refusing to start", &lock_fd);
                if (r < 0)
                        return r;
        }
        /* sodium_malloc'd memory is locked (never swapped) and guarded. */
        pepper = sodium_malloc(PEPPER_SIZE);
        if (!pepper)
                return -ENOMEM;
        r = open_state(o, &kopts, pepper, &d.api.ks);
        if (r < 0)
                goto out;
        d.api.pepper = pepper;
        if (o->check) {
                free(err);
                err = NULL;
                r = keystore_check_indexes(d.api.ks, &err);
                if (r < 0)
                        fprintf(stderr, "apikeyd: keystore in %s is inconsistent: %s\n",
                                o->state_dir, err ? err : strerror(-r));
                else
                        printf("keystore in %s is consistent\n", o->state_dir);
                goto out;
        }
        if (o->fleet_push) {
                uint8_t fp[PEPPER_FINGERPRINT_SIZE];

                if (!cfg->fleet_endpoints) {
                        fprintf(stderr, "apikeyd: --fleet-push needs fleet_endpoints in the "
                                        "config\n");
                        r = -EINVAL;
                        goto out;
                }
                pepper_fingerprint(pepper, fp);
                r = fleet_push(cfg, d.api.ks, fp);
                goto out;
        }
        lastused_init(&d.api.lastused);
        r = api_init(&d.api);
        if (r < 0) {
                log_error("cannot load the shared secret: %s", strerror(-r));
                goto out;
        }

        r = open_socket(o->socket, &fd, &bound);
        if (r < 0)
                goto out;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);

        /* Not sd_event_default(): a default loop checks its thread with a
         * gettid() system call on every iteration, one per call served. */
        r = sd_event_new(&d.event);
        /* With WatchdogSec= in the unit, the loop itself sends WATCHDOG=1
         * (as systemd's own daemons do): a loop that stops turning stops the
         * pings, and systemd restarts the daemon.  Not a thread of its own,
         * which would go on pinging for a loop that is stuck. */
        if (r >= 0)
                r = sd_event_set_watchdog(d.event, true);
        if (r >= 0)
                r = sd_event_add_signal(d.event, NULL, SIGTERM, on_signal, &d);
        if (r >= 0)
                r = sd_event_add_signal(d.event, NULL, SIGINT, on_signal, &d);
        if (r >= 0)
                r = sd_event_add_time_relative(d.event, &d.flush_timer, CLOCK_MONOTONIC,
                                               d.flush_interval, 0, on_flush_timer, &d);
        /* From here on every write goes through the writer's thread. */
        if (r >= 0)
                r = writer_new(d.event, d.api.ks, true, &d.api.writer);
        if (r >= 0) {
                struct server_options sopts = {
                    .max_message = cfg->max_message_size,
                    .max_connections = cfg->max_connections,
                    .max_connections_per_uid = cfg->max_connections_per_uid,
                    .reserved_connections = config_reserved_connections(cfg),
                    .client_timeout = cfg->client_timeout_usec,
                };
                r = server_new(d.event, fd, &sopts, api_dispatch, &d.api, &d.server);
                d.api.server = d.server;
                d.api.event = d.event;
                sessions_load(&d.api);
                if (r >= 0)
                        server_set_fast_path(d.server, api_fast_path);
                d.api.socket_path = bound ? o->socket : NULL;
        }
        if (r < 0) {
                log_error("cannot set up the event loop: %s", strerror(-r));
                goto out;
        }
        if (cfg->fleet_endpoints) {
                struct fleet_setup fs = {.config = cfg,
                                         .event = d.event,
                                         .ks = d.api.ks,
                                         .writer = d.api.writer,
                                         .config_path = o->config,
                                         .state_dir = o->state_dir,
                                         .state_lock_fd = lock_fd};

                pepper_fingerprint(pepper, fs.pepper_fingerprint);
                r = fleet_new(&fs, &d.api.fleet);
                if (r < 0)
                        goto out;
        }
        r = hygiene_start(&d.api);
        if (r < 0) {
                log_error("cannot start looking for unused keys: %s", strerror(-r));
                goto out;
        }

        log_event(LOG_INFO, MESSAGE_ID_STARTED, "apikeyd %s ready on %s (state in %s)",
                  APIKEYD_VERSION, bound ? o->socket : "the socket passed by systemd",
                  o->state_dir);
        (void)sd_notifyf(0, "READY=1\nSTATUS=Answering on %s", bound ? o->socket : "socket unit");
        r = sd_event_loop(d.event);
        if (r < 0)
                log_error("event loop failed: %s", strerror(-r));
        api_finish(&d.api);
        r = r < 0 ? r : 0;
out:
        /* The writer first: what it finishes answers connections the server still has. */
        writer_free(d.api.writer);
        fleet_free(d.api.fleet);
        server_free(d.server);
        sd_event_source_disable_unref(d.flush_timer);
        sd_event_unref(d.event);
        if (d.api.ks)
                lastused_done(&d.api.lastused);
        api_done(&d.api);
        keystore_close(d.api.ks);
        sodium_free(pepper);
        if (bound && fd >= 0) {
                (void)unlink(o->socket);
                close(fd);
        }
        return r;
}

static int discard(const char *buf, size_t size, void *userdata)
{
        return 0;
}

/*
 * Debian's libjansson is linked for lazy binding: the first call of each C
 * library function it imports goes through the dynamic linker's resolver,
 * which saves the vector registers on the stack, and right after a token
 * was copied they hold pieces of its secret, left where nothing erases
 * them.  Going once through what the daemon asks of jansson (reading,
 * errors, building, every kind of value, writing) before any secret
 * arrives binds those functions now.  apikeyd itself and its other
 * libraries are linked with -z now.
 */
static void bind_json_now(void)
{
        static const char text[] = "{\"s\": \"a\\u00e9\\n\\\"\", \"i\": -12, \"r\": 1.5e3, "
                                   "\"t\": true, \"f\": false, \"n\": null, \"a\": [1, {}]}";
        json_error_t e;
        json_t *v = json_loadb(text, sizeof(text) - 1, 0, &e), *bad;
        char buf[512];

        bad = json_loadb("{\"x\": [1,", 10, 0, &e);
        json_decref(bad);
        if (!v)
                return;
        json_t *p = json_pack("{s:s, s:s#, s:o, s:I, s:b, s:f, s:n}", "k", "v", "l", "ab", (int)2,
                              "o", json_deep_copy(v), "i", (json_int_t)1, "b", 1, "f", 2.5, "x");
        if (p) {
                (void)json_object_set_new(p, "z", json_stringn("z", 1));
                (void)json_dumpb(p, buf, sizeof(buf), JSON_COMPACT);
                (void)json_dumpb(p, buf, sizeof(buf), JSON_COMPACT | JSON_SORT_KEYS);
                (void)json_dump_callback(p, discard, NULL, JSON_COMPACT);
                json_decref(p);
        }
        json_decref(v);
}

int main(int argc, char **argv)
{
        struct options o;
        struct apikeyd_config cfg;
        _cleanup_free_ char *err = NULL;
        int r;

        /* No core dumps: memory holds the pepper and tokens in flight. */
        (void)prctl(PR_SET_DUMPABLE, 0);
        umask(0077);

        if (parse_args(argc, argv, &o) < 0)
                return 2;
        if (o.debug)
                log_set_max_level(LOG_DEBUG);
        if (config_init_defaults(&cfg) < 0)
                return 1;
        if (!o.no_config) {
                r = config_load_file(&cfg, o.config, !o.config_given, &err);
                if (r < 0) {
                        log_error("%s", err ? err : strerror(-r));
                        config_done(&cfg);
                        return 1;
                }
        }
        if (token_crypto_init() < 0) {
                log_error("cannot initialise libsodium");
                config_done(&cfg);
                return 1;
        }
        if (o.restore) {
                r = restore_backup(o.restore, o.state_dir, o.force);
                config_done(&cfg);
                return r < 0 ? 1 : 0;
        }
        json_set_alloc_funcs(malloc, erasing_free);
        bind_json_now();
        /* Large blocks (a connection's output, LMDB's page list of each
         * nested write) go back to the system when freed.  glibc would raise
         * its threshold after the first such free and keep later ones on a
         * heap that does not shrink: a fixed threshold keeps memory bounded. */
        (void)mallopt(M_MMAP_THRESHOLD, 128 * 1024);

        r = run(&o, &cfg);
        config_done(&cfg);
        return r < 0 ? 1 : 0;
}
