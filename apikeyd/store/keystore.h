/* SPDX-License-Identifier: MIT */
/*
 * The keystore: one LMDB environment in the state directory.
 *
 * Named databases:
 *   keys    id (12 bytes)                  -> record (record.h)
 *   names   owner NUL name                 -> id       (a name is unique per owner)
 *   owners  owner                          -> id, dupsort (every key of an owner)
 *   audit   sequence (u64 big-endian)      -> audit event (bounded; oldest pruned)
 *   children parent id                     -> id, dupsort (keys created through a key;
 *                                             schema 2)
 *   audit_admin  the same, for admins' management events (see "Audit
 *                retention" below)
 *   meta    "schema"                       -> u32 LE schema version
 *           other names                    -> whatever the daemon keeps there
 *
 * Every write is one transaction, committed (and, unless KEYSTORE_NOSYNC,
 * synced) before the function returns, unless it is part of a group
 * (keystore_write_group()).  Functions return 0 or a negative errno.  A
 * keystore handle is used from one thread at a time, with one exception:
 * one thread may read while another runs keystore_write_group(), as the
 * daemon's writer does.
 *
 * Records handed out by reads are views (record.h): keystore_get() gives
 * them a private copy of the bytes in `*ret_storage` (free() it);
 * keystore_view() and list callbacks see views into the map itself, valid
 * until the view ends or the callback returns.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit_record.h"
#include "macro.h"
#include "record.h"

#define KEYSTORE_SCHEMA_VERSION    2
#define KEYSTORE_FILE              "keys.mdb" /* the data file inside the state directory */
#define KEYSTORE_DEFAULT_MAPSIZE   (1ull << 32)
#define KEYSTORE_DEFAULT_AUDIT_MAX 100000

struct keystore;

enum keystore_flags {
        KEYSTORE_NOSYNC = 1u << 0,   /* skip fsync on commit: tests and bulk loads only */
        KEYSTORE_READONLY = 1u << 1, /* open for reading (tools, checks) */
};

struct keystore_options {
        uint64_t mapsize;   /* 0 = KEYSTORE_DEFAULT_MAPSIZE; grown when full */
        uint64_t audit_max; /* 0 = KEYSTORE_DEFAULT_AUDIT_MAX events kept, per retention */
        unsigned flags;     /* enum keystore_flags */
};

/*
 * Open (creating if needed) the keystore in directory `dir` (which must
 * exist).  Clears stale readers left by a crashed process.  Checks the
 * schema version: a newer one is refused with -EPROTONOSUPPORT, a missing
 * one on a non-empty store with -EBADMSG; a new store gets ours written.
 * On failure `*ret_error` (if non-NULL) gets a malloc'd message saying what
 * is wrong, e.g. "keystore schema version 7 is newer than this apikeyd
 * supports (1); refusing to open it".
 */
int keystore_open(const char *dir, const struct keystore_options *opts, struct keystore **ret,
                  char **ret_error) _warn_unused_;
void keystore_close(struct keystore *ks);

/* Add a new key.  -EEXIST if the owner has a key of that name, -ENOTUNIQ if the id exists, -EINVAL
 * if invalid. */
int keystore_put_key(struct keystore *ks, const struct key_record *rec) _warn_unused_;

/*
 * Add a new key unless its owner already has `max_owned` keys that are not
 * revoked (-EDQUOT); 0 = no limit.  Keys created through invite for the
 * owner (KEY_FLAG_NO_LOGIN) and the owner's other keys are counted apart,
 * each against `max_owned`: the new key is counted with its kind.
 * Counted in the write's own transaction, so racing creates cannot both
 * slip under the limit.
 */
int keystore_put_key_limited(struct keystore *ks, const struct key_record *rec,
                             uint64_t max_owned) _warn_unused_;

/* Add many keys in one transaction (bulk loads); all or nothing. */
int keystore_put_keys(struct keystore *ks, const struct key_record *recs, size_t n) _warn_unused_;

