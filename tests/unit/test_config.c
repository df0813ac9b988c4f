/* SPDX-License-Identifier: MIT */
/* Unit tests of the daemon's config file (apikeyd/base/config.c) and its example. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "timeutil.h"

#define NAME "/etc/apikeyd/apikeyd.conf"

#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

static void assert_defaults(const struct apikeyd_config *c)
{
        assert_string_equal(c->admin_group, "apikey-admin");
        assert_string_equal(c->token_prefix, "apk");
        assert_true(c->users_may_create);
        assert_int_equal(c->user_max_keys, 10);
        assert_true(c->user_max_lifetime_usec == 90 * USEC_PER_DAY);
        assert_true(c->user_default_lifetime_usec == 30 * USEC_PER_DAY);
        assert_int_equal(c->max_message_size, 65536);
        assert_int_equal(c->max_connections, 256);
        assert_int_equal(c->max_connections_per_uid, 64);
        assert_int_equal(config_reserved_connections(c), 32);
        assert_true(c->client_timeout_usec == 10 * USEC_PER_SEC);
        assert_true(c->last_used_flush_interval_usec == 5 * USEC_PER_SEC);
        assert_true(c->audit_max_events == 100000);
        assert_int_equal(c->lockout_threshold, 10);
        assert_true(c->lockout_window_usec == 15 * USEC_PER_MIN);
        assert_true(c->map_size == 4 * GIB);
        assert_null(c->fleet_endpoints);
        assert_string_equal(c->fleet_prefix, "/apikeyd/v1");
        assert_null(c->fleet_host);
        assert_false(c->fleet_manage);
        assert_true(c->fleet_offline_max_age_usec == 72 * USEC_PER_HOUR);
        assert_true(c->fleet_last_used_interval_usec == 60 * USEC_PER_SEC);
        assert_null(c->fleet_break_glass_keys);
        assert_true(c->rotation_grace_usec == 24 * USEC_PER_HOUR);
        assert_null(c->fleet_user);
        assert_null(c->fleet_password_file);
        assert_null(c->fleet_cacert);
        assert_null(c->fleet_cert);
        assert_null(c->fleet_key);
        assert_true(c->end_sessions);
}

static void init(struct apikeyd_config *c)
{
        assert_int_equal(config_init_defaults(c), 0);
}

/* Parse `text` onto defaults; 0 or the error, whose message must be `want_error`. */
static void parse_ok(struct apikeyd_config *c, const char *text)
{
        char *error = (char *)"untouched";
        int r;

        init(c);
        r = config_parse_string(c, text, NAME, &error);
        if (r != 0)
                fail_msg("config_parse_string(\"%s\") = %d: %s", text, r, error ? error : "");
        assert_null(error);
}

static void parse_fails(const char *text, const char *want_error)
{
        struct apikeyd_config c;
        char *error = NULL;
        int r;

        init(&c);
        r = config_parse_string(&c, text, NAME, &error);
        if (r != -EINVAL)
                fail_msg("config_parse_string(\"%s\") = %d, want -EINVAL", text, r);
        assert_non_null(error);
        assert_string_equal(error, want_error);
        /* Nothing of a refused text is applied. */
        assert_defaults(&c);
        free(error);
        config_done(&c);
}

static char *path_in_tree(const char *rel)
{
        char exe[PATH_MAX], *slash, *p;
        ssize_t n;

        if (access(rel, R_OK) == 0)
                return strdup(rel);
        /* Run from elsewhere: the binary lives in <tree>/<build>/tests/. */
        n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        assert_true(n > 0);
        exe[n] = '\0';
        for (int i = 0; i < 3; i++) {
                slash = strrchr(exe, '/');
                assert_non_null(slash);
                *slash = '\0';
        }
        assert_true(asprintf(&p, "%s/%s", exe, rel) > 0);
        if (access(p, R_OK) != 0)
                fail_msg("cannot find %s (run the tests from the top of the tree)", rel);
        return p;
}

static char *read_whole(const char *path)
{
        FILE *f = fopen(path, "re");
        char *buf;
        long n;

        assert_non_null(f);
        assert_int_equal(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        assert_true(n >= 0);
        rewind(f);
        buf = malloc((size_t)n + 1);
        assert_non_null(buf);
        assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
        buf[n] = '\0';
        fclose(f);
        return buf;
}

static char *write_temp(const void *data, size_t len)
{
        const char *dir = getenv("TMPDIR");
        char *path;
        int fd;

        assert_true(asprintf(&path, "%s/test_config.XXXXXX", dir && *dir ? dir : "/tmp") > 0);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t)len);
        close(fd);
        return path;
}

static void test_defaults(void **state)
{
        struct apikeyd_config c;

        init(&c);
        assert_defaults(&c);
        config_done(&c);
        config_done(&c); /* twice is harmless */

        parse_ok(&c, "");
        assert_defaults(&c);
        config_done(&c);
        parse_ok(&c, "\n\n# only comments\n   # indented\n\t\n");
        assert_defaults(&c);
        config_done(&c);
}

