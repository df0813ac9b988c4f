/* SPDX-License-Identifier: MIT */
/* Unit tests of durations, timestamps and expiries (common/timeutil.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "timeutil.h"

#define SEC(x) ((uint64_t)(x)*USEC_PER_SEC)

/* 2027-01-31T12:00:00Z, checked against `date -u -d 2027-01-31T12:00:00Z +%s`. */
#define T_2027_01_31_NOON SEC(1801396800)

static uint64_t dur(const char *s)
{
        uint64_t v = 0xdeadbeef;

        assert_int_equal(duration_parse(s, &v), 0);
        return v;
}

static int dur_err(const char *s)
{
        uint64_t v = 0xdeadbeef;
        int r = duration_parse(s, &v);

        assert_true(r < 0);
        /* A refusal leaves the output alone. */
        assert_true(v == 0xdeadbeef);
        return r;
}

static uint64_t ts(const char *s)
{
        uint64_t v = 0;
        int r = timestamp_parse(s, &v);

        if (r != 0)
                fail_msg("timestamp_parse(\"%s\") = %d", s, r);
        return v;
}

static int ts_err(const char *s)
{
        uint64_t v = 0xdeadbeef;
        int r = timestamp_parse(s, &v);

        if (r >= 0)
                fail_msg("timestamp_parse(\"%s\") accepted it", s);
        assert_true(v == 0xdeadbeef);
        return r;
}

static const char *fmt(uint64_t t)
{
        static char buf[TIMESTAMP_MAX];

        assert_int_equal(timestamp_format(t, buf), 0);
        return buf;
}

static const char *rel(uint64_t t, uint64_t now)
{
        static char buf[RELATIVE_FORMAT_MAX];

        assert_int_equal(relative_format(t, now, buf, sizeof(buf)), 0);
        return buf;
}

static const char *durfmt(uint64_t usec)
{
        static char buf[DURATION_FORMAT_MAX];

        assert_int_equal(duration_format(usec, buf, sizeof(buf)), 0);
        return buf;
}

/* A small deterministic generator, so failures reproduce. */
static uint64_t next_random(uint64_t *state)
{
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        return *state;
}

static void test_clocks(void **state)
{
        struct timespec a;
        uint64_t m1, m2, n;

        assert_int_equal(clock_gettime(CLOCK_REALTIME, &a), 0);
        n = now_usec();
        assert_true(n >= SEC(a.tv_sec));
        assert_true(n < SEC(a.tv_sec + 5));

        m1 = mono_usec();
        m2 = mono_usec();
        assert_true(m1 > 0);
        assert_true(m2 >= m1);
}

static void test_duration_valid(void **state)
{
        assert_true(dur("45s") == SEC(45));
        assert_true(dur("90m") == SEC(90 * 60));
        assert_true(dur("12h") == SEC(12 * 3600));
        assert_true(dur("30d") == SEC(30 * 86400));
        assert_true(dur("2w") == SEC(14 * 86400));
        assert_true(dur("1d12h") == SEC(36 * 3600));
        assert_true(dur("1h30m") == SEC(5400));
        assert_true(dur("1w2d3h4m5s") == SEC(9 * 86400 + 3 * 3600 + 4 * 60 + 5));
        assert_true(dur("0s") == 0);
        assert_true(dur("0d0s") == 0);
        assert_true(dur("007d") == SEC(7 * 86400));
        assert_true(dur("1s") == USEC_PER_SEC);
}

static void test_duration_refused(void **state)
{
        static const char *const bad[] = {
            "",           "0",
            "45",         "s",
            "d30",        "-1d",
            "+1d",        " 1d",
            "1d ",        "1 d",
            "1\td",       "1D",
            "1H",         "1x",
            "1y",         "1mo",
            "1ms",        "1us",
            "1.5h",       "1,5h",
            "0x10s",      "12h1d",
            "1h1h",       "1s1m",
            "1d1d12h",    "1d-1h",
            "1dd",        "1d12",
            "d",          "ss",
            "1s\n",       "１s",
            "\3771s",     "000000000000000000001s", /* 22 characters */
            "1d2h3m4s5d",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = dur_err(bad[i]);

                if (r != -EINVAL)
                        fail_msg("duration_parse(\"%s\") = %d, want -EINVAL", bad[i], r);
        }
        assert_int_equal(duration_parse(NULL, &(uint64_t){0}), -EINVAL);
        /* A number without a unit is refused even within the length limit. */
        assert_int_equal(dur_err("00000000000000000001"), -EINVAL);
}

