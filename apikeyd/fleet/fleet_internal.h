/* SPDX-License-Identifier: MIT */
/*
 * What the files of the fleet replica share, internal to apikeyd/fleet/
 * (api/ and main see fleet.h only): the replica's state, struct fleet,
 * owned by fleet.c (setup, the sync, the probe, what Verify and GetStatus
 * ask), with fleet_hosts.c (this host's report and a manager's view of the
 * hosts') and fleet_publish.c (a manager's writes) beside it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "etcd_client.h"
#include "etcd_decode.h"
#include "fleet.h"
#include "keystore_fleet.h"

#define MSEC UINT64_C(1000)
#define SEC  UINT64_C(1000000)

/* A probe a second; contact older than the window is offline. */
#define PROBE_INTERVAL (1 * SEC)
#define PROBE_TIMEOUT  (1500 * MSEC)
#define ONLINE_WINDOW  (3 * SEC)
#define UNARY_TIMEOUT  (5 * SEC)
/* A manager's write, from its first try to its own replica applying it:
 * within the clients' own timeouts (apikeyctl waits 10 s), and long enough
 * for a member that hangs under it to be left for the next, by the write
 * (PUBLISH_TRY) and by the watch (the probe), then caught up with. */
#define WRITE_TIMEOUT   (7 * SEC)
#define RESYNC_TIMEOUT  (30 * SEC)
#define BACKOFF_MIN     (200 * MSEC)
#define BACKOFF_MAX     (5 * SEC)
#define RANGE_PAGE      500
#define CONTACT_PERSIST (60 * SEC)
/* A watch is silent between changes: etcd's progress notifications come
 * every 10 minutes by default.  A hung member is found by the probe; this
 * is the stream's own limit beyond that. */
#define WATCH_LOW_SPEED (11 * 60 * SEC)
/* Each host reports its applied revision when it has changed, at most every
 * REPORT_MIN (a fleet of 10,000 hosts then writes at most 1,000 reports a
 * second after a change), and every REPORT_EVERY regardless; a manager reads
 * them all every HOSTS_REFRESH. */
#define REPORT_MIN    (10 * SEC)
#define REPORT_EVERY  (60 * SEC)
#define HOSTS_REFRESH (5 * SEC)
#define HOSTS_MAX     10000
/* The safety-net resync: every 30 to 60 minutes. */
#define RESYNC_EVERY (30 * 60 * SEC)

enum phase {
        PHASE_WAIT,   /* backing off before the next try */
        PHASE_CHECK,  /* reading the pepper's fingerprint and the header */
        PHASE_RESYNC, /* paging through the keys */
        PHASE_WATCH,  /* following the watch */
};

enum pepper_state {
        PEPPER_UNKNOWN,
        PEPPER_OK,
        PEPPER_MISSING, /* etcd has none yet */
        PEPPER_DIFFERS,
};

struct resync {
        struct fleet_change *changes;
        void **bufs;
        size_t n, allocated;
        int64_t revision;
        char *next_key; /* base64 of the key the next page starts at */
};

/* The mod revision this replica last saw for each key id (0: absent). */
struct modrev {
        char id[TOKEN_ID_LEN];
        int64_t rev;
};

/* A manager's write waiting for etcd's answer, then for the replica to apply it. */
struct waiter {
        struct waiter *next;
        struct fleet *f;
        int64_t revision; /* 0 while the Txn is in flight */
        uint64_t deadline;
        struct etcd_request *req;
        char *body;                /* the Txn, for another member */
        char *check_body;          /* a Txn that succeeds if etcd holds what `body` writes */
        bool checking;             /* check_body is in flight */
        char *name_key;            /* base64 of the name index entry the write takes, or NULL */
        char id[TOKEN_ID_LEN + 1]; /* the key written (with those created through it) */
        bool naming;               /* the read of that entry is in flight */
        size_t endpoint;           /* the member it went to */
        unsigned tries;
        fleet_published_fn done;
        void *userdata;
};

