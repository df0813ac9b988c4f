/* SPDX-License-Identifier: MIT */
/*
 * The writer: one thread that owns the keystore's write transactions, so
 * the event loop never waits for an fsync.  Changes queue in the order
 * they are submitted; whatever queued while the previous commit was being
 * synced is committed as one group (keystore_write_group(): one fsync for
 * many, each change still atomic with its audit record and answered on
 * its own).  Each change's completion runs back on the loop, in
 * submission order, once its group is committed and synced.
 *
 * Without a thread (`threaded` false, for fuzzers and tests) the writes
 * run on the loop from a deferred event: the same order and the same
 * completions, one event later.
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-event.h>

#include "keystore.h"
#include "macro.h"

struct writer;

struct write_op {
        struct write_op *next;
        /*
         * On the writer's thread, in the op's own transaction `tx` (see
         * struct keystore_write; it may run more than once).  NULL:
         * nothing to write; the op completes once every op submitted
         * before it has.
         */
        int (*apply)(struct keystore_tx *tx, struct write_op *op);
        /* On the loop: `r` is apply's result, or the group's error. */
        void (*done)(struct write_op *op, int r);
        int result;
};

int writer_new(sd_event *event, struct keystore *ks, bool threaded,
               struct writer **ret) _warn_unused_;
/* Queue `op`; its done() runs later, from the loop (never inside this call). */
void writer_submit(struct writer *w, struct write_op *op);
/* Ops submitted whose done() has not run yet. */
unsigned writer_pending(const struct writer *w);
/* Wait until every op submitted is written and its done() has run (shutdown). */
void writer_drain(struct writer *w);
/* Drain, stop the thread and free. */
void writer_free(struct writer *w);
