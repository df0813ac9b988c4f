/* SPDX-License-Identifier: MIT */
/* Unit tests of the decoders of etcd's JSON gateway (apikeyd/fleet/etcd_decode.c),
 * on messages as Debian 12's etcd 3.4.23 writes them. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "etcd_decode.h"

#define HEADER                                                                                     \
        "\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"                       \
        "\"13668033151171901709\",\"revision\":\"3\",\"raft_term\":\"2\"}"

static int decode(const char *line, struct etcd_watch_message *m)
{
        return etcd_decode_watch_line(line, strlen(line), m);
}

static void test_watch_messages(void **state)
{
        struct etcd_watch_message m;

        assert_int_equal(decode("{\"result\":{" HEADER ",\"created\":true}}", &m), 0);
        assert_int_equal(m.kind, ETCD_WATCH_CREATED);
        assert_true(m.header.cluster_id == 15118495548433857066u);
        assert_true(m.header.revision == 3);
        etcd_watch_message_done(&m);

        /* A PUT has no "type"; keys and values are base64. */
        assert_int_equal(
            decode("{\"result\":{" HEADER ",\"events\":[{\"kv\":{\"key\":\"L2Eva2V5cy94\","
                   "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
                   "\"value\":\"aGk=\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"L2Eva2V5cy95\","
                   "\"mod_revision\":\"3\"}}]}}",
                   &m),
            0);
        assert_int_equal(m.kind, ETCD_WATCH_EVENTS);
        assert_int_equal(m.n_events, 2);
        assert_int_equal(m.events[0].type, ETCD_EVENT_PUT);
        assert_string_equal(m.events[0].kv.key, "/a/keys/x");
        assert_int_equal(m.events[0].kv.value_len, 2);
        assert_memory_equal(m.events[0].kv.value, "hi", 2);
        assert_true(m.events[0].kv.mod_revision == 2 && m.events[0].kv.version == 1);
        assert_int_equal(m.events[1].type, ETCD_EVENT_DELETE);
        assert_string_equal(m.events[1].kv.key, "/a/keys/y");
        assert_null(m.events[1].kv.value);
        etcd_watch_message_done(&m);

        /* A progress notification: a header and nothing else. */
        assert_int_equal(decode("{\"result\":{" HEADER "}}", &m), 0);
        assert_int_equal(m.kind, ETCD_WATCH_PROGRESS);
        assert_true(m.header.revision == 3);
        etcd_watch_message_done(&m);

        /* A watch from a compacted revision: its header has no revision. */
        assert_int_equal(
            decode("{\"result\":{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\","
                   "\"raft_term\":\"2\"},\"canceled\":true,\"compact_revision\":\"3\"}}",
                   &m),
            0);
        assert_int_equal(m.kind, ETCD_WATCH_CANCELED);
        assert_true(m.compact_revision == 3 && m.header.revision == 0);
        etcd_watch_message_done(&m);

        assert_int_equal(
            decode("{\"error\":{\"grpc_code\":14,\"http_code\":503,\"message\":"
                   "\"etcdserver: no leader\",\"http_status\":\"Service Unavailable\"}}",
                   &m),
            0);
        assert_int_equal(m.kind, ETCD_WATCH_ERROR);
        assert_int_equal(m.grpc_code, 14);
        assert_string_equal(m.message, "etcdserver: no leader");
        etcd_watch_message_done(&m);
}

static void test_watch_refused(void **state)
{
        static const char *const bad[] = {
            "",
            "[]",
            "{\"result\":{" HEADER
            ",\"events\":[{\"kv\":{\"key\":\"!!!\",\"mod_revision\":\"2\"}}]}}",
            /* A number as a negative, a float, a hex string, beyond int64. */
            "{\"result\":{\"header\":{\"revision\":\"-1\"}}}",
            "{\"result\":{\"header\":{\"revision\":1.5}}}",
            "{\"result\":{\"header\":{\"revision\":\"0x10\"}}}",
            "{\"result\":{\"header\":{\"revision\":\"9223372036854775808\"}}}",
            /* Events out of order, or after the header's revision. */
            "{\"result\":{" HEADER
            ",\"events\":[{\"kv\":{\"key\":\"YQ==\",\"mod_revision\":\"3\"}},"
            "{\"kv\":{\"key\":\"Yg==\",\"mod_revision\":\"2\"}}]}}",
            "{\"result\":{" HEADER
            ",\"events\":[{\"kv\":{\"key\":\"YQ==\",\"mod_revision\":\"4\"}}]}}",
            /* A key with a NUL in it, an unknown event type, a duplicate field. */
            "{\"result\":{" HEADER
            ",\"events\":[{\"kv\":{\"key\":\"YQBi\",\"mod_revision\":\"2\"}}]}}",
            "{\"result\":{" HEADER ",\"events\":[{\"type\":\"MOVE\",\"kv\":{\"key\":\"YQ==\","
            "\"mod_revision\":\"2\"}}]}}",
            "{\"result\":{" HEADER ",\"created\":true,\"created\":false}}",
        };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct etcd_watch_message m;

                if (decode(bad[i], &m) != -EBADMSG)
                        fail_msg("accepted: %s", bad[i]);
                etcd_watch_message_done(&m);
        }
}

