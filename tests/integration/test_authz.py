# SPDX-License-Identifier: MIT
"""Who may do what, seen from each caller: ordinary users (by their peer
credentials), members of the admin group, and the self-service policy.
These tests create users, so they need root."""

import grp
import pwd
import time

import pytest

from conftest import ADMIN, ADMIN_GROUP, ALICE, BOB, IFACE, INTERFACE, parse_iso
from test_apikeyctl import EXIT_REFUSED, run_ctl

DENIED = f"{IFACE}.PermissionDenied"
POLICY = f"{IFACE}.PolicyViolation"
DAY = 86400


def assert_denied(result, error=DENIED):
    err, params = result
    assert err == error, (err, params)
    assert set(params) == {"reason"} and params["reason"], params
    return params["reason"]


@pytest.fixture
def setup(daemon, as_user):
    """A daemon, a root client, and clients for alice, bob and the admin."""
    d = daemon()

    class Setup:
        daemon = d
        root = d.client()
        alice = as_user(ALICE, socket=d.socket)
        bob = as_user(BOB, socket=d.socket)
        admin = as_user(ADMIN, socket=d.socket)

    return Setup


def uid(name):
    return pwd.getpwnam(name).pw_uid


def test_users_exist_with_the_admin_group(test_users):
    assert ADMIN in grp.getgrnam(ADMIN_GROUP).gr_mem
    assert ALICE not in grp.getgrnam(ADMIN_GROUP).gr_mem
    assert test_users[ALICE].pw_uid != 0


# ---------------------------------------------------------------- ordinary users


def test_user_creates_a_key_for_themself(setup):
    before = time.time()
    r = setup.alice.create("laptop")
    k = r["key"]
    assert k["owner"] == ALICE
    assert k["created_by"] == f"uid={uid(ALICE)}({ALICE})"
    assert (k["role"], k["permissions"]) == ("readonly", ["read"])
    # The default lifetime of users' keys (user_default_lifetime = 30d).
    assert abs(parse_iso(k["expires_at"]) - (before + 30 * DAY)) <= 3
    assert setup.root.verify(r["token"], user=ALICE)["code"] == "VALID"
    # Naming themself as owner is the same thing.
    assert setup.alice.create("desktop", owner=ALICE)["key"]["owner"] == ALICE


def test_user_manages_own_keys(setup):
    own = setup.root.create("from-admin", owner=ALICE)["key"]
    setup.root.create("root-key")
    setup.root.create("bobs", owner=BOB)

    def session(c):
        out = {}
        k = c.create("ci", permissions=["read", "write"], scope=["sshd"])["key"]
        out["list"] = sorted(x["name"] for x in c.list()["keys"])
        out["list_owner"] = sorted(x["name"] for x in c.list(owner=ALICE)["keys"])
        out["get"] = c.get(own["id"])
        out["update"] = c.ok(f"{IFACE}.Update", {"id": k["id"], "name": "ci2",
                                                 "description": "x", "scope": ["sudo"],
                                                 "expires": "10d"})["key"]
        out["disable"] = c.ok(f"{IFACE}.Disable", {"id": k["id"]})["key"]["status"]
        out["enable"] = c.ok(f"{IFACE}.Enable", {"id": k["id"]})["key"]["status"]
        out["revoke"] = c.ok(f"{IFACE}.Revoke", {"id": k["id"]})["key"]["status"]
        out["delete"] = c.call(f"{IFACE}.Delete", {"id": k["id"]})
        out["delete_other"] = c.call(f"{IFACE}.Delete", {"id": own["id"]})
        out["after"] = c.list()
        return out

    out = setup.alice.run(session)
    assert out["list"] == ["ci", "from-admin"]
    assert out["list_owner"] == ["ci", "from-admin"]
    assert out["get"] == own
    u = out["update"]
    assert (u["name"], u["description"], u["scope"]) == ("ci2", "x", ["sudo"])
    assert abs(parse_iso(u["expires_at"]) - (time.time() + 10 * DAY)) <= 5
    assert (out["disable"], out["enable"], out["revoke"]) == ("disabled", "enabled", "revoked")
    assert out["delete"] == {"parameters": {}}
    assert out["delete_other"] == {"parameters": {}}
    assert out["after"] == {"keys": []}
    assert sorted(k["name"] for k in setup.root.list()["keys"]) == ["bobs", "root-key"]


