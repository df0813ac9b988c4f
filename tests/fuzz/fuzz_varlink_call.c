/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the decoding of Varlink messages in common/varlink.c, both ways:
 *
 *   - varlink_call_parse(), the daemon's reading of a call, on every
 *     NUL-terminated piece of the input; a call that parses must survive
 *     varlink_message_dump() and parse again to the same call;
 *   - varlink_recv(), apikeyctl's reading of replies, on the whole input
 *     as a stream arriving over a socketpair, and varlink_call(), the
 *     one-shot client, on the same stream (the PAM module reads its one
 *     reply without jansson: fuzz_pam_reply).
 *
 * The input is a stream of messages, each a JSON text ended by a NUL, as on
 * the wire; the seeds are shared in spirit with fuzz_requests.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "varlink.h"
#include "fuzz.h"

/* Larger inputs add nothing but time. */
#define INPUT_MAX (64 * 1024)

static void check_call(const char *msg, size_t len)
{
        struct varlink_call call, again;
        char *dump;
        size_t dump_len = 0;
        int r;

        /* A heap copy of exactly the message, as the framer hands it out. */
        char *copy = malloc(len ? len : 1);
        if (!copy)
                return;
        memcpy(copy, msg, len);
        r = varlink_call_parse(copy, len, &call);
        free(copy);
        CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r < 0)
                return;

        CHECK(json_is_object(call.root));
        CHECK(json_is_object(call.parameters));
        CHECK(json_object_get(call.root, "parameters") == call.parameters);
        CHECK(call.method != NULL && call.method[0] != '\0');

        dump = varlink_message_dump(call.root, &dump_len);
        CHECK(dump != NULL);
        CHECK(dump_len == strlen(dump) + 1);
        r = varlink_call_parse(dump, dump_len - 1, &again);
        CHECK(r == 0);
        CHECK(strcmp(call.method, again.method) == 0);
        CHECK(call.oneway == again.oneway && call.more == again.more &&
              call.upgrade == again.upgrade);
        CHECK(json_equal(call.parameters, again.parameters));
        varlink_call_done(&again);
        free(dump);

        varlink_call_done(&call);
        CHECK(call.root == NULL);
}

/* A socketpair with `data` queued at [1] for [0] to read, and [1]'s writing side shut. */
static int queue_stream(const uint8_t *data, size_t size, int ret_fds[2])
{
        size_t done = 0;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, ret_fds) < 0)
                return -errno;
        while (done < size) {
                ssize_t n = send(ret_fds[1], data + done, size - done, MSG_NOSIGNAL);
                if (n <= 0)
                        break; /* what does not fit is simply not sent */
                done += (size_t)n;
        }
        (void)shutdown(ret_fds[1], SHUT_WR);
        return 0;
}

static void check_reply(json_t *reply, const char *error, json_t *parameters)
{
        CHECK(json_is_object(reply));
        CHECK(json_is_object(parameters));
        CHECK(json_object_get(reply, "parameters") == parameters);
        if (error)
                CHECK(json_string_value(json_object_get(reply, "error")) == error);
        else
                CHECK(json_object_get(reply, "error") == NULL);
}

static void check_replies(const uint8_t *data, size_t size)
{
        struct varlink_buffer b;
        int fds[2];

        if (queue_stream(data, size, fds) < 0)
                return;
        varlink_buffer_init(&b, 0, false);
        /* A client reads replies until one is malformed or the stream ends. */
        for (unsigned i = 0; i < 100000; i++) {
                json_t *reply = NULL, *parameters = NULL;
                const char *error = NULL;
                bool continues = false;
                int r;

                r = varlink_recv(fds[0], &b, varlink_now_usec() + 1000000, &reply, &error,
                                 &parameters, &continues);
                if (r < 0) {
                        CHECK(r == -EBADMSG || r == -ECONNRESET || r == -EMSGSIZE || r == -ENOMEM);
                        break;
                }
                check_reply(reply, error, parameters);
                CHECK(continues == json_is_true(json_object_get(reply, "continues")));
                json_decref(reply);
        }
        varlink_buffer_done(&b);
        close(fds[0]);
        close(fds[1]);
}

static void check_one_call(const uint8_t *data, size_t size)
{
        json_t *params, *reply = NULL, *parameters = NULL;
        const char *error = NULL;
        int fds[2], r;

        if (queue_stream(data, size, fds) < 0)
                return;
        params = json_pack("{s:s}", "token", "apk_not_a_token");
        /* The request goes to fds[1], which nobody reads; the reply is already queued. */
        r = varlink_call(fds[0], "io.apikeyd.Keys.Verify", params, varlink_now_usec() + 1000000,
                         &reply, &error, &parameters);
        if (r == 0) {
                check_reply(reply, error, parameters);
                json_decref(reply);
        } else {
                CHECK(r == -EBADMSG || r == -ECONNRESET || r == -EMSGSIZE || r == -ENOMEM);
        }
        json_decref(params);
        close(fds[0]);
        close(fds[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        const char *p = (const char *)data, *end;

        if (size > INPUT_MAX)
                size = INPUT_MAX;
        end = p + size;
        /* Every complete message, and the unterminated rest as if a NUL followed. */
        while (p < end) {
                const char *nul = memchr(p, '\0', (size_t)(end - p));
                size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);

                check_call(p, len);
                p += len + 1;
        }
        check_replies(data, size);
        check_one_call(data, size);
        return 0;
}
