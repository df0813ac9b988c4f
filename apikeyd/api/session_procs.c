/* SPDX-License-Identifier: MIT */
/*
 * The processes of one login session, found in /proc and held by pidfds.
 *
 * sshd registers a session from its per-connection privileged process; the
 * command runs two forks below it, in a process session of its own
 * (setsid()).  Signalling the registering process alone ends the command
 * only when a terminal hangs up on it: without one (`ssh host sleep 60`)
 * sshd exits and leaves the command running.  So the whole tree below the
 * registering process is ended with it, and with the tree every process of
 * a session one of its members leads (a command's background job whose
 * parent exited).  A process that leaves both (a daemon that forks, exits
 * and calls setsid() again) is no longer the session's.
 *
 * A pid read from /proc may be reused by the time it is signalled; a pidfd
 * is not.  So a process joins only as: pidfd opened, /proc read again, and
 * both it and the member it hangs from still alive after that read (then
 * the read was of the process the pidfd holds, and the member's pid was
 * the member's).  The registering process's own process session is never
 * followed unless it leads it: sshd's listener leads the one its
 * connections start in.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "macro.h"
#include "session_procs.h"

#define SESSION_PROCS_MAX   4096
#define SESSION_PROCS_ROUND 16 /* scans of /proc for one expand, at most */

static int parse_pid(const char **p, const char *end, pid_t *ret)
{
        long long v = 0;
        const char *s = *p;

        if (s >= end || *s < '0' || *s > '9')
                return -EINVAL;
        for (; s < end && *s >= '0' && *s <= '9'; s++) {
                v = v * 10 + (*s - '0');
                if (v > INT_MAX)
                        return -EINVAL;
        }
        *p = s;
        *ret = (pid_t)v;
        return 0;
}

static int skip_space(const char **p, const char *end)
{
        if (*p >= end || **p != ' ')
                return -EINVAL;
        (*p)++;
        return 0;
}

int proc_stat_parse(const char *buf, size_t len, struct proc_stat *ret)
{
        const char *p = buf, *end = buf + len, *close = NULL;
        struct proc_stat st;
        pid_t pgrp;

        if (parse_pid(&p, end, &st.pid) < 0 || skip_space(&p, end) < 0 || p >= end || *p != '(')
                return -EINVAL;
        /* The name may hold ')': the last one closes it, no field after has one. */
        for (const char *q = p + 1; q < end; q++)
                if (*q == ')')
                        close = q;
        if (!close)
                return -EINVAL;
        p = close + 1;
        if (skip_space(&p, end) < 0 || p >= end || *p == ' ')
                return -EINVAL;
        p++; /* the state, one letter */
        if (skip_space(&p, end) < 0 || parse_pid(&p, end, &st.ppid) < 0 ||
            skip_space(&p, end) < 0 || parse_pid(&p, end, &pgrp) < 0 || skip_space(&p, end) < 0 ||
            parse_pid(&p, end, &st.sid) < 0)
                return -EINVAL;
        if (p < end && *p != ' ' && *p != '\n')
                return -EINVAL;
        if (st.pid == 0)
                return -EINVAL;
        *ret = st;
        return 0;
}

static bool gone(int pidfd)
{
        struct pollfd p = {.fd = pidfd, .events = POLLIN};

        return poll(&p, 1, 0) != 0; /* readable once the process has exited */
}

static int read_stat(int proc_fd, pid_t pid, struct proc_stat *ret)
{
        char name[32], buf[1024];
        _cleanup_close_ int fd = -1;
        ssize_t n;

        snprintf(name, sizeof(name), "%d/stat", (int)pid);
        fd = openat(proc_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf));
        if (n < 0)
                return -errno;
        if (proc_stat_parse(buf, (size_t)n, ret) < 0 || ret->pid != pid)
                return -EINVAL;
        return 0;
}

/* Members that ended are passed over: their pids may be another's now. */
static bool in_set(const struct session_procs *set, pid_t pid)
{
        for (size_t i = 0; i < set->n; i++)
                if (set->p[i].pid == pid && !gone(set->p[i].pidfd))
                        return true;
        return false;
}

/* The member `st` hangs from: its parent, or the leader of its session. */
static const struct session_proc *hangs_from(const struct session_procs *set,
                                             const struct proc_stat *st)
{
        for (size_t i = 0; i < set->n; i++) {
                const struct session_proc *m = &set->p[i];
                if ((st->ppid == m->pid || (m->sid == m->pid && st->sid == m->pid)) &&
                    !gone(m->pidfd))
                        return m;
        }
        return NULL;
}

