/* SPDX-License-Identifier: MIT */
/*
 * The Verify method: the policy around a token that token_check.c has
 * checked (status, owner, scope, permissions), and the signed answer
 * written straight as text.  Both decoders of a call end in
 * verify_run(): the general one (method_verify) and the fast one
 * (verify_fast_path, verify_call.c).
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "fleet.h"
#include "key_limits.h"
#include "log.h"
#include "methods.h"
#include "sources.h"
#include "text_check.h"
#include "text.h"
#include "timeutil.h"
#include "token_check.h"
#include "verify.h"
#include "verify_call.h"

/* A text, or nothing for NULL, appended; json_out does the bookkeeping. */
static void out_text(struct json_out *o, const char *s)
{
        if (s)
                json_out_raw(o, s, strlen(s));
}

int api_verify_canonical(char *buf, size_t size, const char *signed_at, bool valid,
                         const char *code, const char *id, const char *owner, const char *service,
                         const char *user, const char *rhost)
{
        struct json_out o;
        int n;

        /* By hand rather than snprintf(): this runs on every verify.  Each
         * literal's length is known when compiling. */
        json_out_init(&o, buf, size);
        json_out_lit(&o, "apikeyd-verify-v1\nsigned_at=");
        out_text(&o, signed_at);
        json_out_lit(&o, valid ? "\nvalid=true\ncode=" : "\nvalid=false\ncode=");
        out_text(&o, code);
        json_out_lit(&o, "\nid=");
        out_text(&o, id);
        json_out_lit(&o, "\nowner=");
        out_text(&o, owner);
        json_out_lit(&o, "\nservice=");
        out_text(&o, service);
        json_out_lit(&o, "\nuser=");
        out_text(&o, user);
        json_out_lit(&o, "\nrhost=");
        out_text(&o, rhost);
        json_out_raw(&o, "\n", 2); /* with the NUL, as snprintf() would */
        n = json_out_done(&o);
        return n < 0 ? -ENOBUFS : n - 1;
}

/*
 * Standard base64 with padding, by table lookup: for the signature only,
 * which is public.  Secrets go through sodium_bin2base64(), which takes
 * the same time whatever the bytes (and four times as long).
 */
