/* SPDX-License-Identifier: MIT */
/* The fleet replica: see fleet.h for what it does, etcd_decode.h for what etcd sends. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "fleet_internal.h"
#include "log.h"
#include "timeutil.h"

uint64_t fleet_now_mono(void)
{
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec / 1000;
}

const char *fleet_endpoint(const struct fleet *f)
{
        return f->endpoints[f->current];
}

_printf_(2, 3) static void set_error(struct fleet *f, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(f->last_error, sizeof(f->last_error), fmt, ap);
        va_end(ap);
}

static void contact(struct fleet *f, const struct etcd_header *h)
{
        f->contact_mono = fleet_now_mono();
        f->contact_real = now_usec();
}

/* Confirmed contact, recent, while following: a member that answers but where
 * the watch cannot be set up (say, a role without read access) leaves the
 * replica behind, which is not online. */
bool fleet_online(const struct fleet *f)
{
        return f->following && f->contact_mono &&
               fleet_now_mono() - f->contact_mono <= ONLINE_WINDOW;
}

/* ---- what this replica saw of each key ---- */

static size_t modrev_slot(const struct modrev *t, size_t size, const char *id)
{
        uint32_t h = 2166136261u;
        size_t i;

        for (size_t k = 0; k < TOKEN_ID_LEN; k++)
                h = (h ^ (uint8_t)id[k]) * 16777619u;
        for (i = h & (size - 1); t[i].id[0] && memcmp(t[i].id, id, TOKEN_ID_LEN) != 0;
             i = (i + 1) & (size - 1))
                ;
        return i;
}

static void modrev_set(struct fleet *f, const char *id, int64_t rev)
{
        size_t i;

        if (2 * (f->n_modrevs + 1) > f->modrevs_size) {
                size_t size = f->modrevs_size ? f->modrevs_size * 2 : 1024;
                struct modrev *t = calloc(size, sizeof(*t));

                if (!t)
                        return; /* a compare against 0 then fails, and the write is refused */
                for (size_t k = 0; k < f->modrevs_size; k++)
                        if (f->modrevs[k].id[0])
                                t[modrev_slot(t, size, f->modrevs[k].id)] = f->modrevs[k];
                free(f->modrevs);
                f->modrevs = t;
                f->modrevs_size = size;
        }
        i = modrev_slot(f->modrevs, f->modrevs_size, id);
        if (!f->modrevs[i].id[0]) {
                memcpy(f->modrevs[i].id, id, TOKEN_ID_LEN);
                f->n_modrevs++;
        }
        f->modrevs[i].rev = rev;
}

int64_t fleet_modrev_get(const struct fleet *f, const char *id)
{
        size_t i;

        if (!f->modrevs_size)
                return 0;
        i = modrev_slot(f->modrevs, f->modrevs_size, id);
        return f->modrevs[i].id[0] ? f->modrevs[i].rev : 0;
}

/* ---- writing revisions through the writer ---- */

struct fleet_op {
        struct write_op op; /* first: the writer hands it back */
        struct fleet *f;
        struct fleet_apply a;
        unsigned generation; /* f->generation when submitted */
        struct fleet_change *changes;
        void **bufs;
        size_t n_bufs;
};

static int op_apply(struct keystore_tx *tx, struct write_op *op)
{
        struct fleet_op *o = (struct fleet_op *)op;

        return keystore_fleet_apply(keystore_tx_keystore(tx), &o->a);
}

/* Waiters whose revision is applied are answered; with `r` < 0, every one is, with `r`. */
void fleet_waiters_wake(struct fleet *f, int r)
{
        uint64_t now = fleet_now_mono();

        for (struct waiter **w = &f->waiters; *w;) {
                struct waiter *x = *w;
                int result;

                if (r < 0)
                        result = r;
                else if (x->revision > 0 && x->revision <= f->applied)
                        result = 0;
                else if (now > x->deadline)
                        result = -ETIMEDOUT;
                else {
                        w = &x->next;
                        continue;
                }
                *w = x->next;
                x->done(result, x->userdata);
                fleet_waiter_free(x);
        }
}

