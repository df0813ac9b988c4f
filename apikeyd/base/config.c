/* SPDX-License-Identifier: MIT */
/* Reading the daemon's configuration file; the format and options are in config.h. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "timeutil.h"
#include "token.h"

#define KIB UINT64_C(1024)
#define MIB (KIB * 1024)
#define GIB (MIB * 1024)
#define TIB (GIB * 1024)

#define DEFAULT_ADMIN_GROUP      "apikey-admin"
#define DEFAULT_FLEET_PREFIX     "/apikeyd/v1"
#define DEFAULT_AUDIT_MAX_EVENTS 100000
/* An eighth of the default max_connections (256); see config_reserved_connections(). */
#define DEFAULT_RESERVED_CONNECTIONS 32

/* Group names longer than this are not names any NSS module hands out. */
#define GROUP_NAME_MAX 256

/* How much of a refused value an error message quotes. */
#define QUOTE_MAX 64

enum option_kind {
        OPT_GROUP,
        OPT_PREFIX,
        OPT_BOOL,
        OPT_NUMBER,   /* an unsigned or uint64_t field, between min and max */
        OPT_DURATION, /* a uint64_t field in microseconds, between min and max */
        OPT_SIZE,     /* a size_t or uint64_t field in bytes, between min and max */
        OPT_MAX_LIFETIME,
        OPT_DEFAULT_LIFETIME,
        OPT_OFF_DURATION,    /* a uint64_t field in microseconds, or "off" (0) */
        OPT_FLEET_ENDPOINTS, /* a char * field: URLs, or "none" */
        OPT_FLEET_PREFIX,
        OPT_FLEET_HOST, /* a char * field: a name, or "%H" (NULL: the host name) */
        OPT_NAME,       /* a char * field: a name without blanks or controls, or "none" */
        OPT_PATH,       /* a char * field: an absolute path, or "none" */
        OPT_KEY_IDS,    /* a char * field: comma-separated key ids, or "none" */
        OPT_WARNINGS,   /* expiry_warnings: durations, or "none" */
};

struct option {
        const char *name;
        enum option_kind kind;
        size_t offset, size; /* of the field in struct apikeyd_config */
        uint64_t min, max;
        uint64_t zero_means;  /* for OPT_NUMBER: what a 0 in the file stands for, if not 0 */
        const char *expected; /* what a refused value is told it should have been */
};

#define FIELD(f) offsetof(struct apikeyd_config, f), sizeof(((struct apikeyd_config *)0)->f)

