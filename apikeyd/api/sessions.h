/* SPDX-License-Identifier: MIT */
/*
 * Login sessions opened with a key (sessions.c): ended when their key
 * stops being usable.  For keys.c, which changes keys, and state.c.
 */
#pragma once

#include <stddef.h>

#include "api.h"

/* Check every session's key now; end the sessions whose key is no longer usable. */
void sessions_sweep(struct api *a);
/* The live sessions of key `key_id`. */
size_t sessions_count(struct api *a, const char *key_id);
/* At start, once the event loop is there: the sessions saved before a
 * restart whose processes are provably the same, then a sweep. */
void sessions_load(struct api *a);
/* At shutdown: forget every session (their processes are left alone). */
void sessions_free(struct api *a);
