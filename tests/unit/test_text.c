/* SPDX-License-Identifier: MIT */
/* Unit tests of building texts by appending (common/text.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "text.h"

static void test_uint_text_matches_printf(void **state)
{
        static const unsigned long values[] = {0, 1, 9, 10, 99, 100, 65534, 4294967295UL, ~0UL};

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                char want[32], buf[24];

                snprintf(want, sizeof(want), "%lu", values[i]);
                assert_string_equal(uint_text(values[i], buf), want);
        }
}

static void test_pieces_are_joined(void **state)
{
        char buf[64];
        struct text t;

        text_init(&t, buf, sizeof(buf));
        assert_string_equal(buf, "");
        text_add(&t, "uid=");
        text_add_uint(&t, 1000);
        text_add(&t, NULL);
        text_add(&t, " pid=");
        text_add_uint(&t, 0);
        assert_string_equal(buf, "uid=1000 pid=0");
        assert_int_equal(t.len, strlen(buf));
}

/* Cut as snprintf cuts: the longest prefix that fits, always terminated,
 * and nothing appended after the text is full. */
static void test_text_is_cut_like_snprintf(void **state)
{
        for (size_t size = 1; size <= 12; size++) {
                char buf[16], want[16];
                struct text t;

                memset(buf, 'x', sizeof(buf));
                text_init(&t, buf, size);
                text_add(&t, "abc");
                text_add_uint(&t, 12345);
                text_add(&t, "def");
                snprintf(want, size, "abc%udef", 12345u);
                assert_string_equal(buf, want);
                assert_int_equal(t.len, strlen(want));
                assert_int_equal(buf[size], 'x'); /* not a byte past the end */
        }
}

static void test_str_copy_cuts_and_terminates(void **state)
{
        char buf[4] = "zzz";

        assert_int_equal(str_copy(buf, sizeof(buf), "abcdef"), 3);
        assert_string_equal(buf, "abc");
        assert_int_equal(str_copy(buf, sizeof(buf), NULL), 0);
        assert_string_equal(buf, "");
        assert_int_equal(str_copy(buf, 1, "a"), 0);
        assert_string_equal(buf, "");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_uint_text_matches_printf),
            cmocka_unit_test(test_pieces_are_joined),
            cmocka_unit_test(test_text_is_cut_like_snprintf),
            cmocka_unit_test(test_str_copy_cuts_and_terminates),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