@pytest.mark.parametrize("method,extra", [
    ("Get", {}), ("Update", {"name": "stolen"}), ("Update", {"expires": "1h"}),
    ("Disable", {}), ("Enable", {}), ("Revoke", {}), ("Delete", {}),
])
def test_user_is_refused_another_users_key(setup, method, extra):
    r = setup.root.create("bobs", owner=BOB, expires="10d")
    before = setup.root.get(r["key"]["id"])
    assert_denied(setup.alice.err(f"{IFACE}.{method}", {"id": r["key"]["id"], **extra}))
    assert setup.root.get(r["key"]["id"]) == before
    assert setup.root.verify(r["token"])["code"] == "VALID"


def test_user_is_refused_an_admins_key(setup):
    k = setup.root.create("root-key")["key"]
    assert_denied(setup.alice.err(f"{IFACE}.Get", {"id": k["id"]}))
    assert_denied(setup.alice.err(f"{IFACE}.Revoke", {"id": k["id"]}))
    assert setup.root.get(k["id"])["status"] == "enabled"


def test_user_may_not_list_another_owner(setup):
    setup.root.create("bobs", owner=BOB)
    assert_denied(setup.alice.err(f"{IFACE}.List", {"owner": BOB}))
    assert_denied(setup.alice.err(f"{IFACE}.List", {"owner": "root"}))
    assert setup.alice.ok(f"{IFACE}.List", {}) == {"keys": []}
    assert setup.alice.call(f"{IFACE}.List", {}, more=True) == [{"parameters": {"keys": []}}]


def test_user_may_not_create_for_another_owner(setup):
    for owner in (BOB, "root", "billing-api"):
        assert_denied(setup.alice.err(f"{IFACE}.Create", {"name": "k", "owner": owner}))
    assert setup.root.list()["keys"] == []


def test_user_may_not_give_the_admin_role(setup):
    reason = assert_denied(setup.alice.err(f"{IFACE}.Create", {"name": "k", "role": "admin"}))
    assert reason == "only admins may give a key the admin role"
    k = setup.alice.create("k")["key"]
    reason = assert_denied(setup.alice.err(f"{IFACE}.Update", {"id": k["id"], "role": "admin"}))
    assert reason == "only admins may give a key the admin role"
    assert setup.root.get(k["id"])["role"] == "readonly"
    # A custom set of the permissions they hold is theirs to choose...
    c = setup.alice.create("c", permissions=["create", "read", "write", "delete"])
    assert c["key"]["role"] == "custom"
    # ...but not invite, which users do not hold; the refusal says so, on
    # Create and on Update alike (where the caller need not be the creator).
    invite = "only admins, and keys that hold it, may give a key the invite permission"
    assert assert_denied(setup.alice.err(f"{IFACE}.Create", {"name": "i",
                                                             "permissions": ["invite"]})) == invite
    assert assert_denied(setup.alice.err(f"{IFACE}.Update", {
        "id": c["key"]["id"], "permissions": ["read", "invite"]})) == invite
    r = run_ctl("update", c["key"]["id"], "--permissions", "read,invite",
                socket=setup.daemon.socket, user=ALICE, rc=EXIT_REFUSED)
    assert r.err == f"apikeyctl: permission denied: {invite} [{DENIED}]\n"


@pytest.mark.parametrize("method", ["GetSharedSecret", "RotateSharedSecret"])
def test_user_may_not_touch_the_shared_secret(setup, method):
    secret = setup.root.ok(f"{IFACE}.GetSharedSecret")["secret"]
    assert_denied(setup.alice.err(f"{IFACE}.{method}", {}))
    assert setup.root.ok(f"{IFACE}.GetSharedSecret")["secret"] == secret


@pytest.mark.skipif("ListAudit" not in INTERFACE.methods, reason="no ListAudit in the interface")
def test_only_admins_read_the_audit_log(setup):
    setup.alice.create("k")
    assert_denied(setup.alice.err(f"{IFACE}.ListAudit", {}))
    events = setup.admin.ok(f"{IFACE}.ListAudit", {})["events"]
    assert [e["actor"] for e in events if e["action"] == "create"] == [
        f"uid={uid(ALICE)}({ALICE})"]


