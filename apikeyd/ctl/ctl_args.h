/* SPDX-License-Identifier: MIT */
/*
 * What the user typed, checked before anything is sent, so a typo is named
 * on this side (a usage error) rather than refused by the daemon; and the
 * question asked before what cannot be undone.
 */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "ctl_call.h"
#include "macro.h"

/* `id` is a key id; else a usage error that echoes it only when safe. */
int check_id(const struct args *a, const char *id);
/* "a,b,c" as a JSON array; "" is the empty array.  NULL: out of memory. */
json_t *split_list(const char *s);
/* Every entry of `perms` is a known permission, and there is one at least. */
int check_permissions(const struct args *a, const json_t *perms);
/* Whether `s` is in the NULL-terminated `set`. */
bool one_of(const char *s, const char *const *set);
/*
 * Add to `p` the fields create and update share (description, role,
 * permissions, scope, sources, not_before, expires), each checked.
 */
int add_key_fields(const struct args *a, json_t *p);

/*
 * Ask before what cannot be undone; only a person at a terminal is asked
 * (--yes skips it).  0 to go on, or ERR_DECLINED once "Nothing changed." is
 * said.
 */
_printf_(2, 3) int confirm(const struct args *a, const char *fmt, ...);