static void test_duration_length_limit(void **state)
{
        char s[64];

        /* 19 digits and a unit: 20 characters, accepted. */
        memset(s, '0', 19);
        strcpy(s + 19, "s");
        assert_int_equal(strlen(s), DURATION_PARSE_MAX);
        assert_true(dur(s) == 0);
        /* One more is refused, whatever it says. */
        memset(s, '0', 20);
        strcpy(s + 20, "s");
        assert_int_equal(dur_err(s), -EINVAL);
}

static void test_duration_overflow(void **state)
{
        uint64_t max_weeks = UINT64_MAX / USEC_PER_WEEK;
        char s[32];

        /* The largest count of weeks that fits, and one more. */
        snprintf(s, sizeof(s), "%lluw", (unsigned long long)max_weeks);
        assert_true(dur(s) == max_weeks * USEC_PER_WEEK);
        snprintf(s, sizeof(s), "%lluw", (unsigned long long)max_weeks + 1);
        assert_int_equal(dur_err(s), -ERANGE);

        /* Each part fits; the sum fits up to here, and then no longer. */
        snprintf(s, sizeof(s), "%lluw6d8h", (unsigned long long)max_weeks);
        assert_true(dur(s) == max_weeks * USEC_PER_WEEK + 6 * USEC_PER_DAY + 8 * USEC_PER_HOUR);
        snprintf(s, sizeof(s), "%lluw6d9h", (unsigned long long)max_weeks);
        assert_int_equal(dur_err(s), -ERANGE);

        /* The digits alone overflow uint64_t. */
        assert_int_equal(dur_err("99999999999999999999"), -EINVAL); /* no unit */
        assert_int_equal(dur_err("9999999999999999999s"), -ERANGE);
        assert_int_equal(dur_err("1999999999999999999s"), -ERANGE);
        assert_true(dur("18446744073709s") == SEC(18446744073709));
        assert_int_equal(dur_err("18446744073710s"), -ERANGE);
        /* Syntax errors win over overflow, so garbage is always -EINVAL. */
        assert_int_equal(dur_err("99999999999999999wx"), -EINVAL);
}

static void test_timestamp_forms(void **state)
{
        const uint64_t noon = T_2027_01_31_NOON;

        assert_true(ts("2027-01-31T12:00:00Z") == noon);
        assert_true(ts("2027-01-31T12:00Z") == noon);
        assert_true(ts("2027-01-31t12:00:00z") == noon);
        assert_true(ts("2027-01-31 12:00:00Z") == noon);
        assert_true(ts("2027-01-31T12:00:00.5Z") == noon + 500000);
        assert_true(ts("2027-01-31T12:00:00,25Z") == noon + 250000);
        assert_true(ts("2027-01-31T12:00:00.123456Z") == noon + 123456);
        /* Beyond microseconds the fraction is truncated, not rounded. */
        assert_true(ts("2027-01-31T12:00:00.123456999Z") == noon + 123456);
        assert_true(ts("2027-01-31T12:00:00.000000001Z") == noon);
        assert_true(ts("2027-01-31T12:00:59Z") == noon + SEC(59));
}

