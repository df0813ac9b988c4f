/* SPDX-License-Identifier: MIT */
/* Authorization decisions; see authz.h. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>

#include "authz.h"
#include "sources.h"

static bool in_group(const struct caller *caller, const char *user, gid_t gid)
{
        if (caller->gid == gid)
                return true;
        for (size_t i = 0; i < caller->n_groups; i++)
                if (caller->groups[i] == gid)
                        return true;
        if (caller->n_groups == 0 && user[0]) {
                /* No SO_PEERGROUPS (old kernel): ask the group database. */
                gid_t groups[SERVER_MAX_GROUPS];
                int n = SERVER_MAX_GROUPS;
                if (getgrouplist(user, caller->gid, groups, &n) >= 0)
                        for (int i = 0; i < n; i++)
                                if (groups[i] == gid)
                                        return true;
        }
        return false;
}

void authz_principal_none(struct principal *p)
{
        p->uid = (uid_t)-1;
        p->admin = false;
        p->by_key = false;
        p->key_id[0] = '\0';
        p->owner[0] = '\0';
        p->permissions = 0;
        p->actor[0] = '\0';
        p->expires_at = 0;
        p->n_scope = 0;
        p->not_before = 0;
        p->n_sources = 0;
        p->depth = 0;
}

int authz_principal_from_caller(const struct caller *caller, const char *admin_group,
                                struct principal *ret)
{
        struct passwd pw, *pwp = NULL;
        struct group gr, *grp = NULL;
        char buf[4096];

        /* Users manage their own keys fully, but cannot issue keys to others. */
        *ret =
            (struct principal){.uid = caller->uid, .permissions = KEY_PERM_ALL & ~KEY_PERM_INVITE};
        if (getpwuid_r(caller->uid, &pw, buf, sizeof(buf), &pwp) == 0 && pwp &&
            strlen(pw.pw_name) <= KEY_OWNER_MAX)
                snprintf(ret->owner, sizeof(ret->owner), "%s", pw.pw_name);
        snprintf(ret->actor, sizeof(ret->actor), "uid=%u(%s)", (unsigned)caller->uid,
                 ret->owner[0] ? ret->owner : "?");

        if (caller->uid == 0)
                ret->admin = true;
        else if (admin_group && admin_group[0] &&
                 getgrnam_r(admin_group, &gr, buf, sizeof(buf), &grp) == 0 && grp)
                ret->admin = in_group(caller, ret->owner, grp->gr_gid);
        if (ret->admin)
                ret->permissions = KEY_PERM_ALL;
        return 0;
}

/*
 * "key=ID(owner) uid=1000(alice)": the key and who used it.  It becomes a
 * new key's created_by too, so it is kept within KEY_FIELD_MAX by cutting
 * the owner (at a UTF-8 character boundary), never the uid.
 */
static void key_actor(const struct key_record *rec, uid_t uid, char actor[static KEY_FIELD_MAX + 1])
{
        struct passwd pw, *pwp = NULL;
        char buf[4096], caller[64];
        size_t room, n;

        if (getpwuid_r(uid, &pw, buf, sizeof(buf), &pwp) != 0 || !pwp)
                pwp = NULL;
        snprintf(caller, sizeof(caller), "uid=%u(%.32s)", (unsigned)uid, pwp ? pw.pw_name : "?");
        room = KEY_FIELD_MAX - (STRLEN("key=() ") + strlen(rec->id) + strlen(caller));
        n = strlen(rec->owner);
        if (n > room)
                for (n = room; n > 0 && ((unsigned char)rec->owner[n] & 0xc0) == 0x80; n--)
                        ;
        snprintf(actor, KEY_FIELD_MAX + 1, "key=%s(%.*s) %s", rec->id, (int)n, rec->owner, caller);
}

