/* SPDX-License-Identifier: MIT */
/*
 * Last-used times, batched in memory: a Verify only notes the use here
 * (one hash-table store), and the batch is written to the keystore in one
 * transaction every few seconds and at shutdown.  A crash loses at most
 * one interval of last-used times, nothing else.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "keystore.h"
#include "macro.h"

struct lastused_entry {
        char id[TOKEN_ID_LEN + 1];
        uint64_t at;
        char service[KEY_FIELD_MAX + 1];
        char from[KEY_FIELD_MAX + 1];
};

struct lastused {
        struct lastused_entry *slots; /* open addressing on the id; id[0] == 0 is free */
        size_t n_slots, n_used;
};

void lastused_init(struct lastused *l);
void lastused_done(struct lastused *l);

/* Note a use (keeps the latest per key); -ENOMEM. `service`/`from` may be NULL. */
int lastused_note(struct lastused *l, const char *id, uint64_t at, const char *service,
                  const char *from) _warn_unused_;

/* The pending use of `id`, or NULL. */
const struct lastused_entry *lastused_find(const struct lastused *l, const char *id);

/* Write the batch to the keystore in one transaction and empty it. */
int lastused_flush(struct lastused *l, struct keystore *ks) _warn_unused_;
