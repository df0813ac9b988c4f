/* SPDX-License-Identifier: MIT */
/*
 * Fleet mode: this host's keystore as a replica of the fleet's keys in
 * etcd (fleet.c), and what the API asks of it.  The only header of
 * apikeyd/fleet/ that api/ and main include.
 *
 * The replica follows etcd on the event loop (etcd_client.h): a check of
 * the member and the pepper's fingerprint, a full resync when needed
 * (paged range pinned to one revision, then what etcd no longer has
 * removed), then one watch from the applied revision + 1.  Each revision
 * is written through the writer, one transaction with the applied revision
 * (keystore_fleet.h).  A probe every second (a linearizable read, which
 * only a member with a leader answers) is the "confirmed contact" that
 * decides whether the host is online.  Verify never waits on any of it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "keys_proto.h"
#include "keystore.h"
#include "macro.h"
#include "token_crypto.h"
#include "writer.h"

struct fleet;

/* Where `apikeyd --fleet-push`, run by the daemon, finds the daemon's lock
 * on the state directory (restore.h). */
#define STATE_LOCK_FD_ENV "APIKEYD_STATE_LOCK_FD"

struct fleet_setup {
        const struct apikeyd_config *config; /* fleet_endpoints set */
        sd_event *event;
        struct keystore *ks;
        struct writer *writer;
        uint8_t pepper_fingerprint[PEPPER_FINGERPRINT_SIZE];
        /* How the daemon was started, for a FleetPush (fleet_push_start()),
         * and the state directory's lock it holds, handed to the push. */
        const char *config_path, *state_dir;
        int state_lock_fd;
};

/* Start following etcd.  0 or a negative errno (the reason logged). */
int fleet_new(const struct fleet_setup *s, struct fleet **ret) _warn_unused_;
/* After the writer is freed (its completions refer to the fleet). */
void fleet_free(struct fleet *f);

/*
 * Verify's code as fleet mode decides it, from the code the keystore gave
 * and the token's key id (NULL or "" if none): unchanged while online; a
 * key the replica does not know answers UNAVAILABLE while offline, and
 * past fleet_offline_max_age so does every key that would have been VALID;
 * refusals (REVOKED, DISABLED ...) stand.  With a pepper that differs from
 * the fleet's, every key answers UNAVAILABLE.  Never waits.
 */
enum verify_code fleet_verify_code(struct fleet *f, enum verify_code code, const char *id);

/* Whether management calls are refused here (fleet_manage = no). */
bool fleet_refuses_changes(const struct fleet *f);

/*
 * On a manager (fleet_manage = yes), after a management change to key
 * `id` was made in the local keystore: write the key's record as it is
 * now (or its deletion), with every key created through it when
 * `with_descendants` (a revoke or delete revokes them), to etcd in one
 * Txn that succeeds only if none of them changed in etcd since this
 * replica saw them (create only if absent; update only from the
 * revision read; a revoked key, final here, stays final there).  Names
 * are unique per owner across the fleet: the name index entry
 * <prefix>/names/<owner>/<name> -> id is created in the same Txn, only if
 * absent, when the key takes a name (`was` NULL: created; or renamed
 * from `was`'s, the record before the change), and removed when it leaves
 * one.  `done`
 * runs once this replica has applied the Txn's revision (read your
 * writes), with 0, or -EEXIST (another manager gave the name to a key
 * first: the replica resyncs, which undoes the local change), or -ESTALE (changed in etcd
 * meanwhile: the replica resyncs, which undoes the local change), -ETIMEDOUT or another error (etcd
 * not reached; the next resync settles it).
 */
typedef void (*fleet_published_fn)(int r, void *userdata);

/* What a caller is told when a manager's write failed with `r` (fleet_publish()'s errors). */
const char *fleet_write_error(int r);

/* Whether a manager can write now: online, with the fleet's pepper.  Else no change is tried. */
bool fleet_can_write(const struct fleet *f);
int fleet_publish(struct fleet *f, const char *id, const struct key_record *was,
                  bool with_descendants, fleet_published_fn done, void *userdata) _warn_unused_;

/*
 * A manager's bulk changes (fleet_bulk.c), for ChangeMatching and
 * CreateMany: the keys one write changed in the local keystore, written to
 * etcd as fleet_publish() writes one, all in one Txn: every key's compare
 * on the revision this replica saw (absent for a created key), every
 * created key's name index entry only if absent, a deleted key's entry
 * removed, and every key created through a revoked or deleted one (added
 * by fleet_batch_add_descendants()).  One compare failing fails it all.
 *
 * etcd takes at most FLEET_TXN_OPS operations in one Txn (its
 * --max-txn-ops, 128 by default), and its compares and its requests are
 * counted apart: a key changed is one of each, a created key two of each,
 * a deleted key one compare and two requests.  fleet_batch_ops() is the
 * larger count; a batch beyond the limit is not written (-E2BIG).
 */
#define FLEET_TXN_OPS 128

enum fleet_batch_kind {
        FLEET_BATCH_CHANGED, /* its status (name and owner as they were) */
        FLEET_BATCH_CREATED, /* takes its name */
        FLEET_BATCH_DELETED, /* leaves its name */
};

struct fleet_batch;

/* NULL when out of memory. */
struct fleet_batch *fleet_batch_new(void);
void fleet_batch_free(struct fleet_batch *b);
/* Empty it again (a write that runs again). */
void fleet_batch_reset(struct fleet_batch *b);
/* Key `rec` (its id, and for a delete its owner and name are kept): 0, -ENOMEM.  A key
 * already in the batch stays as it was added. */