static void test_timestamp_offsets(void **state)
{
        const uint64_t noon = T_2027_01_31_NOON;

        assert_true(ts("2027-01-31T14:00:00+02:00") == noon);
        assert_true(ts("2027-01-31T14:00:00+0200") == noon);
        assert_true(ts("2027-01-31T14:00:00+02") == noon);
        assert_true(ts("2027-01-31T07:00:00-0500") == noon);
        assert_true(ts("2027-01-31T07:00:00-05:00") == noon);
        assert_true(ts("2027-01-31T17:30:00+05:30") == noon);
        assert_true(ts("2027-01-31T12:00:00+00:00") == noon);
        assert_true(ts("2027-01-31T12:00:00-00:00") == noon);
        assert_true(ts("2027-01-31T14:00+02:00") == noon);
        assert_true(ts("2027-01-31T14:00:00.5+02:00") == noon + 500000);
        /* An offset may move the time across a day, month and year boundary. */
        assert_true(ts("2027-01-01T01:00:00+02:00") == ts("2026-12-31T23:00:00Z"));
        assert_true(ts("2026-12-31T22:00:00-03:00") == ts("2027-01-01T01:00:00Z"));
        assert_true(ts("2027-01-31T00:00:00+23:59") == ts("2027-01-30T00:01:00Z"));
}

static void test_timestamp_bare_date_is_end_of_day(void **state)
{
        /* A key that "expires 2027-01-31" still works all of that day (UTC). */
        assert_true(ts("2027-01-31") == ts("2027-02-01T00:00:00Z") - 1);
        assert_true(ts("2027-01-31") == ts("2027-01-31T23:59:59.999999Z"));
        assert_string_equal(fmt(ts("2027-01-31")), "2027-01-31T23:59:59Z");
        assert_true(ts("2027-12-31") == ts("2028-01-01T00:00:00Z") - 1);
        assert_true(ts("1970-01-01") == USEC_PER_DAY - 1);
        assert_true(ts("2028-02-29") == ts("2028-03-01T00:00:00Z") - 1);
}

static void test_timestamp_leap_years(void **state)
{
        assert_true(ts("2028-02-29T00:00:00Z") == ts("2028-02-28T00:00:00Z") + USEC_PER_DAY);
        assert_true(ts("2028-03-01T00:00:00Z") == ts("2028-02-29T00:00:00Z") + USEC_PER_DAY);
        assert_int_equal(ts_err("2027-02-29"), -EINVAL);
        assert_int_equal(ts_err("2027-02-29T00:00:00Z"), -EINVAL);
        /* Centuries are leap years only every 400 years. */
        assert_true(ts("2000-02-29") > 0);
        assert_int_equal(ts_err("2100-02-29"), -EINVAL);
        assert_true(ts("2400-02-29") > 0);
        assert_true(ts("2027-03-01T00:00:00Z") == ts("2027-02-28T00:00:00Z") + USEC_PER_DAY);
        assert_true(ts("2028-12-31T00:00:00Z") - ts("2028-01-01T00:00:00Z") == 365 * USEC_PER_DAY);
        assert_true(ts("2027-12-31T00:00:00Z") - ts("2027-01-01T00:00:00Z") == 364 * USEC_PER_DAY);
}

static void test_timestamp_days_per_month(void **state)
{
        static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        char s[32];

        for (int m = 1; m <= 12; m++) {
                snprintf(s, sizeof(s), "2027-%02d-%02d", m, days[m - 1]);
                assert_true(ts(s) > 0);
                snprintf(s, sizeof(s), "2027-%02d-%02d", m, days[m - 1] + 1);
                assert_int_equal(ts_err(s), -EINVAL);
                snprintf(s, sizeof(s), "2027-%02d-00", m);
                assert_int_equal(ts_err(s), -EINVAL);
        }
}

