/* SPDX-License-Identifier: MIT */
/*
 * pam_apikey: API keys as credentials for any PAM service.
 *
 * A thin guest inside sshd, sudo and friends: it takes the typed token,
 * checks its shape (a password is not one of ours and is never sent), asks
 * apikeyd over its socket with one overall deadline, and maps the answer to
 * a PAM code.  No globals, threads, signal handlers, openlog or exit; every
 * buffer that held the token is erased.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <security/pam_modutil.h>

#include "json_scan.h"
#include "keys_proto.h"
#include "macro.h"
#include "options.h"
#include "reply.h"
#include "timeutil.h"
#include "token.h"
#include "varlink_wire.h"

#define DATA_PREFIX "pam_apikey_authenticated:"
/* The key of this login, for the session stack, where auth ran in another
 * process (sshd's keyboard-interactive auth runs in a forked child whose
 * pam_set_data is lost; only the PAM environment is copied back). */
#define ENV_KEY_ID   "PAM_APIKEY_KEY_ID"
#define DATA_SESSION "pam_apikey_session"
/* "<key id>:<user>" of the login, for the session stack of the same process
 * whatever PAM_USER is by then (sudo sets it to the target user). */
#define DATA_LOGIN  "pam_apikey_login"
#define SESSION_HEX 32

static const char *item_string(pam_handle_t *pamh, int item)
{
        const void *v = NULL;

        if (pam_get_item(pamh, item, &v) != PAM_SUCCESS || !v)
                return "";
        return v;
}

/*
 * `"name":"value"` into the request, with its comma unless `first`.  The
 * value must be UTF-8, or the daemon refuses the whole call: read back, what
 * was written has to be one well-formed JSON string.
 */
static int append_member(struct json_out *o, const char *name, const char *value, bool first)
{
        struct json_scan s;
        size_t start;

        json_out_name(o, name, first);
        start = o->len;
        json_out_string(o, value);
        if (o->overflow)
                return -ENOMEM;
        json_scan_init(&s, o->buf + start, o->len - start);
        if (json_scan_skip(&s) < 0 || json_scan_finish(&s) < 0)
                return -EINVAL;
        return 0;
}

/*
 * Build the Verify call by hand into one buffer we erase, NUL included: the
 * token is never copied anywhere else.
 */
static int build_request(const char *token, size_t token_len, bool brief, const char *user,
                         const char *service, const char *rhost, const char *tty, const char *ruser,
                         char **ret, size_t *ret_len)
{
        /* Room for every byte escaped as \u00XX. */
        size_t alloc =
            256 + token_len +
            6 * (strlen(user) + strlen(service) + strlen(rhost) + strlen(tty) + strlen(ruser));
        char *buf = malloc(alloc);
        struct json_out o;
        int r;

        if (!buf)
                return -ENOMEM;
        json_out_init(&o, buf, alloc);
        /* brief: the key's id and expiry are all a login reads of it. */
        json_out_lit(&o, "{\"method\":\"" KEYS_METHOD_VERIFY "\",\"parameters\":{");
        if (brief)
                json_out_lit(&o, "\"brief\":true,");
        r = append_member(&o, "user", user, true);
        if (r >= 0)
                r = append_member(&o, "service", service, false);
        if (r >= 0 && rhost[0])
                r = append_member(&o, "rhost", rhost, false);
        if (r >= 0 && tty[0])
                r = append_member(&o, "tty", tty, false);
        if (r >= 0 && ruser[0])
                r = append_member(&o, "ruser", ruser, false);
        if (r >= 0) {
                /* The token is base62 and '_' only (its shape was checked): no escaping. */
                json_out_name(&o, "token", false);
                json_out_raw(&o, "\"", 1);
                json_out_raw(&o, token, token_len);
                /* The closing braces and the NUL that ends a Varlink message. */
                json_out_raw(&o, "\"}}", sizeof("\"}}"));
                r = json_out_done(&o);
                if (r < 0)
                        r = -ENOMEM;
        }
        if (r < 0) {
                erase(buf, alloc);
                free(buf);
                return r;
        }
        *ret = buf;
        *ret_len = (size_t)r;
        return 0;
}

/*
 * One call on a connection of its own, by `deadline`.  0 with the answer, or
 * a negative errno: the transport's, or -EBADMSG for an answer that cannot
 * be read.
 */