int authz_principal_from_key(const struct key_record *rec, bool blocked, unsigned depth, uid_t uid,
                             uint64_t now, struct principal *ret, const char **ret_reason)
{
        bool scoped = rec->n_scope == 0;

        for (size_t i = 0; i < rec->n_scope; i++)
                if (STREQ(rec->scope[i], "apikeyd"))
                        scoped = true;
        if (record_effective_status(rec, now) != KEY_STATUS_ENABLED) {
                *ret_reason = "the API key given in auth is disabled, revoked or expired";
                return -EPERM;
        }
        if (blocked) {
                *ret_reason = "the API key given in auth is suspended: a key it was created "
                              "through is disabled, revoked or expired";
                return -EPERM;
        }
        if (rec->flags & KEY_FLAG_NO_LOGIN) {
                *ret_reason = "the API key given in auth was created through invite for "
                              "another owner; such a key cannot manage keys";
                return -EPERM;
        }
        if (!scoped) {
                *ret_reason = "the API key given in auth has a scope without \"apikeyd\"";
                return -EPERM;
        }
        if (now < rec->not_before) {
                *ret_reason = "the API key given in auth is not valid yet (not_before)";
                return -EPERM;
        }
        if (rec->n_sources > 0) {
                /* Its sources are hosts, and a call over the local socket
                 * comes from none: as Verify without rhost, refused. */
                *ret_reason = "the API key given in auth may be used only from its sources, "
                              "and a call over the local socket comes from no host";
                return -EPERM;
        }
        /* Its uses are spent by Verify alone: acting with it would use it
         * without counting. */
        if (rec->max_uses) {
                *ret_reason = "the API key given in auth has max_uses; such a key cannot "
                              "manage keys";
                return -EPERM;
        }
        *ret = (struct principal){
            .uid = uid,
            .admin = rec->role == KEY_ROLE_ADMIN,
            .by_key = true,
            .permissions = rec->permissions,
            .expires_at = rec->expires_at,
            .n_scope = rec->n_scope,
            .not_before = rec->not_before,
            .n_sources = rec->n_sources,
            .depth = depth,
            .rate_limit_count = rec->rate_limit_count,
            .rate_limit_window = rec->rate_limit_window,
        };
        for (size_t i = 0; i < rec->n_scope; i++)
                str_copy(ret->scope[i], sizeof(ret->scope[i]), rec->scope[i]);
        for (size_t i = 0; i < rec->n_sources; i++)
                str_copy(ret->sources[i], sizeof(ret->sources[i]), rec->sources[i]);
        str_copy(ret->key_id, sizeof(ret->key_id), rec->id);
        str_copy(ret->owner, sizeof(ret->owner), rec->owner);
        key_actor(rec, uid, ret->actor);
        return 0;
}

static uint8_t action_permission(enum authz_action a)
{
        switch (a) {
        case AUTHZ_READ:
                return KEY_PERM_READ;
        case AUTHZ_UPDATE:
        case AUTHZ_TOGGLE:
                return KEY_PERM_WRITE;
        case AUTHZ_REVOKE:
        case AUTHZ_DELETE:
                return KEY_PERM_DELETE;
        case AUTHZ_SHARED_SECRET:
        case AUTHZ_AUDIT:
        case AUTHZ_LOCKOUT:
        case AUTHZ_BACKUP:
                break;
        }
        return KEY_PERM_ALL;
}

/* For the actions only admins may take, why others may not; else NULL. */
static const char *admin_only_reason(enum authz_action a)
{
        switch (a) {
        case AUTHZ_SHARED_SECRET:
                return "only admins may read or rotate the shared secret";
        case AUTHZ_AUDIT:
                return "only admins may read the audit log";
        case AUTHZ_LOCKOUT:
                return "only admins may see or reset lockouts";
        case AUTHZ_BACKUP:
                return "only admins may take a backup of the keystore";
        default:
                return NULL;
        }
}

