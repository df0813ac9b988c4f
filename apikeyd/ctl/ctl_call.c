/* SPDX-License-Identifier: MIT */
/*
 * apikeyctl's calls to the daemon and the secrets it reads; see ctl_call.h.
 *
 * Tokens are secrets: they are never taken from the command line (where ps
 * shows them), only from standard input (verify) or a private file
 * (--auth-file); every buffer that held one is erased, and they are written
 * with write(2) so no stdio buffer keeps a copy.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/stat.h>
#include <termios.h>

#include <jansson.h>

#include "ctl_call.h"
#include "keys_proto.h"
#include "macro.h"
#include "timeutil.h"
#include "token.h"
#include "varlink.h"

#define CALL_TIMEOUT_SEC 10
/* A page of 1000 keys is far below this; more means a broken daemon. */
#define MAX_REPLY     (16u * 1024u * 1024u)
#define AUTH_FILE_MAX 4096

const char *const program = "apikeyctl";

_printf_(1, 2) void err(const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "%s: ", program);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

/* A usage error: the message, and where to read more. */
_printf_(2, 3) int usage_error(const struct args *a, const char *fmt, ...)
{
        va_list ap;

        fprintf(stderr, "%s%s%s: ", program, a && a->command ? " " : "",
                a && a->command ? a->command : "");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry '%s %s%s--help' for more information.\n", program,
                a && a->command ? a->command : "", a && a->command ? " " : "");
        return ERR_USAGE;
}

