/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes expiry_marks_decode() (apikeyd/store/expiry_marks.c): the expiry
 * warnings given, as read back from the keystore's meta database, which a
 * crash, a bad disk or a hostile copy of the database may have mangled.
 * The input is the stored value, in a heap block of exactly its size.
 * Checks that every id is one, and that encoding what decoded gives back
 * the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expiry_marks.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct expiry_mark *m = NULL;
        void *again = NULL;
        size_t n = 0, again_len = 0;
        int r = expiry_marks_decode(data, size, &m, &n);

        CHECK(r == 0 || r == -EBADMSG);
        if (r < 0)
                return 0;
        CHECK((n == 0) == (m == NULL));
        for (size_t i = 0; i < n; i++)
                CHECK(token_id_valid(m[i].id));
        CHECK(expiry_marks_encode(m, n, &again, &again_len) == 0);
        CHECK(again_len == size && memcmp(again, data, size) == 0);
        free(again);
        free(m);
        return 0;
}
