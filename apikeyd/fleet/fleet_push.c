/* SPDX-License-Identifier: MIT */
/* Moving a single host's keystore into etcd: see fleet_push() in fleet.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "etcd_client.h"
#include "etcd_decode.h"
#include "fleet.h"
#include "keystore_fleet.h"
#include "timeutil.h"

#define PUSH_TIMEOUT (10 * 1000000ull)

struct push {
        sd_event *event;
        struct etcd_client *client;
        const char *endpoint;
        char *token;
        /* The answer being waited for. */
        bool done;
        int r;
        long status;
        char *body;
        size_t len;
        char error[256];
};

static void on_done(struct etcd_request *req, int r, long status, const char *body, size_t len,
                    const char *error, void *userdata)
{
        struct push *p = userdata;

        p->done = true;
        p->r = r;
        p->status = status;
        p->body = malloc(len + 1);
        if (p->body) {
                memcpy(p->body, body, len);
                p->body[len] = '\0';
        }
        p->len = len;
        snprintf(p->error, sizeof(p->error), "%s", error ? error : "");
}

/* POST and run the loop until the answer is in: 0 with an HTTP answer in p->body. */
static int post_wait(struct push *p, const char *path, const char *body)
{
        int r;

        free(p->body);
        p->body = NULL;
        p->done = false;
        r = etcd_post(p->client,
                      &(struct etcd_post){.endpoint = p->endpoint,
                                          .path = path,
                                          .body = body,
                                          .token = p->token,
                                          .timeout_usec = PUSH_TIMEOUT,
                                          .done = on_done,
                                          .userdata = p},
                      NULL);
        while (r >= 0 && !p->done)
                r = sd_event_run(p->event, UINT64_MAX);
        if (r < 0)
                return r;
        if (p->r < 0) {
                fprintf(stderr, "apikeyd: %s%s: %s\n", p->endpoint, path,
                        p->error[0] ? p->error : strerror(-p->r));
                return p->r;
        }
        return p->body ? 0 : -ENOMEM;
}

static int etcd_failed(struct push *p, const char *what, int r, int code, const char *msg)
{
        if (r == -EIO)
                fprintf(stderr, "apikeyd: %s: %s: %s (gRPC code %d)\n", p->endpoint, what,
                        msg ? msg : "", code);
        else
                fprintf(stderr, "apikeyd: %s: %s: an answer that is not etcd's (HTTP %ld)\n",
                        p->endpoint, what, p->status);
        return r < 0 ? r : -EIO;
}

static int authenticate(struct push *p, const struct apikeyd_config *cfg)
{
        _cleanup_free_ char *msg = NULL;
        char password[1026], *body;
        ssize_t n;
        size_t len;
        json_t *o;
        int fd, code = 0, r;

        fd = open(cfg->fleet_password_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                fprintf(stderr, "apikeyd: cannot read %s: %m\n", cfg->fleet_password_file);
                return -errno;
        }
        n = read(fd, password, sizeof(password) - 1);
        close(fd);
        if (n < 0)
                return -errno;
        password[n] = '\0';
        len = strcspn(password, "\r\n");
        password[len] = '\0';
        o = json_pack("{s:s, s:s}", "name", cfg->fleet_user, "password", password);
        explicit_bzero(password, sizeof(password));
        body = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!body)
                return -ENOMEM;
        r = post_wait(p, "/v3/auth/authenticate", body);
        erase_and_free(body);
        if (r < 0)
                return r;
        r = etcd_decode_auth(p->body, p->len, &p->token, &code, &msg);
        return r < 0 ? etcd_failed(p, "authenticating as fleet_user", r, code, msg) : 0;
}

/* A Txn that puts `value` under `key` only if the key is absent: 1 if put, 0 if present. */
static int put_if_absent(struct push *p, const char *key, const void *value, size_t len,
                         int64_t *ret_revision)
{
        _cleanup_free_ char *k = etcd_base64(key, strlen(key)), *v = etcd_base64(value, len),
                            *body = NULL, *msg = NULL;
        struct etcd_header h;
        bool ok = false;
        int code = 0, r;

        if (!k || !v ||
            asprintf(&body,
                     "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\",\"create_revision\":"
                     "\"0\"}],\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
                     k, k, v) < 0)
                return -ENOMEM;
        r = post_wait(p, "/v3/kv/txn", body);
        if (r < 0)
                return r;
        r = etcd_decode_txn(p->body, p->len, &h, &ok, &code, &msg);
        if (r < 0)
                return etcd_failed(p, key, r, code, msg);
        *ret_revision = h.revision;
        return ok;
}

