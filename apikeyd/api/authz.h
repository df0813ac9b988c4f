/* SPDX-License-Identifier: MIT */
/*
 * Who may do what: every authorization decision of the daemon is made here.
 *
 * A principal is either the connecting process (by its peer credentials:
 * uid 0 and members of the admin group are admins, everybody else manages
 * the keys they own, within the self-service policy) or an API key given in
 * a call's `auth` (the call then acts with that key: an admin-role key is
 * an admin, any other manages its owner's keys with its permissions).
 *
 * The invariant: no caller obtains, through any call, an authority it does
 * not hold.  So:
 *   - a key created or changed by a caller acting with a key gets at most
 *     that key's permissions, a scope within its scope (empty = any, the
 *     widest), an expiry no later than its expiry, a not_before no earlier
 *     than its not_before and sources within its sources (none = from
 *     anywhere, the widest); no key widens itself;
 *   - a key's conditions (not_before, sources) are loosened only by an
 *     admin: others may add or narrow them, never move not_before earlier
 *     or let in a host the key's sources do not;
 *   - a key with sources cannot act as `auth`: a call over the local
 *     socket comes from no host; nor a key before its not_before;
 *   - users hold every permission but `invite` on their own keys, and
 *     cannot grant the admin role;
 *   - only an admin or the owner themself creates a key that logs in as the
 *     owner or manages the owner's keys: a key created through `invite` for
 *     another owner is marked KEY_FLAG_NO_LOGIN (Verify with `user` refuses
 *     it, and it cannot act as `auth`);
 *   - a key disabled by an admin is enabled again only by an admin.
 *
 * Decisions return 0, -EPERM (PermissionDenied) or -EDQUOT
 * (PolicyViolation), with a sentence for the caller in `*ret_reason`.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "macro.h"
#include "record.h"
#include "server.h"

struct principal {
        uid_t uid; /* the connecting process */
        bool admin;
        bool by_key;                   /* acting with an API key */
        char key_id[TOKEN_ID_LEN + 1]; /* when by_key */
        char owner[KEY_OWNER_MAX + 1]; /* whose keys it manages; "" if uid has no name */
        uint8_t permissions;
        /* For the audit log and created_by: "uid=1000(alice)", or with a key
         * "key=7Hq2LmX9aB3z(ops) uid=1000(alice)", the key and who used it. */
        char actor[KEY_OWNER_MAX + 32];
        /* When by_key: the ceiling of what it may give a key. */
        uint64_t expires_at; /* 0 = never */
        size_t n_scope;      /* 0 = any service */
        char scope[KEY_SCOPE_MAX][KEY_SCOPE_ENTRY_MAX + 1];
        uint64_t not_before; /* 0 = none */
        size_t n_sources;    /* 0 = from anywhere */
        char sources[KEY_SOURCES_MAX][KEY_SOURCE_ENTRY_MAX + 1];
        unsigned depth; /* the keys it was itself created through */
        /* When by_key: its rate limit, which a key given through it is held to. */
        uint32_t rate_limit_count; /* 0 = none */
        uint64_t rate_limit_window;
};

enum authz_action {
        AUTHZ_READ,          /* Get, List */
        AUTHZ_UPDATE,        /* Update */
        AUTHZ_TOGGLE,        /* Disable, Enable (see also authz_check_enable()) */
        AUTHZ_REVOKE,        /* Revoke */
        AUTHZ_DELETE,        /* Delete */
        AUTHZ_SHARED_SECRET, /* GetSharedSecret, RotateSharedSecret: admins only */
        AUTHZ_AUDIT,         /* ListAudit: admins only */
        AUTHZ_LOCKOUT,       /* ListLockouts, ResetLockout: admins only */
        AUTHZ_BACKUP,        /* Backup: admins only */
};

struct authz_policy {
        const char *admin_group;
        bool users_may_create;
        uint64_t user_max_keys;         /* 0 = unlimited */
        uint64_t user_max_lifetime;     /* µs; 0 = unlimited */
        uint64_t user_default_lifetime; /* µs; 0 = never expires */
        uint64_t max_lifetime;          /* µs, every key's, admins' too; 0 = unlimited */
};

/* What a Create or an Update would give a key. */
enum authz_grant_fields {
        AUTHZ_GRANT_ROLE = 1u << 0, /* role and permissions */
        AUTHZ_GRANT_SCOPE = 1u << 1,
        AUTHZ_GRANT_EXPIRES = 1u << 2,
        AUTHZ_GRANT_NOT_BEFORE = 1u << 3,
        AUTHZ_GRANT_SOURCES = 1u << 4,
        AUTHZ_GRANT_RATE = 1u << 5,     /* rate_limit */
        AUTHZ_GRANT_MAX_USES = 1u << 6, /* max_uses */
        AUTHZ_GRANT_ALL = 0x7f,
};

struct authz_grant {
        unsigned fields; /* which of the below the call sets; Create sets all */
        const char *owner;
        uint8_t role;
        uint8_t permissions;
        const char *const *scope;
        size_t n_scope;      /* 0 = any service */
        uint64_t expires_at; /* 0 = never */
        uint64_t not_before; /* 0 = none */
        const char *const *sources;
        size_t n_sources;          /* 0 = from anywhere */
        uint32_t rate_limit_count; /* 0 = none */
        uint64_t rate_limit_window;
        uint64_t max_uses; /* 0 = no limit */
        /* Update: the key as it is, so that what the call adds to it can be
         * told from what it keeps.  NULL for Create. */
        const struct key_record *before;
};

/*
 * A principal that holds nothing (no admin, no permission, no owner, no
 * key), for calls that act as nobody (Verify); set field by field, without
 * clearing the scope's storage, which such a principal never reads.
 */