def test_anyone_may_verify(setup):
    r = setup.root.create("bobs", owner=BOB, scope=["sshd"])
    v = setup.alice.ok(f"{IFACE}.Verify", {"token": r["token"], "service": "sshd"})
    assert (v["valid"], v["code"], v["key"]["id"]) == (True, "VALID", r["key"]["id"])
    v = setup.alice.ok(f"{IFACE}.Verify", {"token": r["token"], "user": ALICE})
    assert (v["valid"], v["code"]) == (False, "WRONG_USER")


def test_user_lifetime_limit_on_create_and_update(setup):
    # Defaults: user_max_lifetime = 90d.
    for expires in ("never", "91d", "13w"):
        reason = assert_denied(setup.alice.err(f"{IFACE}.Create", {"name": "k",
                                                                   "expires": expires}), POLICY)
        assert "user_max_lifetime" in reason
    k = setup.alice.create("k", expires="89d")["key"]
    assert_denied(setup.alice.err(f"{IFACE}.Update", {"id": k["id"], "expires": "never"}),
                  POLICY)
    assert_denied(setup.alice.err(f"{IFACE}.Update", {"id": k["id"], "expires": "100d"}),
                  POLICY)
    assert setup.root.get(k["id"]) == k
    # An admin may give her key any lifetime.
    assert "expires_at" not in setup.root.ok(f"{IFACE}.Update", {"id": k["id"],
                                                                 "expires": "never"})["key"]


# ---------------------------------------------------------------- admin group


def test_admin_group_member_can_do_everything(setup):
    bobs = setup.root.create("bobs", owner=BOB)
    secret = setup.root.ok(f"{IFACE}.GetSharedSecret")["secret"]

    def session(c):
        out = {}
        out["create"] = c.create("for-bob", owner=BOB, role="admin", expires="never")["key"]
        out["own"] = c.create("mine")["key"]
        out["list"] = sorted(k["name"] for k in c.list()["keys"])
        out["list_bob"] = sorted(k["name"] for k in c.list(owner=BOB)["keys"])
        out["get"] = c.get(bobs["key"]["id"])
        out["update"] = c.ok(f"{IFACE}.Update", {"id": bobs["key"]["id"], "name": "renamed",
                                                 "expires": "never"})["key"]["name"]
        out["disable"] = c.ok(f"{IFACE}.Disable", {"id": bobs["key"]["id"]})["key"]["status"]
        out["revoke"] = c.ok(f"{IFACE}.Revoke", {"id": bobs["key"]["id"]})["key"]["status"]
        out["secret"] = c.ok(f"{IFACE}.GetSharedSecret")["secret"]
        out["delete"] = c.call(f"{IFACE}.Delete", {"id": bobs["key"]["id"]})
        out["rotate"] = c.ok(f"{IFACE}.RotateSharedSecret")["secret"]
        return out

    out = setup.admin.run(session)
    assert out["create"]["owner"] == BOB
    assert out["create"]["role"] == "admin"
    assert out["create"]["created_by"] == f"uid={uid(ADMIN)}({ADMIN})"
    assert out["own"]["owner"] == ADMIN
    assert "expires_at" not in out["own"]  # admins' keys have no default lifetime
    assert out["list"] == ["bobs", "for-bob", "mine"]
    assert out["list_bob"] == ["bobs", "for-bob"]
    assert out["get"] == bobs["key"]
    assert (out["update"], out["disable"], out["revoke"]) == ("renamed", "disabled", "revoked")
    assert out["secret"] == secret
    assert out["delete"] == {"parameters": {}}
    assert out["rotate"] != secret
    assert setup.root.ok(f"{IFACE}.GetSharedSecret")["secret"] == out["rotate"]


def test_admin_group_is_the_configured_one(daemon, as_user):
    d = daemon(config={"admin_group": "no-such-group-akt"})
    admin = as_user(ADMIN, socket=d.socket)
    assert_denied(admin.err(f"{IFACE}.GetSharedSecret", {}))
    assert_denied(admin.err(f"{IFACE}.Create", {"name": "k", "owner": BOB}))
    assert admin.create("own")["key"]["owner"] == ADMIN