struct walk {
        struct push *p;
        const char *prefix;
        size_t pushed, present, name_taken;
        int64_t revision;
        uint64_t cluster_id;
};

/*
 * The key and its name index entry (<prefix>/names/<owner>/<name> -> id),
 * in one Txn, each only if absent: 1 if put; 0 if the key is there already
 * (its name entry is then added if missing); -EEXIST if the fleet has
 * another key of that owner and name.
 */
static int put_key(struct push *p, const char *prefix, const struct key_record *rec,
                   const void *value, size_t len, int64_t *ret_revision)
{
        _cleanup_free_ char *key = NULL, *name = NULL, *k = NULL, *n = NULL, *v = NULL, *id = NULL,
                            *body = NULL, *msg = NULL;
        struct etcd_header h;
        struct etcd_range rg = {};
        bool ok = false, mine;
        int code = 0, r;

        if (asprintf(&key, "%s/keys/%s", prefix, rec->id) < 0 ||
            asprintf(&name, "%s/names/%s/%s", prefix, rec->owner, rec->name) < 0)
                return -ENOMEM;
        k = etcd_base64(key, strlen(key));
        n = etcd_base64(name, strlen(name));
        v = etcd_base64(value, len);
        id = etcd_base64(rec->id, strlen(rec->id));
        if (!k || !n || !v || !id ||
            asprintf(&body,
                     "{\"compare\":[{\"key\":\"%s\",\"target\":\"CREATE\",\"create_revision\":"
                     "\"0\"},{\"key\":\"%s\",\"target\":\"CREATE\",\"create_revision\":\"0\"}],"
                     "\"success\":[{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}},"
                     "{\"request_put\":{\"key\":\"%s\",\"value\":\"%s\"}}]}",
                     k, n, k, v, n, id) < 0)
                return -ENOMEM;
        r = post_wait(p, "/v3/kv/txn", body);
        if (r < 0)
                return r;
        r = etcd_decode_txn(p->body, p->len, &h, &ok, &code, &msg);
        if (r < 0)
                return etcd_failed(p, key, r, code, msg);
        *ret_revision = h.revision;
        if (ok)
                return 1;
        /* Whose is the name? */
        free(body);
        if (asprintf(&body, "{\"key\":\"%s\"}", n) < 0) {
                body = NULL;
                return -ENOMEM;
        }
        r = post_wait(p, "/v3/kv/range", body);
        if (r < 0)
                return r;
        r = etcd_decode_range(p->body, p->len, &rg, &code, &msg);
        if (r < 0)
                return etcd_failed(p, name, r, code, msg);
        mine = rg.n_kvs > 0 && rg.kvs[0].value_len == strlen(rec->id) &&
               memcmp(rg.kvs[0].value, rec->id, rg.kvs[0].value_len) == 0;
        r = rg.n_kvs == 0 ? 0 : mine ? 0 : -EEXIST;
        etcd_range_done(&rg);
        if (r == 0 && !mine) {
                /* The key is there (pushed before names were indexed): its entry now. */
                r = put_if_absent(p, name, rec->id, strlen(rec->id), ret_revision);
                return r < 0 ? r : 0;
        }
        return r;
}

static int push_one(const struct key_record *rec, void *userdata)
{
        struct walk *w = userdata;
        _cleanup_free_ void *buf = NULL;
        size_t len;
        int r;

        r = record_encode(rec, &buf, &len);
        if (r < 0)
                return r;
        r = put_key(w->p, w->prefix, rec, buf, len, &w->revision);
        if (r == -EEXIST) {
                fprintf(stderr,
                        "apikeyd: key %s not pushed: the fleet has another key named '%s' of "
                        "owner %s; rename one of them and push again\n",
                        rec->id, rec->name, rec->owner);
                w->name_taken++;
                return 0;
        }
        if (r < 0)
                return r;
        if (r > 0)
                w->pushed++;
        else
                w->present++;
        return 0;
}

