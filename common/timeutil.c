/* SPDX-License-Identifier: MIT */
/* Durations, timestamps and expiries; the formats are described in timeutil.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "timeutil.h"

/* 9999-12-31T23:59:59Z, the last second timestamp_format() can write. */
#define LAST_FORMATTABLE_SEC INT64_C(253402300799)

static uint64_t clock_usec(clockid_t id)
{
        struct timespec ts;

        /* Cannot fail for these clocks on Linux; 0 ("not set") if it ever did. */
        if (clock_gettime(id, &ts) < 0)
                return 0;
        return (uint64_t)ts.tv_sec * USEC_PER_SEC + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t now_usec(void)
{
        return clock_usec(CLOCK_REALTIME);
}

uint64_t mono_usec(void)
{
        return clock_usec(CLOCK_MONOTONIC);
}

/* isdigit() and friends consult the locale; these never do. */
static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static char ascii_lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool ascii_equal_nocase(const char *a, const char *b)
{
        for (; *a && *b; a++, b++)
                if (ascii_lower(*a) != ascii_lower(*b))
                        return false;
        return *a == *b;
}

int duration_parse(const char *s, uint64_t *ret_usec)
{
        /* Indexed by rank: parts must come in strictly decreasing rank. */
        static const struct {
                char unit;
                uint64_t usec;
        } units[] = {
            {'s', USEC_PER_SEC}, {'m', USEC_PER_MIN},  {'h', USEC_PER_HOUR},
            {'d', USEC_PER_DAY}, {'w', USEC_PER_WEEK},
        };
        size_t len, last_rank = ELEMENTSOF(units);
        uint64_t total = 0;
        bool overflow = false;

        if (!s)
                return -EINVAL;
        len = strnlen(s, DURATION_PARSE_MAX + 1);
        if (len == 0 || len > DURATION_PARSE_MAX)
                return -EINVAL;

        /* The whole string is checked before an overflow is reported, so
         * that garbage is always -EINVAL whatever its digits. */
        while (*s) {
                uint64_t n = 0, part;
                size_t rank;

                if (!is_digit(*s))
                        return -EINVAL;
                for (; is_digit(*s); s++)
                        if (__builtin_mul_overflow(n, 10, &n) ||
                            __builtin_add_overflow(n, (uint64_t)(*s - '0'), &n))
                                overflow = true;

                for (rank = 0; rank < ELEMENTSOF(units); rank++)
                        if (units[rank].unit == *s)
                                break;
                if (rank == ELEMENTSOF(units) || rank >= last_rank)
                        return -EINVAL;
                last_rank = rank;
                s++;

                if (__builtin_mul_overflow(n, units[rank].usec, &part) ||
                    __builtin_add_overflow(total, part, &total))
                        overflow = true;
        }

        if (overflow)
                return -ERANGE;
        *ret_usec = total;
        return 0;
}

static bool is_leap_year(int64_t y)
{
        return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
        static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

        return m == 2 && is_leap_year(y) ? 29 : days[m - 1];
}

/*
 * Days from 1970-01-01 to a date of the proleptic Gregorian calendar, for
 * y >= 0.  The year is counted from March, so that the leap day falls at
 * its end and every month's offset within the year is a fixed formula; a
 * 400-year era has exactly 146097 days.  This replaces timegm(), which
 * depends on the time zone machinery and is not thread-safe everywhere.
 */
static int64_t days_from_civil(int64_t y, int m, int d)
{
        int64_t era, year_of_era, day_of_year, day_of_era;
        int month_from_march = m > 2 ? m - 3 : m + 9;

        if (m <= 2)
                y--;
        era = y / 400;
        year_of_era = y - era * 400;
        /* (153 * n + 2) / 5 is the day a month starts on, counting March as
         * month 0: it reproduces the pattern 31 30 31 30 31 31 30 31 30 31 31. */
        day_of_year = (153 * month_from_march + 2) / 5 + d - 1;
        day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
        /* 719468 days lie between 0000-03-01 and 1970-01-01. */
        return era * 146097 + day_of_era - 719468;
}

/* The inverse of days_from_civil(), for days >= 0. */
static void civil_from_days(int64_t days, int64_t *ret_y, int *ret_m, int *ret_d)
{
        int64_t z = days + 719468;
        int64_t era = z / 146097;
        int64_t day_of_era = z - era * 146097;
        /* Undo the leap days: one per 4 years (1460 days), none per 100
         * years (36524), one per 400 (146096, the era's last day). */
        int64_t year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
        int64_t day_of_year =
            day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        int64_t month_from_march = (5 * day_of_year + 2) / 153;
        int m = (int)(month_from_march < 10 ? month_from_march + 3 : month_from_march - 9);

        *ret_d = (int)(day_of_year - (153 * month_from_march + 2) / 5 + 1);
        *ret_m = m;
        *ret_y = year_of_era + era * 400 + (m <= 2);
}

/* Read exactly `n` digits at *p, advancing it; false if they are not all digits. */
static bool read_digits(const char **p, int n, int *ret)
{
        int v = 0;

        for (int i = 0; i < n; i++) {
                if (!is_digit((*p)[i]))
                        return false;
                v = v * 10 + ((*p)[i] - '0');
        }
        *p += n;
        *ret = v;
        return true;
}

static int parse_zone(const char *p, int64_t *ret_offset_sec)
{
        int sign, hh, mm = 0;

        if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
                *ret_offset_sec = 0;
                return 0;
        }
        if (*p != '+' && *p != '-')
                return -EINVAL;
        sign = *p == '-' ? -1 : 1;
        p++;
        if (!read_digits(&p, 2, &hh))
                return -EINVAL;
        if (*p != '\0') {
                if (*p == ':')
                        p++;
                if (!read_digits(&p, 2, &mm) || *p != '\0')
                        return -EINVAL;
        }
        if (hh > 23 || mm > 59)
                return -EINVAL;
        *ret_offset_sec = sign * (hh * INT64_C(3600) + mm * INT64_C(60));
        return 0;
}

