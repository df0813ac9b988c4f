/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the Verify fast path's decoder (apikeyd/api/verify_call.c) against the
 * general one (varlink_call_parse, on jansson):
 *
 *   - a message the fast decoder takes, the general one reads as a Verify
 *     call with no flag set and exactly the same parameters, so the
 *     daemon's answer cannot depend on which decoder read it;
 *   - a Verify call of the plain shape (only known parameters, strings no
 *     longer than the fast decoder's buffers, known permission names, no
 *     null, no auth, no other member) is taken by the fast decoder, so the
 *     fast path is not silently skipped.
 */
#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "text_check.h"
#include "varlink.h"
#include "verify_call.h"
#include "fuzz.h"

#define INPUT_MAX (16 * 1024)

static bool same_string(json_t *j, const char *s, size_t len)
{
        return json_is_string(j) && json_string_length(j) == len &&
               memcmp(json_string_value(j), s, len) == 0;
}

/* Whether the general decoder's call is one the fast decoder must take. */
static bool plain_shape(const struct varlink_call *call)
{
        const char *k;
        json_t *v;

        if (!STREQ(call->method, "io.apikeyd.Keys.Verify"))
                return false;
        json_object_foreach(call->root, k, v)
        {
                if (STREQ(k, "method") || STREQ(k, "parameters"))
                        continue;
                if (!(STREQ(k, "oneway") || STREQ(k, "more") || STREQ(k, "upgrade")) ||
                    !json_is_false(v))
                        return false;
        }
        if (!json_is_object(json_object_get(call->root, "parameters")))
                return false;
        if (!json_is_string(json_object_get(call->parameters, "token")) ||
            json_string_length(json_object_get(call->parameters, "token")) > TOKEN_MAX_LEN)
                return false;
        json_object_foreach(call->parameters, k, v)
        {
                size_t i;
                json_t *e;

                if (STREQ(k, "token"))
                        continue;
                if (STREQ(k, "permissions")) {
                        if (!json_is_array(v))
                                return false;
                        json_array_foreach(v, i, e) if (!json_is_string(e) ||
                                                        key_perm_from_string(json_string_value(e)) <
                                                            0) return false;
                        continue;
                }
                if (STREQ(k, "brief")) {
                        if (!json_is_boolean(v))
                                return false;
                        continue;
                }
                for (i = 0; i < _VERIFY_TEXT_MAX; i++)
                        if (STREQ(k, verify_text_names[i]))
                                break;
                if (i == _VERIFY_TEXT_MAX || !json_is_string(v) ||
                    json_string_length(v) > KEY_FIELD_MAX)
                        return false;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct verify_call fast;
        struct varlink_call call;
        const char *msg = (const char *)data;
        bool taken;
        int r;

        if (size > INPUT_MAX)
                size = INPUT_MAX;
        /* Messages never hold a NUL: the framing ends them there. */
        const uint8_t *nul = memchr(data, '\0', size);
        if (nul)
                size = (size_t)(nul - data);

        taken = verify_call_parse(msg, size, &fast) > 0;
        r = varlink_call_parse(msg, size, &call);
        CHECK(r == 0 || r == -EBADMSG || r == -ENOMEM);
        if (r == -ENOMEM)
                return 0;
        if (taken) {
                size_t n = 0, i;
                json_t *e, *perms;
                uint8_t bits = 0;

                CHECK(r == 0);
                CHECK(STREQ(call.method, "io.apikeyd.Keys.Verify"));
                CHECK(!call.oneway && !call.more && !call.upgrade);
                CHECK(same_string(json_object_get(call.parameters, "token"), fast.token,
                                  fast.token_len));
                n++;
                for (i = 0; i < _VERIFY_TEXT_MAX; i++) {
                        json_t *v = json_object_get(call.parameters, verify_text_names[i]);
                        CHECK(fast.has_text[i] == (v != NULL));
                        if (v) {
                                CHECK(same_string(v, fast.text[i], strlen(fast.text[i])));
                                /* Taken as checked text: it must pass the check. */
                                if (fast.text_plain & (1u << i))
                                        CHECK(text_valid(fast.text[i], KEY_FIELD_MAX));
                                n++;
                        }
                }
                perms = json_object_get(call.parameters, "permissions");
                if (perms) {
                        json_array_foreach(perms, i, e) bits |=
                            (uint8_t)key_perm_from_string(json_string_value(e));
                        n++;
                }
                CHECK(bits == fast.permissions);
                e = json_object_get(call.parameters, "brief");
                CHECK(fast.brief == json_is_true(e));
                n += e != NULL;
                /* Nothing else, auth least of all. */
                CHECK(json_object_size(call.parameters) == n);
        }
        if (r == 0) {
                if (plain_shape(&call))
                        CHECK(taken);
                varlink_call_done(&call);
        }
        verify_call_erase(&fast);
        return 0;
}
