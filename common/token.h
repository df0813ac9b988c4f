/* SPDX-License-Identifier: MIT */
/*
 * The token's shape: `<prefix>_<id>_<secret><check>`.
 *
 *   prefix  2-8 lowercase ASCII letters (default "apk"), configurable per
 *           installation so secret scanners can find leaked keys
 *   id      12 base62 characters, public; names the key
 *   secret  43 base62 characters (> 256 bits)
 *   check   CRC-32 (the zlib/ISO-HDLC polynomial) of everything before it,
 *           as 6 base62 digits, most significant first, zero-padded
 *
 * Base62 alphabet: 0-9 A-Z a-z.  Scanner regex:
 *   \b[a-z]{2,8}_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}\b
 *
 * No cryptography lives here: the PAM module links this file, and only
 * needs to know whether a string is one of ours before it asks the daemon.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define TOKEN_PREFIX_MIN     2
#define TOKEN_PREFIX_MAX     8
#define TOKEN_ID_LEN         12
#define TOKEN_SECRET_LEN     43
#define TOKEN_CHECK_LEN      6
#define TOKEN_DEFAULT_PREFIX "apk"
/* Length of a token whose prefix has `p` characters. */
#define TOKEN_LEN(p)  ((p) + 1 + TOKEN_ID_LEN + 1 + TOKEN_SECRET_LEN + TOKEN_CHECK_LEN)
#define TOKEN_MAX_LEN TOKEN_LEN(TOKEN_PREFIX_MAX)

extern const char BASE62_ALPHABET[63];

enum token_error {
        TOKEN_OK = 0,
        TOKEN_ERR_EMPTY,
        TOKEN_ERR_LENGTH,
        TOKEN_ERR_PREFIX,
        TOKEN_ERR_WRONG_PREFIX,
        TOKEN_ERR_SEPARATOR,
        TOKEN_ERR_ID,
        TOKEN_ERR_SECRET,
        TOKEN_ERR_CHECKSUM,
};

/*
 * A parsed token.  `prefix` and `id` are copies (they are public);
 * `secret` and `body` point into the string that was parsed, so the only
 * copy of the secret stays the caller's, to erase when done.
 */
struct token {
        char prefix[TOKEN_PREFIX_MAX + 1];
        char id[TOKEN_ID_LEN + 1];
        const char *secret; /* TOKEN_SECRET_LEN characters, not NUL-terminated */
        const char *body;   /* the whole token without its check digits */
        size_t body_len;
};

/*
 * Split `s` (`len` bytes; it need not be NUL-terminated) into its parts and
 * verify the checksum.  If `want_prefix` is non-NULL the prefix must equal
 * it.  Returns 0, or -EINVAL with the reason in `*ret_error` (if non-NULL).
 */
int token_parse(const char *s, size_t len, const char *want_prefix, struct token *ret,
                enum token_error *ret_error) _warn_unused_;

/* A human-readable reason for a token_error ("checksum mismatch", ...). */
const char *token_error_to_string(enum token_error e);

/* Whether `prefix` is 2-8 lowercase ASCII letters. */
bool token_prefix_valid(const char *prefix) _warn_unused_;

/* Whether the `len` bytes at `s` are all base62 characters. */
bool base62_valid(const char *s, size_t len) _warn_unused_;

/* Whether `id` is exactly TOKEN_ID_LEN base62 characters. */
bool token_id_valid(const char *id) _warn_unused_;

/* CRC-32 as zlib's crc32(0, data, len) computes it. */
uint32_t token_crc32(const void *data, size_t len);

/* Write the 6 check digits for `body` into `ret` (7 bytes, NUL-terminated). */
void token_checksum(const char *body, size_t len, char ret[TOKEN_CHECK_LEN + 1]);

/*
 * Assemble a token from its parts into `ret` (at least TOKEN_MAX_LEN + 1
 * bytes).  Returns the token's length, or -EINVAL if a part has the wrong
 * shape.  The caller erases `ret` when done with it.
 */
int token_format(const char *prefix, const char *id, const char *secret, char *ret,
                 size_t ret_size) _warn_unused_;