static void test_timestamp_refused(void **state)
{
        static const char *const bad[] = {
            "",
            "2027",
            "2027-01",
            "2027-1-31",
            "2027-01-1",
            "27-01-31",
            "02027-01-31",
            "2027/01/31",
            "2027-00-31",
            "2027-13-01",
            "2027-01-32",
            "2027-01-31T",
            "2027-01-31T12",
            "2027-01-31T12:00",    /* a time without a zone */
            "2027-01-31T12:00:00", /* likewise */
            "2027-01-31T12:00:00 Z",
            "2027-01-31T24:00:00Z",
            "2027-01-31T12:60:00Z",
            "2027-01-31T12:00:61Z",
            "2027-01-31T1:00:00Z",
            "2027-01-31T12:0:00Z",
            "2027-01-31T12:00:0Z",
            "2027-01-31T12:00:00.Z",
            "2027-01-31T12:00:00.1234567890Z",
            "2027-01-31T12:00.5Z",
            "2027-01-31T12:00:00+2:00",
            "2027-01-31T12:00:00+02:0",
            "2027-01-31T12:00:00+020",
            "2027-01-31T12:00:00+24:00",
            "2027-01-31T12:00:00+02:60",
            "2027-01-31T12:00:00+02:00Z",
            "2027-01-31T12:00:00Z ",
            " 2027-01-31",
            "2027-01-31 ",
            "2027-01-31Z",
            "2027-01-31X12:00:00Z",
            "2027-01-31T12:00:00UTC",
            "2027-01-31T12:00:00GMT",
            "+2027-01-31",
            "-2027-01-31",
            "2027-01-31T12:00:00\nZ",
            "30d",
            "never",
            "２０２７-01-31",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = ts_err(bad[i]);

                if (r != -EINVAL)
                        fail_msg("timestamp_parse(\"%s\") = %d, want -EINVAL", bad[i], r);
        }
        assert_int_equal(timestamp_parse(NULL, &(uint64_t){0}), -EINVAL);
}

static void test_timestamp_range(void **state)
{
        char s[128];

        /* Before the epoch, or at it ("not set"), is out of range. */
        assert_int_equal(ts_err("1969-12-31"), -ERANGE);
        assert_int_equal(ts_err("1969-12-31T23:59:59Z"), -ERANGE);
        assert_int_equal(ts_err("0000-01-01T00:00:00Z"), -ERANGE);
        assert_int_equal(ts_err("1970-01-01T00:00:00Z"), -ERANGE);
        assert_int_equal(ts_err("1970-01-01T01:00:00+02:00"), -ERANGE);
        assert_true(ts("1970-01-01T00:00:00.000001Z") == 1);
        assert_true(ts("1970-01-01T00:00:01Z") == USEC_PER_SEC);
        assert_true(ts("1970-01-01T01:00:01+01:00") == USEC_PER_SEC);
        /* The last representable year, even pushed past it by an offset. */
        assert_true(ts("9999-12-31T23:59:59Z") == SEC(INT64_C(253402300799)));
        assert_true(ts("9999-12-31T23:59:59-23:59") > ts("9999-12-31T23:59:59Z"));
        assert_true(ts("9999-12-31") == SEC(INT64_C(253402300800)) - 1);

        /* Anything longer than the limit is refused without being read. */
        memset(s, '0', sizeof(s) - 1);
        s[sizeof(s) - 1] = '\0';
        memcpy(s, "2027-01-31T12:00:00.", 20);
        strcpy(s + TIMESTAMP_PARSE_MAX, "Z");
        assert_int_equal(ts_err(s), -EINVAL);
}

static void test_timestamp_leap_second(void **state)
{
        /* POSIX time has no leap seconds: :60 is the next minute's :00. */
        assert_true(ts("2016-12-31T23:59:60Z") == ts("2017-01-01T00:00:00Z"));
}

static void test_timestamp_format(void **state)
{
        char buf[TIMESTAMP_MAX];

        assert_string_equal(fmt(T_2027_01_31_NOON), "2027-01-31T12:00:00Z");
        assert_string_equal(fmt(T_2027_01_31_NOON + 999999), "2027-01-31T12:00:00Z");
        assert_string_equal(fmt(1), "1970-01-01T00:00:00Z");
        assert_string_equal(fmt(SEC(1)), "1970-01-01T00:00:01Z");
        assert_string_equal(fmt(SEC(951782400)), "2000-02-29T00:00:00Z");
        assert_string_equal(fmt(SEC(1835481599)), "2028-02-29T23:59:59Z");
        assert_string_equal(fmt(SEC(INT64_C(253402300799))), "9999-12-31T23:59:59Z");
        assert_int_equal(timestamp_format(SEC(INT64_C(253402300800)), buf), -ERANGE);
        assert_int_equal(timestamp_format(UINT64_MAX, buf), -ERANGE);
        assert_int_equal(timestamp_format(0, buf), -EINVAL);
}