static void op_done(struct write_op *op, int r)
{
        struct fleet_op *o = (struct fleet_op *)op;
        struct fleet *f = o->f;

        f->ops_pending--;
        if (r < 0 && o->generation != f->generation) {
                /* Submitted before a restart that replaces what it would have written. */
        } else if (r < 0) {
                log_error("fleet: applying etcd revision %lld to the keystore failed: %s; "
                          "resyncing",
                          (long long)o->a.revision, strerror(-r));
                set_error(f, "applying revision %lld failed: %s", (long long)o->a.revision,
                          strerror(-r));
                if (!f->stopping)
                        fleet_restart(f, true);
        } else {
                if (o->a.replace_all)
                        log_info("fleet: resynced %zu keys at etcd revision %lld from %s "
                                 "(%zu removed)",
                                 o->a.n, (long long)o->a.revision, fleet_endpoint(f),
                                 o->a.ret_removed);
                if (o->a.ret_refused)
                        log_warning("fleet: %zu records at etcd revision %lld do not decode; "
                                    "those keys are not served",
                                    o->a.ret_refused, (long long)o->a.revision);
                if (o->a.revision > f->applied || o->a.replace_all)
                        f->applied = o->a.revision;
                if (o->a.contact_at > f->contact_saved)
                        f->contact_saved = o->a.contact_at;
                fleet_waiters_wake(f, 0);
        }
        for (size_t i = 0; i < o->n_bufs; i++)
                free(o->bufs[i]);
        free(o->bufs);
        free(o->changes);
        free(o);
}

/* Hand `n` changes (and the buffers behind them, which the op now owns) to the writer. */
static int submit(struct fleet *f, struct fleet_change *changes, size_t n, void **bufs,
                  size_t n_bufs, int64_t revision, bool replace_all)
{
        struct fleet_op *o = calloc(1, sizeof(*o));

        if (!o) {
                for (size_t i = 0; i < n_bufs; i++)
                        free(bufs[i]);
                free(bufs);
                free(changes);
                return -ENOMEM;
        }
        o->op.apply = op_apply;
        o->op.done = op_done;
        o->f = f;
        o->changes = changes;
        o->bufs = bufs;
        o->n_bufs = n_bufs;
        o->generation = f->generation;
        o->a = (struct fleet_apply){
            .changes = changes,
            .n = n,
            .revision = revision,
            .cluster_id = f->cluster_id,
            .contact_at = f->contact_real,
            .replace_all = replace_all,
            .after = f->queued,
        };
        if (revision > f->queued || replace_all)
                f->queued = revision;
        f->ops_pending++;
        writer_submit(f->writer, &o->op);
        return 0;
}

/* The key id under the keys prefix, or NULL for a key that is not a key record's. */
static const char *key_id_of(const struct fleet *f, const char *key)
{
        size_t n = strlen(f->keys_prefix);

        if (strncmp(key, f->keys_prefix, n) != 0 || !token_id_valid(key + n))
                return NULL;
        return key + n;
}

/* ---- the sync: check, resync, watch ---- */

void fleet_stop_requests(struct fleet *f)
{
        etcd_request_cancel(f->req);
        f->req = NULL;
        etcd_request_cancel(f->watch);
        f->watch = NULL;
        etcd_lines_reset(&f->lines);
}

void fleet_resync_reset(struct resync *rs)
{
        for (size_t i = 0; i < rs->n; i++)
                free(rs->bufs[i]);
        free(rs->bufs);
        free(rs->changes);
        free(rs->next_key);
        *rs = (struct resync){};
}

