/* SPDX-License-Identifier: MIT */
/*
 * The stored forms of a key's usage history (the keystore's `usage`
 * database, keystore_usage.h): one use, and the set of sources the key has
 * been used from.  Decoding reads back bytes a crash, a bad disk or a
 * hostile copy of the database may have mangled, so it checks every length
 * and terminator.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* The longest string of a use (service, rhost, tty: as a key's last_used_* fields). */
#define USAGE_STRING_MAX 256
/* The longest Verify code a use stores ("INSUFFICIENT_PERMISSIONS" and room to grow). */
#define USAGE_CODE_MAX 32
/* Sources remembered per key; beyond, the one seen longest ago is forgotten. */
#define USAGE_SOURCES_MAX 64

/*
 * One use of a key.  Encoding (little-endian): u8 version (1), u64 time
 * (µs), then four strings, each a u16 length, its bytes and a NUL: code
 * (required), service, rhost, tty (empty = absent).
 */
struct usage_entry {
        uint64_t at;
        const char *code;    /* "VALID", "OUT_OF_SCOPE", ... */
        const char *service; /* NULL when absent */
        const char *rhost;
        const char *tty;
};

/* 0 and the encoding in a malloc()ed block; -EINVAL (a string too long, no code), -ENOMEM. */
int usage_entry_encode(const struct usage_entry *e, void **ret_buf, size_t *ret_len) _warn_unused_;

/*
 * The use in `buf`: 0, its strings views into `buf`, or -EBADMSG.  What
 * decodes encodes back to the same bytes.
 */
int usage_entry_decode(const void *buf, size_t len, struct usage_entry *ret) _warn_unused_;

/*
 * Where a key was used from: the remote host, or for a local call (no
 * rhost) the service, which may be empty (a local call naming none).
 */
enum usage_source_kind {
        USAGE_SOURCE_RHOST = 'r',
        USAGE_SOURCE_SERVICE = 's',
};

struct usage_source {
        uint64_t seen_at; /* the latest VALID use from it, µs */
        char kind;        /* enum usage_source_kind */
        const char *name; /* never NULL; "" only for a service */
};

/*
 * The sources of one key.  Encoding (little-endian): u8 version (1), u8
 * count (at most USAGE_SOURCES_MAX), then each source: u64 seen_at, u8
 * kind, u16 length, its bytes and a NUL.
 */
int usage_sources_encode(const struct usage_source *s, size_t n, void **ret_buf,
                         size_t *ret_len) _warn_unused_;
/* Into `ret` (USAGE_SOURCES_MAX entries, names viewing `buf`): 0 and `*ret_n`, or -EBADMSG. */
int usage_sources_decode(const void *buf, size_t len, struct usage_source *ret,
                         size_t *ret_n) _warn_unused_;
