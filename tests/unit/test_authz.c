/* SPDX-License-Identifier: MIT */
/*
 * Unit tests of the authorization decisions (apikeyd/api/authz.c), table by
 * table: every kind of caller against every operation and target, the
 * grants a Create or an Update may make, enabling a key an admin disabled,
 * and which keys may act in `auth` at all.  Each row names the refusal it
 * expects, so a rule that stops refusing fails a row.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "authz.h"

#define S    1000000ull
#define NOW  (1800000000ull * S)
#define HOUR (3600 * S)

/* Owners that are no account here, so none is an admin. */
#define ME    "akt-authz-me"
#define OTHER "akt-authz-other"

enum caller_kind {
        ROOT,        /* uid 0 */
        GROUP_ADMIN, /* a member of the admin group */
        USER,        /* an ordinary user, owner ME */
        ADMIN_KEY,   /* an admin-role key of ME, scope apikeyd, 7 days */
        CREATE_KEY,  /* create,read of ME, scope apikeyd+sshd, 1 hour */
        WRITE_KEY,   /* read,write of ME */
        DELETE_KEY,  /* read,delete of ME */
        READ_KEY,    /* readonly of ME */
        INVITE_KEY,  /* create,read,invite of ME */
        _CALLER_MAX,
};

static const char *const caller_names[] = {
    "root",      "group admin", "user",     "admin key",  "create key",
    "write key", "delete key",  "read key", "invite key",
};

static void principal_of(enum caller_kind k, struct principal *p)
{
        static const char *const apikeyd_sshd[] = {"apikeyd", "sshd"};
        static const char *const apikeyd_only[] = {"apikeyd"};

        *p = (struct principal){.uid = 1000, .permissions = KEY_PERM_ALL & ~KEY_PERM_INVITE};
        strcpy(p->owner, ME);
        switch (k) {
        case ROOT:
                *p = (struct principal){.uid = 0, .admin = true, .permissions = KEY_PERM_ALL};
                strcpy(p->owner, "root");
                return;
        case GROUP_ADMIN:
                p->admin = true;
                p->permissions = KEY_PERM_ALL;
                strcpy(p->owner, "akt-authz-admin");
                return;
        case USER:
                return;
        default:
                break;
        }
        p->by_key = true;
        strcpy(p->key_id, "KeyKeyKeyKey");
        switch (k) {
        case ADMIN_KEY:
                p->admin = true;
                p->permissions = KEY_PERM_ALL;
                p->expires_at = NOW + 7 * 24 * HOUR;
                p->n_scope = 1;
                strcpy(p->scope[0], apikeyd_only[0]);
                break;
        case CREATE_KEY:
                p->permissions = KEY_PERM_CREATE | KEY_PERM_READ;
                p->expires_at = NOW + HOUR;
                p->n_scope = 2;
                strcpy(p->scope[0], apikeyd_sshd[0]);
                strcpy(p->scope[1], apikeyd_sshd[1]);
                break;
        case WRITE_KEY:
                p->permissions = KEY_PERM_READ | KEY_PERM_WRITE;
                break;
        case DELETE_KEY:
                p->permissions = KEY_PERM_READ | KEY_PERM_DELETE;
                break;
        case READ_KEY:
                p->permissions = KEY_PERM_READ;
                break;
        case INVITE_KEY:
                p->permissions = KEY_PERM_CREATE | KEY_PERM_READ | KEY_PERM_INVITE;
                break;
        default:
                fail();
        }
}

/* ---- authz_check: every caller x operation x target ---- */

enum target {
        OWN,   /* a key of the caller's owner */
        THEIRS /* a key of another owner */
};

#define A 0      /* allowed */
#define D -EPERM /* PermissionDenied */

