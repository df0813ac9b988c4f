/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the PAM module's reading of apikeyd's answer to OpenSession and
 * CloseSession (call_reply_decode, pam_apikey/reply.c) against jansson:
 *
 *   - a reply the decoder accepts is one jansson reads as an object too,
 *     and the error name it gives is jansson's "error" string (cut to the
 *     field at a character boundary), or "" when jansson finds no "error";
 *   - the name is always NUL-terminated within its field, and a refused
 *     reply leaves it empty.
 *
 * The module's session hook rests on the first: a reply reads as success
 * only when it carries no error.
 */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "../../pam_apikey/reply.h"
#include "fuzz.h"

#define INPUT_MAX (16 * 1024)
#define NAME_SIZE 128

static void cut(char *dst, size_t size, const char *s)
{
        size_t n = 0, len = strlen(s);

        while (n < len) {
                unsigned char c = (unsigned char)s[n];
                size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

                if (n + k > size - 1)
                        break;
                n += k;
        }
        memset(dst, 0, size);
        memcpy(dst, s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char error[NAME_SIZE], want[NAME_SIZE];
        json_error_t jerr;
        json_t *j, *e;
        int r;

        if (size > INPUT_MAX)
                return 0;
        memset(error, 'x', sizeof(error));
        r = call_reply_decode((const char *)data, size, error, sizeof(error));
        CHECK(memchr(error, '\0', sizeof(error)));
        if (r < 0) {
                CHECK(r == -EBADMSG);
                CHECK(error[0] == '\0');
                return 0;
        }
        CHECK(r == 0);
        j = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
        if (!j)
                return 0; /* the decoder skips nested values jansson may refuse (duplicates) */
        CHECK(json_is_object(j));
        e = json_object_get(j, "error");
        if (e && json_is_string(e) && !memchr(json_string_value(e), '\0', json_string_length(e))) {
                cut(want, sizeof(want), json_string_value(e));
                CHECK(strcmp(error, want) == 0);
        } else
                CHECK(!e && error[0] == '\0');
        json_decref(j);
        return 0;
}
