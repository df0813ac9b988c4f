/* SPDX-License-Identifier: MIT */
/*
 * This host's report under <prefix>/hosts/<host>/status (the revision its
 * keystore has applied), and a manager's view of every host's report and
 * of the last uses they wrote under <prefix>/hosts/<host>/used/ (fleet_used.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet_internal.h"
#include "log.h"
#include "timeutil.h"

/* ---- this host's report, and a manager's view of every host's ---- */

static void on_reported(struct etcd_request *req, int r, long status, const char *body, size_t len,
                        const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL;
        int code = 0;

        f->report = NULL;
        if (r < 0 || status != 200 || etcd_decode_txn(body, len, NULL, NULL, &code, &msg) < 0)
                /* Not the replica's failure: said, and tried again at the next report. */
                fleet_answer_failed(f, "reporting this host's state", r, status, error, code, msg);
}

/* <prefix>/hosts/<host>/status: the revision this host has applied, and when it said so. */
void fleet_report(struct fleet *f)
{
        _cleanup_free_ char *key = NULL, *key_b64 = NULL, *value = NULL, *value_b64 = NULL,
                            *body = NULL;

        if (f->report)
                return;
        f->reported_mono = fleet_now_mono();
        f->reported_revision = f->applied;
        if (asprintf(&key, "%s/hosts/%s/status", f->cfg->fleet_prefix, f->host) < 0 ||
            asprintf(&value, "{\"applied_revision\":\"%lld\",\"reported_at\":%llu}",
                     (long long)f->applied, (unsigned long long)now_usec()) < 0)
                return;
        key_b64 = etcd_base64(key, strlen(key));
        value_b64 = etcd_base64(value, strlen(value));
        if (!key_b64 || !value_b64 ||
            asprintf(&body, "{\"key\":\"%s\",\"value\":\"%s\"}", key_b64, value_b64) < 0)
                return;
        if (etcd_post(f->client,
                      &(struct etcd_post){.endpoint = fleet_endpoint(f),
                                          .path = "/v3/kv/put",
                                          .body = body,
                                          .token = f->token,
                                          .timeout_usec = UNARY_TIMEOUT,
                                          .done = on_reported,
                                          .userdata = f},
                      &f->report) < 0)
                f->report = NULL;
}

/* A full read of the hosts' prefix every so often drops hosts that are gone; between, only
 * what changed is read. */
#define HOSTS_FULL_EVERY (10 * 60 * SEC)
#define HOSTS_PAGE       1000

static int host_cmp(const void *a, const void *b)
{
        return strcmp(((const struct host_seen *)a)->host, ((const struct host_seen *)b)->host);
}

/* A host's report into `*hosts` (replacing the host's earlier one). */
static int host_put(struct host_seen **hosts, size_t *n, size_t *allocated, const char *name,
                    size_t name_len, const struct etcd_host_report *rep)
{
        struct host_seen *h = NULL;

        for (size_t i = 0; i < *n; i++)
                if (strlen((*hosts)[i].host) == name_len &&
                    memcmp((*hosts)[i].host, name, name_len) == 0)
                        h = &(*hosts)[i];
        if (!h) {
                if (*n >= HOSTS_MAX)
                        return 0;
                if (*n == *allocated) {
                        size_t want = *allocated ? *allocated * 2 : 16;
                        struct host_seen *t = realloc(*hosts, want * sizeof(*t));

                        if (!t)
                                return -ENOMEM;
                        *hosts = t;
                        *allocated = want;
                }
                h = &(*hosts)[(*n)++];
                *h = (struct host_seen){};
                memcpy(h->host, name, name_len);
        }
        h->applied_revision = rep->applied_revision;
        h->reported_at = rep->reported_at;
        return 0;
}

static void hosts_read_end(struct fleet *f)
{
        free(f->hosts_next);
        f->hosts_next = NULL;
        free(f->hosts_new);
        f->hosts_new = NULL;
        f->n_hosts_new = f->hosts_new_allocated = 0;
        f->hosts_pin = 0;
}

/* One entry of <prefix>/hosts/: <host>/status or <host>/used/<id>; anything else is skipped. */
static void host_entry(struct fleet *f, const struct etcd_kv *kv, size_t plen)
{
        const char *name = kv->key + plen, *slash = strchr(name, '/');
        size_t name_len = slash ? (size_t)(slash - name) : 0;
        char host[CONFIG_FLEET_HOST_MAX + 1];

        if (name_len == 0 || name_len > CONFIG_FLEET_HOST_MAX)
                return;
        /* A host's name as fleet_host takes it: shown as it is, so nothing else. */
        for (size_t i = 0; i < name_len; i++)
                if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-",
                            name[i]))
                        return;
        if (STREQ(slash, "/status")) {
                struct etcd_host_report rep;

                if (etcd_decode_host_report(kv->value, kv->value_len, &rep) < 0)
                        return;
                if (f->hosts_full)
                        (void)host_put(&f->hosts_new, &f->n_hosts_new, &f->hosts_new_allocated,
                                       name, name_len, &rep);
                else
                        (void)host_put(&f->hosts, &f->n_hosts, &f->hosts_allocated, name, name_len,
                                       &rep);
        } else if (strncmp(slash, "/used/", 6) == 0 && token_id_valid(slash + 6)) {
                struct etcd_host_use use;

                if (etcd_decode_host_use(kv->value, kv->value_len, &use) < 0)
                        return;
                memcpy(host, name, name_len);
                host[name_len] = '\0';
                (void)fleet_uses_put(&f->seen, slash + 6, use.at, host, use.service, use.from);
        }
}