/*
 * Connect to the daemon by `deadline`, into `*ret_fd`: only to a socket that
 * root (or daemon_user) serves, since whoever answers there gets what we
 * send (`what`: "send a key to", ...).  0, or a negative errno, logged.
 */
static int connect_daemon(pam_handle_t *pamh, const struct options *o, uint64_t deadline,
                          const char *what, int *ret_fd)
{
        _cleanup_close_ int fd = -1;
        uid_t peer;
        int r;

        r = varlink_connect(o->socket, deadline, &fd, &peer);
        if (r < 0) {
                pam_syslog(pamh, LOG_ERR, "cannot reach apikeyd at %s: %s", o->socket,
                           strerror(-r));
                return r;
        }
        if (peer != 0 && !(o->daemon_uid_set && peer == o->daemon_uid)) {
                pam_syslog(pamh, LOG_ERR,
                           "refusing to %s %s: it is served by uid %u, not by root%s", what,
                           o->socket, (unsigned)peer, o->daemon_uid_set ? " or daemon_user" : "");
                return -EPERM;
        }
        *ret_fd = fd;
        fd = -1;
        return 0;
}

static int ask_once(pam_handle_t *pamh, const struct options *o, uint64_t deadline,
                    const char *token, size_t token_len, bool brief, const char *user,
                    const char *service, const char *rhost, struct verify_reply *ret)
{
        struct varlink_buffer b;
        _cleanup_close_ int fd = -1;
        char *req = NULL;
        size_t req_len = 0, msg_len = 0;
        const char *msg = NULL;
        int r;

        r = connect_daemon(pamh, o, deadline, "send a key to", &fd);
        if (r < 0)
                return r;
        r = build_request(token, token_len, brief, user, service, rhost, item_string(pamh, PAM_TTY),
                          item_string(pamh, PAM_RUSER), &req, &req_len);
        if (r < 0)
                return r;
        r = varlink_send(fd, req, req_len, deadline);
        erase(req, req_len);
        free(req);
        if (r < 0) {
                pam_syslog(pamh, LOG_ERR, "sending to apikeyd failed: %s", strerror(-r));
                return r;
        }
        varlink_buffer_init(&b, 1024u * 1024u, false);
        r = varlink_recv_message(fd, &b, deadline, &msg, &msg_len);
        if (r >= 0)
                r = verify_reply_decode(msg, msg_len, ret);
        varlink_buffer_done(&b);
        if (r == -EBADMSG) {
                pam_syslog(pamh, LOG_ERR, "cannot read apikeyd's answer");
                return r;
        }
        if (r < 0) {
                pam_syslog(pamh, LOG_ERR, "no answer from apikeyd: %s", strerror(-r));
                return r;
        }
        if (!ret->error && !ret->valid && verify_code_from_string(ret->code) == VERIFY_CODE_VALID) {
                /* Success takes both: an answer that contradicts itself is not one. */
                pam_syslog(pamh, LOG_ERR, "apikeyd's answer says VALID but not valid");
                return -EBADMSG;
        }
        return 0;
}

/*
 * Ask the daemon, within the module's timeout in all.  A daemon older than
 * the brief answer refuses the parameter: it is asked again for the whole
 * one, so upgrading the module before the daemon is restarted locks no one
 * out.
 */
static int ask_daemon(pam_handle_t *pamh, const struct options *o, const char *token,
                      size_t token_len, const char *user, const char *service, const char *rhost,
                      struct verify_reply *ret)
{
        uint64_t deadline = varlink_now_usec() + (uint64_t)o->timeout_ms * 1000u;
        int r = ask_once(pamh, o, deadline, token, token_len, true, user, service, rhost, ret);

        if (r < 0 || !ret->error || !STREQ(ret->error_name, VARLINK_ERROR_INVALID_PARAMETER))
                return r;
        memset(ret, 0, sizeof(*ret));
        return ask_once(pamh, o, deadline, token, token_len, false, user, service, rhost, ret);
}

/*
 * The one place daemon answers become PAM codes.  No default: a code added
 * to enum verify_code is a -Wswitch error here until it is given a PAM code.
 */
