/* SPDX-License-Identifier: MIT */
/*
 * The stored form of the expiry warnings given (the daemon's meta value
 * "expiry_warned"; apikeyd/api/expiry.h): per key, the expiry it was warned
 * of and the shortest warning given.  Decoding reads back bytes a crash, a
 * bad disk or a hostile copy of the database may have mangled.
 *
 * Encoding (little-endian): u8 version (1), then each mark: the key's id
 * (TOKEN_ID_LEN bytes of base62), u64 expires_at (µs), u64 warned (µs).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "token.h"

#define EXPIRY_MARK_SIZE (TOKEN_ID_LEN + 16)

struct expiry_mark {
        char id[TOKEN_ID_LEN + 1];
        uint64_t expires_at; /* the expiry warned of */
        uint64_t warned;     /* the shortest warning given, µs */
};

/* 0 and the encoding of `n` marks in a malloc()ed block; -EINVAL (an id that is not one), -ENOMEM.
 */
int expiry_marks_encode(const struct expiry_mark *m, size_t n, void **ret_buf,
                        size_t *ret_len) _warn_unused_;
/* 0 and the marks in a malloc()ed array (NULL when none), or -EBADMSG, -ENOMEM. */
int expiry_marks_decode(const void *buf, size_t len, struct expiry_mark **ret,
                        size_t *ret_n) _warn_unused_;