/* Write all of `s` to fd 1 without stdio, so no library buffer keeps a copy. */
int write_stdout(const char *s, size_t len)
{
        fflush(stdout);
        while (len > 0) {
                ssize_t n = write(STDOUT_FILENO, s, len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                s += n;
                len -= (size_t)n;
        }
        return 0;
}

static bool json_short;

void print_json_set_short(bool on)
{
        json_short = on;
}

int print_json(const json_t *v)
{
        _cleanup_erase_free_ char *s =
            json_dumps(v, (json_short ? JSON_COMPACT : JSON_INDENT(2)) | JSON_ENCODE_ANY);
        int r;

        if (!s)
                return -ENOMEM;
        r = write_stdout(s, strlen(s));
        if (r >= 0)
                r = write_stdout("\n", 1);
        if (r < 0)
                err("cannot write to standard output: %s", strerror(-r));
        return r;
}

/* --------------------------------------------------------------- the daemon */

static int transport_error(const struct ctl *c, int r)
{
        switch (r) {
        case -ENOENT:
        case -ECONNREFUSED:
                err("the daemon is not running at %s (is apikeyd.socket enabled?)", c->socket);
                break;
        case -EACCES:
        case -EPERM:
                err("cannot connect to %s: %s (the socket should be mode 0666)", c->socket,
                    strerror(-r));
                break;
        case -ETIMEDOUT:
                err("the daemon at %s did not answer within %d seconds", c->socket,
                    CALL_TIMEOUT_SEC);
                break;
        case -ECONNRESET:
        case -EPIPE:
                err("the daemon at %s closed the connection before answering", c->socket);
                break;
        case -EBADMSG:
                err("the daemon at %s sent a reply apikeyctl cannot read", c->socket);
                break;
        case -EMSGSIZE:
                err("the daemon at %s sent a reply larger than %u bytes", c->socket, MAX_REPLY);
                break;
        case -EINVAL:
                err("'%s' is not a usable socket path (empty, or longer than 107 bytes)",
                    c->socket);
                break;
        default:
                err("cannot talk to the daemon at %s: %s", c->socket, strerror(-r));
        }
        return ERR_UNREACHABLE;
}

const char *param_str(const json_t *o, const char *name)
{
        json_t *v = json_object_get(o, name);
        return json_is_string(v) ? json_string_value(v) : NULL;
}

/* The option or argument a method's parameter came from, for messages. */
static const char *parameter_source(const char *p)
{
        static const char *const map[][2] = {
            {"name", "the name"},
            {"id", "the key id"},
            {"description", "--description"},
            {"owner", "--owner"},
            {"role", "--role"},
            {"permissions", "--permissions"},
            {"scope", "--scope"},
            {"expires", "--expires"},
            {"sources", "--sources"},
            {"not_before", "--not-before"},
            {"status", "--status"},
            {"name_prefix", "--name"},
            {"expiring_within", "--expiring"},
            {"since", "--since"},
            {"key_id", "--key"},
            {"service", "--service"},
            {"user", "--user"},
            {"rhost", "--rhost"},
            {"token", "the token"},
            {"auth", "the key in --auth-file"},
        };

        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (STREQ(map[i][0], p))
                        return map[i][1];
        return p;
}

/* Tell the user why the daemon refused, naming the error for scripts and searches. */
static int daemon_error(const char *error, const json_t *p)
{
        const char *s = NULL, *t = NULL;
        json_int_t n = json_integer_value(json_object_get(p, "limit"));

#define IS(name) STREQ(error, name)
        if (IS(KEYS_ERROR_NO_SUCH_KEY))
                err("no such key %s ('apikeyctl list' shows the keys you may see) [%s]",
                    (s = param_str(p, "id")) ? s : "", error);
        else if (IS(KEYS_ERROR_NAME_TAKEN))
                err("%s already has a key named '%s'; choose another name [%s]",
                    (s = param_str(p, "owner")) ? s : "the owner",
                    (t = param_str(p, "name")) ? t : "", error);
        else if (IS(KEYS_ERROR_PERMISSION_DENIED))
                err("permission denied: %s [%s]",
                    (s = param_str(p, "reason")) ? s : "the daemon gave no reason", error);
        else if (IS(KEYS_ERROR_KEY_REVOKED))
                err("key %s is revoked; a revoked key cannot be enabled or changed [%s]",
                    (s = param_str(p, "id")) ? s : "", error);
        else if (IS(KEYS_ERROR_POLICY_VIOLATION))
                err("refused by this installation's policy: %s [%s]",
                    (s = param_str(p, "reason")) ? s : "no reason given", error);
        else if (IS(KEYS_ERROR_INTERNAL_ERROR))
                err("the daemon failed: %s; nothing was changed, and its log says more [%s]",
                    (s = param_str(p, "reason")) ? s : "no reason given", error);
        else if (IS(KEYS_ERROR_MANAGED_CENTRALLY))
                err("keys are managed centrally: this host follows the fleet's keys in etcd (%s, "
                    "under %s); change them on a host with fleet_manage = yes [%s]",
                    (s = param_str(p, "endpoints")) ? s : "", (t = param_str(p, "prefix")) ? t : "",
                    error);
        else if (IS(KEYS_ERROR_MESSAGE_TOO_LARGE))
                err("the request is larger than the daemon accepts (%lld bytes) [%s]", (long long)n,
                    error);
        else if (IS(KEYS_ERROR_TOO_MANY_CONNECTIONS))
                err("the daemon is at its connection limit (%lld); try again later [%s]",
                    (long long)n, error);
        else if (IS(KEYS_ERROR_FLEET_PUSH_FAILED))
                err("fleet push: %s [%s]", (s = param_str(p, "reason")) ? s : "no reason given",
                    error);
        else if (IS(VARLINK_ERROR_INVALID_PARAMETER) && (t = param_str(p, "reason")))
                /* A key's field: what is wrong with it, and its rule. */
                err("the daemon refused %s: %s [%s]",
                    parameter_source((s = param_str(p, "parameter")) ? s : "?"), t, error);
        else if (IS(VARLINK_ERROR_INVALID_PARAMETER))
                err("the daemon refused the value of %s [%s]",
                    parameter_source((s = param_str(p, "parameter")) ? s : "?"), error);
        else if (IS(VARLINK_ERROR_METHOD_NOT_FOUND))
                err("the daemon does not know %s; is it older than apikeyctl? [%s]",
                    (s = param_str(p, "method")) ? s : "this method", error);
        else
                err("the daemon refused: %s", error);
#undef IS
        return ERR_REFUSED;
}

static int ctl_connect(struct ctl *c)
{
        int r;

        if (c->fd >= 0)
                return 0;
        r = varlink_connect(c->socket, varlink_now_usec() + CALL_TIMEOUT_SEC * USEC_PER_SEC, &c->fd,
                            NULL);
        return r < 0 ? transport_error(c, r) : 0;
}

/* `req` (NULL: out of memory) with the --auth-file key added, sent on the
 * connection (made if need be) by `deadline`; its bytes erased after. */
static int send_call(struct ctl *c, json_t *req, uint64_t deadline)
{
        char *msg;
        size_t len;
        int r;

        if (!req)
                return -ENOMEM;
        if (c->auth &&
            json_object_set_new(json_object_get(req, "parameters"), "auth", json_string(c->auth)))
                return -ENOMEM;
        r = ctl_connect(c);
        if (r < 0)
                return r;
        msg = varlink_message_dump(req, &len);
        if (!msg)
                return -ENOMEM;
        r = varlink_send(c->fd, msg, len, deadline);
        erase(msg, len);
        free(msg);
        return r < 0 ? transport_error(c, r) : 0;
}

/*
 * Call `method` with `params` (taken over; NULL is out of memory), adding the
 * --auth-file key.  On success `*ret_params` holds the reply's parameters.
 * The request and the reply are erased from memory when done: either may
 * hold a token.
 */
int ctl_call(struct ctl *c, const char *method, json_t *params, json_t **ret_params)
{
        json_auto_t *req =
            params ? json_pack("{s:s, s:o}", "method", method, "parameters", params) : NULL;
        json_auto_t *reply = NULL;
        struct varlink_buffer b;
        const char *error;
        json_t *p;
        uint64_t deadline;
        int r;

        deadline = varlink_now_usec() +
                   (c->timeout_sec ? c->timeout_sec : CALL_TIMEOUT_SEC) * USEC_PER_SEC;
        r = send_call(c, req, deadline);
        if (r < 0)
                return r;

        varlink_buffer_init(&b, MAX_REPLY, true);
        r = varlink_recv(c->fd, &b, deadline, &reply, &error, &p, NULL);
        varlink_buffer_done(&b);
        if (r < 0)
                return transport_error(c, r);
        if (error) {
                json_decref(c->last_error);
                c->last_error = json_incref(p);
                return daemon_error(error, p);
        }
        *ret_params = json_incref(p);
        return 0;
}

int ctl_call_more(struct ctl *c, const char *method, json_t *params,
                  int (*fn)(const json_t *params, bool continues, void *userdata), void *userdata)
{
        json_auto_t *req = params ? json_pack("{s:s, s:o, s:b}", "method", method, "parameters",
                                              params, "more", true)
                                  : NULL;
        struct varlink_buffer b;
        bool continues = true;
        int r;

        r = send_call(c, req, varlink_now_usec() + CALL_TIMEOUT_SEC * USEC_PER_SEC);
        if (r < 0)
                return r;

        varlink_buffer_init(&b, MAX_REPLY, true);
        while (r >= 0 && continues) {
                json_auto_t *reply = NULL;
                const char *error;
                json_t *p;

                /* Each reply in its own time: a long answer is not a slow one. */
                r = varlink_recv(c->fd, &b, varlink_now_usec() + CALL_TIMEOUT_SEC * USEC_PER_SEC,
                                 &reply, &error, &p, &continues);
                if (r < 0)
                        r = transport_error(c, r);
                else if (error) {
                        json_decref(c->last_error);
                        c->last_error = json_incref(p);
                        r = daemon_error(error, p);
                } else
                        r = fn(p, continues, userdata);
        }
        varlink_buffer_done(&b);
        return r;
}

json_t *id_params(const char *id)
{
        return json_pack("{s:s}", "id", id);
}

/* A reply that lacks what the interface promises. */
int bad_reply(const struct ctl *c, const char *method)
{
        err("the daemon's reply to %s is not what io.apikeyd.Keys describes", method);
        return ERR_UNREACHABLE;
}

/* ---------------------------------------------------------- secrets in files */

struct secret_buf {
        char data[AUTH_FILE_MAX + 1];
        size_t len;
};

static void secret_buf_erase(struct secret_buf *s)
{
        explicit_bzero(s, sizeof(*s));
}

static bool is_blank(char ch)
{
        return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* The one word in `s` (leading and trailing blanks dropped), or -EINVAL. */
static int single_word(char *s, size_t len, char **ret, size_t *ret_len)
{
        size_t start = 0, end = len;

        while (start < end && is_blank(s[start]))
                start++;
        while (end > start && is_blank(s[end - 1]))
                end--;
        for (size_t i = start; i < end; i++)
                if (is_blank(s[i]))
                        return -EINVAL;
        *ret = s + start;
        *ret_len = end - start;
        return 0;
}

int read_auth_file(struct ctl *c)
{
        _cleanup_(secret_buf_erase) struct secret_buf buf = {.len = 0};
        _cleanup_close_ int fd = -1;
        enum token_error te;
        struct token t;
        struct stat st;
        char *word;
        size_t len;

        fd = open(c->auth_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                int e = errno;
                err("cannot open the auth file %s: %s", c->auth_file, strerror(e));
                return -e;
        }
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode)) {
                err("the auth file %s is not a regular file", c->auth_file);
                return -EBADF;
        }
        /* As ssh does with private keys: a key others can read is not ours alone. */
        if (st.st_mode & 077) {
                err("the auth file %s is accessible by other users (mode %04o); "
                    "run 'chmod 600 %s', and consider the key in it exposed",
                    c->auth_file, (unsigned)(st.st_mode & 07777), c->auth_file);
                return -EPERM;
        }
        for (;;) {
                ssize_t n = read(fd, buf.data + buf.len, sizeof(buf.data) - 1 - buf.len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = errno;
                        err("cannot read the auth file %s: %s", c->auth_file, strerror(e));
                        return -e;
                }
                if (n == 0)
                        break;
                buf.len += (size_t)n;
                if (buf.len == sizeof(buf.data) - 1) {
                        err("the auth file %s is too large to hold an API key", c->auth_file);
                        return -EFBIG;
                }
        }
        if (single_word(buf.data, buf.len, &word, &len) < 0 || len == 0) {
                err("the auth file %s must hold one API key and nothing else", c->auth_file);
                return -EBADMSG;
        }
        if (token_parse(word, len, NULL, &t, &te) < 0) {
                err("the auth file %s does not hold an API key: %s", c->auth_file,
                    token_error_to_string(te));
                return -EBADMSG;
        }
        c->auth = strndup(word, len);
        return c->auth ? 0 : -ENOMEM;
}

