/* SPDX-License-Identifier: MIT */
/* The Verify fast path's decoder; see verify_call.h. */
#include <string.h>

#include "json_scan.h"
#include "keys_proto.h"
#include "verify_call.h"

const char *const verify_text_names[_VERIFY_TEXT_MAX] = {
    [VERIFY_SERVICE] = "service", [VERIFY_USER] = "user",   [VERIFY_RHOST] = "rhost",
    [VERIFY_TTY] = "tty",         [VERIFY_RUSER] = "ruser",
};

/* Longer than any name the decoder accepts, so a longer one is refused as too long. */
#define NAME_MAX_LEN 16

static int parse_permissions(struct json_scan *s, uint8_t *ret)
{
        char name[NAME_MAX_LEN];
        uint8_t perms = 0;
        int r;

        if (json_scan_array_begin(s) < 0)
                return 0;
        while ((r = json_scan_array_next(s)) > 0) {
                int p;
                if (json_scan_string(s, name, sizeof(name), NULL) < 0)
                        return 0;
                p = key_perm_from_string(name);
                if (p < 0)
                        return 0;
                perms |= (uint8_t)p;
        }
        if (r < 0)
                return 0;
        *ret = perms;
        return 1;
}

static int parse_parameters(struct json_scan *s, struct verify_call *v)
{
        char name[NAME_MAX_LEN];
        bool seen_token = false, seen_perms = false, seen_brief = false;
        int r;

        if (json_scan_object_begin(s) < 0)
                return 0;
        while ((r = json_scan_object_next(s, name, sizeof(name))) > 0) {
                if (STREQ(name, "token")) {
                        if (seen_token ||
                            json_scan_string(s, v->token, sizeof(v->token), &v->token_len) < 0)
                                return 0;
                        seen_token = true;
                        continue;
                }
                if (STREQ(name, "permissions")) {
                        if (seen_perms || parse_permissions(s, &v->permissions) <= 0)
                                return 0;
                        seen_perms = true;
                        continue;
                }
                if (STREQ(name, "brief")) {
                        if (seen_brief || json_scan_bool(s, &v->brief) < 0)
                                return 0;
                        seen_brief = true;
                        continue;
                }
                size_t i;
                for (i = 0; i < _VERIFY_TEXT_MAX; i++)
                        if (STREQ(name, verify_text_names[i]))
                                break;
                /* "auth", unknown names: the general path answers those. */
                if (i == _VERIFY_TEXT_MAX || v->has_text[i] ||
                    json_scan_string(s, v->text[i], sizeof(v->text[i]), NULL) < 0)
                        return 0;
                v->has_text[i] = true;
        }
        return r == 0 && seen_token;
}

int verify_call_parse(const char *msg, size_t len, struct verify_call *ret)
{
        static const char method[] = KEYS_METHOD_VERIFY;
        char name[NAME_MAX_LEN], value[sizeof(method)];
        bool seen_method = false, seen_params = false;
        struct json_scan s;
        int r;

        /* Not the whole struct: the text buffers are written before they are read. */
        ret->token_len = 0;
        ret->permissions = 0;
        ret->brief = false;
        memset(ret->has_text, 0, sizeof(ret->has_text));
        json_scan_init(&s, msg, len);
        if (json_scan_object_begin(&s) < 0)
                return 0;
        while ((r = json_scan_object_next(&s, name, sizeof(name))) > 0) {
                if (STREQ(name, "method")) {
                        if (seen_method || json_scan_string(&s, value, sizeof(value), NULL) < 0 ||
                            !STREQ(value, method))
                                return 0;
                        seen_method = true;
                } else if (STREQ(name, "parameters")) {
                        if (seen_params || parse_parameters(&s, ret) <= 0)
                                return 0;
                        seen_params = true;
                } else if (STREQ(name, "oneway") || STREQ(name, "more") || STREQ(name, "upgrade")) {
                        bool b;
                        /* Set flags change how the call is answered: the general path. */
                        if (json_scan_bool(&s, &b) < 0 || b)
                                return 0;
                } else
                        return 0;
        }
        return r == 0 && seen_method && seen_params && json_scan_finish(&s) == 0;
}

void verify_call_erase(struct verify_call *v)
{
        /* All of it: a token cut short by a bad message may lie past token_len. */
        explicit_bzero(v->token, sizeof(v->token));
        v->token_len = 0;
}