static void test_range_and_txn(void **state)
{
        static const char range[] = "{" HEADER ",\"kvs\":[{\"key\":\"L2Eva2V5cy94\","
                                    "\"create_revision\":\"2\",\"mod_revision\":\"2\","
                                    "\"version\":\"1\",\"value\":\"aGk=\"}],\"more\":true,"
                                    "\"count\":\"7\"}";
        static const char compacted[] =
            "{\"error\":\"etcdserver: mvcc: required revision has been compacted\",\"message\":"
            "\"etcdserver: mvcc: required revision has been compacted\",\"code\":11}";
        static const char txn[] = "{" HEADER ",\"succeeded\":true,\"responses\":[]}";
        struct etcd_range r;
        struct etcd_header h;
        char *msg;
        bool ok;
        int code;

        assert_int_equal(etcd_decode_range(range, strlen(range), &r, &code, &msg), 0);
        assert_true(r.header.revision == 3 && r.more && r.count == 7);
        assert_int_equal(r.n_kvs, 1);
        assert_string_equal(r.kvs[0].key, "/a/keys/x");
        assert_null(msg);
        etcd_range_done(&r);

        /* An empty range has no "kvs" and no "count". */
        assert_int_equal(etcd_decode_range("{" HEADER "}", strlen("{" HEADER "}"), &r, NULL, NULL),
                         0);
        assert_int_equal(r.n_kvs, 0);
        etcd_range_done(&r);

        assert_int_equal(etcd_decode_range(compacted, strlen(compacted), &r, &code, &msg), -EIO);
        assert_int_equal(code, 11);
        assert_string_equal(msg, "etcdserver: mvcc: required revision has been compacted");
        free(msg);

        assert_int_equal(etcd_decode_txn(txn, strlen(txn), &h, &ok, &code, &msg), 0);
        assert_true(ok && h.revision == 3);
        assert_int_equal(
            etcd_decode_txn("{" HEADER "}", strlen("{" HEADER "}"), &h, &ok, NULL, NULL), 0);
        assert_false(ok);
        assert_int_equal(etcd_decode_txn("{}", 2, &h, &ok, NULL, NULL), -EBADMSG);
}

static void test_auth(void **state)
{
        static const char ok[] = "{" HEADER ",\"token\":\"LSQvnSjUOKELmFrA.15\"}";
        static const char refused[] =
            "{\"error\":\"etcdserver: authentication failed, invalid user ID or password\","
            "\"message\":\"etcdserver: authentication failed, invalid user ID or password\","
            "\"code\":3}";
        static const char newline[] = "{" HEADER ",\"token\":\"a\\r\\nX-Evil: 1\"}";
        char *token, *msg;
        int code;

        assert_int_equal(etcd_decode_auth(ok, strlen(ok), &token, &code, &msg), 0);
        assert_string_equal(token, "LSQvnSjUOKELmFrA.15");
        free(token);
        assert_int_equal(etcd_decode_auth(refused, strlen(refused), &token, &code, &msg), -EIO);
        assert_int_equal(code, 3);
        assert_string_equal(msg, "etcdserver: authentication failed, invalid user ID or password");
        assert_null(token);
        free(msg);
        /* A token that would add a header line of its own is refused. */
        assert_int_equal(etcd_decode_auth(newline, strlen(newline), &token, NULL, NULL), -EBADMSG);
}

static void test_host_report(void **state)
{
        static const char ok[] = "{\"applied_revision\":\"123\",\"reported_at\":1700000000000000,"
                                 "\"later\":[1]}";
        struct etcd_host_report rep;

        assert_int_equal(etcd_decode_host_report(ok, strlen(ok), &rep), 0);
        assert_true(rep.applied_revision == 123 && rep.reported_at == 1700000000000000u);
        assert_int_equal(etcd_decode_host_report("{\"applied_revision\":\"-3\"}", 22, &rep),
                         -EBADMSG);
        assert_int_equal(etcd_decode_host_report("forged", 6, &rep), -EBADMSG);
        assert_int_equal(etcd_decode_host_report(NULL, 0, &rep), -EBADMSG);
}

