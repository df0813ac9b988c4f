/* SPDX-License-Identifier: MIT */
/*
 * The keystore as a replica of a fleet's keys in etcd (fleet mode): the
 * changes of one etcd revision applied in one write transaction together
 * with the revision, so a crash never leaves half a revision and the
 * replica always knows where to resume.
 *
 * The records are etcd's values as they are (record.h's encoding, the
 * keystore's own), each checked before it is stored.  Host-local fields
 * are kept: a record replaced by a newer one keeps this host's last use
 * when it is later than the one the new record carries.  A key removed
 * from etcd is removed here with its index entries; the keys created
 * through it are whatever etcd says they are (the manager revokes them
 * in the same etcd transaction).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore.h"
#include "macro.h"

/* The meta entry: applied revision, cluster id and last contact, three u64 little-endian. */
#define KEYSTORE_META_FLEET "fleet_revision"

struct fleet_change {
        char id[TOKEN_ID_LEN + 1];
        const void *record; /* the encoded record; NULL: the key was deleted */
        size_t len;
};

struct fleet_apply {
        const struct fleet_change *changes;
        size_t n;
        int64_t revision;    /* stored as the applied revision */
        uint64_t cluster_id; /* stored with it */
        uint64_t contact_at; /* realtime µs of the last confirmed contact with etcd */
        bool replace_all;    /* a full resync: every key not among `changes` is removed */
        int64_t after;       /* unless replace_all: the revision the store must be at (the
                                one applied before), else -ESTALE and nothing is applied, so
                                a revision that failed is never stepped over */
        size_t ret_refused;  /* out: records that did not decode (or not under their id),
                                removed here rather than kept stale */
        size_t ret_removed;  /* out: keys removed */
};

/*
 * Apply `a` in one write transaction (nested in the running group write's
 * when called from a keystore_write fn).  0 or a negative errno (nothing
 * applied).
 */
int keystore_fleet_apply(struct keystore *ks, struct fleet_apply *a) _warn_unused_;

/* What the last apply stored; all 0 when the store was never a replica.  Any may be NULL. */
int keystore_fleet_state(struct keystore *ks, int64_t *ret_revision, uint64_t *ret_cluster_id,
                         uint64_t *ret_contact_at) _warn_unused_;