/* In the order of the table in config.h and of apikeyd.conf.example. */
static const struct option options[] = {
    {"admin_group", OPT_GROUP, FIELD(admin_group), 0, 0, 0, "expected a group name"},
    {"token_prefix", OPT_PREFIX, FIELD(token_prefix), 0, 0, 0,
     "expected 2 to 8 lowercase letters a-z"},
    {"users_may_create", OPT_BOOL, FIELD(users_may_create), 0, 0, 0, "expected yes or no"},
    {"user_max_keys", OPT_NUMBER, FIELD(user_max_keys), 0, 1000000, 0,
     "expected a number from 0 (unlimited) to 1000000"},
    {"user_max_lifetime", OPT_MAX_LIFETIME, FIELD(user_max_lifetime_usec), 0, 0, 0,
     "expected a duration such as 90d, or 'unlimited'"},
    {"user_default_lifetime", OPT_DEFAULT_LIFETIME, FIELD(user_default_lifetime_usec), 0, 0, 0,
     "expected a duration such as 30d, or 'never'"},
    {"max_lifetime", OPT_MAX_LIFETIME, FIELD(max_lifetime_usec), 0, 0, 0,
     "expected a duration such as 365d, or 'unlimited'"},
    {"disable_unused_after", OPT_OFF_DURATION, FIELD(disable_unused_after_usec), 0, 0, 0,
     "expected a duration such as 90d, or 'off'"},
    {"max_message_size", OPT_SIZE, FIELD(max_message_size), KIB, 16 * MIB, 0,
     "expected a size from 1K to 16M"},
    {"max_connections", OPT_NUMBER, FIELD(max_connections), 1, 65536, 0,
     "expected a number from 1 to 65536"},
    {"max_connections_per_uid", OPT_NUMBER, FIELD(max_connections_per_uid), 1, 65536, 0,
     "expected a number from 1 to 65536"},
    {"reserved_connections", OPT_NUMBER, FIELD(reserved_connections), 1, 65536, 0,
     "expected a number from 1 to 65536"},
    {"client_timeout", OPT_DURATION, FIELD(client_timeout_usec), USEC_PER_SEC, USEC_PER_HOUR, 0,
     "expected a duration from 1s to 1h"},
    {"last_used_flush_interval", OPT_DURATION, FIELD(last_used_flush_interval_usec), USEC_PER_SEC,
     USEC_PER_HOUR, 0, "expected a duration from 1s to 1h"},
    {"audit_max_events", OPT_NUMBER, FIELD(audit_max_events), 0, 1000000000,
     DEFAULT_AUDIT_MAX_EVENTS, "expected a number from 0 (the default) to 1000000000"},
    {"lockout_threshold", OPT_NUMBER, FIELD(lockout_threshold), 0, 1000000, 0,
     "expected a number from 0 (off) to 1000000"},
    {"lockout_window", OPT_DURATION, FIELD(lockout_window_usec), USEC_PER_SEC, 7 * USEC_PER_DAY, 0,
     "expected a duration from 1s to 7d"},
    /* 64T: x86-64 gives a process 128T of address space, and the map
     * must fit in it with everything else. */
    {"map_size", OPT_SIZE, FIELD(map_size), MIB, 64 * TIB, 0, "expected a size from 1M to 64T"},
    {"fleet_endpoints", OPT_FLEET_ENDPOINTS, FIELD(fleet_endpoints), 0, 0, 0,
     "expected 'none' or up to 16 comma-separated URLs http://host:port or https://host:port"},
    {"fleet_prefix", OPT_FLEET_PREFIX, FIELD(fleet_prefix), 0, 0, 0,
     "expected a path such as /apikeyd/v1: '/' and segments of A-Z a-z 0-9 . _ -, "
     "at most 128 characters"},
    {"fleet_host", OPT_FLEET_HOST, FIELD(fleet_host), 0, 0, 0,
     "expected '%H' (the host name) or 1 to 64 characters A-Z a-z 0-9 . _ -"},
    {"fleet_manage", OPT_BOOL, FIELD(fleet_manage), 0, 0, 0, "expected yes or no"},
    {"fleet_offline_max_age", OPT_DURATION, FIELD(fleet_offline_max_age_usec), USEC_PER_SEC,
     365 * USEC_PER_DAY, 0, "expected a duration from 1s to 365d"},
    {"fleet_last_used_interval", OPT_DURATION, FIELD(fleet_last_used_interval_usec), USEC_PER_SEC,
     USEC_PER_HOUR, 0, "expected a duration from 1s to 1h"},
    {"fleet_break_glass_keys", OPT_KEY_IDS, FIELD(fleet_break_glass_keys), 0, 0, 0,
     "expected 'none' or up to 16 comma-separated key ids"},
    {"fleet_user", OPT_NAME, FIELD(fleet_user), 0, 0, 0,
     "expected 'none' or a user name without blanks or control characters"},
    {"fleet_password_file", OPT_PATH, FIELD(fleet_password_file), 0, 0, 0,
     "expected 'none' or an absolute path"},
    {"fleet_cacert", OPT_PATH, FIELD(fleet_cacert), 0, 0, 0, "expected 'none' or an absolute path"},
    {"fleet_cert", OPT_PATH, FIELD(fleet_cert), 0, 0, 0, "expected 'none' or an absolute path"},
    {"fleet_key", OPT_PATH, FIELD(fleet_key), 0, 0, 0, "expected 'none' or an absolute path"},
    {"end_sessions", OPT_BOOL, FIELD(end_sessions), 0, 0, 0, "expected yes or no"},
    {"rotation_grace", OPT_DURATION, FIELD(rotation_grace_usec), 0, 365 * USEC_PER_DAY, 0,
     "expected 0 or a duration up to 365d"},
    {"usage_history", OPT_NUMBER, FIELD(usage_history), 0, 1000, 0,
     "expected a number from 0 (none) to 1000"},
    {"expiry_warnings", OPT_WARNINGS, FIELD(expiry_warnings_usec), USEC_PER_MIN, 365 * USEC_PER_DAY,
     0,
     "expected 'none' or up to 8 different durations from 1m to 365d, comma-separated, such as "
     "7d,1d"},
    {"expiry_cliff", OPT_NUMBER, FIELD(expiry_cliff), 0, 1000000, 0,
     "expected a number from 0 (no warning) to 1000000"},
};

