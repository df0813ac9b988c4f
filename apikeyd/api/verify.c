/* SPDX-License-Identifier: MIT */
/*
 * The Verify method: checking a token, the policy around it (status,
 * owner, scope, permissions, lockout), logging refusals, and the signed
 * answer written straight as text.  Both decoders of a call end in
 * verify_run(): the general one (method_verify) and the fast one
 * (verify_fast_path, verify_call.c).
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "methods.h"
#include "state.h"
#include "text_check.h"
#include "text.h"
#include "timeutil.h"
#include "verify.h"
#include "verify_call.h"

/*
 * Verify a token's secret: the code, and when the secret matched, the
 * record as a view (`*view`, which the caller ends; see keystore_view()).
 */
enum verify_code api_verify_token(struct api *a, const char *token, size_t len,
                                  struct key_view *view, bool *ret_matched,
                                  char ret_id[TOKEN_ID_LEN + 1])
{
        static const uint8_t nothing[KEY_HASH_SIZE];
        uint8_t hash[KEY_HASH_SIZE];
        struct token t;
        bool equal;
        int r;

        *ret_matched = false;
        view->ks = NULL;
        ret_id[0] = '\0';
        if (token_parse(token, len, a->config->token_prefix, &t, NULL) < 0)
                return VERIFY_CODE_BAD_FORMAT;
        memcpy(ret_id, t.id, TOKEN_ID_LEN + 1);
        token_hash(a->pepper, &t, hash);
        r = keystore_view(a->ks, t.id, view);
        /* An unknown id costs the same hash and compare as a wrong secret. */
        equal = token_hash_equal(hash, r >= 0 ? view->rec.hash : nothing);
        sodium_memzero(hash, sizeof(hash));
        if (r < 0 && r != -ENOENT) {
                /* Not the caller's failure: neither NOT_FOUND nor counted for lockout. */
                log_error("reading key %s failed: %s; answered UNAVAILABLE", t.id, strerror(-r));
                return VERIFY_CODE_UNAVAILABLE;
        }
        if (r < 0)
                return VERIFY_CODE_NOT_FOUND;
        if (!equal) {
                key_view_end(view);
                return VERIFY_CODE_NOT_FOUND;
        }
        *ret_matched = true;
        /* So far: status, owner, scope and permissions are the caller's to check. */
        return VERIFY_CODE_VALID;
}

/* Text appended to a fixed buffer; json_out does the bookkeeping. */
static void out_cat(struct json_out *o, const char *a, const char *b)
{
        json_out_lit(o, a);
        if (b)
                json_out_lit(o, b);
}

int api_verify_canonical(char *buf, size_t size, const char *signed_at, bool valid,
                         const char *code, const char *id, const char *owner, const char *service,
                         const char *user, const char *rhost)
{
        struct json_out o;
        int n;

        /* By hand rather than snprintf(): this runs on every verify. */
        json_out_init(&o, buf, size);
        out_cat(&o, "apikeyd-verify-v1\nsigned_at=", signed_at);
        out_cat(&o, "\nvalid=", valid ? "true" : "false");
        out_cat(&o, "\ncode=", code);
        out_cat(&o, "\nid=", id);
        out_cat(&o, "\nowner=", owner);
        out_cat(&o, "\nservice=", service);
        out_cat(&o, "\nuser=", user);
        out_cat(&o, "\nrhost=", rhost);
        json_out_raw(&o, "\n", 2); /* with the NUL, as snprintf() would */
        n = json_out_done(&o);
        return n < 0 ? -ENOBUFS : n - 1;
}

/* A Verify call's parameters, from either decoder. */
struct verify_args {
        const char *token;
        size_t token_len;
        const char *text[_VERIFY_TEXT_MAX]; /* NULL when absent */
        uint8_t need;
};

#define V_SERVICE(v) ((v)->text[VERIFY_SERVICE])
#define V_USER(v)    ((v)->text[VERIFY_USER])
#define V_RHOST(v)   ((v)->text[VERIFY_RHOST])

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
        json_out_name(o, "signed_at", false);
        json_out_string(o, at);
        json_out_name(o, "signature", false);
        json_out_string(o, b64);
        return 0;
}