/* Something failed on this endpoint: the next one, after a jittered backoff. */
static void fail(struct fleet *f)
{
        uint64_t delay;

        fleet_stop_requests(f);
        /* A probe still on its way to the member left behind would fail the next one. */
        etcd_request_cancel(f->probe);
        f->probe = NULL;
        f->following = false;
        fleet_resync_reset(&f->rs);
        f->current = (f->current + 1) % f->n_endpoints;
        f->backoff = f->backoff ? f->backoff * 2 : BACKOFF_MIN;
        if (f->backoff > BACKOFF_MAX)
                f->backoff = BACKOFF_MAX;
        delay = f->backoff + randombytes_uniform((uint32_t)(f->backoff / 2 + 1));
        f->phase = PHASE_WAIT;
        (void)sd_event_source_set_time_relative(f->retry_timer, delay);
        (void)sd_event_source_set_enabled(f->retry_timer, SD_EVENT_ONESHOT);
}

/* Start over now on the same endpoint, with a full resync if asked. */
void fleet_restart(struct fleet *f, bool resync)
{
        f->generation++;
        fleet_stop_requests(f);
        fleet_resync_reset(&f->rs);
        f->force_resync |= resync;
        fleet_start(f);
}

int fleet_on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
        fleet_start(userdata);
        return 0;
}

/* An answer that is not one: note why, and whether to give up on the endpoint. */
bool fleet_answer_failed(struct fleet *f, const char *what, int r, long status, const char *error,
                         int code, const char *message)
{
        /* etcd's own words first: a decoded error answer is -EIO with its message. */
        if (message)
                set_error(f, "%s: %s: %s (gRPC code %d)", fleet_endpoint(f), what, message, code);
        else if (r < 0)
                set_error(f, "%s: %s: %s", fleet_endpoint(f), what,
                          error && *error ? error : strerror(-r));
        else if (status != 200)
                set_error(f, "%s: %s: HTTP status %ld", fleet_endpoint(f), what, status);
        else
                set_error(f, "%s: %s: an answer that is not etcd's", fleet_endpoint(f), what);
        log_warning("fleet: %s", f->last_error);
        /* Unauthenticated: the token expired (or the member restarted); a new one next time. */
        if (code == 16) {
                free(f->token);
                f->token = NULL;
        }
        return true;
}

static void pepper_check(struct fleet *f, const struct etcd_range *rg)
{
        enum pepper_state was = f->pepper;

        if (rg->n_kvs == 0)
                f->pepper = PEPPER_MISSING;
        else if (rg->kvs[0].value_len == PEPPER_FINGERPRINT_SIZE &&
                 pepper_fingerprint_equal(rg->kvs[0].value, f->fp))
                f->pepper = PEPPER_OK;
        else
                f->pepper = PEPPER_DIFFERS;
        if (f->pepper == was)
                return;
        if (f->pepper == PEPPER_DIFFERS)
                log_error("fleet: this host's pepper is not the fleet's (its fingerprint differs "
                          "from %s/pepper-fingerprint in etcd): refusing to serve fleet keys, "
                          "every key answers UNAVAILABLE; install the fleet's pepper",
                          f->cfg->fleet_prefix);
        else if (f->pepper == PEPPER_MISSING && !f->cfg->fleet_manage)
                log_error("fleet: etcd has no %s/pepper-fingerprint yet: refusing to serve fleet "
                          "keys until a host with fleet_manage = yes writes it",
                          f->cfg->fleet_prefix);
        else if (f->pepper == PEPPER_OK && was != PEPPER_UNKNOWN)
                log_info("fleet: the pepper's fingerprint in etcd matches this host's now");
}

static void start_watch(struct fleet *f, int64_t from);
static void resync_page(struct fleet *f);

static void on_fp_written(struct etcd_request *req, int r, long status, const char *body,
                          size_t len, const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL;
        bool ok = false;
        int code = 0;

        f->req = NULL;
        if (r < 0 || etcd_decode_txn(body, len, NULL, &ok, &code, &msg) < 0) {
                fleet_answer_failed(f, "writing the pepper's fingerprint", r, status, error, code,
                                    msg);
                fail(f);
                return;
        }
        /* Written, or another manager was first: check again either way. */
        fleet_start(f);
}

