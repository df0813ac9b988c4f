/* SPDX-License-Identifier: MIT */
/* Decoding what etcd's JSON gateway sends; the formats are in etcd_decode.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "etcd_decode.h"

/* An int64 or uint64 as the gateway writes it: a decimal string (a plain number is taken too). */
static int get_u64(json_t *o, const char *name, uint64_t *ret)
{
        json_t *v = json_object_get(o, name);
        const char *s;
        uint64_t x = 0;

        *ret = 0;
        if (!v)
                return 0;
        if (json_is_integer(v)) {
                if (json_integer_value(v) < 0)
                        return -EBADMSG;
                *ret = (uint64_t)json_integer_value(v);
                return 0;
        }
        if (!json_is_string(v))
                return -EBADMSG;
        s = json_string_value(v);
        if (!*s || json_string_length(v) > 20)
                return -EBADMSG;
        for (; *s; s++) {
                if (*s < '0' || *s > '9')
                        return -EBADMSG;
                if (__builtin_mul_overflow(x, 10, &x) ||
                    __builtin_add_overflow(x, (uint64_t)(*s - '0'), &x))
                        return -EBADMSG;
        }
        *ret = x;
        return 0;
}

static int get_i64(json_t *o, const char *name, int64_t *ret)
{
        uint64_t v;
        int r = get_u64(o, name, &v);

        if (r < 0 || v > INT64_MAX)
                return -EBADMSG;
        *ret = (int64_t)v;
        return 0;
}

static int get_bool(json_t *o, const char *name, bool *ret)
{
        json_t *v = json_object_get(o, name);

        *ret = false;
        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return -EBADMSG;
        *ret = json_is_true(v);
        return 0;
}

static int decode_header(json_t *h, struct etcd_header *ret)
{
        *ret = (struct etcd_header){};
        if (!h)
                return 0;
        if (!json_is_object(h))
                return -EBADMSG;
        if (get_u64(h, "cluster_id", &ret->cluster_id) < 0 ||
            get_u64(h, "member_id", &ret->member_id) < 0 ||
            get_u64(h, "raft_term", &ret->raft_term) < 0 ||
            get_i64(h, "revision", &ret->revision) < 0)
                return -EBADMSG;
        return 0;
}

/* Base64 (with padding) into a fresh buffer with a NUL after the bytes. */
static int decode_b64(json_t *v, size_t max, uint8_t **ret, size_t *ret_len)
{
        const char *s;
        size_t len, cap, out = 0;
        uint8_t *buf;

        *ret = NULL;
        *ret_len = 0;
        if (!v)
                return 0;
        if (!json_is_string(v))
                return -EBADMSG;
        s = json_string_value(v);
        len = json_string_length(v);
        if (len == 0)
                return 0;
        cap = len / 4 * 3 + 3;
        if (cap - 1 > max + 2)
                return -EBADMSG;
        buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        if (sodium_base642bin(buf, cap, s, len, NULL, &out, NULL, sodium_base64_VARIANT_ORIGINAL) !=
                0 ||
            out > max) {
                free(buf);
                return -EBADMSG;
        }
        buf[out] = 0;
        *ret = buf;
        *ret_len = out;
        return 0;
}

static void kv_done(struct etcd_kv *kv)
{
        free(kv->key);
        free(kv->value);
        *kv = (struct etcd_kv){};
}

static int decode_kv(json_t *o, struct etcd_kv *ret)
{
        uint8_t *key;
        int r;

        *ret = (struct etcd_kv){};
        if (!json_is_object(o))
                return -EBADMSG;
        r = decode_b64(json_object_get(o, "key"), ETCD_KEY_MAX, &key, &ret->key_len);
        if (r < 0)
                return r;
        ret->key = (char *)key;
        if (!ret->key || memchr(ret->key, 0, ret->key_len))
                return -EBADMSG;
        r = decode_b64(json_object_get(o, "value"), SIZE_MAX / 2, &ret->value, &ret->value_len);
        if (r < 0)
                return r;
        if (get_i64(o, "create_revision", &ret->create_revision) < 0 ||
            get_i64(o, "mod_revision", &ret->mod_revision) < 0 ||
            get_i64(o, "version", &ret->version) < 0)
                return -EBADMSG;
        return 0;
}

