/* SPDX-License-Identifier: MIT */
/* Unit tests of the PAM module's reading of apikeyd's answer (pam_apikey/reply.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "../../pam_apikey/reply.h"

/* An answer the daemon gave, as it gave it. */
#define DAEMON_VALID                                                                               \
        "{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"key\":{\"id\":\"cE2SttEhy4jD\","     \
        "\"name\":\"k\",\"owner\":\"alice\",\"role\":\"readonly\",\"permissions\":[\"read\"],"     \
        "\"scope\":[\"sshd\",\"sudo\"],\"status\":\"enabled\",\"expires_at\":"                     \
        "\"2026-12-26T04:58:12Z\",\"created_at\":\"2026-11-26T04:58:12Z\",\"created_by\":"         \
        "\"uid=0(root)\",\"last_used_at\":\"2026-11-26T04:58:12Z\",\"last_used_service\":"         \
        "\"sshd\"},\"signed_at\":\"2026-11-26T04:58:12Z\",\"signature\":"                          \
        "\"IyuKS43IYkMZ+R8xMbCSCaQj0WkdHSiJNmSp7GLYtYA=\"}}"

static int decode(const char *msg, struct verify_reply *ret)
{
        return verify_reply_decode(msg, strlen(msg), ret);
}

static void refused(const char *msg)
{
        struct verify_reply r, untouched;

        memset(&r, 0x5a, sizeof(r));
        untouched = r;
        if (decode(msg, &r) != -EBADMSG)
                fail_msg("accepted: %s", msg);
        /* A refused answer leaves the caller's as it was. */
        assert_memory_equal(&r, &untouched, sizeof(r));
}

static void test_valid_reply(void **state)
{
        struct verify_reply r;

        assert_int_equal(decode(DAEMON_VALID, &r), 0);
        assert_false(r.error);
        assert_true(r.valid);
        assert_string_equal(r.code, "VALID");
        assert_string_equal(r.key_id, "cE2SttEhy4jD");
        assert_string_equal(r.expires_at, "2026-12-26T04:58:12Z");
}

/* The answer to a call with "brief": the key's id and expiry beside the code. */
static void test_brief_reply(void **state)
{
        struct verify_reply r;

        assert_int_equal(
            decode("{\"parameters\":{\"valid\":true,\"code\":\"VALID\","
                   "\"key_id\":\"cE2SttEhy4jD\",\"expires_at\":\"2026-12-26T04:58:12Z\","
                   "\"signed_at\":\"2026-12-06T03:00:00Z\",\"signature\":\"x\"}}",
                   &r),
            0);
        assert_true(r.valid);
        assert_string_equal(r.code, "VALID");
        assert_string_equal(r.key_id, "cE2SttEhy4jD");
        assert_string_equal(r.expires_at, "2026-12-26T04:58:12Z");
        /* The key's own, when it comes too. */
        assert_int_equal(decode("{\"parameters\":{\"key_id\":\"aaaaaaaaaaaa\",\"valid\":true,"
                                "\"code\":\"VALID\",\"key\":{\"id\":\"cE2SttEhy4jD\"}}}",
                                &r),
                         0);
        assert_string_equal(r.key_id, "cE2SttEhy4jD");
        /* The seconds left (expires_in) are the daemon's word for scripts: passed over. */
        assert_int_equal(
            decode("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"expires_in\":1728000,"
                   "\"key_id\":\"cE2SttEhy4jD\",\"expires_at\":\"2026-12-26T04:58:12Z\"}}",
                   &r),
            0);
        assert_true(r.valid);
        assert_string_equal(r.key_id, "cE2SttEhy4jD");
        assert_string_equal(r.expires_at, "2026-12-26T04:58:12Z");
}