/* glibc's gmtime_r() as an independent oracle for the calendar arithmetic. */
static void check_against_gmtime(uint64_t t)
{
        char want[64];
        time_t secs = (time_t)(t / USEC_PER_SEC);
        struct tm tm;

        assert_non_null(gmtime_r(&secs, &tm));
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        assert_string_equal(fmt(t), want);
        assert_true(ts(want) == t - t % USEC_PER_SEC);
}

static void test_round_trip(void **state)
{
        const uint64_t last = SEC(INT64_C(253402300799)) + 999999;
        uint64_t rng = 0x9E3779B97F4A7C15u;

        /* Every day boundary of four leap cycles, and its neighbours. */
        for (uint64_t day = 0; day < 4 * 366 + 60; day++)
                for (int delta = -1; delta <= 1; delta++) {
                        uint64_t t = SEC(day * 86400 + 86400 * 365 * 27) + (uint64_t)delta;

                        check_against_gmtime(t);
                }
        /* The edges. */
        check_against_gmtime(USEC_PER_SEC);
        check_against_gmtime(last);
        check_against_gmtime(SEC(INT64_C(4102444800))); /* 2100-01-01 */
        check_against_gmtime(SEC(INT64_C(4107542400))); /* 2100-03-01 */
        /* And many values anywhere in the range. */
        for (int i = 0; i < 200000; i++) {
                uint64_t t = next_random(&rng) % last + USEC_PER_SEC;

                if (t > last)
                        t = last;
                check_against_gmtime(t);
        }
}

