/* SPDX-License-Identifier: MIT */
/*
 * A strict JSON reader and a small JSON writer that allocate nothing.
 *
 * The reader walks one message in place: the caller asks for what it
 * expects next (an object, a member name, a string ...) and gets -EBADMSG
 * for anything else.  It accepts exactly what jansson accepts for the
 * values it reads (RFC 8259, UTF-8 checked, no \u0000, no lone
 * surrogates), so a caller may take a fast path with it and fall back to
 * jansson whenever it refuses; a fuzz target compares the two.  Numbers
 * are only ever skipped.
 *
 * The writer appends to a fixed buffer and remembers an overflow instead
 * of failing each call; check json_out_done() once at the end.
 *
 * Used where jansson costs more than the work itself: the Verify fast path
 * in the daemon and the PAM module's reading of its one reply.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "macro.h"

/* Deepest nesting the reader follows, counting objects and arrays. */
#define JSON_SCAN_MAX_DEPTH 64

enum json_scan_type {
        JSON_SCAN_OBJECT,
        JSON_SCAN_ARRAY,
        JSON_SCAN_STRING,
        JSON_SCAN_NUMBER,
        JSON_SCAN_TRUE,
        JSON_SCAN_FALSE,
        JSON_SCAN_NULL,
};

struct json_scan {
        const char *p, *end;
        unsigned depth;
        uint64_t started; /* bit d-1: the container at depth d has had an element */
};

void json_scan_init(struct json_scan *s, const char *buf, size_t len);

/* The type of the next value (whitespace skipped), or -EBADMSG. */
int json_scan_peek(struct json_scan *s) _warn_unused_;

/* Enter an object or array: 0, or -EBADMSG (not one, or nested too deep). */
int json_scan_object_begin(struct json_scan *s) _warn_unused_;
int json_scan_array_begin(struct json_scan *s) _warn_unused_;

/*
 * The next member of the current object: 1 with its name unescaped into
 * `name` (NUL-terminated) and the reader at its value; 0 when the object
 * ends (the reader is then after it); -EBADMSG; -ENOBUFS if the name does
 * not fit in `size` bytes.
 */
int json_scan_object_next(struct json_scan *s, char *name, size_t size) _warn_unused_;
/*
 * The next member of the current object, its name looked up among the `n`
 * `names` without copying it: 1 with `*ret_index` the index of the name
 * (compared once unescaped, as json_scan_object_next() would give it), or
 * `n` for any other name, and the reader at its value; 0 when the object
 * ends; -EBADMSG.  For decoders that know the names they take.
 */
int json_scan_member(struct json_scan *s, const char *const *names, size_t n,
                     size_t *ret_index) _warn_unused_;
/* The next element of the current array: 1 (the reader is at it), 0 at its end. */
int json_scan_array_next(struct json_scan *s) _warn_unused_;

/*
 * A string value unescaped into `buf` (NUL-terminated; its length in
 * `*ret_len` if non-NULL): 0, -EBADMSG, or -ENOBUFS if it does not fit,
 * and `buf` then holds the longest run of its first whole characters that
 * fits, NUL-terminated (the reader stays at the string).  What was written
 * into `buf` stays there on failure; the caller erases it when it may hold
 * a secret.
 */
int json_scan_string(struct json_scan *s, char *buf, size_t size, size_t *ret_len) _warn_unused_;
/*
 * As json_scan_string(), and `*ret_printable` tells whether the string was
 * written as printable ASCII only (0x20 to 0x7e, no escape): text that
 * needs no further check for control characters or UTF-8.
 */
int json_scan_text(struct json_scan *s, char *buf, size_t size, size_t *ret_len,
                   bool *ret_printable) _warn_unused_;
/* 1 if the next value is a string equal to `want` (at most 32 bytes of
 * printable ASCII but '"' and '\\') once unescaped, 0 if it is another
 * string (the reader is after it either way), or -EBADMSG. */
int json_scan_string_is(struct json_scan *s, const char *want) _warn_unused_;
int json_scan_bool(struct json_scan *s, bool *ret) _warn_unused_;
int json_scan_null(struct json_scan *s) _warn_unused_;
/* Step over one value of any type, checking it. */
int json_scan_skip(struct json_scan *s) _warn_unused_;
/* 0 if only whitespace remains after the top-level value. */
int json_scan_finish(struct json_scan *s) _warn_unused_;

struct json_out {
        char *buf;
        size_t size, len;
        bool overflow;
};

void json_out_init(struct json_out *o, char *buf, size_t size);
/* `n` bytes as they are; inline, as most are a few bytes of a literal. */
static inline void json_out_raw(struct json_out *o, const char *s, size_t n)
{
        if (o->overflow || o->size - o->len < n) {
                o->overflow = true;
                return;
        }
        memcpy(o->buf + o->len, s, n);
        o->len += n;
}
/* A C string, without quotes or escaping (for literal JSON); inline so that
 * a literal's length is known when compiling. */
static inline void json_out_lit(struct json_out *o, const char *s)
{
        json_out_raw(o, s, strlen(s));
}
/* `s` as a quoted JSON string; `s` must be UTF-8. */
void json_out_string(struct json_out *o, const char *s);
/* `,"name":` — the comma unless `first`; `name` is written as it is (no
 * escaping); inline for the same reason as json_out_lit. */
static inline void json_out_name(struct json_out *o, const char *name, bool first)
{
        json_out_raw(o, first ? "\"" : ",\"", first ? 1 : 2);
        json_out_raw(o, name, strlen(name));
        json_out_raw(o, "\":", 2);
}
/* The length written, or -ENOBUFS if the buffer was too small. */
int json_out_done(const struct json_out *o) _warn_unused_;