int authz_check(const struct principal *p, enum authz_action action, const char *owner,
                const char **ret_reason)
{
        uint8_t need = action_permission(action);

        const char *admins_only = admin_only_reason(action);

        if (admins_only) {
                if (p->admin)
                        return 0;
                *ret_reason = admins_only;
                return -EPERM;
        }
        if ((p->permissions & need) != need) {
                *ret_reason = p->by_key ? "the API key given in auth lacks the permission for this"
                                        : "you lack the permission for this";
                return -EPERM;
        }
        if (p->admin)
                return 0;
        if (!owner || !p->owner[0] || !STREQ(owner, p->owner)) {
                *ret_reason = "only an admin or the key's owner may do this";
                return -EPERM;
        }
        return 0;
}

/* Whether the user named `owner` is an admin: uid 0 or in the admin group. */
static bool owner_is_admin(const char *owner, const char *admin_group)
{
        struct passwd pw, *pwp = NULL;
        struct group gr, *grp = NULL;
        char buf[4096], gbuf[4096];
        gid_t groups[SERVER_MAX_GROUPS];
        int n = SERVER_MAX_GROUPS;

        if (getpwnam_r(owner, &pw, buf, sizeof(buf), &pwp) != 0 || !pwp)
                return false;
        if (pw.pw_uid == 0)
                return true;
        if (!admin_group || !admin_group[0] ||
            getgrnam_r(admin_group, &gr, gbuf, sizeof(gbuf), &grp) != 0 || !grp)
                return false;
        if (getgrouplist(owner, pw.pw_gid, groups, &n) < 0)
                return true; /* more groups than we can look at: assume the worst */
        for (int i = 0; i < n; i++)
                if (groups[i] == gr.gr_gid)
                        return true;
        return false;
}

int authz_check_enable(const struct principal *p, const struct key_record *rec,
                       const char **ret_reason)
{
        if ((rec->flags & KEY_FLAG_ADMIN_DISABLED) && !p->admin) {
                *ret_reason = AUTHZ_REASON_ADMIN_DISABLED;
                return -EPERM;
        }
        return 0;
}

int authz_check_status_change(const struct principal *p, enum authz_action action,
                              enum key_status status, const struct key_record *rec,
                              const char **ret_reason)
{
        int r = authz_check(p, action, rec->owner, ret_reason);

        if (r < 0 || status != KEY_STATUS_ENABLED)
                return r;
        return authz_check_enable(p, rec, ret_reason);
}

bool authz_status_by_admin(const struct principal *p, enum key_status status, const char *owner)
{
        if (!p->admin)
                return false;
        return status != KEY_STATUS_DISABLED || !owner || !STREQ(owner, p->owner);
}

size_t authz_default_scope(const struct principal *p, const char *ret[KEY_SCOPE_MAX])
{
        if (!p->by_key)
                return 0;
        for (size_t i = 0; i < p->n_scope; i++)
                ret[i] = p->scope[i];
        return p->n_scope;
}

void authz_default_rate_limit(const struct principal *p, uint32_t *ret_count, uint64_t *ret_window)
{
        *ret_count = p->by_key ? p->rate_limit_count : 0;
        *ret_window = p->by_key ? p->rate_limit_window : 0;
}

uint64_t authz_default_expiry(const struct principal *p, const struct authz_policy *policy,
                              uint64_t now)
{
        uint64_t t = 0;

        if (!p->admin && policy->user_default_lifetime)
                t = now + policy->user_default_lifetime;
        /* No key lives longer than max_lifetime: without an expiry, that long. */
        if (policy->max_lifetime && (t == 0 || t > now + policy->max_lifetime))
                t = now + policy->max_lifetime;
        /* A key acting with a key gives no more time than it has itself. */
        if (p->by_key && p->expires_at && (t == 0 || t > p->expires_at))
                t = p->expires_at;
        return t;
}

