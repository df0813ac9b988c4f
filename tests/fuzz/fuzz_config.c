/* SPDX-License-Identifier: MIT */
/*
 * Fuzzes the daemon's config parser (apikeyd/base/config.c): config_parse_string()
 * on the input as text, and config_load_file() on the input as a file's
 * bytes (NULs included), through a memfd.  Checks the documented contract:
 * a file that is accepted leaves every option within its bounds; a file
 * that is refused leaves the configuration exactly as it was and names
 * the file and a line in its message; text parses the same way twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"
#include "timeutil.h"
#include "fuzz.h"

#define NAME "fuzz.conf"

static void check_bounds(const struct apikeyd_config *c)
{
        CHECK(c->admin_group && c->admin_group[0]);
        CHECK(token_prefix_valid(c->token_prefix));
        CHECK(c->user_max_keys <= 1000000);
        CHECK(c->max_message_size >= 1024 && c->max_message_size <= 16 * 1024 * 1024);
        CHECK(c->max_connections >= 1 && c->max_connections <= 65536);
        CHECK(c->max_connections_per_uid >= 1 && c->max_connections_per_uid <= 65536);
        /* The reserve fits in the total, whatever was set (0: not set). */
        CHECK(c->reserved_connections <= c->max_connections);
        CHECK(config_reserved_connections(c) >= 1 &&
              config_reserved_connections(c) <= c->max_connections);
        CHECK(c->client_timeout_usec >= USEC_PER_SEC && c->client_timeout_usec <= USEC_PER_HOUR);
        CHECK(c->last_used_flush_interval_usec >= USEC_PER_SEC &&
              c->last_used_flush_interval_usec <= USEC_PER_HOUR);
        CHECK(c->audit_max_events >= 1 && c->audit_max_events <= 1000000000);
        CHECK(c->lockout_threshold <= 1000000);
        CHECK(c->lockout_window_usec >= USEC_PER_SEC && c->lockout_window_usec <= 7 * USEC_PER_DAY);
        CHECK(c->map_size >= 1024 * 1024);
        CHECK(c->fleet_prefix && c->fleet_prefix[0] == '/');
        CHECK(c->fleet_offline_max_age_usec >= USEC_PER_SEC &&
              c->fleet_offline_max_age_usec <= 365 * USEC_PER_DAY);
        /* Options that go in pairs are both set or neither. */
        CHECK(!c->fleet_user == !c->fleet_password_file);
        CHECK(!c->fleet_cert == !c->fleet_key);
        /* A lifetime limit implies a default within it. */
        if (c->user_max_lifetime_usec != 0)
                CHECK(c->user_default_lifetime_usec != 0 &&
                      c->user_default_lifetime_usec <= c->user_max_lifetime_usec);
}

static bool string_equal(const char *a, const char *b)
{
        return a == b || (a && b && strcmp(a, b) == 0);
}

static bool config_equal(const struct apikeyd_config *a, const struct apikeyd_config *b)
{
        struct apikeyd_config x = *a, y = *b;

        if (strcmp(a->admin_group, b->admin_group) != 0)
                return false;
        if (!string_equal(a->fleet_endpoints, b->fleet_endpoints) ||
            !string_equal(a->fleet_prefix, b->fleet_prefix) ||
            !string_equal(a->fleet_host, b->fleet_host) ||
            !string_equal(a->fleet_user, b->fleet_user) ||
            !string_equal(a->fleet_password_file, b->fleet_password_file) ||
            !string_equal(a->fleet_cacert, b->fleet_cacert) ||
            !string_equal(a->fleet_cert, b->fleet_cert) ||
            !string_equal(a->fleet_key, b->fleet_key) || a->fleet_manage != b->fleet_manage ||
            a->fleet_offline_max_age_usec != b->fleet_offline_max_age_usec)
                return false;
        x.admin_group = y.admin_group = NULL;
        /* Compare field by field: the struct has padding. */
        return strcmp(x.token_prefix, y.token_prefix) == 0 &&
               x.users_may_create == y.users_may_create && x.user_max_keys == y.user_max_keys &&
               x.user_max_lifetime_usec == y.user_max_lifetime_usec &&
               x.user_default_lifetime_usec == y.user_default_lifetime_usec &&
               x.max_message_size == y.max_message_size && x.max_connections == y.max_connections &&
               x.max_connections_per_uid == y.max_connections_per_uid &&
               x.reserved_connections == y.reserved_connections &&
               x.client_timeout_usec == y.client_timeout_usec &&
               x.last_used_flush_interval_usec == y.last_used_flush_interval_usec &&
               x.audit_max_events == y.audit_max_events &&
               x.lockout_threshold == y.lockout_threshold &&
               x.lockout_window_usec == y.lockout_window_usec && x.map_size == y.map_size;
}

/* One parse of `text` over fresh defaults; returns its result, the config in `*ret`. */
static int parse_once(const char *text, struct apikeyd_config *ret)
{
        struct apikeyd_config before;
        char *error = (char *)1;
        int r;

        if (config_init_defaults(ret) < 0 || config_init_defaults(&before) < 0)
                abort();
        r = config_parse_string(ret, text, NAME, &error);
        CHECK(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r == 0) {
                CHECK(error == NULL);
                check_bounds(ret);
        } else {
                /* Refused files are not half applied. */
                CHECK(config_equal(ret, &before));
                if (r == -EINVAL) {
                        CHECK(error != NULL);
                        CHECK(strncmp(error, NAME ":", strlen(NAME ":")) == 0);
                        CHECK(strchr(error, '\n') == NULL);
                }
                free(error);
        }
        config_done(&before);
        return r;
}

static void check_text(const uint8_t *data, size_t size)
{
        struct apikeyd_config a, b;
        char *text = malloc(size + 1);
        int ra, rb;

        if (!text)
                return;
        memcpy(text, data, size);
        text[size] = '\0';

        ra = parse_once(text, &a);
        rb = parse_once(text, &b);
        CHECK(ra == rb);
        if (ra == 0) {
                CHECK(config_equal(&a, &b));
                /* The same options again on top of themselves: still accepted. */
                CHECK(config_parse_string(&a, text, NAME, NULL) == 0);
                CHECK(config_equal(&a, &b));
        }
        CHECK(config_parse_string(NULL, text, NAME, NULL) == -EINVAL);
        config_done(&a);
        config_done(&b);
        free(text);
}

static void check_file(const uint8_t *data, size_t size)
{
        struct apikeyd_config c;
        char path[64], *error = NULL;
        int fd, r;

        fd = memfd_create("fuzz.conf", MFD_CLOEXEC);
        if (fd < 0)
                return;
        if (size > 0 && write(fd, data, size) != (ssize_t)size) {
                close(fd);
                return;
        }
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (config_init_defaults(&c) < 0)
                abort();
        r = config_load_file(&c, path, false, &error);
        if (r == 0) {
                CHECK(memchr(data, '\0', size) == NULL);
                check_bounds(&c);
        } else if (r == -EINVAL) {
                CHECK(error && strncmp(error, path, strlen(path)) == 0);
        }
        free(error);
        config_done(&c);
        close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        check_text(data, size);
        check_file(data, size);
        return 0;
}
