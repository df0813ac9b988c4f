/* SPDX-License-Identifier: MIT */
/* Unit tests of the allocation-free JSON reader and writer (common/json_scan.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "json_scan.h"

static void scan(struct json_scan *s, const char *text)
{
        json_scan_init(s, text, strlen(text));
}

/* The single string value of `text`, or the error reading it gave. */
static int one_string(const char *text, char *buf, size_t size)
{
        struct json_scan s;
        int r;

        scan(&s, text);
        r = json_scan_string(&s, buf, size, NULL);
        return r < 0 ? r : json_scan_finish(&s);
}

static void test_object_members_in_order(void **state)
{
        struct json_scan s;
        char name[16], value[16];
        bool b;

        scan(&s, " { \"a\" : \"x\" ,\"b\":true,\"c\":[1,{\"d\":null}],\"e\":false } ");
        assert_int_equal(json_scan_peek(&s), JSON_SCAN_OBJECT);
        assert_int_equal(json_scan_object_begin(&s), 0);
        assert_int_equal(json_scan_object_next(&s, name, sizeof(name)), 1);
        assert_string_equal(name, "a");
        assert_int_equal(json_scan_string(&s, value, sizeof(value), NULL), 0);
        assert_string_equal(value, "x");
        assert_int_equal(json_scan_object_next(&s, name, sizeof(name)), 1);
        assert_string_equal(name, "b");
        assert_int_equal(json_scan_bool(&s, &b), 0);
        assert_true(b);
        assert_int_equal(json_scan_object_next(&s, name, sizeof(name)), 1);
        assert_string_equal(name, "c");
        assert_int_equal(json_scan_skip(&s), 0);
        assert_int_equal(json_scan_object_next(&s, name, sizeof(name)), 1);
        assert_string_equal(name, "e");
        assert_int_equal(json_scan_bool(&s, &b), 0);
        assert_false(b);
        assert_int_equal(json_scan_object_next(&s, name, sizeof(name)), 0);
        assert_int_equal(json_scan_finish(&s), 0);
}

/* Names looked up in place, escaped or not; texts read with their printable mark. */
static void test_members_by_name(void **state)
{
        static const char *const names[] = {"tok", "token", "user"};
        struct json_scan s;
        char v[8];
        size_t i, len;
        bool printable;

        scan(&s, "{\"token\":\"ab\",\"t\\u006fk\":\"a\\u00e9\",\"us\" :\"\\u0001\","
                 "\"toke\":\"x\",\"a-name-longer-than-any-buffer-here-by-far\":\"\u00e9\"}");
        assert_int_equal(json_scan_object_begin(&s), 0);
        assert_int_equal(json_scan_member(&s, names, 3, &i), 1);
        assert_int_equal(i, 1);
        assert_int_equal(json_scan_text(&s, v, sizeof(v), &len, &printable), 0);
        assert_string_equal(v, "ab");
        assert_int_equal(len, 2);
        assert_true(printable);
        assert_int_equal(json_scan_member(&s, names, 3, &i), 1);
        assert_int_equal(i, 0);
        assert_int_equal(json_scan_text(&s, v, sizeof(v), &len, &printable), 0);
        assert_string_equal(v, "a\xc3\xa9");
        assert_false(printable);
        assert_int_equal(json_scan_member(&s, names, 3, &i), 1);
        assert_int_equal(i, 3);
        assert_int_equal(json_scan_text(&s, v, sizeof(v), &len, &printable), 0);
        assert_string_equal(v, "\x01");
        assert_false(printable);
        assert_int_equal(json_scan_member(&s, names, 3, &i), 1);
        assert_int_equal(i, 3);
        assert_int_equal(json_scan_string_is(&s, "x"), 1);
        assert_int_equal(json_scan_member(&s, names, 3, &i), 1);
        assert_int_equal(i, 3);
        assert_int_equal(json_scan_string_is(&s, "x"), 0);
        assert_int_equal(json_scan_member(&s, names, 3, &i), 0);
        assert_int_equal(json_scan_finish(&s), 0);
        /* A bad name, a bad escape in a value: refused as the other calls refuse them. */
        scan(&s, "{\"to\x01ken\":1}");
        assert_int_equal(json_scan_object_begin(&s), 0);
        assert_int_equal(json_scan_member(&s, names, 3, &i), -EBADMSG);
        scan(&s, "\"\\u0061\\x\"");
        assert_int_equal(json_scan_string_is(&s, "a"), -EBADMSG);
        /* Equal once unescaped; a longer string that starts alike is not. */
        scan(&s, "\"\\u0061b\" \"ab\\\"\" \"abc\"");
        assert_int_equal(json_scan_string_is(&s, "ab"), 1);
        assert_int_equal(json_scan_string_is(&s, "ab"), 0);
        assert_int_equal(json_scan_string_is(&s, "ab"), 0);
        /* DEL is JSON as it is, but not printable text. */
        scan(&s, "\"a\x7f\"");
        assert_int_equal(json_scan_text(&s, v, sizeof(v), &len, &printable), 0);
        assert_string_equal(v, "a\x7f");
        assert_false(printable);
        scan(&s, "\"0123456789\"");
        assert_int_equal(json_scan_text(&s, v, sizeof(v), &len, &printable), -ENOBUFS);
}