int fleet_push(const struct apikeyd_config *cfg, struct keystore *ks,
               const uint8_t pepper_fingerprint[PEPPER_FINGERPRINT_SIZE])
{
        struct etcd_tls tls = {
            .cacert = cfg->fleet_cacert, .cert = cfg->fleet_cert, .key = cfg->fleet_key};
        _cleanup_free_ char *list = strdup(cfg->fleet_endpoints), *fp_key = NULL, *msg = NULL,
                            *body = NULL, *fp_b64 = NULL;
        struct push p = {};
        struct walk w = {.p = &p, .prefix = cfg->fleet_prefix};
        struct key_filter all = {.now = now_usec()};
        struct etcd_range rg = {};
        int code = 0, r;

        if (!list || asprintf(&fp_key, "%s/pepper-fingerprint", cfg->fleet_prefix) < 0)
                return -ENOMEM;
        r = sd_event_new(&p.event);
        if (r >= 0)
                r = etcd_client_new(p.event, &tls, &p.client);
        if (r < 0)
                goto out;

        /* The first member that answers. */
        for (char *save = NULL, *e = strtok_r(list, ",", &save); e;
             e = strtok_r(NULL, ",", &save)) {
                p.endpoint = e;
                if (cfg->fleet_user) {
                        free(p.token);
                        p.token = NULL;
                        r = authenticate(&p, cfg);
                        if (r == -EIO)
                                goto out; /* refused: another member would refuse too */
                        if (r < 0)
                                continue;
                }
                fp_b64 = etcd_base64(fp_key, strlen(fp_key));
                if (!fp_b64 || asprintf(&body, "{\"key\":\"%s\"}", fp_b64) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                r = post_wait(&p, "/v3/kv/range", body);
                if (r >= 0)
                        break;
                free(fp_b64);
                free(body);
                fp_b64 = body = NULL;
        }
        if (r < 0) {
                fprintf(stderr, "apikeyd: no etcd member in fleet_endpoints answered\n");
                goto out;
        }
        r = etcd_decode_range(p.body, p.len, &rg, &code, &msg);
        if (r < 0) {
                r = etcd_failed(&p, "reading the pepper's fingerprint", r, code, msg);
                goto out;
        }
        w.cluster_id = rg.header.cluster_id;
        if (rg.n_kvs > 0 && (rg.kvs[0].value_len != PEPPER_FINGERPRINT_SIZE ||
                             !pepper_fingerprint_equal(rg.kvs[0].value, pepper_fingerprint))) {
                fprintf(stderr,
                        "apikeyd: the fleet in etcd (%s) has another pepper than this host: its "
                        "keys would not verify there; nothing was pushed\n",
                        fp_key);
                r = -EBADMSG;
                goto out;
        }
        if (rg.n_kvs == 0) {
                r = put_if_absent(&p, fp_key, pepper_fingerprint, PEPPER_FINGERPRINT_SIZE,
                                  &w.revision);
                if (r < 0)
                        goto out;
        }
        r = keystore_list(ks, &all, NULL, 0, push_one, &w, NULL);
        if (r < 0) {
                fprintf(stderr, "apikeyd: pushing the keys stopped: %s\n", strerror(-r));
                goto out;
        }
        if (w.name_taken) {
                /* Not a replica yet: fleet mode would drop the keys not pushed. */
                fprintf(stderr,
                        "apikeyd: pushed %zu keys, %zu were there already; %zu keys not pushed: "
                        "their names are taken in the fleet\n",
                        w.pushed, w.present, w.name_taken);
                r = -EEXIST;
                goto out;
        }
        /* This keystore is now a replica as of the last revision written: the
         * daemon starts on it in fleet mode, and a resync settles the rest. */
        if (w.revision > 0) {
                struct fleet_apply a = {
                    .revision = w.revision, .cluster_id = w.cluster_id, .contact_at = now_usec()};

                r = keystore_fleet_state(ks, &a.after, NULL, NULL);
                if (r >= 0)
                        r = keystore_fleet_apply(ks, &a);
                if (r < 0) {
                        fprintf(stderr, "apikeyd: cannot mark the keystore as a replica: %s\n",
                                strerror(-r));
                        goto out;
                }
        }
        printf("pushed %zu keys to %s under %s/keys/; %zu were there already and were left as "
               "etcd has them\n",
               w.pushed, p.endpoint, cfg->fleet_prefix, w.present);
        r = 0;
out:
        etcd_range_done(&rg);
        etcd_client_free(p.client);
        sd_event_unref(p.event);
        free(p.body);
        free(p.token);
        return r;
}