/* clang-format off */
static const struct {
        enum authz_action action;
        const char *name;
        int expect[_CALLER_MAX][2]; /* [caller][OWN, THEIRS] */
} check_rows[] = {
    /*                                    root    gadmin  user    adminK  createK writeK  deleteK readK   inviteK */
    {AUTHZ_READ,          "read",          {{A, A}, {A, A}, {A, D}, {A, A}, {A, D}, {A, D}, {A, D}, {A, D}, {A, D}}},
    {AUTHZ_UPDATE,        "update",        {{A, A}, {A, A}, {A, D}, {A, A}, {D, D}, {A, D}, {D, D}, {D, D}, {D, D}}},
    {AUTHZ_TOGGLE,        "toggle",        {{A, A}, {A, A}, {A, D}, {A, A}, {D, D}, {A, D}, {D, D}, {D, D}, {D, D}}},
    {AUTHZ_REVOKE,        "revoke",        {{A, A}, {A, A}, {A, D}, {A, A}, {D, D}, {D, D}, {A, D}, {D, D}, {D, D}}},
    {AUTHZ_DELETE,        "delete",        {{A, A}, {A, A}, {A, D}, {A, A}, {D, D}, {D, D}, {A, D}, {D, D}, {D, D}}},
    {AUTHZ_SHARED_SECRET, "shared secret", {{A, A}, {A, A}, {D, D}, {A, A}, {D, D}, {D, D}, {D, D}, {D, D}, {D, D}}},
    {AUTHZ_AUDIT,         "audit",         {{A, A}, {A, A}, {D, D}, {A, A}, {D, D}, {D, D}, {D, D}, {D, D}, {D, D}}},
    {AUTHZ_LOCKOUT,       "lockout",       {{A, A}, {A, A}, {D, D}, {A, A}, {D, D}, {D, D}, {D, D}, {D, D}, {D, D}}},
};
/* clang-format on */

static void test_check_every_cell(void **state)
{
        size_t cells = 0;

        for (size_t row = 0; row < ELEMENTSOF(check_rows); row++)
                for (int k = 0; k < _CALLER_MAX; k++)
                        for (int t = OWN; t <= THEIRS; t++) {
                                struct principal p;
                                const char *reason = NULL, *owner;
                                int r;

                                principal_of((enum caller_kind)k, &p);
                                owner = t == OWN ? p.owner : OTHER;
                                r = authz_check(&p, check_rows[row].action, owner, &reason);
                                if (r != check_rows[row].expect[k][t])
                                        fail_msg("%s of %s's key by %s: %d, expected %d",
                                                 check_rows[row].name, t == OWN ? "own" : "another",
                                                 caller_names[k], r, check_rows[row].expect[k][t]);
                                if (r < 0)
                                        assert_non_null(reason);
                                cells++;
                        }
        assert_int_equal(cells, ELEMENTSOF(check_rows) * _CALLER_MAX * 2);
}

/* ---- authz_check_create: what each caller may create ---- */

static const char *const sshd[] = {"sshd"};
static const char *const apikeyd[] = {"apikeyd"};
static const char *const apikeyd_sudo[] = {"apikeyd", "sudo"};

struct grant_case {
        const char *what;
        const char *owner; /* NULL = the caller's own */
        uint8_t role, perms;
        const char *const *scope;
        size_t n_scope;
        uint64_t expires_at; /* 0 = never */
};

static const struct grant_case grants[] = {
    {"readonly, own, any scope, never", NULL, KEY_ROLE_READONLY, KEY_PERM_READ, NULL, 0, 0},
    {"readonly, own, apikeyd, 30 min", NULL, KEY_ROLE_READONLY, KEY_PERM_READ, apikeyd, 1,
     NOW + HOUR / 2},
    {"readonly, own, sshd, 30 min", NULL, KEY_ROLE_READONLY, KEY_PERM_READ, sshd, 1,
     NOW + HOUR / 2},
    {"readonly, own, apikeyd+sudo, 30 min", NULL, KEY_ROLE_READONLY, KEY_PERM_READ, apikeyd_sudo, 2,
     NOW + HOUR / 2},
    {"readonly, own, apikeyd, 90 days", NULL, KEY_ROLE_READONLY, KEY_PERM_READ, apikeyd, 1,
     NOW + 90 * 24 * HOUR},
    {"admin, own, apikeyd, 30 min", NULL, KEY_ROLE_ADMIN, KEY_PERM_ALL, apikeyd, 1, NOW + HOUR / 2},
    {"custom write, own, apikeyd, 30 min", NULL, KEY_ROLE_CUSTOM, KEY_PERM_READ | KEY_PERM_WRITE,
     apikeyd, 1, NOW + HOUR / 2},
    {"custom invite, own, apikeyd, 30 min", NULL, KEY_ROLE_CUSTOM, KEY_PERM_READ | KEY_PERM_INVITE,
     apikeyd, 1, NOW + HOUR / 2},
    {"readonly, other, apikeyd, 30 min", OTHER, KEY_ROLE_READONLY, KEY_PERM_READ, apikeyd, 1,
     NOW + HOUR / 2},
    {"readonly, root, apikeyd, 30 min", "root", KEY_ROLE_READONLY, KEY_PERM_READ, apikeyd, 1,
     NOW + HOUR / 2},
};

