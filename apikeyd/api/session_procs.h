/* SPDX-License-Identifier: MIT */
/*
 * The processes of one login session (session_procs.c): the process that
 * registered it, everything it started, and the members of every process
 * session one of those created (a command sshd ran with setsid(), and what
 * that command left behind in it).  Each is held by a pidfd, so a process
 * that ends and whose pid is reused is never signalled in its place.
 * For sessions.c, which ends them.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* What the kernel says of a process in /proc/PID/stat, of what is read here. */
struct proc_stat {
        pid_t pid;
        pid_t ppid;
        pid_t sid; /* its session: the pid of the process that called setsid() */
};

/*
 * Parse the start of a /proc/PID/stat line, "PID (COMM) STATE PPID PGRP
 * SESSION ...", `len` bytes (no NUL needed).  COMM is the process's own
 * name, chosen by whoever runs it: any bytes, ')' and spaces included.
 * 0, or -EINVAL for a line that is not one.
 */
int proc_stat_parse(const char *buf, size_t len, struct proc_stat *ret);

struct session_proc {
        pid_t pid;
        pid_t sid;
        int pidfd;
        bool signalled;
};

struct session_procs {
        struct session_proc *p;
        size_t n;
};

/* The set of one process: `pidfd` is the caller's and is duplicated. */
int session_procs_init(struct session_procs *set, pid_t pid, int pidfd);

/*
 * Add every process whose parent is in the set, or that lives in a process
 * session whose leader is in the set, until no more are found.  A process
 * joins only once its pidfd is open and /proc, read after that, still
 * shows it so while both it and the member it hangs from are alive.  The
 * number added, or a negative errno (/proc unreadable: the set is as it
 * was).
 */
int session_procs_expand(struct session_procs *set);

/* Send `sig` to every member still running not yet sent one (all of them
 * if `again`); the first failure other than "already gone" as a negative
 * errno, with its pid in `ret_pid`. */
int session_procs_signal(struct session_procs *set, int sig, bool again, pid_t *ret_pid);

/* How many members still run. */
size_t session_procs_alive(const struct session_procs *set);

void session_procs_done(struct session_procs *set);