/*
 * Look a key up by id.  0 and the record (a view into `*ret_storage`, which
 * the caller frees), -ENOENT if there is none, -EBADMSG if its record is
 * corrupt.  `ret_storage` may be NULL only when `ret` is NULL (existence check).
 */
/*
 * Look a key up by id without copying it: `ret->rec` is a view into the
 * map, decoded and checked once, valid until key_view_end(), which must
 * follow (a `_cleanup_key_view_` variable does it).  Between the two, the
 * keystore holds a read transaction: do the work that needs the record and
 * end it, without waiting on anything.  0, -ENOENT, -EBADMSG as for
 * keystore_get(); on failure there is no view to end (ending it does
 * nothing).  Only from the thread that makes the other reads.
 */
struct key_view {
        struct keystore *ks; /* while the view is open */
        struct key_record rec;
};
int keystore_view(struct keystore *ks, const char *id, struct key_view *ret) _warn_unused_;
void key_view_end(struct key_view *v);
#define _cleanup_key_view_ _cleanup_(key_view_end)

int keystore_get(struct keystore *ks, const char *id, struct key_record *ret,
                 void **ret_storage) _warn_unused_;

/* Which fields keystore_update_key() changes. */
enum key_update_fields {
        KEY_UPDATE_NAME = 1u << 0,
        KEY_UPDATE_DESCRIPTION = 1u << 1, /* NULL clears it */
        KEY_UPDATE_SCOPE = 1u << 2,
        KEY_UPDATE_PERMISSIONS = 1u << 3, /* role and permissions together */
        KEY_UPDATE_EXPIRES = 1u << 4,     /* 0 = never */
        KEY_UPDATE_NOT_BEFORE = 1u << 5,  /* 0 = none */
        KEY_UPDATE_SOURCES = 1u << 6,     /* none = from anywhere */
};

struct key_update {
        unsigned fields; /* enum key_update_fields */
        const char *name;
        const char *description;
        size_t n_scope;
        const char *const *scope;
        uint8_t role;
        uint8_t permissions;
        uint64_t expires_at;
        uint64_t not_before;
        size_t n_sources;
        const char *const *sources;
};

/*
 * Change fields of a key.  -ENOENT, -ESTALE if the key is revoked (a
 * revoked key is frozen), -EEXIST if the new name is taken by another key
 * of the same owner, -EINVAL if a value is out of bounds.  On success and
 * if `ret` is non-NULL, the new record (view into `*ret_storage`).
 */
int keystore_update_key(struct keystore *ks, const char *id, const struct key_update *upd,
                        struct key_record *ret, void **ret_storage) _warn_unused_;

/*
 * Set the stored status.  enabled <-> disabled freely; -> revoked is final:
 * any change away from revoked is -ESTALE, revoking a revoked key is a
 * no-op success.  -ENOENT if missing, -EINVAL for KEY_STATUS_EXPIRED.
 */
int keystore_set_status(struct keystore *ks, const char *id, enum key_status status,
                        struct key_record *ret, void **ret_storage) _warn_unused_;

/*
 * The same, with what the daemon's callers say about the change.  Revoking
 * a key revokes, in the same transaction, every key created through it and
 * through those (`ret_revoked` counts them).  Disabling with `by_admin`
 * marks the key as disabled by an admin; enabling such a key without
 * `by_admin` is -EPERM (decided in the write, so no race undoes an
 * admin's Disable); enabling clears the mark.  keystore_set_status() is
 * this without `by_admin`.
 */
struct key_status_change {
        enum key_status status;
        bool by_admin;
        size_t ret_revoked; /* out */
        /*
         * Disable: why, when the daemon does it itself ("unused"; stored as
         * disabled_reason, which enabling clears), and then only a key that
         * is enabled and was last used (or created, or valid from, if
         * later) before `unused_before`; otherwise -EALREADY, nothing changed.
         */
        const char *reason;
        uint64_t unused_before;
};
int keystore_change_status(struct keystore *ks, const char *id, struct key_status_change *sc,
                           struct key_record *ret, void **ret_storage) _warn_unused_;

