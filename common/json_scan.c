/* SPDX-License-Identifier: MIT */
/* A strict JSON reader and a small writer, without allocation; see json_scan.h. */
#include <errno.h>
#include <string.h>

#include "json_scan.h"

void json_scan_init(struct json_scan *s, const char *buf, size_t len)
{
        *s = (struct json_scan){.p = buf, .end = buf + len};
}

static void skip_ws(struct json_scan *s)
{
        while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
                s->p++;
}

int json_scan_peek(struct json_scan *s)
{
        skip_ws(s);
        if (s->p >= s->end)
                return -EBADMSG;
        switch (*s->p) {
        case '{':
                return JSON_SCAN_OBJECT;
        case '[':
                return JSON_SCAN_ARRAY;
        case '"':
                return JSON_SCAN_STRING;
        case 't':
                return JSON_SCAN_TRUE;
        case 'f':
                return JSON_SCAN_FALSE;
        case 'n':
                return JSON_SCAN_NULL;
        default:
                if (*s->p == '-' || (*s->p >= '0' && *s->p <= '9'))
                        return JSON_SCAN_NUMBER;
                return -EBADMSG;
        }
}

static int container_begin(struct json_scan *s, char open)
{
        skip_ws(s);
        if (s->p >= s->end || *s->p != open || s->depth >= JSON_SCAN_MAX_DEPTH)
                return -EBADMSG;
        s->p++;
        s->depth++;
        s->started &= ~(UINT64_C(1) << (s->depth - 1));
        return 0;
}

int json_scan_object_begin(struct json_scan *s)
{
        return container_begin(s, '{');
}

int json_scan_array_begin(struct json_scan *s)
{
        return container_begin(s, '[');
}

/*
 * Before the next element of the current container: 1 if there is one
 * (the separating comma consumed), 0 if the container closed here.
 */
static int container_next(struct json_scan *s, char close)
{
        uint64_t bit;

        if (s->depth == 0)
                return -EBADMSG;
        bit = UINT64_C(1) << (s->depth - 1);
        skip_ws(s);
        if (s->p >= s->end)
                return -EBADMSG;
        if (*s->p == close) {
                s->p++;
                s->depth--;
                return 0;
        }
        if (s->started & bit) {
                if (*s->p != ',')
                        return -EBADMSG;
                s->p++;
                skip_ws(s);
        }
        s->started |= bit;
        return 1;
}

static int hex4(const char *p, unsigned *ret)
{
        unsigned v = 0;

        for (int i = 0; i < 4; i++) {
                char c = p[i];
                v <<= 4;
                if (c >= '0' && c <= '9')
                        v |= (unsigned)(c - '0');
                else if (c >= 'a' && c <= 'f')
                        v |= (unsigned)(c - 'a' + 10);
                else if (c >= 'A' && c <= 'F')
                        v |= (unsigned)(c - 'A' + 10);
                else
                        return -EBADMSG;
        }
        *ret = v;
        return 0;
}

/* Length of the well-formed UTF-8 sequence at p (RFC 3629), or 0. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end)
{
        size_t n;
        uint32_t v;

        if (p[0] < 0x80)
                return 1;
        if (p[0] < 0xc2 || p[0] > 0xf4)
                return 0;
        n = p[0] < 0xe0 ? 2 : p[0] < 0xf0 ? 3 : 4;
        if ((size_t)(end - p) < n)
                return 0;
        v = p[0] & (0x7f >> n);
        for (size_t i = 1; i < n; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                v = (v << 6) | (p[i] & 0x3f);
        }
        if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10ffff ||
            (v >= 0xd800 && v <= 0xdfff))
                return 0;
        return n;
}

static size_t utf8_encode(uint32_t cp, char out[4])
{
        if (cp < 0x80) {
                out[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                out[0] = (char)(0xc0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                out[0] = (char)(0xe0 | (cp >> 12));
                out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                out[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        out[0] = (char)(0xf0 | (cp >> 18));
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

/* One escape after the backslash at *pp: the bytes it stands for. */
static int unescape(const char **pp, const char *end, char out[4], size_t *ret_n)
{
        const char *p = *pp + 1;
        unsigned cp, lo;

        if (p >= end)
                return -EBADMSG;
        switch (*p) {
        case '"':
        case '\\':
        case '/':
                out[0] = *p;
                break;
        case 'b':
                out[0] = '\b';
                break;
        case 'f':
                out[0] = '\f';
                break;
        case 'n':
                out[0] = '\n';
                break;
        case 'r':
                out[0] = '\r';
                break;
        case 't':
                out[0] = '\t';
                break;
        case 'u':
                if (end - p < 5 || hex4(p + 1, &cp) < 0 || cp == 0)
                        return -EBADMSG;
                p += 4;
                if (cp >= 0xdc00 && cp <= 0xdfff)
                        return -EBADMSG;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                        /* A high surrogate must be followed by a low one. */
                        if (end - p < 7 || p[1] != '\\' || p[2] != 'u' || hex4(p + 3, &lo) < 0 ||
                            lo < 0xdc00 || lo > 0xdfff)
                                return -EBADMSG;
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        p += 6;
                }
                *pp = p + 1;
                *ret_n = utf8_encode(cp, out);
                return 0;
        default:
                return -EBADMSG;
        }
        *pp = p + 1;
        *ret_n = 1;
        return 0;
}