static void write_fingerprint(struct fleet *f)
{
        _cleanup_free_ char *value = etcd_base64(f->fp, sizeof(f->fp)), *body = NULL;

        if (!value || asprintf(&body,
                               "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\","
                               "\"create_revision\":\"0\"}],\"success\":[{\"request_put\":"
                               "{\"key\":\"%s\",\"value\":\"%s\"}}]}",
                               f->fp_key_b64, f->fp_key_b64, value) < 0) {
                fail(f);
                return;
        }
        log_info("fleet: writing this host's pepper fingerprint to %s/pepper-fingerprint",
                 f->cfg->fleet_prefix);
        if (etcd_post(f->client,
                      &(struct etcd_post){.endpoint = fleet_endpoint(f),
                                          .path = "/v3/kv/txn",
                                          .body = body,
                                          .token = f->token,
                                          .timeout_usec = UNARY_TIMEOUT,
                                          .done = on_fp_written,
                                          .userdata = f},
                      &f->req) < 0)
                fail(f);
}

static void on_check(struct etcd_request *req, int r, long status, const char *body, size_t len,
                     const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL;
        struct etcd_range rg = {};
        bool resync;
        int code = 0;

        f->req = NULL;
        if (r < 0 || status != 200 || etcd_decode_range(body, len, &rg, &code, &msg) < 0) {
                fleet_answer_failed(f, "reading the pepper's fingerprint", r, status, error, code,
                                    msg);
                fail(f);
                return;
        }
        contact(f, &rg.header);
        pepper_check(f, &rg);
        if (f->pepper == PEPPER_MISSING && f->cfg->fleet_manage) {
                etcd_range_done(&rg);
                write_fingerprint(f);
                return;
        }
        resync = f->force_resync || f->queued == 0;
        if (f->cluster_id && rg.header.cluster_id != f->cluster_id) {
                log_warning("fleet: %s belongs to another etcd cluster (id %llx, not %llx): "
                            "resyncing",
                            fleet_endpoint(f), (unsigned long long)rg.header.cluster_id,
                            (unsigned long long)f->cluster_id);
                resync = true;
        } else if (rg.header.revision < f->queued) {
                log_warning("fleet: etcd at %s is at revision %lld, behind this replica's %lld: "
                            "resyncing",
                            fleet_endpoint(f), (long long)rg.header.revision, (long long)f->queued);
                resync = true;
        }
        f->cluster_id = rg.header.cluster_id;
        etcd_range_done(&rg);
        if (resync) {
                f->force_resync = false;
                f->phase = PHASE_RESYNC;
                resync_page(f);
        } else
                start_watch(f, f->queued + 1);
}

int fleet_post_range(struct fleet *f, const char *body, uint64_t timeout, etcd_done_fn done,
                     struct etcd_request **ret)
{
        return etcd_post(f->client,
                         &(struct etcd_post){.endpoint = fleet_endpoint(f),
                                             .path = "/v3/kv/range",
                                             .body = body,
                                             .token = f->token,
                                             .timeout_usec = timeout,
                                             .done = done,
                                             .userdata = f},
                         ret);
}

static void on_authenticated(struct etcd_request *req, int r, long status, const char *body,
                             size_t len, const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL;
        int code = 0;

        f->req = NULL;
        free(f->token);
        f->token = NULL;
        if (r < 0 || etcd_decode_auth(body, len, &f->token, &code, &msg) < 0) {
                fleet_answer_failed(f, "authenticating as fleet_user", r, status, error, code, msg);
                fail(f);
                return;
        }
        fleet_start(f);
}

/* etcd's authenticate, as fleet_user with its password. */
static void authenticate(struct fleet *f)
{
        json_t *o = json_pack("{s:s, s:s}", "name", f->cfg->fleet_user, "password", f->password);
        char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;

        json_decref(o);
        f->phase = PHASE_CHECK;
        if (!body || etcd_post(f->client,
                               &(struct etcd_post){.endpoint = fleet_endpoint(f),
                                                   .path = "/v3/auth/authenticate",
                                                   .body = body,
                                                   .timeout_usec = UNARY_TIMEOUT,
                                                   .done = on_authenticated,
                                                   .userdata = f},
                               &f->req) < 0)
                fail(f);
        if (body)
                erase_and_free(body);
}