/*
 * Where a call comes from, for lockout: "uid:<n>" for a caller other than
 * root.  Root (sshd, sudo, su, login) calls for others, told apart by what
 * it says of them: "from:<user>@<rhost>" ("from:<rhost>" without a user)
 * for a login from another host, "from:<ruser>@(local)" for one on this
 * host (ruser: whom sudo or su was run by; the user is whom they claim to
 * be).  Root naming neither is "uid:0".  A source too long for a name is
 * cut and ends in a hash of the whole, so it is still counted.  False for
 * "uid:0", which is counted per key only: as a source of its own, any
 * client of a local service that names no host could lock out the others.
 */
static bool lockout_source(uid_t uid, const char *user, const char *rhost, const char *ruser,
                           char ret[LOCKOUT_SOURCE_MAX + 1])
{
        char full[2 * KEY_FIELD_MAX + 32];
        uint8_t h[8];
        struct text t;
        bool alone = true;

        text_init(&t, full, sizeof(full));
        if (uid != 0) {
                text_add(&t, "uid:");
                text_add_uint(&t, uid);
        } else if (rhost && rhost[0]) {
                text_add(&t, "from:");
                if (user && user[0]) {
                        text_add(&t, user);
                        text_add(&t, "@");
                }
                text_add(&t, rhost);
        } else if (ruser && ruser[0]) {
                text_add(&t, "from:");
                text_add(&t, ruser);
                text_add(&t, "@(local)");
        } else {
                text_add(&t, "uid:0");
                alone = false;
        }
        if (t.len <= LOCKOUT_SOURCE_MAX) {
                memcpy(ret, full, t.len + 1);
                return alone;
        }
        crypto_generichash(h, sizeof(h), (const unsigned char *)full, t.len, NULL, 0);
        memcpy(ret, full, LOCKOUT_SOURCE_MAX - 17);
        ret[LOCKOUT_SOURCE_MAX - 17] = '~';
        sodium_bin2hex(ret + LOCKOUT_SOURCE_MAX - 16, 17, h, sizeof(h));
        return alone;
}

/*
 * The names a call is counted under: its source (when counted alone) and
 * "key:<id>@<source>", the key it tried from there.  A source that
 * guesses is locked out, and a key guessed at from a source is locked for
 * that source only: an attacker cannot lock its owner out from elsewhere.
 */
static size_t lockout_names(struct request *q, const char *user, const char *rhost,
                            const char *ruser, const char *tok_id,
                            char names[2][LOCKOUT_NAME_MAX + 1])
{
        char source[LOCKOUT_SOURCE_MAX + 1];
        struct text t;
        size_t n = 0;

        if (lockout_source(connection_caller(q->conn)->uid, user, rhost, ruser, source))
                str_copy(names[n++], LOCKOUT_NAME_MAX + 1, source);
        if (tok_id[0]) {
                text_init(&t, names[n++], LOCKOUT_NAME_MAX + 1);
                text_add(&t, "key:");
                text_add(&t, tok_id);
                text_add(&t, "@");
                text_add(&t, source);
        }
        return n;
}

/*
 * Lockout, for Verify and for `auth`: a locked name answers RATE_LIMITED
 * even to the right secret, or guessing would go on until it succeeded.
 * Only definitive mismatches count (a secret that did not match, a token
 * that is not one); a valid answer resets the key's count for the source,
 * never the source's own (a key of one's own must not buy more guesses).
 */