#define NL 1       /* allowed; the key is no_login */
#define DQ -EDQUOT /* PolicyViolation */

/* [grant][caller]; policy: users may create, 90-day maximum lifetime. */
/* clang-format off */
static const int create_expect[ELEMENTSOF(grants)][_CALLER_MAX] = {
    /*                          root gadm user adK crK wrK deK rdK inK */
    /* any scope, never      */ {A,   A,   DQ,  D,  D,  D,  D,  D,  DQ},
    /* apikeyd, 30 min       */ {A,   A,   A,   A,  A,  D,  D,  D,  A},
    /* sshd, 30 min          */ {A,   A,   A,   D,  A,  D,  D,  D,  A},
    /* apikeyd+sudo, 30 min  */ {A,   A,   A,   D,  D,  D,  D,  D,  A},
    /* apikeyd, 90 days      */ {A,   A,   A,   D,  D,  D,  D,  D,  A},
    /* admin role            */ {A,   A,   D,   A,  D,  D,  D,  D,  D},
    /* custom write          */ {A,   A,   A,   A,  D,  D,  D,  D,  D},
    /* custom invite         */ {A,   A,   D,   A,  D,  D,  D,  D,  A},
    /* for another owner     */ {A,   A,   D,   A,  D,  D,  D,  D,  NL},
    /* for root              */ {A,   A,   D,   A,  D,  D,  D,  D,  D},
};
/* clang-format on */

static void test_create_every_cell(void **state)
{
        const struct authz_policy policy = {
            .admin_group = "akt-authz-no-such-group",
            .users_may_create = true,
            .user_max_lifetime = 90 * 24 * HOUR,
        };

        for (size_t g = 0; g < ELEMENTSOF(grants); g++)
                for (int k = 0; k < _CALLER_MAX; k++) {
                        const struct grant_case *c = &grants[g];
                        struct principal p;
                        const char *reason = NULL;
                        uint8_t flags = 0xff;
                        int r, want = create_expect[g][k];

                        principal_of((enum caller_kind)k, &p);
                        struct authz_grant grant = {
                            .fields = AUTHZ_GRANT_ALL,
                            .owner = c->owner ? c->owner : p.owner,
                            .role = c->role,
                            .permissions = c->perms,
                            .scope = c->scope,
                            .n_scope = c->n_scope,
                            .expires_at = c->expires_at,
                        };
                        r = authz_check_create(&p, &policy, &grant, NOW, 0, &flags, &reason);
                        if (r != (want == NL ? 0 : want))
                                fail_msg("create %s by %s: %d (%s), expected %d", c->what,
                                         caller_names[k], r, reason ? reason : "-", want);
                        if (r < 0)
                                assert_non_null(reason);
                        else
                                assert_int_equal(flags, want == NL ? KEY_FLAG_NO_LOGIN : 0);
                }
}