void fleet_start(struct fleet *f)
{
        _cleanup_free_ char *body = NULL;

        if (f->stopping)
                return;
        if (f->password && !f->token) {
                authenticate(f);
                return;
        }
        f->phase = PHASE_CHECK;
        if (asprintf(&body, "{\"key\":\"%s\"}", f->fp_key_b64) < 0 ||
            fleet_post_range(f, body, UNARY_TIMEOUT, on_check, &f->req) < 0)
                fail(f);
}

static int resync_add(struct resync *rs, const char *id, struct etcd_kv *kv)
{
        if (rs->n == rs->allocated) {
                size_t want = rs->allocated ? rs->allocated * 2 : 64;
                struct fleet_change *c = realloc(rs->changes, want * sizeof(*c));
                void **b;

                if (!c)
                        return -ENOMEM;
                rs->changes = c;
                b = realloc(rs->bufs, want * sizeof(*b));
                if (!b)
                        return -ENOMEM;
                rs->bufs = b;
                rs->allocated = want;
        }
        rs->changes[rs->n] = (struct fleet_change){.record = kv->value ? kv->value : (void *)"",
                                                   .len = kv->value_len};
        memcpy(rs->changes[rs->n].id, id, TOKEN_ID_LEN + 1);
        rs->bufs[rs->n++] = TAKE_PTR(kv->value);
        return 0;
}

static void on_page(struct etcd_request *req, int r, long status, const char *body, size_t len,
                    const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL;
        struct etcd_range rg = {};
        struct resync *rs = &f->rs;
        int code = 0;

        f->req = NULL;
        r = r < 0 ? r : etcd_decode_range(body, len, &rg, &code, &msg);
        if (r == -EIO && code == 11) {
                /* The revision the pages are pinned to was compacted meanwhile. */
                log_info("fleet: the resync's revision %lld was compacted; starting over",
                         (long long)rs->revision);
                fleet_restart(f, true);
                return;
        }
        if (r < 0 || status != 200) {
                fleet_answer_failed(f, "reading the keys", r, status, error, code, msg);
                fail(f);
                return;
        }
        contact(f, &rg.header);
        if (rs->revision == 0)
                rs->revision = rg.header.revision;
        for (size_t i = 0; i < rg.n_kvs; i++) {
                const char *id = key_id_of(f, rg.kvs[i].key);

                if (id)
                        modrev_set(f, id, rg.kvs[i].mod_revision);
                if (id && resync_add(rs, id, &rg.kvs[i]) < 0) {
                        etcd_range_done(&rg);
                        fail(f);
                        return;
                }
        }
        free(rs->next_key);
        rs->next_key = NULL;
        if (rg.more && rg.n_kvs > 0) {
                /* The next page starts just after the last key: the key and a NUL. */
                struct etcd_kv *last = &rg.kvs[rg.n_kvs - 1];
                char *k = malloc(last->key_len + 1);

                if (k) {
                        memcpy(k, last->key, last->key_len);
                        k[last->key_len] = '\0';
                        rs->next_key = etcd_base64(k, last->key_len + 1);
                        free(k);
                }
                etcd_range_done(&rg);
                if (!rs->next_key) {
                        fail(f);
                        return;
                }
                resync_page(f);
                return;
        }
        etcd_range_done(&rg);
        /* Every page read: one transaction replaces the replica. */
        {
                int64_t rev = rs->revision;
                size_t n = rs->n;

                r = submit(f, rs->changes, n, rs->bufs, n, rev, true);
                *rs = (struct resync){};
                if (r < 0) {
                        fail(f);
                        return;
                }
                start_watch(f, rev + 1);
        }
}

static void resync_page(struct fleet *f)
{
        _cleanup_free_ char *body = NULL;
        struct resync *rs = &f->rs;
        int r;

        r = asprintf(&body,
                     "{\"key\":\"%s\",\"range_end\":\"%s\",\"limit\":\"%d\",\"revision\":\"%lld\"}",
                     rs->next_key ? rs->next_key : f->keys_prefix_b64, f->keys_end_b64, RANGE_PAGE,
                     (long long)rs->revision);
        if (r < 0 || fleet_post_range(f, body, RESYNC_TIMEOUT, on_page, &f->req) < 0)
                fail(f);
}

