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
#include "../unit/utf8_reference.h"

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
