/* SPDX-License-Identifier: MIT */
/*
 * Login sessions opened with a key: OpenSession, CloseSession and
 * ListSessions, and the ending of every session whose key stops being
 * usable.
 *
 * pam_apikey's session hook registers a session from inside sshd or sudo
 * (root).  The daemon holds the registering process by a pidfd taken from
 * the connection while it is open (SO_PEERPIDFD, or pidfd_open() of the
 * SO_PEERCRED pid), never from a pid a caller names, so a recycled pid is
 * never signalled.  After each change to a key, and every half second
 * while sessions are open (for expiry), each session's key is checked as a
 * login would be (status, expiry, scope, the keys it was created through); a
 * session whose key fails is ended: its process and every process below it
 * (session_procs.c) get SIGTERM, those left SIGKILL a second later.
 * Sessions are written to the state directory (sessions.json) at every
 * change and read back at start: a process is taken again only when the
 * kernel's pidfs proves it is the one that registered (the pidfd's inode
 * number is unique to a process for as long as the system runs); on a
 * kernel without pidfs (before 6.9) sessions do not survive a restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "log.h"
#include "message_ids.h"
#include "methods.h"
#include "session_procs.h"
#include "sessions.h"
#include "state.h"
#include "token.h"
#include "timeutil.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define SESSIONS_MAX       4096
#define SESSION_ID_LEN     32
#define SESSION_SWEEP_USEC (USEC_PER_SEC / 2)
#define SESSION_GRACE_USEC USEC_PER_SEC
#define SESSIONS_FILE      "sessions.json"
#ifndef PID_FS_MAGIC
#define PID_FS_MAGIC 0x50494446
#endif

struct session {
        char id[SESSION_ID_LEN + 1];
        char key_id[TOKEN_ID_LEN + 1];
        char owner[KEY_OWNER_MAX + 1];
        char user[KEY_FIELD_MAX + 1];
        char service[KEY_FIELD_MAX + 1];
        char rhost[KEY_FIELD_MAX + 1];
        char tty[KEY_FIELD_MAX + 1];
        pid_t pid;
        int pidfd;
        uint64_t ino;               /* the pidfd's pidfs inode: who the process is; 0 = unknown */
        uint64_t since;             /* µs, realtime */
        uint64_t ending_at;         /* mono µs of the SIGTERM; 0 while live */
        struct session_procs procs; /* while ending: its processes */
};

struct session_table {
        struct session *s;
        size_t n;
        sd_event_source *timer;
        bool dirty; /* not yet written to SESSIONS_FILE */
};

static struct session_table *table(struct api *a)
{
        if (!a->sessions)
                a->sessions = calloc(1, sizeof(*a->sessions));
        return a->sessions;
}

static bool process_gone(int pidfd)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};

        return poll(&p, 1, 0) != 0; /* readable once the process has exited */
}

static void session_drop(struct session_table *t, size_t i)
{
        t->dirty = true;
        if (t->s[i].pidfd >= 0)
                close(t->s[i].pidfd);
        session_procs_done(&t->s[i].procs);
        t->s[i] = t->s[--t->n];
}

/* The pidfs inode of `pidfd`: the same for every pidfd of one process, never
 * another's.  0 where pidfds are not on pidfs (kernels before 6.9). */
static uint64_t pidfd_identity(int pidfd)
{
        struct statfs sfs;
        struct stat st;

        if (fstatfs(pidfd, &sfs) < 0 || sfs.f_type != PID_FS_MAGIC || fstat(pidfd, &st) < 0)
                return 0;
        return (uint64_t)st.st_ino;
}

static json_t *session_json(const struct session *s);