/* The fields that own a string: copied with the config, freed with it. */
static const size_t string_fields[] = {
    offsetof(struct apikeyd_config, admin_group),
    offsetof(struct apikeyd_config, fleet_endpoints),
    offsetof(struct apikeyd_config, fleet_prefix),
    offsetof(struct apikeyd_config, fleet_host),
    offsetof(struct apikeyd_config, fleet_user),
    offsetof(struct apikeyd_config, fleet_password_file),
    offsetof(struct apikeyd_config, fleet_cacert),
    offsetof(struct apikeyd_config, fleet_cert),
    offsetof(struct apikeyd_config, fleet_key),
    offsetof(struct apikeyd_config, fleet_break_glass_keys),
};

static char **string_field(struct apikeyd_config *c, size_t offset)
{
        return (char **)(void *)((char *)c + offset);
}

const char *config_option_name(size_t i)
{
        return i < ELEMENTSOF(options) ? options[i].name : NULL;
}

int config_init_defaults(struct apikeyd_config *c)
{
        *c = (struct apikeyd_config){
            .token_prefix = TOKEN_DEFAULT_PREFIX,
            .users_may_create = true,
            .user_max_keys = 10,
            .user_max_lifetime_usec = 90 * USEC_PER_DAY,
            .user_default_lifetime_usec = 30 * USEC_PER_DAY,
            .max_message_size = 64 * KIB,
            .max_connections = 256,
            .max_connections_per_uid = 64,
            .client_timeout_usec = 10 * USEC_PER_SEC,
            .last_used_flush_interval_usec = 5 * USEC_PER_SEC,
            .audit_max_events = DEFAULT_AUDIT_MAX_EVENTS,
            .lockout_threshold = 10,
            .lockout_window_usec = 15 * USEC_PER_MIN,
            .rotation_grace_usec = 24 * USEC_PER_HOUR,
            .map_size = 4 * GIB,
            .fleet_offline_max_age_usec = 72 * USEC_PER_HOUR,
            .fleet_last_used_interval_usec = 60 * USEC_PER_SEC,
            .end_sessions = true,
            .usage_history = 20,
            .expiry_warnings_usec = {7 * USEC_PER_DAY, USEC_PER_DAY},
            .n_expiry_warnings = 2,
            .expiry_cliff = 10,
        };
        c->admin_group = strdup(DEFAULT_ADMIN_GROUP);
        c->fleet_prefix = strdup(DEFAULT_FLEET_PREFIX);
        return c->admin_group && c->fleet_prefix ? 0 : -ENOMEM;
}

void config_done(struct apikeyd_config *c)
{
        if (!c)
                return;
        for (size_t i = 0; i < ELEMENTSOF(string_fields); i++) {
                char **f = string_field(c, string_fields[i]);

                free(*f);
                *f = NULL;
        }
}

/* `to` as a copy of `from`, with copies of the strings it owns. */
static int config_copy(struct apikeyd_config *to, const struct apikeyd_config *from)
{
        *to = *from;
        for (size_t i = 0; i < ELEMENTSOF(string_fields); i++)
                *string_field(to, string_fields[i]) = NULL;
        for (size_t i = 0; i < ELEMENTSOF(string_fields); i++) {
                const char *s = *string_field((struct apikeyd_config *)from, string_fields[i]);

                if (s && !(*string_field(to, string_fields[i]) = strdup(s)))
                        return -ENOMEM;
        }
        return 0;
}

