/* SPDX-License-Identifier: MIT */
/*
 * This host's report under <prefix>/hosts/<host>/status (the revision its
 * keystore has applied), and a manager's view of every host's report.
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

static void on_hosts(struct etcd_request *req, int r, long status, const char *body, size_t len,
                     const char *error, void *userdata)
{
        struct fleet *f = userdata;
        _cleanup_free_ char *msg = NULL, *prefix = NULL;
        struct etcd_range rg = {};
        struct host_seen *seen;
        size_t n = 0, plen;
        int code = 0;

        f->hosts_req = NULL;
        if (r < 0 || status != 200 || etcd_decode_range(body, len, &rg, &code, &msg) < 0) {
                fleet_answer_failed(f, "reading the hosts' reports", r, status, error, code, msg);
                return;
        }
        if (asprintf(&prefix, "%s/hosts/", f->cfg->fleet_prefix) < 0) {
                prefix = NULL;
                etcd_range_done(&rg);
                return;
        }
        plen = strlen(prefix);
        seen = calloc(rg.n_kvs ? rg.n_kvs : 1, sizeof(*seen));
        for (size_t i = 0; seen && i < rg.n_kvs; i++) {
                const char *name = rg.kvs[i].key + plen, *slash;
                struct etcd_host_report rep;

                /* <prefix>/hosts/<host>/status, and a report that decodes: else skipped. */
                if (strncmp(rg.kvs[i].key, prefix, plen) != 0 || !(slash = strchr(name, '/')) ||
                    !STREQ(slash, "/status") || slash == name ||
                    (size_t)(slash - name) > CONFIG_FLEET_HOST_MAX ||
                    etcd_decode_host_report(rg.kvs[i].value, rg.kvs[i].value_len, &rep) < 0)
                        continue;
                memcpy(seen[n].host, name, (size_t)(slash - name));
                seen[n].applied_revision = rep.applied_revision;
                seen[n].reported_at = rep.reported_at;
                n++;
        }
        etcd_range_done(&rg);
        if (!seen)
                return;
        free(f->hosts);
        f->hosts = seen;
        f->n_hosts = n;
}

void fleet_read_hosts(struct fleet *f)
{
        _cleanup_free_ char *start = NULL, *start_b64 = NULL, *end_b64 = NULL, *body = NULL;

        if (f->hosts_req)
                return;
        f->hosts_mono = fleet_now_mono();
        if (asprintf(&start, "%s/hosts/", f->cfg->fleet_prefix) < 0)
                return;
        start_b64 = etcd_base64(start, strlen(start));
        end_b64 = fleet_prefix_end_b64(start);
        if (!start_b64 || !end_b64 ||
            asprintf(&body, "{\"key\":\"%s\",\"range_end\":\"%s\",\"limit\":\"%d\"}", start_b64,
                     end_b64, HOSTS_MAX) < 0)
                return;
        (void)fleet_post_range(f, body, UNARY_TIMEOUT, on_hosts, &f->hosts_req);
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
