/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the words for a refused key field (apikeyd/api/field_rules.c):
 * the exact reasons, and that for every value the checks refuse the words
 * find what is wrong, so that no refusal goes out with the rule alone.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "field_rules.h"
#include "text_check.h"

static struct key_record record_with(const char *name, const char *owner)
{
        return (struct key_record){.name = name, .owner = owner};
}

/* The reason for `field` of `rec`, which must end with the field's rule. */
static const char *reason_of(const char *field, const struct key_record *rec, char *buf)
{
        char rule[FIELD_REASON_MAX];
        const char *r = field_reason_record(field, rec, buf);

        assert_non_null(r);
        assert_non_null(field_rule(field, rule));
        assert_true(strlen(r) >= strlen(rule));
        assert_string_equal(r + strlen(r) - strlen(rule), rule);
        return r;
}

static void test_exact_reasons(void **state)
{
        char buf[FIELD_REASON_MAX], name[200];
        struct key_record rec = record_with("", "alice");

        assert_string_equal(reason_of("name", &rec, buf),
                            "it is empty; a key's name is 1 to 128 bytes of UTF-8 text without "
                            "control characters (such as a newline or a tab)");
        memset(name, 'n', 129);
        name[129] = '\0';
        rec.name = name;
        assert_string_equal(reason_of("name", &rec, buf),
                            "it is 129 bytes long, more than 128; a key's name is 1 to 128 bytes "
                            "of UTF-8 text without control characters (such as a newline or a "
                            "tab)");
        rec.owner = "12";
        assert_true(strncmp(reason_of("owner", &rec, buf),
                            "it is digits alone, which reads as a uid; an owner is 1 to 256 ",
                            62) == 0);
        rec.owner = "al ice";
        assert_true(strncmp(reason_of("owner", &rec, buf),
                            "its character 3 (' ') is not allowed there; ", 44) == 0);
        rec.scope[0] = "sshd";
        rec.scope[1] = "sshd";
        rec.n_scope = 2;
        assert_true(strncmp(reason_of("scope", &rec, buf), "entry 2: it is given twice; ", 28) ==
                    0);
        assert_string_equal(field_reason_scope_count(33, buf),
                            "it has 33 entries; a scope is at most 32 services, each 1 to 64 "
                            "ASCII letters, digits, '.', '_' and '-', the first a letter, a digit "
                            "or '_', none twice");
        assert_true(strncmp(field_reason_expires(-ERANGE, buf), "it is not in the future", 23) ==
                    0);
        assert_null(field_reason_record("status", &rec, buf));
        assert_null(field_reason_not_text("service", buf));
        assert_null(field_rule("name_prefix", buf));
}

/*
 * Every one-byte change of an owner or a scope entry, first, inside and
 * last: whenever the check refuses it, the reason says why (more than the
 * rule), and a value the check takes gets no problem named.
 */
static void test_words_agree_with_the_checks(void **state)
{
        char buf[FIELD_REASON_MAX], rule[FIELD_REASON_MAX], s[8];

        for (int c = 1; c < 256; c++)
                for (int pos = 0; pos < 3; pos++) {
                        struct key_record rec = record_with("k", s);

                        snprintf(s, sizeof(s), "ab");
                        if (pos == 2) {
                                s[2] = (char)c;
                                s[3] = '\0';
                        } else
                                s[pos] = (char)c;
                        rec.scope[0] = s;
                        rec.n_scope = 1;

                        const char *owner = reason_of("owner", &rec, buf);
                        bool owner_named = !STREQ(owner, field_rule("owner", rule));
                        assert_true(owner_named == !text_owner_valid(s, KEY_OWNER_MAX));

                        const char *scope = reason_of("scope", &rec, buf);
                        bool scope_named = !STREQ(scope, field_rule("scope", rule));
                        assert_true(scope_named == !text_name_valid(s, KEY_SCOPE_ENTRY_MAX));
                }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_exact_reasons),
            cmocka_unit_test(test_words_agree_with_the_checks),
        };
        return cmocka_run_group_tests_name("field_rules", tests, NULL, NULL);
}