int timestamp_parse(const char *s, uint64_t *ret_usec)
{
        const char *p = s;
        int year, month, day, hour, minute, second = 0;
        uint64_t frac_usec = 0;
        int64_t offset_sec, days, secs;
        size_t len;
        int r;

        if (!s)
                return -EINVAL;
        len = strnlen(s, TIMESTAMP_PARSE_MAX + 1);
        if (len == 0 || len > TIMESTAMP_PARSE_MAX)
                return -EINVAL;

        if (!read_digits(&p, 4, &year) || *p++ != '-' || !read_digits(&p, 2, &month) ||
            *p++ != '-' || !read_digits(&p, 2, &day))
                return -EINVAL;
        if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month))
                return -EINVAL;

        if (*p == '\0') {
                if (year < 1970)
                        return -ERANGE;
                days = days_from_civil(year, month, day);
                *ret_usec = ((uint64_t)days + 1) * USEC_PER_DAY - 1;
                return 0;
        }

        if (*p != 'T' && *p != 't' && *p != ' ')
                return -EINVAL;
        p++;
        if (!read_digits(&p, 2, &hour) || *p++ != ':' || !read_digits(&p, 2, &minute))
                return -EINVAL;
        if (*p == ':') {
                p++;
                if (!read_digits(&p, 2, &second))
                        return -EINVAL;
                if (*p == '.' || *p == ',') {
                        int n = 0;
                        uint64_t scale = 100000;

                        for (p++; is_digit(*p); p++, n++) {
                                frac_usec += (uint64_t)(*p - '0') * scale;
                                scale /= 10;
                        }
                        if (n < 1 || n > 9)
                                return -EINVAL;
                }
        }
        if (hour > 23 || minute > 59 || second > 60)
                return -EINVAL;

        r = parse_zone(p, &offset_sec);
        if (r < 0)
                return r;

        if (year < 1970)
                return -ERANGE;
        days = days_from_civil(year, month, day);
        secs = days * 86400 + hour * 3600 + minute * 60 + second - offset_sec;
        /* 1970-01-01T00:00:00Z itself is 0, which reads as "not set". */
        if (secs < 0 || (secs == 0 && frac_usec == 0))
                return -ERANGE;

        *ret_usec = (uint64_t)secs * USEC_PER_SEC + frac_usec;
        return 0;
}

int expiry_parse(const char *s, uint64_t now, uint64_t *ret_usec)
{
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        if (ascii_equal_nocase(s, "never") || ascii_equal_nocase(s, "none")) {
                *ret_usec = 0;
                return 0;
        }

        r = duration_parse(s, &v);
        if (r == 0) {
                if (v == 0)
                        return -ERANGE;
                if (__builtin_add_overflow(now, v, &v))
                        return -ERANGE;
                *ret_usec = v;
                return 0;
        }
        if (r != -EINVAL)
                return r;

        r = timestamp_parse(s, &v);
        if (r < 0)
                return r;
        if (v <= now)
                return -ERANGE;
        *ret_usec = v;
        return 0;
}