void authz_default_conditions(const struct principal *p, uint64_t *ret_not_before,
                              const char *ret_sources[KEY_SOURCES_MAX], size_t *ret_n_sources)
{
        *ret_not_before = p->by_key ? p->not_before : 0;
        *ret_n_sources = p->by_key ? p->n_sources : 0;
        for (size_t i = 0; i < *ret_n_sources; i++)
                ret_sources[i] = p->sources[i];
}

int authz_check_lifetime(const struct authz_policy *policy, uint64_t expires_at, uint64_t now,
                         const char **ret_reason)
{
        if (!policy->max_lifetime)
                return 0;
        if (expires_at == 0) {
                *ret_reason = "every key must expire on this installation (max_lifetime in "
                              "apikeyd.conf): give an expiry";
                return -EDQUOT;
        }
        if (expires_at > now + policy->max_lifetime) {
                *ret_reason = "the expiry is later than any key may live on this installation "
                              "(max_lifetime in apikeyd.conf)";
                return -EDQUOT;
        }
        return 0;
}

/* The sources of the acting key, as a list of strings in `ret` (pointing into `p`). */
static size_t principal_sources(const struct principal *p, const char *ret[KEY_SOURCES_MAX])
{
        for (size_t i = 0; i < p->n_sources; i++)
                ret[i] = p->sources[i];
        return p->n_sources;
}

/*
 * Whether the conditions `g` sets loosen those `old` has: a not_before
 * moved earlier (or dropped), or a host let in that its sources do not.
 */
static const char *conditions_loosened(const struct authz_grant *g, const struct key_record *old)
{
        if ((g->fields & AUTHZ_GRANT_NOT_BEFORE) && g->not_before < old->not_before)
                return "only an admin may loosen a key's conditions: its not_before may move "
                       "later, never earlier";
        if ((g->fields & AUTHZ_GRANT_SOURCES) &&
            !sources_within(g->sources, g->n_sources, old->sources, old->n_sources))
                return "only an admin may loosen a key's conditions: its sources may be "
                       "narrowed (every entry within one it has), never widened or removed";
        /* Limits too: a user who could lift them would hold a key an admin
         * gave for so many uses, so many a minute, without them. */
        if ((g->fields & AUTHZ_GRANT_MAX_USES) && old->max_uses &&
            (g->max_uses == 0 || g->max_uses > old->max_uses))
                return "only an admin may loosen a key's limits: its max_uses may be lowered, "
                       "never raised or removed";
        if ((g->fields & AUTHZ_GRANT_RATE) && old->rate_limit_count &&
            (g->rate_limit_count == 0 || g->rate_limit_count > old->rate_limit_count ||
             g->rate_limit_window < old->rate_limit_window))
                return "only an admin may loosen a key's limits: its rate_limit may be made "
                       "stricter (no more verifies, in a window no shorter), never looser or "
                       "removed";
        return NULL;
}

static bool in_scope(const struct principal *p, const char *service)
{
        for (size_t i = 0; i < p->n_scope; i++)
                if (STREQ(p->scope[i], service))
                        return true;
        return false;
}

/* Whether scope `a` (`n_a` entries; 0 = any) lets a key do no more than scope `b`. */
static bool scope_within(const char *const *a, size_t n_a, const char *const *b, size_t n_b)
{
        if (n_b == 0)
                return true;
        if (n_a == 0)
                return false;
        for (size_t i = 0; i < n_a; i++) {
                bool found = false;
                for (size_t j = 0; j < n_b && !found; j++)
                        found = STREQ(a[i], b[j]);
                if (!found)
                        return false;
        }
        return true;
}

/* Whether an Update gives its key a permission or a service it did not have. */
static bool grant_adds(const struct authz_grant *g)
{
        const struct key_record *old = g->before;

        if ((g->fields & AUTHZ_GRANT_ROLE) && (g->permissions & ~old->permissions))
                return true;
        return (g->fields & AUTHZ_GRANT_SCOPE) &&
               !scope_within(g->scope, g->n_scope, old->scope, old->n_scope);
}