/* Bytes that stand for themselves inside a JSON string: printable ASCII but
 * '"' and '\\' (DEL does too, but takes the slower way, so that a plain run
 * is text as text_check.h takes it). */
static const bool plain_ascii_byte[256] = {
    [0x20 ... '"' - 1] = true,
    ['"' + 1 ... '\\' - 1] = true,
    ['\\' + 1 ... 0x7e] = true,
};

static bool plain_ascii(unsigned char c)
{
        return plain_ascii_byte[c];
}

/*
 * Eight bytes at a time: a word with a high bit set in the lowest byte that
 * is below 0x20, '"' or '\\' (and, if `ascii`, DEL or at or above 0x80),
 * zero if none is.  Borrows may also mark bytes above the first one marked, so only
 * "none" and "not none" are meaningful.
 */
#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)
static uint64_t word_special(uint64_t w, bool ascii)
{
        uint64_t quote = w ^ (ONES * '"'), bslash = w ^ (ONES * '\\'), del = w ^ (ONES * 0x7f);

        return (((w - ONES * 0x20) & ~w) | ((quote - ONES) & ~quote) | ((bslash - ONES) & ~bslash) |
                (ascii ? w | ((del - ONES) & ~del) : 0)) &
               HIGHS;
}

/* Past the whole words at p (none beyond end) that hold no special byte. */
static const char *plain_words(const char *p, const char *end, bool ascii)
{
        while (end - p >= 8) {
                uint64_t w;

                memcpy(&w, p, 8);
                if (word_special(w, ascii))
                        break;
                p += 8;
        }
        return p;
}

/* Past the run of plain ASCII bytes at p (none beyond end). */
static const char *plain_run(const char *p, const char *end)
{
        p = plain_words(p, end, true);
        while (p < end && plain_ascii((unsigned char)*p))
                p++;
        return p;
}

/* The string at the reader (at its opening quote) into buf; buf may be NULL to only check it. */
static int scan_string(struct json_scan *s, char *buf, size_t size, size_t *ret_len)
{
        const char *p = s->p + 1;
        size_t len = 0;

        for (;;) {
                char tmp[4];
                const char *from = p;
                size_t n;

                if (p >= s->end)
                        return -EBADMSG;
                unsigned char c = (unsigned char)*p;
                if (plain_ascii(c)) {
                        /* The common case: a run copied in one go. */
                        p = plain_run(p, s->end);
                        n = (size_t)(p - from);
                } else if (c == '"')
                        break;
                else if (c < 0x20)
                        return -EBADMSG;
                else if (c == '\\') {
                        int r = unescape(&p, s->end, tmp, &n);
                        if (r < 0)
                                return r;
                        from = tmp;
                } else {
                        n = utf8_sequence((const unsigned char *)p, (const unsigned char *)s->end);
                        if (n == 0)
                                return -EBADMSG;
                        p += n;
                }
                if (buf) {
                        if (size - len <= n) {
                                /* Keep the whole characters that fit: a plain run
                                 * is all single bytes, anything else one. */
                                if (plain_ascii((unsigned char)*from) && from != tmp) {
                                        memcpy(buf + len, from, size - len - 1);
                                        len = size - 1;
                                }
                                buf[len] = '\0';
                                return -ENOBUFS;
                        }
                        memcpy(buf + len, from, n);
                }
                len += n;
        }
        if (buf)
                buf[len] = '\0';
        if (ret_len)
                *ret_len = len;
        s->p = p + 1;
        return 0;
}

int json_scan_string(struct json_scan *s, char *buf, size_t size, size_t *ret_len)
{
        if (!buf || size == 0)
                return -ENOBUFS;
        if (json_scan_peek(s) != JSON_SCAN_STRING)
                return -EBADMSG;
        return scan_string(s, buf, size, ret_len);
}