static void test_arrays(void **state)
{
        struct json_scan s;
        char v[8];

        scan(&s, "[\"a\", \"b\"]");
        assert_int_equal(json_scan_array_begin(&s), 0);
        assert_int_equal(json_scan_array_next(&s), 1);
        assert_int_equal(json_scan_string(&s, v, sizeof(v), NULL), 0);
        assert_string_equal(v, "a");
        assert_int_equal(json_scan_array_next(&s), 1);
        assert_int_equal(json_scan_string(&s, v, sizeof(v), NULL), 0);
        assert_string_equal(v, "b");
        assert_int_equal(json_scan_array_next(&s), 0);
        assert_int_equal(json_scan_finish(&s), 0);

        scan(&s, "[]");
        assert_int_equal(json_scan_array_begin(&s), 0);
        assert_int_equal(json_scan_array_next(&s), 0);

        /* A trailing comma is no element. */
        scan(&s, "[\"a\",]");
        assert_int_equal(json_scan_array_begin(&s), 0);
        assert_int_equal(json_scan_array_next(&s), 1);
        assert_int_equal(json_scan_string(&s, v, sizeof(v), NULL), 0);
        assert_int_equal(json_scan_array_next(&s), 1);
        assert_int_equal(json_scan_string(&s, v, sizeof(v), NULL), -EBADMSG);
}

static void test_escapes_and_utf8(void **state)
{
        char v[32];
        size_t len;
        struct json_scan s;

        assert_int_equal(one_string("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", v, sizeof(v)), 0);
        assert_string_equal(v, "\"\\/\b\f\n\r\t");
        assert_int_equal(one_string("\"\\u00e9\\u20AC\\ud83d\\ude00\"", v, sizeof(v)), 0);
        assert_string_equal(v, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
        assert_int_equal(one_string("\"caf\xc3\xa9\"", v, sizeof(v)), 0);
        assert_string_equal(v, "caf\xc3\xa9");
        scan(&s, "\"a\\u0062c\"");
        assert_int_equal(json_scan_string(&s, v, sizeof(v), &len), 0);
        assert_int_equal(len, 3);
        assert_string_equal(v, "abc");
}

static void test_strings_jansson_refuses_are_refused(void **state)
{
        static const char *const bad[] = {
            "\"\\u0000\"",          /* no NUL inside a string */
            "\"\\ud800\"",          /* lone high surrogate */
            "\"\\udc00\"",          /* lone low surrogate */
            "\"\\ud800\\u0041\"",   /* high surrogate without a low one */
            "\"\\x41\"",            /* no such escape */
            "\"\\u12g4\"",          /* not hex */
            "\"a\tb\"",             /* raw control character */
            "\"\xc0\xaf\"",         /* overlong */
            "\"\xed\xa0\x80\"",     /* a surrogate in UTF-8 */
            "\"\xf4\x90\x80\x80\"", /* beyond U+10FFFF */
            "\"\xe2\x82\"",         /* cut short */
            "\"\x80\"",             /* a lone continuation byte */
            "\"open",               /* unterminated */
        };
        char v[32];

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(one_string(bad[i], v, sizeof(v)), -EBADMSG);
}

static void test_too_long_for_the_buffer(void **state)
{
        char v[4];

        assert_int_equal(one_string("\"abc\"", v, sizeof(v)), 0);
        /* What fits of whole characters is kept, for callers that cut. */
        assert_int_equal(one_string("\"abcd\"", v, sizeof(v)), -ENOBUFS);
        assert_string_equal(v, "abc");
        assert_int_equal(one_string("\"ab\\u00e9\"", v, sizeof(v)), -ENOBUFS);
        assert_string_equal(v, "ab");
        assert_int_equal(one_string("\"a\xc3\xa9z\"", v, sizeof(v)), -ENOBUFS);
        assert_string_equal(v, "a\xc3\xa9");
        assert_int_equal(one_string("\"\\u0061bcdef\"", v, sizeof(v)), -ENOBUFS);
        assert_string_equal(v, "abc");
}

static void test_numbers_are_checked_when_skipped(void **state)
{
        static const char *const good[] = {"0", "-0", "12", "-1.5", "1e9", "2E-3", "0.5e+1"};
        static const char *const bad[] = {"01", "+1", "1.", ".5", "1e", "-", "1.e3", "0x1"};
        struct json_scan s;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
                scan(&s, good[i]);
                assert_int_equal(json_scan_skip(&s), 0);
                assert_int_equal(json_scan_finish(&s), 0);
        }
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                scan(&s, bad[i]);
                assert_true(json_scan_skip(&s) < 0 || json_scan_finish(&s) < 0);
        }
}

