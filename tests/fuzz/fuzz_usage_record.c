/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes usage_entry_decode() and usage_sources_decode()
 * (apikeyd/store/usage_record.c): a key's use and its known sources as read
 * back from the keystore's usage database, which a crash, a bad disk or a
 * hostile copy of the database may have mangled.  The first byte picks the
 * decoder; the rest is the stored value, in a heap block of exactly its
 * size.  Checks that every string lies inside the buffer, within its
 * bound, and that encoding what decoded gives back the same bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "usage_record.h"

static void check_inside(const char *s, const uint8_t *buf, size_t size, size_t max, int required)
{
        if (!s) {
                CHECK(!required);
                return;
        }
        CHECK((const uint8_t *)s >= buf && (const uint8_t *)s < buf + size);
        CHECK((const uint8_t *)s + strlen(s) < buf + size);
        CHECK(strlen(s) <= max);
}

static void entry(const uint8_t *data, size_t size)
{
        struct usage_entry e;
        void *again = NULL;
        size_t again_len = 0;
        int r = usage_entry_decode(data, size, &e);

        CHECK(r == 0 || r == -EBADMSG);
        if (r < 0)
                return;
        check_inside(e.code, data, size, USAGE_CODE_MAX, 1);
        CHECK(e.code[0] != '\0');
        check_inside(e.service, data, size, USAGE_STRING_MAX, 0);
        check_inside(e.rhost, data, size, USAGE_STRING_MAX, 0);
        check_inside(e.tty, data, size, USAGE_STRING_MAX, 0);
        CHECK(usage_entry_encode(&e, &again, &again_len) == 0);
        CHECK(again_len == size && memcmp(again, data, size) == 0);
        free(again);
}

static void sources(const uint8_t *data, size_t size)
{
        struct usage_source s[USAGE_SOURCES_MAX];
        void *again = NULL;
        size_t n = 0, again_len = 0;
        int r = usage_sources_decode(data, size, s, &n);

        CHECK(r == 0 || r == -EBADMSG);
        if (r < 0)
                return;
        CHECK(n <= USAGE_SOURCES_MAX);
        for (size_t i = 0; i < n; i++) {
                check_inside(s[i].name, data, size, USAGE_STRING_MAX, 1);
                CHECK(s[i].kind == USAGE_SOURCE_RHOST || s[i].kind == USAGE_SOURCE_SERVICE);
                CHECK(s[i].kind != USAGE_SOURCE_RHOST || s[i].name[0] != '\0');
        }
        CHECK(usage_sources_encode(s, n, &again, &again_len) == 0);
        CHECK(again_len == size && memcmp(again, data, size) == 0);
        free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        uint8_t *copy;

        if (size == 0)
                return 0;
        /* Exactly the value's size, so reading past it is caught. */
        copy = malloc(size - 1 ? size - 1 : 1);
        CHECK(copy != NULL);
        memcpy(copy, data + 1, size - 1);
        if (data[0] & 1)
                sources(copy, size - 1);
        else
                entry(copy, size - 1);
        free(copy);
        return 0;
}
