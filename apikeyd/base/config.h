/* SPDX-License-Identifier: MIT */
/*
 * The daemon's configuration file, /etc/apikeyd/apikeyd.conf.
 *
 * Format: one `option = value` per line; spaces and tabs around the option
 * and the value are ignored; a line whose first non-blank character is '#'
 * is a comment (only whole lines: a '#' after a value is part of the value,
 * and is refused by every option); blank lines are ignored; CRLF line ends
 * and a leading UTF-8 byte order mark are accepted.  Option names are
 * lower case; keywords in values (yes, no, never, unlimited ...) are
 * matched in any case.  An unknown option, an option given twice, a line
 * without '=', an empty value or a value out of range is an error naming
 * the file and line: "/etc/apikeyd/apikeyd.conf:7: unknown option
 * 'admin_grup'".  A file that is wrong is never half applied.
 *
 * Durations are a number and a unit, s m h d w, combinable: 45s, 90m, 12h,
 * 30d, 1d12h (timeutil.h).  Sizes are bytes, or a number with K, M, G or T
 * (powers of 1024).
 *
 * Options (name, default, meaning):
 *
 *   admin_group               apikey-admin  members of this group (and root) are admins
 *   token_prefix              apk           prefix of new tokens, 2-8 letters a-z
 *   users_may_create          yes           may users who are not admins create keys
 *                                           for themselves (yes/no, true/false, on/off, 1/0)
 *   user_max_keys             10            keys (not revoked) a user who is not an admin
 *                                           may own; 0 = unlimited
 *   user_max_lifetime         90d           longest lifetime of a key users create for
 *                                           themselves; a duration or "unlimited"
 *   user_default_lifetime     30d           lifetime of such a key when the user gives no
 *                                           expiry; a duration, or "never" when
 *                                           user_max_lifetime is unlimited; if only
 *                                           user_max_lifetime is set and is shorter,
 *                                           this follows it down
 *   max_lifetime              unlimited     longest lifetime of any key, admins' too:
 *                                           Create and Update refuse a later expiry or
 *                                           none; a key created without an expiry gets
 *                                           this one; a duration or "unlimited"
 *   disable_unused_after      off           a key not used for this long (since it was
 *                                           created or last used) is disabled by the
 *                                           daemon, reason "unused"; a duration or "off"
 *   max_message_size          64K           largest Varlink message accepted, 1K-16M
 *   max_connections           256           concurrent client connections, 1-65536
 *   max_connections_per_uid   64            concurrent connections of one user, 1-65536
 *   reserved_connections      32            of max_connections, kept for root and the
 *                                           daemon's own user: other users together hold
 *                                           at most max_connections minus this, each at
 *                                           most max_connections_per_uid; root and the
 *                                           daemon's user only count against
 *                                           max_connections; 1 to max_connections; not
 *                                           set: 32, or an eighth of max_connections
 *                                           (at least 1) when that is less
 *   client_timeout            10s           a client idle or stalled mid-message this
 *                                           long is disconnected, 1s-1h
 *   last_used_flush_interval  5s            how often batched last-used times are
 *                                           written, 1s-1h
 *   audit_max_events          100000        audit events kept, oldest dropped first;
 *                                           0 = the default
 *   lockout_threshold         10            failed verifications within lockout_window
 *                                           before further attempts are RATE_LIMITED;
 *                                           0 = no lockout
 *   lockout_window            15m           see lockout_threshold, 1s-7d
 *   map_size                  4G            LMDB map size (the largest the keystore
 *                                           may grow to before it is resized), >= 1M
 *   fleet_endpoints           none          etcd members' client URLs (http:// or
 *                                           https://), comma-separated, at most 16;
 *                                           fleet mode is on when set
 *   fleet_prefix              /apikeyd/v1   where in etcd the fleet's keys live: '/'
 *                                           and path segments of A-Z a-z 0-9 . _ -
 *   fleet_host                %H            this host's name in the fleet; %H = the
 *                                           host name; 1-64 of A-Z a-z 0-9 . _ -
 *   fleet_manage              no            whether management calls here write to
 *                                           etcd (yes) or are refused (no)
 *   fleet_offline_max_age     72h           how long known keys stay valid without
 *                                           contact with etcd, 1s-365d
 *   fleet_last_used_interval  60s           how often this host's last uses go to etcd,
 *                                           1s-1h
 *   fleet_break_glass_keys    none          key ids (up to 16, comma-separated) that stay
 *                                           valid past fleet_offline_max_age
 *   fleet_user                none          etcd user name (with fleet_password_file)
 *   fleet_password_file       none          file holding that user's password
 *   fleet_cacert              none          CA bundle that signs the members' certificates
 *                                           (none: the system's)
 *   fleet_cert                none          client certificate for etcd (with fleet_key)
 *   fleet_key                 none          its private key
 *   end_sessions              yes           end the login sessions a key opened when it
 *                                           is revoked, disabled, deleted or expires
 *   rotation_grace            24h           how long a rotated key keeps working beside
 *                                           its successor when Rotate names no grace;
 *                                           0 (none) to 365d
 *   usage_history             20            uses each key keeps in its usage history,
 *                                           0-1000; 0 = none
 *   expiry_warnings           7d,1d         how long before a key expires a journal
 *                                           event warns of it: up to 8 durations,
 *                                           comma-separated, 1m-365d; or "none"
 *   expiry_cliff              10            apikeyctl status warns when more keys than
 *                                           this expire on the same day; 0 = never
 *
 * apikeyd.conf.example lists the same options with their defaults; a unit
 * test keeps the three (this table, the example, the code) in step.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"
#include "token.h"

#define APIKEYD_CONFIG_FILE "/etc/apikeyd/apikeyd.conf"

/* Config files larger than this are refused rather than read. */
#define CONFIG_FILE_MAX (1024 * 1024)