static void test_each_option(void **state)
{
        struct apikeyd_config c;

        parse_ok(&c, "admin_group = wheel");
        assert_string_equal(c.admin_group, "wheel");
        config_done(&c);
        parse_ok(&c, "admin_group = domain admins@ad.example.com");
        assert_string_equal(c.admin_group, "domain admins@ad.example.com");
        config_done(&c);

        parse_ok(&c, "token_prefix = corp");
        assert_string_equal(c.token_prefix, "corp");
        config_done(&c);
        parse_ok(&c, "token_prefix = abcdefgh");
        assert_string_equal(c.token_prefix, "abcdefgh");
        config_done(&c);

        static const struct {
                const char *text;
                bool v;
        } bools[] = {
            {"yes", true}, {"no", false}, {"true", true}, {"false", false}, {"1", true},
            {"0", false},  {"on", true},  {"off", false}, {"YES", true},    {"False", false},
        };
        for (size_t i = 0; i < ELEMENTSOF(bools); i++) {
                char text[64];

                snprintf(text, sizeof(text), "users_may_create = %s", bools[i].text);
                parse_ok(&c, text);
                assert_int_equal(c.users_may_create, bools[i].v);
                config_done(&c);
        }

        parse_ok(&c, "user_max_keys = 0");
        assert_int_equal(c.user_max_keys, 0);
        config_done(&c);
        parse_ok(&c, "user_max_keys = 1000000");
        assert_int_equal(c.user_max_keys, 1000000);
        config_done(&c);

        parse_ok(&c, "user_max_lifetime = 1w");
        assert_true(c.user_max_lifetime_usec == 7 * USEC_PER_DAY);
        /* The default lifetime follows a shorter maximum down. */
        assert_true(c.user_default_lifetime_usec == 7 * USEC_PER_DAY);
        config_done(&c);
        parse_ok(&c, "user_max_lifetime = unlimited");
        assert_true(c.user_max_lifetime_usec == 0);
        assert_true(c.user_default_lifetime_usec == 30 * USEC_PER_DAY);
        config_done(&c);
        parse_ok(&c, "user_max_lifetime = Unlimited\nuser_default_lifetime = never");
        assert_true(c.user_max_lifetime_usec == 0);
        assert_true(c.user_default_lifetime_usec == 0);
        config_done(&c);
        parse_ok(&c, "user_max_lifetime = 1d12h\nuser_default_lifetime = 1d12h");
        assert_true(c.user_max_lifetime_usec == 36 * USEC_PER_HOUR);
        assert_true(c.user_default_lifetime_usec == 36 * USEC_PER_HOUR);
        config_done(&c);
        parse_ok(&c, "user_default_lifetime = 12h");
        assert_true(c.user_default_lifetime_usec == 12 * USEC_PER_HOUR);
        config_done(&c);

        parse_ok(&c, "max_message_size = 1024");
        assert_int_equal(c.max_message_size, 1024);
        config_done(&c);
        parse_ok(&c, "max_message_size = 1K");
        assert_int_equal(c.max_message_size, 1024);
        config_done(&c);
        parse_ok(&c, "max_message_size = 16M");
        assert_int_equal(c.max_message_size, 16 * MIB);
        config_done(&c);
        parse_ok(&c, "max_message_size = 256k");
        assert_int_equal(c.max_message_size, 256 * KIB);
        config_done(&c);
        parse_ok(&c, "max_message_size = 16777216");
        assert_int_equal(c.max_message_size, 16 * MIB);
        config_done(&c);

        parse_ok(&c, "max_connections = 1");
        assert_int_equal(c.max_connections, 1);
        config_done(&c);
        parse_ok(&c, "max_connections = 65536");
        assert_int_equal(c.max_connections, 65536);
        config_done(&c);

        parse_ok(&c, "client_timeout = 1s");
        assert_true(c.client_timeout_usec == USEC_PER_SEC);
        config_done(&c);
        parse_ok(&c, "client_timeout = 1h");
        assert_true(c.client_timeout_usec == USEC_PER_HOUR);
        config_done(&c);
        parse_ok(&c, "client_timeout = 2m30s");
        assert_true(c.client_timeout_usec == 150 * USEC_PER_SEC);
        config_done(&c);

        parse_ok(&c, "last_used_flush_interval = 1s");
        assert_true(c.last_used_flush_interval_usec == USEC_PER_SEC);
        config_done(&c);
        parse_ok(&c, "last_used_flush_interval = 60m");
        assert_true(c.last_used_flush_interval_usec == USEC_PER_HOUR);
        config_done(&c);

        parse_ok(&c, "audit_max_events = 5");
        assert_true(c.audit_max_events == 5);
        config_done(&c);
        parse_ok(&c, "audit_max_events = 0");
        assert_true(c.audit_max_events == 100000);
        config_done(&c);
        parse_ok(&c, "audit_max_events = 1000000000");
        assert_true(c.audit_max_events == 1000000000);
        config_done(&c);

        parse_ok(&c, "lockout_threshold = 0");
        assert_int_equal(c.lockout_threshold, 0);
        config_done(&c);
        parse_ok(&c, "lockout_threshold = 3");
        assert_int_equal(c.lockout_threshold, 3);
        config_done(&c);

        parse_ok(&c, "lockout_window = 1h");
        assert_true(c.lockout_window_usec == USEC_PER_HOUR);
        config_done(&c);
        parse_ok(&c, "lockout_window = 7d");
        assert_true(c.lockout_window_usec == 7 * USEC_PER_DAY);
        config_done(&c);
        parse_ok(&c, "rotation_grace = 0");
        assert_true(c.rotation_grace_usec == 0);
        config_done(&c);
        parse_ok(&c, "rotation_grace = 7d");
        assert_true(c.rotation_grace_usec == 7 * USEC_PER_DAY);
        config_done(&c);

        parse_ok(&c, "map_size = 1M");
        assert_true(c.map_size == MIB);
        config_done(&c);
        parse_ok(&c, "map_size = 64T");
        assert_true(c.map_size == 64 * TIB);
        config_done(&c);
        parse_ok(&c, "map_size = 10G");
        assert_true(c.map_size == 10 * GIB);
        config_done(&c);
        parse_ok(&c, "map_size = 1048576");
        assert_true(c.map_size == MIB);
        config_done(&c);

        parse_ok(&c, "end_sessions = no");
        assert_false(c.end_sessions);
        config_done(&c);
}

static void test_all_at_once(void **state)
{
        struct apikeyd_config c;

        parse_ok(&c, "# site settings\n"
                     "admin_group=keyadmins\n"
                     "  token_prefix\t=\tacme  \n"
                     "users_may_create = no\n"
                     "user_max_keys = 3\n"
                     "user_max_lifetime = 2w\n"
                     "user_default_lifetime = 1w\n"
                     "\n"
                     "max_message_size = 1M\n"
                     "max_connections = 1000\n"
                     "client_timeout = 30s\n"
                     "last_used_flush_interval = 1m\n"
                     "audit_max_events = 5000\n"
                     "lockout_threshold = 5\n"
                     "lockout_window = 1h\n"
                     "map_size = 1G");
        assert_string_equal(c.admin_group, "keyadmins");
        assert_string_equal(c.token_prefix, "acme");
        assert_false(c.users_may_create);
        assert_int_equal(c.user_max_keys, 3);
        assert_true(c.user_max_lifetime_usec == 2 * USEC_PER_WEEK);
        assert_true(c.user_default_lifetime_usec == USEC_PER_WEEK);
        assert_int_equal(c.max_message_size, MIB);
        assert_int_equal(c.max_connections, 1000);
        assert_true(c.client_timeout_usec == 30 * USEC_PER_SEC);
        assert_true(c.last_used_flush_interval_usec == USEC_PER_MIN);
        assert_true(c.audit_max_events == 5000);
        assert_int_equal(c.lockout_threshold, 5);
        assert_true(c.lockout_window_usec == USEC_PER_HOUR);
        assert_true(c.map_size == GIB);
        config_done(&c);
}