/* Within what the acting key holds itself: the ceiling for every caller acting with a key. */
static int check_key_ceiling(const struct principal *p, const struct authz_grant *g,
                             const char **ret_reason)
{
        if (!p->by_key)
                return 0;
        if ((g->fields & AUTHZ_GRANT_ROLE) && (g->permissions & ~p->permissions)) {
                *ret_reason = "a key cannot be given permissions the API key given in auth "
                              "does not hold";
                return -EPERM;
        }
        if ((g->fields & AUTHZ_GRANT_SCOPE) && p->n_scope > 0) {
                if (g->n_scope == 0) {
                        *ret_reason = "the API key given in auth has a scope, so the key must "
                                      "have one within it (an empty scope means any service)";
                        return -EPERM;
                }
                for (size_t i = 0; i < g->n_scope; i++)
                        if (!in_scope(p, g->scope[i])) {
                                *ret_reason = "a key's scope must be within the scope of the "
                                              "API key given in auth";
                                return -EPERM;
                        }
        }
        if ((g->fields & AUTHZ_GRANT_EXPIRES) && p->expires_at &&
            (g->expires_at == 0 || g->expires_at > p->expires_at)) {
                *ret_reason = "a key cannot expire later than the API key given in auth";
                return -EPERM;
        }
        if ((g->fields & AUTHZ_GRANT_NOT_BEFORE) && g->not_before < p->not_before) {
                *ret_reason = "a key cannot be valid earlier than the API key given in auth "
                              "(not_before)";
                return -EPERM;
        }
        const char *mine[KEY_SOURCES_MAX];
        size_t n_mine = principal_sources(p, mine);
        if ((g->fields & AUTHZ_GRANT_SOURCES) &&
            !sources_within(g->sources, g->n_sources, mine, n_mine)) {
                *ret_reason = "a key's sources must be within the sources of the API key given "
                              "in auth (every entry within one of them; none means from "
                              "anywhere)";
                return -EPERM;
        }
        /* No more verifies, in a window no shorter. */
        if ((g->fields & AUTHZ_GRANT_RATE) && p->rate_limit_count &&
            (g->rate_limit_count == 0 || g->rate_limit_count > p->rate_limit_count ||
             g->rate_limit_window < p->rate_limit_window)) {
                *ret_reason = "a key's rate_limit must be at least as strict as that of the API "
                              "key given in auth: no more verifies, in a window no shorter";
                return -EPERM;
        }
        /* A key that outlives the acting one, given more through it, would
         * hold that after the acting key is gone: more than it holds.  What
         * an update keeps or takes away is no grant, whatever the expiry. */
        if (g->before && p->expires_at && (g->expires_at == 0 || g->expires_at > p->expires_at) &&
            grant_adds(g)) {
                *ret_reason = "this key expires later than the API key given in auth, so that "
                              "key cannot give it a permission or a service it does not have; "
                              "give it, in the same update, an expiry no later than that key's";
                return -EPERM;
        }
        return 0;
}