def test_admin_by_supplementary_group_of_the_process(setup, as_user):
    """The daemon reads the groups of the connecting process (SO_PEERGROUPS):
    alice's process, holding the admin group's gid, is an admin."""
    gid = grp.getgrnam(ADMIN_GROUP).gr_gid
    alice_as_admin = as_user(ALICE, socket=setup.daemon.socket, groups=[gid])
    secret = setup.root.ok(f"{IFACE}.GetSharedSecret")["secret"]
    assert alice_as_admin.ok(f"{IFACE}.GetSharedSecret", {})["secret"] == secret
    assert alice_as_admin.create("k", owner=BOB)["key"]["owner"] == BOB


# ---------------------------------------------------------------- policy


def test_users_may_not_create(daemon, as_user):
    d = daemon(config={"users_may_create": "no"})
    alice = as_user(ALICE, socket=d.socket)
    reason = assert_denied(alice.err(f"{IFACE}.Create", {"name": "k"}), POLICY)
    assert "users_may_create" in reason
    # Admins still may, also for her, and she manages what she was given.
    assert as_user(ADMIN, socket=d.socket).create("k", owner=ALICE)["key"]["owner"] == ALICE
    k = d.client().create("k2", owner=ALICE)["key"]
    assert alice.ok(f"{IFACE}.Disable", {"id": k["id"]})["key"]["status"] == "disabled"
    assert len(alice.ok(f"{IFACE}.List", {})["keys"]) == 2


def test_user_max_keys(daemon, as_user):
    d = daemon(config={"user_max_keys": 2})
    alice = as_user(ALICE, socket=d.socket)
    a = alice.create("a")["key"]
    alice.create("b")
    reason = assert_denied(alice.err(f"{IFACE}.Create", {"name": "c"}), POLICY)
    assert "user_max_keys" in reason
    # Disabled keys count; revoked ones do not.
    alice.ok(f"{IFACE}.Disable", {"id": a["id"]})
    assert_denied(alice.err(f"{IFACE}.Create", {"name": "c"}), POLICY)
    alice.ok(f"{IFACE}.Revoke", {"id": a["id"]})
    c = alice.create("c")["key"]
    assert_denied(alice.err(f"{IFACE}.Create", {"name": "d"}), POLICY)
    alice.ok(f"{IFACE}.Delete", {"id": c["id"]})
    alice.create("d")
    # The limit is per user and not for admins.
    as_user(BOB, socket=d.socket).create("bobs")
    d.client().create("extra", owner=ALICE)
    assert len(d.client().list(owner=ALICE)["keys"]) == 4


def test_user_cannot_widen_a_key_an_admin_let_live_longer(setup):
    # An admin gives alice a key that never expires, for sshd only, read-only:
    # a key she could not create herself (user_max_lifetime is 90 days).
    k = setup.root.create("forever", owner=ALICE, expires="never", scope=["sshd"])["key"]
    for widen in ({"scope": ["sshd", "sudo"]}, {"scope": []},
                  {"role": "custom", "permissions": ["read", "write"]}):
        reason = assert_denied(setup.alice.err(f"{IFACE}.Update", {"id": k["id"], **widen}),
                               POLICY)
        assert reason == ("this key lives longer than users' keys may (user_max_lifetime), so "
                          "only an admin may give it a permission or a service it does not "
                          "have; give it, in the same update, an expiry within "
                          "user_max_lifetime"), reason
    assert setup.root.get(k["id"]) == k
    # Keeping or narrowing what it holds is no grant.
    assert setup.alice.ok(f"{IFACE}.Update", {"id": k["id"], "scope": ["sshd"],
                                              "description": "mine"})["key"]["scope"] == ["sshd"]
    # Widening with an expiry she could have given it herself is hers to do.
    k2 = setup.alice.ok(f"{IFACE}.Update", {"id": k["id"], "scope": ["sshd", "sudo"],
                                            "expires": "30d"})["key"]
    assert k2["scope"] == ["sshd", "sudo"] and "expires_at" in k2
    # The command line shows the same refusal.
    k3 = setup.root.create("forever2", owner=ALICE, expires="never", scope=["sshd"])["key"]
    r = run_ctl("update", k3["id"], "--scope", "sshd,sudo", user=ALICE,
                socket=setup.daemon.socket)
    assert r.rc == EXIT_REFUSED, r
    assert "only an admin may give it a permission or a service" in r.err, r.err


