/* SPDX-License-Identifier: MIT */
/* Unit tests of Varlink framing and call decoding (common/varlink_wire.c, common/varlink.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "varlink.h"

static void feed(struct varlink_buffer *b, const char *data, size_t n)
{
        char *p;
        size_t room;

        assert_int_equal(varlink_buffer_reserve(b, n, &p, &room), 0);
        assert_true(room >= n);
        memcpy(p, data, n);
        varlink_buffer_commit(b, n);
}

static void test_fresh_buffer_has_nothing(void **state)
{
        struct varlink_buffer b;
        const char *msg;
        size_t len;

        varlink_buffer_init(&b, 0, false);
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 0);
        assert_false(varlink_buffer_pending(&b));
        varlink_buffer_done(&b);
}

static void test_messages_split_and_joined(void **state)
{
        const char stream[] = "{\"a\":1}\0{\"b\":2}\0{\"c\":";
        struct varlink_buffer b;
        const char *msg;
        size_t len;

        varlink_buffer_init(&b, 0, false);
        /* One byte at a time: a message appears only with its NUL. */
        for (size_t i = 0; i < 6; i++) {
                feed(&b, stream + i, 1);
                assert_int_equal(varlink_buffer_next(&b, &msg, &len), 0);
        }
        feed(&b, stream + 6, sizeof(stream) - 1 - 6);
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 1);
        assert_int_equal(len, 7);
        assert_string_equal(msg, "{\"a\":1}");
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 1);
        assert_string_equal(msg, "{\"b\":2}");
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 0);
        assert_true(varlink_buffer_pending(&b));
        feed(&b, "3}", 3); /* with its NUL */
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 1);
        assert_string_equal(msg, "{\"c\":3}");
        assert_false(varlink_buffer_pending(&b));
        varlink_buffer_done(&b);
}

static void test_oversize_refused_before_it_is_complete(void **state)
{
        struct varlink_buffer b;
        char big[2000];
        const char *msg;
        size_t len;

        memset(big, 'x', sizeof(big));
        varlink_buffer_init(&b, 1024, false);
        feed(&b, big, 1024);
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 0);
        feed(&b, big, 1);
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), -EMSGSIZE);
        varlink_buffer_done(&b);

        /* Exactly the limit, with its NUL, is fine. */
        varlink_buffer_init(&b, 1024, false);
        feed(&b, big, 1024);
        feed(&b, "", 1);
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 1);
        assert_int_equal(len, 1024);
        varlink_buffer_done(&b);
}

static void test_secret_buffer_erases_what_was_read(void **state)
{
        const char token[] = "apk_7Hq2LmX9aB3z_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg0fGyu7";
        struct varlink_buffer b;
        const char *msg;
        size_t len;

        varlink_buffer_init(&b, 0, true);
        feed(&b, token, sizeof(token));
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 1);
        assert_string_equal(msg, token);
        /* Asking for the next message frees the last one: it is erased. */
        assert_int_equal(varlink_buffer_next(&b, &msg, &len), 0);
        assert_null(memmem(b.data, b.alloc, "0123456789ABCDEF", 16));
        /* A partial message survives the buffer growing under it. */
        feed(&b, token, sizeof(token) - 1);
        char big[9000];
        memset(big, 'y', sizeof(big));
        feed(&b, big, sizeof(big));
        assert_non_null(memmem(b.data, b.size, "0123456789ABCDEF", 16));
        varlink_buffer_done(&b);
        assert_null(b.data);
}

static int parse(const char *s, struct varlink_call *c)
{
        return varlink_call_parse(s, strlen(s), c);
}

static void test_call_parse(void **state)
{
        struct varlink_call c;

        assert_int_equal(parse("{\"method\":\"a.B\",\"parameters\":{\"x\":1},\"more\":true}", &c),
                         0);
        assert_string_equal(c.method, "a.B");
        assert_true(c.more);
        assert_false(c.oneway);
        assert_int_equal(json_integer_value(json_object_get(c.parameters, "x")), 1);
        varlink_call_done(&c);

        /* No parameters, or null: an empty object. Unknown members are ignored. */
        assert_int_equal(parse("{\"method\":\"a.B\",\"parameters\":null,\"x-extra\":[]}", &c), 0);
        assert_true(json_is_object(c.parameters));
        assert_int_equal(json_object_size(c.parameters), 0);
        varlink_call_done(&c);

        const char *bad[] = {
            "",
            "[]",
            "\"a.B\"",
            "{}",
            "{\"method\":1}",
            "{\"method\":\"\"}",
            "{\"method\":\"a.B\",\"parameters\":[]}",
            "{\"method\":\"a.B\",\"oneway\":\"yes\"}",
            "{\"method\":\"a.B\",\"method\":\"c.D\"}",
            "{\"method\":\"a.B\"",
            "{\"method\":\"a.\xff\"}",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(parse(bad[i], &c), -EBADMSG);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_fresh_buffer_has_nothing),
            cmocka_unit_test(test_messages_split_and_joined),
            cmocka_unit_test(test_oversize_refused_before_it_is_complete),
            cmocka_unit_test(test_secret_buffer_erases_what_was_read),
            cmocka_unit_test(test_call_parse),
        };
        return cmocka_run_group_tests_name("varlink", tests, NULL, NULL);
}