static void test_expiry(void **state)
{
        const uint64_t now = T_2027_01_31_NOON + 123;
        uint64_t v = 42;

        assert_int_equal(expiry_parse("never", now, &v), 0);
        assert_true(v == 0);
        v = 42;
        assert_int_equal(expiry_parse("none", now, &v), 0);
        assert_true(v == 0);
        v = 42;
        assert_int_equal(expiry_parse("Never", now, &v), 0);
        assert_true(v == 0);
        v = 42;
        assert_int_equal(expiry_parse("NONE", now, &v), 0);
        assert_true(v == 0);

        assert_int_equal(expiry_parse("30d", now, &v), 0);
        assert_true(v == now + 30 * USEC_PER_DAY);
        assert_int_equal(expiry_parse("1d12h", now, &v), 0);
        assert_true(v == now + 36 * USEC_PER_HOUR);
        assert_int_equal(expiry_parse("45s", now, &v), 0);
        assert_true(v == now + SEC(45));

        assert_int_equal(expiry_parse("2027-02-01T00:00:00Z", now, &v), 0);
        assert_true(v == ts("2027-02-01T00:00:00Z"));
        /* Today's date is still in the future: it means the end of today. */
        assert_int_equal(expiry_parse("2027-01-31", now, &v), 0);
        assert_true(v == ts("2027-01-31T23:59:59.999999Z"));

        v = 42;
        assert_int_equal(expiry_parse("2027-01-30", now, &v), -ERANGE);
        assert_int_equal(expiry_parse("2027-01-31T12:00:00Z", now, &v), -ERANGE);
        assert_int_equal(expiry_parse("2027-01-31T11:59:59Z", now, &v), -ERANGE);
        assert_int_equal(expiry_parse("1969-01-01", now, &v), -ERANGE);
        assert_int_equal(expiry_parse("0s", now, &v), -ERANGE);
        assert_int_equal(expiry_parse("0d0h", now, &v), -ERANGE);
        assert_int_equal(expiry_parse("99999999999999999w", now, &v), -ERANGE);
        assert_int_equal(expiry_parse("18446744073709s", now, &v), -ERANGE);
        assert_true(v == 42);

        assert_int_equal(expiry_parse("", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("0", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("30", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("30 days", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("tomorrow", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("never ", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("nevermore", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("2027-02-30", now, &v), -EINVAL);
        assert_int_equal(expiry_parse("2027-02-01T00:00:00", now, &v), -EINVAL);
        assert_int_equal(expiry_parse(NULL, now, &v), -EINVAL);
        assert_true(v == 42);
}

static void test_relative_wording(void **state)
{
        const uint64_t now = T_2027_01_31_NOON;

        assert_string_equal(rel(0, now), "never");
        assert_string_equal(rel(now, now), "just now");
        assert_string_equal(rel(now + 499999, now), "just now");
        assert_string_equal(rel(now - 499999, now), "just now");
        assert_string_equal(rel(now + 500000, now), "in 1 second");
        assert_string_equal(rel(now - SEC(1), now), "1 second ago");
        assert_string_equal(rel(now - SEC(2), now), "2 seconds ago");
        assert_string_equal(rel(now + SEC(59), now), "in 59 seconds");
        assert_string_equal(rel(now + SEC(59) + 500000, now), "in 1 minute");
        assert_string_equal(rel(now - SEC(60), now), "1 minute ago");
        assert_string_equal(rel(now - SEC(3 * 60), now), "3 minutes ago");
        assert_string_equal(rel(now - SEC(3 * 60 + 29), now), "3 minutes ago");
        assert_string_equal(rel(now - SEC(3 * 60 + 30), now), "4 minutes ago");
        assert_string_equal(rel(now + SEC(59 * 60 + 29), now), "in 59 minutes");
        assert_string_equal(rel(now + SEC(59 * 60 + 30), now), "in 1 hour");
        assert_string_equal(rel(now + SEC(5 * 3600), now), "in 5 hours");
        assert_string_equal(rel(now - SEC(3600), now), "1 hour ago");
        assert_string_equal(rel(now + SEC(23 * 3600 + 29 * 60), now), "in 23 hours");
        assert_string_equal(rel(now + SEC(23 * 3600 + 30 * 60), now), "in 1 day");
        assert_string_equal(rel(now - SEC(86400), now), "1 day ago");
        assert_string_equal(rel(now + SEC(29 * 86400), now), "in 29 days");
        /* A 30-day key, looked at a moment after it was made. */
        assert_string_equal(rel(now + 30 * USEC_PER_DAY - SEC(2), now), "in 30 days");
        assert_string_equal(rel(now + SEC(364 * 86400), now), "in 364 days");
        assert_string_equal(rel(now + SEC(364 * 86400 + 12 * 3600), now), "in 1 year");
        assert_string_equal(rel(now + SEC(365 * 86400), now), "in 1 year");
        assert_string_equal(rel(now - SEC(2 * 365 * 86400), now), "2 years ago");
        assert_string_equal(rel(now + SEC(10 * 31556952), now), "in 10 years");
        assert_string_equal(rel(1, now), "57 years ago");
        assert_string_equal(rel(UINT64_MAX, 1), "in 584554 years");
        assert_string_equal(rel(1, UINT64_MAX), "584554 years ago");
}

static void test_relative_buffer(void **state)
{
        char buf[RELATIVE_FORMAT_MAX];

        assert_int_equal(relative_format(SEC(100), SEC(40), buf, sizeof("in 1 minute")), 0);
        assert_string_equal(buf, "in 1 minute");
        assert_int_equal(relative_format(SEC(100), SEC(40), buf, sizeof("in 1 minute") - 1),
                         -ENOBUFS);
        assert_int_equal(relative_format(SEC(100), SEC(100), buf, 0), -ENOBUFS);
        assert_int_equal(relative_format(0, SEC(100), buf, 5), -ENOBUFS);
        assert_int_equal(relative_format(0, SEC(100), buf, 6), 0);
}

static void test_duration_format(void **state)
{
        char buf[DURATION_FORMAT_MAX];

        assert_string_equal(durfmt(0), "0s");
        assert_string_equal(durfmt(SEC(1)), "1s");
        assert_string_equal(durfmt(SEC(45)), "45s");
        assert_string_equal(durfmt(SEC(90 * 60)), "1h 30m");
        assert_string_equal(durfmt(36 * USEC_PER_HOUR), "1d 12h");
        assert_string_equal(durfmt(90 * USEC_PER_DAY), "90d");
        assert_string_equal(durfmt(2 * USEC_PER_WEEK), "14d");
        assert_string_equal(durfmt(SEC(86400 + 1)), "1d 1s");
        assert_string_equal(durfmt(SEC(3600 + 60 + 1)), "1h 1m 1s");
        assert_string_equal(durfmt(1500), "1ms 500us");
        assert_string_equal(durfmt(1), "1us");
        assert_string_equal(durfmt(SEC(1) + 250000), "1s 250ms");
        assert_string_equal(durfmt(UINT64_MAX), "213503982d 8h 1m 49s 551ms 615us");

        /* Every duration the parser reads comes back in the same units. */
        assert_true(dur("1d12h") == 36 * USEC_PER_HOUR);
        assert_string_equal(durfmt(dur("1w2d3h4m5s")), "9d 3h 4m 5s");

        assert_int_equal(duration_format(SEC(90 * 60), buf, sizeof("1h 30m")), 0);
        assert_int_equal(duration_format(SEC(90 * 60), buf, sizeof("1h 30m") - 1), -ENOBUFS);
        assert_int_equal(duration_format(0, buf, 2), -ENOBUFS);
        assert_int_equal(duration_format(0, buf, 0), -ENOBUFS);
        assert_int_equal(duration_format(SEC(1), buf, 0), -ENOBUFS);
}

static void test_parse_never_crashes(void **state)
{
        /* Every string of up to three bytes from an alphabet of the
         * characters the parsers care about, and random longer ones. */
        static const char alphabet[] = "0129smhdwTZz:+-.,- \t\nx\xff";
        const size_t n = sizeof(alphabet) - 1;
        uint64_t rng = 12345;
        char s[80];
        uint64_t v;

        for (size_t a = 0; a < n; a++)
                for (size_t b = 0; b <= n; b++)
                        for (size_t c = 0; c <= n; c++) {
                                s[0] = alphabet[a];
                                s[1] = b < n ? alphabet[b] : '\0';
                                s[2] = c < n ? alphabet[c] : '\0';
                                s[3] = '\0';
                                assert_true(duration_parse(s, &v) <= 0);
                                assert_true(timestamp_parse(s, &v) <= 0);
                                assert_true(expiry_parse(s, 1, &v) <= 0);
                        }
        for (int i = 0; i < 100000; i++) {
                size_t len = next_random(&rng) % (sizeof(s) - 1);
                int r;

                /* Start from a valid timestamp and damage it, to get deep. */
                snprintf(s, sizeof(s), "2027-01-31T12:00:00.5+02:00");
                for (size_t k = 0; k < len; k++)
                        s[k] = (next_random(&rng) & 3) ? s[k] ? s[k] : '0'
                                                       : alphabet[next_random(&rng) % n];
                s[len] = '\0';
                r = timestamp_parse(s, &v);
                assert_true(r == 0 || r == -EINVAL || r == -ERANGE);
                r = duration_parse(s, &v);
                assert_true(r == 0 || r == -EINVAL || r == -ERANGE);
                r = expiry_parse(s, 1, &v);
                assert_true(r == 0 || r == -EINVAL || r == -ERANGE);
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_clocks),
            cmocka_unit_test(test_duration_valid),
            cmocka_unit_test(test_duration_refused),
            cmocka_unit_test(test_duration_length_limit),
            cmocka_unit_test(test_duration_overflow),
            cmocka_unit_test(test_timestamp_forms),
            cmocka_unit_test(test_timestamp_offsets),
            cmocka_unit_test(test_timestamp_bare_date_is_end_of_day),
            cmocka_unit_test(test_timestamp_leap_years),
            cmocka_unit_test(test_timestamp_days_per_month),
            cmocka_unit_test(test_timestamp_refused),
            cmocka_unit_test(test_timestamp_range),
            cmocka_unit_test(test_timestamp_leap_second),
            cmocka_unit_test(test_timestamp_format),
            cmocka_unit_test(test_round_trip),
            cmocka_unit_test(test_expiry),
            cmocka_unit_test(test_relative_wording),
            cmocka_unit_test(test_relative_buffer),
            cmocka_unit_test(test_duration_format),
            cmocka_unit_test(test_parse_never_crashes),
        };
        return cmocka_run_group_tests_name("timeutil", tests, NULL, NULL);
}