/* Write the sessions to the state directory, if they changed: replaced whole. */
static void sessions_save(struct api *a)
{
        struct session_table *t = a->sessions;
        char path[4096], tmp[4096 + 8];
        json_t *arr;
        int r = -ENOMEM;

        if (!t || !t->dirty || !a->state_dir)
                return;
        snprintf(path, sizeof(path), "%s/" SESSIONS_FILE, a->state_dir);
        snprintf(tmp, sizeof(tmp), "%s.new", path);
        arr = json_array();
        for (size_t i = 0; arr && i < t->n; i++) {
                json_t *o = session_json(&t->s[i]);
                if (!o || json_object_set_new(o, "owner", json_string(t->s[i].owner)) < 0 ||
                    json_object_set_new(o, "ino", json_integer((json_int_t)t->s[i].ino)) < 0 ||
                    json_object_set_new(o, "since_usec", json_integer((json_int_t)t->s[i].since)) <
                        0 ||
                    json_array_append_new(arr, o) < 0) {
                        json_decref(o);
                        json_decref(arr);
                        arr = NULL;
                }
        }
        if (arr) {
                /* Who is logged in from where: the daemon's alone, as the keystore. */
                int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
                r = fd < 0 ? -errno : json_dumpfd(arr, fd, JSON_COMPACT) < 0 ? -EIO : 0;
                if (fd >= 0 && close(fd) < 0 && r == 0)
                        r = -errno;
                if (r == 0 && rename(tmp, path) < 0)
                        r = -errno;
                json_decref(arr);
        }
        if (r < 0) {
                (void)unlink(tmp);
                log_error("cannot write %s: %s", path, strerror(-r));
                return;
        }
        t->dirty = false;
}

static void session_log_end(struct api *a, const struct session *s, const char *why)
{
        struct audit_fields f = {0};
        char detail[sizeof(((struct queued_verify *)0)->detail)];
        char message[sizeof(detail) + TOKEN_ID_LEN + 64];
        struct queued_verify *qv;

        snprintf(detail, sizeof(detail), "user=%s service=%s rhost=%s tty=%s pid=%d: %s", s->user,
                 s->service, s->rhost[0] ? s->rhost : "-", s->tty[0] ? s->tty : "-", (int)s->pid,
                 why);
        if (a->n_audit_queue < API_AUDIT_QUEUE_MAX && (qv = api_audit_queue_add(a))) {
                *qv = (struct queued_verify){.time = now_usec()};
                str_copy(qv->actor, sizeof(qv->actor), "apikeyd");
                str_copy(qv->action, sizeof(qv->action), "end-session");
                str_copy(qv->key_id, sizeof(qv->key_id), s->key_id);
                str_copy(qv->result, sizeof(qv->result), "ENDED");
                str_copy(qv->detail, sizeof(qv->detail), detail);
        }
        api_field(&f, MESSAGE_ID_SESSION_ENDED, "");
        api_field(&f, "APIKEY_ID=", s->key_id);
        api_field(&f, "APIKEY_USER=", s->user);
        api_field(&f, "APIKEY_SERVICE=", s->service);
        api_field(&f, "APIKEY_RHOST=", s->rhost);
        api_field(&f, "APIKEY_TTY=", s->tty);
        api_field_uint(&f, "APIKEY_SESSION_PID=", (unsigned long)s->pid);
        snprintf(message, sizeof(message), "ending session of key %s: %s", s->key_id, detail);
        log_fields(LOG_NOTICE, message, f.v, f.n);
}