#define CONFIG_EXPIRY_WARNINGS_MAX 8

struct apikeyd_config {
        char *admin_group; /* owned */
        char token_prefix[TOKEN_PREFIX_MAX + 1];
        bool users_may_create;
        unsigned user_max_keys;              /* 0 = unlimited */
        uint64_t user_max_lifetime_usec;     /* 0 = unlimited */
        uint64_t user_default_lifetime_usec; /* 0 = never expires */
        uint64_t max_lifetime_usec;          /* every key's; 0 = unlimited */
        uint64_t disable_unused_after_usec;  /* 0 = off */
        size_t max_message_size;             /* bytes */
        unsigned max_connections;
        unsigned max_connections_per_uid;
        unsigned reserved_connections; /* 0 = not set: see config_reserved_connections() */
        uint64_t client_timeout_usec;
        uint64_t last_used_flush_interval_usec;
        uint64_t audit_max_events;  /* never 0: 0 in the file means the default */
        unsigned lockout_threshold; /* 0 = off */
        uint64_t lockout_window_usec;
        uint64_t map_size; /* bytes */
        /* Fleet mode (on when fleet_endpoints is set); strings owned, NULL = none. */
        char *fleet_endpoints;
        char *fleet_prefix; /* never NULL */
        char *fleet_host;   /* NULL = the host name */
        bool fleet_manage;
        uint64_t fleet_offline_max_age_usec;
        uint64_t fleet_last_used_interval_usec;
        char *fleet_break_glass_keys; /* comma-separated key ids; NULL = none */
        char *fleet_user;
        char *fleet_password_file;
        char *fleet_cacert;
        char *fleet_cert;
        char *fleet_key;
        bool end_sessions;            /* end a key's login sessions when it stops being usable */
        uint64_t rotation_grace_usec; /* Rotate's default grace; 0 = none */
        unsigned usage_history;
        /* Longest first, no two alike; n_expiry_warnings 0 = none. */
        uint64_t expiry_warnings_usec[CONFIG_EXPIRY_WARNINGS_MAX];
        unsigned n_expiry_warnings;
        unsigned expiry_cliff; /* 0 = no warning */
};

#define CONFIG_FLEET_ENDPOINTS_MAX   16
#define CONFIG_FLEET_URL_MAX         256
#define CONFIG_FLEET_PREFIX_MAX      128
#define CONFIG_FLEET_HOST_MAX        64
#define CONFIG_FLEET_BREAK_GLASS_MAX 16

/*
 * Fill `c` with the defaults in the table above.  Returns 0 or -ENOMEM;
 * in both cases config_done() may be called on it.
 */
int config_init_defaults(struct apikeyd_config *c) _warn_unused_;

/* Free what `c` owns; it may then be initialised again. */
void config_done(struct apikeyd_config *c);

/*
 * Apply the settings in `text` to `c` (which holds defaults or an earlier
 * file's settings).  `name_for_errors` names the text in messages.  On
 * error `c` is unchanged, `*ret_error` (if non-NULL) gets a malloc'd
 * message "<name>:<line>: <problem>", and the result is -EINVAL (or
 * -ENOMEM, with no message).
 */
int config_parse_string(struct apikeyd_config *c, const char *text, const char *name_for_errors,
                        char **ret_error) _warn_unused_;

/*
 * Read the file at `path` and apply it as config_parse_string() does.  A
 * file that does not exist is fine when `missing_ok` (0, `c` unchanged);
 * otherwise, and for any other failure to read it, the result is the
 * negative errno and the message is "<path>: <strerror>".  A file with a
 * NUL byte in it, or larger than CONFIG_FILE_MAX, is refused.
 */
int config_load_file(struct apikeyd_config *c, const char *path, bool missing_ok,
                     char **ret_error) _warn_unused_;

/*
 * The connections kept for root and the daemon's user, from 1 to
 * max_connections: reserved_connections, or when that is not set, what
 * the table above says for its default (computed from max_connections as
 * it is now, so it follows max_connections down).
 */
unsigned config_reserved_connections(const struct apikeyd_config *c);

/* The name of option `i`, in the order of the table above; NULL past the last. */
const char *config_option_name(size_t i);
