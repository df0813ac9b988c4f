/* SPDX-License-Identifier: MIT */
/*
 * Keys' usage history, on the daemon's side (usage.c): each Verify of a
 * known key notes its use in memory (an append, nothing written), and the
 * uses are written with the last-used times, in one batch every
 * last_used_flush_interval (keystore_usage.h keeps them).  A VALID use
 * from a source the key had not been used from is a journal event
 * (APIKEY_EVENT=new_source) and an audit entry once it is written.
 * GetUsage reads a key's history, the uses not yet written included.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys_proto.h"
#include "macro.h"
#include "record.h"

/* Uses noted between two flushes; beyond, they are counted and dropped. */
#define USAGE_QUEUE_MAX 4096

/* A use waiting to be written; its strings are offsets + 1 into the queue's text (0: absent). */
struct queued_use {
        char id[TOKEN_ID_LEN + 1];
        uint8_t code; /* enum verify_code */
        uint64_t at;
        uint32_t service, rhost, tty;
};

struct usage_uses {
        struct queued_use *uses;
        size_t n, cap;
        char *text;
        size_t text_len, text_cap;
};

struct usage_queue {
        struct usage_uses noted;
        struct usage_uses taken; /* the batch being written; has_taken */
        bool has_taken;
        uint64_t dropped;
};

struct api;

void usage_queue_done(struct usage_queue *u);

/* Note a use of key `id` (its service, rhost and tty may be NULL); counted and dropped when full.
 */
void usage_note(struct usage_queue *u, const char *id, uint64_t at, enum verify_code code,
                const char *service, const char *rhost, const char *tty);

/* Hand the uses noted to the writer (api_flush()); those that fail wait for the next. */
void usage_flush(struct api *a);
