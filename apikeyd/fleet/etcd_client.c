/* SPDX-License-Identifier: MIT */
/* The etcd gateway's HTTP client on curl's multi interface and sd-event: see etcd_client.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "etcd_client.h"
#include "log.h"

/* An answer larger than this is refused (a range page of 500 keys is far below it). */
#define ANSWER_MAX (64u * 1024 * 1024)

struct etcd_client {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        struct etcd_tls tls;
        struct etcd_request *requests; /* running, a doubly linked list */
        unsigned dispatching;          /* inside check_done(): cancels are deferred */
};

struct etcd_request {
        struct etcd_client *client;
        struct etcd_request *prev, *next;
        CURL *easy;
        struct curl_slist *headers;
        char *body_out; /* the request body, owned: curl reads it during the transfer */
        char *answer;
        size_t len, allocated;
        bool too_big, stopped, canceled;
        etcd_data_fn data;
        etcd_done_fn done;
        void *userdata;
        char error[CURL_ERROR_SIZE];
};

static void request_free(struct etcd_request *req)
{
        struct etcd_client *c = req->client;

        if (req->prev)
                req->prev->next = req->next;
        else if (c->requests == req)
                c->requests = req->next;
        if (req->next)
                req->next->prev = req->prev;
        if (req->easy) {
                curl_multi_remove_handle(c->multi, req->easy);
                curl_easy_cleanup(req->easy);
        }
        curl_slist_free_all(req->headers);
        free(req->body_out);
        free(req->answer);
        free(req);
}

/*
 * The finished transfers' callbacks.  A callback may cancel other
 * requests, whose messages may be queued too: they are only marked then,
 * and freed once every callback has run.
 */