/* One watch message: its events handed to the writer, one op per revision. */
static int on_watch_message(struct fleet *f, struct etcd_watch_message *m)
{
        size_t i = 0;

        switch (m->kind) {
        case ETCD_WATCH_CREATED:
                contact(f, &m->header);
                f->following = true;
                f->reported_mono = 0; /* a report soon: the probe sends it */
                f->backoff = 0;
                f->last_error[0] = '\0';
                log_debug("fleet: watching %s from revision %lld", fleet_endpoint(f),
                          (long long)f->queued + 1);
                return 0;
        case ETCD_WATCH_PROGRESS:
                contact(f, &m->header);
                return 0;
        case ETCD_WATCH_CANCELED:
                if (m->compact_revision > 0) {
                        log_info("fleet: etcd compacted past revision %lld (to %lld): resyncing",
                                 (long long)f->queued + 1, (long long)m->compact_revision);
                        f->force_resync = true;
                } else
                        set_error(f, "%s: the watch was canceled: %s", fleet_endpoint(f),
                                  m->message ? m->message : "no reason given");
                return -ECANCELED;
        case ETCD_WATCH_ERROR:
                set_error(f, "%s: watch: %s (gRPC code %d)", fleet_endpoint(f),
                          m->message ? m->message : "", m->grpc_code);
                return -EIO;
        case ETCD_WATCH_EVENTS:
                break;
        }
        contact(f, &m->header);
        while (i < m->n_events) {
                int64_t rev = m->events[i].kv.mod_revision;
                size_t j = i, n = 0;
                struct fleet_change *changes;
                void **bufs;

                while (j < m->n_events && m->events[j].kv.mod_revision == rev)
                        j++;
                if (rev <= f->queued) {
                        i = j; /* already applied (a watch resumed at an older revision) */
                        continue;
                }
                changes = calloc(j - i, sizeof(*changes));
                bufs = calloc(j - i, sizeof(*bufs));
                if (!changes || !bufs) {
                        free(changes);
                        free(bufs);
                        return -ENOMEM;
                }
                for (size_t k = i; k < j; k++) {
                        struct etcd_event *e = &m->events[k];
                        const char *id = key_id_of(f, e->kv.key);

                        if (!id)
                                continue;
                        memcpy(changes[n].id, id, TOKEN_ID_LEN + 1);
                        modrev_set(f, id, e->type == ETCD_EVENT_PUT ? rev : 0);
                        if (e->type == ETCD_EVENT_PUT) {
                                changes[n].record = e->kv.value ? e->kv.value : (void *)"";
                                changes[n].len = e->kv.value_len;
                                bufs[n] = TAKE_PTR(e->kv.value);
                        }
                        n++;
                }
                if (submit(f, changes, n, bufs, n, rev, false) < 0)
                        return -ENOMEM;
                i = j;
        }
        return 0;
}

static int on_watch_line(const char *line, size_t len, void *userdata)
{
        struct fleet *f = userdata;
        struct etcd_watch_message m;
        int r;

        r = etcd_decode_watch_line(line, len, &m);
        if (r < 0) {
                set_error(f, "%s: watch: a message that is not etcd's", fleet_endpoint(f));
                etcd_watch_message_done(&m);
                return r;
        }
        r = on_watch_message(f, &m);
        etcd_watch_message_done(&m);
        return r;
}

static int on_watch_data(const char *data, size_t len, void *userdata)
{
        struct fleet *f = userdata;

        return etcd_lines_feed(&f->lines, data, len, on_watch_line, f);
}

static void on_watch_done(struct etcd_request *req, int r, long status, const char *body,
                          size_t len, const char *error, void *userdata)
{
        struct fleet *f = userdata;

        f->watch = NULL;
        etcd_lines_reset(&f->lines);
        if (f->force_resync) {
                fleet_restart(f, true);
                return;
        }
        if (!f->last_error[0] || r != -ECANCELED)
                fleet_answer_failed(f, "watch ended", r, status, error, 0, NULL);
        else
                log_warning("fleet: %s", f->last_error);
        fail(f);
}

