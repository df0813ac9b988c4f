/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the Varlink framer (struct varlink_buffer in common/varlink_wire.c) that
 * cuts the daemon's and the clients' byte streams into NUL-terminated
 * messages, against a plain model of the same stream.
 *
 * Input: byte 0 chooses the buffer (bit 0: secret, i.e. erasing; bits 1-7:
 * max_message = 4 * value, 0 for the default).  Then, repeatedly, one
 * control byte c and up to c bytes of stream: the framer is asked for room
 * of at least (c % 8 ? c : 4096 + c) bytes, the bytes are committed, and
 * every complete message is taken out.  Each message must be exactly the
 * next NUL-delimited piece of the stream, the size limit must trip exactly
 * when the model says so, and "pending" must match what is left.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "varlink_wire.h"
#include "fuzz.h"

struct model {
        char *bytes; /* every byte committed so far */
        size_t size, consumed;
        size_t max_message;
};

/* What varlink_buffer_next() must answer next: 1, 0 or -EMSGSIZE, and the message. */
static int model_next(const struct model *m, size_t *ret_len)
{
        size_t avail = m->size - m->consumed;
        const char *nul = memchr(m->bytes + m->consumed, '\0', avail);

        if (!nul)
                return avail > m->max_message ? -EMSGSIZE : 0;
        *ret_len = (size_t)(nul - (m->bytes + m->consumed));
        return *ret_len > m->max_message ? -EMSGSIZE : 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct varlink_buffer b;
        struct model m = {0};
        size_t pos = 1;
        bool closed = false;

        if (size < 1)
                return 0;
        varlink_buffer_init(&b, (size_t)(data[0] >> 1) * 4, data[0] & 1);
        m.max_message = b.max_message;
        CHECK(m.max_message ==
              (data[0] >> 1 ? (size_t)(data[0] >> 1) * 4 : VARLINK_DEFAULT_MAX_MESSAGE));
        m.bytes = malloc(size);
        if (!m.bytes)
                return 0;

        /* A fresh buffer has nothing to hand out, as varlink_recv() first asks. */
        {
                const char *msg = NULL;
                size_t len = 0;

                CHECK(varlink_buffer_next(&b, &msg, &len) == 0);
                CHECK(!varlink_buffer_pending(&b));
        }

        while (pos < size && !closed) {
                uint8_t c = data[pos++];
                size_t want = c % 8 ? c : 4096u + c, n = c, room = 0;
                char *p = NULL;

                CHECK(varlink_buffer_reserve(&b, want, &p, &room) == 0);
                CHECK(p != NULL && room >= want);
                if (n > size - pos)
                        n = size - pos;
                /* Touch the whole room: it must all be ours. */
                memset(p, 0xa5, room);
                memcpy(p, data + pos, n);
                memcpy(m.bytes + m.size, data + pos, n);
                pos += n;
                m.size += n;
                varlink_buffer_commit(&b, n);

                for (;;) {
                        const char *msg = NULL;
                        size_t len = 0, mlen = 0;
                        int r = varlink_buffer_next(&b, &msg, &len);
                        int mr = model_next(&m, &mlen);

                        CHECK(r == mr);
                        if (r == -EMSGSIZE) {
                                /* The daemon answers MessageTooLarge and closes. */
                                closed = true;
                                break;
                        }
                        if (r == 0)
                                break;
                        CHECK(len == mlen);
                        CHECK(msg[len] == '\0');
                        CHECK(memcmp(msg, m.bytes + m.consumed, len) == 0);
                        m.consumed += len + 1;
                }
                if (!closed)
                        CHECK(varlink_buffer_pending(&b) == (m.size > m.consumed));
        }

        varlink_buffer_done(&b);
        CHECK(b.data == NULL && b.size == 0 && b.alloc == 0);
        free(m.bytes);
        return 0;
}
