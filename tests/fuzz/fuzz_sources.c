/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes a key's sources (apikeyd/store/sources.c): the entries a caller
 * sends to Create and Update, and the rhost every Verify of a key with
 * sources is matched with.  The input is lines: the first is the rhost,
 * the others (up to KEY_SOURCES_MAX) are entries.  Checks that a refusal
 * says why, that what parses lies within itself, that an address entry
 * lets in its own address (and a block its network address), that a
 * checked list lies within itself, and that an rhost let in by a list is
 * let in by a list it lies within.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz.h"
#include "record.h"
#include "sources.h"

#define MAX_LINES (KEY_SOURCES_MAX + 1)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text = malloc(size + 1), *lines[MAX_LINES];
        size_t n = 0;

        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';
        for (char *p = text; n < MAX_LINES;) {
                lines[n++] = p;
                p = strchr(p, '\n');
                if (!p)
                        break;
                *p++ = '\0';
        }
        const char *rhost = lines[0];
        const char *const *entries = (const char *const *)lines + 1;
        size_t n_entries = n - 1;

        for (size_t i = 0; i < n_entries; i++) {
                struct source_entry e;
                char problem[SOURCE_PROBLEM_MAX] = "";
                int r = source_parse(entries[i], &e, problem);

                CHECK(r == 0 || r == -EINVAL);
                if (r < 0) {
                        CHECK(problem[0] && strlen(problem) < SOURCE_PROBLEM_MAX);
                        CHECK(!sources_allow(&entries[i], 1, rhost));
                        continue;
                }
                CHECK(source_within(&e, &e));
                CHECK(sources_within(&entries[i], 1, &entries[i], 1));
                if (e.family != AF_UNSPEC) {
                        char addr[INET6_ADDRSTRLEN];
                        CHECK(e.prefix <= (e.family == AF_INET ? 32u : 128u));
                        CHECK(inet_ntop(e.family, e.addr, addr, sizeof(addr)));
                        CHECK(sources_allow(&entries[i], 1, addr));
                } else {
                        CHECK(e.name == entries[i]);
                        CHECK(sources_allow(&entries[i], 1, entries[i]));
                }
        }
        size_t bad = SIZE_MAX;
        char problem[SOURCE_PROBLEM_MAX];
        if (sources_check(entries, n_entries, &bad, problem) == 0) {
                CHECK(sources_within(entries, n_entries, entries, n_entries));
                /* The list without its first entry lies within the list. */
                if (n_entries > 1) {
                        CHECK(sources_within(entries + 1, n_entries - 1, entries, n_entries));
                        if (sources_allow(entries + 1, n_entries - 1, rhost))
                                CHECK(sources_allow(entries, n_entries, rhost));
                }
        } else
                CHECK(bad < n_entries);
        free(text);
        return 0;
}