/* Why the key of a session no longer lets it run, or NULL if it does. */
static const char *session_key_unusable(struct api *a, const struct session *s, uint64_t now)
{
        _cleanup_free_ void *storage = NULL;
        struct key_record rec;
        char blocked[TOKEN_ID_LEN + 1];
        int r = keystore_get(a->ks, s->key_id, &rec, &storage);

        if (r == -ENOENT)
                return "key deleted";
        if (r < 0)
                return NULL; /* cannot tell now: the next sweep asks again */
        switch (record_effective_status(&rec, now)) {
        case KEY_STATUS_ENABLED:
                break;
        case KEY_STATUS_DISABLED:
                return "key disabled";
        case KEY_STATUS_REVOKED:
                return "key revoked";
        case KEY_STATUS_EXPIRED:
                return "key expired";
        }
        /* As Verify checks it: an Update that takes the service out of the
         * key's scope ends the sessions it opened there. */
        bool in_scope = rec.n_scope == 0;
        for (size_t i = 0; !in_scope && i < rec.n_scope; i++)
                in_scope = STREQ(rec.scope[i], s->service);
        if (!in_scope)
                return "key no longer scoped for this service";
        if (keystore_lineage(a->ks, &rec, now, blocked, NULL) > 0)
                return "a key it was created through is no longer usable";
        return NULL;
}

static void sessions_arm(struct api *a);

/*
 * Signal the session's processes: the one that registered it and all it
 * started (session_procs.c), found again while any of them may still fork.
 * For SIGKILL, every one still running again.
 */
static void session_signal(struct session *s, int sig)
{
        pid_t pid = s->pid;
        int r = 0, added;

        if (s->procs.n == 0 && (r = session_procs_init(&s->procs, s->pid, s->pidfd)) < 0) {
                /* Out of fds or memory: the registering process alone. */
                log_error("cannot hold the processes of a session of key %s: %s", s->key_id,
                          strerror(-r));
                if (syscall(SYS_pidfd_send_signal, s->pidfd, sig, NULL, 0) < 0)
                        log_event(LOG_ERR, MESSAGE_ID_SESSION_ENDED,
                                  "cannot signal pid %d of a session of key %s: %s", (int)s->pid,
                                  s->key_id, strerror(errno));
                return;
        }
        if (sig == SIGKILL)
                r = session_procs_signal(&s->procs, sig, true, &pid);
        for (int round = 0; round < 8; round++) {
                added = session_procs_expand(&s->procs);
                if (added < 0 && round == 0)
                        log_debug("cannot read the processes below pid %d: %s", (int)s->pid,
                                  strerror(-added));
                pid_t q_pid = s->pid;
                int q = session_procs_signal(&s->procs, sig, false, &q_pid);
                if (r == 0 && q < 0) {
                        r = q;
                        pid = q_pid;
                }
                if (added <= 0)
                        break;
        }
        if (r < 0)
                log_event(LOG_ERR, MESSAGE_ID_SESSION_ENDED,
                          "cannot signal pid %d of a session of key %s: %s", (int)pid, s->key_id,
                          strerror(-r));
        else
                log_debug("session %s of key %s: signal %d to %zu processes", s->id, s->key_id, sig,
                          s->procs.n);
}

void sessions_sweep(struct api *a)
{
        struct session_table *t = a->sessions;
        uint64_t now = now_usec(), mono = mono_usec();

        if (!t)
                return;
        for (size_t i = 0; i < t->n;) {
                struct session *s = &t->s[i];
                const char *why;

                if (s->ending_at) {
                        /* Over once all its processes are: the one that
                         * registered it may go first and leave the rest. */
                        if (session_procs_alive(&s->procs) == 0) {
                                session_drop(t, i);
                                continue;
                        }
                        if (mono - s->ending_at >= SESSION_GRACE_USEC) {
                                session_signal(s, SIGKILL);
                                session_drop(t, i);
                                continue;
                        }
                } else if (process_gone(s->pidfd)) {
                        session_drop(t, i);
                        continue;
                } else if (a->config->end_sessions && (why = session_key_unusable(a, s, now))) {
                        session_log_end(a, s, why);
                        session_signal(s, SIGTERM);
                        s->ending_at = mono;
                }
                i++;
        }
        sessions_save(a);
        sessions_arm(a);
}

static int on_sweep(sd_event_source *src, uint64_t usec, void *userdata)
{
        sessions_sweep(userdata);
        return 0;
}

