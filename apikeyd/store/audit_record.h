/* SPDX-License-Identifier: MIT */
/*
 * The stored form of an audit event: the values of the keystore's `audit`
 * database (the sequence number is the key, not part of it).  Decoding
 * reads back bytes a crash, a bad disk or a hostile copy of the database
 * may have mangled, so it checks every length and terminator.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define AUDIT_STRING_MAX 4096

/*
 * An audit event.  Encoding (little-endian): u8 version (1), u64 time (µs),
 * then strings as in record.h: actor, action, key_id, result, detail.
 */
struct audit_event {
        uint64_t seq; /* assigned by keystore_append_audit */
        uint64_t time;
        const char *actor;  /* "uid=1000", "key=7Hq2LmX9aB3z" */
        const char *action; /* "create", "revoke", ... */
        const char *key_id; /* may be NULL */
        const char *result; /* "ok", or an error name */
        const char *detail; /* may be NULL */
        /* An admin's management event, kept under the admins' own retention
         * (keystore.h).  Not part of the encoding: the keystore keeps the two
         * apart and sets it when reading. */
        bool admin;
};

/*
 * The event's bytes in a malloc()ed block: 0, -EINVAL if a string is longer
 * than AUDIT_STRING_MAX or one of actor, action and result is missing or
 * empty, -ENOMEM.  `seq` is not part of it.
 */
int audit_record_encode(const struct audit_event *ev, void **ret_buf,
                        size_t *ret_len) _warn_unused_;

/*
 * The event in `buf`: 0 and the event, its strings views into `buf` (`seq`
 * left 0), or -EBADMSG.  What decodes encodes back to the same bytes.
 */
int audit_record_decode(const void *buf, size_t len, struct audit_event *ret) _warn_unused_;