static bool is_blank(char c)
{
        return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static char ascii_lower(char c)
{
        return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool keyword_is(const char *s, const char *keyword)
{
        for (; *s && *keyword; s++, keyword++)
                if (ascii_lower(*s) != *keyword)
                        return false;
        return *s == *keyword;
}

static int parse_bool(const char *s, bool *ret)
{
        static const char *const yes[] = {"yes", "true", "on", "1"};
        static const char *const no[] = {"no", "false", "off", "0"};

        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                if (keyword_is(s, yes[i])) {
                        *ret = true;
                        return 0;
                }
                if (keyword_is(s, no[i])) {
                        *ret = false;
                        return 0;
                }
        }
        return -EINVAL;
}

/* Decimal digits only: no sign, no hex, no spaces, no strtoull() leniency. */
static int parse_digits(const char **p, uint64_t *ret)
{
        const char *s = *p;
        uint64_t v = 0;

        if (*s < '0' || *s > '9')
                return -EINVAL;
        for (; *s >= '0' && *s <= '9'; s++)
                if (__builtin_mul_overflow(v, 10, &v) ||
                    __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
                        return -ERANGE;
        *p = s;
        *ret = v;
        return 0;
}

static int parse_number(const char *s, uint64_t *ret)
{
        int r = parse_digits(&s, ret);

        if (r < 0)
                return r;
        return *s ? -EINVAL : 0;
}

static int parse_size(const char *s, uint64_t *ret)
{
        uint64_t v, unit = 1;
        int r;

        r = parse_digits(&s, &v);
        if (r < 0)
                return r;
        switch (*s) {
        case '\0':
                break;
        case 'K':
        case 'k':
                unit = KIB;
                break;
        case 'M':
        case 'm':
                unit = MIB;
                break;
        case 'G':
        case 'g':
                unit = GIB;
                break;
        case 'T':
        case 't':
                unit = TIB;
                break;
        default:
                return -EINVAL;
        }
        if (unit != 1 && s[1] != '\0')
                return -EINVAL;
        if (__builtin_mul_overflow(v, unit, &v))
                return -ERANGE;
        *ret = v;
        return 0;
}

static bool group_name_valid(const char *s)
{
        size_t len = strlen(s), digits = 0;

        if (len == 0 || len > GROUP_NAME_MAX)
                return false;
        /* Names from NSS (LDAP, AD) may hold spaces or non-ASCII letters;
         * what /etc/group cannot hold, or a config line should not, is out.
         * An all-digit name would read as a gid to anyone but us. */
        for (const char *p = s; *p; p++) {
                unsigned char ch = (unsigned char)*p;

                if (ch < 0x20 || ch == 0x7f || ch == ':' || ch == ',' || ch == '#')
                        return false;
                if (ch >= '0' && ch <= '9')
                        digits++;
        }
        return digits < len;
}

static bool is_name_char(char ch)
{
        return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
               ch == '.' || ch == '_' || ch == '-';
}

/* A path segment in etcd or a host's name there: not "." or "..", which read as paths. */
static bool segment_valid(const char *s, size_t len)
{
        if (len == 0 || (len <= 2 && strspn(s, ".") >= len))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!is_name_char(s[i]))
                        return false;
        return true;
}

static bool fleet_prefix_valid(const char *s)
{
        size_t len = strlen(s);

        if (len < 2 || len > CONFIG_FLEET_PREFIX_MAX || s[0] != '/')
                return false;
        for (const char *p = s + 1; *p;) {
                size_t n = strcspn(p, "/");

                if (!segment_valid(p, n))
                        return false;
                p += n;
                if (*p == '/')
                        p++;
                if (p[-1] == '/' && !*p)
                        return false; /* a trailing '/' */
        }
        return true;
}

/* One URL: http:// or https://, a host (a name, an IPv4 address or [IPv6]), an optional :port. */
static bool fleet_url_valid(const char *s, size_t len)
{
        size_t skip, host = 0;

        if (len > CONFIG_FLEET_URL_MAX)
                return false;
        if (len > 7 && strncmp(s, "http://", 7) == 0)
                skip = 7;
        else if (len > 8 && strncmp(s, "https://", 8) == 0)
                skip = 8;
        else
                return false;
        s += skip;
        len -= skip;
        if (len > 0 && s[0] == '[') {
                for (host = 1; host < len && s[host] != ']'; host++)
                        if (!((s[host] >= '0' && s[host] <= '9') ||
                              (s[host] >= 'a' && s[host] <= 'f') ||
                              (s[host] >= 'A' && s[host] <= 'F') || s[host] == ':' ||
                              s[host] == '.'))
                                return false;
                if (host == len || host == 1)
                        return false;
                host++;
        } else {
                while (host < len && (is_name_char(s[host]) && s[host] != '_'))
                        host++;
                if (host == 0)
                        return false;
        }
        if (host == len)
                return true;
        if (s[host] != ':' || host + 1 == len || len - host - 1 > 5)
                return false;
        uint64_t port = 0;
        for (size_t i = host + 1; i < len; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                port = port * 10 + (uint64_t)(s[i] - '0');
        }
        return port >= 1 && port <= 65535;
}

static bool fleet_endpoints_valid(const char *s)
{
        unsigned n = 0;

        for (const char *p = s;; p++) {
                size_t len = strcspn(p, ",");

                if (++n > CONFIG_FLEET_ENDPOINTS_MAX || !fleet_url_valid(p, len))
                        return false;
                p += len;
                if (!*p)
                        return true;
        }
}

static bool fleet_user_valid(const char *s)
{
        size_t len = strlen(s);

        if (len == 0 || len > 256)
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char)*p <= 0x20 || *p == 0x7f || *p == '#')
                        return false;
        return true;
}

