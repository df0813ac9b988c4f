/* SPDX-License-Identifier: MIT */
/*
 * The key record and its versioned binary encoding.
 *
 * A decoded record is a view: its strings point into the encoded buffer
 * (each string is stored NUL-terminated), so decoding allocates nothing and
 * the record lives as long as the buffer does.
 *
 * Encoding, version 3 (all integers little-endian):
 *
 *   off  size  field
 *     0     1  format version (1)
 *     1     1  status        (enum key_status: 1 enabled, 2 disabled, 3 revoked)
 *     2     1  role          (enum key_role: 1 admin, 2 readonly, 3 custom)
 *     3     1  permissions   (bit set of enum key_perm; no bits above KEY_PERM_ALL)
 *     4    12  id            (base62)
 *    16    32  hash          (BLAKE2b-256 keyed with the pepper)
 *    48     8  created_at    (µs since the epoch, UTC; never 0)
 *    56     8  expires_at    (µs; 0 = never)
 *    64     8  last_used_at  (µs; 0 = never)
 *    72     1  n_scope       (<= KEY_SCOPE_MAX)
 *    73     1  flags         (bit set of enum key_flag; no unknown bits)
 *    74    12  parent        (id of the key it was created through; all zero = none)
 *    86     …  strings, each as u16 length L, L bytes (no NUL among them), one
 *              NUL byte; in this order: name, description, owner, created_by,
 *              last_used_service, last_used_from, then n_scope scope entries.
 *
 *     …  extensions (version 3 only): fields most keys do not have: a u16
 *        length E (> 0), then E bytes holding the fields, each as u8 tag,
 *        u16 length L, L bytes (L > 0), tags strictly ascending:
 *          1 not_before      u64 µs
 *          2 sources         u8 count N, then N strings as above
 *          3 max_uses        u64 max_uses, u64 uses (spent so far, <= max_uses)
 *          4 rate_limit      u32 count, u64 window (µs)
 *          5 replaces        12-byte id
 *          6 replaced_by     12-byte id
 *          7 disabled_reason a string as above
 *
 * The buffer ends exactly after the last string (version 2) or extension
 * (version 3); anything else is corrupt.  Empty optional strings are stored
 * with L = 0 and decode to NULL.
 *
 * A record with no extension field is written as version 2, so a daemon
 * that knows only version 2 (an older host of a fleet) still reads it; one
 * with any is written as version 3.  A tag this code does not know is
 * refused as -EPROTONOSUPPORT, never skipped: an extension may narrow what
 * the key may do, and a reader that ignored it would widen it.
 *
 * Version 1 is version 2 without flags and parent (strings from offset 73);
 * it still decodes, as a key with no flags and no parent.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "token.h"

#define RECORD_VERSION       3
#define RECORD_FIXED_SIZE    86
#define RECORD_V1_FIXED_SIZE 73
#define KEY_HASH_SIZE        32
#define KEY_NAME_MAX         128
#define KEY_DESCRIPTION_MAX  1024
#define KEY_OWNER_MAX        256
#define KEY_SCOPE_MAX        32
#define KEY_SCOPE_ENTRY_MAX  64
#define KEY_FIELD_MAX        256 /* created_by, last_used_service, last_used_from */
#define KEY_SOURCES_MAX      32
#define KEY_SOURCE_ENTRY_MAX 255 /* an address, a CIDR block or a host name */
#define KEY_REASON_MAX       64  /* disabled_reason */
/* Generations of keys created through keys (parent, its parent, ...): a longer chain is refused. */
#define KEY_LINEAGE_MAX 16

enum key_status {
        KEY_STATUS_ENABLED = 1,
        KEY_STATUS_DISABLED = 2,
        KEY_STATUS_REVOKED = 3,
        KEY_STATUS_EXPIRED = 4, /* derived from expires_at, never stored */
};

enum key_role {
        KEY_ROLE_ADMIN = 1,
        KEY_ROLE_READONLY = 2,
        KEY_ROLE_CUSTOM = 3,
};

enum key_perm {
        KEY_PERM_CREATE = 1u << 0,
        KEY_PERM_READ = 1u << 1,
        KEY_PERM_WRITE = 1u << 2,
        KEY_PERM_DELETE = 1u << 3,
        KEY_PERM_INVITE = 1u << 4,
        KEY_PERM_ALL = 0x1f,
};