int authz_check_grant(const struct principal *p, const struct authz_policy *policy,
                      const struct authz_grant *g, uint64_t now, uint8_t *ret_flags,
                      const char **ret_reason)
{
        int r;

        if (ret_flags)
                *ret_flags = 0;
        r = check_key_ceiling(p, g, ret_reason);
        if (r < 0)
                return r;
        if (g->fields & AUTHZ_GRANT_EXPIRES) {
                r = authz_check_lifetime(policy, g->expires_at, now, ret_reason);
                if (r < 0)
                        return r;
        }
        if (p->admin)
                return 0;
        if (g->before && (*ret_reason = conditions_loosened(g, g->before)))
                return -EPERM;
        if ((g->fields & AUTHZ_GRANT_ROLE) && g->role == KEY_ROLE_ADMIN) {
                *ret_reason = "only admins may give a key the admin role";
                return -EPERM;
        }
        if ((g->fields & AUTHZ_GRANT_ROLE) && (g->permissions & ~p->permissions)) {
                /* Users hold every permission but invite (and the caller of
                 * an Update need not be the key's creator). */
                *ret_reason = (g->permissions & ~p->permissions) == KEY_PERM_INVITE
                                  ? "only admins, and keys that hold it, may give a key the "
                                    "invite permission"
                                  : "a key cannot be given permissions you do not hold";
                return -EPERM;
        }
        if (!g->owner || !p->owner[0] || !STREQ(g->owner, p->owner)) {
                if (!p->by_key || !(p->permissions & KEY_PERM_INVITE)) {
                        *ret_reason = "only admins and keys with the invite permission may "
                                      "create keys for another owner";
                        return -EPERM;
                }
                if (!g->owner || owner_is_admin(g->owner, policy->admin_group)) {
                        /* An invited key must not be a way to log in as an admin. */
                        *ret_reason = "keys for an admin can only be created by an admin";
                        return -EPERM;
                }
                /* For the owner's scripts and services, never to log in as
                 * them or to manage their keys: only an admin or the owner
                 * creates such keys. */
                if (ret_flags)
                        *ret_flags = KEY_FLAG_NO_LOGIN;
        }
        if ((g->fields & AUTHZ_GRANT_EXPIRES) && policy->user_max_lifetime &&
            (g->expires_at == 0 || g->expires_at > now + policy->user_max_lifetime)) {
                *ret_reason = "the expiry is later than users' keys may live (user_max_lifetime)";
                return -EDQUOT;
        }
        /* A key an admin let live longer than users' keys may, given more
         * by a user, would be a key that user could not have created: more
         * than they hold.  What an update keeps or takes away is no grant. */
        if (g->before && policy->user_max_lifetime && grant_adds(g)) {
                uint64_t expires =
                    (g->fields & AUTHZ_GRANT_EXPIRES) ? g->expires_at : g->before->expires_at;

                if (expires == 0 || expires > now + policy->user_max_lifetime) {
                        *ret_reason = "this key lives longer than users' keys may "
                                      "(user_max_lifetime), so only an admin may give it a "
                                      "permission or a service it does not have; give it, in the "
                                      "same update, an expiry within user_max_lifetime";
                        return -EDQUOT;
                }
        }
        return 0;
}

int authz_check_create(const struct principal *p, const struct authz_policy *policy,
                       const struct authz_grant *g, uint64_t now, uint64_t n_owned,
                       uint8_t *ret_flags, const char **ret_reason)
{
        int r;

        if (!(p->permissions & KEY_PERM_CREATE)) {
                *ret_reason = "the API key given in auth lacks the create permission";
                return -EPERM;
        }
        if (p->by_key && p->depth + 1 > KEY_LINEAGE_MAX) {
                *ret_reason = "the API key given in auth was itself created through too many "
                              "keys; create this key with one nearer the top";
                return -EDQUOT;
        }
        uint8_t flags = 0;
        r = authz_check_grant(p, policy, g, now, &flags, ret_reason);
        if (ret_flags)
                *ret_flags = flags;
        if (r < 0 || p->admin)
                return r;
        if (!policy->users_may_create) {
                *ret_reason = "this installation lets only admins create keys "
                              "(users_may_create = no)";
                return -EDQUOT;
        }
        if (policy->user_max_keys && n_owned >= policy->user_max_keys) {
                *ret_reason = (flags & KEY_FLAG_NO_LOGIN) ? AUTHZ_REASON_INVITED_MAX_KEYS
                                                          : AUTHZ_REASON_USER_MAX_KEYS;
                return -EDQUOT;
        }
        return 0;
}

const char *authz_invited_max_keys_reason(const char *owner, uint64_t max, char *buf, size_t size)
{
        snprintf(buf, size,
                 "%s has as many keys created through invite as users may have "
                 "(user_max_keys = %llu); %s or an admin may revoke or delete one",
                 owner, (unsigned long long)max, owner);
        return buf;
}
