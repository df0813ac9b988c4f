/* SPDX-License-Identifier: MIT */
/*
 * A key's limits at Verify (key_limits.c): max_uses (a use spent durably, by
 * the writer, before VALID is answered), rate_limit (VALID verifies a
 * window, counted in memory) and the retirement of a rotated key by its
 * successor's first VALID verify; their parameters at Create and Update;
 * and their fields in the Key object.
 */
#pragma once

#include "request.h"
#include "token_check.h"

struct rate_table;

/* Whether a verify of `rec` has anything to do here: the test every VALID verify pays. */
static inline bool limits_apply_to(const struct key_record *rec)
{
        return rec->max_uses != 0 || rec->rate_limit_count != 0 ||
               (rec->flags & KEY_FLAG_RETIRE_ON_FIRST_USE);
}

/*
 * A VALID verify of `rec` (limits_apply_to() true), its secret matched and
 * every other check passed: 0 with `*code` what to answer now (VALID, or
 * USAGE_EXCEEDED, RATE_LIMITED, UNAVAILABLE), or 1 when the answer waits
 * for a use to be written: the call is deferred, and verify_settle()
 * answers it (the token and texts of `v` copied meanwhile, erased after).
 * A negative errno when it could not be deferred (out of memory).
 */
int limits_verify(struct request *q, const struct verify_args *v, const struct key_record *rec,
                  enum verify_code *code) _warn_unused_;

/* Free the rate windows (api_done()). */
void limits_free(struct api *a);

/*
 * The `max_uses` and `rate_limit` parameters of Create or Update into
 * `*ret` (its fields say which were given).  -EINVAL once answered with
 * InvalidParameter naming the parameter with its reason, or PolicyViolation
 * in fleet mode for max_uses (uses are counted on each host).
 */
int limits_parse(struct request *q, const struct method_params *p,
                 struct key_limits *ret) _warn_unused_;

/*
 * What an Update changes of the limits, appended to its audit detail in
 * `buf` (update_detail()'s "nothing changed" replaced when they change).
 */
void limits_detail(const struct key_record *old, const struct key_limits *l, char *buf,
                   size_t size);

/* Format "COUNT/DURATION" ("100/1m"); `size` at least LIMITS_RATE_MAX. */
#define LIMITS_RATE_MAX (16 + DURATION_FORMAT_MAX)
void limits_rate_format(uint32_t count, uint64_t window, char *buf, size_t size);

/* The Key object's fields of limits and rotation, for api_key_json() and api_key_write(). */
void limits_key_json(json_t *o, const struct key_record *rec);
void limits_key_write(struct json_out *o, const struct key_record *rec);