/* An Update checks only what it changes, against the same ceilings. */
static void test_update_cannot_widen(void **state)
{
        const struct authz_policy policy = {.admin_group = "akt-authz-no-such-group"};
        struct principal p;
        const char *reason = NULL;

        principal_of(CREATE_KEY, &p);
        struct authz_grant g = {.owner = ME, .fields = AUTHZ_GRANT_SCOPE, .n_scope = 0};
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        assert_string_equal(reason, "the API key given in auth has a scope, so the key must have "
                                    "one within it (an empty scope means any service)");
        g = (struct authz_grant){.owner = ME, .fields = AUTHZ_GRANT_EXPIRES, .expires_at = 0};
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        assert_string_equal(reason, "a key cannot expire later than the API key given in auth");
        g.expires_at = NOW + HOUR + 1;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        g.expires_at = NOW + HOUR;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
        g = (struct authz_grant){.owner = ME,
                                 .fields = AUTHZ_GRANT_ROLE,
                                 .role = KEY_ROLE_CUSTOM,
                                 .permissions = KEY_PERM_READ | KEY_PERM_DELETE};
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        assert_string_equal(reason,
                            "a key cannot be given permissions the API key given in auth does "
                            "not hold");
        /* A name or description change (no grant field) is no grant. */
        g = (struct authz_grant){.owner = ME};
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
        /* A key that never expires (`before`: read, scope sshd) is given
         * nothing it would keep after the acting key is gone; what the update
         * keeps or takes away is no grant; an expiry within the acting key's
         * makes room. */
        struct key_record before = {.permissions = KEY_PERM_READ, .n_scope = 1};
        static const char *const only_sshd[] = {"sshd"}, *const both[] = {"apikeyd", "sshd"};
        before.scope[0] = "sshd";
        g = (struct authz_grant){.owner = ME,
                                 .fields = AUTHZ_GRANT_ROLE,
                                 .role = KEY_ROLE_CUSTOM,
                                 .permissions = KEY_PERM_READ | KEY_PERM_CREATE,
                                 .scope = only_sshd,
                                 .n_scope = 1,
                                 .before = &before};
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        assert_non_null(strstr(reason, "expires later than the API key given in auth"));
        g.fields = AUTHZ_GRANT_SCOPE;
        g.scope = both;
        g.n_scope = 2;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        g.fields = AUTHZ_GRANT_ROLE | AUTHZ_GRANT_SCOPE;
        g.permissions = KEY_PERM_READ;
        g.scope = only_sshd;
        g.n_scope = 1;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
        g.fields = AUTHZ_GRANT_ALL;
        g.permissions = KEY_PERM_READ | KEY_PERM_CREATE;
        g.scope = both;
        g.n_scope = 2;
        g.expires_at = NOW + HOUR;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
        /* An admin by uid is not bounded. */
        principal_of(ROOT, &p);
        g = (struct authz_grant){.owner = ME,
                                 .fields = AUTHZ_GRANT_ALL,
                                 .role = KEY_ROLE_ADMIN,
                                 .permissions = KEY_PERM_ALL};
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
}

static void test_create_policy(void **state)
{
        struct authz_policy policy = {.admin_group = "x", .users_may_create = false};
        struct authz_grant g = {.fields = AUTHZ_GRANT_ALL,
                                .owner = ME,
                                .role = KEY_ROLE_READONLY,
                                .permissions = KEY_PERM_READ};
        struct principal p;
        const char *reason = NULL;
        uint8_t flags;

        principal_of(USER, &p);
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 0, &flags, &reason), -EDQUOT);
        assert_string_equal(
            reason, "this installation lets only admins create keys (users_may_create = no)");
        policy.users_may_create = true;
        policy.user_max_keys = 3;
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 2, &flags, &reason), 0);
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 3, &flags, &reason), -EDQUOT);
        assert_string_equal(reason, AUTHZ_REASON_USER_MAX_KEYS);
        /* An invited key is counted with the keys invited for its owner, and
         * the refusal says so: not "you have as many keys". */
        principal_of(INVITE_KEY, &p);
        g.owner = OTHER;
        g.scope = apikeyd;
        g.n_scope = 1;
        g.expires_at = NOW + 1;
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 2, &flags, &reason), 0);
        assert_int_equal(flags, KEY_FLAG_NO_LOGIN);
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 3, &flags, &reason), -EDQUOT);
        assert_string_equal(reason, AUTHZ_REASON_INVITED_MAX_KEYS);
        assert_int_equal(flags, KEY_FLAG_NO_LOGIN);
        g.owner = ME;
        g.scope = NULL;
        g.n_scope = 0;
        g.expires_at = 0;
        /* Admins are not held to the users' policy. */
        principal_of(GROUP_ADMIN, &p);
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 99, &flags, &reason), 0);
        /* Keys created through keys: a bounded chain. */
        principal_of(CREATE_KEY, &p);
        policy.user_max_keys = 0;
        g.scope = apikeyd;
        g.n_scope = 1;
        g.expires_at = NOW + 1;
        p.depth = KEY_LINEAGE_MAX - 1;
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 0, &flags, &reason), 0);
        p.depth = KEY_LINEAGE_MAX;
        assert_int_equal(authz_check_create(&p, &policy, &g, NOW, 0, &flags, &reason), -EDQUOT);
}