/*
 * Remove a key and every index entry of it; every key created through it
 * (recursively) is revoked in the same transaction and stays listed
 * (`*ret_revoked`, if non-NULL, counts them).  -ENOENT if missing.
 * keystore_delete_key() is this without the count.
 */
int keystore_delete_tree(struct keystore *ks, const char *id, size_t *ret_revoked) _warn_unused_;
int keystore_delete_key(struct keystore *ks, const char *id) _warn_unused_;

/*
 * Whether the keys `rec` was created through (its parent, the parent's
 * parent, ...) are all enabled at `now`: 0 if so (or it has no parent), 1
 * if one is not (disabled, revoked, expired, deleted, or the chain is
 * longer than KEY_LINEAGE_MAX), its id in `ret_blocked`; a negative errno
 * when the store cannot be read.  `*ret_depth` (if non-NULL) gets the
 * number of ancestors walked.  Reads in the reading thread's transaction,
 * so it may be called while a view is open.
 */
int keystore_lineage(struct keystore *ks, const struct key_record *rec, uint64_t now,
                     char ret_blocked[TOKEN_ID_LEN + 1], unsigned *ret_depth) _warn_unused_;

/*
 * The keys created directly through `id`: the first `max` ids into `ret`,
 * their total number in `*ret_n`.
 */
int keystore_children(struct keystore *ks, const char *id, char (*ret)[TOKEN_ID_LEN + 1],
                      size_t max, size_t *ret_n) _warn_unused_;

struct key_filter {
        const char *owner;        /* NULL = any */
        int status;               /* 0 = any, else enum key_status (effective, at `now`) */
        const char *name_prefix;  /* NULL = any */
        uint64_t expiring_within; /* µs; 0 = no filter; else not yet expired and expires_at <= now +
                                     this */
        uint64_t now;             /* µs; the time the filters are judged at */
};

typedef int (*keystore_list_fn)(const struct key_record *rec, void *userdata);

/*
 * Call `fn` for matching keys in id order, starting after id `cursor`
 * (NULL or "" = from the start), at most `limit` of them (0 = no limit).
 * If `fn` returns non-zero the walk stops and that value is returned.
 * `ret_cursor` (TOKEN_ID_LEN + 1 bytes, may be NULL) gets the id of the
 * last key passed to `fn` when more matching keys may follow, else "";
 * it may be the same buffer as `cursor`.  A malformed `cursor` is -EINVAL.
 * A corrupt record stops the walk with -EBADMSG.
 */
int keystore_list(struct keystore *ks, const struct key_filter *filter, const char *cursor,
                  size_t limit, keystore_list_fn fn, void *userdata,
                  char ret_cursor[TOKEN_ID_LEN + 1]) _warn_unused_;

/* How many keys the store holds, of any status, without reading them (a damaged record counts). */
int keystore_n_keys(struct keystore *ks, uint64_t *ret) _warn_unused_;

/* Count keys by effective status at `now`; index = enum key_status (0 unused). */
int keystore_count(struct keystore *ks, uint64_t now, uint64_t ret_counts[5]) _warn_unused_;

struct last_used {
        char id[TOKEN_ID_LEN + 1];
        uint64_t at;
        const char *service; /* may be NULL */
        const char *from;    /* may be NULL */
};

/* Write a batch of last-used times in one transaction; ids no longer present are skipped. */
int keystore_record_last_used(struct keystore *ks, const struct last_used *entries,
                              size_t n) _warn_unused_;

/*
 * Audit retention.  The log is kept in two parts with one numbering:
 * events with `admin` set (an admin's management changes: uid 0, the
 * admin group, an admin-role key) and all others (users' and other keys'
 * changes, refused calls and failed verifies, whoever made them).  Each
 * part keeps its newest audit_max events, so a flood of ordinary events,
 * which any local user can cause, never pushes an admin's change out of
 * the log; admins' own volume only drops admins' older events.  Pruning
 * removes the oldest events of the part just appended to: a cursor step
 * per event dropped, never a scan.  Reads merge both parts by sequence.
 *
 * Append an event; prunes the oldest of its part beyond audit_max in the
 * same transaction.
 */
