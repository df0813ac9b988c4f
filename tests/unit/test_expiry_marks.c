/* SPDX-License-Identifier: MIT */
/* Unit tests of the stored form of the expiry warnings given (apikeyd/store/expiry_marks.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "expiry_marks.h"

static void test_round_trip(void **state)
{
        const struct expiry_mark in[] = {
            {"7Hq2LmX9aB3z", UINT64_C(1795000000123456), UINT64_C(604800000000)},
            {"cE2SttEhy4jD", 1, UINT64_MAX},
        };
        struct expiry_mark *out = NULL;
        void *buf = NULL;
        size_t len = 0, n = 0;

        assert_int_equal(expiry_marks_encode(in, 2, &buf, &len), 0);
        assert_int_equal(len, 1 + 2 * EXPIRY_MARK_SIZE);
        assert_int_equal(expiry_marks_decode(buf, len, &out, &n), 0);
        assert_int_equal(n, 2);
        for (size_t i = 0; i < n; i++) {
                assert_string_equal(out[i].id, in[i].id);
                assert_true(out[i].expires_at == in[i].expires_at);
                assert_true(out[i].warned == in[i].warned);
        }
        free(out);
        free(buf);

        /* None at all. */
        assert_int_equal(expiry_marks_encode(in, 0, &buf, &len), 0);
        assert_int_equal(len, 1);
        out = (struct expiry_mark *)1;
        assert_int_equal(expiry_marks_decode(buf, len, &out, &n), 0);
        assert_int_equal(n, 0);
        assert_null(out);
        free(buf);
}

static void test_refusals(void **state)
{
        struct expiry_mark bad = {"not an id!!!", 1, 1}, *out = NULL;
        const struct expiry_mark good = {"7Hq2LmX9aB3z", 1, 1};
        uint8_t *buf = NULL;
        void *b2 = NULL;
        size_t len = 0, n = 0;

        assert_int_equal(expiry_marks_encode(&bad, 1, &b2, &len), -EINVAL);
        assert_int_equal(expiry_marks_encode(&good, 1, (void **)&buf, &len), 0);
        /* Every truncation but the empty set (length 1). */
        for (size_t l = 0; l < len; l++)
                if (l != 1)
                        assert_int_equal(expiry_marks_decode(buf, l, &out, &n), -EBADMSG);
        buf[0] = 2; /* another version */
        assert_int_equal(expiry_marks_decode(buf, len, &out, &n), -EBADMSG);
        buf[0] = 1;
        buf[5] = '/'; /* not base62 */
        assert_int_equal(expiry_marks_decode(buf, len, &out, &n), -EBADMSG);
        free(buf);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_refusals),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
