/* SPDX-License-Identifier: MIT */
/*
 * A host that joins a fleet with keys of its own: it does not follow etcd
 * (whose keys would replace its own) until FleetPush moves them there.  The
 * push is `apikeyd --fleet-push` (fleet_push.c) run as a child of the
 * daemon on the same config and state directory, so that the event loop
 * never waits for etcd: its output is read on the loop, and once it has
 * marked the keystore as a replica, the daemon follows etcd from there.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fleet_internal.h"
#include "log.h"
#include "timeutil.h"

/* What is kept of the push's output for the caller. */
#define PUSH_OUTPUT_MAX (64 * 1024)

bool fleet_joining(const struct fleet *f)
{
        return f && f->joining;
}

/* The child is done (its output closed): its exit status, and the daemon follows etcd. */
static void push_finished(struct fleet *f)
{
        fleet_pushed_fn done = f->push_done;
        void *userdata = f->push_userdata;
        _cleanup_free_ char *out = TAKE_PTR(f->push_out);
        int64_t applied = 0;
        uint64_t cluster_id = 0, contact = 0;
        int status = 0, r;

        f->push_source = sd_event_source_disable_unref(f->push_source);
        while (waitpid(f->push_pid, &status, 0) < 0 && errno == EINTR)
                ;
        f->push_pid = 0;
        f->push_len = 0;
        f->push_done = NULL;
        f->push_userdata = NULL;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                r = -EIO;
        else {
                r = keystore_fleet_state(f->ks, &applied, &cluster_id, &contact);
                if (r >= 0 && applied <= 0)
                        r = -EIO;
        }
        if (r >= 0) {
                log_info("fleet: this host's %llu keys are in etcd now: following it from "
                         "revision %lld",
                         (unsigned long long)f->joining, (long long)applied);
                f->joining = 0;
                f->applied = f->queued = applied;
                f->cluster_id = cluster_id;
                f->contact_real = f->contact_saved = contact;
                /* From etcd's truth: keys the fleet had before this push are older. */
                f->force_resync = true;
                fleet_start(f);
        } else
                log_error("fleet: pushing this host's keys into etcd failed: %s",
                          out && *out ? out : "no output");
        if (done)
                done(r, out ? out : "", userdata);
}

static int on_push_output(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct fleet *f = userdata;
        char buf[4096];
        ssize_t n;

        n = read(fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                push_finished(f);
                return 0;
        }
        if (f->push_len + (size_t)n <= PUSH_OUTPUT_MAX) {
                char *p = realloc(f->push_out, f->push_len + (size_t)n + 1);

                if (p) {
                        memcpy(p + f->push_len, buf, (size_t)n);
                        f->push_len += (size_t)n;
                        p[f->push_len] = '\0';
                        f->push_out = p;
                }
        }
        return 0;
}

int fleet_push_start(struct fleet *f, fleet_pushed_fn done, void *userdata)
{
        const char *argv[] = {"apikeyd",     "--config",   f->config_path,
                              "--state-dir", f->state_dir, "--fleet-push",
                              NULL};
        /* The push runs on the daemon's state directory, whose lock the
         * daemon holds: handed to it as fd 3, named in its environment. */
        static char lock_env[] = STATE_LOCK_FD_ENV "=3";
        _cleanup_free_ char **envp = NULL;
        size_t n_env = 0;
        int fds[2], null_fd, r;
        sigset_t none;
        pid_t pid;

        if (!f->joining)
                return -EALREADY;
        if (f->push_pid)
                return -EBUSY;
        if (!f->config_path || !f->state_dir)
                return -EOPNOTSUPP;
        while (environ[n_env])
                n_env++;
        envp = calloc(n_env + 2, sizeof(*envp));
        if (!envp)
                return -ENOMEM;
        for (size_t i = 0, j = 0; i < n_env; i++)
                if (strncmp(environ[i], STATE_LOCK_FD_ENV "=", STRLEN(STATE_LOCK_FD_ENV "=")) != 0)
                        envp[j++] = environ[i];
        if (f->state_lock_fd >= 0)
                for (size_t j = 0;; j++)
                        if (!envp[j]) {
                                envp[j] = lock_env;
                                break;
                        }
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null_fd < 0) {
                r = -errno;
                close(fds[0]);
                close(fds[1]);
                return r;
        }
        sigemptyset(&none);
        pid = fork();
        if (pid < 0) {
                r = -errno;
                close(fds[0]);
                close(fds[1]);
                close(null_fd);
                return r;
        }
        if (pid == 0) {
                /* Only what is safe after fork() in a threaded process, until exec. */
                if (dup2(null_fd, 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[1], 2) < 0)
                        _exit(127);
                /* dup2() onto itself would keep close-on-exec set. */
                if (f->state_lock_fd >= 0 &&
                    (f->state_lock_fd == 3 ? fcntl(3, F_SETFD, 0) : dup2(f->state_lock_fd, 3)) < 0)
                        _exit(127);
                (void)syscall(SYS_close_range, f->state_lock_fd >= 0 ? 4U : 3U, ~0U, 0U);
                (void)sigprocmask(SIG_SETMASK, &none, NULL);
                execve("/proc/self/exe", (char *const *)argv, envp);
                _exit(127);
        }
        close(fds[1]);
        close(null_fd);
        (void)fcntl(fds[0], F_SETFL, O_NONBLOCK);
        r = sd_event_add_io(f->event, &f->push_source, fds[0], EPOLLIN, on_push_output, f);
        if (r >= 0)
                r = sd_event_source_set_io_fd_own(f->push_source, true);
        if (r < 0) {
                /* Not owned by the source when either step failed. */
                f->push_source = sd_event_source_disable_unref(f->push_source);
                close(fds[0]);
                (void)kill(pid, SIGTERM);
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                return r;
        }
        log_info("fleet: pushing this host's %llu keys into etcd (apikeyd --fleet-push, pid %d)",
                 (unsigned long long)f->joining, (int)pid);
        f->push_pid = pid;
        f->push_done = done;
        f->push_userdata = userdata;
        return 0;
}

void fleet_push_stop(struct fleet *f)
{
        fleet_pushed_fn done = f->push_done;
        void *userdata = f->push_userdata;

        if (!f->push_pid)
                return;
        /* The push is idempotent: what it wrote stays, and the next one goes on from there. */
        (void)kill(f->push_pid, SIGTERM);
        f->push_source = sd_event_source_disable_unref(f->push_source);
        while (waitpid(f->push_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        f->push_pid = 0;
        free(f->push_out);
        f->push_out = NULL;
        f->push_done = NULL;
        if (done)
                done(-ESHUTDOWN, "", userdata);
}
