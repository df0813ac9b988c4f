/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the PAM module's reading of apikeyd's answer to Verify
 * (pam_apikey/reply.c) against jansson, which read it before, both ways:
 *
 *   - a reply the decoder accepts, jansson (JSON_REJECT_DUPLICATES) accepts
 *     too, and the module's earlier checks on the tree pass and give the
 *     same fields: error name, valid, code, key id and expiry, each cut to
 *     its field at a character boundary;
 *   - a reply jansson and those checks accept, the decoder accepts too,
 *     unless it is past one of the decoder's documented limits (nesting,
 *     members per object, name length, numbers of 1e308 or more).
 *
 * The first is the one the module's safety rests on: nothing jansson would
 * have refused, and no reading jansson would not share, can reach the
 * mapping to a PAM code.  The code it reads is then looked up as the module
 * looks it up (verify_code_from_string): a code comes back only for its
 * exact text, anything else is _VERIFY_CODE_INVALID.
 */
#include <stdint.h>
#include <string.h>

#include <jansson.h>

#include "../../pam_apikey/reply.h"
#include "fuzz.h"
#include "keys_proto.h"

/* Replies are a few hundred bytes; longer inputs add nothing but time. */
#define INPUT_MAX (16 * 1024)

/* `s` cut as the decoder cuts a string too long for its field. */
static void cut(char *dst, size_t size, const char *s)
{
        size_t n = 0, len = strlen(s);

        while (n < len) {
                unsigned char c = (unsigned char)s[n];
                size_t k = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;

                if (n + k > size - 1)
                        break;
                n += k;
        }
        memset(dst, 0, size);
        memcpy(dst, s, n);
}

/* Whether the tree is past a limit of the decoder's that jansson does not have. */
static bool beyond_limits(json_t *j, size_t depth)
{
        const char *name;
        json_t *v;
        size_t i;

        if (json_is_real(j))
                return json_real_value(j) >= 1e308 || json_real_value(j) <= -1e308;
        if (!json_is_object(j) && !json_is_array(j))
                return false;
        if (depth + 1 > VERIFY_REPLY_MAX_DEPTH)
                return true;
        if (json_is_array(j)) {
                json_array_foreach(j, i, v)
                {
                        if (beyond_limits(v, depth + 1))
                                return true;
                }
                return false;
        }
        if (json_object_size(j) > VERIFY_REPLY_MAX_MEMBERS)
                return true;
        json_object_foreach(j, name, v)
        {
                if (strlen(name) > VERIFY_REPLY_MAX_NAME || beyond_limits(v, depth + 1))
                        return true;
        }
        return false;
}

/* The module's earlier reading: jansson, then its checks on the tree. */
static bool jansson_decode(json_t *root, struct verify_reply *ret)
{
        json_t *params, *e, *cont, *code, *valid, *key, *v;

        *ret = (struct verify_reply){0};
        params = json_object_get(root, "parameters");
        e = json_object_get(root, "error");
        cont = json_object_get(root, "continues");
        if (!json_is_object(root) || (params && !json_is_object(params)) ||
            (e && !json_is_string(e)) || (cont && !json_is_boolean(cont)))
                return false;
        if (e) {
                ret->error = true;
                cut(ret->error_name, sizeof(ret->error_name), json_string_value(e));
                return true;
        }
        code = json_object_get(params, "code");
        valid = json_object_get(params, "valid");
        if (!json_is_string(code) || !json_is_boolean(valid))
                return false;
        ret->valid = json_is_true(valid);
        cut(ret->code, sizeof(ret->code), json_string_value(code));
        key = json_object_get(params, "key");
        if (json_is_object(key)) {
                v = json_object_get(key, "id");
                if (json_is_string(v))
                        cut(ret->key_id, sizeof(ret->key_id), json_string_value(v));
                v = json_object_get(key, "expires_at");
                if (json_is_string(v))
                        cut(ret->expires_at, sizeof(ret->expires_at), json_string_value(v));
        }
        /* A brief answer's, where the key gave none. */
        v = json_object_get(params, "key_id");
        if (!ret->key_id[0] && json_is_string(v))
                cut(ret->key_id, sizeof(ret->key_id), json_string_value(v));
        v = json_object_get(params, "expires_at");
        if (!ret->expires_at[0] && json_is_string(v))
                cut(ret->expires_at, sizeof(ret->expires_at), json_string_value(v));
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct verify_reply mine, theirs;
        const char *msg = (const char *)data;
        json_t *root;
        bool mine_ok, theirs_ok = false, limits = false;

        if (size > INPUT_MAX)
                size = INPUT_MAX;
        /* A message never holds a NUL: the framing ends it there. */
        const uint8_t *nul = memchr(data, '\0', size);
        if (nul)
                size = (size_t)(nul - data);

        memset(&mine, 0xa5, sizeof(mine));
        mine_ok = verify_reply_decode(msg, size, &mine) == 0;

        root = json_loadb(msg, size, JSON_REJECT_DUPLICATES, NULL);
        if (root) {
                theirs_ok = jansson_decode(root, &theirs);
                limits = beyond_limits(root, 0);
        }

        if (!mine_ok) {
                /* A refused reply leaves the caller's answer as it was. */
                for (size_t i = 0; i < sizeof(mine); i++)
                        CHECK(((const uint8_t *)&mine)[i] == 0xa5);
        } else {
                CHECK(theirs_ok);
                CHECK(mine.error == theirs.error);
                CHECK(strcmp(mine.error_name, theirs.error_name) == 0);
                CHECK(mine.valid == theirs.valid);
                CHECK(strcmp(mine.code, theirs.code) == 0);
                CHECK(strcmp(mine.key_id, theirs.key_id) == 0);
                CHECK(strcmp(mine.expires_at, theirs.expires_at) == 0);

                enum verify_code c = verify_code_from_string(mine.code);
                CHECK(c == _VERIFY_CODE_INVALID || (c >= 0 && c < _VERIFY_CODE_MAX));
                if (c != _VERIFY_CODE_INVALID)
                        CHECK(strcmp(verify_code_to_string(c), mine.code) == 0);
        }
        if (theirs_ok && !limits)
                CHECK(mine_ok);
        json_decref(root);
        return 0;
}