/* The sweep runs every half second while any session is open. */
static void sessions_arm(struct api *a)
{
        struct session_table *t = a->sessions;

        if (!t || !a->event)
                return;
        if (t->n == 0) {
                if (t->timer)
                        (void)sd_event_source_set_enabled(t->timer, SD_EVENT_OFF);
                return;
        }
        if (!t->timer) {
                if (sd_event_add_time_relative(a->event, &t->timer, CLOCK_MONOTONIC,
                                               SESSION_SWEEP_USEC, 0, on_sweep, a) < 0)
                        return;
        } else
                (void)sd_event_source_set_time_relative(t->timer, SESSION_SWEEP_USEC);
        (void)sd_event_source_set_enabled(t->timer, SD_EVENT_ONESHOT);
}

void sessions_free(struct api *a)
{
        struct session_table *t = a->sessions;

        if (!t)
                return;
        while (t->n > 0)
                session_drop(t, 0);
        free(t->s);
        sd_event_source_disable_unref(t->timer);
        free(t);
        a->sessions = NULL;
}

static bool session_id_valid(const char *s);

static void copy_member(char *dst, size_t size, json_t *o, const char *name)
{
        const char *v = json_string_value(json_object_get(o, name));

        str_copy(dst, size, v ? v : "");
}

void sessions_load(struct api *a)
{
        struct session_table *t = table(a);
        size_t kept = 0, dropped = 0, i;
        char path[4096];
        json_error_t err;
        json_t *arr, *o;

        if (!t || !a->state_dir)
                return;
        snprintf(path, sizeof(path), "%s/" SESSIONS_FILE, a->state_dir);
        arr = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (!arr) {
                if (access(path, F_OK) == 0)
                        log_warning("cannot read %s: %s; its sessions are forgotten", path,
                                    err.text);
                return;
        }
        json_array_foreach(arr, i, o)
        {
                struct session s = {.pidfd = -1};
                json_int_t pid = json_integer_value(json_object_get(o, "pid"));
                json_int_t ino = json_integer_value(json_object_get(o, "ino"));
                struct session *grown;

                copy_member(s.id, sizeof(s.id), o, "session");
                copy_member(s.key_id, sizeof(s.key_id), o, "key_id");
                copy_member(s.owner, sizeof(s.owner), o, "owner");
                copy_member(s.user, sizeof(s.user), o, "user");
                copy_member(s.service, sizeof(s.service), o, "service");
                copy_member(s.rhost, sizeof(s.rhost), o, "rhost");
                copy_member(s.tty, sizeof(s.tty), o, "tty");
                s.since = (uint64_t)json_integer_value(json_object_get(o, "since_usec"));
                s.pid = (pid_t)pid;
                /* The same process only if pidfs says so: a pid alone may be reused. */
                if (pid > 0 && pid <= INT32_MAX && ino > 0 && session_id_valid(s.id) &&
                    token_id_valid(s.key_id) && t->n < SESSIONS_MAX)
                        s.pidfd = (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
                if (s.pidfd < 0 || pidfd_identity(s.pidfd) != (uint64_t)ino ||
                    !(grown = realloc(t->s, (t->n + 1) * sizeof(*t->s)))) {
                        if (s.pidfd >= 0)
                                close(s.pidfd);
                        dropped++;
                        continue;
                }
                s.ino = (uint64_t)ino;
                t->s = grown;
                t->s[t->n++] = s;
                kept++;
        }
        json_decref(arr);
        if (kept || dropped)
                log_info("%zu login session%s taken over from before the restart, %zu ended "
                         "meanwhile or unprovable",
                         kept, kept == 1 ? "" : "s", dropped);
        t->dirty = dropped > 0;
        /* Keys revoked while the daemon was away end their sessions now. */
        sessions_sweep(a);
}

/* A pidfd of the connected peer: the kernel's own, or one opened while it is connected. */
static int peer_pidfd(struct request *q)
{
        const struct caller *c = connection_caller(q->conn);
        int fd = -1;
        socklen_t len = sizeof(fd);

        if (getsockopt(connection_fd(q->conn), SOL_SOCKET, SO_PEERPIDFD, &fd, &len) == 0 && fd >= 0)
                return fd;
        /* Before Linux 6.5: the pid the peer had when it connected.  The
         * call came over the connection just now, so the peer still holds
         * it; only a peer that handed its socket to another process and
         * exited could leave a pid to be reused, and the PAM callers (sshd,
         * sudo) make their calls themselves. */
        fd = (int)syscall(SYS_pidfd_open, c->pid, 0);
        return fd < 0 ? -errno : fd;
}

static bool session_id_valid(const char *s)
{
        if (!s || strlen(s) != SESSION_ID_LEN)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

static struct session *session_find(struct session_table *t, const char *id)
{
        for (size_t i = 0; t && i < t->n; i++)
                if (STREQ(t->s[i].id, id))
                        return &t->s[i];
        return NULL;
}

static int refuse_not_root(struct request *q)
{
        if (connection_caller(q->conn)->uid == 0)
                return 0;
        return api_reply_authz(q, -EPERM,
                               "only root (the PAM module inside sshd or sudo) may register or "
                               "close a login session"),
               -EPERM;
}

static const struct param open_params[] = {
    PARAM(session, JSON_STRING, true),
    PARAM(id, JSON_STRING, true),
    PARAM(user, JSON_STRING, true),
    PARAM(service, JSON_STRING, true),
    PARAM(rhost, JSON_STRING, false),
    PARAM(tty, JSON_STRING, false),
    {NULL, 0, false, 0},
};

static int method_open_session(struct request *q)
{
        _cleanup_free_ void *storage = NULL;
        struct session_table *t;
        struct key_record rec;
        struct method_params p;
        struct session *s;
        int r, fd;

        if (api_decode_params(q, open_params, &p) < 0)
                return 0;
        if (p.id && token_id_valid(p.id))
                str_copy(q->key_id, sizeof(q->key_id), p.id);
        if (refuse_not_root(q) < 0)
                return 0;
        if (!session_id_valid(p.session))
                return api_reply_invalid_reason(q, "session", "expected 32 hex digits");
        if (!token_id_valid(p.id))
                return api_reply_invalid(q, "id");
        r = keystore_get(q->api->ks, p.id, &rec, &storage);
        if (r == -ENOENT)
                return api_reply_no_such_key(q, p.id);
        if (r < 0)
                return api_reply_internal(q, "reading a key", r);
        t = table(q->api);
        if (!t)
                return -ENOMEM;
        if (session_find(t, p.session))
                return api_reply_invalid_reason(q, "session", "already registered");
        if (t->n >= SESSIONS_MAX)
                return api_reply_reason(q, ERR_POLICY, "too many open sessions");
        fd = peer_pidfd(q);
        if (fd < 0)
                return api_reply_internal(q, "taking a handle on the calling process", fd);
        s = realloc(t->s, (t->n + 1) * sizeof(*t->s));
        if (!s) {
                close(fd);
                return -ENOMEM;
        }
        t->s = s;
        s = &t->s[t->n++];
        *s = (struct session){.pidfd = fd, .pid = connection_caller(q->conn)->pid, .since = q->now};
        str_copy(s->id, sizeof(s->id), p.session);
        str_copy(s->key_id, sizeof(s->key_id), rec.id);
        str_copy(s->owner, sizeof(s->owner), rec.owner);
        str_copy(s->user, sizeof(s->user), p.user);
        str_copy(s->service, sizeof(s->service), p.service);
        str_copy(s->rhost, sizeof(s->rhost), p.rhost ? p.rhost : "");
        str_copy(s->tty, sizeof(s->tty), p.tty ? p.tty : "");
        s->ino = pidfd_identity(fd);
        t->dirty = true;
        log_debug("session %s of key %s for %s (%s) registered by pid %d", s->id, s->key_id,
                  s->user, s->service, (int)s->pid);
        sessions_arm(q->api);
        /* A key that stopped being usable since the login ends its session now. */
        r = api_reply(q, NULL);
        sessions_sweep(q->api);
        return r;
}

static const struct param close_params[] = {
    PARAM(session, JSON_STRING, true),
    {NULL, 0, false, 0},
};

static int method_close_session(struct request *q)
{
        struct session_table *t = q->api->sessions;
        struct method_params p;

        if (api_decode_params(q, close_params, &p) < 0 || refuse_not_root(q) < 0)
                return 0;
        if (!session_id_valid(p.session))
                return api_reply_invalid_reason(q, "session", "expected 32 hex digits");
        for (size_t i = 0; t && i < t->n; i++)
                if (STREQ(t->s[i].id, p.session)) {
                        session_drop(t, i);
                        break;
                }
        sessions_save(q->api);
        sessions_arm(q->api);
        return api_reply(q, NULL);
}

static const struct param list_params[] = {
    PARAM(id, JSON_STRING, false),
    PARAM(auth, JSON_STRING, false),
    {NULL, 0, false, 0},
};

static json_t *session_json(const struct session *s)
{
        char since[TIMESTAMP_MAX] = "";
        json_t *o;

        (void)timestamp_format(s->since, since);
        o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s}", "session", s->id, "key_id", s->key_id,
                      "user", s->user, "service", s->service, "pid", (json_int_t)s->pid, "since",
                      since);
        if (o && s->rhost[0])
                json_object_set_new(o, "rhost", json_string(s->rhost));
        if (o && s->tty[0])
                json_object_set_new(o, "tty", json_string(s->tty));
        return o;
}