static void check_done(struct etcd_client *c)
{
        CURLMsg *m;
        int left;

        c->dispatching++;
        while ((m = curl_multi_info_read(c->multi, &left))) {
                struct etcd_request *req = NULL;
                long status = 0;
                int r = 0;

                if (m->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&req);
                if (!req || req->canceled)
                        continue;
                switch (m->data.result) {
                case CURLE_OK:
                        curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
                        break;
                case CURLE_OPERATION_TIMEDOUT:
                        r = -ETIMEDOUT;
                        break;
                case CURLE_COULDNT_CONNECT:
                        r = -ECONNREFUSED;
                        break;
                case CURLE_WRITE_ERROR:
                        r = req->too_big ? -EFBIG : -ECANCELED;
                        break;
                default:
                        r = -EIO;
                        break;
                }
                if (r < 0 && !req->error[0])
                        snprintf(req->error, sizeof(req->error), "%s",
                                 curl_easy_strerror(m->data.result));
                if (req->answer)
                        req->answer[req->len] = '\0';
                req->canceled = true; /* done: freed below */
                req->done(req, r, status, req->answer ? req->answer : "", req->len, req->error,
                          req->userdata);
        }
        if (--c->dispatching > 0)
                return;
        for (struct etcd_request *req = c->requests, *next; req; req = next) {
                next = req->next;
                if (req->canceled)
                        request_free(req);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct etcd_client *c = userdata;
        int action = 0, running;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        curl_multi_socket_action(c->multi, fd, action, &running);
        check_done(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct etcd_client *c = userdata;
        int running;

        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(c);
        return 0;
}

/* curl asks to watch a socket for `what`, or to stop watching it. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
        struct etcd_client *c = userp;
        sd_event_source *s = socketp;
        uint32_t events = 0;
        int r;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        sd_event_source_disable_unref(s);
                        curl_multi_assign(c->multi, fd, NULL);
                }
                return 0;
        }
        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;
        if (s)
                return sd_event_source_set_io_events(s, events) < 0 ? -1 : 0;
        r = sd_event_add_io(c->event, &s, fd, events, on_io, c);
        if (r < 0)
                return -1;
        curl_multi_assign(c->multi, fd, s);
        return 0;
}

/* curl asks to be called back in `ms` (0: at once, -1: not at all). */
static int on_curl_timer(CURLM *multi, long ms, void *userp)
{
        struct etcd_client *c = userp;
        struct timespec ts;
        uint64_t now;

        if (ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        now = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
        if (sd_event_source_set_time(c->timer, now + (uint64_t)ms * 1000) < 0)
                return -1;
        return sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
}

int etcd_client_new(sd_event *event, const struct etcd_tls *tls, struct etcd_client **ret)
{
        static bool global;
        struct etcd_client *c;
        int r;

        if (!global) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                global = true;
        }
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(event);
        if (tls)
                c->tls = *tls;
        c->multi = curl_multi_init();
        if (!c->multi) {
                etcd_client_free(c);
                return -ENOMEM;
        }
        /* Accuracy 1 µs: 0 would mean sd-event's default, 250 ms, and curl asks for
         * "at once" (0 ms) to move a transfer on. */
        r = sd_event_add_time(event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_timer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r < 0) {
                etcd_client_free(c);
                return r;
        }
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        *ret = c;
        return 0;
}

void etcd_client_free(struct etcd_client *c)
{
        if (!c)
                return;
        while (c->requests)
                request_free(c->requests);
        if (c->multi)
                curl_multi_cleanup(c->multi);
        sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        free(c);
}

static size_t on_write(char *ptr, size_t size, size_t n, void *userdata)
{
        struct etcd_request *req = userdata;
        size_t len = size * n;

        if (req->data) {
                if (req->data(ptr, len, req->userdata) < 0) {
                        req->stopped = true;
                        return 0; /* CURLE_WRITE_ERROR */
                }
                return len;
        }
        if (req->len + len + 1 > ANSWER_MAX) {
                req->too_big = true;
                return 0;
        }
        if (req->len + len + 1 > req->allocated) {
                size_t want = req->allocated ? req->allocated : 4096;
                char *b;

                while (want < req->len + len + 1)
                        want *= 2;
                b = realloc(req->answer, want);
                if (!b)
                        return 0;
                req->answer = b;
                req->allocated = want;
        }
        memcpy(req->answer + req->len, ptr, len);
        req->len += len;
        return len;
}

int etcd_post(struct etcd_client *c, const struct etcd_post *p, struct etcd_request **ret)
{
        _cleanup_free_ char *url = NULL, *auth = NULL;
        struct etcd_request *req;
        struct curl_slist *h;

        if (asprintf(&url, "%s%s", p->endpoint, p->path) < 0)
                return -ENOMEM;
        req = calloc(1, sizeof(*req));
        if (!req)
                return -ENOMEM;
        req->client = c;
        req->next = c->requests;
        if (c->requests)
                c->requests->prev = req;
        c->requests = req;
        req->data = p->data;
        req->done = p->done;
        req->userdata = p->userdata;
        req->body_out = strdup(p->body);
        req->easy = curl_easy_init();
        if (!req->body_out || !req->easy)
                goto nomem;
        h = curl_slist_append(NULL, "Content-Type: application/json");
        if (!h)
                goto nomem;
        req->headers = h;
        if (p->has_leader &&
            !(h = curl_slist_append(req->headers, "Grpc-Metadata-hasleader: true")))
                goto nomem;
        if (p->token) {
                if (asprintf(&auth, "Authorization: %s", p->token) < 0) {
                        auth = NULL;
                        goto nomem;
                }
                if (!curl_slist_append(req->headers, auth))
                        goto nomem;
        }
        curl_easy_setopt(req->easy, CURLOPT_URL, url);
        curl_easy_setopt(req->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(req->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(req->easy, CURLOPT_HTTPHEADER, req->headers);
        curl_easy_setopt(req->easy, CURLOPT_POSTFIELDS, req->body_out);
        curl_easy_setopt(req->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(req->easy, CURLOPT_WRITEDATA, req);
        curl_easy_setopt(req->easy, CURLOPT_PRIVATE, req);
        curl_easy_setopt(req->easy, CURLOPT_ERRORBUFFER, req->error);
        curl_easy_setopt(req->easy, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt(req->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        if (p->timeout_usec)
                curl_easy_setopt(req->easy, CURLOPT_TIMEOUT_MS, (long)(p->timeout_usec / 1000));
        if (p->low_speed_usec) {
                long secs = (long)((p->low_speed_usec + 999999) / 1000000);

                curl_easy_setopt(req->easy, CURLOPT_LOW_SPEED_LIMIT, 1L);
                curl_easy_setopt(req->easy, CURLOPT_LOW_SPEED_TIME, secs);
        }
        if (c->tls.cacert)
                curl_easy_setopt(req->easy, CURLOPT_CAINFO, c->tls.cacert);
        if (c->tls.cert) {
                curl_easy_setopt(req->easy, CURLOPT_SSLCERT, c->tls.cert);
                curl_easy_setopt(req->easy, CURLOPT_SSLKEY, c->tls.key);
        }
        if (curl_multi_add_handle(c->multi, req->easy) != CURLM_OK)
                goto nomem;
        if (ret)
                *ret = req;
        return 0;
nomem:
        request_free(req);
        return -ENOMEM;
}

void etcd_request_cancel(struct etcd_request *req)
{
        if (!req)
                return;
        if (req->client->dispatching) {
                req->canceled = true;
                return;
        }
        request_free(req);
}
