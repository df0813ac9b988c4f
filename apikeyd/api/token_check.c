/* SPDX-License-Identifier: MIT */
/*
 * Checking a token someone presents, for Verify (verify.c) and for the
 * `auth` key of a management call (auth.c): its secret against the
 * keystore, the lockout of the source it comes from, and the journal
 * entry and audit record of a failure.
 */
#include <errno.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "state.h"
#include "text.h"
#include "token_check.h"

/*
 * Verify a token's secret: the code, and when the secret matched, the
 * record as a view (`*view`, which the caller ends; see keystore_view()).
 */
enum verify_code api_check_token(struct api *a, const char *token, size_t len,
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
                log_event(LOG_ERR, MESSAGE_ID_STORAGE_ERROR,
                          "reading key %s failed: %s; answered UNAVAILABLE", t.id, strerror(-r));
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
                           char ret[LOCKOUT_SOURCE_MAX + 1], size_t *ret_len)
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
                *ret_len = t.len;
                return alone;
        }
        crypto_generichash(h, sizeof(h), (const unsigned char *)full, t.len, NULL, 0);
        memcpy(ret, full, LOCKOUT_SOURCE_MAX - 17);
        ret[LOCKOUT_SOURCE_MAX - 17] = '~';
        sodium_bin2hex(ret + LOCKOUT_SOURCE_MAX - 16, 17, h, sizeof(h));
        *ret_len = LOCKOUT_SOURCE_MAX;
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
                            char names[2][LOCKOUT_NAME_MAX + 1], size_t lens[2])
{
        char source[LOCKOUT_SOURCE_MAX + 1];
        size_t n = 0, len;

        _Static_assert(4 + TOKEN_ID_LEN + 1 + LOCKOUT_SOURCE_MAX <= LOCKOUT_NAME_MAX,
                       "a key's name from its source fits");
        if (lockout_source(connection_caller(q->conn)->uid, user, rhost, ruser, source, &len)) {
                memcpy(names[n], source, len + 1);
                lens[n++] = len;
        }
        if (tok_id[0]) {
                /* "key:<id>@<source>", its parts' lengths known. */
                char *p = names[n];
                memcpy(p, "key:", 4);
                memcpy(p + 4, tok_id, TOKEN_ID_LEN);
                p[4 + TOKEN_ID_LEN] = '@';
                memcpy(p + 4 + TOKEN_ID_LEN + 1, source, len + 1);
                lens[n++] = 4 + TOKEN_ID_LEN + 1 + len;
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
        size_t lens[2];
        size_t n = lockout_names(q, user, rhost, ruser, tok_id, names, lens);
        uint64_t evicted, hash[2];

        /* Each name hashed once, for every question asked about it below. */
        for (size_t i = 0; i < n; i++) {
                hash[i] = lockout_hash(&a->lockout, names[i], lens[i]);
                if (lockout_locked_hashed(&a->lockout, names[i], hash[i], q->now)) {
                        lockout_touch_hashed(&a->lockout, names[i], hash[i], q->now);
                        return VERIFY_CODE_RATE_LIMITED;
                }
        }
        if (!matched && (code == VERIFY_CODE_NOT_FOUND || code == VERIFY_CODE_BAD_FORMAT)) {
                for (size_t i = 0; i < n; i++)
                        if (lockout_fail_hashed(&a->lockout, names[i], hash[i], q->now)) {
                                char window[64] = "";
                                (void)duration_format(a->config->lockout_window_usec, window,
                                                      sizeof(window));
                                log_event(LOG_WARNING, MESSAGE_ID_LOCKED_OUT,
                                          "%s locked after %u failed verifies within %s", names[i],
                                          a->config->lockout_threshold, window);
                        }
                if (lockout_eviction_news(&a->lockout, &evicted))
                        log_warning("the lockout table is full (%zu names): evicting the least "
                                    "recently failed to keep counting; %" PRIu64 " evicted so "
                                    "far (logged once)",
                                    a->lockout.max, evicted);
        } else if (matched && code == VERIFY_CODE_VALID && tok_id[0])
                (void)lockout_reset_hashed(&a->lockout, names[n - 1], hash[n - 1]);
        return code;
}

/*
 * A refused verify, or a refused `auth` key (`action` "auth", `v` NULL):
 * one journal entry now, one audit record with the next flush.
 */
void api_audit_token_refusal(struct request *q, const char *action, const struct verify_args *v,
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
        api_field(&f, MESSAGE_ID_AUTH_REFUSED, "");
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

/*
 * The `auth` key of a management call, checked as Verify checks a token,
 * under the same lockout (its source is the caller), its failures logged
 * and audited as Verify's are, with the action "auth".  "VALID" with the
 * record in `*view` when the secret matched; else RATE_LIMITED, NOT_FOUND,
 * BAD_FORMAT or UNAVAILABLE, and no view.
 */
enum verify_code api_check_auth_token(struct request *q, const char *token, size_t len,
                                      struct key_view *view)
{
        char tok_id[TOKEN_ID_LEN + 1], owner[KEY_OWNER_MAX + 1] = "";
        bool matched;
        enum verify_code code = api_check_token(q->api, token, len, view, &matched, tok_id);

        code = api_lockout_apply(q, NULL, NULL, NULL, code, matched, tok_id);
        if (code == VERIFY_CODE_VALID)
                return code;
        if (matched) {
                str_copy(owner, sizeof(owner), view->rec.owner);
                key_view_end(view);
        }
        api_audit_token_refusal(q, "auth", NULL, code, tok_id[0] ? tok_id : NULL,
                                owner[0] ? owner : NULL);
        return code;
}
