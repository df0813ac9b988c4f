/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes proc_stat_parse() (apikeyd/api/session_procs.c), which reads
 * /proc/PID/stat of every process when a login session is ended.  The
 * process's name sits in that line as its owner set it (prctl(PR_SET_NAME),
 * the name of what they exec): any bytes, ')' and spaces included.  The
 * input is the line, no NUL added.  Checks that an accepted line gives pids
 * in range, that the parse never reads past the input (ASan), and that a
 * line written back from what was read, under any name, reads the same.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session_procs.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct proc_stat st, back;
        char *copy, line[256];
        int n;

        /* An exact-size copy: a read past the end is a finding. */
        copy = malloc(size ? size : 1);
        if (!copy)
                return 0;
        memcpy(copy, data, size);
        if (proc_stat_parse(copy, size, &st) < 0) {
                free(copy);
                return 0;
        }
        CHECK(st.pid > 0 && st.ppid >= 0 && st.sid >= 0);
        /* The input's first 15 bytes as a name, whatever they are. */
        n = snprintf(line, sizeof(line), "%d (%.*s) S %d 7 %d 0 -1 4194560 99\n", (int)st.pid,
                     (int)(size < 15 ? size : 15), copy, (int)st.ppid, (int)st.sid);
        CHECK(n > 0 && (size_t)n < sizeof(line));
        /* snprintf stops at a NUL: a name with one is cut there, still one line. */
        CHECK(proc_stat_parse(line, (size_t)n, &back) == 0);
        CHECK(back.pid == st.pid && back.ppid == st.ppid && back.sid == st.sid);
        free(copy);
        return 0;
}
