/* SPDX-License-Identifier: MIT */
/* apikeyd's answer to Verify, read without allocating; see reply.h. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "json_scan.h"
#include "reply.h"

struct decoder {
        struct json_scan s;
        const char *msg;
        /* The member name just read, and room to unescape an earlier one. */
        char name[VERIFY_REPLY_MAX_NAME + 1];
        char other[VERIFY_REPLY_MAX_NAME + 1];
        struct verify_reply reply;
        /* "key_id" and "expires_at" of a brief answer, beside the key's. */
        char brief_id[TOKEN_ID_LEN + 1];
        char brief_expires_at[TIMESTAMP_MAX];
        bool have_valid, have_code;
};

/* Where an earlier member's name is in the message, without its quotes. */
struct name_span {
        uint32_t offset, len;
};

/* Called with the reader at the value of the member named in d->name. */
typedef int (*member_fn)(struct decoder *d, unsigned depth);

static int value_skip(struct decoder *d, unsigned depth);

/* Whether d->name (`len` bytes) is one of the `n` names already seen in this object. */
static bool name_seen(struct decoder *d, const struct name_span *seen, size_t n, size_t len)
{
        for (size_t i = 0; i < n; i++) {
                const char *raw = d->msg + seen[i].offset;
                struct json_scan t;
                size_t other_len;

                /* Unescaping only shortens a name: the raw text bounds it. */
                if (seen[i].len < len)
                        continue;
                if (!memchr(raw, '\\', seen[i].len)) {
                        if (seen[i].len == len && memcmp(raw, d->name, len) == 0)
                                return true;
                        continue;
                }
                /* "a" and "\u0061" are one name: compare them unescaped.  This
                 * name was read once already, so it reads again. */
                json_scan_init(&t, raw - 1, (size_t)seen[i].len + 2);
                if (json_scan_string(&t, d->other, sizeof(d->other), &other_len) == 0 &&
                    other_len == len && memcmp(d->other, d->name, len) == 0)
                        return true;
        }
        return false;
}

/*
 * Walk the object at the reader, calling `fn` for each member; `depth`
 * containers enclose it.  A repeated name is refused here, at every depth,
 * as JSON_REJECT_DUPLICATES refused it: which of two "code" members counts
 * must never be a question.
 */
static int object_walk(struct decoder *d, unsigned depth, member_fn fn)
{
        struct name_span seen[VERIFY_REPLY_MAX_MEMBERS];
        size_t n = 0;
        int r;

        if (depth >= VERIFY_REPLY_MAX_DEPTH)
                return -EBADMSG;
        r = json_scan_object_begin(&d->s);
        if (r < 0)
                return r;
        for (;;) {
                const char *before = d->s.p, *open, *close;
                size_t len;

                r = json_scan_object_next(&d->s, d->name, sizeof(d->name));
                if (r == -ENOBUFS)
                        return -EBADMSG;
                if (r <= 0)
                        return r;
                if (n == VERIFY_REPLY_MAX_MEMBERS)
                        return -EBADMSG;
                /* Only white space and a comma come before the name, only white
                 * space and the colon after it: its quotes are the first and the
                 * last in what the reader just stepped over. */
                open = memchr(before, '"', (size_t)(d->s.p - before));
                close = memrchr(before, '"', (size_t)(d->s.p - before));
                if (!open || !close || close <= open)
                        return -EBADMSG;
                len = strlen(d->name);
                if (name_seen(d, seen, n, len))
                        return -EBADMSG;
                seen[n++] = (struct name_span){
                    .offset = (uint32_t)(open + 1 - d->msg),
                    .len = (uint32_t)(close - open - 1),
                };
                r = fn(d, depth + 1);
                if (r < 0)
                        return r;
        }
}

