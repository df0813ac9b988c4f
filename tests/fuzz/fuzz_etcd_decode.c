/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the decoders of what etcd's JSON gateway sends (apikeyd/fleet/
 * etcd_decode.c): the input as a watch stream cut at a point the first
 * byte picks (etcd_lines), each line as a watch message, and the whole as
 * a range, a txn and an authenticate answer, and as a host's report and last use.  Checks: the same
 * lines come out however the stream is cut; an accepted message holds what the contract says
 * (events in revision order, keys without NUL, revisions not negative).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "etcd_decode.h"
#include "fuzz.h"

struct seen {
        size_t n, bytes;
        uint64_t hash;
};

static int check_line(const char *line, size_t len, void *userdata)
{
        struct seen *s = userdata;
        struct etcd_watch_message m;
        int r;

        CHECK(len > 0 && memchr(line, '\n', len) == NULL);
        s->n++;
        s->bytes += len;
        for (size_t i = 0; i < len; i++)
                s->hash = s->hash * 1099511628211u ^ (uint8_t)line[i];

        r = etcd_decode_watch_line(line, len, &m);
        CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r == 0) {
                int64_t last = 0;

                CHECK(m.header.revision >= 0 && m.compact_revision >= 0);
                CHECK((m.kind == ETCD_WATCH_EVENTS) == (m.n_events > 0));
                for (size_t i = 0; i < m.n_events; i++) {
                        const struct etcd_kv *kv = &m.events[i].kv;

                        CHECK(kv->key && strlen(kv->key) == kv->key_len);
                        CHECK(kv->key_len <= ETCD_KEY_MAX);
                        CHECK(kv->mod_revision >= last && kv->mod_revision > 0);
                        CHECK(kv->mod_revision <= m.header.revision);
                        CHECK(!kv->value == !kv->value_len);
                        last = kv->mod_revision;
                }
        }
        etcd_watch_message_done(&m);
        return 0;
}

static void feed(const uint8_t *data, size_t size, size_t cut, struct seen *s)
{
        struct etcd_lines l;
        int r;

        etcd_lines_init(&l, 4096);
        r = etcd_lines_feed(&l, (const char *)data, cut, check_line, s);
        if (r == 0)
                r = etcd_lines_feed(&l, (const char *)data + cut, size - cut, check_line, s);
        /* The unfinished last line, as the end of the stream. */
        if (r == 0 && l.len > 0)
                r = check_line(l.buf, l.len, s);
        CHECK(r == 0 || r == -E2BIG);
        if (r == -E2BIG)
                s->n = SIZE_MAX;
        etcd_lines_reset(&l);
        free(l.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct seen a = {}, b = {};
        struct etcd_range range;
        struct etcd_header h;
        char *msg = NULL;
        bool ok;
        int code, r;

        if (size == 0)
                return 0;
        feed(data + 1, size - 1, (data[0] * (size - 1)) / 256, &a);
        feed(data + 1, size - 1, 0, &b);
        if (a.n != SIZE_MAX && b.n != SIZE_MAX) {
                CHECK(a.n == b.n && a.bytes == b.bytes && a.hash == b.hash);
        }

        r = etcd_decode_range((const char *)data, size, &range, &code, &msg);
        CHECK(r == 0 || r == -EBADMSG || r == -EIO || r == -ENOMEM);
        if (r == 0) {
                CHECK(range.header.revision > 0 && range.count >= 0);
                for (size_t i = 0; i < range.n_kvs; i++)
                        CHECK(range.kvs[i].key &&
                              range.kvs[i].mod_revision <= range.header.revision);
                etcd_range_done(&range);
        }
        if (r == -EIO)
                CHECK(msg != NULL && code >= 0);
        free(msg);
        msg = NULL;

        r = etcd_decode_txn((const char *)data, size, &h, &ok, &code, &msg);
        CHECK(r == 0 || r == -EBADMSG || r == -EIO || r == -ENOMEM);
        if (r == 0)
                CHECK(h.revision > 0);
        free(msg);
        msg = NULL;

        {
                char *token = NULL;

                r = etcd_decode_auth((const char *)data, size, &token, &code, &msg);
                CHECK(r == 0 || r == -EBADMSG || r == -EIO || r == -ENOMEM);
                CHECK((r == 0) == (token != NULL));
                for (const char *p = token; p && *p; p++)
                        CHECK(*p > 0x20 && *p < 0x7f);
                free(token);
                free(msg);
        }
        {
                struct etcd_host_report rep;

                r = etcd_decode_host_report(data, size, &rep);
                CHECK(r == 0 || r == -EBADMSG);
                if (r == 0)
                        CHECK(rep.applied_revision >= 0);
        }
        {
                struct etcd_host_use use;

                r = etcd_decode_host_use(data, size, &use);
                CHECK(r == 0 || r == -EBADMSG);
                if (r == 0) {
                        CHECK(use.at > 0);
                        CHECK(strlen(use.service) <= ETCD_USE_TEXT_MAX);
                        CHECK(strlen(use.from) <= ETCD_USE_TEXT_MAX);
                        for (const char *p = use.service; *p; p++)
                                CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
                        for (const char *p = use.from; *p; p++)
                                CHECK((unsigned char)*p >= 0x20 && *p != 0x7f);
                } else
                        CHECK(use.at == 0 && !use.service[0] && !use.from[0]);
        }
        return 0;
}
