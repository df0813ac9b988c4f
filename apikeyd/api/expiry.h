/* SPDX-License-Identifier: MIT */
/*
 * Expiry warnings (expiry.c): a journal event (APIKEY_EVENT=expiry_warning)
 * when an enabled key comes within one of the configured expiry_warnings
 * of its expiry, once per key and warning.  What was warned of is kept in
 * the meta database ("expiry_warned": per key its id, the expiry it was
 * warned of and the shortest warning given), so a restart does not warn
 * again and a new expiry is warned of afresh.  The keys are looked at on
 * the flush timer: at start, after a change to a key, when the next key
 * comes within a warning, and every EXPIRY_RESCAN_MAX at least.
 * Also GetStatus's counts of keys expiring soon and the expiry cliff.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "expiry_marks.h"
#include "timeutil.h"

/* A fleet brings keys without a change here: looked at this often at least. */
#define EXPIRY_RESCAN_MAX (10 * USEC_PER_MIN)
/* GetStatus counts the keys expiring within this. */
#define EXPIRY_STATUS_WITHIN (7 * USEC_PER_DAY)

struct expiry_state {
        struct expiry_mark *marks; /* as stored */
        size_t n_marks;
        bool loaded;
        bool rescan;   /* a key changed: look again at the next flush */
        bool writing;  /* a write of the marks is under way: no look meanwhile */
        uint64_t next; /* realtime µs: look again then */
};

struct api;
struct request;

/* Look at the keys if it is time (api_flush()); warnings are logged once their mark is written. */
void expiry_check(struct api *a);
/* A key changed (`rec`: as it is now; NULL: keys changed, which ones not
 * told): look again at the next flush if it may be within a warning, else
 * when it comes within one. */
struct key_record;
void expiry_key_changed(struct api *a, const struct key_record *rec);
void expiry_done(struct expiry_state *e);

/*
 * GetStatus's `expiring` (keys the caller sees, enabled, expiring within
 * EXPIRY_STATUS_WITHIN) and, when more than expiry_cliff of them expire on
 * one day (UTC), `expiry_cliff` {day, keys} for the first such day.
 */
int expiry_status(struct request *q, json_t *reply);