int json_scan_text(struct json_scan *s, char *buf, size_t size, size_t *ret_len,
                   bool *ret_printable)
{
        const char *q;
        size_t len;

        *ret_printable = false;
        if (!buf || size == 0)
                return -ENOBUFS;
        if (json_scan_peek(s) != JSON_SCAN_STRING)
                return -EBADMSG;
        /* The common case, a run of printable ASCII up to the closing quote:
         * one copy, and nothing for the caller to check again. */
        q = plain_run(s->p + 1, s->end);
        len = (size_t)(q - s->p - 1);
        if (q < s->end && *q == '"' && len < size) {
                memcpy(buf, s->p + 1, len);
                buf[len] = '\0';
                if (ret_len)
                        *ret_len = len;
                *ret_printable = true;
                s->p = q + 1;
                return 0;
        }
        return scan_string(s, buf, size, ret_len);
}

/* Longest name json_scan_member() unescapes to compare; longer ones are none of its names. */
#define MEMBER_NAME_MAX 32

/*
 * The string at the reader (at its opening quote): where its text is, in
 * place when it holds no escape and no byte outside printable ASCII, else
 * unescaped into `buf` (NULL for a string longer than `size` - 1 bytes,
 * which is still checked and stepped over).
 */
static int string_in_place(struct json_scan *s, char *buf, size_t size, const char **ret,
                           size_t *ret_len)
{
        const char *q = plain_run(s->p + 1, s->end);
        int r;

        if (q < s->end && *q == '"') {
                *ret = s->p + 1;
                *ret_len = (size_t)(q - s->p - 1);
                s->p = q + 1;
                return 0;
        }
        r = scan_string(s, buf, size, ret_len);
        if (r == -ENOBUFS) {
                *ret = NULL;
                return scan_string(s, NULL, 0, NULL);
        }
        *ret = buf;
        return r;
}

/* The name at the reader, written with escapes or other than `names`: unescaped, then looked up. */
static __attribute__((noinline)) int member_unescaped(struct json_scan *s, const char *const *names,
                                                      size_t n, size_t *ret_index)
{
        char buf[MEMBER_NAME_MAX + 1];
        const char *name;
        size_t len, i;
        int r = string_in_place(s, buf, sizeof(buf), &name, &len);

        if (r < 0)
                return r;
        for (i = 0; name && i < n; i++)
                if (strncmp(names[i], name, len) == 0 && names[i][len] == '\0')
                        break;
        *ret_index = name ? i : n;
        return 0;
}

int json_scan_member(struct json_scan *s, const char *const *names, size_t n, size_t *ret_index)
{
        size_t i;
        int r = container_next(s, '}');

        if (r <= 0)
                return r;
        if (s->p >= s->end || *s->p != '"')
                return -EBADMSG;
        /* Most often the name is written as it is: compared in place, it is
         * one of `names` if its bytes and then a quote follow. */
        for (i = 0; i < n; i++) {
                const char *p = s->p + 1;
                size_t want;

                if (p >= s->end || *p != names[i][0])
                        continue;
                want = strlen(names[i]);
                if ((size_t)(s->end - p) > want && p[want] == '"' &&
                    memcmp(p, names[i], want) == 0) {
                        s->p = p + want + 1;
                        break;
                }
        }
        if (i == n) {
                r = member_unescaped(s, names, n, &i);
                if (r < 0)
                        return r;
        }
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
                return -EBADMSG;
        s->p++;
        *ret_index = i;
        return 1;
}

int json_scan_string_is(struct json_scan *s, const char *want)
{
        char buf[MEMBER_NAME_MAX + 1];
        size_t len = strlen(want);
        const char *text;
        int r;

        if (json_scan_peek(s) != JSON_SCAN_STRING)
                return -EBADMSG;
        /* Written as it is, quotes around `want`'s bytes: equal, and a string
         * (`want` holds no quote, backslash or control character). */
        if ((size_t)(s->end - s->p) > len + 1 && s->p[len + 1] == '"' &&
            memcmp(s->p + 1, want, len) == 0) {
                s->p += len + 2;
                return 1;
        }
        r = string_in_place(s, buf, sizeof(buf), &text, &len);
        if (r < 0)
                return r;
        return text && strlen(want) == len && memcmp(text, want, len) == 0;
}

int json_scan_object_next(struct json_scan *s, char *name, size_t size)
{
        int r = container_next(s, '}');

        if (r <= 0)
                return r;
        if (s->p >= s->end || *s->p != '"')
                return -EBADMSG;
        r = json_scan_string(s, name, size, NULL);
        if (r < 0)
                return r;
        skip_ws(s);
        if (s->p >= s->end || *s->p != ':')
                return -EBADMSG;
        s->p++;
        return 1;
}

int json_scan_array_next(struct json_scan *s)
{
        return container_next(s, ']');
}

static int scan_literal(struct json_scan *s, const char *word, size_t n)
{
        skip_ws(s);
        if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
                return -EBADMSG;
        s->p += n;
        return 0;
}