/* The reserve for root and the daemon's user is carved out of max_connections. */
static void test_reserved_connections(void **state)
{
        struct apikeyd_config c;
        char *error = NULL;

        parse_ok(&c, "reserved_connections = 1");
        assert_int_equal(config_reserved_connections(&c), 1);
        config_done(&c);
        parse_ok(&c, "reserved_connections = 200");
        assert_int_equal(config_reserved_connections(&c), 200);
        config_done(&c);
        /* All of them: only root and the daemon's user are served. */
        parse_ok(&c, "max_connections = 12\nreserved_connections = 12");
        assert_int_equal(config_reserved_connections(&c), 12);
        config_done(&c);
        parse_ok(&c, "reserved_connections = 4\nmax_connections = 12");
        assert_int_equal(c.max_connections, 12);
        assert_int_equal(config_reserved_connections(&c), 4);
        config_done(&c);
        parse_ok(&c, "max_connections = 65536\nreserved_connections = 65536");
        assert_int_equal(config_reserved_connections(&c), 65536);
        config_done(&c);

        /* Not set, it is 32, or an eighth of a smaller max_connections. */
        parse_ok(&c, "max_connections = 1000");
        assert_int_equal(config_reserved_connections(&c), 32);
        config_done(&c);
        parse_ok(&c, "max_connections = 100");
        assert_int_equal(config_reserved_connections(&c), 12);
        config_done(&c);
        parse_ok(&c, "max_connections = 12");
        assert_int_equal(config_reserved_connections(&c), 1);
        /* ... as max_connections is now (the daemon lowers it to fit its file limit). */
        c.max_connections = 256;
        assert_int_equal(config_reserved_connections(&c), 32);
        config_done(&c);
        parse_ok(&c, "max_connections = 1");
        assert_int_equal(config_reserved_connections(&c), 1);
        config_done(&c);

        parse_fails("reserved_connections = 0",
                    NAME ":1: invalid value '0' for "
                         "reserved_connections: expected a number from 1 "
                         "to 65536");
        parse_fails("reserved_connections = 65537",
                    NAME ":1: invalid value '65537' for reserved_connections: expected a number "
                         "from 1 to 65536");
        parse_fails("reserved_connections = 257",
                    NAME ":1: reserved_connections (257) is more than max_connections (256)");
        parse_fails("max_connections = 12\n# keep some for root\nreserved_connections = 13",
                    NAME ":3: reserved_connections (13) is more than max_connections (12)");
        parse_fails("reserved_connections = 40\nmax_connections = 32",
                    NAME ":1: reserved_connections (40) is more than max_connections (32)");

        /* A later file cannot cut max_connections below an earlier file's reserve. */
        parse_ok(&c, "reserved_connections = 40");
        assert_int_equal(
            config_parse_string(&c, "user_max_keys = 3\nmax_connections = 32", "b.conf", &error),
            -EINVAL);
        assert_string_equal(
            error, "b.conf:2: reserved_connections (40) is more than max_connections (32)");
        free(error);
        assert_int_equal(c.max_connections, 256);
        assert_int_equal(config_reserved_connections(&c), 40);
        config_done(&c);
}

static void test_second_file_overrides_first(void **state)
{
        struct apikeyd_config c;
        char *error = NULL;

        parse_ok(&c, "admin_group = wheel\nuser_max_keys = 3");
        assert_int_equal(config_parse_string(&c, "admin_group = staff", "b.conf", &error), 0);
        assert_string_equal(c.admin_group, "staff");
        assert_int_equal(c.user_max_keys, 3);

        /* A refused file leaves the earlier settings as they were. */
        assert_int_equal(
            config_parse_string(&c, "user_max_keys = 4\nadmin_group = a:b", "c.conf", &error),
            -EINVAL);
        assert_string_equal(error, "c.conf:2: invalid value 'a:b' for admin_group: "
                                   "expected a group name");
        free(error);
        assert_string_equal(c.admin_group, "staff");
        assert_int_equal(c.user_max_keys, 3);
        config_done(&c);
}