static int code_to_pam(enum verify_code code)
{
        switch (code) {
        case VERIFY_CODE_VALID:
                return PAM_SUCCESS;
        case VERIFY_CODE_RATE_LIMITED:
                return PAM_MAXTRIES;
        case VERIFY_CODE_UNAVAILABLE:
                /* The daemon could not decide (its storage failed, or it is
                 * offline from its fleet): as if it could not be reached. */
                return PAM_AUTHINFO_UNAVAIL;
        case VERIFY_CODE_BAD_FORMAT:
        case VERIFY_CODE_NOT_FOUND:
        case VERIFY_CODE_DISABLED:
        case VERIFY_CODE_REVOKED:
        case VERIFY_CODE_EXPIRED:
        case VERIFY_CODE_WRONG_USER:
        case VERIFY_CODE_OUT_OF_SCOPE:
        case VERIFY_CODE_INSUFFICIENT_PERMISSIONS:
        /* A key invited for another owner: for scripts and services, never a login. */
        case VERIFY_CODE_NOT_FOR_LOGIN:
        /* A key's own conditions: its uses spent, its start not reached,
         * or a host it may not be used from. */
        case VERIFY_CODE_USAGE_EXCEEDED:
        case VERIFY_CODE_NOT_YET_VALID:
        case VERIFY_CODE_SOURCE_DENIED:
                return PAM_AUTH_ERR;
        case _VERIFY_CODE_MAX:
        case _VERIFY_CODE_INVALID:
                /* A code this module does not know (a newer daemon's), or
                 * none: never success. */
                return PAM_AUTH_ERR;
        }
        return PAM_AUTH_ERR; /* not an enum value at all */
}

/*
 * The scope a PAM service is checked against when no service= names one.
 * Debian runs `sudo -i` as the PAM service sudo-i and `su -l` as su-l, each
 * with its own file in /etc/pam.d that includes the same snippet: a key
 * scoped sudo (su) is meant for both ways of running it.
 */
static const char *service_scope(const char *pam_service)
{
        static const struct {
                const char *pam_service, *scope;
        } aliases[] = {
            {"sudo-i", "sudo"},
            {"su-l", "su"},
        };

        for (size_t i = 0; i < ELEMENTSOF(aliases); i++)
                if (STREQ(pam_service, aliases[i].pam_service))
                        return aliases[i].scope;
        return pam_service;
}

static void log_failure(pam_handle_t *pamh, const char *user, const char *id, const char *code)
{
        /* pam_unix's line to its last byte (two spaces before "user=", nothing
         * after it): fail2ban's stock filters read the host and the user from
         * it, and a word more at the end makes them miss it. */
        pam_syslog(pamh, LOG_NOTICE,
                   "authentication failure; logname=%s uid=%d euid=%d tty=%s ruser=%s rhost=%s "
                   " user=%s",
                   pam_modutil_getlogin(pamh) ? pam_modutil_getlogin(pamh) : "", (int)getuid(),
                   (int)geteuid(), item_string(pamh, PAM_TTY), item_string(pamh, PAM_RUSER),
                   item_string(pamh, PAM_RHOST), user);
        /* Which key and why, on a line of its own that no filter counts. */
        pam_syslog(pamh, LOG_NOTICE, "refused key=%s code=%s for user=%s", id[0] ? id : "-", code,
                   user);
}

/*
 * No answer, or no decision: not pam_unix's failure line, so that fail2ban
 * and sshguard do not hold an outage against the user or their host.
 */
static void log_unavailable(pam_handle_t *pamh, const char *user, const char *id, const char *code)
{
        const char *rhost = item_string(pamh, PAM_RHOST);

        /* "rhost=" never before "user=", and this ends the line: no filter
         * written for pam_unix's line reads a host out of it. */
        pam_syslog(pamh, LOG_ERR,
                   "no decision from apikeyd for user=%s key=%s code=%s rhost=%s; not an "
                   "authentication failure",
                   user, id[0] ? id : "-", code, rhost);
}

static void cleanup_marker(pam_handle_t *pamh, void *data, int status)
{
        free(data);
}

static void warn_expiry(pam_handle_t *pamh, const struct options *o, const char *expires_at)
{
        uint64_t t, now = now_usec();
        char when[64];

        if (o->quiet || o->expiry_warning == 0 || !expires_at[0] ||
            timestamp_parse(expires_at, &t) < 0 || t <= now || t - now > o->expiry_warning)
                return;
        if (relative_format(t, now, when, sizeof(when)) < 0)
                return;
        pam_info(pamh, "Your API key expires %s (%s).", when, expires_at);
}