def test_user_max_lifetime_and_the_default_following_it(daemon, as_user):
    d = daemon(config={"user_max_lifetime": "1d"})
    alice = as_user(ALICE, socket=d.socket)
    now = time.time()
    k = alice.create("default")["key"]
    assert abs(parse_iso(k["expires_at"]) - (now + DAY)) <= 3
    assert abs(parse_iso(alice.create("short", expires="12h")["key"]["expires_at"])
               - (now + DAY / 2)) <= 3
    for expires in ("2d", "25h", "never", "2031-01-01"):
        assert_denied(alice.err(f"{IFACE}.Create", {"name": "long", "expires": expires}), POLICY)
    assert_denied(alice.err(f"{IFACE}.Update", {"id": k["id"], "expires": "2d"}), POLICY)
    assert alice.ok(f"{IFACE}.Update", {"id": k["id"], "expires": "20h"})["key"]["expires_at"]


def test_user_default_lifetime(daemon, as_user):
    d = daemon(config={"user_default_lifetime": "2h"})
    now = time.time()
    k = as_user(ALICE, socket=d.socket).create("k")["key"]
    assert abs(parse_iso(k["expires_at"]) - (now + 7200)) <= 3


def test_unlimited_lifetime(daemon, as_user):
    d = daemon(config={"user_max_lifetime": "unlimited", "user_default_lifetime": "never"})
    alice = as_user(ALICE, socket=d.socket)
    assert "expires_at" not in alice.create("a")["key"]
    assert "expires_at" not in alice.create("b", expires="never")["key"]
    assert alice.create("c", expires="3650d")["key"]["expires_at"]


# ---------------------------------------------------------------- keys in `auth`, used by users


def test_admin_key_makes_a_user_an_admin(setup):
    admin_key = setup.root.create("ops", owner="ops", role="admin")
    bobs = setup.root.create("bobs", owner=BOB)
    auth = {"auth": admin_key["token"]}

    def session(c):
        out = {}
        out["secret"] = c.call(f"{IFACE}.GetSharedSecret", auth)
        out["create"] = c.call(f"{IFACE}.Create", {"name": "x", "owner": BOB, **auth})
        out["revoke"] = c.call(f"{IFACE}.Revoke", {"id": bobs["key"]["id"], **auth})
        out["list"] = c.call(f"{IFACE}.List", auth)
        out["without"] = c.call(f"{IFACE}.GetSharedSecret", {})
        return out

    out = setup.alice.run(session)
    assert out["secret"]["parameters"]["secret"] == setup.root.ok(
        f"{IFACE}.GetSharedSecret")["secret"]
    created = out["create"]["parameters"]["key"]
    assert created["owner"] == BOB
    assert created["created_by"] == f"key={admin_key['key']['id']}(ops) uid={uid(ALICE)}({ALICE})"
    assert out["revoke"]["parameters"]["key"]["status"] == "revoked"
    assert len(out["list"]["parameters"]["keys"]) == 3
    assert_denied((out["without"]["error"], out["without"]["parameters"]))


def test_readonly_key_limits_a_user(setup):
    ro = setup.root.create("ro", owner=ALICE)
    own = setup.alice.create("mine")["key"]
    auth = {"auth": ro["token"]}
    assert [k["id"] for k in setup.alice.ok(f"{IFACE}.List", auth)["keys"]] == sorted(
        [ro["key"]["id"], own["id"]])
    assert setup.alice.ok(f"{IFACE}.Get", {"id": own["id"], **auth})["key"] == own
    for method, params in (("Update", {"id": own["id"], "name": "n"}),
                           ("Revoke", {"id": own["id"]}),
                           ("Create", {"name": "new"})):
        assert_denied(setup.alice.err(f"{IFACE}.{method}", {**params, **auth}))
    assert setup.root.get(own["id"]) == own