static void test_error_messages(void **state)
{
        static const struct {
                const char *text, *error;
        } cases[] = {
            {"admin_grup = wheel", NAME ":1: unknown option 'admin_grup'"},
            {"\n\n\n\n\n\nadmin_grup = wheel", NAME ":7: unknown option 'admin_grup'"},
            {"Admin_Group = wheel", NAME ":1: unknown option 'Admin_Group'"},
            {"admin group = wheel", NAME ":1: unknown option 'admin group'"},
            {"admin_group = a\nuser_max_keys = 1\nadmin_group = b",
             NAME ":3: option 'admin_group' is already set on line 1"},
            {"admin_group", NAME ":1: expected 'option = value'"},
            {"# comment\nadmin_group wheel", NAME ":2: expected 'option = value'"},
            {"= wheel", NAME ":1: missing option name before '='"},
            {"  =", NAME ":1: missing option name before '='"},
            {"admin_group =", NAME ":1: missing value for option 'admin_group'"},
            {"admin_group =   \t", NAME ":1: missing value for option 'admin_group'"},
            {"nope =", NAME ":1: unknown option 'nope'"},
            {"admin_group = a:b",
             NAME ":1: invalid value 'a:b' for admin_group: expected a group name"},
            {"admin_group = 1000",
             NAME ":1: invalid value '1000' for admin_group: expected a group name"},
            {"admin_group = wheel # admins",
             NAME ":1: invalid value 'wheel # admins' for admin_group: expected a group name "
                  "(a comment must be on a line of its own)"},
            {"token_prefix = APK", NAME ":1: invalid value 'APK' for token_prefix: expected 2 "
                                        "to 8 lowercase letters a-z"},
            {"token_prefix = a", NAME ":1: invalid value 'a' for token_prefix: expected 2 to 8 "
                                      "lowercase letters a-z"},
            {"token_prefix = abcdefghi", NAME ":1: invalid value 'abcdefghi' for token_prefix: "
                                              "expected 2 to 8 lowercase letters a-z"},
            {"token_prefix = ap_k", NAME ":1: invalid value 'ap_k' for token_prefix: expected "
                                         "2 to 8 lowercase letters a-z"},
            {"users_may_create = maybe",
             NAME ":1: invalid value 'maybe' for users_may_create: expected yes or no"},
            {"users_may_create = y",
             NAME ":1: invalid value 'y' for users_may_create: expected yes or no"},
            {"user_max_keys = -1", NAME ":1: invalid value '-1' for user_max_keys: expected a "
                                        "number from 0 (unlimited) to 1000000"},
            {"user_max_keys = 1000001", NAME ":1: invalid value '1000001' for user_max_keys: "
                                             "expected a number from 0 (unlimited) to 1000000"},
            {"user_max_keys = +5", NAME ":1: invalid value '+5' for user_max_keys: expected a "
                                        "number from 0 (unlimited) to 1000000"},
            {"user_max_keys = 0x10", NAME ":1: invalid value '0x10' for user_max_keys: "
                                          "expected a number from 0 (unlimited) to 1000000"},
            {"user_max_keys = 1 0", NAME ":1: invalid value '1 0' for user_max_keys: expected "
                                         "a number from 0 (unlimited) to 1000000"},
            {"user_max_keys = 99999999999999999999999",
             NAME ":1: invalid value '99999999999999999999999' for user_max_keys: expected a "
                  "number from 0 (unlimited) to 1000000"},
            {"user_max_keys = 5 # per user",
             NAME ":1: invalid value '5 # per user' for user_max_keys: expected a number from "
                  "0 (unlimited) to 1000000 (a comment must be on a line of its own)"},
            {"user_max_lifetime = 0", NAME ":1: invalid value '0' for user_max_lifetime: "
                                           "expected a duration such as 90d, or 'unlimited'"},
            {"user_max_lifetime = 0d", NAME ":1: invalid value '0d' for user_max_lifetime: "
                                            "expected a duration such as 90d, or 'unlimited'"},
            {"user_max_lifetime = never",
             NAME ":1: invalid value 'never' for user_max_lifetime: expected a duration such "
                  "as 90d, or 'unlimited'"},
            {"user_max_lifetime = 90 days",
             NAME ":1: invalid value '90 days' for user_max_lifetime: expected a duration "
                  "such as 90d, or 'unlimited'"},
            {"user_default_lifetime = unlimited",
             NAME ":1: invalid value 'unlimited' for user_default_lifetime: expected a "
                  "duration such as 30d, or 'never'"},
            {"user_default_lifetime = 0s",
             NAME ":1: invalid value '0s' for user_default_lifetime: expected a duration such "
                  "as 30d, or 'never'"},
            {"user_default_lifetime = 120d", NAME ":1: user_default_lifetime (120d) is longer "
                                                  "than user_max_lifetime (90d)"},
            {"user_default_lifetime = 2d\n#\nuser_max_lifetime = 1d12h",
             NAME ":1: user_default_lifetime (2d) is longer than user_max_lifetime (1d 12h)"},
            {"user_default_lifetime = never", NAME ":1: user_default_lifetime cannot be "
                                                   "'never' while user_max_lifetime is 90d"},
            {"max_message_size = 1023", NAME ":1: invalid value '1023' for max_message_size: "
                                             "expected a size from 1K to 16M"},
            {"max_message_size = 17M", NAME ":1: invalid value '17M' for max_message_size: "
                                            "expected a size from 1K to 16M"},
            {"max_message_size = 16777217",
             NAME ":1: invalid value '16777217' for max_message_size: expected a size from 1K "
                  "to 16M"},
            {"max_message_size = 64KB", NAME ":1: invalid value '64KB' for max_message_size: "
                                             "expected a size from 1K to 16M"},
            {"max_message_size = 64 K", NAME ":1: invalid value '64 K' for max_message_size: "
                                             "expected a size from 1K to 16M"},
            {"max_message_size = K", NAME ":1: invalid value 'K' for max_message_size: "
                                          "expected a size from 1K to 16M"},
            {"max_message_size = 1.5M", NAME ":1: invalid value '1.5M' for max_message_size: "
                                             "expected a size from 1K to 16M"},
            {"max_connections = 0", NAME ":1: invalid value '0' for max_connections: expected "
                                         "a number from 1 to 65536"},
            {"max_connections = 65537", NAME ":1: invalid value '65537' for max_connections: "
                                             "expected a number from 1 to 65536"},
            {"max_connections = 4294967552",
             NAME ":1: invalid value '4294967552' for max_connections: expected a number from "
                  "1 to 65536"},
            {"client_timeout = 0s", NAME ":1: invalid value '0s' for client_timeout: expected "
                                         "a duration from 1s to 1h"},
            {"client_timeout = 10", NAME ":1: invalid value '10' for client_timeout: expected "
                                         "a duration from 1s to 1h"},
            {"client_timeout = 1h1s", NAME ":1: invalid value '1h1s' for client_timeout: "
                                           "expected a duration from 1s to 1h"},
            {"last_used_flush_interval = 2h",
             NAME ":1: invalid value '2h' for last_used_flush_interval: expected a duration "
                  "from 1s to 1h"},
            {"audit_max_events = 1000000001",
             NAME ":1: invalid value '1000000001' for audit_max_events: expected a number "
                  "from 0 (the default) to 1000000000"},
            {"lockout_threshold = off", NAME ":1: invalid value 'off' for lockout_threshold: "
                                             "expected a number from 0 (off) to 1000000"},
            {"lockout_window = 8d", NAME ":1: invalid value '8d' for lockout_window: expected "
                                         "a duration from 1s to 7d"},
            {"rotation_grace = 366d", NAME ":1: invalid value '366d' for rotation_grace: "
                                           "expected 0 or a duration up to 365d"},
            {"lockout_window = 0", NAME ":1: invalid value '0' for lockout_window: expected "
                                        "a duration from 1s to 7d"},
            {"map_size = 1023K", NAME ":1: invalid value '1023K' for map_size: expected a size "
                                      "from 1M to 64T"},
            {"map_size = 65T", NAME ":1: invalid value '65T' for map_size: expected a size from "
                                    "1M to 64T"},
            {"map_size = 99999999999T", NAME ":1: invalid value '99999999999T' for map_size: "
                                             "expected a size from 1M to 64T"},
            {"map_size = 4P", NAME ":1: invalid value '4P' for map_size: expected a size from "
                                   "1M to 64T"},
            /* Control characters in what is quoted are shown escaped. */
            {"admin_group = a\033[2Jb",
             NAME ":1: invalid value 'a\\x1b[2Jb' for admin_group: expected a group name"},
            {"\xff\xfe = 1", NAME ":1: unknown option '\\xff\\xfe'"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                parse_fails(cases[i].text, cases[i].error);
}

static void test_error_without_message(void **state)
{
        struct apikeyd_config c;

        init(&c);
        assert_int_equal(config_parse_string(&c, "nope = 1", NAME, NULL), -EINVAL);
        assert_int_equal(config_parse_string(&c, "user_max_keys = 3", NULL, NULL), 0);
        assert_int_equal(c.user_max_keys, 3);
        assert_int_equal(config_parse_string(&c, NULL, NAME, NULL), -EINVAL);
        assert_int_equal(config_parse_string(NULL, "", NAME, NULL), -EINVAL);
        config_done(&c);
}

static void test_crlf(void **state)
{
        struct apikeyd_config c;

        parse_ok(&c, "# Windows\r\nadmin_group = wheel\r\nuser_max_keys = 7\r\n\r\n");
        assert_string_equal(c.admin_group, "wheel");
        assert_int_equal(c.user_max_keys, 7);
        config_done(&c);

        /* The byte order mark such editors put in front. */
        parse_ok(&c, "\xEF\xBB\xBFuser_max_keys = 8\r\n");
        assert_int_equal(c.user_max_keys, 8);
        config_done(&c);
        parse_ok(&c, "\xEF\xBB\xBF# comment\n");
        assert_defaults(&c);
        config_done(&c);
        /* Stray carriage returns at the end of a line are blanks. */
        parse_ok(&c, "max_connections = 1\r\r\nuser_max_keys = 2\r");
        assert_int_equal(c.max_connections, 1);
        assert_int_equal(c.user_max_keys, 2);
        config_done(&c);

        parse_fails("admin_group = wheel\r\nadmin_grup = x\r\n",
                    NAME ":2: unknown option 'admin_grup'");
        /* A carriage return inside a value is not a line end. */
        parse_fails("admin_group = a\rb",
                    NAME ":1: invalid value 'a\\x0db' for admin_group: expected a group name");
}

static void test_long_lines(void **state)
{
        const size_t n = 200000;
        struct apikeyd_config c;
        char *text, *want;

        text = malloc(n + 64);
        assert_non_null(text);

        /* A long comment is a comment. */
        text[0] = '#';
        memset(text + 1, 'x', n);
        strcpy(text + 1 + n, "\nuser_max_keys = 9\n");
        parse_ok(&c, text);
        assert_int_equal(c.user_max_keys, 9);
        config_done(&c);

        /* A long value is refused, and only its beginning quoted. */
        strcpy(text, "admin_group = ");
        memset(text + 14, 'g', n);
        text[14 + n] = '\0';
        assert_true(asprintf(&want,
                             NAME ":1: invalid value '%.64s...' for admin_group: expected a group "
                                  "name",
                             text + 14) > 0);
        parse_fails(text, want);
        free(want);

        /* A group name of 256 bytes is accepted, one more is not. */
        text[14 + 256] = '\0';
        parse_ok(&c, text);
        assert_int_equal(strlen(c.admin_group), 256);
        config_done(&c);
        text[14 + 256] = 'g';
        text[14 + 257] = '\0';
        init(&c);
        assert_int_equal(config_parse_string(&c, text, NAME, NULL), -EINVAL);
        config_done(&c);

        /* A long unknown option name is quoted shortened as well. */
        memset(text, 'o', n);
        strcpy(text + n, " = 1");
        assert_true(asprintf(&want, NAME ":1: unknown option '%.64s...'", text) > 0);
        parse_fails(text, want);
        free(want);

        free(text);
}

static void test_load_file(void **state)
{
        static const char content[] = "# test\nuser_max_keys = 4\nmap_size = 8G\n";
        struct apikeyd_config c;
        char *path, *error = NULL;

        path = write_temp(content, strlen(content));
        init(&c);
        assert_int_equal(config_load_file(&c, path, false, &error), 0);
        assert_null(error);
        assert_int_equal(c.user_max_keys, 4);
        assert_true(c.map_size == 8 * GIB);
        config_done(&c);
        unlink(path);
        free(path);

        /* An empty file is the defaults. */
        path = write_temp("", 0);
        init(&c);
        assert_int_equal(config_load_file(&c, path, false, &error), 0);
        assert_defaults(&c);
        config_done(&c);
        unlink(path);
        free(path);

        /* Errors name the file's path. */
        path = write_temp("\nadmin_grup = x\n", 16);
        init(&c);
        assert_int_equal(config_load_file(&c, path, false, &error), -EINVAL);
        {
                char *want;

                assert_true(asprintf(&want, "%s:2: unknown option 'admin_grup'", path) > 0);
                assert_string_equal(error, want);
                free(want);
        }
        free(error);
        assert_defaults(&c);
        config_done(&c);
        unlink(path);
        free(path);
}

static void test_missing_file(void **state)
{
        const char *path = "/nonexistent-apikeyd-test/apikeyd.conf";
        struct apikeyd_config c;
        char *error = NULL;

        init(&c);
        assert_int_equal(config_load_file(&c, path, true, &error), 0);
        assert_null(error);
        assert_defaults(&c);

        assert_int_equal(config_load_file(&c, path, false, &error), -ENOENT);
        assert_string_equal(error,
                            "/nonexistent-apikeyd-test/apikeyd.conf: No such file or directory");
        free(error);
        assert_defaults(&c);
        config_done(&c);
}

static void test_unreadable_files(void **state)
{
        struct apikeyd_config c;
        char *path, *error = NULL, *want, *big, dir[] = "/tmp/test_config.XXXXXX";

        init(&c);

        /* missing_ok is about a missing file, not about any other failure. */
        assert_non_null(mkdtemp(dir));
        assert_int_equal(config_load_file(&c, dir, true, &error), -EISDIR);
        assert_true(asprintf(&want, "%s: Is a directory", dir) > 0);
        assert_string_equal(error, want);
        free(want);
        free(error);
        assert_int_equal(rmdir(dir), 0);

        /* A NUL byte would hide the rest of the file. */
        path = write_temp("user_max_keys = 4\nadmin_group = x\0y\n", 36);
        assert_int_equal(config_load_file(&c, path, false, &error), -EINVAL);
        assert_true(asprintf(&want, "%s:2: NUL byte in the file", path) > 0);
        assert_string_equal(error, want);
        free(want);
        free(error);
        unlink(path);
        free(path);

        /* Too large a file is refused without being parsed. */
        big = malloc(CONFIG_FILE_MAX + 1);
        assert_non_null(big);
        memset(big, '\n', CONFIG_FILE_MAX + 1);
        path = write_temp(big, CONFIG_FILE_MAX + 1);
        assert_int_equal(config_load_file(&c, path, false, &error), -EFBIG);
        assert_true(asprintf(&want, "%s: File too large", path) > 0);
        assert_string_equal(error, want);
        free(want);
        free(error);
        unlink(path);
        free(path);

        /* Exactly the limit is fine. */
        memcpy(big, "user_max_keys = 2", 17);
        path = write_temp(big, CONFIG_FILE_MAX);
        assert_int_equal(config_load_file(&c, path, false, &error), 0);
        assert_int_equal(c.user_max_keys, 2);
        unlink(path);
        free(path);
        free(big);

        config_done(&c);
}

/* The example with every "#option = value" line uncommented. */
static char *example_uncommented(void)
{
        char *path = path_in_tree("apikeyd/apikeyd.conf.example");
        char *text = read_whole(path), *out, *o;

        free(path);
        out = malloc(strlen(text) + 1);
        assert_non_null(out);
        o = out;
        for (const char *p = text; *p;) {
                const char *eol = strchrnul(p, '\n');

                /* "# words" is prose; "#word" is a commented-out setting. */
                if (p[0] == '#' && p[1] >= 'a' && p[1] <= 'z')
                        p++;
                memcpy(o, p, (size_t)(eol - p));
                o += eol - p;
                if (*eol)
                        *o++ = '\n';
                p = *eol ? eol + 1 : eol;
        }
        *o = '\0';
        free(text);
        return out;
}

static void test_example_is_the_defaults(void **state)
{
        struct apikeyd_config c;
        char *text = example_uncommented();

        parse_ok(&c, text);
        assert_defaults(&c);
        config_done(&c);

        /* Every option is set in it, and only once (a repeat would have
         * been refused above): setting any of them again is now refused. */
        for (size_t i = 0; config_option_name(i); i++) {
                const char *name = config_option_name(i), *hit;
                char *needle, *twice, *want;
                unsigned first = 1, last = 1;

                assert_true(asprintf(&needle, "\n%s = ", name) > 0);
                hit = strstr(text, needle);
                if (!hit)
                        fail_msg("the example does not set '%s'", name);
                for (const char *p = text; p <= hit; p++)
                        first += *p == '\n';
                for (const char *p = text; *p; p++)
                        last += *p == '\n';
                assert_true(asprintf(&twice, "%s%s = %.*s", text, name,
                                     (int)strcspn(hit + strlen(needle), "\n"),
                                     hit + strlen(needle)) > 0);
                assert_true(asprintf(&want, NAME ":%u: option '%s' is already set on line %u", last,
                                     name, first) > 0);
                parse_fails(twice, want);
                free(want);
                free(twice);
                free(needle);
        }
        free(text);
}

static void test_every_option_documented(void **state)
{
        char *ex_path = path_in_tree("apikeyd/apikeyd.conf.example");
        char *h_path = path_in_tree("apikeyd/base/config.h");
        char *example = read_whole(ex_path), *header = read_whole(h_path);
        const char *table, *end;
        size_t n_options = 0, n_table = 0;

        /* The example names each option once, commented out with its default. */
        for (size_t i = 0; config_option_name(i); i++) {
                char *needle;
                const char *hit;

                n_options++;
                assert_true(asprintf(&needle, "\n#%s = ", config_option_name(i)) > 0);
                hit = strstr(example, needle);
                if (!hit)
                        fail_msg("apikeyd.conf.example does not list '%s'", config_option_name(i));
                assert_null(strstr(hit + 1, needle));
                free(needle);
        }
        assert_int_equal(n_options, 35);

        /* config.h's table lists the same options, in the same order. */
        table = strstr(header, "Options (name, default, meaning):");
        assert_non_null(table);
        end = strstr(table, "*/");
        assert_non_null(end);
        for (const char *p = strchr(table, '\n'); p && p < end; p = strchr(p + 1, '\n')) {
                const char *name = p + 1;
                size_t len;

                /* Table rows are " *   name ...", continuations indented further. */
                if (strncmp(name, " *   ", 5) != 0 || name[5] == ' ')
                        continue;
                name += 5;
                len = strcspn(name, " \n");
                if (!config_option_name(n_table))
                        fail_msg("config.h documents '%.*s', which is not an option", (int)len,
                                 name);
                if (strlen(config_option_name(n_table)) != len ||
                    strncmp(name, config_option_name(n_table), len) != 0)
                        fail_msg("config.h documents '%.*s' where '%s' was expected", (int)len,
                                 name, config_option_name(n_table));
                n_table++;
        }
        assert_int_equal(n_table, n_options);

        /* And the example gives every option the default config.h states. */
        for (size_t i = 0; config_option_name(i); i++) {
                char *needle, *row;
                const char *hit;
                size_t vlen;

                assert_true(asprintf(&needle, "\n#%s = ", config_option_name(i)) > 0);
                hit = strstr(example, needle) + strlen(needle);
                vlen = strcspn(hit, "\n");
                assert_true(asprintf(&row, " *   %s", config_option_name(i)) > 0);
                {
                        const char *r = strstr(table, row);
                        char *def;

                        assert_non_null(r);
                        r += strlen(row);
                        r += strspn(r, " ");
                        def = strndup(r, strcspn(r, " \n"));
                        if (strlen(def) != vlen || strncmp(def, hit, vlen) != 0)
                                fail_msg("'%s': config.h says '%s', the example '%.*s'",
                                         config_option_name(i), def, (int)vlen, hit);
                        free(def);
                }
                free(row);
                free(needle);
        }

        free(example);
        free(header);
        free(ex_path);
        free(h_path);
}

static void test_hygiene_options(void **state)
{
        struct apikeyd_config c;

        parse_ok(&c, "");
        assert_true(c.max_lifetime_usec == 0 && c.disable_unused_after_usec == 0);
        config_done(&c);
        parse_ok(&c, "max_lifetime = 365d\ndisable_unused_after = 5s");
        assert_true(c.max_lifetime_usec == 365 * USEC_PER_DAY);
        assert_true(c.disable_unused_after_usec == 5 * USEC_PER_SEC);
        config_done(&c);
        parse_ok(&c, "max_lifetime = Unlimited\ndisable_unused_after = OFF");
        assert_true(c.max_lifetime_usec == 0 && c.disable_unused_after_usec == 0);
        config_done(&c);
        parse_fails("max_lifetime = 0s", NAME ":1: invalid value '0s' for max_lifetime: expected "
                                              "a duration such as 365d, or 'unlimited'");
        parse_fails("disable_unused_after = never",
                    NAME ":1: invalid value 'never' for disable_unused_after: expected a duration "
                         "such as 90d, or 'off'");
        parse_fails("disable_unused_after = 0s",
                    NAME ":1: invalid value '0s' for disable_unused_after: expected a duration "
                         "such as 90d, or 'off'");
}

static void test_fleet_options(void **state)
{
        struct apikeyd_config c;

        parse_ok(&c, "fleet_endpoints = http://127.0.0.1:2379,https://etcd-2.example.com:2379,"
                     "http://[::1]:23790,http://etcd3");
        assert_string_equal(c.fleet_endpoints, "http://127.0.0.1:2379,https://etcd-2.example.com:"
                                               "2379,http://[::1]:23790,http://etcd3");
        config_done(&c);
        parse_ok(&c, "fleet_endpoints = http://a:1\nfleet_prefix = /corp/keys-2\n"
                     "fleet_host = web-01.example.com\nfleet_manage = yes\n"
                     "fleet_offline_max_age = 30m\nfleet_user = web-01\n"
                     "fleet_password_file = /etc/apikeyd/etcd-password\n"
                     "fleet_cacert = /etc/apikeyd/ca.pem\nfleet_cert = /etc/apikeyd/host.pem\n"
                     "fleet_key = /etc/apikeyd/host.key");
        assert_string_equal(c.fleet_endpoints, "http://a:1");
        assert_string_equal(c.fleet_prefix, "/corp/keys-2");
        assert_string_equal(c.fleet_host, "web-01.example.com");
        assert_true(c.fleet_manage);
        assert_true(c.fleet_offline_max_age_usec == 30 * USEC_PER_MIN);
        assert_string_equal(c.fleet_user, "web-01");
        assert_string_equal(c.fleet_password_file, "/etc/apikeyd/etcd-password");
        assert_string_equal(c.fleet_cacert, "/etc/apikeyd/ca.pem");
        assert_string_equal(c.fleet_cert, "/etc/apikeyd/host.pem");
        assert_string_equal(c.fleet_key, "/etc/apikeyd/host.key");
        config_done(&c);
        parse_ok(&c, "fleet_break_glass_keys = 7Hq2LmX9aB3z,Abcdefghijk0");
        assert_string_equal(c.fleet_break_glass_keys, "7Hq2LmX9aB3z,Abcdefghijk0");
        assert_int_equal(config_parse_string(&c, "fleet_break_glass_keys = none", NAME, NULL), 0);
        assert_null(c.fleet_break_glass_keys);
        config_done(&c);
        parse_ok(&c, "fleet_endpoints = http://a:1\nfleet_prefix = /corp/keys-2\n"
                     "fleet_host = web-01.example.com\nfleet_manage = yes\n"
                     "fleet_offline_max_age = 30m\nfleet_user = web-01\n"
                     "fleet_password_file = /etc/apikeyd/etcd-password\n"
                     "fleet_cacert = /etc/apikeyd/ca.pem\nfleet_cert = /etc/apikeyd/host.pem\n"
                     "fleet_key = /etc/apikeyd/host.key");

        /* A second file takes them back: none and %H are the defaults. */
        assert_int_equal(config_parse_string(&c,
                                             "fleet_endpoints = None\nfleet_host = %H\n"
                                             "fleet_user = none\nfleet_password_file = none\n"
                                             "fleet_cert = none\nfleet_key = none\n"
                                             "fleet_cacert = none\nfleet_manage = no\n"
                                             "fleet_prefix = /apikeyd/v1\n"
                                             "fleet_offline_max_age = 72h",
                                             NAME, NULL),
                         0);
        assert_defaults(&c);
        config_done(&c);

        static const struct {
                const char *text, *error;
        } cases[] = {
            {"fleet_endpoints = 127.0.0.1:2379",
             NAME ":1: invalid value '127.0.0.1:2379' for fleet_endpoints: expected 'none' or up "
                  "to 16 comma-separated URLs http://host:port or https://host:port"},
            {"fleet_endpoints = http://a:2379,,http://b:2379",
             NAME ":1: invalid value 'http://a:2379,,http://b:2379' for fleet_endpoints: expected "
                  "'none' or up to 16 comma-separated URLs http://host:port or https://host:port"},
            {"fleet_endpoints = http://a:2379/v3",
             NAME ":1: invalid value 'http://a:2379/v3' for fleet_endpoints: expected 'none' or up "
                  "to 16 comma-separated URLs http://host:port or https://host:port"},
            {"fleet_endpoints = http://a:65536",
             NAME ":1: invalid value 'http://a:65536' for fleet_endpoints: expected 'none' or up "
                  "to 16 comma-separated URLs http://host:port or https://host:port"},
            {"fleet_endpoints = "
             "http://a,http://a,http://a,http://a,http://a,http://a,http://a,http://a,"
             "http://a,http://a,http://a,http://a,http://a,http://a,http://a,http://a,http://a",
             NAME ":1: invalid value 'http://a,http://a,http://a,http://a,http://a,http://a,"
                  "http://a,h...' for fleet_endpoints: expected 'none' or up to 16 comma-separated "
                  "URLs http://host:port or https://host:port"},
            {"fleet_prefix = apikeyd",
             NAME ":1: invalid value 'apikeyd' for fleet_prefix: expected "
                  "a path such as /apikeyd/v1: '/' and segments of A-Z "
                  "a-z 0-9 . _ -, at most 128 characters"},
            {"fleet_prefix = /apikeyd/", NAME ":1: invalid value '/apikeyd/' for fleet_prefix: "
                                              "expected a path such as /apikeyd/v1: '/' and "
                                              "segments of A-Z a-z 0-9 . _ -, at most 128 "
                                              "characters"},
            {"fleet_prefix = /a//b", NAME ":1: invalid value '/a//b' for fleet_prefix: expected a "
                                          "path such as /apikeyd/v1: '/' and segments of A-Z a-z "
                                          "0-9 . _ -, at most 128 characters"},
            {"fleet_prefix = /a/../b",
             NAME ":1: invalid value '/a/../b' for fleet_prefix: expected "
                  "a path such as /apikeyd/v1: '/' and segments of A-Z "
                  "a-z 0-9 . _ -, at most 128 characters"},
            {"fleet_host = web 01", NAME ":1: invalid value 'web 01' for fleet_host: expected '%H' "
                                         "(the host name) or 1 to 64 characters A-Z a-z 0-9 . _ -"},
            {"fleet_host = a/b", NAME ":1: invalid value 'a/b' for fleet_host: expected '%H' (the "
                                      "host name) or 1 to 64 characters A-Z a-z 0-9 . _ -"},
            {"fleet_break_glass_keys = 7Hq2LmX9aB3z,abc",
             NAME ":1: invalid value '7Hq2LmX9aB3z,abc' for fleet_break_glass_keys: expected "
                  "'none' or up to 16 comma-separated key ids"},
            {"fleet_break_glass_keys = 7Hq2LmX9aB3z,",
             NAME ":1: invalid value '7Hq2LmX9aB3z,' for fleet_break_glass_keys: expected "
                  "'none' or up to 16 comma-separated key ids"},
            {"fleet_manage = sometimes",
             NAME ":1: invalid value 'sometimes' for fleet_manage: expected yes or no"},
            {"fleet_offline_max_age = 0s", NAME ":1: invalid value '0s' for fleet_offline_max_age: "
                                                "expected a duration from 1s to 365d"},
            {"fleet_offline_max_age = 366d",
             NAME ":1: invalid value '366d' for fleet_offline_max_age: expected a duration from 1s "
                  "to 365d"},
            {"fleet_user = a b",
             NAME ":1: invalid value 'a b' for fleet_user: expected 'none' or a "
                  "user name without blanks or control characters"},
            {"fleet_password_file = etcd-password",
             NAME ":1: invalid value 'etcd-password' for fleet_password_file: expected 'none' or "
                  "an absolute path"},
            {"fleet_user = web-01",
             NAME ":1: fleet_user is set but fleet_password_file is not: set both, or neither"},
            {"\nfleet_password_file = /p",
             NAME ":2: fleet_password_file is set but fleet_user is not: set both, or neither"},
            {"fleet_cert = /c.pem",
             NAME ":1: fleet_cert is set but fleet_key is not: set both, or neither"},
            {"fleet_key = /c.key\nfleet_cert = none",
             NAME ":1: fleet_key is set but fleet_cert is not: set both, or neither"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                parse_fails(cases[i].text, cases[i].error);
}

static void test_garbage_never_crashes(void **state)
{
        static const char alphabet[] = "=# \t\r\nayk0159_-:msdhKMGTnoe\xff";
        uint64_t rng = 88172645463325252u;
        char text[256];

        for (int i = 0; i < 20000; i++) {
                struct apikeyd_config c;
                size_t len;
                char *error = NULL;
                int r, prefix;

                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                len = rng % sizeof(text);
                /* Half of the time, start from a real option name. */
                prefix =
                    snprintf(text, sizeof(text),
                             "%s = ", (rng >> 20) & 1 ? config_option_name((rng >> 24) % 14) : "");
                for (size_t k = (size_t)prefix; k < len; k++) {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        text[k] = alphabet[rng % (sizeof(alphabet) - 1)];
                }
                text[len > (size_t)prefix ? len : (size_t)prefix] = '\0';

                init(&c);
                r = config_parse_string(&c, text, NAME, &error);
                assert_true(r == 0 || r == -EINVAL);
                assert_true((r == 0) == (error == NULL));
                if (error)
                        assert_int_equal(strncmp(error, NAME ":", strlen(NAME) + 1), 0);
                free(error);
                config_done(&c);
        }
}

static void test_usage_and_expiry_options(void **state)
{
        static const char *const bad_warnings[] = {
            "0s", "30s", "366d", "7d,7d", "7d,", ",1d", "1d,2d,3d,4d,5d,6d,7d,8d,9d", "soon"};
#define WANT_WARNINGS                                                                              \
        NAME ":1: invalid value '%s' for expiry_warnings: expected 'none' or up to 8 different "   \
             "durations from 1m to 365d, comma-separated, such as 7d,1d"
        struct apikeyd_config c;

        parse_ok(&c, "usage_history = 0\nexpiry_warnings = 1h,30d,1d\nexpiry_cliff = 0");
        assert_int_equal(c.usage_history, 0);
        assert_int_equal(c.n_expiry_warnings, 3);
        /* Longest first, whatever the order written. */
        assert_true(c.expiry_warnings_usec[0] == 30 * USEC_PER_DAY);
        assert_true(c.expiry_warnings_usec[1] == USEC_PER_DAY);
        assert_true(c.expiry_warnings_usec[2] == USEC_PER_HOUR);
        assert_int_equal(c.expiry_cliff, 0);
        config_done(&c);
        parse_ok(&c, "expiry_warnings = None");
        assert_int_equal(c.n_expiry_warnings, 0);
        config_done(&c);
        for (size_t i = 0; i < ELEMENTSOF(bad_warnings); i++) {
                char *text, *error;

                assert_true(asprintf(&text, "expiry_warnings = %s", bad_warnings[i]) > 0);
                assert_true(asprintf(&error, WANT_WARNINGS, bad_warnings[i]) > 0);
                parse_fails(text, error);
                free(text);
                free(error);
        }
        parse_fails("usage_history = 1001", NAME ":1: invalid value '1001' for usage_history: "
                                                 "expected a number from 0 (none) to 1000");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_defaults),
            cmocka_unit_test(test_each_option),
            cmocka_unit_test(test_all_at_once),
            cmocka_unit_test(test_reserved_connections),
            cmocka_unit_test(test_second_file_overrides_first),
            cmocka_unit_test(test_error_messages),
            cmocka_unit_test(test_error_without_message),
            cmocka_unit_test(test_crlf),
            cmocka_unit_test(test_long_lines),
            cmocka_unit_test(test_load_file),
            cmocka_unit_test(test_missing_file),
            cmocka_unit_test(test_unreadable_files),
            cmocka_unit_test(test_example_is_the_defaults),
            cmocka_unit_test(test_every_option_documented),
            cmocka_unit_test(test_hygiene_options),
            cmocka_unit_test(test_fleet_options),
            cmocka_unit_test(test_usage_and_expiry_options),
            cmocka_unit_test(test_garbage_never_crashes),
        };
        return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
