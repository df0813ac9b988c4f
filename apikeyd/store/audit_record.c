/* SPDX-License-Identifier: MIT */
/* The stored form of an audit event; see audit_record.h. */
#include <endian.h>
#include <stdbool.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit_record.h"

#define AUDIT_VERSION    1
#define AUDIT_FIXED_SIZE 9 /* version, time */
#define AUDIT_N_STRINGS  5

static const char **audit_strings(struct audit_event *ev, size_t i)
{
        switch (i) {
        case 0:
                return &ev->actor;
        case 1:
                return &ev->action;
        case 2:
                return &ev->key_id;
        case 3:
                return &ev->result;
        default:
                return &ev->detail;
        }
}

static bool audit_required(size_t i)
{
        return i == 0 || i == 1 || i == 3; /* actor, action, result */
}

int audit_record_encode(const struct audit_event *ev, void **ret_buf, size_t *ret_len)
{
        struct audit_event e = *ev;
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = AUDIT_FIXED_SIZE;
        uint64_t time_le;
        uint8_t *p;

        for (size_t i = 0; i < AUDIT_N_STRINGS; i++) {
                const char *s = *audit_strings(&e, i);
                size_t n = s ? strnlen(s, AUDIT_STRING_MAX + 1) : 0;

                if (n > AUDIT_STRING_MAX || (n == 0 && audit_required(i)))
                        return -EINVAL;
                len += 2 + n + 1;
        }

        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        p = buf;
        *p++ = AUDIT_VERSION;
        time_le = htole64(ev->time);
        memcpy(p, &time_le, sizeof(time_le));
        p += sizeof(time_le);
        for (size_t i = 0; i < AUDIT_N_STRINGS; i++) {
                const char *s = *audit_strings(&e, i);
                uint16_t n = s ? (uint16_t)strlen(s) : 0, n_le = htole16(n);

                memcpy(p, &n_le, sizeof(n_le));
                p += sizeof(n_le);
                if (n > 0)
                        memcpy(p, s, n);
                p[n] = '\0';
                p += n + 1;
        }

        *ret_buf = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int audit_record_decode(const void *buf, size_t len, struct audit_event *ret)
{
        const uint8_t *b = buf;
        struct audit_event ev = {};
        uint64_t time_le;
        size_t pos;

        /* As with records, a newer event format would have come with a newer schema. */
        if (len < AUDIT_FIXED_SIZE || b[0] != AUDIT_VERSION)
                return -EBADMSG;
        memcpy(&time_le, b + 1, sizeof(time_le));
        ev.time = le64toh(time_le);

        pos = AUDIT_FIXED_SIZE;
        for (size_t i = 0; i < AUDIT_N_STRINGS; i++) {
                uint16_t n_le;
                size_t n;

                if (len - pos < sizeof(n_le))
                        return -EBADMSG;
                memcpy(&n_le, b + pos, sizeof(n_le));
                n = le16toh(n_le);
                pos += sizeof(n_le);
                if (n > AUDIT_STRING_MAX || len - pos < n + 1 || b[pos + n] != '\0' ||
                    memchr(b + pos, '\0', n))
                        return -EBADMSG;
                if (n == 0 && audit_required(i))
                        return -EBADMSG;
                *audit_strings(&ev, i) = n > 0 ? (const char *)b + pos : NULL;
                pos += n + 1;
        }
        if (pos != len)
                return -EBADMSG;

        *ret = ev;
        return 0;
}