static bool path_valid(const char *s)
{
        size_t len = strlen(s);

        if (len < 2 || len > 4096 || s[0] != '/')
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char)*p < 0x20 || *p == 0x7f || *p == '#')
                        return false;
        return true;
}

static bool key_ids_valid(const char *s)
{
        size_t n = 0;

        for (const char *p = s;; p++) {
                char id[TOKEN_ID_LEN + 1];
                size_t len = strcspn(p, ",");

                if (len != TOKEN_ID_LEN || ++n > CONFIG_FLEET_BREAK_GLASS_MAX)
                        return false;
                memcpy(id, p, len);
                id[len] = '\0';
                if (!token_id_valid(id))
                        return false;
                p += len;
                if (!*p)
                        return true;
        }
}

/* Set a string field to a copy of `value`, or to NULL. */
static int store_string(struct apikeyd_config *c, const struct option *o, const char *value)
{
        char **f = string_field(c, o->offset), *copy = NULL;

        if (value && !(copy = strdup(value)))
                return -ENOMEM;
        free(*f);
        *f = copy;
        return 0;
}

static void store_uint(struct apikeyd_config *c, const struct option *o, uint64_t v)
{
        void *field = (char *)c + o->offset;

        /* Every bound in the table fits the narrowest field it is used with. */
        if (o->size == sizeof(uint32_t)) {
                uint32_t v32 = (uint32_t)v;
                memcpy(field, &v32, sizeof(v32));
        } else if (o->size == sizeof(uint64_t)) {
                memcpy(field, &v, sizeof(v));
        }
}

/* expiry_warnings: "none", or durations between the option's bounds, kept longest first. */
static int parse_warnings(struct apikeyd_config *c, const struct option *o, const char *value)
{
        uint64_t w[CONFIG_EXPIRY_WARNINGS_MAX];
        char part[64];
        size_t n = 0;

        if (keyword_is(value, "none")) {
                c->n_expiry_warnings = 0;
                return 0;
        }
        for (const char *p = value;;) {
                size_t len = strcspn(p, ",");
                uint64_t v;

                if (n == CONFIG_EXPIRY_WARNINGS_MAX || len == 0 || len >= sizeof(part))
                        return -EINVAL;
                memcpy(part, p, len);
                part[len] = '\0';
                if (duration_parse(part, &v) < 0 || v < o->min || v > o->max)
                        return -EINVAL;
                /* In order, longest first; the same twice is a mistake. */
                size_t i = n++;
                for (; i > 0 && w[i - 1] < v; i--)
                        w[i] = w[i - 1];
                if (i > 0 && w[i - 1] == v)
                        return -EINVAL;
                w[i] = v;
                if (!p[len])
                        break;
                p += len + 1;
        }
        memcpy(c->expiry_warnings_usec, w, n * sizeof(w[0]));
        c->n_expiry_warnings = (unsigned)n;
        return 0;
}

