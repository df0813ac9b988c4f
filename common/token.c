/* SPDX-License-Identifier: MIT */
/* Parsing and formatting the token's shape; see token.h for the format. */
#include <errno.h>
#include <string.h>

#include "token.h"

const char BASE62_ALPHABET[63] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static bool is_base62(char c)
{
        return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

bool base62_valid(const char *s, size_t len)
{
        for (size_t i = 0; i < len; i++)
                if (!is_base62(s[i]))
                        return false;
        return true;
}

static bool prefix_valid(const char *s, size_t len)
{
        if (len < TOKEN_PREFIX_MIN || len > TOKEN_PREFIX_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] < 'a' || s[i] > 'z')
                        return false;
        return true;
}

bool token_prefix_valid(const char *prefix)
{
        return prefix && prefix_valid(prefix, strnlen(prefix, TOKEN_PREFIX_MAX + 1));
}

bool token_id_valid(const char *id)
{
        return id && strnlen(id, TOKEN_ID_LEN + 1) == TOKEN_ID_LEN &&
               base62_valid(id, TOKEN_ID_LEN);
}

uint32_t token_crc32(const void *data, size_t len)
{
        /* zlib's CRC-32 four bits at a time: a 16-entry table (64 bytes of
         * read-only data) is a fifth of the bitwise loop's work, and the PAM
         * module still carries no large tables. */
        static const uint32_t nibble[16] = {
            0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
            0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
            0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
        };
        const unsigned char *p = data;
        uint32_t crc = 0xFFFFFFFFu;

        for (size_t i = 0; i < len; i++) {
                crc ^= p[i];
                crc = (crc >> 4) ^ nibble[crc & 15];
                crc = (crc >> 4) ^ nibble[crc & 15];
        }
        return crc ^ 0xFFFFFFFFu;
}

void token_checksum(const char *body, size_t len, char ret[TOKEN_CHECK_LEN + 1])
{
        uint64_t v = token_crc32(body, len);

        for (int i = TOKEN_CHECK_LEN - 1; i >= 0; i--) {
                ret[i] = BASE62_ALPHABET[v % 62];
                v /= 62;
        }
        ret[TOKEN_CHECK_LEN] = '\0';
}

static int fail(enum token_error e, enum token_error *ret_error)
{
        if (ret_error)
                *ret_error = e;
        return -EINVAL;
}

int token_parse(const char *s, size_t len, const char *want_prefix, struct token *ret,
                enum token_error *ret_error)
{
        const char *sep, *id, *secret, *check;
        size_t plen;
        char want_check[TOKEN_CHECK_LEN + 1];

        if (!s || len == 0)
                return fail(TOKEN_ERR_EMPTY, ret_error);
        if (len < TOKEN_LEN(TOKEN_PREFIX_MIN) || len > TOKEN_MAX_LEN)
                return fail(TOKEN_ERR_LENGTH, ret_error);

        sep = memchr(s, '_', TOKEN_PREFIX_MAX + 1 < len ? TOKEN_PREFIX_MAX + 1 : len);
        if (!sep || !prefix_valid(s, (size_t)(sep - s)))
                return fail(TOKEN_ERR_PREFIX, ret_error);
        plen = (size_t)(sep - s);
        if (len != TOKEN_LEN(plen))
                return fail(TOKEN_ERR_LENGTH, ret_error);
        if (want_prefix && (strlen(want_prefix) != plen || memcmp(want_prefix, s, plen) != 0))
                return fail(TOKEN_ERR_WRONG_PREFIX, ret_error);

        id = sep + 1;
        if (!base62_valid(id, TOKEN_ID_LEN))
                return fail(TOKEN_ERR_ID, ret_error);
        if (id[TOKEN_ID_LEN] != '_')
                return fail(TOKEN_ERR_SEPARATOR, ret_error);
        secret = id + TOKEN_ID_LEN + 1;
        check = secret + TOKEN_SECRET_LEN;
        if (!base62_valid(secret, TOKEN_SECRET_LEN + TOKEN_CHECK_LEN))
                return fail(TOKEN_ERR_SECRET, ret_error);

        token_checksum(s, (size_t)(check - s), want_check);
        if (memcmp(want_check, check, TOKEN_CHECK_LEN) != 0)
                return fail(TOKEN_ERR_CHECKSUM, ret_error);

        if (ret) {
                memcpy(ret->prefix, s, plen);
                ret->prefix[plen] = '\0';
                memcpy(ret->id, id, TOKEN_ID_LEN);
                ret->id[TOKEN_ID_LEN] = '\0';
                ret->secret = secret;
                ret->body = s;
                ret->body_len = (size_t)(check - s);
        }
        if (ret_error)
                *ret_error = TOKEN_OK;
        return 0;
}

const char *token_error_to_string(enum token_error e)
{
        switch (e) {
        case TOKEN_OK:
                return "valid";
        case TOKEN_ERR_EMPTY:
                return "empty token";
        case TOKEN_ERR_LENGTH:
                return "wrong length";
        case TOKEN_ERR_PREFIX:
                return "no prefix of 2-8 lowercase letters followed by '_'";
        case TOKEN_ERR_WRONG_PREFIX:
                return "prefix is not this installation's";
        case TOKEN_ERR_SEPARATOR:
                return "missing '_' after the key id";
        case TOKEN_ERR_ID:
                return "key id is not 12 base62 characters";
        case TOKEN_ERR_SECRET:
                return "secret or check digits are not base62";
        case TOKEN_ERR_CHECKSUM:
                return "checksum mismatch (mistyped or truncated token)";
        }
        return "invalid token";
}

int token_format(const char *prefix, const char *id, const char *secret, char *ret, size_t ret_size)
{
        size_t plen, n;

        if (!token_prefix_valid(prefix) || !token_id_valid(id) || !secret ||
            strnlen(secret, TOKEN_SECRET_LEN + 1) != TOKEN_SECRET_LEN ||
            !base62_valid(secret, TOKEN_SECRET_LEN))
                return -EINVAL;
        plen = strlen(prefix);
        if (ret_size < TOKEN_LEN(plen) + 1)
                return -ENOBUFS;

        n = 0;
        memcpy(ret + n, prefix, plen);
        n += plen;
        ret[n++] = '_';
        memcpy(ret + n, id, TOKEN_ID_LEN);
        n += TOKEN_ID_LEN;
        ret[n++] = '_';
        memcpy(ret + n, secret, TOKEN_SECRET_LEN);
        n += TOKEN_SECRET_LEN;
        token_checksum(ret, n, ret + n);
        n += TOKEN_CHECK_LEN;
        ret[n] = '\0';
        return (int)n;
}
