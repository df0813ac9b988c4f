/* SPDX-License-Identifier: MIT */
/*
 * erasing_free() (common/varlink.c), the free() the daemon and apikeyctl
 * give jansson: no block it frees still holds a token.  Every free() of
 * this program and of the common code is watched on its way out through
 * the linker's --wrap=free, and searched for the token's secret.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "varlink.h"

#define TOKEN       "apk_7Hq2LmX9aB3z_0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg0fGyu7"
#define SECRET_PART "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefg"

void __real_free(void *p);
void __wrap_free(void *p);

/* volatile: the compiler knows free() and would assume it touches neither. */
static volatile unsigned freed, freed_with_secret;
static volatile bool watching;

void __wrap_free(void *p)
{
        if (p && watching) {
                freed++;
                if (memmem(p, malloc_usable_size(p), SECRET_PART, strlen(SECRET_PART)))
                        freed_with_secret++;
        }
        __real_free(p);
}

static void watch(void)
{
        freed = freed_with_secret = 0;
        watching = true;
}

/* A Create call as a client sends it, and its reply, decoded and dropped by jansson. */
static void json_round_trip(void)
{
        static const char call[] = "{\"method\":\"io.apikeyd.Keys.Create\",\"parameters\":"
                                   "{\"name\":\"ci\",\"auth\":\"" TOKEN "\"}}";
        struct varlink_call c;
        json_t *reply;
        char *dump;

        assert_int_equal(varlink_call_parse(call, strlen(call), &c), 0);
        assert_string_equal(json_string_value(json_object_get(c.parameters, "auth")), TOKEN);
        varlink_call_done(&c);

        reply = json_pack("{s:{s:s,s:s}}", "parameters", "id", "7Hq2LmX9aB3z", "token", TOKEN);
        assert_non_null(reply);
        dump = varlink_message_dump(reply, NULL);
        assert_non_null(dump);
        assert_non_null(strstr(dump, TOKEN));
        json_decref(reply);
        erasing_free(dump);
}

/* The watch itself: with plain free(), jansson hands back blocks that hold the token. */
static void test_plain_free_leaves_the_token(void **state)
{
        json_set_alloc_funcs(malloc, free);
        watch();
        json_round_trip();
        watching = false;
        assert_true(freed > 0);
        if (freed_with_secret == 0)
                fail_msg("plain free(): no freed block held the token; the watch sees nothing");
}

static void test_jansson_over_erasing_free_leaves_no_token(void **state)
{
        json_set_alloc_funcs(malloc, erasing_free);
        watch();
        json_round_trip();
        watching = false;
        assert_true(freed > 0);
        if (freed_with_secret > 0)
                fail_msg("%u of %u blocks freed through erasing_free() still held the token",
                         freed_with_secret, freed);
}

/* The whole block, not only up to its first NUL. */
static void test_whole_block_erased(void **state)
{
        char *p = malloc(100);
        size_t size;

        assert_non_null(p);
        /* Asked for again at its usable size: _FORTIFY_SOURCE checks writes
         * against the size asked for, and this test writes to the end. */
        size = malloc_usable_size(p);
        p = realloc(p, size);
        assert_non_null(p);
        size = malloc_usable_size(p);
        memset(p, 0, size);
        memcpy(p + size - strlen(SECRET_PART), SECRET_PART, strlen(SECRET_PART));
        watch();
        erasing_free(p);
        erasing_free(NULL);
        watching = false;
        assert_int_equal(freed, 1);
        if (freed_with_secret > 0)
                fail_msg("erasing_free() left the secret after the block's first NUL");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_plain_free_leaves_the_token),
            cmocka_unit_test(test_jansson_over_erasing_free_leaves_no_token),
            cmocka_unit_test(test_whole_block_erased),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
