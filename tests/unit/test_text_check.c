/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the one text check and the name syntax (common/text_check.c),
 * byte by byte: every C0 control, DEL, every C1 control, overlong, surrogate,
 * out-of-range and cut-short UTF-8, and every one- to three-byte sequence
 * against a plain decoder written from RFC 3629.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "text_check.h"
#include "utf8_reference.h"

/* `s` framed by ASCII, so a sequence is judged in the middle of a text too. */
static bool valid_framed(const char *s)
{
        char buf[64];

        snprintf(buf, sizeof(buf), "a%sb", s);
        return text_valid(s, 16) && text_valid(buf, 18);
}

static void test_ascii_controls_and_del_refused(void **state)
{
        char s[2] = "";

        /* 0x00 cannot be inside a C string: it ends it. */
        for (int c = 0x01; c < 0x20; c++) {
                s[0] = (char)c;
                assert_false(text_valid(s, 8));
                assert_false(valid_framed(s));
        }
        s[0] = 0x7f;
        assert_false(text_valid(s, 8));
        assert_false(valid_framed(s));
        for (int c = 0x20; c < 0x7f; c++) {
                s[0] = (char)c;
                assert_true(valid_framed(s));
        }
}

static void test_c1_controls_refused(void **state)
{
        char s[3] = "\xc2";

        for (int c = 0x80; c <= 0x9f; c++) {
                s[1] = (char)c;
                assert_false(text_valid(s, 8));
                assert_false(valid_framed(s));
        }
        /* U+00A0 on: printable Latin-1. */
        for (int c = 0xa0; c <= 0xbf; c++) {
                s[1] = (char)c;
                assert_true(valid_framed(s));
        }
        /* CSI (U+009B), NEL (U+0085): the ones a terminal or a log acts on. */
        assert_false(text_valid("192.0.2.1\xc2\x85 fake line", 64));
        assert_false(text_valid("\xc2\x9b"
                                "31m",
                                64));
}

static void test_malformed_utf8_refused(void **state)
{
        static const char *const bad[] = {
            "\x80",             /* a lone continuation byte */
            "\xbf",             /* another */
            "\xc0\x80",         /* overlong NUL */
            "\xc0\xaf",         /* overlong '/' */
            "\xc1\xbf",         /* overlong DEL */
            "\xe0\x80\x80",     /* overlong NUL in three bytes */
            "\xe0\x9f\xbf",     /* overlong U+07FF */
            "\xf0\x80\x80\x80", /* overlong NUL in four bytes */
            "\xf0\x8f\xbf\xbf", /* overlong U+FFFF */
            "\xed\xa0\x80",     /* surrogate U+D800 */
            "\xed\xbf\xbf",     /* surrogate U+DFFF */
            "\xf4\x90\x80\x80", /* U+110000 */
            "\xf5\x80\x80\x80", /* no such lead byte */
            "\xf8\x88\x80\x80\x80",
            "\xfe",
            "\xff",
            "\xc3",         /* cut short: two bytes */
            "\xe2\x82",     /* three */
            "\xf0\x9f\x98", /* four */
            "\xe2\x28\xa1", /* continuation not 10xxxxxx */
            "\xc3\xc3",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_false(text_valid(bad[i], 16));
                assert_false(valid_framed(bad[i]));
        }
        /* Cut short at the end of a longer text. */
        assert_false(text_valid("caf\xc3", 16));
        assert_false(text_valid("x\xf0\x9f", 16));
}

static void test_fine_text_accepted(void **state)
{
        static const char *const good[] = {
            "",
            "plain",
            "Jürgen's key",           /* U+00FC */
            "\xc2\xa9 2026",          /* U+00A9 */
            "\xdf\xbf",               /* U+07FF */
            "\xe0\xa0\x80",           /* U+0800 */
            "\xed\x9f\xbf",           /* U+D7FF */
            "\xee\x80\x80",           /* U+E000 */
            "\xef\xbf\xbd",           /* U+FFFD */
            "\xf0\x90\x80\x80",       /* U+10000 */
            "\xf0\x9f\x94\x91 vault", /* U+1F511 */
            "\xf4\x8f\xbf\xbf",       /* U+10FFFF */
            "Zugang für den Build-Server (täglich)",
        };

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(text_valid(good[i], 64));
        assert_false(text_valid(NULL, 64));
}

static void test_length_bound_in_bytes(void **state)
{
        assert_true(text_valid("abcd", 4));
        assert_false(text_valid("abcde", 4));
        /* "ü" is two bytes: three of them need six. */
        assert_true(text_valid("üüü", 6));
        assert_false(text_valid("üüü", 5));
        assert_true(text_valid("", 0));
        assert_false(text_valid("a", 0));
}

