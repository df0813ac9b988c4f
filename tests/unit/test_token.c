/* SPDX-License-Identifier: MIT */
/* Unit tests of the token's shape: parse, format, checksum (common/token.c). */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include "token.h"

#define ID     "7Hq2LmX9aB3z"
#define SECRET "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"

static char *make_token(const char *prefix)
{
        static char buf[TOKEN_MAX_LEN + 1];
        int n = token_format(prefix, ID, SECRET, buf, sizeof(buf));

        assert_int_equal(n, (int)TOKEN_LEN(strlen(prefix)));
        return buf;
}

static enum token_error parse_error(const char *s, size_t len, const char *want)
{
        enum token_error e = TOKEN_OK;
        struct token t;
        int r = token_parse(s, len, want, &t, &e);

        assert_true(r == 0 ? e == TOKEN_OK : (r == -EINVAL && e != TOKEN_OK));
        return e;
}

static void test_round_trip(void **state)
{
        const char *prefixes[] = {"apk", "ab", "abcdefgh", "acme"};

        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
                char *s = make_token(prefixes[i]);
                struct token t;

                assert_int_equal(token_parse(s, strlen(s), prefixes[i], &t, NULL), 0);
                assert_string_equal(t.prefix, prefixes[i]);
                assert_string_equal(t.id, ID);
                assert_memory_equal(t.secret, SECRET, TOKEN_SECRET_LEN);
                assert_ptr_equal(t.body, s);
                assert_int_equal(t.body_len, strlen(s) - TOKEN_CHECK_LEN);
                /* Any prefix is accepted when none is asked for. */
                assert_int_equal(token_parse(s, strlen(s), NULL, &t, NULL), 0);
        }
}

static void test_known_vector(void **state)
{
        /* The check digits are zlib's CRC-32 of the body in base62, so any
         * other implementation can reproduce them. */
        char *s = make_token("apk");
        uint32_t crc = (uint32_t)crc32(0, (const Bytef *)s, (uInt)(strlen(s) - TOKEN_CHECK_LEN));
        char want[TOKEN_CHECK_LEN + 1];
        uint64_t v = crc;

        for (int i = TOKEN_CHECK_LEN - 1; i >= 0; i--) {
                want[i] = BASE62_ALPHABET[v % 62];
                v /= 62;
        }
        want[TOKEN_CHECK_LEN] = '\0';
        assert_string_equal(s + strlen(s) - TOKEN_CHECK_LEN, want);
        assert_string_equal(s, "apk_" ID "_" SECRET "0fGyu7");
}

static void test_crc32_matches_zlib(void **state)
{
        unsigned char buf[300] = {0};
        unsigned seed = 12345;

        for (size_t len = 0; len < sizeof(buf); len++) {
                for (size_t i = 0; i < len; i++)
                        buf[i] = (unsigned char)(rand_r(&seed) & 0xff);
                assert_int_equal(token_crc32(buf, len), (uint32_t)crc32(0, buf, (uInt)len));
                /* From every offset within a word of eight, too. */
                for (size_t off = 1; off < 8 && off <= len; off++)
                        assert_int_equal(token_crc32(buf + off, len - off),
                                         (uint32_t)crc32(0, buf + off, (uInt)(len - off)));
        }
}

static void test_every_single_change_rejected(void **state)
{
        char s[TOKEN_MAX_LEN + 1];
        const char *alphabet =
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-+/= .\n";
        size_t len;
        unsigned tried = 0;

        strcpy(s, make_token("apk"));
        len = strlen(s);
        for (size_t pos = 0; pos < len; pos++) {
                char orig = s[pos];
                for (const char *c = alphabet; *c; c++) {
                        if (*c == orig)
                                continue;
                        s[pos] = *c;
                        /* With the expected prefix, nothing but the original parses. */
                        assert_int_not_equal(parse_error(s, len, "apk"), TOKEN_OK);
                        /* Without it, the checksum still catches the change. */
                        assert_int_not_equal(parse_error(s, len, NULL), TOKEN_OK);
                        tried++;
                }
                s[pos] = orig;
        }
        assert_true(tried > 60 * 60);
        assert_int_equal(parse_error(s, len, "apk"), TOKEN_OK);
}

static void test_checksum_catches_transpositions(void **state)
{
        char s[TOKEN_MAX_LEN + 1];
        size_t len;

        strcpy(s, make_token("apk"));
        len = strlen(s);
        for (size_t pos = 4; pos + 1 < len; pos++) {
                char a = s[pos], b = s[pos + 1];
                if (a == b)
                        continue;
                s[pos] = b;
                s[pos + 1] = a;
                assert_int_not_equal(parse_error(s, len, NULL), TOKEN_OK);
                s[pos] = a;
                s[pos + 1] = b;
        }
}