int keystore_append_audit(struct keystore *ks, const struct audit_event *ev) _warn_unused_;

/* Append several events in one transaction (batched audit of failed verifies). */
int keystore_append_audits(struct keystore *ks, const struct audit_event *evs,
                           size_t n) _warn_unused_;

typedef int (*keystore_audit_fn)(const struct audit_event *ev, void *userdata);

/*
 * Walk events with seq > after_seq and time >= since, optionally only for
 * key_id, oldest first, both retentions merged; each event's `admin` says
 * which it is kept under.
 */
int keystore_list_audit(struct keystore *ks, uint64_t after_seq, uint64_t since, const char *key_id,
                        size_t limit, keystore_audit_fn fn, void *userdata) _warn_unused_;

/*
 * Raw values in the meta database.  get: -ENOENT if absent, -ENOBUFS if
 * `size` is too small; `*ret_len` (if non-NULL) gets the stored length on
 * success and with -ENOBUFS, so a caller can size its buffer.
 */
int keystore_meta_get(struct keystore *ks, const char *name, void *buf, size_t size,
                      size_t *ret_len) _warn_unused_;
int keystore_meta_put(struct keystore *ks, const char *name, const void *data,
                      size_t len) _warn_unused_;
/*
 * Remove a meta value (-ENOENT if absent), overwriting it with zeros first
 * so the live page keeps no copy.  Pages freed by earlier writes may still
 * hold it: keystore_compact() drops those.
 */
int keystore_meta_del(struct keystore *ks, const char *name) _warn_unused_;

/*
 * Rewrite the data file with only the pages in use (freed pages, which may
 * still hold values overwritten or deleted since, are not copied): a
 * compacted copy written and synced beside it, renamed over it, and the
 * handle `*ksp` reopened on the new file (on failure `*ksp` may be NULL).
 * Only while no other process has the keystore open (the daemon's start).
 */
int keystore_compact(struct keystore **ksp, char **ret_error) _warn_unused_;

/*
 * A compacted copy of the keystore as it is now, taken while others read
 * and write it: the file `path` is created (0600; -EEXIST if it exists),
 * written from one snapshot and synced.  The copy is a keystore of its
 * own (KEYSTORE_FILE in a directory of its own opens it).  On failure
 * nothing is left at `path` and `*ret_error` says why.
 */
int keystore_backup(struct keystore *ks, const char *path, char **ret_error) _warn_unused_;

/*
 * Writes in groups.  A write is a caller's function that runs in a
 * transaction of its own, the keystore_tx it is handed.  The store's write
 * functions, called on keystore_tx_keystore(tx) meanwhile, run inside it
 * (each undone alone if it fails, so a write may see one refused and go
 * on); audit events are appended to it with keystore_tx_audit().  What a
 * write puts and the events it appends commit together, or, when its
 * function fails, not at all.
 */
struct keystore_tx;

struct keystore *keystore_tx_keystore(struct keystore_tx *tx);
/* Append `ev` to the audit log in the write's transaction. */
int keystore_tx_audit(struct keystore_tx *tx, const struct audit_event *ev) _warn_unused_;

/*
 * keystore_list() in the write's transaction, every matching key (no
 * cursor, no limit): what the write sees, its own changes included.  The
 * records are views that the write's next change may invalidate: `fn`
 * copies what it keeps, and writes nothing.
 */
int keystore_tx_list(struct keystore_tx *tx, const struct key_filter *filter, keystore_list_fn fn,
                     void *userdata) _warn_unused_;

/* One write of a group: `fn` returns >= 0 to keep what it wrote, < 0 to undo it. */
struct keystore_write {
        int (*fn)(struct keystore_tx *tx, void *userdata);
        void *userdata;
        int result; /* set by keystore_write_group() */
};

