/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes token_parse() (common/token.c), which the PAM module and the daemon
 * run on whatever a user types at the "API key" prompt.  The input is the
 * candidate token, passed without a terminating NUL.  Checks that a token
 * that parses is reassembled byte for byte by token_format(), that the
 * parts it hands out satisfy the shape checks, and that a wrong expected
 * prefix is refused.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *s = (const char *)data;
        enum token_error e = TOKEN_OK;
        struct token t;
        int r;

        r = token_parse(s, size, NULL, &t, &e);
        CHECK(token_error_to_string(e) != NULL);
        CHECK((r == 0) == (e == TOKEN_OK));

        /* The shape checks on a NUL-terminated copy: they must not read past it. */
        char *copy = malloc(size + 1);
        if (!copy)
                return 0;
        memcpy(copy, data, size);
        copy[size] = '\0';
        size_t n = strlen(copy);
        if (token_prefix_valid(copy))
                CHECK(n >= TOKEN_PREFIX_MIN && n <= TOKEN_PREFIX_MAX);
        if (token_id_valid(copy))
                CHECK(n == TOKEN_ID_LEN && base62_valid(copy, n));
        if (base62_valid(copy, n))
                CHECK(strspn(copy, BASE62_ALPHABET) == n);
        free(copy);

        if (r < 0) {
                /* With an expected prefix, a malformed token stays malformed. */
                CHECK(token_parse(s, size, TOKEN_DEFAULT_PREFIX, NULL, NULL) < 0);
                return 0;
        }

        char secret[TOKEN_SECRET_LEN + 1], again[TOKEN_MAX_LEN + 1];
        size_t plen = strlen(t.prefix);

        CHECK(token_prefix_valid(t.prefix));
        CHECK(token_id_valid(t.id));
        CHECK(t.body == s);
        CHECK(t.body_len + TOKEN_CHECK_LEN == size);
        CHECK(size == TOKEN_LEN(plen));
        CHECK(t.secret == s + plen + 1 + TOKEN_ID_LEN + 1);
        memcpy(secret, t.secret, TOKEN_SECRET_LEN);
        secret[TOKEN_SECRET_LEN] = '\0';

        r = token_format(t.prefix, t.id, secret, again, sizeof(again));
        CHECK(r == (int)size);
        CHECK(memcmp(again, data, size) == 0);
        /* One byte too small a buffer is refused rather than overrun. */
        CHECK(token_format(t.prefix, t.id, secret, again, size) < 0);

        /* Its own prefix is accepted; any other is refused. */
        CHECK(token_parse(s, size, t.prefix, NULL, NULL) == 0);
        e = TOKEN_OK;
        CHECK(token_parse(s, size, plen == 2 ? "abc" : "zz", NULL, &e) < 0);
        CHECK(e == TOKEN_ERR_WRONG_PREFIX);

        /* A token is a prefix of no other: every shorter piece is refused. */
        CHECK(token_parse(s, size - 1, NULL, NULL, NULL) < 0);
        return 0;
}