/* An error answer: {"error":"text","message":"text","code":N} or {"error":{...}}. */
static int decode_error(json_t *root, int *ret_code, char **ret_message)
{
        json_t *e = json_object_get(root, "error"), *m, *c;

        if (json_is_object(e)) {
                c = json_object_get(e, "grpc_code");
                m = json_object_get(e, "message");
        } else if (json_is_string(e)) {
                c = json_object_get(root, "code");
                m = json_object_get(root, "message");
                if (!m)
                        m = e;
        } else
                return -EBADMSG;
        if (c && !json_is_integer(c))
                return -EBADMSG;
        if (m && !json_is_string(m))
                return -EBADMSG;
        if (ret_code) {
                json_int_t v = c ? json_integer_value(c) : 2; /* UNKNOWN */
                *ret_code = v >= 0 && v <= 100 ? (int)v : 2;
        }
        if (ret_message) {
                *ret_message = strndup(m ? json_string_value(m) : "", 512);
                if (!*ret_message)
                        return -ENOMEM;
        }
        return -EIO;
}

static json_t *load(const char *s, size_t len)
{
        json_error_t e;
        json_t *root = json_loadb(s, len, JSON_REJECT_DUPLICATES, &e);

        if (root && !json_is_object(root)) {
                json_decref(root);
                return NULL;
        }
        return root;
}

void etcd_watch_message_done(struct etcd_watch_message *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < m->n_events; i++)
                kv_done(&m->events[i].kv);
        free(m->events);
        free(m->message);
        *m = (struct etcd_watch_message){};
}

static int decode_watch(json_t *root, struct etcd_watch_message *ret)
{
        json_t *res = json_object_get(root, "result"), *events, *ev;
        bool created, canceled;
        int64_t last = 0;
        size_t i;
        int r;

        if (json_object_get(root, "error")) {
                char *msg = NULL;
                int code = 0;

                r = decode_error(root, &code, &msg);
                ret->message = msg;
                if (r != -EIO)
                        return r;
                ret->kind = ETCD_WATCH_ERROR;
                ret->grpc_code = code;
                return 0;
        }
        if (!json_is_object(res))
                return -EBADMSG;
        r = decode_header(json_object_get(res, "header"), &ret->header);
        if (r < 0)
                return r;
        if (get_bool(res, "created", &created) < 0 || get_bool(res, "canceled", &canceled) < 0 ||
            get_i64(res, "compact_revision", &ret->compact_revision) < 0)
                return -EBADMSG;
        events = json_object_get(res, "events");
        if (events && !json_is_array(events))
                return -EBADMSG;
        if (canceled) {
                json_t *reason = json_object_get(res, "cancel_reason");

                ret->kind = ETCD_WATCH_CANCELED;
                if (reason && !json_is_string(reason))
                        return -EBADMSG;
                if (reason && !(ret->message = strndup(json_string_value(reason), 512)))
                        return -ENOMEM;
                return 0;
        }
        if (created) {
                ret->kind = ETCD_WATCH_CREATED;
                return 0;
        }
        if (!events || json_array_size(events) == 0) {
                ret->kind = ETCD_WATCH_PROGRESS;
                return 0;
        }
        ret->kind = ETCD_WATCH_EVENTS;
        ret->events = calloc(json_array_size(events), sizeof(*ret->events));
        if (!ret->events)
                return -ENOMEM;
        json_array_foreach(events, i, ev)
        {
                struct etcd_event *e = &ret->events[i];
                json_t *type;

                if (!json_is_object(ev))
                        return -EBADMSG;
                type = json_object_get(ev, "type");
                if (!type || (json_is_string(type) && STREQ(json_string_value(type), "PUT")))
                        e->type = ETCD_EVENT_PUT;
                else if (json_is_string(type) && STREQ(json_string_value(type), "DELETE"))
                        e->type = ETCD_EVENT_DELETE;
                else
                        return -EBADMSG;
                r = decode_kv(json_object_get(ev, "kv"), &e->kv);
                ret->n_events = i + 1;
                if (r < 0)
                        return r;
                /* Events come in revision order, each after the watch's start. */
                if (e->kv.mod_revision <= 0 || e->kv.mod_revision < last)
                        return -EBADMSG;
                last = e->kv.mod_revision;
        }
        if (ret->header.revision < last)
                return -EBADMSG;
        return 0;
}