enum verify_code api_lockout_apply(struct request *q, const char *user, const char *rhost,
                                   const char *ruser, enum verify_code code, bool matched,
                                   const char *tok_id)
{
        struct api *a = q->api;
        char names[2][LOCKOUT_NAME_MAX + 1];
        size_t n = lockout_names(q, user, rhost, ruser, tok_id, names);
        uint64_t evicted;

        for (size_t i = 0; i < n; i++)
                if (lockout_locked(&a->lockout, names[i], q->now)) {
                        lockout_touch(&a->lockout, names[i], q->now);
                        return VERIFY_CODE_RATE_LIMITED;
                }
        if (!matched && (code == VERIFY_CODE_NOT_FOUND || code == VERIFY_CODE_BAD_FORMAT)) {
                for (size_t i = 0; i < n; i++)
                        if (lockout_fail(&a->lockout, names[i], q->now)) {
                                char window[64] = "";
                                (void)duration_format(a->config->lockout_window_usec, window,
                                                      sizeof(window));
                                log_warning("%s locked after %u failed verifies within %s",
                                            names[i], a->config->lockout_threshold, window);
                        }
                if (lockout_eviction_news(&a->lockout, &evicted))
                        log_warning("the lockout table is full (%zu names): evicting the least "
                                    "recently failed to keep counting; %" PRIu64 " evicted so "
                                    "far (logged once)",
                                    a->lockout.max, evicted);
        } else if (matched && code == VERIFY_CODE_VALID && tok_id[0])
                (void)lockout_reset(&a->lockout, names[n - 1]);
        return code;
}

/*
 * A refused verify, or a refused `auth` key (`action` "auth", `v` NULL):
 * one journal entry now, one audit record with the next flush.
 */
static void audit_verify_failure(struct request *q, const char *action, const struct verify_args *v,
                                 enum verify_code code, const char *id, const char *owner)
{
        struct api *a = q->api;
        const struct caller *who = connection_caller(q->conn);
        const char *service = v ? V_SERVICE(v) : NULL, *user = v ? V_USER(v) : NULL,
                   *rhost = v ? V_RHOST(v) : NULL;
        struct audit_fields f = {.n = 0};
        const char *code_text = verify_code_to_string(code);
        char message[512];
        struct text m;

        if (!code_text)
                return; /* cannot happen; keeps every compiler's flow analysis convinced */
        /* Whoever is locked out may go on asking as fast as they can: one
         * entry a second says so, with the count of those not written. */
        if (code == VERIFY_CODE_RATE_LIMITED) {
                if (a->rate_limited_last && q->now - a->rate_limited_last < USEC_PER_SEC) {
                        a->rate_limited_suppressed++;
                        return;
                }
                a->rate_limited_last = q->now;
        }
        api_field(&f, "APIKEY_ACTION=", action);
        api_field(&f, "APIKEY_CODE=", code_text);
        if (code == VERIFY_CODE_RATE_LIMITED && a->rate_limited_suppressed) {
                api_field_uint(&f, "APIKEY_SUPPRESSED=", a->rate_limited_suppressed);
        }
        if (id)
                api_field(&f, "APIKEY_ID=", id);
        if (owner)
                api_field(&f, "APIKEY_OWNER=", owner);
        api_field_uint(&f, "APIKEY_CALLER_UID=", who->uid);
        api_field_uint(&f, "APIKEY_CALLER_PID=", (unsigned long)who->pid);
        if (service)
                api_field(&f, "APIKEY_SERVICE=", service);
        if (rhost)
                api_field(&f, "APIKEY_RHOST=", rhost);
        text_init(&m, message, sizeof(message));
        text_add(&m, action);
        text_add(&m, " refused: ");
        text_add(&m, code_text);
        text_add(&m, "; key=");
        text_add(&m, id ? id : "-");
        text_add(&m, " user=");
        text_add(&m, user ? user : "-");
        text_add(&m, " service=");
        text_add(&m, service ? service : "-");
        text_add(&m, " rhost=");
        text_add(&m, rhost ? rhost : "-");
        text_add(&m, " caller uid=");
        text_add_uint(&m, who->uid);
        text_add(&m, " pid=");
        text_add_uint(&m, (unsigned long)who->pid);
        if (code == VERIFY_CODE_RATE_LIMITED && a->rate_limited_suppressed)
                text_add(&m, " (and more refused as RATE_LIMITED in the last second, not logged)");
        if (code == VERIFY_CODE_RATE_LIMITED)
                a->rate_limited_suppressed = 0;
        log_fields(LOG_NOTICE, message, f.v, f.n);

