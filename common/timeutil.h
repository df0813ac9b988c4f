/* SPDX-License-Identifier: MIT */
/*
 * Time as this project writes it: parsing and formatting durations,
 * timestamps and expiries, shared by the daemon, the CLI and the PAM module.
 *
 * A time is a uint64_t count of microseconds since the Unix epoch, UTC; 0
 * means "not set" (no expiry, never used).  Nothing here allocates, reads
 * the locale or the time zone, or keeps state, so every function is safe
 * to call from any thread and from inside a PAM host process.
 *
 * Durations (duration_parse):
 *   one or more <number><unit> parts, units s m h d w (seconds, minutes,
 *   hours, days, weeks; "m" is minutes: there is no month unit, months have
 *   no fixed length).  Parts go from the largest unit to the smallest, each
 *   unit at most once: "45s", "90m", "12h", "30d", "2w", "1d12h", "1h30m".
 *   Refused (-EINVAL): an empty string, a number without a unit (even "0"),
 *   signs, whitespace, upper-case or unknown units, "12h1d", "1h1h", more
 *   than DURATION_PARSE_MAX characters.  A total beyond uint64_t is -ERANGE.
 *   "0s" is a valid zero duration; callers that give 0 a meaning refuse it.
 *
 * Timestamps (timestamp_parse), ISO 8601 / RFC 3339:
 *   2027-01-31                    the END of that day, 23:59:59.999999 UTC
 *   2027-01-31T12:00Z             minutes; seconds are optional
 *   2027-01-31T12:00:00Z
 *   2027-01-31T12:00:00.25Z       1-9 fractional digits ('.' or ','),
 *                                 truncated to microseconds
 *   2027-01-31T12:00:00+02:00     numeric offsets: +HH:MM, +HHMM or +HH
 *   2027-01-31T12:00:00-0500
 *   The separator may be 'T', 't' or a space, the zone 'Z' or 'z'.
 *
 *   A bare date means the end of that day because "--expires 2027-01-31"
 *   is read by everyone as "still valid on the 31st": the key stops
 *   working at the first instant of February 1st, UTC.
 *
 *   A time of day needs a zone: "2027-01-31T12:00" is refused, as the
 *   daemon cannot know which local time the writer meant.  Fields are
 *   checked: month 1-12, day within its month (leap years included), hour
 *   0-23, minute 0-59, second 0-60 (a leap second reads as the first
 *   second of the next minute, as POSIX time counts it), offset up to
 *   23:59.  Malformed text is -EINVAL; a year before 1970, or a time at or
 *   before the epoch once the offset is applied, is -ERANGE.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define USEC_PER_SEC  UINT64_C(1000000)
#define USEC_PER_MIN  (UINT64_C(60) * USEC_PER_SEC)
#define USEC_PER_HOUR (UINT64_C(60) * USEC_PER_MIN)
#define USEC_PER_DAY  (UINT64_C(24) * USEC_PER_HOUR)
#define USEC_PER_WEEK (UINT64_C(7) * USEC_PER_DAY)

/* Longest duration string duration_parse() reads. */
#define DURATION_PARSE_MAX 20
/* Longest string timestamp_parse() reads. */
#define TIMESTAMP_PARSE_MAX 64
/* "YYYY-MM-DDTHH:MM:SSZ" and its NUL. */
#define TIMESTAMP_MAX 21
/* Big enough for any duration_format() or relative_format() result. */
#define DURATION_FORMAT_MAX 64
#define RELATIVE_FORMAT_MAX 32

/* The wall clock (CLOCK_REALTIME), for times that are stored or shown. */
uint64_t now_usec(void);

/* CLOCK_MONOTONIC, for deadlines and intervals: it never jumps. */
uint64_t mono_usec(void);

/* See the top of this file.  0, -EINVAL or -ERANGE; `*ret_usec` only on success. */
int duration_parse(const char *s, uint64_t *ret_usec) _warn_unused_;

/* See the top of this file.  0, -EINVAL or -ERANGE; `*ret_usec` only on success. */
int timestamp_parse(const char *s, uint64_t *ret_usec) _warn_unused_;

/*
 * An expiry as a user gives it: "never" or "none" (any case) -> 0; a
 * duration -> now + duration; otherwise a timestamp.  An expiry that is
 * not in the future (a past timestamp, a zero duration) is -ERANGE, so a
 * typo cannot create a key that is dead on arrival; garbage is -EINVAL.
 */
int expiry_parse(const char *s, uint64_t now, uint64_t *ret_usec) _warn_unused_;

/*
 * A key's start (not_before) as a user gives it: "now" (any case) -> 0,
 * no start; a duration -> now + duration; otherwise a timestamp, a bare
 * date meaning the START of that day (2027-01-01 is 2027-01-01T00:00:00Z);
 * rounded up to the whole second, as times are shown.
 * A start not in the future is -ERANGE; garbage, "never" and "none" are
 * -EINVAL.
 */
int not_before_parse(const char *s, uint64_t now, uint64_t *ret_usec) _warn_unused_;

/*
 * "2027-01-31T12:00:00Z": UTC, seconds resolution (the fraction is
 * dropped), always the 'Z' form.  -EINVAL for 0 (which means "not set" and
 * has no timestamp), -ERANGE past the year 9999.
 */
int timestamp_format(uint64_t usec, char ret[static TIMESTAMP_MAX]);

/*
 * `t` relative to `now` in words: "in 29 days", "3 minutes ago", "1 hour
 * ago", "2 years ago", "just now" (less than half a second either way);
 * t == 0 is "never".  Rounded to the nearest unit, moving up a unit when
 * the count would reach the next one (59.6 minutes is "1 hour"); days are
 * used up to a year, a year counts 365.2425 days.  -ENOBUFS if `size` is
 * too small (RELATIVE_FORMAT_MAX always suffices).
 */
int relative_format(uint64_t t, uint64_t now, char *ret, size_t size);

/*
 * A duration for messages: "90d", "1d 12h", "1h 30m 5s", "0s"; any rest
 * below a second as "ms" and "us".  Exact, largest unit first, zero parts
 * left out; weeks are shown as days.  -ENOBUFS if `size` is too small
 * (DURATION_FORMAT_MAX always suffices).
 */
int duration_format(uint64_t usec, char *ret, size_t size);
