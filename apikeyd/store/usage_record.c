/* SPDX-License-Identifier: MIT */
/* The stored forms of a key's usage history; see usage_record.h. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "usage_record.h"

#define USAGE_VERSION      1
#define USAGE_FIXED_SIZE   9 /* version, time */
#define USAGE_N_STRINGS    4
#define SOURCES_VERSION    1
#define SOURCES_FIXED_SIZE 2  /* version, count */
#define SOURCE_FIXED_SIZE  11 /* seen_at, kind, length */

static const char **entry_string(struct usage_entry *e, size_t i)
{
        switch (i) {
        case 0:
                return &e->code;
        case 1:
                return &e->service;
        case 2:
                return &e->rhost;
        default:
                return &e->tty;
        }
}

static size_t string_max(size_t i)
{
        return i == 0 ? USAGE_CODE_MAX : USAGE_STRING_MAX;
}

static uint8_t *put_u64(uint8_t *p, uint64_t v)
{
        uint64_t le = htole64(v);

        memcpy(p, &le, sizeof(le));
        return p + sizeof(le);
}

static uint64_t get_u64(const uint8_t *p)
{
        uint64_t le;

        memcpy(&le, p, sizeof(le));
        return le64toh(le);
}

/* A u16 length, the bytes and a NUL. */
static uint8_t *put_string(uint8_t *p, const char *s, size_t n)
{
        uint16_t n_le = htole16((uint16_t)n);

        memcpy(p, &n_le, sizeof(n_le));
        p += sizeof(n_le);
        if (n > 0)
                memcpy(p, s, n);
        p[n] = '\0';
        return p + n + 1;
}

/* The string at `*pos`, at most `max` bytes: its length, or -EBADMSG. */
static int get_string(const uint8_t *b, size_t len, size_t *pos, size_t max, const char **ret)
{
        uint16_t n_le;
        size_t n;

        if (len - *pos < sizeof(n_le))
                return -EBADMSG;
        memcpy(&n_le, b + *pos, sizeof(n_le));
        n = le16toh(n_le);
        *pos += sizeof(n_le);
        if (n > max || len - *pos < n + 1 || b[*pos + n] != '\0' || memchr(b + *pos, '\0', n))
                return -EBADMSG;
        *ret = (const char *)b + *pos;
        *pos += n + 1;
        return (int)n;
}

int usage_entry_encode(const struct usage_entry *e, void **ret_buf, size_t *ret_len)
{
        struct usage_entry c = *e;
        size_t len = USAGE_FIXED_SIZE, lens[USAGE_N_STRINGS];
        uint8_t *buf, *p;

        for (size_t i = 0; i < USAGE_N_STRINGS; i++) {
                const char *s = *entry_string(&c, i);

                lens[i] = s ? strnlen(s, string_max(i) + 1) : 0;
                if (lens[i] > string_max(i) || (i == 0 && lens[i] == 0))
                        return -EINVAL;
                len += 2 + lens[i] + 1;
        }
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        p = buf;
        *p++ = USAGE_VERSION;
        p = put_u64(p, e->at);
        for (size_t i = 0; i < USAGE_N_STRINGS; i++)
                p = put_string(p, *entry_string(&c, i), lens[i]);
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

int usage_entry_decode(const void *buf, size_t len, struct usage_entry *ret)
{
        const uint8_t *b = buf;
        struct usage_entry e = {0};
        size_t pos = USAGE_FIXED_SIZE;

        if (len < USAGE_FIXED_SIZE || b[0] != USAGE_VERSION)
                return -EBADMSG;
        e.at = get_u64(b + 1);
        for (size_t i = 0; i < USAGE_N_STRINGS; i++) {
                const char *s;
                int n = get_string(b, len, &pos, string_max(i), &s);

                if (n < 0 || (i == 0 && n == 0))
                        return -EBADMSG;
                *entry_string(&e, i) = n > 0 ? s : NULL;
        }
        if (pos != len)
                return -EBADMSG;
        *ret = e;
        return 0;
}

static bool source_kind_valid(char kind)
{
        return kind == USAGE_SOURCE_RHOST || kind == USAGE_SOURCE_SERVICE;
}

int usage_sources_encode(const struct usage_source *s, size_t n, void **ret_buf, size_t *ret_len)
{
        size_t len = SOURCES_FIXED_SIZE;
        uint8_t *buf, *p;

        if (n > USAGE_SOURCES_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                size_t l =
                    s[i].name ? strnlen(s[i].name, USAGE_STRING_MAX + 1) : USAGE_STRING_MAX + 1;

                if (l > USAGE_STRING_MAX || !source_kind_valid(s[i].kind) ||
                    (l == 0 && s[i].kind == USAGE_SOURCE_RHOST))
                        return -EINVAL;
                len += SOURCE_FIXED_SIZE + l + 1;
        }
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        p = buf;
        *p++ = SOURCES_VERSION;
        *p++ = (uint8_t)n;
        for (size_t i = 0; i < n; i++) {
                p = put_u64(p, s[i].seen_at);
                *p++ = (uint8_t)s[i].kind;
                p = put_string(p, s[i].name, strlen(s[i].name));
        }
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

int usage_sources_decode(const void *buf, size_t len, struct usage_source *ret, size_t *ret_n)
{
        const uint8_t *b = buf;
        size_t n, pos = SOURCES_FIXED_SIZE;

        if (len < SOURCES_FIXED_SIZE || b[0] != SOURCES_VERSION || b[1] > USAGE_SOURCES_MAX)
                return -EBADMSG;
        n = b[1];
        for (size_t i = 0; i < n; i++) {
                struct usage_source s;
                int l;

                if (len - pos < SOURCE_FIXED_SIZE - 2)
                        return -EBADMSG;
                s.seen_at = get_u64(b + pos);
                s.kind = (char)b[pos + 8];
                pos += 9;
                l = get_string(b, len, &pos, USAGE_STRING_MAX, &s.name);
                if (l < 0 || !source_kind_valid(s.kind) || (l == 0 && s.kind == USAGE_SOURCE_RHOST))
                        return -EBADMSG;
                ret[i] = s;
        }
        if (pos != len)
                return -EBADMSG;
        *ret_n = n;
        return 0;
}