/* Enough of a secret to tell a token, even a truncated one, from a name. */
#define TOKEN_SEEN_SECRET 30

/* A token given on the command line is visible to every user (ps, /proc). */
bool contains_token(const char *s)
{
        size_t n = strlen(s);

        for (size_t i = 0; i < n; i++) {
                size_t p = 0;
                if (i > 0 && (s[i - 1] == '_' || base62_valid(s + i - 1, 1)))
                        continue;
                while (i + p < n && s[i + p] >= 'a' && s[i + p] <= 'z')
                        p++;
                if (p < TOKEN_PREFIX_MIN || p > TOKEN_PREFIX_MAX ||
                    n - i < p + 2 + TOKEN_ID_LEN + TOKEN_SEEN_SECRET)
                        continue;
                const char *q = s + i + p;
                if (q[0] == '_' && base62_valid(q + 1, TOKEN_ID_LEN) &&
                    q[1 + TOKEN_ID_LEN] == '_' &&
                    base62_valid(q + 2 + TOKEN_ID_LEN, TOKEN_SEEN_SECRET))
                        return true;
        }
        return false;
}

/* ------------------------------------------------------- a token on stdin */

void token_input_erase(struct token_input *t)
{
        explicit_bzero(t, sizeof(*t));
}

static void restore_echo(struct termios *saved)
{
        if (saved->c_lflag & ECHO)
                (void)tcsetattr(STDIN_FILENO, TCSAFLUSH, saved);
}

