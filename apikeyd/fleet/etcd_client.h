/* SPDX-License-Identifier: MIT */
/*
 * An HTTP client for etcd's JSON gateway on libcurl's multi interface,
 * driven by the daemon's sd-event loop: curl's sockets become sd-event io
 * sources and its timer an sd-event time source, so no call here blocks
 * and no thread is started.  A request is a POST of a JSON body to one
 * member; its answer is handed to `done` on the loop.  A streaming request
 * (the watch) hands what arrives to `data` as it arrives instead, and ends
 * with `done` (an error, a timeout, or the server closing it).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "macro.h"

struct etcd_client;
struct etcd_request;

struct etcd_tls {
        const char *cacert, *cert, *key; /* NULL: none (the system's CAs) */
};

int etcd_client_new(sd_event *event, const struct etcd_tls *tls,
                    struct etcd_client **ret) _warn_unused_;
/* Cancels every request still running (their `done` is not called). */
void etcd_client_free(struct etcd_client *c);

/*
 * `r`: 0 when an HTTP answer came (`status` its code, `body` what it
 * said, NUL-terminated; for a stream, what was not handed to `data`, which
 * is nothing), else a negative errno: -ETIMEDOUT (no answer in time, or a
 * stream silent for longer than its low-speed limit), -ECONNREFUSED,
 * -EIO (any other transfer failure; `error` says which).  The request is
 * freed after `done` returns.
 */
typedef void (*etcd_done_fn)(struct etcd_request *req, int r, long status, const char *body,
                             size_t len, const char *error, void *userdata);
/* A stream's bytes; a negative result ends the stream (done gets -ECANCELED). */
typedef int (*etcd_data_fn)(const char *data, size_t len, void *userdata);

struct etcd_post {
        const char *endpoint;    /* http(s)://host:port */
        const char *path;        /* /v3/kv/range */
        const char *body;        /* JSON */
        const char *token;       /* an auth token for the Authorization header, or NULL */
        uint64_t timeout_usec;   /* the whole request; 0 = none (streams) */
        uint64_t low_speed_usec; /* a stream silent this long fails; 0 = no limit */
        bool has_leader;         /* Grpc-Metadata-hasleader: true */
        etcd_data_fn data;       /* NULL: the answer is collected for done */
        etcd_done_fn done;
        void *userdata;
};

int etcd_post(struct etcd_client *c, const struct etcd_post *p,
              struct etcd_request **ret) _warn_unused_;
/* End a request now; its `done` is not called. */
void etcd_request_cancel(struct etcd_request *req);
