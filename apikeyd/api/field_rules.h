/* SPDX-License-Identifier: MIT */
/*
 * Why a value of a key's field was refused, in words a caller can act on:
 * what is wrong with it, then the rule of the field ("it is 129 bytes long,
 * more than 128; a key's name is 1 to 128 bytes of UTF-8 text without
 * control characters (such as a newline or a tab)").
 *
 * The rules themselves are record.h's limits and text_check.h's checks;
 * the words here are built from the same constants and find what is wrong
 * by running the same checks again, so they cannot drift apart.  The
 * reason goes out in InvalidParameter beside `parameter` (request.c).
 */
#pragma once

#include <stddef.h>

#include "record.h"

/* Room enough for any reason below. */
#define FIELD_REASON_MAX 512

/*
 * The rule of a key's field as Create and Update take it: "name",
 * "description", "owner", "scope", "role", "permissions" or "expires";
 * NULL for any other parameter.
 */
const char *field_rule(const char *field, char buf[static FIELD_REASON_MAX]);

/*
 * Why `value` (a string of the field, or one scope entry) is not text at
 * all: a control character, or bytes that are not UTF-8; then the rule.
 * NULL when `field` has no rule here.
 */
const char *field_reason_not_text(const char *field, char buf[static FIELD_REASON_MAX]);

/*
 * Why record_check() refused `field` of `rec`, a key as Create or Update
 * would write it: the first thing wrong with that field, then the rule.
 * NULL when `field` has no rule here.
 */
const char *field_reason_record(const char *field, const struct key_record *rec,
                                char buf[static FIELD_REASON_MAX]);

/* "<problem>; <the rule of field>": for what the checks above do not see. */
const char *field_reason(const char *field, const char *problem, char buf[static FIELD_REASON_MAX]);

/* Why a scope of `n` entries, more than KEY_SCOPE_MAX, was refused. */
const char *field_reason_scope_count(size_t n, char buf[static FIELD_REASON_MAX]);

/* Why `expires` was refused: expiry_parse()'s error `r` (-EINVAL, -ERANGE). */
const char *field_reason_expires(int r, char buf[static FIELD_REASON_MAX]);
