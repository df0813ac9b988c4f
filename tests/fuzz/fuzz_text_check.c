/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes text_valid() and the name syntax (common/text_check.c), which the
 * daemon runs on every text a caller sends.  The input, up to its first NUL,
 * is the text.  Checks text_valid() against a plain decoder written from
 * RFC 3629, that its length bound counts bytes, and that every name and
 * owner it accepts is also valid text made of ASCII only.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "text_check.h"

static bool reference_valid(const unsigned char *p, size_t len)
{
        size_t i = 0;

        while (i < len) {
                unsigned char c = p[i];
                uint32_t cp;
                size_t n;

                if (c < 0x80) {
                        if (c < 0x20 || c == 0x7f)
                                return false;
                        i++;
                        continue;
                }
                if ((c & 0xe0) == 0xc0)
                        n = 2, cp = c & 0x1f;
                else if ((c & 0xf0) == 0xe0)
                        n = 3, cp = c & 0x0f;
                else if ((c & 0xf8) == 0xf0)
                        n = 4, cp = c & 0x07;
                else
                        return false;
                if (len - i < n)
                        return false;
                for (size_t k = 1; k < n; k++) {
                        if ((p[i + k] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i + k] & 0x3f);
                }
                if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000))
                        return false;
                if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) || (cp >= 0x80 && cp <= 0x9f))
                        return false;
                i += n;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        size_t n;
        bool valid;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        n = strlen(s);

        valid = text_valid(s, SIZE_MAX);
        CHECK(valid == reference_valid((const unsigned char *)s, n));
        /* The bound is in bytes, and nothing else changes with it. */
        CHECK(text_valid(s, n) == valid);
        if (n > 0)
                CHECK(!text_valid(s, n - 1));

        if (text_name_valid(s, SIZE_MAX) || text_owner_valid(s, SIZE_MAX)) {
                CHECK(valid && n > 0);
                for (size_t i = 0; i < n; i++)
                        CHECK((unsigned char)s[i] > 0x20 && (unsigned char)s[i] < 0x7f);
                CHECK(s[0] != '-' && s[0] != '.' && s[0] != '$' && s[0] != '@');
                CHECK(!strchr(s, ' ') && !strchr(s, ','));
        }
        /* No bound, or its exact length, changes nothing. */
        CHECK(text_name_valid(s, SIZE_MAX) == text_name_valid(s, n));
        CHECK(text_owner_valid(s, SIZE_MAX) == text_owner_valid(s, n));
        if (text_name_valid(s, SIZE_MAX))
                CHECK(strspn(s, "0123456789") == n || text_owner_valid(s, SIZE_MAX));
        if (text_name_valid(s, SIZE_MAX))
                CHECK(!strchr(s, '@') && !strchr(s, '$'));
        free(s);
        return 0;
}
