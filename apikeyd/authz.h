/* SPDX-License-Identifier: MIT */
/*
 * Who may do what: every authorization decision of the daemon is made here.
 *
 * A principal is either the connecting process (by its peer credentials:
 * uid 0 and members of the admin group are admins, everybody else manages
 * the keys they own, within the self-service policy) or an API key given in
 * a call's `auth` (the call then acts with that key: an admin-role key is
 * an admin, any other manages its owner's keys with its permissions; with
 * `invite` it may also create keys for other owners who are not admins).
 * No principal can create or grant a permission it does not hold: users
 * hold every permission but `invite` on their own keys.
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
};

enum authz_action {
        AUTHZ_READ,          /* Get, List */
        AUTHZ_UPDATE,        /* Update */
        AUTHZ_TOGGLE,        /* Disable, Enable */
        AUTHZ_REVOKE,        /* Revoke */
        AUTHZ_DELETE,        /* Delete */
        AUTHZ_SHARED_SECRET, /* GetSharedSecret, RotateSharedSecret: admins only */
        AUTHZ_AUDIT,         /* ListAudit: admins only */
        AUTHZ_LOCKOUT,       /* ListLockouts, ResetLockout: admins only */
};

struct authz_policy {
        const char *admin_group;
        bool users_may_create;
        uint64_t user_max_keys;     /* 0 = unlimited */
        uint64_t user_max_lifetime; /* µs; 0 = unlimited */
};

/* The principal for a connecting process; -ENOMEM or 0. */
int authz_principal_from_caller(const struct caller *caller, const char *admin_group,
                                struct principal *ret) _warn_unused_;

/*
 * The principal for an API key that verified (`rec`, called by a process
 * with `uid`).  The key must be usable for managing keys: enabled, not
 * expired, and its scope empty or including "apikeyd".
 */
int authz_principal_from_key(const struct key_record *rec, uid_t uid, uint64_t now,
                             struct principal *ret, const char **ret_reason) _warn_unused_;

/* May `p` do `action` to a key owned by `owner`? */
int authz_check(const struct principal *p, enum authz_action action, const char *owner,
                const char **ret_reason) _warn_unused_;

/*
 * May `p` give a key of `owner` this role, these permissions and this
 * expiry (0 = never)?  Checked on Create and on Update, where a role or a
 * lifetime could otherwise be raised beyond what the principal may grant.
 */
int authz_check_grant(const struct principal *p, const struct authz_policy *policy,
                      const char *owner, uint8_t role, uint8_t permissions, uint64_t expires_at,
                      uint64_t now, const char **ret_reason) _warn_unused_;

/* Why a user may not create another key; also when the keystore counts (-EDQUOT). */
#define AUTHZ_REASON_USER_MAX_KEYS                                                                 \
        "you have as many keys as users may have (user_max_keys); revoke or delete one first"

/*
 * May `p` create such a key for `owner`, who has `n_owned` keys that are
 * not revoked?  The create permission, the self-service policy, then
 * authz_check_grant().
 */
int authz_check_create(const struct principal *p, const struct authz_policy *policy,
                       const char *owner, uint8_t role, uint8_t permissions, uint64_t expires_at,
                       uint64_t now, uint64_t n_owned, const char **ret_reason) _warn_unused_;
