/* SPDX-License-Identifier: MIT */
/* Unit tests of the stored form of audit events (apikeyd/store/audit_record.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit_record.h"

static const struct audit_event full = {
    .seq = 42, /* not stored: the key of the event */
    .time = UINT64_C(1795000000123456),
    .actor = "uid=0(root)",
    .action = "create",
    .key_id = "7Hq2LmX9aB3z",
    .result = "ok",
    .detail = "deploy",
};

static void test_round_trip(void **state)
{
        struct audit_event ev, bare = full;
        void *buf = NULL;
        size_t len = 0;

        assert_int_equal(audit_record_encode(&full, &buf, &len), 0);
        assert_int_equal(audit_record_decode(buf, len, &ev), 0);
        assert_int_equal(ev.seq, 0);
        assert_true(ev.time == full.time);
        assert_string_equal(ev.actor, full.actor);
        assert_string_equal(ev.action, full.action);
        assert_string_equal(ev.key_id, full.key_id);
        assert_string_equal(ev.result, full.result);
        assert_string_equal(ev.detail, full.detail);
        free(buf);

        /* The optional strings absent, and read back as absent. */
        bare.key_id = NULL;
        bare.detail = "";
        assert_int_equal(audit_record_encode(&bare, &buf, &len), 0);
        assert_int_equal(audit_record_decode(buf, len, &ev), 0);
        assert_null(ev.key_id);
        assert_null(ev.detail);
        free(buf);
}

/* Which retention an event is kept under is where the keystore puts it, not in its bytes. */
static void test_admin_not_encoded(void **state)
{
        struct audit_event ev, admin = full;
        void *buf = NULL, *admin_buf = NULL;
        size_t len = 0, admin_len = 0;

        admin.admin = true;
        assert_int_equal(audit_record_encode(&full, &buf, &len), 0);
        assert_int_equal(audit_record_encode(&admin, &admin_buf, &admin_len), 0);
        assert_int_equal(len, admin_len);
        assert_memory_equal(buf, admin_buf, len);
        ev.admin = true;
        assert_int_equal(audit_record_decode(admin_buf, admin_len, &ev), 0);
        assert_false(ev.admin);
        free(buf);
        free(admin_buf);
}

static void test_encode_refusals(void **state)
{
        struct audit_event ev = full;
        char *big = malloc(AUDIT_STRING_MAX + 2);
        void *buf = NULL;
        size_t len = 0;

        assert_non_null(big);
        ev.actor = NULL;
        assert_int_equal(audit_record_encode(&ev, &buf, &len), -EINVAL);
        ev = full;
        ev.result = "";
        assert_int_equal(audit_record_encode(&ev, &buf, &len), -EINVAL);
        ev = full;
        memset(big, 'x', AUDIT_STRING_MAX + 1);
        big[AUDIT_STRING_MAX + 1] = '\0';
        ev.detail = big;
        assert_int_equal(audit_record_encode(&ev, &buf, &len), -EINVAL);
        big[AUDIT_STRING_MAX] = '\0'; /* at the limit: stored */
        assert_int_equal(audit_record_encode(&ev, &buf, &len), 0);
        free(buf);
        free(big);
}

/* Every way a stored event can be damaged is refused, never read past. */
static void test_decode_refusals(void **state)
{
        struct audit_event ev;
        uint8_t *buf = NULL, *copy;
        size_t len = 0;

        assert_int_equal(audit_record_encode(&full, (void **)&buf, &len), 0);
        copy = malloc(len + 1);
        assert_non_null(copy);

        assert_int_equal(audit_record_decode(buf, 0, &ev), -EBADMSG);
        /* Cut at every length. */
        for (size_t n = 0; n < len; n++) {
                memcpy(copy, buf, n);
                assert_int_equal(audit_record_decode(copy, n, &ev), -EBADMSG);
        }
        /* A byte too many. */
        memcpy(copy, buf, len);
        copy[len] = 0;
        assert_int_equal(audit_record_decode(copy, len + 1, &ev), -EBADMSG);
        /* Another version. */
        memcpy(copy, buf, len);
        copy[0] = 2;
        assert_int_equal(audit_record_decode(copy, len, &ev), -EBADMSG);
        /* A NUL inside the actor ("uid=0(root)" starts after the version,
         * the time and its length), and a terminator that is not one. */
        memcpy(copy, buf, len);
        copy[1 + 8 + 2 + 3] = '\0';
        assert_int_equal(audit_record_decode(copy, len, &ev), -EBADMSG);
        memcpy(copy, buf, len);
        copy[1 + 8 + 2 + strlen(full.actor)] = 'x';
        assert_int_equal(audit_record_decode(copy, len, &ev), -EBADMSG);
        /* A length longer than what is left. */
        memcpy(copy, buf, len);
        copy[1 + 8] = 0xff;
        assert_int_equal(audit_record_decode(copy, len, &ev), -EBADMSG);
        free(copy);
        free(buf);

        /* A required string stored empty. */
        static const uint8_t no_action[] = {1, 0, 0, 0, 0, 0, 0, 0, 0,   1, 0, 'a', 0,
                                            0, 0, 0, 0, 0, 0, 1, 0, 'r', 0, 0, 0,   0};
        assert_int_equal(audit_record_decode(no_action, sizeof(no_action), &ev), -EBADMSG);
}

/* A string longer than the encoder writes is damage too, whatever the bytes. */
static void test_decode_refuses_overlong_string(void **state)
{
        /* version, time; actor "a" (2 + 1 + 1), action of n bytes (2 + n + 1),
         * key_id absent (2 + 1), result "r" (4), detail absent (3) */
        size_t n = AUDIT_STRING_MAX + 1, len = 9 + 4 + (n + 3) + 3 + 4 + 3;
        uint8_t *b = calloc(1, len), *p = b;
        struct audit_event ev;

        assert_non_null(b);
        *p++ = 1;
        p += 8;
        *p++ = 1, *p++ = 0, *p++ = 'a', *p++ = 0;
        *p++ = (uint8_t)(n & 0xff), *p++ = (uint8_t)(n >> 8);
        memset(p, 'x', n);
        p += n + 1;
        *p++ = 0, *p++ = 0, *p++ = 0;
        *p++ = 1, *p++ = 0, *p++ = 'r', *p++ = 0;
        *p++ = 0, *p++ = 0, *p++ = 0;
        assert_int_equal((size_t)(p - b), len);
        assert_int_equal(audit_record_decode(b, len, &ev), -EBADMSG);
        free(b);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_admin_not_encoded),
            cmocka_unit_test(test_encode_refusals),
            cmocka_unit_test(test_decode_refusals),
            cmocka_unit_test(test_decode_refuses_overlong_string),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