static void check_against_reference(const unsigned char *p, size_t n)
{
        char s[8];

        memcpy(s, p, n);
        s[n] = '\0';
        if (text_valid(s, 8) != reference_valid(p, n))
                fail_msg("%zu bytes %02x %02x %02x %02x: text_valid %d", n, p[0], n > 1 ? p[1] : 0,
                         n > 2 ? p[2] : 0, n > 3 ? p[3] : 0, text_valid(s, 8));
}

static void test_every_short_sequence_as_the_reference(void **state)
{
        unsigned char p[4];

        for (unsigned a = 1; a < 256; a++) {
                p[0] = (unsigned char)a;
                check_against_reference(p, 1);
                for (unsigned b = 1; b < 256; b++) {
                        p[1] = (unsigned char)b;
                        check_against_reference(p, 2);
                        for (unsigned c = 1; c < 256; c++) {
                                p[2] = (unsigned char)c;
                                check_against_reference(p, 3);
                        }
                }
        }
        /* Four bytes: every lead and second byte, with a few endings. */
        static const unsigned char tails[] = {0x01, 0x41, 0x7f, 0x80, 0xbf, 0xc0, 0xff};
        for (unsigned a = 0xc0; a < 256; a++)
                for (unsigned b = 1; b < 256; b++)
                        for (size_t t = 0; t < sizeof(tails); t++)
                                for (size_t u = 0; u < sizeof(tails); u++) {
                                        p[0] = (unsigned char)a;
                                        p[1] = (unsigned char)b;
                                        p[2] = tails[t];
                                        p[3] = tails[u];
                                        check_against_reference(p, 4);
                                }
}

static void test_names(void **state)
{
        static const char *const good[] = {
            "sshd", "sudo",     "billing-api", "svc0",         "s",
            "_x",   "polkit-1", "ci.example",  "Build_Server", "0day"};
        static const char *const bad[] = {"",
                                          "ssh d",
                                          " sshd",
                                          "sshd ",
                                          "-x",
                                          ".x",
                                          "a,b",
                                          "a/b",
                                          "a:b",
                                          "x!",
                                          "s\xc3\xbc"
                                          "do",
                                          "a\tb",
                                          "a\xc2\x85",
                                          "bad owner!",
                                          "a$",
                                          "a@b"};

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(text_name_valid(good[i], 64));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (text_name_valid(bad[i], 64))
                        fail_msg("name '%s' accepted", bad[i]);
        assert_false(text_name_valid(NULL, 64));
        assert_true(text_name_valid("sshd", SIZE_MAX));
        assert_true(text_name_valid("abcd", 4));
        assert_false(text_name_valid("abcde", 4));
}

static void test_owners(void **state)
{
        /* Login names as useradd takes them by default, and application names. */
        static const char *const good[] = {"root",
                                           "akt-alice",
                                           "_apt",
                                           "www-data",
                                           "systemd-network",
                                           "host$",
                                           "Debian-exim",
                                           "billing-api",
                                           "ci.example",
                                           "app_team",
                                           "o2",
                                           "1password",
                                           "alice@ad.example.com"};
        /* Look-alikes: a space, a Cyrillic 'о' (U+043E) in "rооt", a
         * fullwidth letter, a NBSP; punctuation; a uid. */
        static const char *const bad[] = {"root ",
                                          " root",
                                          "ro ot",
                                          "bad owner!",
                                          "r\xd0\xbe\xd0\xbet",
                                          "\xef\xbd\x92oot",
                                          "root\xc2\xa0",
                                          "jürgen",
                                          "-root",
                                          ".root",
                                          "root:x",
                                          "@root",
                                          "$",
                                          "a$b",
                                          "root$$",
                                          "0",
                                          "1000",
                                          "",
                                          "root\n"};

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                if (!text_owner_valid(good[i], 256))
                        fail_msg("owner '%s' refused", good[i]);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (text_owner_valid(bad[i], 256))
                        fail_msg("owner '%s' accepted", bad[i]);
        assert_false(text_owner_valid(NULL, 256));
        assert_true(text_owner_valid("root", SIZE_MAX));
        assert_true(text_owner_valid("abc$", 4));
        assert_false(text_owner_valid("abcd$", 4));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_ascii_controls_and_del_refused),
            cmocka_unit_test(test_c1_controls_refused),
            cmocka_unit_test(test_malformed_utf8_refused),
            cmocka_unit_test(test_fine_text_accepted),
            cmocka_unit_test(test_length_bound_in_bytes),
            cmocka_unit_test(test_every_short_sequence_as_the_reference),
            cmocka_unit_test(test_names),
            cmocka_unit_test(test_owners),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