static int method_list_sessions(struct request *q)
{
        struct session_table *t = q->api->sessions;
        struct method_params p;
        const char *reason;
        json_t *arr;
        int r;

        if (api_decode_params(q, list_params, &p) < 0)
                return 0;
        if (p.id) {
                _cleanup_free_ void *storage = NULL;
                struct key_record rec;

                if (!token_id_valid(p.id))
                        return api_reply_invalid(q, "id");
                r = keystore_get(q->api->ks, p.id, &rec, &storage);
                if (r == -ENOENT)
                        return api_reply_no_such_key(q, p.id);
                if (r < 0)
                        return api_reply_internal(q, "reading a key", r);
                str_copy(q->key_id, sizeof(q->key_id), rec.id);
                r = authz_check(&q->who, AUTHZ_READ, rec.owner, &reason);
                if (r < 0)
                        return api_reply_authz(q, r, reason);
        }
        sessions_sweep(q->api); /* drop the sessions whose process has ended */
        arr = json_array();
        for (size_t i = 0; arr && t && i < t->n; i++) {
                const struct session *s = &t->s[i];
                if (s->ending_at || (p.id && !STREQ(s->key_id, p.id)) ||
                    authz_check(&q->who, AUTHZ_READ, s->owner, &reason) < 0)
                        continue;
                json_array_append_new(arr, session_json(s));
        }
        return api_reply(q, arr ? json_pack("{s:o}", "sessions", arr) : NULL);
}

size_t sessions_count(struct api *a, const char *key_id)
{
        struct session_table *t = a->sessions;
        size_t n = 0;

        for (size_t i = 0; t && i < t->n; i++)
                n += !t->s[i].ending_at && STREQ(t->s[i].key_id, key_id) &&
                     !process_gone(t->s[i].pidfd);
        return n;
}

const struct method session_methods[] = {
    {KEYS_METHOD_OPEN_SESSION, method_open_session, true, false},
    {KEYS_METHOD_CLOSE_SESSION, method_close_session, true, false},
    {KEYS_METHOD_LIST_SESSIONS, method_list_sessions, true, false},
    {NULL, NULL, false, false},
};
