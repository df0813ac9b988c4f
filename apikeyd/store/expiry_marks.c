/* SPDX-License-Identifier: MIT */
/* The stored form of the expiry warnings given; see expiry_marks.h. */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "expiry_marks.h"

#define EXPIRY_MARKS_VERSION 1

int expiry_marks_encode(const struct expiry_mark *m, size_t n, void **ret_buf, size_t *ret_len)
{
        size_t len = 1 + n * EXPIRY_MARK_SIZE;
        uint8_t *buf, *p;

        for (size_t i = 0; i < n; i++)
                if (!token_id_valid(m[i].id))
                        return -EINVAL;
        buf = malloc(len);
        if (!buf)
                return -ENOMEM;
        p = buf;
        *p++ = EXPIRY_MARKS_VERSION;
        for (size_t i = 0; i < n; i++) {
                uint64_t le[2] = {htole64(m[i].expires_at), htole64(m[i].warned)};

                memcpy(p, m[i].id, TOKEN_ID_LEN);
                memcpy(p + TOKEN_ID_LEN, le, sizeof(le));
                p += EXPIRY_MARK_SIZE;
        }
        *ret_buf = buf;
        *ret_len = len;
        return 0;
}

int expiry_marks_decode(const void *buf, size_t len, struct expiry_mark **ret, size_t *ret_n)
{
        const uint8_t *b = buf;
        struct expiry_mark *m = NULL;
        size_t n;

        if (len < 1 || b[0] != EXPIRY_MARKS_VERSION || (len - 1) % EXPIRY_MARK_SIZE != 0)
                return -EBADMSG;
        n = (len - 1) / EXPIRY_MARK_SIZE;
        if (n > 0 && !(m = calloc(n, sizeof(*m))))
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const uint8_t *p = b + 1 + i * EXPIRY_MARK_SIZE;
                uint64_t le[2];

                memcpy(m[i].id, p, TOKEN_ID_LEN);
                m[i].id[TOKEN_ID_LEN] = '\0';
                memcpy(le, p + TOKEN_ID_LEN, sizeof(le));
                m[i].expires_at = le64toh(le[0]);
                m[i].warned = le64toh(le[1]);
                if (!token_id_valid(m[i].id)) {
                        free(m);
                        return -EBADMSG;
                }
        }
        *ret = m;
        *ret_n = n;
        return 0;
}