/* Apply one value; -EINVAL if it is refused, -ENOMEM. */
static int option_apply(struct apikeyd_config *c, const struct option *o, const char *value)
{
        uint64_t v;
        bool b;
        int r;

        switch (o->kind) {
        case OPT_GROUP:
                if (!group_name_valid(value))
                        return -EINVAL;
                return store_string(c, o, value);
        case OPT_FLEET_ENDPOINTS:
                if (keyword_is(value, "none"))
                        return store_string(c, o, NULL);
                if (!fleet_endpoints_valid(value))
                        return -EINVAL;
                return store_string(c, o, value);
        case OPT_FLEET_PREFIX:
                if (!fleet_prefix_valid(value))
                        return -EINVAL;
                return store_string(c, o, value);
        case OPT_FLEET_HOST:
                if (STREQ(value, "%H"))
                        return store_string(c, o, NULL);
                if (strlen(value) > CONFIG_FLEET_HOST_MAX || !segment_valid(value, strlen(value)))
                        return -EINVAL;
                return store_string(c, o, value);
        case OPT_NAME:
        case OPT_PATH:
                if (keyword_is(value, "none"))
                        return store_string(c, o, NULL);
                if (o->kind == OPT_NAME ? !fleet_user_valid(value) : !path_valid(value))
                        return -EINVAL;
                return store_string(c, o, value);
        case OPT_KEY_IDS:
                if (keyword_is(value, "none"))
                        return store_string(c, o, NULL);
                if (!key_ids_valid(value))
                        return -EINVAL;
                return store_string(c, o, value);
        case OPT_PREFIX:
                if (!token_prefix_valid(value))
                        return -EINVAL;
                strcpy(c->token_prefix, value);
                return 0;
        case OPT_BOOL:
                r = parse_bool(value, &b);
                if (r < 0)
                        return -EINVAL;
                memcpy((char *)c + o->offset, &b, sizeof(b));
                return 0;
        case OPT_NUMBER:
                r = parse_number(value, &v);
                if (r < 0 || v < o->min || v > o->max)
                        return -EINVAL;
                store_uint(c, o, v == 0 && o->zero_means ? o->zero_means : v);
                return 0;
        case OPT_SIZE:
                r = parse_size(value, &v);
                if (r < 0 || v < o->min || v > o->max)
                        return -EINVAL;
                store_uint(c, o, v);
                return 0;
        case OPT_WARNINGS:
                return parse_warnings(c, o, value);
        case OPT_DURATION:
                /* "0" alone: none (where the minimum lets it be). */
                v = 0;
                r = STREQ(value, "0") ? 0 : duration_parse(value, &v);
                if (r < 0 || v < o->min || v > o->max)
                        return -EINVAL;
                store_uint(c, o, v);
                return 0;
        case OPT_MAX_LIFETIME:
        case OPT_DEFAULT_LIFETIME:
        case OPT_OFF_DURATION:
                /* 0 is the "no limit"/"no expiry"/"off" sentinel, so it is
                 * only reachable through the keyword, never through "0s". */
                if (keyword_is(value, o->kind == OPT_MAX_LIFETIME       ? "unlimited"
                                      : o->kind == OPT_DEFAULT_LIFETIME ? "never"
                                                                        : "off"))
                        v = 0;
                else if (duration_parse(value, &v) < 0 || v == 0)
                        return -EINVAL;
                store_uint(c, o, v);
                return 0;
        }
        return -EINVAL;
}

/* `s` for an error message: bounded, and with nothing that could drive a terminal. */
static void quote(const char *s, char *ret, size_t size)
{
        size_t used = 0, n = 0;

        for (; *s && n < QUOTE_MAX && used + 5 < size; s++, n++) {
                unsigned char ch = (unsigned char)*s;

                if (ch >= 0x20 && ch < 0x7f)
                        ret[used++] = (char)ch;
                else
                        used += (size_t)snprintf(ret + used, size - used, "\\x%02x", ch);
        }
        if (*s && used + 4 <= size) {
                memcpy(ret + used, "...", 3);
                used += 3;
        }
        ret[used] = '\0';
}

#define QUOTE_BUF (QUOTE_MAX * 4 + 4)

_printf_(4, 5) static int fail_at(char **ret_error, const char *name, unsigned line,
                                  const char *fmt, ...)
{
        _cleanup_free_ char *problem = NULL;
        va_list ap;
        int r;

        if (!ret_error)
                return -EINVAL;
        va_start(ap, fmt);
        r = vasprintf(&problem, fmt, ap);
        va_end(ap);
        if (r < 0) {
                problem = NULL;
                return -ENOMEM;
        }
        if (asprintf(ret_error, "%s:%u: %s", name, line, problem) < 0) {
                *ret_error = NULL;
                return -ENOMEM;
        }
        return -EINVAL;
}

static const struct option *option_find(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                if (STREQ(options[i].name, name))
                        return &options[i];
        return NULL;
}

