/* SPDX-License-Identifier: MIT */
/* Unit tests of the stored forms of a key's usage history (apikeyd/store/usage_record.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "usage_record.h"

static const struct usage_entry full = {
    .at = UINT64_C(1795000000123456),
    .code = "OUT_OF_SCOPE",
    .service = "sshd",
    .rhost = "2001:db8::7",
    .tty = "pts/3",
};

static void test_entry_round_trip(void **state)
{
        struct usage_entry e, bare = {.at = 7, .code = "VALID"};
        void *buf = NULL;
        size_t len = 0;

        assert_int_equal(usage_entry_encode(&full, &buf, &len), 0);
        assert_int_equal(usage_entry_decode(buf, len, &e), 0);
        assert_true(e.at == full.at);
        assert_string_equal(e.code, full.code);
        assert_string_equal(e.service, full.service);
        assert_string_equal(e.rhost, full.rhost);
        assert_string_equal(e.tty, full.tty);
        free(buf);

        /* Absent strings come back absent, not empty. */
        assert_int_equal(usage_entry_encode(&bare, &buf, &len), 0);
        assert_int_equal(len, 9 + 4 * 3 + strlen("VALID"));
        assert_int_equal(usage_entry_decode(buf, len, &e), 0);
        assert_true(e.at == 7);
        assert_string_equal(e.code, "VALID");
        assert_null(e.service);
        assert_null(e.rhost);
        assert_null(e.tty);
        free(buf);
}

static void test_entry_encode_refusals(void **state)
{
        char big[USAGE_STRING_MAX + 2];
        struct usage_entry e = full;
        void *buf = NULL;
        size_t len = 0;

        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        e.rhost = big; /* one byte too long */
        assert_int_equal(usage_entry_encode(&e, &buf, &len), -EINVAL);
        big[USAGE_STRING_MAX] = '\0'; /* the longest */
        assert_int_equal(usage_entry_encode(&e, &buf, &len), 0);
        free(buf);
        e = full;
        e.code = NULL;
        assert_int_equal(usage_entry_encode(&e, &buf, &len), -EINVAL);
        e.code = "";
        assert_int_equal(usage_entry_encode(&e, &buf, &len), -EINVAL);
}

static void test_entry_decode_refusals(void **state)
{
        struct usage_entry e;
        uint8_t *buf = NULL;
        size_t len = 0;

        assert_int_equal(usage_entry_encode(&full, (void **)&buf, &len), 0);
        /* Every truncation, and one byte too many. */
        for (size_t n = 0; n < len; n++)
                assert_int_equal(usage_entry_decode(buf, n, &e), -EBADMSG);
        uint8_t *more = malloc(len + 1);
        memcpy(more, buf, len);
        more[len] = 0;
        assert_int_equal(usage_entry_decode(more, len + 1, &e), -EBADMSG);
        free(more);
        /* Another version. */
        buf[0] = 2;
        assert_int_equal(usage_entry_decode(buf, len, &e), -EBADMSG);
        buf[0] = 1;
        /* A string's terminator gone. */
        buf[9 + 2 + strlen(full.code)] = 'x';
        assert_int_equal(usage_entry_decode(buf, len, &e), -EBADMSG);
        buf[9 + 2 + strlen(full.code)] = '\0';
        /* A NUL inside a string. */
        buf[9 + 2 + 1] = '\0';
        assert_int_equal(usage_entry_decode(buf, len, &e), -EBADMSG);
        free(buf);

        /* An empty code. */
        const uint8_t empty_code[] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                      0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
        assert_int_equal(usage_entry_decode(empty_code, sizeof(empty_code), &e), -EBADMSG);
}

static void test_sources_round_trip(void **state)
{
        struct usage_source in[USAGE_SOURCES_MAX + 1] = {{0}}, out[USAGE_SOURCES_MAX];
        char names[USAGE_SOURCES_MAX][16];
        void *buf = NULL;
        size_t len = 0, n = 99;

        assert_int_equal(usage_sources_encode(in, 0, &buf, &len), 0);
        assert_int_equal(usage_sources_decode(buf, len, out, &n), 0);
        assert_int_equal(n, 0);
        free(buf);

        for (size_t i = 0; i < USAGE_SOURCES_MAX; i++) {
                snprintf(names[i], sizeof(names[i]), "192.0.2.%zu", i);
                in[i] =
                    (struct usage_source){.seen_at = 1000 + i,
                                          .kind = i % 2 ? USAGE_SOURCE_SERVICE : USAGE_SOURCE_RHOST,
                                          .name = i == 1 ? "" : names[i]};
        }
        assert_int_equal(usage_sources_encode(in, USAGE_SOURCES_MAX, &buf, &len), 0);
        assert_int_equal(usage_sources_decode(buf, len, out, &n), 0);
        assert_int_equal(n, USAGE_SOURCES_MAX);
        for (size_t i = 0; i < n; i++) {
                assert_true(out[i].seen_at == in[i].seen_at);
                assert_int_equal(out[i].kind, in[i].kind);
                assert_string_equal(out[i].name, in[i].name);
        }
        free(buf);
        /* One too many; an empty host; an unknown kind. */
        in[USAGE_SOURCES_MAX] = in[0];
        assert_int_equal(usage_sources_encode(in, USAGE_SOURCES_MAX + 1, &buf, &len), -EINVAL);
        in[0].name = "";
        assert_int_equal(usage_sources_encode(in, 1, &buf, &len), -EINVAL);
        in[0].kind = 'x';
        in[0].name = "a";
        assert_int_equal(usage_sources_encode(in, 1, &buf, &len), -EINVAL);
}

static void test_sources_decode_refusals(void **state)
{
        struct usage_source s[USAGE_SOURCES_MAX];
        /* version 1, one source: seen_at 5, kind 'r', "h" */
        uint8_t b[] = {1, 1, 5, 0, 0, 0, 0, 0, 0, 0, 'r', 1, 0, 'h', 0};
        size_t n;

        assert_int_equal(usage_sources_decode(b, sizeof(b), s, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(s[0].name, "h");
        for (size_t len = 0; len < sizeof(b); len++)
                assert_int_equal(usage_sources_decode(b, len, s, &n), -EBADMSG);
        b[10] = 'q'; /* kind */
        assert_int_equal(usage_sources_decode(b, sizeof(b), s, &n), -EBADMSG);
        b[10] = 'r';
        b[1] = USAGE_SOURCES_MAX + 1; /* count beyond the bound */
        assert_int_equal(usage_sources_decode(b, sizeof(b), s, &n), -EBADMSG);
        b[1] = 2; /* more sources than bytes */
        assert_int_equal(usage_sources_decode(b, sizeof(b), s, &n), -EBADMSG);
        b[1] = 0; /* fewer */
        assert_int_equal(usage_sources_decode(b, sizeof(b), s, &n), -EBADMSG);
        /* An empty host name. */
        const uint8_t empty[] = {1, 1, 5, 0, 0, 0, 0, 0, 0, 0, 'r', 0, 0, 0};
        assert_int_equal(usage_sources_decode(empty, sizeof(empty), s, &n), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_entry_round_trip),
            cmocka_unit_test(test_entry_encode_refusals),
            cmocka_unit_test(test_entry_decode_refusals),
            cmocka_unit_test(test_sources_round_trip),
            cmocka_unit_test(test_sources_decode_refusals),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