PAM_EXTERN _public_ int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc,
                                            const char **argv)
{
        struct options o;
        const char *user = NULL, *token = NULL, *service;
        struct verify_reply ans;
        struct token t;
        char data_name[sizeof(DATA_PREFIX) + 256];
        int r;

        r = parse_options(pamh, argc, argv, &o);
        if (r != PAM_SUCCESS)
                return r;
        if (o.quiet)
                flags |= PAM_SILENT;

        r = pam_get_user(pamh, &user, NULL);
        if (r != PAM_SUCCESS || !user || !user[0]) {
                if (o.debug)
                        pam_syslog(pamh, LOG_DEBUG, "no user name");
                return r == PAM_CONV_AGAIN ? PAM_INCOMPLETE : PAM_USER_UNKNOWN;
        }
        if (o.minimum_uid > 0) {
                struct passwd pw, *pwp = NULL;
                char buf[4096];
                if (getpwnam_r(user, &pw, buf, sizeof(buf), &pwp) == 0 && pwp &&
                    pw.pw_uid < o.minimum_uid) {
                        if (o.debug)
                                pam_syslog(pamh, LOG_DEBUG, "uid of %s below minimum_uid", user);
                        return PAM_IGNORE;
                }
        }
        if (!o.nodelay)
                (void)pam_fail_delay(pamh, 2000000);

        if (o.use_first_pass || o.try_first_pass) {
                const void *item = NULL;
                if (pam_get_item(pamh, PAM_AUTHTOK, &item) == PAM_SUCCESS)
                        token = item;
                if (!token && o.use_first_pass) {
                        if (o.debug)
                                pam_syslog(pamh, LOG_DEBUG,
                                           "use_first_pass: no token given before");
                        return PAM_IGNORE;
                }
        }
        if (!token) {
                r = pam_get_authtok(pamh, PAM_AUTHTOK, &token, o.prompt);
                if (r == PAM_CONV_AGAIN)
                        return PAM_INCOMPLETE;
                if (r != PAM_SUCCESS || !token)
                        return r == PAM_BUF_ERR ? PAM_BUF_ERR : PAM_CONV_ERR;
        }

        /* Not our shape (a password, sshd's fake one): never sent anywhere. */
        if (token_parse(token, strnlen(token, TOKEN_MAX_LEN + 1), o.prefix[0] ? o.prefix : NULL, &t,
                        NULL) < 0) {
                if (o.debug)
                        pam_syslog(pamh, LOG_DEBUG, "input for %s is not an API key; ignoring",
                                   user);
                return PAM_IGNORE;
        }

        service = o.service[0] ? o.service : service_scope(item_string(pamh, PAM_SERVICE));
        memset(&ans, 0, sizeof(ans)); /* read below even when the daemon gave no answer */
        r = ask_daemon(pamh, &o, token, strlen(token), user, service, item_string(pamh, PAM_RHOST),
                       &ans);
        if (r == -ENOMEM)
                return PAM_BUF_ERR;
        if (r < 0 || ans.error) {
                if (r >= 0)
                        pam_syslog(pamh, LOG_ERR, "apikeyd refused the call: %s", ans.error_name);
                log_unavailable(pamh, user, t.id, "DAEMON_UNAVAILABLE");
                return o.ignore_authinfo_unavail ? PAM_IGNORE : PAM_AUTHINFO_UNAVAIL;
        }

        r = code_to_pam(verify_code_from_string(ans.code));
        if (r == PAM_AUTHINFO_UNAVAIL) {
                log_unavailable(pamh, user, t.id, ans.code);
                return o.ignore_authinfo_unavail ? PAM_IGNORE : PAM_AUTHINFO_UNAVAIL;
        }
        if (r != PAM_SUCCESS) {
                log_failure(pamh, user, t.id, ans.code);
                return r;
        }
        if (o.debug)
                pam_syslog(pamh, LOG_DEBUG, "key %s accepted for %s (service %s)", t.id, user,
                           service);
        snprintf(data_name, sizeof(data_name), DATA_PREFIX "%s", user);
        char *marker = strdup(t.id);
        if (!marker || pam_set_data(pamh, data_name, marker, cleanup_marker) != PAM_SUCCESS) {
                free(marker);
                return PAM_BUF_ERR;
        }
        {
                char env[sizeof(ENV_KEY_ID "=") + TOKEN_ID_LEN + 256 + 2];
                snprintf(env, sizeof(env), ENV_KEY_ID "=%s:%s", t.id, user);
                char *login = strdup(env + STRLEN(ENV_KEY_ID "="));
                if (!login ||
                    pam_set_data(pamh, DATA_LOGIN, login, cleanup_marker) != PAM_SUCCESS) {
                        free(login);
                        return PAM_BUF_ERR;
                }
                if (pam_putenv(pamh, env) != PAM_SUCCESS)
                        return PAM_BUF_ERR;
        }
        if (!(flags & PAM_SILENT))
                warn_expiry(pamh, &o, ans.expires_at);
        return PAM_SUCCESS;
}