static void test_structure_errors(void **state)
{
        static const char *const bad[] = {
            "{\"a\" 1}", "{\"a\":1,}", "{a:1}", "{\"a\":1", "[1 2]", "tru", "nul", "{} {}", "",
        };
        struct json_scan s;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                scan(&s, bad[i]);
                assert_true(json_scan_skip(&s) < 0 || json_scan_finish(&s) < 0);
        }
}

static void test_nesting_is_bounded(void **state)
{
        char deep[2 * (JSON_SCAN_MAX_DEPTH + 1) + 1];
        struct json_scan s;

        for (size_t n = JSON_SCAN_MAX_DEPTH; n <= JSON_SCAN_MAX_DEPTH + 1; n++) {
                memset(deep, '[', n);
                memset(deep + n, ']', n);
                deep[2 * n] = '\0';
                scan(&s, deep);
                assert_int_equal(json_scan_skip(&s), n <= JSON_SCAN_MAX_DEPTH ? 0 : -EBADMSG);
        }
}

static void test_writer_escapes(void **state)
{
        char buf[64];
        struct json_out o;

        json_out_init(&o, buf, sizeof(buf));
        json_out_raw(&o, "{", 1);
        json_out_name(&o, "k", true);
        json_out_string(&o, "a\"b\\c\n\x01\x7f\xc3\xa9");
        json_out_name(&o, "n", false);
        json_out_lit(&o, "1}");
        assert_int_equal(json_out_done(&o),
                         (int)strlen("{\"k\":\"a\\\"b\\\\c\\n\\u0001\x7f\xc3\xa9\",\"n\":1}"));
        assert_memory_equal(buf, "{\"k\":\"a\\\"b\\\\c\\n\\u0001\x7f\xc3\xa9\",\"n\":1}",
                            (size_t)json_out_done(&o));
}

/*
 * Strings are scanned and written eight bytes at a time: a byte that needs
 * care must be found at every offset of a word, in strings of every length
 * around the word size, both ways.
 */
static void test_special_byte_at_every_offset(void **state)
{
        static const char special[] = {'"', '\\', '\n', '\x01', '\x1f'};

        for (size_t len = 1; len <= 40; len++)
                for (size_t at = 0; at < len; at++)
                        for (size_t k = 0; k < sizeof(special); k++) {
                                char str[48], out[128], back[48];
                                struct json_out o;
                                struct json_scan s;
                                size_t n;
                                int r;

                                memset(str, 'x', len);
                                str[len] = '\0';
                                str[at] = special[k];
                                json_out_init(&o, out, sizeof(out));
                                json_out_string(&o, str);
                                r = json_out_done(&o);
                                assert_true(r > 0);
                                /* The escape is where the byte was, and nothing else changed. */
                                assert_memory_equal(out + 1, str, at);
                                assert_int_equal(out[1 + at], '\\');
                                assert_int_equal(out[r - 1], '"');
                                json_scan_init(&s, out, (size_t)r);
                                assert_int_equal(json_scan_string(&s, back, sizeof(back), &n), 0);
                                assert_int_equal(n, len);
                                assert_string_equal(back, str);

                                /* Unescaped, the same byte inside the quotes is refused
                                 * (a quote ends the string early instead). */
                                out[0] = '"';
                                memcpy(out + 1, str, len);
                                out[len + 1] = '"';
                                json_scan_init(&s, out, len + 2);
                                r = json_scan_string(&s, back, sizeof(back), &n);
                                if (special[k] == '"')
                                        assert_true(r == 0 && n == at);
                                else
                                        assert_int_equal(r, -EBADMSG);
                        }
}

static void test_writer_overflow_is_remembered(void **state)
{
        char buf[4];
        struct json_out o;

        json_out_init(&o, buf, sizeof(buf));
        json_out_lit(&o, "abcde");
        json_out_lit(&o, "x"); /* would fit, but the output is already cut */
        assert_int_equal(json_out_done(&o), -ENOBUFS);

        /* A string cut at a plain byte, at an escape, and at the closing quote. */
        static const char *const cut[] = {"abcde", "a\"", "abc"};
        for (size_t i = 0; i < sizeof(cut) / sizeof(cut[0]); i++) {
                json_out_init(&o, buf, sizeof(buf));
                json_out_string(&o, cut[i]);
                assert_int_equal(json_out_done(&o), -ENOBUFS);
        }
        json_out_init(&o, buf, sizeof(buf));
        json_out_string(&o, "a");
        assert_int_equal(json_out_done(&o), 3);
        assert_memory_equal(buf, "\"a\"", 3);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_object_members_in_order),
            cmocka_unit_test(test_members_by_name),
            cmocka_unit_test(test_arrays),
            cmocka_unit_test(test_escapes_and_utf8),
            cmocka_unit_test(test_strings_jansson_refuses_are_refused),
            cmocka_unit_test(test_too_long_for_the_buffer),
            cmocka_unit_test(test_numbers_are_checked_when_skipped),
            cmocka_unit_test(test_structure_errors),
            cmocka_unit_test(test_nesting_is_bounded),
            cmocka_unit_test(test_writer_escapes),
            cmocka_unit_test(test_writer_overflow_is_remembered),
            cmocka_unit_test(test_special_byte_at_every_offset),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