static void base64_public(const uint8_t *in, size_t n, char *out)
{
        static const char abc[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t i = 0;

        for (; i + 3 <= n; i += 3) {
                uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
                *out++ = abc[v >> 18];
                *out++ = abc[(v >> 12) & 63];
                *out++ = abc[(v >> 6) & 63];
                *out++ = abc[v & 63];
        }
        if (i < n) {
                uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
                *out++ = abc[v >> 18];
                *out++ = abc[(v >> 12) & 63];
                *out++ = i + 1 < n ? abc[(v >> 6) & 63] : '=';
                *out++ = '=';
        }
        *out = '\0';
}

/* `,"signed_at":…,"signature":…` for a Verify reply. */
static int sign_verify_reply(struct api *a, struct request *q, const struct verify_args *v,
                             struct json_out *o, bool valid, enum verify_code code,
                             const struct key_record *rec)
{
        char canon[4 * KEY_FIELD_MAX + KEY_OWNER_MAX + 256];
        const char *at = a->signed_at;
        unsigned char mac[API_SIGNATURE_SIZE];
        char b64[sodium_base64_ENCODED_LEN(API_SIGNATURE_SIZE, sodium_base64_VARIANT_ORIGINAL)];
        crypto_generichash_state st;
        int n;

        if (q->now / USEC_PER_SEC != a->signed_sec || !a->signed_at[0]) {
                if (timestamp_format(q->now, a->signed_at) < 0)
                        return -EINVAL;
                a->signed_sec = q->now / USEC_PER_SEC;
        }
        n = api_verify_canonical(canon, sizeof(canon), at, valid, verify_code_to_string(code),
                                 rec ? rec->id : NULL, rec ? rec->owner : NULL, V_SERVICE(v),
                                 V_USER(v), V_RHOST(v));
        if (n < 0)
                return n;
        memcpy(&st, a->sign_state, sizeof(st));
        if (crypto_generichash_update(&st, (const unsigned char *)canon, (size_t)n) < 0 ||
            crypto_generichash_final(&st, mac, sizeof(mac)) < 0)
                n = -EINVAL;
        sodium_memzero(&st, sizeof(st));
        if (n < 0)
                return n;
        base64_public(mac, sizeof(mac), b64);
        /* A timestamp and base64: nothing to escape. */
        json_out_lit(o, ",\"signed_at\":\"");
        json_out_raw(o, at, TIMESTAMP_MAX - 1);
        json_out_lit(o, "\",\"signature\":\"");
        json_out_raw(o, b64, sizeof(b64) - 1);
        json_out_raw(o, "\"", 1);
        return 0;
}

/*
 * What a login needs of the key, for a call with `brief`: its id (for the
 * log) and its expiry (to warn of it), not the whole Key.
 */
static void write_brief_key(struct json_out *o, const struct key_record *rec)
{
        char at[TIMESTAMP_MAX + 1]; /* in quotes, in place of its NUL */

        /* Base62, digits and "-:TZ": nothing to escape. */
        json_out_lit(o, ",\"key_id\":\"");
        json_out_raw(o, rec->id, strlen(rec->id));
        json_out_raw(o, "\"", 1);
        if (rec->expires_at && timestamp_format(rec->expires_at, at + 1) >= 0) {
                at[0] = '"';
                at[TIMESTAMP_MAX] = '"';
                json_out_lit(o, ",\"expires_at\":");
                json_out_raw(o, at, TIMESTAMP_MAX + 1);
        }
}

/* `,"expires_in":N`: the whole seconds the key has left (a valid key's expiry is after `now`). */
static void write_expires_in(struct json_out *o, uint64_t expires_at, uint64_t now)
{
        uint64_t left = expires_at > now ? (expires_at - now) / USEC_PER_SEC : 0;
        char digits[20];
        size_t n = sizeof(digits);

        do
                digits[--n] = (char)('0' + left % 10);
        while ((left /= 10) > 0);
        json_out_lit(o, ",\"expires_in\":");
        json_out_raw(o, digits + n, sizeof(digits) - n);
}

/* Room for the largest Verify answer: every field of a key at its longest, escaped. */
#define VERIFY_REPLY_MAX                                                                           \
        (6 * (KEY_NAME_MAX + KEY_DESCRIPTION_MAX + KEY_OWNER_MAX +                                 \
              KEY_SCOPE_MAX * (KEY_SCOPE_ENTRY_MAX + 3) + 3 * KEY_FIELD_MAX +                      \
              KEY_SOURCES_MAX * (KEY_SOURCE_ENTRY_MAX + 3) + KEY_REASON_MAX) +                     \
         2048)

/*
 * Verify a token, given its parameters, and answer; the token's memory is
 * the caller's to erase.  Both decoders end here, so the answer is the
 * same whichever read the call.
 */
static int verify_run(struct request *q, const struct verify_args *v)
{
        struct api *a = q->api;
        const char *service = V_SERVICE(v), *user = V_USER(v), *code_text;
        enum verify_code code;
        /* Its record is not zeroed: api_check_token() fills what is read. */
        _cleanup_key_view_ struct key_view view;
        const struct key_record *rec = &view.rec;
        char tok_id[TOKEN_ID_LEN + 1], blocked[TOKEN_ID_LEN + 1];
        char reply[VERIFY_REPLY_MAX];
        struct json_out o;
        size_t code_len;
        bool matched, valid;
        int r;

        view.ks = NULL;
        for (size_t i = 0; i < _VERIFY_TEXT_MAX; i++)
                /* A control character could forge log lines or the canonical
                 * form of a signature, and could not be stored as last use. */
                if (v->text[i] && !(v->text_plain & (1u << i)) &&
                    !text_valid(v->text[i], KEY_FIELD_MAX))
                        return api_reply_invalid(q, verify_text_names[i]);
        code = api_check_token(a, v->token, v->token_len, &view, &matched, tok_id);
        if (matched) {
                enum key_status st = record_effective_status(rec, q->now);
                bool in_scope = rec->n_scope == 0 || !service;

                for (size_t i = 0; !in_scope && i < rec->n_scope; i++)
                        in_scope = STREQ(rec->scope[i], service);
                if (st == KEY_STATUS_REVOKED)
                        code = VERIFY_CODE_REVOKED;
                else if (st == KEY_STATUS_EXPIRED)
                        code = VERIFY_CODE_EXPIRED;
                else if (st == KEY_STATUS_DISABLED)
                        code = VERIFY_CODE_DISABLED;
                else if (rec->parent[0] &&
                         (r = keystore_lineage(a->ks, rec, q->now, blocked, NULL)) != 0) {
                        /* Suspended while a key it was created through is not enabled. */
                        if (r < 0)
                                log_error("reading the keys %s was created through failed: %s",
                                          rec->id, strerror(-r));
                        code = r < 0 ? VERIFY_CODE_UNAVAILABLE : VERIFY_CODE_DISABLED;
                } else if (q->now < rec->not_before)
                        /* The key's own conditions: when, and from where, it may
                         * be used at all, before what it is used for. */
                        code = VERIFY_CODE_NOT_YET_VALID;
                else if (rec->n_sources > 0 &&
                         !sources_allow(rec->sources, rec->n_sources, V_RHOST(v)))
                        code = VERIFY_CODE_SOURCE_DENIED;
                else if (user && (rec->flags & KEY_FLAG_NO_LOGIN))
                        code = VERIFY_CODE_NOT_FOR_LOGIN;
                else if (user && !STREQ(user, rec->owner))
                        code = VERIFY_CODE_WRONG_USER;
                else if (!in_scope)
                        code = VERIFY_CODE_OUT_OF_SCOPE;
                else if ((rec->permissions & v->need) != v->need)
                        code = VERIFY_CODE_INSUFFICIENT_PERMISSIONS;
                else
                        code = VERIFY_CODE_VALID;
        }
        if (a->fleet)
                code = fleet_verify_code(a->fleet, code, tok_id);
        code = api_lockout_apply(q, V_USER(v), V_RHOST(v), v->text[VERIFY_RUSER], code, matched,
                                 tok_id);
        if (code == VERIFY_CODE_VALID && limits_apply_to(rec)) {
                r = limits_verify(q, v, rec, &code);
                if (r != 0)
                        return r < 0 ? r : 0; /* answered once its use is written */
        }
        valid = code == VERIFY_CODE_VALID;
        code_text = verify_code_to_string_len(code, &code_len);
        if (matched)
                usage_note(&a->usage, rec->id, q->now, code, service, V_RHOST(v),
                           v->text[VERIFY_TTY]);

        json_out_init(&o, reply, sizeof(reply));
        /* The code's text needs no escaping: copied as it is, between quotes. */
        json_out_lit(&o, valid ? "{\"parameters\":{\"valid\":true,\"code\":\""
                               : "{\"parameters\":{\"valid\":false,\"code\":\"");
        json_out_raw(&o, code_text, code_len);
        json_out_raw(&o, "\"", 1);
        if (valid) {
                r = lastused_note(&a->lastused, rec->id, q->now, service, V_RHOST(v));
                if (r < 0)
                        log_warning("noting the last use of key %s failed: %s", rec->id,
                                    strerror(-r));
                if (rec->expires_at)
                        write_expires_in(&o, rec->expires_at, q->now);
                if (v->brief)
                        write_brief_key(&o, rec);
                else {
                        json_out_name(&o, "key", false);
                        api_key_write(&o, a, rec, q->now);
                }
        }
        r = sign_verify_reply(a, q, v, &o, valid, code, valid ? rec : NULL);
        json_out_lit(&o, "}}");
        /* The record is read: end the view before the refusal is logged,
         * which may wait on the journal. */
        char owner[KEY_OWNER_MAX + 1] = "";
        if (!valid && matched)
                str_copy(owner, sizeof(owner), rec->owner);
        key_view_end(&view);
        if (!valid)
                api_audit_token_refusal(q, "verify", v, code, tok_id[0] ? tok_id : NULL,
                                        owner[0] ? owner : NULL);
        if (r < 0 || (r = json_out_done(&o)) < 0)
                return r;
        return api_reply_raw(q, reply, (size_t)r);
}

int verify_settle(struct request *q, const struct verify_args *v)
{
        return verify_run(q, v);
}

static int method_verify(struct request *q)
{
        static const struct param spec[] = {
            PARAM(token, JSON_STRING, true),
            PARAM(service, JSON_STRING, false),
            PARAM(user, JSON_STRING, false),
            PARAM(rhost, JSON_STRING, false),
            PARAM(tty, JSON_STRING, false),
            PARAM(ruser, JSON_STRING, false),
            PARAM(permissions, JSON_ARRAY, false),
            PARAM(auth, JSON_STRING, false),
            PARAM(brief, JSON_TRUE, false), /* a boolean */
            {NULL, 0, false, 0},
        };
        /* The token's JSON string, to erase whatever the answer. */
        json_t *tok = json_object_get(q->params, "token");
        struct method_params p;
        struct verify_args v = {0};
        int r;

        if (api_decode_params(q, spec, &p) < 0) {
                api_erase_json_string(tok);
                return 0;
        }
        if (p.permissions && api_parse_permissions(p.permissions, &v.need) < 0) {
                api_erase_json_string(tok);
                return api_reply_invalid(q, "permissions");
        }
        v.text[VERIFY_SERVICE] = p.service;
        v.text[VERIFY_USER] = p.user;
        v.text[VERIFY_RHOST] = p.rhost;
        v.text[VERIFY_TTY] = p.tty;
        v.text[VERIFY_RUSER] = p.ruser;
        v.token = p.token;
        v.token_len = json_string_length(tok);
        v.brief = p.brief;
        r = verify_run(q, &v);
        api_erase_json_string(tok);
        return r;
}

const struct method verify_methods[] = {
    {KEYS_METHOD_VERIFY, method_verify, false, false},
    {NULL, NULL, false, false},
};

int verify_fast_path(struct request *q, const char *msg, size_t len)
{
        struct verify_call call;
        int r = 0;

        if (verify_call_parse(msg, len, &call) > 0) {
                struct verify_args v = {.token = call.token,
                                        .token_len = call.token_len,
                                        .need = call.permissions,
                                        .text_plain = call.text_plain,
                                        .brief = call.brief};
                for (size_t i = 0; i < _VERIFY_TEXT_MAX; i++)
                        v.text[i] = call.has_text[i] ? call.text[i] : NULL;
                r = verify_run(q, &v);
                r = r < 0 ? r : 1;
        }
        verify_call_erase(&call);
        return r;
}