void authz_principal_none(struct principal *p);

/* The principal for a connecting process; -ENOMEM or 0. */
int authz_principal_from_caller(const struct caller *caller, const char *admin_group,
                                struct principal *ret) _warn_unused_;

/*
 * The principal for an API key that verified (`rec`, called by a process
 * with `uid`).  The key must be usable for managing keys: enabled, not
 * expired, not suspended (`blocked`: a key it was created through is not
 * enabled; see keystore_lineage(), which also gives `depth`), not created
 * through `invite` for another owner, and its scope empty or including
 * "apikeyd".
 */
int authz_principal_from_key(const struct key_record *rec, bool blocked, unsigned depth, uid_t uid,
                             uint64_t now, struct principal *ret,
                             const char **ret_reason) _warn_unused_;

/* May `p` do `action` to a key owned by `owner`? */
int authz_check(const struct principal *p, enum authz_action action, const char *owner,
                const char **ret_reason) _warn_unused_;

/* May `p` enable `rec` (which it may toggle)?  Not if an admin disabled it and `p` is none. */
int authz_check_enable(const struct principal *p, const struct key_record *rec,
                       const char **ret_reason) _warn_unused_;

/*
 * May `p` do `action` (AUTHZ_TOGGLE, AUTHZ_REVOKE, AUTHZ_DELETE) to `rec`,
 * giving it `status` (0 for a delete)?  The checks of Disable, Enable,
 * Revoke and Delete on one key, together: authz_check() on its owner,
 * then, for an enable, authz_check_enable().  The bulk changes ask it of
 * every key they match.
 */
int authz_check_status_change(const struct principal *p, enum authz_action action,
                              enum key_status status, const struct key_record *rec,
                              const char **ret_reason) _warn_unused_;

/*
 * Whether a status change counts as an admin's (keystore_change_status()'s
 * `by_admin`): an admin's Disable of a key that is not its own marks the
 * key so that only an admin enables it again; any admin may enable it.
 */
bool authz_status_by_admin(const struct principal *p, enum key_status status, const char *owner);

/*
 * The scope a new key gets when the call names none, into `ret` (pointing
 * into `p`): any service, but never wider than the acting key's scope.
 */
size_t authz_default_scope(const struct principal *p, const char *ret[KEY_SCOPE_MAX]);

/*
 * The rate limit a new key gets when the call names none: the acting key's
 * (none without one).
 */
void authz_default_rate_limit(const struct principal *p, uint32_t *ret_count, uint64_t *ret_window);
/*
 * The expiry a new key gets when the call names none: never for admins
 * (their own), the installation's default lifetime for users, and never
 * later than the acting key's own expiry.
 */
uint64_t authz_default_expiry(const struct principal *p, const struct authz_policy *policy,
                              uint64_t now);

/*
 * The conditions a new key gets when the call names none, into `ret_*`
 * (sources pointing into `p`): those of the acting key, none otherwise.
 */
void authz_default_conditions(const struct principal *p, uint64_t *ret_not_before,
                              const char *ret_sources[KEY_SOURCES_MAX], size_t *ret_n_sources);

/*
 * May a key get `expires_at` (0 = never) under the installation's
 * max_lifetime, whoever asks?  Checked by authz_check_grant() on Create
 * and Update, and for any other call that sets an expiry (Rotate's
 * successor).  0 or -EDQUOT naming the setting.
 */
int authz_check_lifetime(const struct authz_policy *policy, uint64_t expires_at, uint64_t now,
                         const char **ret_reason) _warn_unused_;

/*
 * May `p` give a key the fields of `g` that it sets?  Checked on Create
 * and on Update.  `*ret_flags` (Create) gets the enum key_flag bits the new
 * key must carry (KEY_FLAG_NO_LOGIN for an invited key).
 */
int authz_check_grant(const struct principal *p, const struct authz_policy *policy,
                      const struct authz_grant *g, uint64_t now, uint8_t *ret_flags,
                      const char **ret_reason) _warn_unused_;

/* Why a user may not create another key; also when the keystore counts (-EDQUOT). */
#define AUTHZ_REASON_USER_MAX_KEYS                                                                 \
        "you have as many keys as users may have (user_max_keys); revoke or delete one first"

/*
 * Why a key may not be created through invite for its owner: the keys
 * invited for that owner are as many as users may have.  They are counted
 * apart from the owner's own keys (keystore_put_key_limited()), so that
 * inviting keys for someone never uses up what they may create themself.
 * The answer names the owner (authz_invited_max_keys_reason()).
 */
#define AUTHZ_REASON_INVITED_MAX_KEYS                                                              \
        "the owner has as many keys created through invite as users may have (user_max_keys)"

/* The same, naming `owner` and the limit `max`, in `buf` of `size` bytes. */
const char *authz_invited_max_keys_reason(const char *owner, uint64_t max, char *buf, size_t size);

/* Why the owner may not enable a key; also when the write finds it so (-EPERM). */
#define AUTHZ_REASON_ADMIN_DISABLED "an admin disabled this key; only an admin may enable it"

/*
 * May `p` create such a key, whose owner has `n_owned` keys that are not
 * revoked, of the kind it would be (created through invite for the owner,
 * or not: see AUTHZ_REASON_INVITED_MAX_KEYS)?  The create permission, the
 * self-service policy, the depth of keys created through keys, then
 * authz_check_grant().
 */
int authz_check_create(const struct principal *p, const struct authz_policy *policy,
                       const struct authz_grant *g, uint64_t now, uint64_t n_owned,
                       uint8_t *ret_flags, const char **ret_reason) _warn_unused_;