static int parse_line(struct apikeyd_config *c, unsigned seen[], const char *start, size_t len,
                      const char *name, unsigned line, char **ret_error)
{
        _cleanup_free_ char *copy = NULL;
        char *key, *value, *eq, *end;
        const struct option *o;
        char q[QUOTE_BUF];
        size_t idx;
        int r;

        copy = strndup(start, len);
        if (!copy)
                return -ENOMEM;

        key = copy;
        while (is_blank(*key))
                key++;
        if (*key == '\0' || *key == '#')
                return 0;

        eq = strchr(key, '=');
        if (!eq)
                return fail_at(ret_error, name, line, "expected 'option = value'");
        value = eq + 1;
        for (end = eq; end > key && is_blank(end[-1]); end--)
                ;
        *end = '\0';
        while (is_blank(*value))
                value++;
        for (end = value + strlen(value); end > value && is_blank(end[-1]); end--)
                ;
        *end = '\0';

        if (*key == '\0')
                return fail_at(ret_error, name, line, "missing option name before '='");
        o = option_find(key);
        if (!o) {
                quote(key, q, sizeof(q));
                return fail_at(ret_error, name, line, "unknown option '%s'", q);
        }
        idx = (size_t)(o - options);
        if (seen[idx] > 0)
                return fail_at(ret_error, name, line, "option '%s' is already set on line %u",
                               o->name, seen[idx]);
        seen[idx] = line;
        if (*value == '\0')
                return fail_at(ret_error, name, line, "missing value for option '%s'", o->name);

        r = option_apply(c, o, value);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                quote(value, q, sizeof(q));
                return fail_at(ret_error, name, line, "invalid value '%s' for %s: %s%s", q, o->name,
                               o->expected,
                               strchr(value, '#') ? " (a comment must be on a line of its own)"
                                                  : "");
        }
        return 0;
}

static size_t option_index(const char *name)
{
        return (size_t)(option_find(name) - options);
}

/* The two lifetimes limit each other; see user_default_lifetime in config.h. */
static int check_lifetimes(struct apikeyd_config *c, const unsigned seen[], const char *name,
                           char **ret_error)
{
        unsigned default_line = seen[option_index("user_default_lifetime")];
        uint64_t max = c->user_max_lifetime_usec, def = c->user_default_lifetime_usec;
        char a[DURATION_FORMAT_MAX], b[DURATION_FORMAT_MAX];

        if (max == 0 || (def != 0 && def <= max))
                return 0;
        if (default_line == 0) {
                c->user_default_lifetime_usec = max;
                return 0;
        }
        if (duration_format(max, b, sizeof(b)) < 0)
                return -EINVAL;
        if (def == 0)
                return fail_at(ret_error, name, default_line,
                               "user_default_lifetime cannot be 'never' while "
                               "user_max_lifetime is %s",
                               b);
        if (duration_format(def, a, sizeof(a)) < 0)
                return -EINVAL;
        return fail_at(ret_error, name, default_line,
                       "user_default_lifetime (%s) is longer than user_max_lifetime (%s)", a, b);
}

unsigned config_reserved_connections(const struct apikeyd_config *c)
{
        unsigned eighth = c->max_connections / 8 > 0 ? c->max_connections / 8 : 1;

        if (c->reserved_connections != 0)
                return c->reserved_connections;
        return eighth < DEFAULT_RESERVED_CONNECTIONS ? eighth : DEFAULT_RESERVED_CONNECTIONS;
}

/* The reserve is carved out of max_connections, so it cannot be larger. */
static int check_connections(const struct apikeyd_config *c, const unsigned seen[],
                             const char *name, char **ret_error)
{
        unsigned reserved_line = seen[option_index("reserved_connections")];

        if (c->reserved_connections <= c->max_connections)
                return 0;
        /* An earlier file's reserve that this file's max_connections cuts
         * below is an error too, named where the reserve is set now or not. */
        return fail_at(ret_error, name,
                       reserved_line ? reserved_line : seen[option_index("max_connections")],
                       "reserved_connections (%u) is more than max_connections (%u)",
                       c->reserved_connections, c->max_connections);
}