/* A key's last use: this host's, waiting for etcd, or (with its host) the latest a manager read. */
struct fleet_use {
        char id[TOKEN_ID_LEN + 1]; /* "" in a free slot */
        uint64_t at;
        char host[CONFIG_FLEET_HOST_MAX + 1]; /* "" for this host's own */
        char *service, *from;                 /* NULL when not known */
};

/* Open addressing on the id, a power of two. */
struct fleet_uses {
        struct fleet_use *slots;
        size_t size, n;
};

/* A host's report, as a manager last read it. */
struct host_seen {
        char host[CONFIG_FLEET_HOST_MAX + 1];
        int64_t applied_revision;
        uint64_t reported_at;
};

struct fleet {
        const struct apikeyd_config *cfg;
        sd_event *event;
        struct keystore *ks;
        struct writer *writer;
        struct etcd_client *client;
        char **endpoints;
        size_t n_endpoints, current;
        char host[CONFIG_FLEET_HOST_MAX + 1];
        char *keys_prefix, *keys_prefix_b64, *keys_end_b64, *fp_key_b64;
        char *password; /* fleet_password_file's, erased when freed */
        char *token;    /* etcd's auth token for fleet_user, NULL until authenticated */
        uint8_t fp[PEPPER_FINGERPRINT_SIZE];

        enum phase phase;
        struct etcd_request *req, *watch, *probe;
        struct etcd_lines lines;
        sd_event_source *retry_timer, *probe_timer, *resync_timer;
        uint64_t backoff;
        bool force_resync, stopping;
        bool following;      /* a watch is in place (from its creation to the next failure) */
        unsigned generation; /* counts restarts: an op's failure after one is already handled */
        struct resync rs;

        int64_t applied, queued; /* written to LMDB; handed to the writer */
        uint64_t cluster_id;
        uint64_t contact_mono, contact_real, contact_saved;
        enum pepper_state pepper;
        char last_error[256];
        unsigned ops_pending;

        struct modrev *modrevs; /* open addressing, a power of two */
        size_t n_modrevs, modrevs_size;
        struct waiter *waiters;

        struct etcd_request *report, *hosts_req;
        uint64_t reported_mono, hosts_mono;
        int64_t reported_revision;
        struct host_seen *hosts;
        size_t n_hosts;

        /* fleet_hosts.c: a manager's read of the hosts' prefix, in pages pinned to one
         * revision; after a full read, only what changed since (min_mod_revision). */
        int64_t hosts_rev, hosts_pin; /* the last read's revision; this read's */
        char *hosts_next;             /* base64 of the key the next page starts at */
        bool hosts_full;              /* this read is a full one */
        uint64_t hosts_full_mono;
        struct host_seen *hosts_new; /* a full read's hosts, until it is done */
        size_t n_hosts_new, hosts_allocated, hosts_new_allocated;

        /* fleet_used.c */
        struct fleet_uses used, used_sent; /* this host's, to write; in flight */
        struct etcd_request *used_req;
        uint64_t used_mono;
        struct fleet_uses seen; /* a manager's: the latest use of each key, with its host */

        /* fleet_break_glass_keys: accepted past fleet_offline_max_age */
        char break_glass[CONFIG_FLEET_BREAK_GLASS_MAX][TOKEN_ID_LEN + 1];
        size_t n_break_glass;

        /* fleet_join.c: a keystore of this host's own keys, not in etcd yet */
        uint64_t joining; /* how many; 0: none (following etcd) */
        char *config_path, *state_dir;
        int state_lock_fd; /* the daemon's, not owned; -1: none */
        pid_t push_pid;    /* apikeyd --fleet-push, running */
        sd_event_source *push_source;
        char *push_out;
        size_t push_len;
        fleet_pushed_fn push_done;
        void *push_userdata;
};

/* ---- fleet.c ---- */