static int add(struct session_procs *set, pid_t pid, pid_t sid, int pidfd)
{
        struct session_proc *grown;

        if (set->n >= SESSION_PROCS_MAX)
                return -E2BIG;
        grown = realloc(set->p, (set->n + 1) * sizeof(*set->p));
        if (!grown)
                return -ENOMEM;
        set->p = grown;
        set->p[set->n++] = (struct session_proc){.pid = pid, .sid = sid, .pidfd = pidfd};
        return 0;
}

int session_procs_init(struct session_procs *set, pid_t pid, int pidfd)
{
        int fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
        int r;

        *set = (struct session_procs){0};
        if (fd < 0)
                return -errno;
        r = add(set, pid, 0, fd);
        if (r < 0)
                close(fd);
        return r;
}

/* Take the candidate `c` (as one scan saw it) if it proves to hang from a member. */
static int take(struct session_procs *set, int proc_fd, const struct proc_stat *c)
{
        const struct session_proc *m;
        struct proc_stat st;
        int fd, r;

        /* Never the daemon itself, should someone run it from such a login. */
        if (c->pid == getpid() || !hangs_from(set, c))
                return 0;
        fd = (int)syscall(SYS_pidfd_open, c->pid, 0);
        if (fd < 0)
                return 0; /* ended meanwhile */
        if (read_stat(proc_fd, c->pid, &st) < 0 || !(m = hangs_from(set, &st)) || gone(fd) ||
            gone(m->pidfd)) {
                close(fd);
                return 0;
        }
        r = add(set, st.pid, st.sid, fd);
        if (r < 0) {
                close(fd);
                return r;
        }
        return 1;
}

/* One scan of /proc: what it adds, or a negative errno. */
static int scan(struct session_procs *set, int proc_fd)
{
        _cleanup_close_ int fd = fcntl(proc_fd, F_DUPFD_CLOEXEC, 3);
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        struct proc_stat *seen = NULL;
        size_t n_seen = 0;
        struct dirent *e;
        int added = 0, r = 0;

        if (!d)
                return -errno;
        fd = -1; /* the DIR has it */
        while ((e = readdir(d))) {
                const char *p = e->d_name;
                struct proc_stat st, *grown;
                pid_t pid;

                if (parse_pid(&p, p + strlen(p), &pid) < 0 || *p || in_set(set, pid) ||
                    read_stat(proc_fd, pid, &st) < 0)
                        continue;
                grown = realloc(seen, (n_seen + 1) * sizeof(*seen));
                if (!grown) {
                        r = -ENOMEM;
                        break;
                }
                seen = grown;
                seen[n_seen++] = st;
        }
        closedir(d);
        /* A child may sort before its parent: go over what was seen until
         * nothing more joins. */
        for (bool more = r == 0; more;) {
                more = false;
                for (size_t i = 0; i < n_seen && r >= 0; i++) {
                        if (seen[i].pid == 0 || in_set(set, seen[i].pid))
                                continue;
                        r = take(set, proc_fd, &seen[i]);
                        if (r > 0) {
                                added++;
                                more = true;
                                seen[i].pid = 0;
                        }
                }
        }
        free(seen);
        return r < 0 ? r : added;
}

int session_procs_expand(struct session_procs *set)
{
        _cleanup_close_ int proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int added = 0;

        if (proc_fd < 0)
                return -errno;
        /* The members' own sessions, read while they are alive. */
        for (size_t i = 0; i < set->n; i++) {
                struct proc_stat st;
                if (set->p[i].sid == 0 && read_stat(proc_fd, set->p[i].pid, &st) == 0 &&
                    !gone(set->p[i].pidfd))
                        set->p[i].sid = st.sid;
        }
        /* Again while the last scan found some: one may have forked meanwhile. */
        for (int round = 0; round < SESSION_PROCS_ROUND; round++) {
                int r = scan(set, proc_fd);
                if (r < 0)
                        return added > 0 ? added : r;
                if (r == 0)
                        break;
                added += r;
        }
        return added;
}

int session_procs_signal(struct session_procs *set, int sig, bool again, pid_t *ret_pid)
{
        int ret = 0;

        for (size_t i = 0; i < set->n; i++) {
                struct session_proc *m = &set->p[i];
                if ((m->signalled && !again) || gone(m->pidfd))
                        continue;
                m->signalled = true;
                if (syscall(SYS_pidfd_send_signal, m->pidfd, sig, NULL, 0) < 0 && errno != ESRCH &&
                    ret == 0) {
                        ret = -errno;
                        *ret_pid = m->pid;
                }
        }
        return ret;
}

size_t session_procs_alive(const struct session_procs *set)
{
        size_t n = 0;

        for (size_t i = 0; i < set->n; i++)
                n += !gone(set->p[i].pidfd);
        return n;
}

void session_procs_done(struct session_procs *set)
{
        for (size_t i = 0; i < set->n; i++)
                close(set->p[i].pidfd);
        free(set->p);
        *set = (struct session_procs){0};
}