static void test_wrong_lengths(void **state)
{
        char s[TOKEN_MAX_LEN + 2];
        char big[200];
        size_t len;

        strcpy(s, make_token("apk"));
        len = strlen(s);
        assert_int_equal(parse_error(s, 0, NULL), TOKEN_ERR_EMPTY);
        assert_int_equal(parse_error(NULL, 10, NULL), TOKEN_ERR_EMPTY);
        for (size_t l = 1; l < len; l++)
                assert_int_not_equal(parse_error(s, l, NULL), TOKEN_OK);
        /* One character too many, in the secret: the length no longer fits. */
        memmove(s + 20, s + 19, len - 19 + 1);
        assert_int_equal(parse_error(s, len + 1, NULL), TOKEN_ERR_LENGTH);

        memset(big, 'a', sizeof(big));
        for (size_t l = TOKEN_MAX_LEN + 1; l <= sizeof(big); l++)
                assert_int_equal(parse_error(big, l, NULL), TOKEN_ERR_LENGTH);
}

static void test_prefixes(void **state)
{
        char s[TOKEN_MAX_LEN + 1];
        char bad[2 * TOKEN_MAX_LEN];

        strcpy(s, make_token("apk"));
        assert_int_equal(parse_error(s, strlen(s), "acme"), TOKEN_ERR_WRONG_PREFIX);
        assert_int_equal(parse_error(s, strlen(s), "ap"), TOKEN_ERR_WRONG_PREFIX);
        assert_int_equal(parse_error(s, strlen(s), "apkx"), TOKEN_ERR_WRONG_PREFIX);

        /* Uppercase, digits, one letter, nine letters: not a prefix. */
        strcpy(bad, s);
        bad[0] = 'A';
        assert_int_equal(parse_error(bad, strlen(bad), NULL), TOKEN_ERR_PREFIX);
        bad[0] = '1';
        assert_int_equal(parse_error(bad, strlen(bad), NULL), TOKEN_ERR_PREFIX);
        snprintf(bad, sizeof(bad), "a_%s", s + 4);
        assert_int_not_equal(parse_error(bad, strlen(bad), NULL), TOKEN_OK);
        snprintf(bad, sizeof(bad), "abcdefghi_%s", s + 4);
        assert_int_not_equal(parse_error(bad, strlen(bad), NULL), TOKEN_OK);

        assert_true(token_prefix_valid("apk"));
        assert_true(token_prefix_valid("ab"));
        assert_true(token_prefix_valid("abcdefgh"));
        assert_false(token_prefix_valid("a"));
        assert_false(token_prefix_valid("abcdefghi"));
        assert_false(token_prefix_valid("Apk"));
        assert_false(token_prefix_valid("ap_"));
        assert_false(token_prefix_valid(""));
        assert_false(token_prefix_valid(NULL));
}

static void test_non_base62(void **state)
{
        char s[TOKEN_MAX_LEN + 1];
        size_t len;

        strcpy(s, make_token("apk"));
        len = strlen(s);
        s[6] = '-';
        assert_int_equal(parse_error(s, len, NULL), TOKEN_ERR_ID);
        strcpy(s, make_token("apk"));
        s[4 + TOKEN_ID_LEN] = 'x';
        assert_int_equal(parse_error(s, len, NULL), TOKEN_ERR_SEPARATOR);
        strcpy(s, make_token("apk"));
        s[30] = '/';
        assert_int_equal(parse_error(s, len, NULL), TOKEN_ERR_SECRET);
        strcpy(s, make_token("apk"));
        s[len - 1] = '=';
        assert_int_equal(parse_error(s, len, NULL), TOKEN_ERR_SECRET);
        strcpy(s, make_token("apk"));
        s[30] = (char)0xc3; /* a byte of UTF-8 */
        assert_int_equal(parse_error(s, len, NULL), TOKEN_ERR_SECRET);
}

static void test_nul_and_newline(void **state)
{
        char s[TOKEN_MAX_LEN + 2];
        size_t len;

        strcpy(s, make_token("apk"));
        len = strlen(s);
        s[30] = '\0';
        assert_int_equal(parse_error(s, len, NULL), TOKEN_ERR_SECRET);
        strcpy(s, make_token("apk"));
        s[30] = '\n';
        assert_int_equal(parse_error(s, len, NULL), TOKEN_ERR_SECRET);
        /* A trailing newline, as `echo` would add, is not silently accepted. */
        strcpy(s, make_token("apk"));
        s[len] = '\n';
        s[len + 1] = '\0';
        assert_int_equal(parse_error(s, len + 1, NULL), TOKEN_ERR_LENGTH);
}

