/* SPDX-License-Identifier: MIT */
/*
 * A key's usage history in the keystore (keystore_usage.c): its own named
 * database, `usage`, beside the keys, never the key record itself:
 *
 *   usage   id 'u' time (u64 big-endian, µs)  -> a use (usage_record.h)
 *           id 's'                            -> the sources it was used from
 *
 * A key keeps its newest uses (as many as the caller says) and the
 * USAGE_SOURCES_MAX sources of its latest VALID uses (a source's last
 * use is kept to the hour: a busy source does not rewrite the set at each
 * use; when the set is full the source used longest ago is forgotten);
 * deleting the key (keystore_delete_tree()) deletes both.  Written in
 * batches by the daemon; read newest first.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "keystore.h"
#include "usage_record.h"

/* A use to record: the key's id and the use. */
struct key_use {
        char id[TOKEN_ID_LEN + 1];
        struct usage_entry e;
};

/* A VALID use from a source the key had not been used from (keystore_record_uses()). */
struct key_new_source {
        size_t use; /* its index in the batch */
        char owner[KEY_OWNER_MAX + 1];
        char name[KEY_NAME_MAX + 1];
        size_t n_known; /* sources the key was known to be used from before */
};

/*
 * The source of a use: its rhost, or for a local call its service ("" when
 * it names none).  `*ret_kind` is an enum usage_source_kind.
 */
const char *usage_source_of(const struct usage_entry *e, char *ret_kind);

/*
 * Record `n` uses in one transaction (nested in a group write's, when
 * called from one), in the order given; uses of keys no longer present are
 * skipped, as are uses whose strings a use cannot store.  Each key keeps
 * its newest `keep` uses (0: none; the sources are kept all the same).
 * Each VALID use from a source the key has no record of is written to
 * `ret_new` (room for `n`), `*ret_n_new` counting them; the first use of a
 * key is from a new source.
 */
int keystore_record_uses(struct keystore *ks, const struct key_use *uses, size_t n, size_t keep,
                         struct key_new_source *ret_new, size_t *ret_n_new) _warn_unused_;

typedef int (*keystore_use_fn)(const struct usage_entry *e, void *userdata);

/*
 * The stored uses of key `id`, newest first, at most `limit` (0: all),
 * those at or after `before` (0: none) left out; `fn` returning non-zero
 * stops the walk with that value.  A damaged entry is skipped.
 */
int keystore_list_uses(struct keystore *ks, const char *id, uint64_t before, size_t limit,
                       keystore_use_fn fn, void *userdata) _warn_unused_;