/*
 * What a key may not do, whatever its role and permissions say.
 *
 * KEY_FLAG_NO_LOGIN: created through `invite` for another owner; it serves
 * scripts and services (Verify without `user`), never a login as its owner
 * (Verify with `user` answers NOT_FOR_LOGIN), and it cannot act as `auth`.
 *
 * KEY_FLAG_ADMIN_DISABLED: an admin disabled it; only an admin enables it.
 *
 * KEY_FLAG_RETIRE_ON_FIRST_USE: made by a rotation (`replaces` names the
 * key it replaces); its first VALID verify ends that key's grace.  Cleared
 * then, in the same transaction.
 */
enum key_flag {
        KEY_FLAG_NO_LOGIN = 1u << 0,
        KEY_FLAG_ADMIN_DISABLED = 1u << 1,
        KEY_FLAG_RETIRE_ON_FIRST_USE = 1u << 2,
        KEY_FLAGS_ALL = 0x7,
};

struct key_record {
        char id[TOKEN_ID_LEN + 1];
        uint8_t status; /* enum key_status, never KEY_STATUS_EXPIRED */
        uint8_t role;   /* enum key_role */
        uint8_t permissions;
        uint8_t flags;                 /* enum key_flag */
        char parent[TOKEN_ID_LEN + 1]; /* the key it was created through; "" = none */
        uint8_t hash[KEY_HASH_SIZE];
        uint64_t created_at;
        uint64_t expires_at;
        uint64_t last_used_at;
        const char *name;
        const char *description; /* NULL when absent */
        const char *owner;
        const char *created_by;        /* NULL when absent */
        const char *last_used_service; /* NULL when never used */
        const char *last_used_from;    /* NULL when unknown */
        size_t n_scope;                /* 0 = any service */
        const char *scope[KEY_SCOPE_MAX];

        /* Extensions (version 3); zero, empty or NULL when absent. */
        uint64_t not_before; /* µs; VALID only from then on */
        size_t n_sources;    /* 0 = from anywhere */
        const char *sources[KEY_SOURCES_MAX];
        uint64_t max_uses;                  /* 0 = unlimited */
        uint64_t uses;                      /* VALID verifies spent against max_uses */
        uint32_t rate_limit_count;          /* 0 = none; VALID verifies per window */
        uint64_t rate_limit_window;         /* µs; non-zero exactly when count is */
        char replaces[TOKEN_ID_LEN + 1];    /* the key this one was rotated from; "" = none */
        char replaced_by[TOKEN_ID_LEN + 1]; /* the key it was rotated to; "" = none */
        const char *disabled_reason;        /* why the daemon disabled it ("unused"); NULL = none */
};

/* Whether the record has any extension field (is written as version 3). */
bool record_has_extensions(const struct key_record *rec);

/* Check every field's bounds and values, every string with text_valid();
 * what every stored record meets (encode and decode check it); 0 or -EINVAL. */
int record_validate(const struct key_record *rec) _warn_unused_;

/* The same and the syntax of owners (text_owner_valid), scope entries
 * (text_name_valid) and sources (sources.h), and a not_before before the
 * expiry, which records written before it may lack: every write
 * that sets values a caller sent checks this.  Names in `*ret_field` (if
 * non-NULL) the first field that is wrong, as the API calls it ("name",
 * "scope", "description", ...). */
int record_check(const struct key_record *rec, const char **ret_field) _warn_unused_;

/* Encode into a new buffer (free() it). 0, -EINVAL (invalid record) or -ENOMEM. */
int record_encode(const struct key_record *rec, void **ret_buf, size_t *ret_len) _warn_unused_;

/*
 * Decode `len` bytes at `buf` into a view.  0, -EBADMSG for a corrupt or
 * truncated record, -EPROTONOSUPPORT for a format version newer than ours
 * (`*ret` then holds nothing to use).
 */
int record_decode(const void *buf, size_t len, struct key_record *ret) _warn_unused_;

/* The status a caller sees at `now` (µs): revoked > expired > disabled > enabled. */
enum key_status record_effective_status(const struct key_record *rec, uint64_t now);

/* Names used on the wire and in the CLI ("enabled", "admin", "create", ...). */
const char *key_status_to_string(enum key_status s);
int key_status_from_string(const char *s); /* enum value or -EINVAL */
const char *key_role_to_string(enum key_role r);
int key_role_from_string(const char *s); /* enum value or -EINVAL */
const char *key_perm_to_string(enum key_perm p);
int key_perm_from_string(const char *s); /* single bit or -EINVAL */
/* The permission set a role implies; custom returns 0 (its set is explicit). */
uint8_t key_role_permissions(enum key_role r);