int etcd_decode_watch_line(const char *line, size_t len, struct etcd_watch_message *ret)
{
        json_t *root;
        int r;

        *ret = (struct etcd_watch_message){};
        root = load(line, len);
        if (!root)
                return -EBADMSG;
        r = decode_watch(root, ret);
        json_decref(root);
        return r == -ENOMEM ? r : r < 0 ? -EBADMSG : 0;
}

void etcd_range_done(struct etcd_range *r)
{
        if (!r)
                return;
        for (size_t i = 0; i < r->n_kvs; i++)
                kv_done(&r->kvs[i]);
        free(r->kvs);
        *r = (struct etcd_range){};
}

static int decode_range(json_t *root, struct etcd_range *ret)
{
        json_t *kvs = json_object_get(root, "kvs"), *kv;
        size_t i;
        int r;

        r = decode_header(json_object_get(root, "header"), &ret->header);
        if (r < 0)
                return r;
        if (!json_object_get(root, "header") || ret->header.revision <= 0)
                return -EBADMSG;
        if (get_bool(root, "more", &ret->more) < 0 || get_i64(root, "count", &ret->count) < 0)
                return -EBADMSG;
        if (!kvs)
                return 0;
        if (!json_is_array(kvs))
                return -EBADMSG;
        if (json_array_size(kvs) == 0)
                return 0;
        ret->kvs = calloc(json_array_size(kvs), sizeof(*ret->kvs));
        if (!ret->kvs)
                return -ENOMEM;
        json_array_foreach(kvs, i, kv)
        {
                r = decode_kv(kv, &ret->kvs[i]);
                ret->n_kvs = i + 1;
                if (r < 0)
                        return r;
                if (ret->kvs[i].mod_revision > ret->header.revision)
                        return -EBADMSG;
        }
        return 0;
}

int etcd_decode_range(const char *body, size_t len, struct etcd_range *ret, int *ret_code,
                      char **ret_message)
{
        struct etcd_range tmp = {};
        json_t *root;
        int r;

        if (ret_message)
                *ret_message = NULL;
        if (ret_code)
                *ret_code = 0;
        root = load(body, len);
        if (!root)
                return -EBADMSG;
        if (json_object_get(root, "error"))
                r = decode_error(root, ret_code, ret_message);
        else
                r = decode_range(root, &tmp);
        json_decref(root);
        if (r < 0 || !ret)
                etcd_range_done(&tmp);
        if (r == 0 && ret)
                *ret = tmp;
        return r == -ENOMEM || r == -EIO ? r : r < 0 ? -EBADMSG : 0;
}

int etcd_decode_txn(const char *body, size_t len, struct etcd_header *ret_header,
                    bool *ret_succeeded, int *ret_code, char **ret_message)
{
        struct etcd_header h;
        bool ok = false;
        json_t *root;
        int r;

        if (ret_message)
                *ret_message = NULL;
        if (ret_code)
                *ret_code = 0;
        root = load(body, len);
        if (!root)
                return -EBADMSG;
        if (json_object_get(root, "error"))
                r = decode_error(root, ret_code, ret_message);
        else {
                r = decode_header(json_object_get(root, "header"), &h);
                if (r >= 0 && (h.revision <= 0 || get_bool(root, "succeeded", &ok) < 0))
                        r = -EBADMSG;
        }
        json_decref(root);
        if (r < 0)
                return r == -ENOMEM || r == -EIO ? r : -EBADMSG;
        if (ret_header)
                *ret_header = h;
        if (ret_succeeded)
                *ret_succeeded = ok;
        return 0;
}

int etcd_decode_auth(const char *body, size_t len, char **ret_token, int *ret_code,
                     char **ret_message)
{
        json_t *root, *token;
        int r = 0;

        *ret_token = NULL;
        if (ret_message)
                *ret_message = NULL;
        if (ret_code)
                *ret_code = 0;
        root = load(body, len);
        if (!root)
                return -EBADMSG;
        if (json_object_get(root, "error"))
                r = decode_error(root, ret_code, ret_message);
        else {
                token = json_object_get(root, "token");
                /* A token goes into a header line: printable ASCII only. */
                if (!json_is_string(token) || json_string_length(token) == 0 ||
                    json_string_length(token) > 4096)
                        r = -EBADMSG;
                for (const char *p = r == 0 ? json_string_value(token) : ""; *p; p++)
                        if (*p < 0x21 || *p > 0x7e)
                                r = -EBADMSG;
                if (r == 0 && !(*ret_token = strdup(json_string_value(token))))
                        r = -ENOMEM;
        }
        json_decref(root);
        return r == -ENOMEM || r == -EIO ? r : r < 0 ? -EBADMSG : 0;
}

