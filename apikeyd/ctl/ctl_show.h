/* SPDX-License-Identifier: MIT */
/*
 * How apikeyctl prints what the daemon tells it: times (local, with their
 * zone, and relative to now), one key as "Label: value" lines, the keys as
 * a table fitted to the terminal (ctl_table.h).  Text from the daemon is
 * made safe for the terminal before it is printed.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ctl_call.h"

/* The time in member `name` of `o` (ISO 8601), in µs; 0 when absent or unreadable. */
uint64_t key_time(const json_t *o, const char *name);
/* "Sun 2027-01-31 23:59:59 CET": the local time, with its zone. */
void format_local(uint64_t t, char *ret, size_t size);
/* "in 29 days", "3 minutes ago". */
void format_relative(uint64_t t, uint64_t now, char *ret, size_t size);
/* "Sun 2027-01-31 23:59:59 CET (in 29 days)" */
void format_both(uint64_t t, uint64_t now, char *ret, size_t size);

/* A JSON array of strings joined with `sep`; `empty` when it has none.  Free it. */
char *join(const json_t *arr, const char *sep, const char *empty);

/* One "Label: value" line of `show` and `status`, safe for the terminal. */
int print_field(const char *label, const char *value);
/* Print a key the way the output mode asks. */
int output_key(const struct ctl *c, const json_t *k);
/* The keys of `list` as a table, as wide as $COLUMNS or the terminal. */
int list_table(const json_t *keys);