/* One line from stdin, without echo on a terminal; never through stdio. */
int read_token(const struct args *a, struct token_input *in)
{
        _cleanup_(restore_echo) struct termios saved = {0};
        bool tty = isatty(STDIN_FILENO);

        if (tty) {
                struct termios raw;
                if (tcgetattr(STDIN_FILENO, &saved) == 0) {
                        raw = saved;
                        raw.c_lflag &= ~(tcflag_t)ECHO;
                        if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) < 0)
                                saved.c_lflag &= ~(tcflag_t)ECHO;
                }
                fputs("API key: ", stderr);
                fflush(stderr);
        }
        while (in->len < TOKEN_INPUT_MAX) {
                ssize_t n = read(STDIN_FILENO, in->data + in->len, 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        int e = errno;
                        err("cannot read the token from standard input: %s", strerror(e));
                        return -e;
                }
                if (n == 0 || in->data[in->len] == '\n')
                        break;
                in->len++;
        }
        if (tty)
                fputc('\n', stderr);
        if (in->len == TOKEN_INPUT_MAX) {
                err("the first line of standard input is too long to be an API key");
                return ERR_USAGE;
        }
        while (in->len > 0 && is_blank(in->data[in->len - 1]))
                in->len--;
        size_t lead = 0;
        while (lead < in->len && is_blank(in->data[lead]))
                lead++;
        if (lead > 0) {
                memmove(in->data, in->data + lead, in->len - lead);
                explicit_bzero(in->data + in->len - lead, lead);
                in->len -= lead;
        }
        if (in->len == 0)
                return usage_error(a, "no token on standard input; run "
                                      "'apikeyctl verify < FILE' or type it at the prompt");
        return 0;
}
