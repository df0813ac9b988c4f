/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the time parsers of common/timeutil.c: duration_parse(),
 * timestamp_parse() and expiry_parse(), which read the `expires`, `since`
 * and `expiring_within` parameters of Varlink calls, CLI arguments and
 * config values.  The input is the string (a NUL is appended; an embedded
 * NUL ends it, as it would a C string).  Checks the parsers' contracts
 * and that their results survive the formatters: a duration formats to
 * parts that parse back to it, a timestamp formats to one that parses back
 * to the same second, and the formatters stay inside buffers of every size.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "timeutil.h"
#include "fuzz.h"

/* 2026-01-01T00:00:00Z: a fixed "now", so that every run of an input agrees. */
#define NOW UINT64_C(1767225600000000)

/* Run a formatter into heap buffers of every size up to `max`: none may overrun. */
static void format_tight(int (*fmt)(uint64_t, uint64_t, char *, size_t), uint64_t a, uint64_t b,
                         size_t max)
{
        char full[128];
        size_t need;

        CHECK(max <= sizeof(full));
        CHECK(fmt(a, b, full, max) == 0);
        need = strlen(full) + 1;
        for (size_t n = 1; n <= need; n++) {
                char *buf = malloc(n);
                int r;

                if (!buf)
                        return;
                r = fmt(a, b, buf, n);
                CHECK(n < need ? r == -ENOBUFS : (r == 0 && strcmp(buf, full) == 0));
                free(buf);
        }
}

static int fmt_duration(uint64_t usec, uint64_t unused, char *buf, size_t n)
{
        return duration_format(usec, buf, n);
}

static int fmt_relative(uint64_t t, uint64_t now, char *buf, size_t n)
{
        return relative_format(t, now, buf, n);
}

static void check_duration(const char *s)
{
        char text[DURATION_FORMAT_MAX], compact[DURATION_FORMAT_MAX];
        uint64_t v = 0, back = 0;
        size_t n = 0;
        int r;

        r = duration_parse(s, &v);
        CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r < 0)
                return;
        CHECK(v % USEC_PER_SEC == 0);
        format_tight(fmt_duration, v, 0, DURATION_FORMAT_MAX);

        /* "1d 12h" parses back as "1d12h" when it fits the parser's limit. */
        CHECK(duration_format(v, text, sizeof(text)) == 0);
        for (const char *p = text; *p; p++)
                if (*p != ' ')
                        compact[n++] = *p;
        compact[n] = '\0';
        if (n <= DURATION_PARSE_MAX) {
                CHECK(duration_parse(compact, &back) == 0);
                CHECK(back == v);
        }
}

static void check_timestamp(const char *s)
{
        char text[TIMESTAMP_MAX];
        uint64_t v = 0, back = 0;
        int r;

        r = timestamp_parse(s, &v);
        CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r < 0)
                return;
        CHECK(v > 0);
        format_tight(fmt_relative, v, NOW, RELATIVE_FORMAT_MAX);

        r = timestamp_format(v, text);
        CHECK(r == 0 || r == -ERANGE);
        if (r < 0 || v < USEC_PER_SEC)
                return;
        CHECK(strlen(text) == TIMESTAMP_MAX - 1);
        CHECK(timestamp_parse(text, &back) == 0);
        CHECK(back == v - v % USEC_PER_SEC);
}

static void check_expiry(const char *s)
{
        uint64_t v = 0, d = 0, t = 0;
        int r;

        r = expiry_parse(s, NOW, &v);
        CHECK(r == 0 || r == -EINVAL || r == -ERANGE);
        if (r < 0)
                return;
        /* "never" or a point strictly in the future; nothing dead on arrival. */
        CHECK(v == 0 || v > NOW);
        if (v == 0)
                return;
        if (duration_parse(s, &d) == 0)
                CHECK(v == NOW + d);
        else
                CHECK(timestamp_parse(s, &t) == 0 && t == v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *s = malloc(size + 1);
        uint64_t d, t;

        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';

        check_duration(s);
        check_timestamp(s);
        check_expiry(s);
        /* No string is both a duration and a timestamp. */
        CHECK(!(duration_parse(s, &d) == 0 && timestamp_parse(s, &t) == 0));

        free(s);
        return 0;
}