static void test_each_code(void **state)
{
        static const char *const codes[] = {
            "VALID",        "BAD_FORMAT",    "NOT_FOUND",
            "DISABLED",     "REVOKED",       "EXPIRED",
            "WRONG_USER",   "OUT_OF_SCOPE",  "INSUFFICIENT_PERMISSIONS",
            "RATE_LIMITED", "SOMETHING_NEW",
        };

        for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
                char msg[256];
                struct verify_reply r;
                bool valid = strcmp(codes[i], "VALID") == 0;

                snprintf(msg, sizeof(msg),
                         "{\"parameters\":{\"valid\":%s,\"code\":\"%s\",\"signed_at\":"
                         "\"2026-11-26T04:58:12Z\",\"signature\":\"y9Uk=\"}}",
                         valid ? "true" : "false", codes[i]);
                assert_int_equal(decode(msg, &r), 0);
                assert_false(r.error);
                assert_int_equal(r.valid, valid);
                assert_string_equal(r.code, codes[i]);
                assert_string_equal(r.key_id, "");
                assert_string_equal(r.expires_at, "");
        }
}

static void test_error_reply(void **state)
{
        struct verify_reply r;

        assert_int_equal(decode("{\"error\":\"org.varlink.service.InvalidParameter\","
                                "\"parameters\":{\"parameter\":\"token\"}}",
                                &r),
                         0);
        assert_true(r.error);
        assert_string_equal(r.error_name, "org.varlink.service.InvalidParameter");
        /* Nothing else of an error counts, whatever its parameters hold. */
        assert_int_equal(decode("{\"parameters\":{\"valid\":true,\"code\":\"VALID\"},"
                                "\"error\":\"io.apikeyd.Keys.InternalError\"}",
                                &r),
                         0);
        assert_true(r.error);
        assert_false(r.valid);
        assert_string_equal(r.code, "");
        /* Without parameters, and with parameters the module cannot use. */
        assert_int_equal(decode("{\"error\":\"x\"}", &r), 0);
        assert_true(r.error);
        assert_int_equal(decode("{\"error\":\"\",\"parameters\":{\"code\":5}}", &r), 0);
        assert_true(r.error);
        assert_string_equal(r.error_name, "");
}

static void test_members_in_any_order(void **state)
{
        struct verify_reply r;

        assert_int_equal(decode(" {\"continues\" : false , \"parameters\" : {\"key\":{"
                                "\"expires_at\":\"2030-01-01T00:00:00Z\",\"id\":\"7Hq2LmX9aB3z\"},"
                                "\"code\":\"REVOKED\",\"valid\":false}}\n",
                                &r),
                         0);
        assert_false(r.valid);
        assert_string_equal(r.code, "REVOKED");
        assert_string_equal(r.key_id, "7Hq2LmX9aB3z");
        assert_string_equal(r.expires_at, "2030-01-01T00:00:00Z");
}

static void test_escapes(void **state)
{
        struct verify_reply r;

        /* Names and values are compared once unescaped, as jansson did. */
        assert_int_equal(decode("{\"par\\u0061meters\":{\"valid\":true,\"c\\u006fde\":"
                                "\"V\\u0041LID\",\"key\":{\"id\":\"7Hq2\\/LmX9aB3\",\"note\":"
                                "\"caf\\u00e9 \\ud83d\\ude00 \\\"x\\\" \\\\ \\n\\t\"}}}",
                                &r),
                         0);
        assert_true(r.valid);
        assert_string_equal(r.code, "VALID");
        assert_string_equal(r.key_id, "7Hq2/LmX9aB3");
        /* Escapes that jansson refuses. */
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\\u0000\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"\\ud800\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"\\x41\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"o\":\"\xed\xa0\x80\"}}");
}

static void test_duplicates_refused(void **state)
{
        /* At the top, in the parameters, in the key and deep in what is skipped. */
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\"},"
                "\"parameters\":{\"valid\":false,\"code\":\"NOT_FOUND\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"REVOKED\",\"code\":\"VALID\"}}");
        refused("{\"parameters\":{\"valid\":false,\"valid\":true,\"code\":\"VALID\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"key\":{\"id\":\"a\","
                "\"id\":\"b\"}}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"key\":{\"scope\":"
                "[{\"a\":1,\"b\":2,\"a\":3}]}}}");
        refused("{\"error\":\"x\",\"error\":\"y\"}");
        refused("{\"continues\":false,\"parameters\":{\"valid\":true,\"code\":\"VALID\"},"
                "\"continues\":false}");
        /* The same name spelt two ways is still the same name. */
        refused("{\"parameters\":{\"valid\":false,\"code\":\"REVOKED\",\"c\\u006fde\":"
                "\"VALID\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"x\":{\"\\u00e9\":1,"
                "\"\xc3\xa9\":2}}}");
        /* Names that only look alike are not. */
        struct verify_reply r;
        assert_int_equal(decode("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"x\":{"
                                "\"a\":1,\"ab\":2,\"\\u0061b\\u0063\":3,\"A\":4,\"\":5}}}",
                                &r),
                         0);
}

