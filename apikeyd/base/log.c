/* SPDX-License-Identifier: MIT */
/* The daemon's log lines; see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include <systemd/sd-journal.h>

#include "log.h"
#include "varlink.h"

static int max_level = LOG_INFO;

void log_set_max_level(int level)
{
        max_level = level;
}

int log_get_max_level(void)
{
        return max_level;
}

static _printf_(2, 0) void log_vmsg(int priority, const char *fmt, va_list ap)
{
        static int journal = -1;
        char line[2048];

        if (priority > max_level)
                return;
        if (journal < 0)
                journal = getenv("JOURNAL_STREAM") != NULL;
        vsnprintf(line, sizeof(line), fmt, ap);
        if (journal)
                fprintf(stderr, "<%d>%s\n", priority, line);
        else
                fprintf(stderr, "apikeyd: %s\n", line);
}

void log_msg(int priority, const char *fmt, ...)
{
        va_list ap;

        va_start(ap, fmt);
        log_vmsg(priority, fmt, ap);
        va_end(ap);
}

void log_ratelimited(int priority, uint64_t *last, unsigned *suppressed, uint64_t interval,
                     const char *fmt, ...)
{
        uint64_t now = varlink_now_usec();
        va_list ap;

        if (*last != 0 && now - *last < interval) {
                (*suppressed)++;
                return;
        }
        *last = now;
        va_start(ap, fmt);
        log_vmsg(priority, fmt, ap);
        va_end(ap);
        if (*suppressed) {
                log_msg(priority, "(%u similar messages suppressed)", *suppressed);
                *suppressed = 0;
        }
}

void log_event(int priority, const char *message_id, const char *fmt, ...)
{
        char line[2048];
        va_list ap;

        if (priority > max_level)
                return;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        log_fields(priority, line, &message_id, 1);
}

void log_fields(int priority, const char *message, const char *const *fields, size_t n)
{
        static const char *const prio[] = {
            "PRIORITY=0", "PRIORITY=1", "PRIORITY=2", "PRIORITY=3",
            "PRIORITY=4", "PRIORITY=5", "PRIORITY=6", "PRIORITY=7",
        };
        struct iovec iov[32];
        char buf[1024];
        _cleanup_free_ char *big = NULL;
        size_t k = 0, len;
        char *msg = buf;
        int r;

        if (priority > max_level || priority < 0)
                return;
        /* Journal fields are whole "NAME=value" strings: the message needs its prefix. */
        len = STRLEN("MESSAGE=") + strlen(message);
        if (len >= sizeof(buf)) {
                msg = big = malloc(len + 1);
                if (!big) {
                        log_msg(priority, "%s", message);
                        return;
                }
        }
        memcpy(msg, "MESSAGE=", STRLEN("MESSAGE="));
        memcpy(msg + STRLEN("MESSAGE="), message, len - STRLEN("MESSAGE=") + 1);
        iov[k++] = (struct iovec){msg, len};
        iov[k++] = (struct iovec){(char *)prio[priority], strlen(prio[priority])};
        iov[k++] = (struct iovec){(char *)"SYSLOG_IDENTIFIER=apikeyd",
                                  STRLEN("SYSLOG_IDENTIFIER=apikeyd")};
        for (size_t i = 0; i < n && k < ELEMENTSOF(iov); i++)
                iov[k++] = (struct iovec){(char *)fields[i], strlen(fields[i])};
        r = sd_journal_sendv(iov, (int)k);
        if (r < 0 || !getenv("JOURNAL_STREAM"))
                log_msg(priority, "%s", message);
}