/*
 * Take the login's key out of the PAM environment, into this handle's data
 * where the session hook reads it.  The application builds the session's
 * environment after setcred and open_session (sshd and sudo both), so
 * whichever of the two runs first takes it out: a service with the auth
 * line and no session line no longer passes it to the user's shell.  Not
 * account: sshd runs it in the process of the keyboard-interactive auth,
 * before the environment is copied back.  Only for the user it was set for
 * (auth ran for PAM_USER in another process).
 */
static void login_take(pam_handle_t *pamh)
{
        const char *env = pam_getenv(pamh, ENV_KEY_ID), *colon;
        const void *data = NULL;

        if (!env)
                return;
        colon = strchr(env, ':');
        if ((pam_get_data(pamh, DATA_LOGIN, &data) != PAM_SUCCESS || !data) && colon &&
            STREQ(colon + 1, item_string(pamh, PAM_USER))) {
                char *login = strdup(env);
                if (!login || pam_set_data(pamh, DATA_LOGIN, login, cleanup_marker) != PAM_SUCCESS)
                        free(login);
        }
        (void)pam_putenv(pamh, ENV_KEY_ID);
}

PAM_EXTERN _public_ int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
        login_take(pamh);
        return PAM_SUCCESS;
}

PAM_EXTERN _public_ int pam_sm_acct_mgmt(pam_handle_t *pamh, int flags, int argc, const char **argv)
{
        struct options o;
        const char *user = NULL;
        const void *marker = NULL;
        char data_name[sizeof(DATA_PREFIX) + 256];
        int r;

        r = parse_options(pamh, argc, argv, &o);
        if (r != PAM_SUCCESS)
                return r;
        if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || !user)
                return PAM_IGNORE;
        snprintf(data_name, sizeof(data_name), DATA_PREFIX "%s", user);
        /* Only a login this module authenticated is ours to judge: a public-key
         * login through sshd runs this stack too and must not be denied. */
        if (pam_get_data(pamh, data_name, &marker) != PAM_SUCCESS || !marker)
                return PAM_IGNORE;
        if (o.debug)
                pam_syslog(pamh, LOG_DEBUG, "account of %s authenticated by key %s", user,
                           (const char *)marker);
        return PAM_SUCCESS;
}

/*
 * One OpenSession or CloseSession call, by the module's deadline: 0 once
 * the daemon agreed, or a negative errno (the reason logged).
 */
static int session_call(pam_handle_t *pamh, const struct options *o, const char *req, size_t len)
{
        uint64_t deadline = varlink_now_usec() + (uint64_t)o->timeout_ms * 1000u;
        struct varlink_buffer b;
        _cleanup_close_ int fd = -1;
        const char *msg = NULL;
        size_t msg_len = 0;
        char error[128];
        int r;

        r = connect_daemon(pamh, o, deadline, "register a session with", &fd);
        if (r < 0)
                return r;
        r = varlink_send(fd, req, len, deadline);
        if (r < 0) {
                pam_syslog(pamh, LOG_ERR, "sending to apikeyd failed: %s", strerror(-r));
                return r;
        }
        varlink_buffer_init(&b, 64u * 1024u, false);
        r = varlink_recv_message(fd, &b, deadline, &msg, &msg_len);
        if (r >= 0)
                r = call_reply_decode(msg, msg_len, error, sizeof(error));
        varlink_buffer_done(&b);
        if (r < 0) {
                pam_syslog(pamh, LOG_ERR, "no answer from apikeyd: %s", strerror(-r));
                return r;
        }
        if (error[0]) {
                pam_syslog(pamh, LOG_ERR, "apikeyd refused the call: %s", error);
                return -EPROTO;
        }
        return 0;
}

static void cleanup_session(pam_handle_t *pamh, void *data, int status)
{
        free(data);
}

/*
 * The key this handle's login was authenticated with and the user it was
 * for, as "<key id>:<user>" in `ret` (TOKEN_ID_LEN + 258 bytes): what auth
 * left in this process, or (auth ran in another process, as sshd's
 * keyboard-interactive auth does) what login_take() took from the PAM
 * environment it set.  false when the login was not the module's.
 */
