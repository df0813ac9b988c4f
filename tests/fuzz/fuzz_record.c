/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes record_decode() (apikeyd/store/record.c): the key record as read back
 * from the keystore, which a crash, a bad disk or a hostile copy of the
 * database may have mangled.  The input is the stored value, in a heap
 * block of exactly its size.  Checks that whatever decodes also validates,
 * that every string of the view lies inside the buffer, and that encoding
 * the view again gives back the same bytes (the encoding is canonical; a
 * version 1 record comes back as the same fields in version 2).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "fuzz.h"

static void check_inside(const char *s, const uint8_t *buf, size_t size)
{
        if (!s)
                return;
        CHECK((const uint8_t *)s >= buf && (const uint8_t *)s < buf + size);
        CHECK((const uint8_t *)s + strlen(s) < buf + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct key_record rec;
        void *again = NULL;
        size_t again_len = 0;
        int r;

        r = record_decode(data, size, &rec);
        CHECK(r == 0 || r == -EBADMSG || r == -EPROTONOSUPPORT);
        CHECK(record_decode(data, size, NULL) == r);
        if (r < 0)
                return 0;

        CHECK(record_validate(&rec) == 0);
        CHECK(rec.status != KEY_STATUS_EXPIRED);
        check_inside(rec.name, data, size);
        check_inside(rec.description, data, size);
        check_inside(rec.owner, data, size);
        check_inside(rec.created_by, data, size);
        check_inside(rec.last_used_service, data, size);
        check_inside(rec.last_used_from, data, size);
        for (size_t i = 0; i < rec.n_scope; i++)
                check_inside(rec.scope[i], data, size);
        for (size_t i = 0; i < rec.n_sources; i++)
                check_inside(rec.sources[i], data, size);
        check_inside(rec.disabled_reason, data, size);
        CHECK(rec.uses <= rec.max_uses);

        /* What the API shows of it. */
        CHECK(key_status_to_string(record_effective_status(&rec, rec.created_at)) != NULL);
        CHECK(key_status_to_string(record_effective_status(&rec, UINT64_MAX)) != NULL);
        CHECK(key_role_to_string(rec.role) != NULL);
        CHECK(key_role_from_string(key_role_to_string(rec.role)) == rec.role);
        for (unsigned bit = 1; bit <= KEY_PERM_ALL; bit <<= 1)
                if (rec.permissions & bit)
                        CHECK(key_perm_from_string(key_perm_to_string(bit)) == (int)bit);

        r = record_encode(&rec, &again, &again_len);
        CHECK(r == 0);
        if (data[0] == 1) {
                /* Version 1 is written back as version 2 (it has no extensions): the same fields,
                 * with no flags and no parent between them. */
                CHECK(again_len == size + RECORD_FIXED_SIZE - RECORD_V1_FIXED_SIZE);
                CHECK(((const uint8_t *)again)[0] == 2);
                CHECK(memcmp((const uint8_t *)again + 1, data + 1, RECORD_V1_FIXED_SIZE - 1) == 0);
                CHECK(memcmp((const uint8_t *)again + RECORD_FIXED_SIZE,
                             data + RECORD_V1_FIXED_SIZE, size - RECORD_V1_FIXED_SIZE) == 0);
                for (size_t i = RECORD_V1_FIXED_SIZE; i < RECORD_FIXED_SIZE; i++)
                        CHECK(((const uint8_t *)again)[i] == 0);
        } else {
                CHECK(again_len == size);
                CHECK(memcmp(again, data, size) == 0);
        }
        free(again);
        return 0;
}