int fleet_batch_add(struct fleet_batch *b, const struct key_record *rec,
                    enum fleet_batch_kind kind) _warn_unused_;
/* In the write's transaction: every key created through the keys in the batch, recursively;
 * stops once the batch is beyond FLEET_TXN_OPS (-E2BIG). */
int fleet_batch_add_descendants(struct fleet_batch *b, struct keystore_tx *tx,
                                uint64_t now) _warn_unused_;
size_t fleet_batch_size(const struct fleet_batch *b);
/* After -EEXIST: 1 + the index, in the order added, of the key whose name was taken. */
size_t fleet_batch_taken(const struct fleet_batch *b);
size_t fleet_batch_ops(const struct fleet_batch *b);
/*
 * Write the batch's keys as the local keystore has them now; `done` as
 * fleet_publish()'s: -EEXIST when another manager gave a created key's
 * name to a key first (fleet_batch_taken() says which), -ESTALE when a key
 * changed.  The batch must outlive `done`.
 */
int fleet_publish_batch(struct fleet *f, struct fleet_batch *b, fleet_published_fn done,
                        void *userdata) _warn_unused_;

/*
 * A manager's Rotate (fleet_rotate.c): the rotation of `old_id` to
 * `new_id` the local keystore has just made, written to etcd in one Txn:
 * the successor (created only if absent), the predecessor (renamed, its
 * grace as expiry, replaced_by), `retired_id` when not NULL (the key the
 * predecessor replaced, whose grace the rotation ended), and every key
 * created through the predecessor, now the successor's, each with its
 * compare on the revision this replica saw; the predecessor's new name
 * taken in the name index only if absent, the name it gave up pointed at
 * the successor.  `done` as fleet_publish()'s: -EEXIST when another
 * manager gave the predecessor's new name to a key first, -ESTALE when a
 * key changed.  A Txn beyond FLEET_TXN_OPS is not written (-E2BIG).  When
 * it is not sent (a negative errno), the replica resyncs, which undoes the
 * local change.
 */
int fleet_publish_rotation(struct fleet *f, const char *old_id, const char *new_id,
                           const char *retired_id, fleet_published_fn done,
                           void *userdata) _warn_unused_;
/* A rotation's operations in one Txn, by the keys it moves (`n_children`) and whether it
 * ends another key's grace: one compare and one request a key, the names two requests. */
static inline size_t fleet_rotation_ops(size_t n_children, bool retires)
{
        return 2 + (retires ? 1 : 0) + n_children + 2;
}

/*
 * The last uses the daemon has just written to its keystore (its periodic
 * flush of last-used times, never Verify): kept, and written to etcd under
 * <prefix>/hosts/<host>/used/<id> every fleet_last_used_interval, in
 * batches, so that managers show the latest use across the fleet.
 */
void fleet_note_used(struct fleet *f, const struct last_used *entries, size_t n);

/*
 * On a manager: a key's last use as the fleet's hosts reported it, when
 * later than `*at` (this host's), replaces `*at`, `*service`, `*from` and
 * sets `*host` to the host that used it; else `*host` is this host's name
 * (when `*at` is set).  Elsewhere (or with `f` NULL), nothing changes.
 * The strings stay valid until the event loop runs again.
 */
void fleet_merge_last_use(const struct fleet *f, const char *id, uint64_t *at, const char **service,
                          const char **from, const char **host);

/*
 * A keystore that holds keys of this host alone when fleet mode starts
 * (never a replica): the daemon does not follow etcd, whose keys would
 * replace them, and answers for its own keys as a single host would, until
 * fleet_push_start() has moved them into etcd.  Meanwhile changes to keys
 * are refused.
 */
bool fleet_joining(const struct fleet *f);

/*
 * FleetPush: run `apikeyd --fleet-push` (fleet_push()) on this daemon's
 * config and state directory, as a child, never blocking the loop.  `done`
 * gets 0 once the keys are in etcd and the daemon follows it, or a negative
 * errno, with what the push printed (its report, or why it failed).
 * -EALREADY when the host is not joining (its keys are etcd's), -EBUSY
 * while a push runs.
 */
typedef void (*fleet_pushed_fn)(int r, const char *output, void *userdata);
int fleet_push_start(struct fleet *f, fleet_pushed_fn done, void *userdata) _warn_unused_;

/* GetStatus's `fleet` object (a new reference), or NULL when out of memory. */
json_t *fleet_status(struct fleet *f);

/*
 * `apikeyd --fleet-push` (fleet_push.c): move this host's keystore into
 * etcd, for a host that starts fleet mode with keys of its own.  Writes the
 * pepper's fingerprint if etcd has none (and stops if etcd has another),
 * then each key that etcd does not hold yet (one Txn each, with its name
 * index entry, both created only if absent; a key etcd holds already is left
 * as etcd has it; a key whose name the fleet has for another key is not
 * pushed, and then the keystore is not marked), and marks the
 * keystore as a replica at the last revision written, so the daemon starts
 * in fleet mode on it (and resyncs, as a manager does).  Runs its own event
 * loop; blocks until done.  Prints what it did; 0 or a negative errno (the
 * reason printed).
 */
int fleet_push(const struct apikeyd_config *cfg, struct keystore *ks,
               const uint8_t pepper_fingerprint[PEPPER_FINGERPRINT_SIZE]) _warn_unused_;