/* ---- enabling a key an admin disabled ---- */

static void test_enable_every_caller(void **state)
{
        struct key_record rec = {.owner = ME, .status = KEY_STATUS_DISABLED};

        for (int k = 0; k < _CALLER_MAX; k++) {
                struct principal p;
                const char *reason = NULL;
                bool admin = k == ROOT || k == GROUP_ADMIN || k == ADMIN_KEY;

                principal_of((enum caller_kind)k, &p);
                rec.flags = KEY_FLAG_ADMIN_DISABLED;
                if (admin)
                        assert_int_equal(authz_check_enable(&p, &rec, &reason), 0);
                else {
                        assert_int_equal(authz_check_enable(&p, &rec, &reason), -EPERM);
                        assert_string_equal(reason, AUTHZ_REASON_ADMIN_DISABLED);
                }
                rec.flags = 0;
                assert_int_equal(authz_check_enable(&p, &rec, &reason), 0);
                /* Whose Disable marks a key: an admin's of a key not its own. */
                assert_int_equal(authz_status_by_admin(&p, KEY_STATUS_DISABLED, OTHER), admin);
                assert_false(authz_status_by_admin(&p, KEY_STATUS_DISABLED, p.owner));
                assert_int_equal(authz_status_by_admin(&p, KEY_STATUS_ENABLED, p.owner), admin);
        }
}

/* ---- which keys may act in auth ---- */

static void test_principal_from_key(void **state)
{
        static const char *const scope_sshd[] = {"sshd"};
        static const char *const scope_apikeyd[] = {"apikeyd", "sshd"};
        struct key_record rec = {
            .id = "AaAaAaAaAaAa",
            .owner = ME,
            .status = KEY_STATUS_ENABLED,
            .role = KEY_ROLE_CUSTOM,
            .permissions = KEY_PERM_READ | KEY_PERM_CREATE,
            .expires_at = NOW + HOUR,
            .created_at = 1,
        };
        struct principal p;
        const char *reason = NULL;

        assert_int_equal(authz_principal_from_key(&rec, false, 3, 1000, NOW, &p, &reason), 0);
        assert_true(p.by_key && !p.admin);
        assert_string_equal(p.key_id, rec.id);
        assert_string_equal(p.owner, ME);
        assert_int_equal(p.expires_at, NOW + HOUR);
        assert_int_equal(p.n_scope, 0);
        assert_int_equal(p.depth, 3);

        rec.n_scope = 2;
        memcpy(rec.scope, scope_apikeyd, sizeof(scope_apikeyd));
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), 0);
        assert_int_equal(p.n_scope, 2);
        assert_string_equal(p.scope[1], "sshd");

        /* Refusals, each with its reason. */
        assert_int_equal(authz_principal_from_key(&rec, true, 0, 1000, NOW, &p, &reason), -EPERM);
        assert_non_null(strstr(reason, "suspended"));
        rec.flags = KEY_FLAG_NO_LOGIN;
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), -EPERM);
        assert_non_null(strstr(reason, "created through invite for another owner"));
        rec.flags = 0;
        rec.n_scope = 1;
        memcpy(rec.scope, scope_sshd, sizeof(scope_sshd));
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), -EPERM);
        assert_string_equal(reason, "the API key given in auth has a scope without \"apikeyd\"");
        rec.n_scope = 0;
        rec.status = KEY_STATUS_DISABLED;
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), -EPERM);
        rec.status = KEY_STATUS_ENABLED;
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW + HOUR, &p, &reason),
                         -EPERM);
        /* A key before its not_before, or with sources: a call over the
         * local socket comes from no host. */
        rec.not_before = NOW + 1;
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), -EPERM);
        assert_string_equal(reason, "the API key given in auth is not valid yet (not_before)");
        rec.not_before = NOW;
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), 0);
        assert_true(p.not_before == NOW);
        rec.n_sources = 1;
        rec.sources[0] = "0.0.0.0/0";
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), -EPERM);
        assert_string_equal(reason, "the API key given in auth may be used only from its sources, "
                                    "and a call over the local socket comes from no host");
        rec.n_sources = 0;
        rec.role = KEY_ROLE_ADMIN;
        rec.permissions = KEY_PERM_ALL;
        assert_int_equal(authz_principal_from_key(&rec, false, 0, 1000, NOW, &p, &reason), 0);
        assert_true(p.admin);
}