static void start_watch(struct fleet *f, int64_t from)
{
        _cleanup_free_ char *body = NULL;

        f->phase = PHASE_WATCH;
        if (asprintf(&body,
                     "{\"create_request\":{\"key\":\"%s\",\"range_end\":\"%s\","
                     "\"start_revision\":\"%lld\",\"progress_notify\":true}}",
                     f->keys_prefix_b64, f->keys_end_b64, (long long)from) < 0 ||
            etcd_post(f->client,
                      &(struct etcd_post){.endpoint = fleet_endpoint(f),
                                          .path = "/v3/watch",
                                          .body = body,
                                          .token = f->token,
                                          .low_speed_usec = WATCH_LOW_SPEED,
                                          .has_leader = true,
                                          .data = on_watch_data,
                                          .done = on_watch_done,
                                          .userdata = f},
                      &f->watch) < 0)
                fail(f);
}

/* ---- the probe: confirmed contact, once a second ---- */

static void on_probe(struct etcd_request *req, int r, long status, const char *body, size_t len,
                     const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL;
        struct etcd_range rg = {};
        int code = 0;

        f->probe = NULL;
        if (r < 0 || status != 200 || etcd_decode_range(body, len, &rg, &code, &msg) < 0) {
                /* A member that does not answer, or has no leader: the watch on it
                 * would stay silent, so the next member. */
                fleet_answer_failed(f, "probe", r, status, error, code, msg);
                if (f->phase != PHASE_WAIT)
                        fail(f);
                return;
        }
        contact(f, &rg.header);
        pepper_check(f, &rg);
        if (f->phase == PHASE_WATCH && rg.header.cluster_id != f->cluster_id) {
                log_warning("fleet: %s answers for another etcd cluster now: resyncing",
                            fleet_endpoint(f));
                fleet_restart(f, true);
        } else if (f->phase == PHASE_WATCH && rg.header.revision < f->queued) {
                log_warning("fleet: etcd at %s is at revision %lld, behind this replica's %lld: "
                            "resyncing",
                            fleet_endpoint(f), (long long)rg.header.revision, (long long)f->queued);
                fleet_restart(f, true);
        }
        etcd_range_done(&rg);
        /* The first report once the watch's first changes are in, then as above. */
        if (f->following && f->applied == f->queued &&
            (!f->reported_mono || fleet_now_mono() - f->reported_mono >= REPORT_EVERY ||
             (f->applied != f->reported_revision &&
              fleet_now_mono() - f->reported_mono >= REPORT_MIN)))
                fleet_report(f);
        if (f->following && f->cfg->fleet_manage &&
            fleet_now_mono() - f->hosts_mono >= fleet_hosts_refresh(f))
                fleet_read_hosts(f);
        fleet_write_used(f, false);
        /* The last contact kept in the keystore, for an offline start. */
        if (f->phase == PHASE_WATCH && f->queued > 0 && f->queued == f->applied &&
            f->contact_real > f->contact_saved + CONTACT_PERSIST && f->ops_pending == 0)
                (void)submit(f, NULL, 0, NULL, 0, f->queued, false);
}

int fleet_on_probe_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *body = NULL;

        (void)sd_event_source_set_time(s, usec + PROBE_INTERVAL);
        (void)sd_event_source_set_enabled(s, SD_EVENT_ON);
        fleet_waiters_wake(f, 0);
        if (f->probe || f->phase == PHASE_WAIT)
                return 0;
        /* Linearizable (not serializable): only a member with a leader answers. */
        if (asprintf(&body, "{\"key\":\"%s\"}", f->fp_key_b64) >= 0)
                (void)fleet_post_range(f, body, PROBE_TIMEOUT, on_probe, &f->probe);
        return 0;
}

uint64_t fleet_resync_delay(void)
{
        return RESYNC_EVERY + randombytes_uniform((uint32_t)(RESYNC_EVERY / MSEC)) * MSEC;
}

