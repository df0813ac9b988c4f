/* SPDX-License-Identifier: MIT */
/*
 * Last-used times, batched in memory: a Verify only notes the use here
 * (one hash-table store), and the batch is written to the keystore in one
 * transaction every few seconds and at shutdown.  A crash loses at most
 * one interval of last-used times, nothing else.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keystore.h"
#include "macro.h"

struct lastused_entry {
        char id[TOKEN_ID_LEN + 1];
        uint64_t at;
        char service[KEY_FIELD_MAX + 1];
        char from[KEY_FIELD_MAX + 1];
        bool dropped; /* in the batch taken: not storable, left out of it */
};

struct lastused {
        struct lastused_entry *slots; /* open addressing on the id; id[0] == 0 is free */
        size_t n_slots, n_used;
        /* The batch being written: still shown by lastused_find() until it is in the keystore. */
        struct lastused_entry *taken;
        size_t n_taken_slots;
        bool has_taken;
};

void lastused_init(struct lastused *l);
void lastused_done(struct lastused *l);

/* Note a use (keeps the latest per key); -ENOMEM. `service`/`from` may be NULL. */
int lastused_note(struct lastused *l, const char *id, uint64_t at, const char *service,
                  const char *from) _warn_unused_;

/* The pending use of `id` (noted, or in the batch being written), or NULL. */
const struct lastused_entry *lastused_find(const struct lastused *l, const char *id);

/*
 * Take the batch to be written (for keystore_record_last_used()): `*ret`
 * (free() it) points into memory kept until lastused_taken_done(), and
 * new uses are noted apart meanwhile.  -EBUSY while an earlier batch is
 * still being written; 0 with `*ret_n` = 0 when there is nothing.
 * Each entry stands alone: one whose service or source a record could not
 * store (not text_valid()) is dropped, with a log line naming its key, and
 * the others are taken.
 */
int lastused_take(struct lastused *l, struct last_used **ret, size_t *ret_n) _warn_unused_;
/* The batch taken is written, or (`written` false) goes back to wait for the next. */
void lastused_taken_done(struct lastused *l, bool written);