/* ---- conditions only narrow ---- */

static void test_conditions_narrow(void **state)
{
        const struct authz_policy policy = {.admin_group = "akt-authz-no-such-group"};
        static const char *const inside[] = {"10.1.0.0/16", "BUILD.example.com"};
        static const char *const wider[] = {"10.0.0.0/7"};
        static const char *const beside[] = {"192.0.2.0/24"};
        struct principal p;
        const char *reason = NULL;

        /* Acting with a key that has conditions (which no call over the
         * local socket can, see test_principal_from_key: the rule stands
         * on its own). */
        principal_of(CREATE_KEY, &p);
        p.not_before = NOW - HOUR;
        p.n_sources = 2;
        strcpy(p.sources[0], "10.0.0.0/8");
        strcpy(p.sources[1], "build.example.com");
        struct authz_grant g = {.owner = ME, .fields = AUTHZ_GRANT_NOT_BEFORE};
        g.not_before = 0;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        assert_string_equal(reason, "a key cannot be valid earlier than the API key given in auth "
                                    "(not_before)");
        g.not_before = NOW - 2 * HOUR;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        g.not_before = NOW - HOUR;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
        g = (struct authz_grant){
            .owner = ME, .fields = AUTHZ_GRANT_SOURCES, .sources = inside, .n_sources = 2};
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
        g.sources = wider;
        g.n_sources = 1;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        assert_string_equal(reason,
                            "a key's sources must be within the sources of the API key given in "
                            "auth (every entry within one of them; none means from anywhere)");
        g.sources = beside;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        g.n_sources = 0;
        assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), -EPERM);
        /* What a new key gets when the call names none: the acting key's. */
        uint64_t nb;
        const char *src[KEY_SOURCES_MAX];
        size_t n;
        authz_default_conditions(&p, &nb, src, &n);
        assert_true(nb == NOW - HOUR);
        assert_int_equal(n, 2);
        assert_string_equal(src[1], "build.example.com");
        principal_of(ROOT, &p);
        authz_default_conditions(&p, &nb, src, &n);
        assert_true(nb == 0 && n == 0);

        /* An Update: only an admin loosens what the key has. */
        struct key_record before = {.not_before = NOW + HOUR, .n_sources = 1};
        before.sources[0] = "10.0.0.0/8";
        for (enum caller_kind k = 0; k < _CALLER_MAX; k++) {
                bool admin = k == ROOT || k == GROUP_ADMIN || k == ADMIN_KEY;
                principal_of(k, &p);
                g = (struct authz_grant){.owner = ME,
                                         .fields = AUTHZ_GRANT_NOT_BEFORE,
                                         .not_before = NOW,
                                         .before = &before};
                int r = authz_check_grant(&p, &policy, &g, NOW, NULL, &reason);
                if (admin)
                        assert_int_equal(r, 0);
                else {
                        assert_int_equal(r, -EPERM);
                        assert_string_equal(reason, "only an admin may loosen a key's conditions: "
                                                    "its not_before may move later, never "
                                                    "earlier");
                }
                g.not_before = NOW + 2 * HOUR;
                assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
                g = (struct authz_grant){.owner = ME,
                                         .fields = AUTHZ_GRANT_SOURCES,
                                         .sources = wider,
                                         .n_sources = 1,
                                         .before = &before};
                r = authz_check_grant(&p, &policy, &g, NOW, NULL, &reason);
                if (admin)
                        assert_int_equal(r, 0);
                else {
                        assert_int_equal(r, -EPERM);
                        assert_string_equal(reason,
                                            "only an admin may loosen a key's conditions: its "
                                            "sources may be narrowed (every entry within one it "
                                            "has), never widened or removed");
                }
                g.n_sources = 0;
                assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason),
                                 admin ? 0 : -EPERM);
                g.sources = inside;
                g.n_sources = 1;
                assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
        }
}

