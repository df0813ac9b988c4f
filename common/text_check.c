/* SPDX-License-Identifier: MIT */
/* The text check and the name syntax; see text_check.h. */
#include <stdint.h>
#include <string.h>

#include "text_check.h"

/*
 * Bytes of the well-formed UTF-8 sequence at `p` beyond its lead byte
 * `p[0]` >= 0x80 (RFC 3629, table 3-7 of the Unicode standard), or -1.
 * The C1 controls (C2 80 to C2 9F) are refused here too.
 */
static int utf8_tail(const unsigned char *p)
{
        unsigned char lo = 0x80, hi = 0xbf;
        int n;

        if (p[0] == 0xc2)
                lo = 0xa0; /* C2 80..9F: U+0080..U+009F, the C1 controls */
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                n = 1;
        else if (p[0] >= 0xe0 && p[0] <= 0xef) {
                n = 2;
                if (p[0] == 0xe0)
                        lo = 0xa0; /* overlong below U+0800 */
                else if (p[0] == 0xed)
                        hi = 0x9f; /* surrogates U+D800..U+DFFF */
        } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
                n = 3;
                if (p[0] == 0xf0)
                        lo = 0x90; /* overlong below U+10000 */
                else if (p[0] == 0xf4)
                        hi = 0x8f; /* above U+10FFFF */
        } else
                return -1; /* a continuation byte, C0/C1 (overlong ASCII), F5..FF */

        /* The second byte has the narrowed range; a NUL stops the check. */
        if (p[1] < lo || p[1] > hi)
                return -1;
        for (int i = 2; i <= n; i++)
                if ((p[i] & 0xc0) != 0x80)
                        return -1;
        return n;
}

/* Printable ASCII, the bytes most text is made of: one lookup each. */
static const bool plain_ascii[256] = {
    [0x20 ... 0x7e] = true,
};

bool text_valid(const char *s, size_t max)
{
        const unsigned char *p = (const unsigned char *)s;
        size_t i = 0;

        if (!s)
                return false;
        while (p[i]) {
                if (plain_ascii[p[i]]) {
                        /* A whole run of printable ASCII, then the bound. */
                        do
                                i++;
                        while (plain_ascii[p[i]]);
                } else if (p[i] < 0x80) {
                        return false; /* C0 or DEL */
                } else {
                        int n = utf8_tail(p + i);
                        if (n < 0)
                                return false;
                        i += 1 + (size_t)n;
                }
                if (i > max)
                        return false;
        }
        return true;
}

/* `extra`: punctuation allowed after the first character besides '.' and '-'. */
static bool name_char(char c, bool first, const char *extra)
{
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
                return true;
        return !first && c != '\0' && (c == '.' || c == '-' || strchr(extra, c));
}

/* strlen(s) if at most `max`, else something larger; `max` may be SIZE_MAX. */
static size_t length_to(const char *s, size_t max)
{
        return max >= SIZE_MAX / 2 ? strlen(s) : strnlen(s, max + 1);
}

static bool name_valid(const char *s, size_t n, const char *extra)
{
        if (n == 0)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!name_char(s[i], i == 0, extra))
                        return false;
        return true;
}

bool text_name_valid(const char *s, size_t max)
{
        size_t n;

        if (!s)
                return false;
        n = length_to(s, max);
        return n <= max && name_valid(s, n, "");
}

bool text_owner_valid(const char *s, size_t max)
{
        size_t n;

        if (!s)
                return false;
        n = length_to(s, max);
        if (n > max || strspn(s, "0123456789") == n)
                return false;
        if (n > 1 && s[n - 1] == '$')
                n--;
        /* '@': user names qualified with their domain (SSSD, winbind). */
        return name_valid(s, n, "@");
}
