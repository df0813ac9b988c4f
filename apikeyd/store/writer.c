/* SPDX-License-Identifier: MIT */
/* The writer thread and its queues; see writer.h. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "writer.h"

/* Changes committed together at most: bounds the group's transaction. */
#define GROUP_MAX 128

struct writer {
        sd_event *event;
        struct keystore *ks;
        bool threaded;
        unsigned pending; /* the loop's count: submitted, done() not yet run */

        /* Threaded: the thread waits on `wake`, drain on `idle`; the loop
         * hears of finished groups through the eventfd. */
        pthread_t thread;
        bool thread_started;
        pthread_mutex_t lock;
        pthread_cond_t wake, idle;
        int notify_fd;
        sd_event_source *notify;
        /* Without a thread: a deferred event that writes what is queued. */
        sd_event_source *deferred;

        /* Under `lock` when threaded: */
        struct write_op *queue, **queue_tail; /* submitted, not yet taken */
        struct write_op *done, **done_tail;   /* written, done() not yet run */
        bool busy;                            /* a group is being written */
        bool stop;
};

static int op_apply(struct keystore_tx *tx, void *userdata)
{
        struct write_op *op = userdata;

        return op->apply ? op->apply(tx, op) : 0;
}

/* Write the ops of list `ops` (at most GROUP_MAX), setting each one's result. */
static void write_ops(struct keystore *ks, struct write_op *ops)
{
        struct keystore_write writes[GROUP_MAX];
        size_t n = 0;

        for (struct write_op *op = ops; op; op = op->next)
                writes[n++] = (struct keystore_write){.fn = op_apply, .userdata = op};
        (void)keystore_write_group(ks, writes, n);
        n = 0;
        for (struct write_op *op = ops; op; op = op->next)
                op->result = writes[n++].result;
}

/* Detach up to GROUP_MAX ops from the head of the queue. */
static struct write_op *take_group(struct writer *w)
{
        struct write_op *head = w->queue, *last = head;

        for (unsigned n = 1; n < GROUP_MAX && last->next; n++)
                last = last->next;
        w->queue = last->next;
        if (!w->queue)
                w->queue_tail = &w->queue;
        last->next = NULL;
        return head;
}

static void append_done(struct writer *w, struct write_op *ops)
{
        *w->done_tail = ops;
        while (*w->done_tail)
                w->done_tail = &(*w->done_tail)->next;
}

static struct write_op *take_done(struct writer *w)
{
        struct write_op *ops = w->done;

        w->done = NULL;
        w->done_tail = &w->done;
        return ops;
}

static void run_done(struct writer *w, struct write_op *ops)
{
        while (ops) {
                struct write_op *next = ops->next;

                w->pending--;
                ops->next = NULL;
                ops->done(ops, ops->result);
                ops = next;
        }
}

static void *writer_main(void *userdata)
{
        struct writer *w = userdata;

        pthread_mutex_lock(&w->lock);
        for (;;) {
                struct write_op *ops;

                while (!w->queue && !w->stop)
                        pthread_cond_wait(&w->wake, &w->lock);
                if (!w->queue)
                        break;
                /* What queued while the last group was syncing goes together. */
                ops = take_group(w);
                w->busy = true;
                pthread_mutex_unlock(&w->lock);

                write_ops(w->ks, ops);

                pthread_mutex_lock(&w->lock);
                append_done(w, ops);
                w->busy = false;
                pthread_cond_broadcast(&w->idle);
                (void)eventfd_write(w->notify_fd, 1);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

static int on_notify(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct writer *w = userdata;
        struct write_op *ops;
        eventfd_t n;

        (void)eventfd_read(fd, &n);
        pthread_mutex_lock(&w->lock);
        ops = take_done(w);
        pthread_mutex_unlock(&w->lock);
        run_done(w, ops);
        return 0;
}

/* Without a thread: write everything queued, then complete it. */
static void write_inline(struct writer *w)
{
        while (w->queue) {
                struct write_op *ops = take_group(w);

                write_ops(w->ks, ops);
                append_done(w, ops);
        }
        run_done(w, take_done(w));
}

static int on_deferred(sd_event_source *s, void *userdata)
{
        write_inline(userdata);
        return 0;
}

void writer_submit(struct writer *w, struct write_op *op)
{
        op->next = NULL;
        op->result = 0;
        w->pending++;
        if (!w->threaded) {
                *w->queue_tail = op;
                w->queue_tail = &op->next;
                (void)sd_event_source_set_enabled(w->deferred, SD_EVENT_ONESHOT);
                return;
        }
        pthread_mutex_lock(&w->lock);
        *w->queue_tail = op;
        w->queue_tail = &op->next;
        pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->lock);
}

unsigned writer_pending(const struct writer *w)
{
        return w->pending;
}

void writer_drain(struct writer *w)
{
        if (!w)
                return;
        /* done() may submit more, so go on until nothing is left. */
        if (!w->threaded) {
                while (w->queue)
                        write_inline(w);
                return;
        }
        while (w->pending > 0) {
                struct write_op *ops;

                pthread_mutex_lock(&w->lock);
                while (!w->done && (w->queue || w->busy))
                        pthread_cond_wait(&w->idle, &w->lock);
                ops = take_done(w);
                pthread_mutex_unlock(&w->lock);
                run_done(w, ops);
        }
}

void writer_free(struct writer *w)
{
        if (!w)
                return;
        if (w->thread_started) {
                writer_drain(w);
                pthread_mutex_lock(&w->lock);
                w->stop = true;
                pthread_cond_signal(&w->wake);
                pthread_mutex_unlock(&w->lock);
                (void)pthread_join(w->thread, NULL);
        } else
                writer_drain(w);
        sd_event_source_disable_unref(w->notify);
        sd_event_source_disable_unref(w->deferred);
        if (w->notify_fd >= 0)
                close(w->notify_fd);
        if (w->threaded) {
                pthread_cond_destroy(&w->wake);
                pthread_cond_destroy(&w->idle);
                pthread_mutex_destroy(&w->lock);
        }
        sd_event_unref(w->event);
        free(w);
}

static int start_thread(struct writer *w)
{
        sigset_t all, old;
        int r;

        w->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (w->notify_fd < 0)
                return -errno;
        r = sd_event_add_io(w->event, &w->notify, w->notify_fd, EPOLLIN, on_notify, w);
        if (r < 0)
                return r;
        /* Signals are the loop's business (signalfd): none may land here. */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        r = -pthread_create(&w->thread, NULL, writer_main, w);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return r;
        w->thread_started = true;
        return 0;
}

int writer_new(sd_event *event, struct keystore *ks, bool threaded, struct writer **ret)
{
        struct writer *w = calloc(1, sizeof(*w));
        int r;

        if (!w)
                return -ENOMEM;
        w->event = sd_event_ref(event);
        w->ks = ks;
        w->threaded = threaded;
        w->notify_fd = -1;
        w->queue_tail = &w->queue;
        w->done_tail = &w->done;
        if (threaded) {
                pthread_mutex_init(&w->lock, NULL);
                pthread_cond_init(&w->wake, NULL);
                pthread_cond_init(&w->idle, NULL);
                r = start_thread(w);
        } else {
                r = sd_event_add_defer(event, &w->deferred, on_deferred, w);
                if (r >= 0)
                        r = sd_event_source_set_enabled(w->deferred, SD_EVENT_OFF);
        }
        if (r < 0) {
                writer_free(w);
                return r;
        }
        *ret = w;
        return 0;
}
