/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes audit_record_decode() (apikeyd/store/audit_record.c): an audit event as
 * read back from the keystore, which a crash, a bad disk or a hostile copy
 * of the database may have mangled.  The input is the stored value, in a
 * heap block of exactly its size.  Checks that every string of the view
 * lies inside the buffer, that the required ones are there, and that
 * encoding the view again gives back the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_record.h"
#include "fuzz.h"

static void check_inside(const char *s, const uint8_t *buf, size_t size, int required)
{
        if (!s) {
                CHECK(!required);
                return;
        }
        CHECK((const uint8_t *)s >= buf && (const uint8_t *)s < buf + size);
        CHECK((const uint8_t *)s + strlen(s) < buf + size);
        CHECK(strlen(s) > 0 && strlen(s) <= AUDIT_STRING_MAX);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct audit_event ev;
        void *again = NULL;
        size_t again_len = 0;
        int r;

        r = audit_record_decode(data, size, &ev);
        CHECK(r == 0 || r == -EBADMSG);
        if (r < 0)
                return 0;

        CHECK(ev.seq == 0);
        check_inside(ev.actor, data, size, 1);
        check_inside(ev.action, data, size, 1);
        check_inside(ev.key_id, data, size, 0);
        check_inside(ev.result, data, size, 1);
        check_inside(ev.detail, data, size, 0);

        r = audit_record_encode(&ev, &again, &again_len);
        CHECK(r == 0);
        CHECK(again_len == size);
        CHECK(memcmp(again, data, size) == 0);
        free(again);
        return 0;
}