uint64_t fleet_now_mono(void);
/* The member followed now. */
const char *fleet_endpoint(const struct fleet *f);
/* Confirmed contact within ONLINE_WINDOW, while following. */
bool fleet_online(const struct fleet *f);
/* The mod revision the replica last saw for `id`; 0 when absent. */
int64_t fleet_modrev_get(const struct fleet *f, const char *id);
/* Answer the manager's writes that are applied, timed out, or (r < 0) all of them with r. */
void fleet_waiters_wake(struct fleet *f, int r);
/* Start over on the same member now, with a full resync if asked. */
void fleet_restart(struct fleet *f, bool resync);
/* An answer that is not one: `last_error` and the log say why (etcd's words first). */
bool fleet_answer_failed(struct fleet *f, const char *what, int r, long status, const char *error,
                         int code, const char *message);
/* A linearizable range on the member followed. */
int fleet_post_range(struct fleet *f, const char *body, uint64_t timeout, etcd_done_fn done,
                     struct etcd_request **ret);
/* The base64 range end of a key prefix (its last byte plus one), malloc'd. */
char *fleet_prefix_end_b64(const char *prefix);

/* ---- fleet_hosts.c ---- */

/* Write this host's report (if none is on its way). */
void fleet_report(struct fleet *f);
/* A manager: read every host's report and last uses (if no read is on its way). */
void fleet_read_hosts(struct fleet *f);
/* How often a manager reads them: HOSTS_REFRESH, or fleet_last_used_interval when shorter. */
uint64_t fleet_hosts_refresh(const struct fleet *f);
/* GetStatus's `hosts` of a manager, a new reference (NULL when out of memory). */
json_t *fleet_hosts_json(const struct fleet *f);

/* ---- fleet_used.c ---- */

const struct fleet_use *fleet_uses_find(const struct fleet_uses *t, const char *id);
/* Keep the use if it is the key's latest: 1 if kept, 0 if not later, -ENOMEM. */
int fleet_uses_put(struct fleet_uses *t, const char *id, uint64_t at, const char *host,
                   const char *service, const char *from);
void fleet_uses_free(struct fleet_uses *t);
/* Write this host's uses noted since the last write, once fleet_last_used_interval has
 * passed (or `now`), if none is on its way. */
void fleet_write_used(struct fleet *f, bool now);

/* ---- fleet_join.c ---- */

/* The push running, stopped (its caller answered -ESHUTDOWN). */
void fleet_push_stop(struct fleet *f);

/* ---- fleet_publish.c ---- */

/* fleet.c's sync, for fleet_setup.c: start following etcd, stop every request, the timers. */
void fleet_start(struct fleet *f);
void fleet_stop_requests(struct fleet *f);
void fleet_resync_reset(struct resync *rs);
uint64_t fleet_resync_delay(void);
int fleet_on_retry(sd_event_source *s, uint64_t usec, void *userdata);
int fleet_on_probe_timer(sd_event_source *s, uint64_t usec, void *userdata);
int fleet_on_resync_timer(sd_event_source *s, uint64_t usec, void *userdata);

void fleet_waiter_free(struct waiter *w);
/* For fleet_bulk.c and fleet_rotate.c, what fleet_publish() does for one
 * key: send a Txn (`*body`, and `*check_body` that tells whether a try that
 * timed out was written; both taken, as is `*name_key`, the name entry read
 * when a compare fails, if any) and answer `done` once this replica has
 * applied it, within WRITE_TIMEOUT; a key's compare and request, and its
 * check's compare; a key's name index entry (`was`: its record before,
 * NULL when created; `*ret_taken`: the entry it takes). */
int fleet_txn_send(struct fleet *f, char **body, char **check_body, char **name_key, const char *id,
                   fleet_published_fn done, void *userdata);
int fleet_publish_key(struct fleet *f, const char *id, json_t *compare, json_t *success,
                      json_t *check);
int fleet_publish_key_name(struct fleet *f, const char *id, const struct key_record *was,
                           json_t *compare, json_t *success, json_t *check, char **ret_taken);