static void test_truncated(void **state)
{
        const char *full = DAEMON_VALID;
        size_t len = strlen(full);
        struct verify_reply r;

        /* Every proper prefix of a good answer is refused. */
        for (size_t n = 0; n < len; n++) {
                memset(&r, 0, sizeof(r));
                assert_int_equal(verify_reply_decode(full, n, &r), -EBADMSG);
        }
        assert_int_equal(verify_reply_decode(full, len, &r), 0);
        refused("");
        refused("   ");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VAL");
}

static void test_wrong_types(void **state)
{
        struct verify_reply r;

        refused("[{\"parameters\":{\"valid\":true,\"code\":\"VALID\"}}]");
        refused("\"VALID\"");
        refused("{\"parameters\":null}");
        refused("{\"parameters\":[]}");
        refused("{\"parameters\":{\"valid\":\"true\",\"code\":\"VALID\"}}");
        refused("{\"parameters\":{\"valid\":1,\"code\":\"VALID\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":[\"VALID\"]}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":null}}");
        refused("{\"parameters\":{\"valid\":true}}");
        refused("{\"parameters\":{\"code\":\"VALID\"}}");
        refused("{\"parameters\":{}}");
        refused("{}");
        refused("{\"error\":null}");
        refused("{\"error\":5,\"parameters\":{\"valid\":true,\"code\":\"VALID\"}}");
        refused("{\"continues\":1,\"parameters\":{\"valid\":true,\"code\":\"VALID\"}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\"}} x");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\"},}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":01}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":tru}}");
        /* A key or its fields of another type are passed over, as before. */
        assert_int_equal(decode("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"key\":"
                                "\"7Hq2LmX9aB3z\"}}",
                                &r),
                         0);
        assert_string_equal(r.key_id, "");
        assert_int_equal(decode("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"key\":{"
                                "\"id\":12,\"expires_at\":null}}}",
                                &r),
                         0);
        assert_string_equal(r.key_id, "");
        assert_string_equal(r.expires_at, "");
}

static void test_nested_values_skipped(void **state)
{
        struct verify_reply r;

        assert_int_equal(decode("{\"parameters\":{\"key\":{\"permissions\":[\"read\",\"write\"],"
                                "\"id\":\"7Hq2LmX9aB3z\",\"extra\":{\"code\":\"NOT_FOUND\","
                                "\"valid\":false,\"key\":{\"id\":\"other\"}},\"n\":[1,-2.5e3,"
                                "{\"z\":[[],{}]},null,true]},\"code\":\"VALID\",\"valid\":true},"
                                "\"future\":{\"code\":\"NOT_FOUND\"}}",
                                &r),
                         0);
        /* Members of the same names deeper down are not the ones that count. */
        assert_true(r.valid);
        assert_string_equal(r.code, "VALID");
        assert_string_equal(r.key_id, "7Hq2LmX9aB3z");
}