static int array_skip(struct decoder *d, unsigned depth)
{
        int r;

        if (depth >= VERIFY_REPLY_MAX_DEPTH)
                return -EBADMSG;
        r = json_scan_array_begin(&d->s);
        if (r < 0)
                return r;
        while ((r = json_scan_array_next(&d->s)) > 0) {
                r = value_skip(d, depth + 1);
                if (r < 0)
                        return r;
        }
        return r;
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

/*
 * Whether jansson reads the number `p` (n bytes, already checked to be
 * JSON): an integer into a long long, anything else with strtod(), which
 * must not overflow.  Reals are judged by the place of their first
 * significant digit, so that no text is copied and no locale consulted.
 */
static bool number_fits(const char *p, size_t n)
{
        const char *end = p + n, *int_start, *int_end;
        bool negative = false, exp_negative = false;
        int64_t e10, exp = 0;

        if (*p == '-') {
                negative = true;
                p++;
        }
        int_start = p;
        while (p < end && is_digit(*p))
                p++;
        int_end = p;
        if (p == end) {
                static const char max[] = "9223372036854775807", min[] = "9223372036854775808";
                size_t digits = (size_t)(int_end - int_start);

                return digits < STRLEN(max) ||
                       (digits == STRLEN(max) &&
                        memcmp(int_start, negative ? min : max, STRLEN(max)) <= 0);
        }

        if (*int_start != '0')
                e10 = (int64_t)(int_end - int_start) - 1;
        else if (*p == '.') {
                /* 0.000ddd: the first digit that is not zero sets the place. */
                const char *f = ++p;

                while (p < end && *p == '0')
                        p++;
                if (p == end || !is_digit(*p))
                        return true; /* zero, whatever the exponent */
                e10 = -(int64_t)(p - f) - 1;
        } else
                return true; /* 0eN */
        while (p < end && *p != 'e' && *p != 'E')
                p++;
        if (p < end) {
                p++;
                if (*p == '+' || *p == '-')
                        exp_negative = *p++ == '-';
                /* Leading zeros are allowed; past a billion the answer is known. */
                for (; p < end; p++)
                        if (exp < 1000000000)
                                exp = exp * 10 + (*p - '0');
        }
        e10 += exp_negative ? -exp : exp;
        return e10 < 308;
}

static int value_skip(struct decoder *d, unsigned depth)
{
        const char *start;
        int r;

        switch (json_scan_peek(&d->s)) {
        case JSON_SCAN_OBJECT:
                return object_walk(d, depth, value_skip);
        case JSON_SCAN_ARRAY:
                return array_skip(d, depth);
        case JSON_SCAN_NUMBER:
                start = d->s.p;
                r = json_scan_skip(&d->s);
                if (r < 0)
                        return r;
                return number_fits(start, (size_t)(d->s.p - start)) ? 0 : -EBADMSG;
        default:
                /* Strings and literals, checked; anything else is refused. */
                return json_scan_skip(&d->s);
        }
}

/* A string into a field, cut after the last whole character that fits. */
static int string_read(struct decoder *d, char *buf, size_t size)
{
        int r;

        /* What the reader wrote before it ran out of room stays, and the
         * zeros after it end it: no string it reads holds a NUL. */
        memset(buf, 0, size);
        r = json_scan_string(&d->s, buf, size, NULL);
        if (r != -ENOBUFS)
                return r;
        return json_scan_skip(&d->s);
}

static bool next_is(struct decoder *d, enum json_scan_type type)
{
        return json_scan_peek(&d->s) == (int)type;
}

static int key_member(struct decoder *d, unsigned depth)
{
        if (STREQ(d->name, "id") && next_is(d, JSON_SCAN_STRING))
                return string_read(d, d->reply.key_id, sizeof(d->reply.key_id));
        if (STREQ(d->name, "expires_at") && next_is(d, JSON_SCAN_STRING))
                return string_read(d, d->reply.expires_at, sizeof(d->reply.expires_at));
        return value_skip(d, depth);
}

static int parameters_member(struct decoder *d, unsigned depth)
{
        int r;

        if (STREQ(d->name, "valid") &&
            (next_is(d, JSON_SCAN_TRUE) || next_is(d, JSON_SCAN_FALSE))) {
                r = json_scan_bool(&d->s, &d->reply.valid);
                d->have_valid = r >= 0;
                return r;
        }
        if (STREQ(d->name, "code") && next_is(d, JSON_SCAN_STRING)) {
                r = string_read(d, d->reply.code, sizeof(d->reply.code));
                d->have_code = r >= 0;
                return r;
        }
        if (STREQ(d->name, "key") && next_is(d, JSON_SCAN_OBJECT))
                return object_walk(d, depth, key_member);
        /* A brief answer's; the key's own, when not empty, win (see verify_reply_decode). */
        if (STREQ(d->name, "key_id") && next_is(d, JSON_SCAN_STRING))
                return string_read(d, d->brief_id, sizeof(d->brief_id));
        if (STREQ(d->name, "expires_at") && next_is(d, JSON_SCAN_STRING))
                return string_read(d, d->brief_expires_at, sizeof(d->brief_expires_at));
        return value_skip(d, depth);
}

static int root_member(struct decoder *d, unsigned depth)
{
        bool continues;

        /* The parameters must be an object: object_walk() refuses anything else. */
        if (STREQ(d->name, "parameters"))
                return object_walk(d, depth, parameters_member);
        if (STREQ(d->name, "error")) {
                d->reply.error = true;
                return string_read(d, d->reply.error_name, sizeof(d->reply.error_name));
        }
        if (STREQ(d->name, "continues"))
                return json_scan_bool(&d->s, &continues);
        return value_skip(d, depth);
}

int verify_reply_decode(const char *msg, size_t len, struct verify_reply *ret)
{
        struct decoder d = {.msg = msg};
        int r;

        /* Names are remembered as 32-bit offsets. */
        if (len > UINT32_MAX)
                return -EBADMSG;
        json_scan_init(&d.s, msg, len);
        r = object_walk(&d, 0, root_member);
        if (r >= 0)
                r = json_scan_finish(&d.s);
        if (r < 0)
                return -EBADMSG;

        if (d.reply.error) {
                struct verify_reply e = {.error = true};

                memcpy(e.error_name, d.reply.error_name, sizeof(e.error_name));
                *ret = e;
                return 0;
        }
        if (!d.have_valid || !d.have_code)
                return -EBADMSG;
        if (!d.reply.key_id[0])
                memcpy(d.reply.key_id, d.brief_id, sizeof(d.brief_id));
        if (!d.reply.expires_at[0])
                memcpy(d.reply.expires_at, d.brief_expires_at, sizeof(d.brief_expires_at));
        *ret = d.reply;
        return 0;
}

int call_reply_decode(const char *msg, size_t len, char *error, size_t size)
{
        static const char *const names[] = {"error"};
        struct json_scan s;
        bool have_error = false;
        size_t i;
        int r;

        if (size == 0)
                return -EINVAL;
        error[0] = '\0';
        json_scan_init(&s, msg, len);
        if (json_scan_object_begin(&s) < 0)
                return -EBADMSG;
        while ((r = json_scan_member(&s, names, ELEMENTSOF(names), &i)) > 0) {
                if (i == 0 && have_error)
                        r = -EBADMSG; /* named twice */
                else if (i == 0) {
                        have_error = true;
                        r = json_scan_string(&s, error, size, NULL);
                        if (r == -ENOBUFS)
                                r = json_scan_skip(&s); /* cut: still an error */
                        else if (r == 0 && !error[0])
                                r = -EBADMSG; /* an empty name is no error's */
                } else
                        r = json_scan_skip(&s);
                if (r < 0)
                        break;
        }
        if (r < 0 || json_scan_finish(&s) < 0) {
                error[0] = '\0';
                return -EBADMSG;
        }
        return 0;
}
