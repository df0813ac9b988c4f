/* SPDX-License-Identifier: MIT */
/*
 * A plain UTF-8 decoder from RFC 3629's definition, as the reference that
 * text_valid() (common/text_check.c) is compared with, by its unit test and
 * its fuzz target: the code point's length by its lead byte, then shortest
 * form, range, surrogates, and no C0, DEL or C1 control.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
                if (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                if (cp >= 0x80 && cp <= 0x9f)
                        return false;
                i += n;
        }
        return true;
}