int not_before_parse(const char *s, uint64_t now, uint64_t *ret_usec)
{
        uint64_t v;
        int r;

        if (!s)
                return -EINVAL;
        if (ascii_equal_nocase(s, "now")) {
                *ret_usec = 0;
                return 0;
        }
        if (ascii_equal_nocase(s, "never") || ascii_equal_nocase(s, "none"))
                return -EINVAL; /* as an expiry these mean "no end"; here nothing */
        r = expiry_parse(s, now, &v);
        if (r < 0)
                return r;
        /* A bare date is the end of its day as an expiry: here its start. */
        if (strlen(s) == 10 && duration_parse(s, &(uint64_t){0}) < 0)
                v -= USEC_PER_DAY - 1;
        /* Up to the whole second, as times are shown: never earlier than asked. */
        if (v % USEC_PER_SEC && __builtin_add_overflow(v - v % USEC_PER_SEC, USEC_PER_SEC, &v))
                return -ERANGE;
        if (v <= now)
                return -ERANGE;
        *ret_usec = v;
        return 0;
}

static void put_digits(char *p, unsigned v, int n)
{
        for (int i = n - 1; i >= 0; i--) {
                p[i] = (char)('0' + v % 10);
                v /= 10;
        }
}

int timestamp_format(uint64_t usec, char ret[static TIMESTAMP_MAX])
{
        int64_t secs, days, rem, year;
        int month, day;

        if (usec == 0)
                return -EINVAL;
        secs = (int64_t)(usec / USEC_PER_SEC);
        if (secs > LAST_FORMATTABLE_SEC)
                return -ERANGE;

        days = secs / 86400;
        rem = secs % 86400;
        civil_from_days(days, &year, &month, &day);

        /* Written by hand rather than with strftime(): no locale, no tm. */
        memcpy(ret, "0000-00-00T00:00:00Z", TIMESTAMP_MAX);
        put_digits(ret, (unsigned)year, 4);
        put_digits(ret + 5, (unsigned)month, 2);
        put_digits(ret + 8, (unsigned)day, 2);
        put_digits(ret + 11, (unsigned)(rem / 3600), 2);
        put_digits(ret + 14, (unsigned)(rem / 60 % 60), 2);
        put_digits(ret + 17, (unsigned)(rem % 60), 2);
        return 0;
}

int relative_format(uint64_t t, uint64_t now, char *ret, size_t size)
{
        static const struct {
                const char *name;
                uint64_t usec;
                uint64_t limit; /* counts from here on are said in the next unit */
        } units[] = {
            {"second", USEC_PER_SEC, 60},
            {"minute", USEC_PER_MIN, 60},
            {"hour", USEC_PER_HOUR, 24},
            {"day", USEC_PER_DAY, 365},
            {"year", UINT64_C(31556952) * USEC_PER_SEC, UINT64_MAX},
        };
        bool future = t > now;
        uint64_t diff = future ? t - now : now - t;
        const char *text = NULL;
        int n = -1;

        if (t == 0)
                text = "never";
        else if (diff < USEC_PER_SEC / 2)
                text = "just now";

        if (text)
                n = snprintf(ret, size, "%s", text);
        else
                for (size_t i = 0; i < ELEMENTSOF(units); i++) {
                        /* Rounded half up, without overflowing near UINT64_MAX. */
                        uint64_t count = diff / units[i].usec + (diff % units[i].usec >=
                                                                 units[i].usec - units[i].usec / 2);

                        if (count >= units[i].limit)
                                continue;
                        n = snprintf(ret, size, "%s%" PRIu64 " %s%s%s", future ? "in " : "", count,
                                     units[i].name, count == 1 ? "" : "s", future ? "" : " ago");
                        break;
                }

        if (n < 0 || (size_t)n >= size)
                return -ENOBUFS;
        return 0;
}

int duration_format(uint64_t usec, char *ret, size_t size)
{
        static const struct {
                const char *suffix;
                uint64_t usec;
        } units[] = {
            {"d", USEC_PER_DAY}, {"h", USEC_PER_HOUR}, {"m", USEC_PER_MIN},
            {"s", USEC_PER_SEC}, {"ms", 1000},         {"us", 1},
        };
        size_t used = 0;

        if (size == 0)
                return -ENOBUFS;
        if (usec == 0) {
                if (size < 3)
                        return -ENOBUFS;
                memcpy(ret, "0s", 3);
                return 0;
        }

        for (size_t i = 0; i < ELEMENTSOF(units) && usec > 0; i++) {
                uint64_t count = usec / units[i].usec;
                int n;

                if (count == 0)
                        continue;
                usec %= units[i].usec;
                n = snprintf(ret + used, size - used, "%s%" PRIu64 "%s", used > 0 ? " " : "", count,
                             units[i].suffix);
                if (n < 0 || (size_t)n >= size - used)
                        return -ENOBUFS;
                used += (size_t)n;
        }
        return 0;
}