static void test_one_mebibyte(void **state)
{
        size_t n = 1024 * 1024;
        char *big = malloc(n);

        assert_non_null(big);
        memset(big, 'A', n);
        memcpy(big, make_token("apk"), TOKEN_LEN(3));
        assert_int_equal(parse_error(big, n, NULL), TOKEN_ERR_LENGTH);
        free(big);
}

static void test_error_strings(void **state)
{
        assert_string_equal(token_error_to_string(TOKEN_ERR_CHECKSUM),
                            "checksum mismatch (mistyped or truncated token)");
        assert_string_equal(token_error_to_string(TOKEN_ERR_LENGTH), "wrong length");
        for (int e = TOKEN_OK; e <= TOKEN_ERR_CHECKSUM; e++)
                assert_non_null(token_error_to_string((enum token_error)e));
}

static void test_format_refuses_bad_parts(void **state)
{
        char buf[TOKEN_MAX_LEN + 1];

        assert_int_equal(token_format("APK", ID, SECRET, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(token_format("apk", "short", SECRET, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(token_format("apk", "7Hq2LmX9aB3_", SECRET, buf, sizeof(buf)), -EINVAL);
        assert_int_equal(token_format("apk", ID, "abc", buf, sizeof(buf)), -EINVAL);
        assert_int_equal(token_format("apk", ID, SECRET, buf, TOKEN_LEN(3)), -ENOBUFS);
        assert_int_equal(token_format("apk", ID, SECRET, buf, TOKEN_LEN(3) + 1), TOKEN_LEN(3));
}

/* The scanner regex the README publishes, read from the README itself so the
 * two cannot drift apart. */
static char *readme_regex(void)
{
        const char *dir = getenv("APIKEYD_SRCDIR");
        char path[4096], line[1024];
        FILE *f;
        char *found = NULL;

        snprintf(path, sizeof(path), "%s/README.md", dir ? dir : ".");
        f = fopen(path, "re");
        assert_non_null(f);
        while (fgets(line, sizeof(line), f)) {
                char *p = strstr(line, "`\\b[a-z]{2,8}_");
                if (p) {
                        char *end = strchr(p + 1, '`');
                        assert_non_null(end);
                        found = strndup(p + 1, (size_t)(end - p - 1));
                        break;
                }
        }
        fclose(f);
        assert_non_null(found);
        return found;
}

static void test_scanner_regex(void **state)
{
        char *re_text = readme_regex();
        regex_t re;
        char text[256];
        regmatch_t m;
        const char *prefixes[] = {"apk", "ab", "abcdefgh"};

        assert_string_equal(re_text, "\\b[a-z]{2,8}_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}\\b");
        assert_int_equal(regcomp(&re, re_text, REG_EXTENDED), 0);
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++) {
                const char *tok = make_token(prefixes[i]);
                snprintf(text, sizeof(text), "export KEY=\"%s\" # leaked", tok);
                assert_int_equal(regexec(&re, text, 1, &m, 0), 0);
                assert_int_equal(m.rm_eo - m.rm_so, (regoff_t)strlen(tok));
                assert_memory_equal(text + m.rm_so, tok, strlen(tok));
        }
        /* Not a token: too short a secret, or glued to other word characters. */
        assert_int_not_equal(regexec(&re, "apk_7Hq2LmX9aB3z_abc", 1, &m, 0), 0);
        snprintf(text, sizeof(text), "%sX", make_token("apk"));
        assert_int_not_equal(regexec(&re, text, 1, &m, 0), 0);
        regfree(&re);
        free(re_text);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_known_vector),
            cmocka_unit_test(test_crc32_matches_zlib),
            cmocka_unit_test(test_every_single_change_rejected),
            cmocka_unit_test(test_checksum_catches_transpositions),
            cmocka_unit_test(test_wrong_lengths),
            cmocka_unit_test(test_prefixes),
            cmocka_unit_test(test_non_base62),
            cmocka_unit_test(test_nul_and_newline),
            cmocka_unit_test(test_one_mebibyte),
            cmocka_unit_test(test_error_strings),
            cmocka_unit_test(test_format_refuses_bad_parts),
            cmocka_unit_test(test_scanner_regex),
        };
        return cmocka_run_group_tests_name("token", tests, NULL, NULL);
}