static void test_host_use(void **state)
{
        static const char ok[] = "{\"at\":\"1700000000000000\",\"service\":\"sshd\","
                                 "\"from\":\"192.0.2.7\",\"later\":1}";
        static const char bare[] = "{\"at\":1700000000000000}";
        static const char control[] = "{\"at\":1,\"from\":\"a\\u001bb\"}";
        static const char c1[] = "{\"at\":1,\"service\":\"a\\u0085b\"}";
        static const char nul[] = "{\"at\":1,\"service\":\"a\\u0000b\"}";
        static const char no_time[] = "{\"service\":\"sshd\"}";
        static const char not_text[] = "{\"at\":1,\"from\":7}";
        char longer[400];
        struct etcd_host_use u;

        assert_int_equal(etcd_decode_host_use(ok, strlen(ok), &u), 0);
        assert_true(u.at == 1700000000000000u);
        assert_string_equal(u.service, "sshd");
        assert_string_equal(u.from, "192.0.2.7");
        assert_int_equal(etcd_decode_host_use(bare, strlen(bare), &u), 0);
        assert_true(u.at == 1700000000000000u && !u.service[0] && !u.from[0]);
        assert_int_equal(etcd_decode_host_use(control, strlen(control), &u), -EBADMSG);
        assert_int_equal(etcd_decode_host_use(c1, strlen(c1), &u), -EBADMSG);
        assert_int_equal(etcd_decode_host_use(nul, strlen(nul), &u), -EBADMSG);
        assert_int_equal(etcd_decode_host_use(no_time, strlen(no_time), &u), -EBADMSG);
        assert_int_equal(etcd_decode_host_use(not_text, strlen(not_text), &u), -EBADMSG);
        assert_int_equal(etcd_decode_host_use("forged", 6, &u), -EBADMSG);
        assert_int_equal(etcd_decode_host_use(NULL, 0, &u), -EBADMSG);
        /* 256 bytes of text are taken, 257 are not. */
        snprintf(longer, sizeof(longer), "{\"at\":1,\"from\":\"%0256d\"}", 0);
        assert_int_equal(etcd_decode_host_use(longer, strlen(longer), &u), 0);
        assert_int_equal(strlen(u.from), 256);
        snprintf(longer, sizeof(longer), "{\"at\":1,\"from\":\"%0257d\"}", 0);
        assert_int_equal(etcd_decode_host_use(longer, strlen(longer), &u), -EBADMSG);
}

struct collected {
        char lines[8][64];
        size_t n;
};

static int collect(const char *line, size_t len, void *userdata)
{
        struct collected *c = userdata;

        assert_true(c->n < 8 && len < 64);
        memcpy(c->lines[c->n], line, len);
        c->lines[c->n++][len] = '\0';
        return 0;
}

static void test_lines(void **state)
{
        static const char stream[] = "{\"a\":1}\r\n\n{\"b\":2}\n{\"c\"";
        struct etcd_lines l;

        /* However the stream is cut, the same lines. */
        for (size_t cut = 0; cut <= strlen(stream); cut++) {
                struct collected c = {};

                etcd_lines_init(&l, 64);
                assert_int_equal(etcd_lines_feed(&l, stream, cut, collect, &c), 0);
                assert_int_equal(
                    etcd_lines_feed(&l, stream + cut, strlen(stream) - cut, collect, &c), 0);
                assert_int_equal(c.n, 2);
                assert_string_equal(c.lines[0], "{\"a\":1}");
                assert_string_equal(c.lines[1], "{\"b\":2}");
                assert_int_equal(etcd_lines_feed(&l, ":3}\n", 4, collect, &c), 0);
                assert_string_equal(c.lines[2], "{\"c\":3}");
                etcd_lines_reset(&l);
                free(l.buf);
        }

        /* A line longer than the limit stops the stream. */
        {
                struct collected c = {};
                char big[100];

                memset(big, 'x', sizeof(big));
                etcd_lines_init(&l, 64);
                assert_int_equal(etcd_lines_feed(&l, big, sizeof(big), collect, &c), -E2BIG);
                assert_int_equal(etcd_lines_feed(&l, "\n", 1, collect, &c), -E2BIG);
                assert_int_equal(c.n, 0);
                etcd_lines_reset(&l);
                assert_int_equal(etcd_lines_feed(&l, "ok\n", 3, collect, &c), 0);
                assert_int_equal(c.n, 1);
                etcd_lines_reset(&l);
                free(l.buf);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_watch_messages), cmocka_unit_test(test_watch_refused),
            cmocka_unit_test(test_range_and_txn),  cmocka_unit_test(test_auth),
            cmocka_unit_test(test_host_report),    cmocka_unit_test(test_host_use),
            cmocka_unit_test(test_lines),
        };
        return cmocka_run_group_tests_name("etcd_decode", tests, NULL, NULL);
}
