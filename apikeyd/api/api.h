/* SPDX-License-Identifier: MIT */
/*
 * The API's state (struct api, owned by state.c) as the daemon sets it up,
 * flushes and ends it; dispatch.h has the entries the server calls.  The
 * interface file io.apikeyd.Keys.varlink is the reference for every
 * method, parameter and error the API answers.
 */
#pragma once

#include <stdint.h>

#include <sodium.h>

#include "config.h"
#include "expiry.h"
#include "keystore.h"
#include "lastused.h"
#include "lockout.h"
#include "server.h"
#include "timeutil.h"
#include "token_crypto.h"
#include "usage.h"
#include "writer.h"

/* The release, from the file VERSION at the top: the Makefile passes it. */
#ifndef APIKEYD_VERSION
#error "APIKEYD_VERSION is not defined: build with the Makefile, which reads it from VERSION"
#endif
#define API_LIST_MAX     1000
#define API_CHILDREN_MAX 100 /* ids of the keys created through a key that Get names */

/* The interface file, compiled in (generated from io.apikeyd.Keys.varlink). */
extern const char apikeyd_interface_description[];
/* org.varlink.service's description, as GetInterfaceDescription serves it. */
extern const char api_service_description[];

/* A failed verify, or a refused call, waiting to be written to the audit database. */
struct queued_verify {
        uint64_t time;
        char actor[KEY_OWNER_MAX + 32];
        char action[32]; /* "" for a verify; "auth" for the key of a management call */
        char key_id[TOKEN_ID_LEN + 1];
        char result[32];
        char detail[5 * KEY_FIELD_MAX + 48];
};

/* Failed verifies and refused calls are written in batches; beyond this
 * many pending (half of it for refused calls), they are counted and
 * dropped (the journal still has each verify). */
#define API_AUDIT_QUEUE_MAX 4096
/* Journal entries of refused calls a second; those beyond are counted. */
#define API_REFUSALS_LOGGED_PER_SEC 20

struct api {
        const struct apikeyd_config *config;
        struct keystore *ks;
        struct writer *writer;  /* every write to ks goes through it once api_init() is done */
        const uint8_t *pepper;  /* PEPPER_SIZE bytes, in locked memory */
        uint8_t *shared_secret; /* SHARED_SECRET_SIZE bytes, in locked memory */
        /* BLAKE2b keyed with shared_secret, ready to sign (locked memory too). */
        crypto_generichash_state *sign_state;
        /* The second answers were last signed in, written out once for all of them. */
        uint64_t signed_sec;
        char signed_at[TIMESTAMP_MAX];
        struct lastused lastused;
        struct usage_queue usage;   /* uses waiting for the usage history (usage.h) */
        struct expiry_state expiry; /* expiry warnings given (expiry.h) */
        struct lockout lockout;     /* failed verifies per key id */
        struct queued_verify *audit_queue;
        size_t n_audit_queue;
        uint64_t audit_dropped;
        uint64_t rate_limited_last; /* when a RATE_LIMITED verify was last logged */
        unsigned rate_limited_suppressed;
        uint64_t refusals_second; /* the second refused calls were last logged in */
        unsigned refusals_logged, refusals_suppressed;
        /* For GetStatus. */
        const char *state_dir;
        const char *socket_path; /* NULL when systemd passed the socket */
        uint64_t started_at;     /* µs, realtime */
        struct server *server;
        struct fleet *fleet;            /* fleet mode (fleet.h), or NULL */
        sd_event *event;                /* for the sessions' timer */
        struct session_table *sessions; /* sessions.c */
        struct hygiene *hygiene;        /* hygiene.c: unused keys disabled */
        struct rate_table *rates;       /* keys' rate-limit windows (key_limits.c), or NULL */
};

#define API_SIGNATURE_SIZE 32

/*
 * Load the shared secret from its file in the state directory (moving it
 * there from the keystore, where older versions kept it), creating it on
 * first use, into locked memory; api_done() frees it.  May reopen `ks`.
 * 0 or a negative errno (the reason logged).
 */
int api_init(struct api *a) _warn_unused_;
void api_done(struct api *a);

/*
 * Hand what is batched in memory to the writer: last-used times, failed
 * verifies and lockout counts, each one write.  Called every
 * last_used_flush_interval; what fails waits for the next call.
 */
void api_flush(struct api *a);

/*
 * At shutdown: wait for every change handed to the writer (each is
 * answered), then flush as api_flush() does and wait for that too.
 */
void api_finish(struct api *a);

/*
 * The canonical form of a Verify answer that `signature` authenticates
 * (BLAKE2b-256 keyed with the shared secret, crypto_generichash; as cheap
 * as the token hash, where HMAC-SHA-512 cost several times the rest of a
 * verify):
 *
 *   apikeyd-verify-v1\n
 *   signed_at=<signed_at as in the reply>\n
 *   valid=<true|false>\n
 *   code=<code>\n
 *   id=<key.id, or empty when the reply has no key>\n
 *   owner=<key.owner, or empty>\n
 *   service=<the call's service, or empty>\n
 *   user=<the call's user, or empty>\n
 *   rhost=<the call's rhost, or empty>\n
 *
 * None of the values can hold a newline (Verify refuses control characters
 * in service, user and rhost), so the form is unambiguous.
 */
int api_verify_canonical(char *buf, size_t size, const char *signed_at, bool valid,
                         const char *code, const char *id, const char *owner, const char *service,
                         const char *user, const char *rhost);