int fleet_on_resync_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct fleet *f = userdata;

        (void)sd_event_source_set_time_relative(s, fleet_resync_delay());
        (void)sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (f->phase == PHASE_WATCH) {
                log_debug("fleet: the periodic resync");
                fleet_restart(f, true);
        } else
                f->force_resync = true;
        return 0;
}

/* ---- what the API asks ---- */

/* One of fleet_break_glass_keys. */
static bool break_glass(const struct fleet *f, const char *id)
{
        for (size_t i = 0; i < f->n_break_glass; i++)
                if (STREQ(f->break_glass[i], id))
                        return true;
        return false;
}

/* "no contact with etcd since <time>" (a static buffer: the event loop's only). */
static const char *contact_text(const struct fleet *f)
{
        static char text[TIMESTAMP_MAX + 64];
        char at[TIMESTAMP_MAX];

        if (!f->contact_real || timestamp_format(f->contact_real, at) < 0)
                return "never in contact with etcd";
        snprintf(text, sizeof(text), "no contact with etcd since %s", at);
        return text;
}

enum verify_code fleet_verify_code(struct fleet *f, enum verify_code code, const char *id)
{
        uint64_t now;

        /* Joining: this host's own keys, as a single host answers for them. */
        if (!f || code == VERIFY_CODE_BAD_FORMAT || f->joining)
                return code;
        if (f->pepper == PEPPER_DIFFERS ||
            (f->pepper == PEPPER_MISSING && code == VERIFY_CODE_VALID))
                return VERIFY_CODE_UNAVAILABLE;
        if (fleet_online(f))
                return code;
        now = now_usec();
        if (f->contact_real == 0 || now - f->contact_real > f->cfg->fleet_offline_max_age_usec) {
                if (code == VERIFY_CODE_VALID && id && break_glass(f, id)) {
                        log_warning("fleet: break-glass key %s accepted, %s (past "
                                    "fleet_offline_max_age)",
                                    id, contact_text(f));
                        return code;
                }
                return code == VERIFY_CODE_VALID || code == VERIFY_CODE_NOT_FOUND
                           ? VERIFY_CODE_UNAVAILABLE
                           : code;
        }
        /* A key this replica does not know may be one made while it was cut off. */
        if (code == VERIFY_CODE_NOT_FOUND && id && id[0] &&
            keystore_get(f->ks, id, NULL, NULL) == -ENOENT)
                return VERIFY_CODE_UNAVAILABLE;
        return code;
}

bool fleet_refuses_changes(const struct fleet *f)
{
        return f && !f->cfg->fleet_manage;
}

json_t *fleet_status(struct fleet *f)
{
        static const char *const peppers[] = {
            [PEPPER_UNKNOWN] = "unknown",
            [PEPPER_OK] = "ok",
            [PEPPER_MISSING] = "missing",
            [PEPPER_DIFFERS] = "differs",
        };
        char contact_at[TIMESTAMP_MAX] = "";
        uint64_t now = now_usec();
        json_t *o;

        o = json_pack("{s:s, s:s, s:b, s:b, s:I, s:s}", "host", f->host, "endpoint",
                      fleet_endpoint(f), "manage", f->cfg->fleet_manage, "online", fleet_online(f),
                      "applied_revision", (json_int_t)f->applied, "pepper", peppers[f->pepper]);
        if (!o)
                return NULL;
        if (f->contact_real) {
                (void)timestamp_format(f->contact_real, contact_at);
                json_object_set_new(o, "last_contact", json_string(contact_at));
                json_object_set_new(
                    o, "stale_ms",
                    json_integer(
                        (json_int_t)((now > f->contact_real ? now - f->contact_real : 0) / MSEC)));
        }
        if (f->last_error[0])
                json_object_set_new(o, "last_error", json_string(f->last_error));
        if (f->joining)
                json_object_set_new(o, "joining", json_integer((json_int_t)f->joining));
        if (f->cfg->fleet_manage)
                json_object_set_new(o, "hosts", fleet_hosts_json(f));
        return o;
}