/* ---- max_lifetime: every key's, admins' too ---- */

static void test_max_lifetime(void **state)
{
        const struct authz_policy policy = {.admin_group = "akt-authz-no-such-group",
                                            .max_lifetime = 24 * HOUR};
        const struct authz_policy none = {.admin_group = "akt-authz-no-such-group"};
        const char *reason = NULL;
        struct principal p;

        assert_int_equal(authz_check_lifetime(&policy, NOW + 24 * HOUR, NOW, &reason), 0);
        assert_int_equal(authz_check_lifetime(&policy, NOW + 24 * HOUR + 1, NOW, &reason), -EDQUOT);
        assert_string_equal(reason, "the expiry is later than any key may live on this "
                                    "installation (max_lifetime in apikeyd.conf)");
        assert_int_equal(authz_check_lifetime(&policy, 0, NOW, &reason), -EDQUOT);
        assert_string_equal(reason, "every key must expire on this installation (max_lifetime "
                                    "in apikeyd.conf): give an expiry");
        assert_int_equal(authz_check_lifetime(&none, 0, NOW, &reason), 0);
        for (enum caller_kind k = 0; k < _CALLER_MAX; k++) {
                struct authz_grant g = {.owner = ME, .fields = AUTHZ_GRANT_EXPIRES};
                principal_of(k, &p);
                assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason),
                                 p.expires_at ? -EPERM : -EDQUOT);
                g.expires_at = NOW + HOUR / 2;
                assert_int_equal(authz_check_grant(&p, &policy, &g, NOW, NULL, &reason), 0);
                /* The default: no later than max_lifetime, nor the acting key. */
                uint64_t t = authz_default_expiry(&p, &policy, NOW);
                assert_true(t > NOW && t <= NOW + 24 * HOUR);
                assert_true(!p.expires_at || t <= p.expires_at);
        }
}

/* ---- defaults never widen ---- */

static void test_defaults(void **state)
{
        const struct authz_policy policy = {.user_default_lifetime = 30 * 24 * HOUR};
        const char *scope[KEY_SCOPE_MAX];
        struct principal p;

        principal_of(ROOT, &p);
        assert_int_equal(authz_default_expiry(&p, &policy, NOW), 0);
        assert_int_equal(authz_default_scope(&p, scope), 0);
        principal_of(USER, &p);
        assert_int_equal(authz_default_expiry(&p, &policy, NOW), NOW + 30 * 24 * HOUR);
        assert_int_equal(authz_default_scope(&p, scope), 0);
        principal_of(CREATE_KEY, &p);
        assert_int_equal(authz_default_expiry(&p, &policy, NOW), NOW + HOUR);
        assert_int_equal(authz_default_scope(&p, scope), 2);
        assert_string_equal(scope[0], "apikeyd");
        assert_string_equal(scope[1], "sshd");
        principal_of(ADMIN_KEY, &p);
        assert_int_equal(authz_default_expiry(&p, &policy, NOW), NOW + 7 * 24 * HOUR);
        principal_of(WRITE_KEY, &p);
        assert_int_equal(authz_default_expiry(&p, &policy, NOW), NOW + 30 * 24 * HOUR);
        assert_int_equal(authz_default_scope(&p, scope), 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_check_every_cell),    cmocka_unit_test(test_create_every_cell),
            cmocka_unit_test(test_update_cannot_widen), cmocka_unit_test(test_create_policy),
            cmocka_unit_test(test_enable_every_caller), cmocka_unit_test(test_principal_from_key),
            cmocka_unit_test(test_conditions_narrow),   cmocka_unit_test(test_defaults),
            cmocka_unit_test(test_max_lifetime),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