static bool login_key(pam_handle_t *pamh, char *ret, size_t size)
{
        const void *data = NULL;
        const char *login, *colon;

        login_take(pamh);
        if (pam_get_data(pamh, DATA_LOGIN, &data) != PAM_SUCCESS || !data)
                return false;
        login = data;
        colon = strchr(login, ':');
        if (!colon || colon - login != TOKEN_ID_LEN || strlen(login) >= size)
                return false;
        memcpy(ret, login, strlen(login) + 1);
        ret[TOKEN_ID_LEN] = '\0'; /* the key id, then the user after it */
        return true;
}

PAM_EXTERN _public_ int pam_sm_open_session(pam_handle_t *pamh, int flags, int argc,
                                            const char **argv)
{
        struct options o;
        const char *user = NULL;
        char login[TOKEN_ID_LEN + 258], session[SESSION_HEX + 1], req[4096];
        const char *key_id = login, *login_user = login + TOKEN_ID_LEN + 1;
        unsigned char rnd[SESSION_HEX / 2];
        struct json_out out;
        int r;

        r = parse_options(pamh, argc, argv, &o);
        if (r != PAM_SUCCESS)
                return r;
        if (pam_get_user(pamh, &user, NULL) != PAM_SUCCESS || !user || !user[0])
                return PAM_IGNORE;
        /* Only a login this module authenticated is a session of a key. */
        if (!login_key(pamh, login, sizeof(login)))
                return PAM_IGNORE;
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
                return PAM_IGNORE;
        for (size_t i = 0; i < sizeof(rnd); i++)
                snprintf(session + 2 * i, 3, "%02x", rnd[i]);

        json_out_init(&out, req, sizeof(req));
        json_out_lit(&out, "{\"method\":\"" KEYS_METHOD_OPEN_SESSION "\",\"parameters\":{");
        r = append_member(&out, "session", session, true);
        if (r >= 0)
                r = append_member(&out, "id", key_id, false);
        if (r >= 0)
                r = append_member(&out, "user", login_user, false);
        if (r >= 0)
                r = append_member(&out, "service",
                                  o.service[0] ? o.service
                                               : service_scope(item_string(pamh, PAM_SERVICE)),
                                  false);
        if (r >= 0 && item_string(pamh, PAM_RHOST)[0])
                r = append_member(&out, "rhost", item_string(pamh, PAM_RHOST), false);
        if (r >= 0 && item_string(pamh, PAM_TTY)[0])
                r = append_member(&out, "tty", item_string(pamh, PAM_TTY), false);
        if (r >= 0) {
                json_out_raw(&out, "}}", sizeof("}}"));
                r = json_out_done(&out);
        }
        if (r < 0 || session_call(pamh, &o, req, (size_t)r) < 0) {
                /* Never a failed session: the login was allowed already. */
                pam_syslog(pamh, LOG_ERR,
                           "session of user=%s key=%s not registered with apikeyd: a revoke "
                           "will not end it",
                           user, key_id);
                return PAM_IGNORE;
        }
        char *data = strdup(session);
        if (!data || pam_set_data(pamh, DATA_SESSION, data, cleanup_session) != PAM_SUCCESS) {
                free(data);
                return PAM_IGNORE;
        }
        if (o.debug)
                pam_syslog(pamh, LOG_DEBUG, "session %s of key %s registered for %s", session,
                           key_id, user);
        return PAM_SUCCESS;
}

PAM_EXTERN _public_ int pam_sm_close_session(pam_handle_t *pamh, int flags, int argc,
                                             const char **argv)
{
        struct options o;
        const void *session = NULL;
        char req[256];
        int r;

        r = parse_options(pamh, argc, argv, &o);
        if (r != PAM_SUCCESS)
                return r;
        if (pam_get_data(pamh, DATA_SESSION, &session) != PAM_SUCCESS || !session)
                return PAM_IGNORE;
        r = snprintf(req, sizeof(req),
                     "{\"method\":\"" KEYS_METHOD_CLOSE_SESSION
                     "\",\"parameters\":{\"session\":\"%s\"}}",
                     (const char *)session);
        if (r < 0 || (size_t)r >= sizeof(req) || session_call(pamh, &o, req, (size_t)r + 1) < 0)
                return PAM_IGNORE;
        (void)pam_set_data(pamh, DATA_SESSION, NULL, NULL);
        return PAM_SUCCESS;
}