/* Options that only work together: a user needs a password, a certificate its key. */
static int check_fleet_pairs(const struct apikeyd_config *c, const unsigned seen[],
                             const char *name, char **ret_error)
{
        static const char *const pairs[][2] = {
            {"fleet_user", "fleet_password_file"},
            {"fleet_password_file", "fleet_user"},
            {"fleet_cert", "fleet_key"},
            {"fleet_key", "fleet_cert"},
        };

        for (size_t i = 0; i < ELEMENTSOF(pairs); i++) {
                const struct option *a = option_find(pairs[i][0]), *b = option_find(pairs[i][1]);
                unsigned line = seen[a - options];

                if (*string_field((struct apikeyd_config *)c, a->offset) &&
                    !*string_field((struct apikeyd_config *)c, b->offset))
                        return fail_at(ret_error, name, line ? line : seen[b - options],
                                       "%s is set but %s is not: set both, or neither", a->name,
                                       b->name);
        }
        return 0;
}

int config_parse_string(struct apikeyd_config *c, const char *text, const char *name_for_errors,
                        char **ret_error)
{
        _cleanup_(config_done) struct apikeyd_config next = {};
        unsigned seen[ELEMENTSOF(options)] = {};
        const char *name = name_for_errors ? name_for_errors : "(config)";
        const char *p = text;
        unsigned line = 0;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!c || !text)
                return -EINVAL;

        /* Work on a copy, so that a file with an error is not half applied. */
        r = config_copy(&next, c);
        if (r < 0)
                return r;

        /* Editors on other systems start files with a UTF-8 byte order mark. */
        if (strncmp(p, "\xEF\xBB\xBF", 3) == 0)
                p += 3;

        while (*p) {
                const char *eol = strchrnul(p, '\n');

                line++;
                r = parse_line(&next, seen, p, (size_t)(eol - p), name, line, ret_error);
                if (r < 0)
                        return r;
                p = *eol ? eol + 1 : eol;
        }

        r = check_lifetimes(&next, seen, name, ret_error);
        if (r < 0)
                return r;
        r = check_connections(&next, seen, name, ret_error);
        if (r < 0)
                return r;
        r = check_fleet_pairs(&next, seen, name, ret_error);
        if (r < 0)
                return r;

        config_done(c);
        *c = next;
        next = (struct apikeyd_config){};
        return 0;
}

static int fail_errno(char **ret_error, const char *path, int r)
{
        char buf[256];

        if (ret_error && asprintf(ret_error, "%s: %s", path, strerror_r(-r, buf, sizeof(buf))) < 0)
                *ret_error = NULL;
        return r;
}

/* The whole file, NUL-terminated; -EFBIG beyond CONFIG_FILE_MAX. */
static int read_file(const char *path, char **ret, size_t *ret_len)
{
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, allocated = 0;
        struct stat st;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (S_ISDIR(st.st_mode))
                return -EISDIR;

        for (;;) {
                ssize_t n;

                if (allocated - len < 2) {
                        size_t grow = allocated ? allocated * 2 : 4096;
                        char *b;

                        /* One byte beyond the limit shows that the file exceeds it. */
                        if (grow > CONFIG_FILE_MAX + 2)
                                grow = CONFIG_FILE_MAX + 2;
                        if (grow <= allocated)
                                return -EFBIG;
                        b = realloc(buf, grow);
                        if (!b)
                                return -ENOMEM;
                        buf = b;
                        allocated = grow;
                }
                n = read(fd, buf + len, allocated - len - 1);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len > CONFIG_FILE_MAX)
                        return -EFBIG;
        }
        if (!buf) {
                buf = strdup("");
                if (!buf)
                        return -ENOMEM;
        }
        buf[len] = '\0';
        *ret = TAKE_PTR(buf);
        *ret_len = len;
        return 0;
}

int config_load_file(struct apikeyd_config *c, const char *path, bool missing_ok, char **ret_error)
{
        _cleanup_free_ char *text = NULL;
        const char *nul;
        size_t len = 0;
        int r;

        if (ret_error)
                *ret_error = NULL;
        if (!c || !path)
                return -EINVAL;

        r = read_file(path, &text, &len);
        if (r == -ENOENT && missing_ok)
                return 0;
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return fail_errno(ret_error, path, r);

        /* Everything after a NUL would silently be ignored. */
        nul = memchr(text, '\0', len);
        if (nul) {
                unsigned line = 1;

                for (const char *p = text; p < nul; p++)
                        line += *p == '\n';
                return fail_at(ret_error, path, line, "NUL byte in the file");
        }

        return config_parse_string(c, text, path, ret_error);
}