        struct queued_verify *qv = api_audit_queue_add(a);
        if (!qv)
                return;
        *qv = (struct queued_verify){.time = q->now};
        str_copy(qv->action, sizeof(qv->action), STREQ(action, "verify") ? "" : action);
        text_init(&m, qv->actor, sizeof(qv->actor));
        text_add(&m, "uid=");
        text_add_uint(&m, who->uid);
        text_add(&m, " pid=");
        text_add_uint(&m, (unsigned long)who->pid);
        str_copy(qv->key_id, sizeof(qv->key_id), id);
        str_copy(qv->result, sizeof(qv->result), code_text);
        text_init(&m, qv->detail, sizeof(qv->detail));
        /* "service=… user=… rhost=… tty=… ruser=…", the enum's order. */
        for (size_t i = 0; v && i < _VERIFY_TEXT_MAX; i++) {
                text_add(&m, i ? " " : "");
                text_add(&m, verify_text_names[i]);
                text_add(&m, "=");
                text_add(&m, v->text[i]);
        }
}

/* Room for the largest Verify answer: every field of a key at its longest, escaped. */
#define VERIFY_REPLY_MAX                                                                           \
        (6 * (KEY_NAME_MAX + KEY_DESCRIPTION_MAX + KEY_OWNER_MAX +                                 \
              KEY_SCOPE_MAX * (KEY_SCOPE_ENTRY_MAX + 3) + 3 * KEY_FIELD_MAX) +                     \
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
        _cleanup_key_view_ struct key_view view = {0};
        const struct key_record *rec = &view.rec;
        char tok_id[TOKEN_ID_LEN + 1], blocked[TOKEN_ID_LEN + 1];
        char reply[VERIFY_REPLY_MAX];
        struct json_out o;
        size_t code_len;
        bool matched, valid;
        int r;

        for (size_t i = 0; i < _VERIFY_TEXT_MAX; i++)
                /* A control character could forge log lines or the canonical
                 * form of a signature, and could not be stored as last use. */
                if (v->text[i] && !text_valid(v->text[i], KEY_FIELD_MAX))
                        return api_reply_invalid(q, verify_text_names[i]);
        code = api_verify_token(a, v->token, v->token_len, &view, &matched, tok_id);
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
                } else if (user && (rec->flags & KEY_FLAG_NO_LOGIN))
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
        code = api_lockout_apply(q, V_USER(v), V_RHOST(v), v->text[VERIFY_RUSER], code, matched,
                                 tok_id);
        valid = code == VERIFY_CODE_VALID;
        code_text = verify_code_to_string_len(code, &code_len);

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
                json_out_name(&o, "key", false);
                api_key_write(&o, a, rec, q->now);
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
                audit_verify_failure(q, "verify", v, code, tok_id[0] ? tok_id : NULL,
                                     owner[0] ? owner : NULL);
        if (r < 0 || (r = json_out_done(&o)) < 0)
                return r;
        return api_reply_raw(q, reply, (size_t)r);
}

/*
 * The `auth` key of a management call, checked as Verify checks a token,
 * under the same lockout (its source is the caller), its failures logged
 * and audited as Verify's are, with the action "auth".  "VALID" with the
 * record in `*view` when the secret matched; else RATE_LIMITED, NOT_FOUND,
 * BAD_FORMAT or UNAVAILABLE, and no view.
 */
enum verify_code api_verify_auth(struct request *q, const char *token, size_t len,
                                 struct key_view *view)
{
        char tok_id[TOKEN_ID_LEN + 1], owner[KEY_OWNER_MAX + 1] = "";
        bool matched;
        enum verify_code code = api_verify_token(q->api, token, len, view, &matched, tok_id);

        code = api_lockout_apply(q, NULL, NULL, NULL, code, matched, tok_id);
        if (code == VERIFY_CODE_VALID)
                return code;
        if (matched) {
                str_copy(owner, sizeof(owner), view->rec.owner);
                key_view_end(view);
        }
        audit_verify_failure(q, "auth", NULL, code, tok_id[0] ? tok_id : NULL,
                             owner[0] ? owner : NULL);
        return code;
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
                struct verify_args v = {
                    .token = call.token, .token_len = call.token_len, .need = call.permissions};
                for (size_t i = 0; i < _VERIFY_TEXT_MAX; i++)
                        v.text[i] = call.has_text[i] ? call.text[i] : NULL;
                r = verify_run(q, &v);
                r = r < 0 ? r : 1;
        }
        verify_call_erase(&call);
        return r;
}
