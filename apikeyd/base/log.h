/* SPDX-License-Identifier: MIT */
/*
 * The daemon's log: lines on stderr, with a syslog priority prefix ("<4>")
 * when stderr is connected to the journal, so journald files each line at
 * its level.  Never given a secret.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <syslog.h>

#include "macro.h"
#include "message_ids.h"

void log_set_max_level(int level);
int log_get_max_level(void);
_printf_(2, 3) void log_msg(int priority, const char *fmt, ...);

/*
 * Log at most once per `interval` µs for the given `last` time stamp (a
 * static in the caller): for limits that a hostile client may hit per byte.
 * Counts what it suppressed and says so on the next line it lets through.
 */
_printf_(5, 6) void log_ratelimited(int priority, uint64_t *last, unsigned *suppressed,
                                    uint64_t interval, const char *fmt, ...);

/*
 * One event with journal fields (each "NAME=value"): sent to journald as a
 * structured entry when its socket is there, and written to stderr as
 * `message` unless stderr already goes to the journal.
 */
void log_fields(int priority, const char *message, const char *const *fields, size_t n);

/*
 * A line that is also a journal entry with `message_id` (a whole
 * "MESSAGE_ID=..." field of message_ids.h): the events an administrator
 * searches for.  On stderr it reads as log_msg()'s line.
 */
_printf_(3, 4) void log_event(int priority, const char *message_id, const char *fmt, ...);

#define log_error(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_WARNING, __VA_ARGS__)
#define log_notice(...)  log_msg(LOG_NOTICE, __VA_ARGS__)
#define log_info(...)    log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...)   log_msg(LOG_DEBUG, __VA_ARGS__)
