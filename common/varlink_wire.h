/* SPDX-License-Identifier: MIT */
/*
 * Varlink on the wire, without a JSON library: the framing and a small
 * blocking transport.
 *
 * A Varlink message is one JSON object followed by a NUL byte.  The framer
 * (varlink_buffer) cuts a byte stream into such messages for the daemon and
 * its clients; the transport calls keep one deadline on the monotonic clock
 * for connect, send and receive, so a stalled daemon never hangs the caller
 * (the PAM module runs inside sshd).
 *
 * Nothing here reads or writes JSON: the PAM module links only this part,
 * and so only libc, and reads its one reply with json_scan.h.  The JSON
 * side (call decoding, replies as trees) is in varlink.h.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"

#define VARLINK_DEFAULT_MAX_MESSAGE (64u * 1024u)

/* Growing input buffer that hands out complete NUL-terminated messages. */
struct varlink_buffer {
        char *data;
        size_t size;     /* bytes in data */
        size_t consumed; /* bytes at the front already handed out */
        size_t alloc;
        size_t max_message;
        bool secret; /* erase memory before freeing or moving it */
};

void varlink_buffer_init(struct varlink_buffer *b, size_t max_message, bool secret);
void varlink_buffer_done(struct varlink_buffer *b);

/*
 * Room to read into: at least `min` free bytes at `*ret_ptr`, `*ret_len` of
 * them.  Then varlink_buffer_commit(b, n) after reading n bytes.
 */
int varlink_buffer_reserve(struct varlink_buffer *b, size_t min, char **ret_ptr,
                           size_t *ret_len) _warn_unused_;
void varlink_buffer_commit(struct varlink_buffer *b, size_t n);

/*
 * Next complete message: 1 with `*ret_msg` (NUL-terminated, valid until the
 * next call on `b`) and its length without the NUL; 0 if none is complete
 * yet; -EMSGSIZE if the pending message already exceeds max_message.
 */
int varlink_buffer_next(struct varlink_buffer *b, const char **ret_msg,
                        size_t *ret_len) _warn_unused_;

/* Whether bytes of an incomplete message are pending. */
bool varlink_buffer_pending(const struct varlink_buffer *b);

/* --- Client transport --- */

/* Deadline helpers on CLOCK_MONOTONIC, in µs. */
uint64_t varlink_now_usec(void);

/*
 * Connect to the UNIX socket at `path` before `deadline`.  The fd is
 * non-blocking, close-on-exec and never 0, 1 or 2.  On success, the peer's
 * uid in `*ret_peer_uid` (if non-NULL).  Negative errno: -ENOENT /
 * -ECONNREFUSED when no daemon listens, -ETIMEDOUT.
 */
int varlink_connect(const char *path, uint64_t deadline, int *ret_fd,
                    uid_t *ret_peer_uid) _warn_unused_;

/* Send one message (with its NUL) completely before `deadline`. */
int varlink_send(int fd, const char *msg, size_t len, uint64_t deadline) _warn_unused_;

/*
 * Read from `fd` into `b` until it holds one complete message, before
 * `deadline`: 0 with `*ret_msg` and `*ret_len` as varlink_buffer_next() gives
 * them, -ECONNRESET if the peer closed the connection first, -EMSGSIZE,
 * -ETIMEDOUT or another negative errno.  The bytes are not looked at.
 */
int varlink_recv_message(int fd, struct varlink_buffer *b, uint64_t deadline, const char **ret_msg,
                         size_t *ret_len) _warn_unused_;