static void hosts_page(struct fleet *f);

static void on_hosts(struct etcd_request *req, int r, long status, const char *body, size_t len,
                     const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL, *prefix = NULL;
        struct etcd_range rg = {};
        size_t plen;
        int code = 0;

        f->hosts_req = NULL;
        if (r < 0 || status != 200 || etcd_decode_range(body, len, &rg, &code, &msg) < 0) {
                /* The read starts over at the next refresh. */
                fleet_answer_failed(f, "reading the hosts' reports", r, status, error, code, msg);
                hosts_read_end(f);
                return;
        }
        if (asprintf(&prefix, "%s/hosts/", f->cfg->fleet_prefix) < 0) {
                prefix = NULL;
                etcd_range_done(&rg);
                hosts_read_end(f);
                return;
        }
        plen = strlen(prefix);
        if (f->hosts_pin == 0)
                f->hosts_pin = rg.header.revision;
        for (size_t i = 0; i < rg.n_kvs; i++)
                if (strncmp(rg.kvs[i].key, prefix, plen) == 0)
                        host_entry(f, &rg.kvs[i], plen);
        free(f->hosts_next);
        f->hosts_next = NULL;
        if (rg.more && rg.n_kvs > 0) {
                /* The next page starts just after the last key: the key and a NUL. */
                const struct etcd_kv *last = &rg.kvs[rg.n_kvs - 1];

                f->hosts_next = etcd_base64(last->key, last->key_len + 1);
                etcd_range_done(&rg);
                if (f->hosts_next)
                        hosts_page(f);
                else
                        hosts_read_end(f);
                return;
        }
        etcd_range_done(&rg);
        /* Every page read. */
        if (f->hosts_full) {
                free(f->hosts);
                f->hosts = TAKE_PTR(f->hosts_new);
                f->n_hosts = f->n_hosts_new;
                f->hosts_allocated = f->hosts_new_allocated;
        }
        if (f->n_hosts > 1)
                qsort(f->hosts, f->n_hosts, sizeof(*f->hosts), host_cmp);
        f->hosts_rev = f->hosts_pin;
        hosts_read_end(f);
}

static void hosts_page(struct fleet *f)
{
        _cleanup_free_ char *start = NULL, *start_b64 = NULL, *end_b64 = NULL, *body = NULL;
        char rev[24];
        json_t *o;

        if (asprintf(&start, "%s/hosts/", f->cfg->fleet_prefix) < 0) {
                start = NULL;
                hosts_read_end(f);
                return;
        }
        start_b64 = etcd_base64(start, strlen(start));
        end_b64 = fleet_prefix_end_b64(start);
        snprintf(rev, sizeof(rev), "%d", HOSTS_PAGE);
        o = start_b64 && end_b64
                ? json_pack("{s:s, s:s, s:s}", "key", f->hosts_next ? f->hosts_next : start_b64,
                            "range_end", end_b64, "limit", rev)
                : NULL;
        /* The gateway takes int64 as strings. */
        if (o && f->hosts_pin) {
                snprintf(rev, sizeof(rev), "%lld", (long long)f->hosts_pin);
                json_object_set_new(o, "revision", json_string(rev));
        }
        if (o && !f->hosts_full) {
                snprintf(rev, sizeof(rev), "%lld", (long long)f->hosts_rev + 1);
                json_object_set_new(o, "min_mod_revision", json_string(rev));
        }
        body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!body || fleet_post_range(f, body, UNARY_TIMEOUT, on_hosts, &f->hosts_req) < 0) {
                f->hosts_req = NULL;
                hosts_read_end(f);
        }
}

uint64_t fleet_hosts_refresh(const struct fleet *f)
{
        return f->cfg->fleet_last_used_interval_usec < HOSTS_REFRESH
                   ? f->cfg->fleet_last_used_interval_usec
                   : HOSTS_REFRESH;
}

void fleet_read_hosts(struct fleet *f)
{
        uint64_t now = fleet_now_mono();

        if (f->hosts_req)
                return;
        f->hosts_mono = now;
        hosts_read_end(f);
        f->hosts_full = f->hosts_rev == 0 || now - f->hosts_full_mono >= HOSTS_FULL_EVERY;
        if (f->hosts_full)
                f->hosts_full_mono = now;
        hosts_page(f);
}

json_t *fleet_hosts_json(const struct fleet *f)
{
        json_t *hosts = json_array();

        for (size_t i = 0; hosts && i < f->n_hosts; i++) {
                char at[TIMESTAMP_MAX] = "";

                (void)timestamp_format(f->hosts[i].reported_at, at);
                json_array_append_new(hosts, json_pack("{s:s, s:I, s:s}", "host", f->hosts[i].host,
                                                       "applied_revision",
                                                       (json_int_t)f->hosts[i].applied_revision,
                                                       "reported_at", at));
        }
        return hosts;
}