static void test_long_strings_are_cut(void **state)
{
        struct verify_reply r;

        /* A code too long for its field is cut, and is then no code the module knows. */
        assert_int_equal(
            decode("{\"parameters\":{\"valid\":true,\"code\":\"VALIDVALIDVALIDVALIDVALID"
                   "VALIDVALIDVALID\"}}",
                   &r),
            0);
        assert_int_equal(strlen(r.code), sizeof(r.code) - 1);
        assert_memory_equal(r.code, "VALIDVALIDVALIDVALIDVALIDVALIDV", sizeof(r.code));
        /* Cut at a character, never inside one: 30 ASCII bytes, then é does not fit. */
        assert_int_equal(decode("{\"parameters\":{\"valid\":false,\"code\":"
                                "\"012345678901234567890123456789\\u00e9\"}}",
                                &r),
                         0);
        assert_string_equal(r.code, "012345678901234567890123456789");
        /* What follows the cut is checked all the same. */
        refused("{\"parameters\":{\"valid\":false,\"code\":"
                "\"0123456789012345678901234567890123456789\\ud800\"}}");
}

static void test_limits(void **state)
{
        char msg[4096];
        size_t n;
        struct verify_reply r;

        /* Nesting: 16 containers in all are read (the reply, its parameters and
         * 14 arrays), 17 refused. */
        for (int arrays = 14; arrays <= 15; arrays++) {
                n = (size_t)snprintf(msg, sizeof(msg),
                                     "{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"x\":");
                for (int i = 0; i < arrays; i++)
                        msg[n++] = '[';
                for (int i = 0; i < arrays; i++)
                        msg[n++] = ']';
                memcpy(msg + n, "}}", 3);
                if (arrays == 14)
                        assert_int_equal(decode(msg, &r), 0);
                else
                        refused(msg);
        }

        /* Members: 64 in one object, not 65. */
        for (int members = 64; members <= 65; members++) {
                n = (size_t)snprintf(msg, sizeof(msg),
                                     "{\"parameters\":{\"valid\":true,"
                                     "\"code\":\"VALID\",\"key\":{");
                for (int i = 0; i < members; i++)
                        n += (size_t)snprintf(msg + n, sizeof(msg) - n, "%s\"m%d\":%d",
                                              i ? "," : "", i, i);
                snprintf(msg + n, sizeof(msg) - n, "}}}");
                if (members == 64)
                        assert_int_equal(decode(msg, &r), 0);
                else
                        refused(msg);
        }

        /* Names: 255 bytes, not 256. */
        for (size_t len = 255; len <= 256; len++) {
                n = (size_t)snprintf(msg, sizeof(msg),
                                     "{\"parameters\":{\"valid\":true,"
                                     "\"code\":\"VALID\",\"");
                memset(msg + n, 'n', len);
                n += len;
                snprintf(msg + n, sizeof(msg) - n, "\":1}}");
                if (len == 255)
                        assert_int_equal(decode(msg, &r), 0);
                else
                        refused(msg);
        }
}

static void test_numbers_as_jansson_reads_them(void **state)
{
        struct verify_reply r;

        assert_int_equal(decode("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":[0,-0,"
                                "9223372036854775807,-9223372036854775808,1.5e-400,0.0e999,"
                                "-0e400,9.99e307,-1e307,12e306,0.001e310]}}",
                                &r),
                         0);
        /* Integers past 64 bits and reals past a double: jansson refused them. */
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":9223372036854775808}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":-9223372036854775809}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":100000000000000000000}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":1.8e308}}");
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":-1e309}}");
        refused(
            "{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":1e00000000000000000309}}");
        /* The decoder's own limit: from 1e308 up, where jansson still took a few. */
        refused("{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":1e308}}");
        refused(
            "{\"parameters\":{\"valid\":true,\"code\":\"VALID\",\"n\":1.7976931348623157e308}}");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_valid_reply),
            cmocka_unit_test(test_brief_reply),
            cmocka_unit_test(test_each_code),
            cmocka_unit_test(test_error_reply),
            cmocka_unit_test(test_members_in_any_order),
            cmocka_unit_test(test_escapes),
            cmocka_unit_test(test_duplicates_refused),
            cmocka_unit_test(test_truncated),
            cmocka_unit_test(test_wrong_types),
            cmocka_unit_test(test_nested_values_skipped),
            cmocka_unit_test(test_long_strings_are_cut),
            cmocka_unit_test(test_limits),
            cmocka_unit_test(test_numbers_as_jansson_reads_them),
        };
        return cmocka_run_group_tests_name("pam_reply", tests, NULL, NULL);
}
