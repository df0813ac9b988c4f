/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the processes of a login session (apikeyd/api/session_procs.c):
 * the /proc/PID/stat parser, and the set found for a tree of real processes
 * (a child, a grandchild, a process session one of them leads with a job
 * whose parent exited), with a process beside it that must stay out.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "session_procs.h"

static int parse(const char *line, struct proc_stat *st)
{
        return proc_stat_parse(line, strlen(line), st);
}

static void test_parse(void **state)
{
        struct proc_stat st;

        assert_int_equal(parse("4242 (sleep) S 17 4242 4200 34816 4242 4194304 0\n", &st), 0);
        assert_int_equal(st.pid, 4242);
        assert_int_equal(st.ppid, 17);
        assert_int_equal(st.sid, 4200);
        /* A name that forges the fields after it: the last ')' closes it. */
        assert_int_equal(parse("77 (x) S 1 1 1) R 99 98 97 0 0\n", &st), 0);
        assert_int_equal(st.ppid, 99);
        assert_int_equal(st.sid, 97);
        assert_int_equal(parse("77 (a b\n) c) S 5 6 7", &st), 0);
        assert_int_equal(st.ppid, 5);
        assert_int_equal(st.sid, 7);
        assert_int_equal(parse("2 (kthreadd) S 0 0 0 0 -1\n", &st), 0);
        assert_int_equal(st.ppid, 0);

        assert_int_equal(parse("", &st), -EINVAL);
        assert_int_equal(parse("12 (sleep S 1 2 3\n", &st), -EINVAL);
        assert_int_equal(parse("12 (sleep) S 1 2\n", &st), -EINVAL);
        assert_int_equal(parse("12 (sleep) S 1 2 ", &st), -EINVAL);
        assert_int_equal(parse("12 (sleep) S 1 2 3x\n", &st), -EINVAL);
        assert_int_equal(parse("12 (sleep) S -1 2 3\n", &st), -EINVAL);
        assert_int_equal(parse("12 (sleep) S 2147483648 2 3\n", &st), -EINVAL);
        assert_int_equal(parse("0 (sleep) S 1 2 3\n", &st), -EINVAL);
        assert_int_equal(parse("12(sleep) S 1 2 3\n", &st), -EINVAL);
        assert_int_equal(parse("12 (sleep)  1 2 3\n", &st), -EINVAL);
        /* Never past `len`: a session field cut off entirely is none. */
        assert_int_equal(proc_stat_parse("12 (s) S 1 2 345", 13, &st), -EINVAL);
        assert_int_equal(proc_stat_parse("12 (s) S 1 2 345", 14, &st), 0);
        assert_int_equal(st.sid, 3);
        assert_int_equal(proc_stat_parse("12 (s) S 1 2 345", 16, &st), 0);
        assert_int_equal(st.sid, 345);
}

/* Report our pid on `fd`, then wait to be killed. */
_Noreturn static void report_and_wait(int fd)
{
        pid_t me = getpid();

        if (write(fd, &me, sizeof(me)) != sizeof(me))
                _exit(1);
        for (;;)
                pause();
}

/*
 * The session's leader: a child with a grandchild, and a child that calls
 * setsid() and leaves a job behind (a grandchild whose parent exits), which
 * is found only through the process session.
 */
_Noreturn static void leader(int fd)
{
        if (fork() == 0) {
                if (fork() == 0)
                        report_and_wait(fd);
                report_and_wait(fd);
        }
        if (fork() == 0) {
                if (setsid() < 0)
                        _exit(1);
                if (fork() == 0) {
                        if (fork() == 0)
                                report_and_wait(fd);
                        _exit(0); /* the job is left behind */
                }
                report_and_wait(fd);
        }
        report_and_wait(fd);
}

static bool has(const struct session_procs *set, pid_t pid)
{
        for (size_t i = 0; i < set->n; i++)
                if (set->p[i].pid == pid)
                        return true;
        return false;
}

static void test_tree(void **state)
{
        struct session_procs set;
        pid_t pids[4], lead, beside, failed = 0;
        int fds[2], lead_fd, k = 0;

        /* The job whose parent exits comes to us, not to init: reaped here. */
        assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
        assert_int_equal(pipe(fds), 0);
        beside = fork();
        assert_true(beside >= 0);
        if (beside == 0)
                report_and_wait(fds[1]);
        lead = fork();
        assert_true(lead >= 0);
        if (lead == 0)
                leader(fds[1]);
        close(fds[1]);
        /* beside, lead, its child and grandchild, the session's leader and its job */
        for (int n = 0; n < 6; n++) {
                pid_t p;
                assert_int_equal(read(fds[0], &p, sizeof(p)), sizeof(p));
                if (p != beside && p != lead) {
                        assert_true(k < 4);
                        pids[k++] = p;
                }
        }
        assert_int_equal(k, 4);
        close(fds[0]);

        lead_fd = (int)syscall(SYS_pidfd_open, lead, 0);
        assert_true(lead_fd >= 0);
        assert_int_equal(session_procs_init(&set, lead, lead_fd), 0);
        close(lead_fd); /* the set holds its own */
        assert_int_equal(session_procs_expand(&set), 4);
        assert_int_equal(set.n, 5);
        assert_true(has(&set, lead));
        for (int i = 0; i < 4; i++)
                assert_true(has(&set, pids[i]));
        /* Beside it in the same process session (which lead does not lead): out. */
        assert_false(has(&set, beside));
        assert_false(has(&set, getpid()));
        assert_int_equal(session_procs_expand(&set), 0);

        assert_int_equal(session_procs_signal(&set, SIGKILL, false, &failed), 0);
        for (int i = 0; i < 200 && session_procs_alive(&set) > 0; i++)
                usleep(10000);
        assert_int_equal(session_procs_alive(&set), 0);
        assert_int_equal(kill(beside, 0), 0);
        session_procs_done(&set);

        kill(beside, SIGKILL);
        while (waitpid(-1, NULL, 0) > 0 || errno == EINTR)
                ;
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_parse),
            cmocka_unit_test(test_tree),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
