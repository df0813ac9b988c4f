/* SPDX-License-Identifier: MIT */
/*
 * Building short texts (log messages, journal fields, lookup names) by
 * appending pieces, cut to fit as snprintf cuts them, without its cost:
 * a refused verify builds a dozen of these, and snprintf's format machinery
 * was a tenth of that path.
 */
#pragma once

#include <stddef.h>

#include "macro.h"

struct text {
        char *buf;
        size_t size, len;
};

/* Digits of `v` at the end of `buf`; the first of them. */
static inline const char *uint_text(unsigned long v, char buf[static 24])
{
        char *p = buf + 23;

        *p = '\0';
        do
                *--p = (char)('0' + v % 10);
        while ((v /= 10) > 0);
        return p;
}

/* An empty text in `buf` of `size` > 0 bytes. */
static inline void text_init(struct text *t, char *buf, size_t size)
{
        *t = (struct text){.buf = buf, .size = size};
        buf[0] = '\0';
}

/* `s` (NULL as "") appended, cut to fit; the text stays NUL-terminated. */
static inline void text_add(struct text *t, const char *s)
{
        t->len += str_copy(t->buf + t->len, t->size - t->len, s);
}

static inline void text_add_uint(struct text *t, unsigned long v)
{
        char digits[24];

        text_add(t, uint_text(v, digits));
}
