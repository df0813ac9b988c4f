/* SPDX-License-Identifier: MIT */
/*
 * Verify's codes to text and back: every code has its own text and comes
 * back from it; any other text, however close, is _VERIFY_CODE_INVALID,
 * which the PAM module and apikeyctl treat as a refusal.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keys_proto.h"
#include "macro.h"

static void test_every_code_round_trips(void **state)
{
        for (int i = 0; i < _VERIFY_CODE_MAX; i++) {
                size_t len = 99;
                const char *s = verify_code_to_string((enum verify_code)i);
                const char *t = verify_code_to_string_len((enum verify_code)i, &len);

                if (!s)
                        fail_msg("Verify code %d has no text", i);
                assert_ptr_equal(s, t);
                assert_int_equal(len, strlen(s));
                assert_int_equal(verify_code_from_string(s), i);
                /* Plain upper-case words: written into answers without escaping. */
                for (const char *p = s; *p; p++)
                        assert_true((*p >= 'A' && *p <= 'Z') || *p == '_');
                for (int k = 0; k < i; k++)
                        assert_string_not_equal(s, verify_code_to_string((enum verify_code)k));
        }
        assert_string_equal(verify_code_to_string(VERIFY_CODE_VALID), "VALID");
        assert_string_equal(verify_code_to_string(VERIFY_CODE_UNAVAILABLE), "UNAVAILABLE");
        assert_int_equal(verify_code_from_string("NOT_FOR_LOGIN"), VERIFY_CODE_NOT_FOR_LOGIN);
}

static void test_not_a_code_has_no_text(void **state)
{
        size_t len = 99;

        assert_null(verify_code_to_string(_VERIFY_CODE_MAX));
        assert_null(verify_code_to_string(_VERIFY_CODE_INVALID));
        assert_null(verify_code_to_string((enum verify_code)1000));
        assert_null(verify_code_to_string_len(_VERIFY_CODE_INVALID, &len));
        assert_int_equal(len, 0);
}

/* What a newer daemon, a broken one or an impostor might send: never a code
 * this build knows, least of all VALID. */
static void test_unknown_text_is_invalid(void **state)
{
        static const char *const texts[] = {
            "",
            "VALID ",
            " VALID",
            "valid",
            "Valid",
            "VALIDX",
            "VALI",
            "VALID\n",
            "NOT_FOUND2",
            "SOMETHING_NEW",
            "NEW_REASON",
            "_VERIFY_CODE_MAX",
            "UNKNOWN",
            "0",
            "RATE_LIMITED_",
            "OUT-OF-SCOPE",
        };

        assert_int_equal(_VERIFY_CODE_INVALID, -EINVAL);
        for (size_t i = 0; i < ELEMENTSOF(texts); i++)
                if (verify_code_from_string(texts[i]) != _VERIFY_CODE_INVALID)
                        fail_msg("\"%s\" was taken for a code", texts[i]);
        assert_int_equal(verify_code_from_string(NULL), _VERIFY_CODE_INVALID);
        /* "VALID" followed by more bytes, as a reply cut or padded might hold. */
        assert_int_equal(verify_code_from_string("VALID\0X"), VERIFY_CODE_VALID);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_every_code_round_trips),
            cmocka_unit_test(test_not_a_code_has_no_text),
            cmocka_unit_test(test_unknown_text_is_invalid),
        };
        return cmocka_run_group_tests_name("keys_proto", tests, NULL, NULL);
}
