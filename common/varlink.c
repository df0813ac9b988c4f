/* SPDX-License-Identifier: MIT */
/* Varlink call decoding, messages as JSON trees and the blocking client; see varlink.h. */
#include <errno.h>
#include <malloc.h>

#include "varlink.h"

void erasing_free(void *p)
{
        if (p) {
                explicit_bzero(p, malloc_usable_size(p));
                free(p);
        }
}

int varlink_call_parse(const char *msg, size_t len, struct varlink_call *ret)
{
        json_t *root, *m, *p, *flag;
        json_error_t err;
        static const char *const flags[] = {"oneway", "more", "upgrade"};
        bool values[3] = {false, false, false};

        root = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &err);
        if (!root)
                return -EBADMSG;
        if (!json_is_object(root))
                goto bad;
        m = json_object_get(root, "method");
        if (!json_is_string(m) || json_string_length(m) == 0)
                goto bad;
        p = json_object_get(root, "parameters");
        if (p && !json_is_object(p) && !json_is_null(p))
                goto bad;
        for (size_t i = 0; i < ELEMENTSOF(flags); i++) {
                flag = json_object_get(root, flags[i]);
                if (flag && !json_is_boolean(flag) && !json_is_null(flag))
                        goto bad;
                values[i] = json_is_true(flag);
        }
        if (!p || json_is_null(p)) {
                p = json_object();
                if (!p || json_object_set_new(root, "parameters", p) < 0) {
                        json_decref(root);
                        return -ENOMEM;
                }
        }
        *ret = (struct varlink_call){
            .root = root,
            .method = json_string_value(m),
            .parameters = p,
            .oneway = values[0],
            .more = values[1],
            .upgrade = values[2],
        };
        return 0;
bad:
        json_decref(root);
        return -EBADMSG;
}

void varlink_call_done(struct varlink_call *c)
{
        json_decref(c->root);
        *c = (struct varlink_call){0};
}

char *varlink_message_dump(const json_t *obj, size_t *ret_len)
{
        size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
        char *s;

        if (n == 0)
                return NULL;
        s = malloc(n + 1);
        if (!s)
                return NULL;
        if (json_dumpb(obj, s, n, JSON_COMPACT) != n) {
                free(s);
                return NULL;
        }
        s[n] = '\0';
        if (ret_len)
                *ret_len = n + 1;
        return s;
}

int varlink_recv(int fd, struct varlink_buffer *b, uint64_t deadline, json_t **ret_reply,
                 const char **ret_error, json_t **ret_parameters, bool *ret_continues)
{
        const char *msg;
        size_t len;
        int r;

        r = varlink_recv_message(fd, b, deadline, &msg, &len);
        if (r < 0)
                return r;

        json_error_t err;
        json_t *root = json_loadb(msg, len, JSON_REJECT_DUPLICATES, &err), *params, *e, *cont;

        if (!root)
                return -EBADMSG;
        params = json_object_get(root, "parameters");
        e = json_object_get(root, "error");
        cont = json_object_get(root, "continues");
        if (!json_is_object(root) || (params && !json_is_object(params)) ||
            (e && !json_is_string(e)) || (cont && !json_is_boolean(cont))) {
                json_decref(root);
                return -EBADMSG;
        }
        if (!params) {
                params = json_object();
                if (!params || json_object_set_new(root, "parameters", params) < 0) {
                        json_decref(root);
                        return -ENOMEM;
                }
        }
        *ret_reply = root;
        if (ret_error)
                *ret_error = e ? json_string_value(e) : NULL;
        if (ret_parameters)
                *ret_parameters = params;
        if (ret_continues)
                *ret_continues = json_is_true(cont);
        return 0;
}

int varlink_call(int fd, const char *method, json_t *parameters, uint64_t deadline,
                 json_t **ret_reply, const char **ret_error, json_t **ret_parameters)
{
        struct varlink_buffer b;
        json_t *req;
        char *msg;
        size_t len;
        int r;

        req = json_pack("{s:s}", "method", method);
        if (!req)
                return -ENOMEM;
        if (parameters && json_object_set(req, "parameters", parameters) < 0) {
                json_decref(req);
                return -ENOMEM;
        }
        msg = varlink_message_dump(req, &len);
        json_decref(req);
        if (!msg)
                return -ENOMEM;
        r = varlink_send(fd, msg, len, deadline);
        erase(msg, len);
        free(msg);
        if (r < 0)
                return r;

        varlink_buffer_init(&b, 16u * 1024u * 1024u, false);
        r = varlink_recv(fd, &b, deadline, ret_reply, ret_error, ret_parameters, NULL);
        varlink_buffer_done(&b);
        return r;
}