/*
 * Group commit: run `n` writes in one transaction, committed and synced
 * once.  Each write's transaction is nested in the group's, so a write
 * that fails is undone alone (with its audit events) and the others still
 * commit; each sees the ones before it.  A lone write's transaction is a
 * top-level one.  `writes[i].result` gets what its fn returned, or, where
 * that was success, the group's error if the group could not be
 * committed.  A fn may run more than once (after the map was grown, or
 * one by one in transactions of their own when a nested commit failed), so
 * it keeps nothing from an earlier run.  Returns 0 or the group's error.
 */
int keystore_write_group(struct keystore *ks, struct keystore_write *writes, size_t n);

/*
 * Consistency check for tests and `apikeyd --check`: every record decodes,
 * every key has exactly its names and owners entries, and no index entry
 * points at a missing key.  0, or -EBADMSG with a description in
 * `*ret_error` (malloc'd).
 */
int keystore_check_indexes(struct keystore *ks, char **ret_error) _warn_unused_;

/*
 * A VALID verify of a key that has max_uses or KEY_FLAG_RETIRE_ON_FIRST_USE,
 * made durable before it is answered (keystore_limits.c): one use spent, or
 * -EDQUOT when none is left; with the flag, the flag cleared and the grace
 * of the key it replaces ended at `now` (its expiry moved to `now` unless it
 * was earlier), that key's id in `ret_retired` ("" when there was none).
 * -ENOENT if the key is gone, -ESTALE if it is no longer enabled at `now`.
 */
int keystore_spend_use(struct keystore *ks, const char *id, uint64_t now,
                       char ret_retired[TOKEN_ID_LEN + 1]) _warn_unused_;

/*
 * A rotation: a successor of key `id` put under `new_id` with `new_hash`,
 * a copy of every other field of it (name, description, owner, role,
 * permissions, scope, flags, parent, every condition and limit, the uses
 * spent) but its creation (`now`, `created_by`) and its last use (none),
 * `replaces` naming `id`, and with `retire_on_first_use`
 * KEY_FLAG_RETIRE_ON_FIRST_USE.  In the same transaction the key rotated
 * gives its name up (it becomes "<name> (old <id>)"), expires at `now` +
 * `grace` unless it expires earlier, and names its successor in
 * `replaced_by`; the keys created through it are the successor's from then
 * on (their parent); the key it replaced itself, if any, expires now
 * unless it has already.  Both records as they are now in `ret_new`, `ret_old`
 * (views into their storage, which the caller frees).  -ENOENT,
 * -ESTALE (revoked), -EKEYEXPIRED (expired), -EKEYREJECTED (disabled),
 * -EALREADY (already rotated), -ENOTUNIQ (the new id exists).
 */
struct key_rotation {
        char new_id[TOKEN_ID_LEN + 1];
        uint8_t new_hash[KEY_HASH_SIZE];
        uint64_t now;
        const char *created_by;
        uint64_t grace; /* µs */
        bool retire_on_first_use;
        struct key_record ret_new, ret_old;
        void *ret_new_storage, *ret_old_storage;
};
int keystore_rotate(struct keystore *ks, const char *id, struct key_rotation *rot) _warn_unused_;

/* Which limits keystore_set_limits() changes. */
enum key_limit_fields {
        KEY_LIMIT_MAX_USES = 1u << 0, /* 0 = unlimited */
        KEY_LIMIT_RATE = 1u << 1,     /* count 0 and window 0 = none */
};

struct key_limits {
        unsigned fields; /* enum key_limit_fields */
        uint64_t max_uses;
        uint32_t rate_limit_count;
        uint64_t rate_limit_window;
};

/*
 * Change a key's max_uses and rate limit.  The uses already spent stay
 * spent: a new max_uses counts them (none is left when it is no more than
 * they are); max_uses 0 removes the limit and the count.  -ENOENT, -ESTALE
 * (revoked), -EINVAL.  The record as it is now in `ret` (a view into
 * `*ret_storage`, which the caller frees).
 */
int keystore_set_limits(struct keystore *ks, const char *id, const struct key_limits *lim,
                        struct key_record *ret, void **ret_storage) _warn_unused_;