int etcd_decode_host_report(const void *value, size_t len, struct etcd_host_report *ret)
{
        json_t *root = value ? load(value, len) : NULL;
        int r;

        *ret = (struct etcd_host_report){};
        if (!root)
                return -EBADMSG;
        r = get_i64(root, "applied_revision", &ret->applied_revision);
        if (r >= 0)
                r = get_u64(root, "reported_at", &ret->reported_at);
        json_decref(root);
        return r < 0 ? -EBADMSG : 0;
}

/* An optional text of a host's use: no C0, DEL or C1 control (jansson has checked the UTF-8). */
static int get_use_text(json_t *o, const char *name, char ret[ETCD_USE_TEXT_MAX + 1])
{
        json_t *v = json_object_get(o, name);
        const unsigned char *s;
        size_t len;

        ret[0] = '\0';
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v))
                return -EBADMSG;
        s = (const unsigned char *)json_string_value(v);
        len = json_string_length(v);
        if (len > ETCD_USE_TEXT_MAX || strlen((const char *)s) != len)
                return -EBADMSG;
        for (size_t i = 0; i < len; i++)
                if (s[i] < 0x20 || s[i] == 0x7f || (s[i] == 0xc2 && i + 1 < len && s[i + 1] < 0xa0))
                        return -EBADMSG;
        memcpy(ret, s, len + 1);
        return 0;
}

int etcd_decode_host_use(const void *value, size_t len, struct etcd_host_use *ret)
{
        json_t *root = value ? load(value, len) : NULL;
        int r;

        *ret = (struct etcd_host_use){};
        if (!root || !json_is_object(root)) {
                json_decref(root);
                return -EBADMSG;
        }
        r = get_u64(root, "at", &ret->at);
        if (r >= 0 && ret->at == 0)
                r = -EBADMSG;
        if (r >= 0)
                r = get_use_text(root, "service", ret->service);
        if (r >= 0)
                r = get_use_text(root, "from", ret->from);
        json_decref(root);
        if (r < 0)
                *ret = (struct etcd_host_use){};
        return r < 0 ? -EBADMSG : 0;
}

void etcd_lines_init(struct etcd_lines *l, size_t max)
{
        *l = (struct etcd_lines){.max = max ? max : ETCD_LINE_MAX};
}

void etcd_lines_reset(struct etcd_lines *l)
{
        size_t max = l->max;

        free(l->buf);
        etcd_lines_init(l, max);
}

static int emit(const char *line, size_t len, etcd_line_fn fn, void *userdata)
{
        if (len > 0 && line[len - 1] == '\r')
                len--;
        return len == 0 ? 0 : fn(line, len, userdata);
}

int etcd_lines_feed(struct etcd_lines *l, const char *data, size_t len, etcd_line_fn fn,
                    void *userdata)
{
        int r;

        if (l->len > l->max)
                return -E2BIG;
        while (len > 0) {
                const char *nl = memchr(data, '\n', len);
                size_t take = nl ? (size_t)(nl - data) : len;

                if (l->len + take > l->max) {
                        l->len = l->max + 1;
                        return -E2BIG;
                }
                if (nl && l->len == 0) {
                        /* A whole line in what arrived: no copy. */
                        r = emit(data, take, fn, userdata);
                } else {
                        if (l->len + take + 1 > l->allocated) {
                                size_t want = l->allocated ? l->allocated : 4096;
                                char *b;

                                while (want < l->len + take + 1)
                                        want *= 2;
                                b = realloc(l->buf, want);
                                if (!b)
                                        return -ENOMEM;
                                l->buf = b;
                                l->allocated = want;
                        }
                        memcpy(l->buf + l->len, data, take);
                        l->len += take;
                        if (!nl)
                                return 0;
                        r = emit(l->buf, l->len, fn, userdata);
                        l->len = 0;
                }
                if (r < 0)
                        return r;
                data += take + 1;
                len -= take + 1;
        }
        return 0;
}

char *etcd_base64(const void *data, size_t len)
{
        size_t n = sodium_base64_encoded_len(len, sodium_base64_VARIANT_ORIGINAL);
        char *out = malloc(n);

        if (!out)
                return NULL;
        sodium_bin2base64(out, n, data, len, sodium_base64_VARIANT_ORIGINAL);
        return out;
}
