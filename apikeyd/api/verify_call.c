/* SPDX-License-Identifier: MIT */
/* The Verify fast path's decoder; see verify_call.h. */
#include <errno.h>
#include <string.h>

#include "json_scan.h"
#include "keys_proto.h"
#include "verify_call.h"

const char *const verify_text_names[_VERIFY_TEXT_MAX] = {
    [VERIFY_SERVICE] = "service", [VERIFY_USER] = "user",   [VERIFY_RHOST] = "rhost",
    [VERIFY_TTY] = "tty",         [VERIFY_RUSER] = "ruser",
};

/* The names a call's parameters may have here: the texts', then these. */
enum {
        PARAM_TOKEN = _VERIFY_TEXT_MAX,
        PARAM_PERMISSIONS,
        PARAM_BRIEF,
        _PARAM_MAX,
};

static const char *const param_names[_PARAM_MAX] = {
    [VERIFY_SERVICE] = "service",
    [VERIFY_USER] = "user",
    [VERIFY_RHOST] = "rhost",
    [VERIFY_TTY] = "tty",
    [VERIFY_RUSER] = "ruser",
    [PARAM_TOKEN] = "token",
    [PARAM_PERMISSIONS] = "permissions",
    [PARAM_BRIEF] = "brief",
};

enum { CALL_METHOD, CALL_PARAMETERS, CALL_ONEWAY, CALL_MORE, CALL_UPGRADE, _CALL_MAX };

static const char *const call_names[_CALL_MAX] = {
    [CALL_METHOD] = "method", [CALL_PARAMETERS] = "parameters", [CALL_ONEWAY] = "oneway",
    [CALL_MORE] = "more",     [CALL_UPGRADE] = "upgrade",
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
        unsigned seen = 0;
        size_t i;
        int r;

        if (json_scan_object_begin(s) < 0)
                return 0;
        while ((r = json_scan_member(s, param_names, _PARAM_MAX, &i)) > 0) {
                bool printable;

                /* "auth", unknown names, a name twice: the general path answers those. */
                if (i == _PARAM_MAX || (seen & (1u << i)))
                        return 0;
                seen |= 1u << i;
                if (i == PARAM_TOKEN)
                        r = json_scan_string(s, v->token, sizeof(v->token), &v->token_len);
                else if (i == PARAM_PERMISSIONS)
                        r = parse_permissions(s, &v->permissions) > 0 ? 0 : -EBADMSG;
                else if (i == PARAM_BRIEF)
                        r = json_scan_bool(s, &v->brief);
                else {
                        r = json_scan_text(s, v->text[i], sizeof(v->text[i]), NULL, &printable);
                        v->has_text[i] = true;
                        if (r == 0 && printable)
                                v->text_plain |= (uint8_t)(1u << i);
                }
                if (r < 0)
                        return 0;
        }
        return r == 0 && (seen & (1u << PARAM_TOKEN));
}

int verify_call_parse(const char *msg, size_t len, struct verify_call *ret)
{
        bool seen_method = false, seen_params = false;
        struct json_scan s;
        size_t i;
        int r;

        /* Not the whole struct: the text buffers are written before they are read. */
        ret->token_len = 0;
        ret->permissions = 0;
        ret->brief = false;
        ret->text_plain = 0;
        memset(ret->has_text, 0, sizeof(ret->has_text));
        json_scan_init(&s, msg, len);
        if (json_scan_object_begin(&s) < 0)
                return 0;
        while ((r = json_scan_member(&s, call_names, _CALL_MAX, &i)) > 0) {
                if (i == CALL_METHOD) {
                        if (seen_method || json_scan_string_is(&s, KEYS_METHOD_VERIFY) <= 0)
                                return 0;
                        seen_method = true;
                } else if (i == CALL_PARAMETERS) {
                        if (seen_params || parse_parameters(&s, ret) <= 0)
                                return 0;
                        seen_params = true;
                } else if (i < _CALL_MAX) {
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