int json_scan_bool(struct json_scan *s, bool *ret)
{
        int t = json_scan_peek(s);

        if (t == JSON_SCAN_TRUE && scan_literal(s, "true", 4) == 0)
                *ret = true;
        else if (t == JSON_SCAN_FALSE && scan_literal(s, "false", 5) == 0)
                *ret = false;
        else
                return -EBADMSG;
        return 0;
}

int json_scan_null(struct json_scan *s)
{
        return scan_literal(s, "null", 4);
}

static bool is_digit(const char *p, const char *end)
{
        return p < end && *p >= '0' && *p <= '9';
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(struct json_scan *s)
{
        const char *p = s->p, *end = s->end;

        if (p < end && *p == '-')
                p++;
        if (!is_digit(p, end))
                return -EBADMSG;
        if (*p == '0')
                p++;
        else
                while (is_digit(p, end))
                        p++;
        if (p < end && *p == '.') {
                p++;
                if (!is_digit(p, end))
                        return -EBADMSG;
                while (is_digit(p, end))
                        p++;
        }
        if (p < end && (*p == 'e' || *p == 'E')) {
                p++;
                if (p < end && (*p == '+' || *p == '-'))
                        p++;
                if (!is_digit(p, end))
                        return -EBADMSG;
                while (is_digit(p, end))
                        p++;
        }
        /* A digit right after a leading zero ("01") is not a number. */
        if (is_digit(p, end))
                return -EBADMSG;
        s->p = p;
        return 0;
}

int json_scan_skip(struct json_scan *s)
{
        int r;

        switch (json_scan_peek(s)) {
        case JSON_SCAN_OBJECT:
                r = json_scan_object_begin(s);
                while (r >= 0) {
                        /* Member names are checked, not kept. */
                        r = container_next(s, '}');
                        if (r <= 0)
                                break;
                        if (s->p >= s->end || *s->p != '"' || scan_string(s, NULL, 0, NULL) < 0)
                                return -EBADMSG;
                        skip_ws(s);
                        if (s->p >= s->end || *s->p != ':')
                                return -EBADMSG;
                        s->p++;
                        r = json_scan_skip(s);
                }
                return r;
        case JSON_SCAN_ARRAY:
                r = json_scan_array_begin(s);
                while (r >= 0) {
                        r = json_scan_array_next(s);
                        if (r <= 0)
                                break;
                        r = json_scan_skip(s);
                }
                return r;
        case JSON_SCAN_STRING:
                return scan_string(s, NULL, 0, NULL);
        case JSON_SCAN_NUMBER:
                return scan_number(s);
        case JSON_SCAN_TRUE:
                return scan_literal(s, "true", 4);
        case JSON_SCAN_FALSE:
                return scan_literal(s, "false", 5);
        case JSON_SCAN_NULL:
                return scan_literal(s, "null", 4);
        default:
                return -EBADMSG;
        }
}

int json_scan_finish(struct json_scan *s)
{
        skip_ws(s);
        return s->p == s->end && s->depth == 0 ? 0 : -EBADMSG;
}

void json_out_init(struct json_out *o, char *buf, size_t size)
{
        *o = (struct json_out){.buf = buf, .size = size};
}

/* The escape for a byte that cannot stand for itself in a JSON string. */
static size_t escape_byte(unsigned char c, char esc[6])
{
        static const char hex[] = "0123456789abcdef";

        esc[0] = '\\';
        switch (c) {
        case '"':
        case '\\':
                esc[1] = (char)c;
                return 2;
        case '\b':
                esc[1] = 'b';
                return 2;
        case '\f':
                esc[1] = 'f';
                return 2;
        case '\n':
                esc[1] = 'n';
                return 2;
        case '\r':
                esc[1] = 'r';
                return 2;
        case '\t':
                esc[1] = 't';
                return 2;
        default:
                memcpy(esc + 1, "u00", 3);
                esc[4] = hex[c >> 4];
                esc[5] = hex[c & 0xf];
                return 6;
        }
}

void json_out_string(struct json_out *o, const char *s)
{
        const char *end = s + strlen(s);

        json_out_raw(o, "\"", 1);
        for (;;) {
                const char *run = s;
                char esc[6];

                /* Runs of bytes that stand for themselves go out in one copy. */
                s = plain_words(s, end, false);
                while ((unsigned char)*s >= 0x20 && *s != '"' && *s != '\\')
                        s++;
                json_out_raw(o, run, (size_t)(s - run));
                if (*s == '\0')
                        break;
                json_out_raw(o, esc, escape_byte((unsigned char)*s, esc));
                s++;
        }
        json_out_raw(o, "\"", 1);
}

int json_out_done(const struct json_out *o)
{
        return o->overflow ? -ENOBUFS : (int)o->len;
}
