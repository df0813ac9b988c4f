# SPDX-License-Identifier: MIT
"""Authority only narrows, tried from the side of the caller who must be
refused: a script holding a restricted key, the holder of an `invite` key,
an ordinary local user whose key an admin disabled.

- A key acting in `auth` gives no key more than it holds: permissions,
  scope (empty = any, the widest) and expiry; it cannot widen itself.
- A key created through `invite` for another owner serves that owner's
  scripts, never a login as them (NOT_FOR_LOGIN, PAM_AUTH_ERR) and never
  the management of their keys.
- Keys created through a key die with it: revoke and delete revoke them,
  recursively, in one transaction; disable suspends them.
- An admin's Disable holds against the owner."""

import time

import pytest

from conftest import ALICE, BOB, IFACE, parse_iso
from pam_fixtures import DEFAULT_BUILD, PAM_AUTH_ERR, PAM_SUCCESS, PamDir, trust_me
from test_apikeyctl import EXIT_REFUSED, run_ctl

DENIED = f"{IFACE}.PermissionDenied"
POLICY = f"{IFACE}.PolicyViolation"
TEAM = "app-team"
# A principal that is no account here (so not an admin), standing in for
# "a member of group sudo" or a system account such as postgres: what an
# invite key used to be able to log in as.
VICTIM = "victim-user"


def denied(result, words):
    """An (error, parameters) pair, or a raw reply: PermissionDenied with `words`."""
    err, params = (result["error"], result["parameters"]) if isinstance(result, dict) else result
    assert err == DENIED, (err, params)
    assert words in params["reason"], params
    return params["reason"]


def key_with(root, name, **params):
    params.setdefault("owner", TEAM)
    return root.create(name, **params)


def act(root, method, auth, **params):
    return root.call(f"{IFACE}.{method}", {**params, "auth": auth["token"]})


def ok(r):
    assert "error" not in r, r
    return r["parameters"]


# ---------------------------------------------------------------- invite (item 1)


def test_invited_key_cannot_log_in_as_its_owner(root):
    inviter = key_with(root, "inviter", permissions=["create", "read", "invite"])
    r = ok(act(root, "Create", inviter, name="for-victim", owner=VICTIM, permissions=["read"],
               scope=["sshd", "sudo"]))
    k, token = r["key"], r["token"]
    assert k["owner"] == VICTIM and k["no_login"] is True
    assert k["parent"] == inviter["key"]["id"]
    # Not a login as the owner, through any service.
    for service in ("sshd", "sudo"):
        v = root.verify(token, service=service, user=VICTIM)
        assert (v["valid"], v["code"]) == (False, "NOT_FOR_LOGIN"), v
    # What it is for: a script or service that checks the key without a user.
    assert root.verify(token, service="sshd")["code"] == "VALID"


def test_invited_key_is_refused_by_pam(root, apikeyd, tmp_path):
    d = apikeyd
    pam = PamDir(tmp_path / "pam.d", DEFAULT_BUILD.check())
    inviter = key_with(root, "inviter", permissions=["create", "read", "invite"])
    invited = ok(act(root, "Create", inviter, name="for-victim", owner=VICTIM,
                     scope=["sshd", "sudo"]))["token"]
    own = root.create("victim's own", owner=VICTIM, scope=["sshd"])["token"]
    args = f"socket={d.socket} nodelay {trust_me()}".rstrip()
    for service in ("sshd", "sudo"):
        svc = pam.probe(service, args)
        r = pam.run(svc, VICTIM, [invited], rhost="198.51.100.9")
        assert r.code == PAM_AUTH_ERR, r
    # The owner's own key, made by an admin, still logs in: the stack works.
    r = pam.run(pam.probe("sshd", args), VICTIM, [own], rhost="198.51.100.9")
    assert r.code == PAM_SUCCESS, r


def test_invited_key_cannot_manage_its_owners_keys(root):
    victims = root.create("victim's", owner=VICTIM)["key"]
    inviter = key_with(root, "inviter", permissions=["create", "read", "write", "delete",
                                                     "invite"])
    invited = ok(act(root, "Create", inviter, name="manager", owner=VICTIM,
                     permissions=["read", "write", "delete"]))
    assert invited["key"]["no_login"] is True
    before = root.list()["keys"]
    for method, params in (("List", {}), ("Get", {"id": victims["id"]}),
                           ("Disable", {"id": victims["id"]}), ("Revoke", {"id": victims["id"]}),
                           ("Delete", {"id": victims["id"]}),
                           ("Update", {"id": victims["id"], "name": "mine now"}),
                           ("Create", {"name": "another", "owner": VICTIM})):
        denied(act(root, method, invited, **params), "created through invite for another owner")
    # Nor does the inviter manage them itself.
    for method in ("Disable", "Revoke", "Delete"):
        denied(act(root, method, inviter, id=victims["id"]), "only an admin or the key's owner")
    assert root.list()["keys"] == before


def test_invite_for_an_admin_is_refused(root):
    inviter = key_with(root, "inviter", permissions=["create", "read", "invite"])
    denied(act(root, "Create", inviter, name="x", owner="root"), "only be created by an admin")


def test_invite_uses_up_none_of_the_owners_own_allowance(test_users, daemon, as_user, tmp_path):
    """The keys invited for an owner are counted apart from the owner's
    own: an inviter filling them blocks no create of the owner's, the
    refusal names whose keys are full, and neither kind makes room for more
    of the other."""
    d = daemon(config={"user_max_keys": 2})
    root = d.client()
    inviter = key_with(root, "inviter", permissions=["create", "read", "invite"])
    full = {"reason": f"{BOB} has as many keys created through invite as users may have "
                      f"(user_max_keys = 2); {BOB} or an admin may revoke or delete one"}
    for i in range(2):
        ok(act(root, "Create", inviter, name=f"invited-{i}", owner=BOB))
    r = act(root, "Create", inviter, name="invited-2", owner=BOB)
    assert (r["error"], r["parameters"]) == (POLICY, full)

    bob = as_user(BOB, socket=d.socket)
    for i in range(2):
        bob.create(f"own-{i}")
    assert bob.err(f"{IFACE}.Create", {"name": "own-2"}) == (POLICY, {
        "reason": "you have as many keys as users may have (user_max_keys); revoke or delete "
                  "one first"})
    r = act(root, "Create", inviter, name="invited-2", owner=BOB)
    assert (r["error"], r["parameters"]) == (POLICY, full)

    # apikeyctl, acting with the inviting key, says the same.
    auth_file = tmp_path / "inviter"
    auth_file.write_text(inviter["token"] + "\n")
    auth_file.chmod(0o600)
    c = run_ctl("--auth-file", auth_file, "create", "invited-3", "--owner", BOB,
                socket=d.socket, rc=EXIT_REFUSED)
    assert c.err == (f"apikeyctl: refused by this installation's policy: {full['reason']} "
                     f"[{POLICY}]\n")
    assert len(root.list(owner=BOB)["keys"]) == 4


def test_admin_creates_login_keys_for_others(root):
    k = root.create("login", owner=VICTIM, scope=["sshd"])
    assert "no_login" not in k["key"]
    assert root.verify(k["token"], service="sshd", user=VICTIM)["code"] == "VALID"


# ---------------------------------------------------------------- ceilings (item 2)


def test_key_gives_no_wider_scope_or_longer_life_than_its_own(root):
    narrow = key_with(root, "narrow", permissions=["create", "read", "write"],
                      scope=["apikeyd"], expires="1h")
    limit = parse_iso(narrow["key"]["expires_at"])
    for params, words in (({"scope": []}, "must have one within it"),
                          ({"scope": ["sshd"]}, "within the scope"),
                          ({"scope": ["apikeyd", "sudo"]}, "within the scope"),
                          ({"expires": "90d"}, "expire later"),
                          ({"expires": "never"}, "expire later"),
                          ({"permissions": ["read", "delete"]}, "does not hold")):
        denied(act(root, "Create", narrow, name="wide", **params), words)
    # Unsaid, scope and expiry are the acting key's: never wider.
    child = ok(act(root, "Create", narrow, name="child"))
    assert child["key"]["scope"] == ["apikeyd"]
    assert parse_iso(child["key"]["expires_at"]) <= limit
    assert root.verify(child["token"], service="sshd")["code"] == "OUT_OF_SCOPE"
    # Within the ceiling is fine.
    shorter = ok(act(root, "Create", narrow, name="shorter", scope=["apikeyd"], expires="10m"))
    assert parse_iso(shorter["key"]["expires_at"]) < limit


def test_key_cannot_widen_itself(root):
    me = key_with(root, "me", permissions=["read", "write"], scope=["apikeyd"], expires="1h")
    kid = me["key"]["id"]
    before = root.get(kid)
    for params, words in (({"scope": []}, "must have one within it"),
                          ({"scope": ["apikeyd", "sshd"]}, "within the scope"),
                          ({"expires": "90d"}, "expire later"),
                          ({"expires": "never"}, "expire later"),
                          ({"permissions": ["read", "write", "delete"]}, "does not hold"),
                          ({"role": "admin"}, "does not hold")):
        for _ in range(2):  # "again and again": the second try is refused too
            denied(act(root, "Update", me, id=kid, **params), words)
    assert root.get(kid) == before
    # Narrowing itself is allowed.
    k = ok(act(root, "Update", me, id=kid, expires="30m", permissions=["read"]))["key"]
    assert k["permissions"] == ["read"]
    assert parse_iso(k["expires_at"]) < parse_iso(before["expires_at"])


def test_key_cannot_widen_a_sibling_beyond_itself(root):
    sibling = key_with(root, "sibling", scope=["apikeyd"])["key"]
    me = key_with(root, "me", permissions=["read", "write"], scope=["apikeyd"], expires="1h")
    denied(act(root, "Update", me, id=sibling["id"], scope=[]), "must have one within it")
    denied(act(root, "Update", me, id=sibling["id"], expires="never"), "expire later")
    assert root.get(sibling["id"]) == sibling


OUTLIVES = ("this key expires later than the API key given in auth, so that key cannot give "
            "it a permission or a service it does not have; give it, in the same update, an "
            "expiry no later than that key's")


def test_key_gives_a_longer_lived_key_nothing_it_would_keep_after(root, tmp_path):
    """A script key that expires in an hour, updating a key of its owner that
    never expires: what it adds would outlive it, so it adds nothing, and the
    refusal says why.  What asks no expiry and adds nothing is no grant: not
    refused for the expiry."""
    me = key_with(root, "me", permissions=["read", "write"], scope=["apikeyd", "sshd"],
                  expires="1h")
    sibling = key_with(root, "sibling", permissions=["read"], scope=["apikeyd"])["key"]
    wide = {"error": DENIED, "parameters": {"reason": OUTLIVES}}
    for params in ({"permissions": ["read", "write"]},
                   {"scope": ["apikeyd", "sshd"]},
                   {"scope": ["sshd"]},
                   {"name": "renamed", "permissions": ["read", "write"]}):
        assert act(root, "Update", me, id=sibling["id"], **params) == wide, params
    assert root.get(sibling["id"]) == sibling
    # apikeyctl, acting with the key, prints the reason.
    auth_file = tmp_path / "me"
    auth_file.write_text(me["token"] + "\n")
    auth_file.chmod(0o600)
    r = run_ctl("--auth-file", auth_file, "update", sibling["id"], "--permissions",
                "read,write", socket=root.path, rc=EXIT_REFUSED)
    assert r.err == f"apikeyctl: permission denied: {OUTLIVES} [{DENIED}]\n"

    # Narrowing it, renaming it, or the same values again: no grant.
    k = ok(act(root, "Update", me, id=sibling["id"], name="renamed", description="d",
               permissions=["read"], scope=["apikeyd"]))["key"]
    assert (k["name"], k["permissions"], k["scope"]) == ("renamed", ["read"], ["apikeyd"])
    assert "expires_at" not in k
    # Given an expiry within the acting key's, it may be given more.
    k = ok(act(root, "Update", me, id=sibling["id"], permissions=["read", "write"],
               scope=["apikeyd", "sshd"], expires="30m"))["key"]
    assert (k["permissions"], k["scope"]) == (["read", "write"], ["apikeyd", "sshd"])
    assert parse_iso(k["expires_at"]) <= parse_iso(me["key"]["expires_at"])


def test_admin_key_is_bounded_by_its_own_scope_and_expiry(root):
    admin = key_with(root, "admin", role="admin", scope=["apikeyd"], expires="7d")
    denied(act(root, "Create", admin, name="forever", role="admin", expires="never"),
           "expire later")
    denied(act(root, "Create", admin, name="ssh", owner="someone", scope=["sshd"]),
           "within the scope")
    k = ok(act(root, "Create", admin, name="fine", role="admin", owner="someone"))["key"]
    assert k["scope"] == ["apikeyd"] and k["role"] == "admin"
    assert parse_iso(k["expires_at"]) <= parse_iso(admin["key"]["expires_at"])
    # An admin's own Create (no key) is not bounded.
    assert "expires_at" not in root.create("root's", role="admin")["key"]


# ---------------------------------------------------------------- the tree


def tree(root):
    """top (created by root) -> mid (through top) -> leaf (through mid)."""
    top = key_with(root, "top", permissions=["create", "read", "write", "delete"])
    mid = ok(act(root, "Create", top, name="mid", permissions=["create", "read"]))
    leaf = ok(act(root, "Create", mid, name="leaf"))
    return top, mid, leaf


def test_get_names_parent_and_children(root):
    top, mid, leaf = tree(root)
    assert mid["key"]["parent"] == top["key"]["id"]
    assert leaf["key"]["parent"] == mid["key"]["id"]
    assert leaf["key"]["created_by"].startswith(f"key={mid['key']['id']}(")
    r = root.ok(f"{IFACE}.Get", {"id": top["key"]["id"]})
    assert r["children"] == [mid["key"]["id"]] and r["children_total"] == 1
    assert "children" not in root.ok(f"{IFACE}.Get", {"id": leaf["key"]["id"]})


@pytest.mark.parametrize("method", ["Revoke", "Delete"])
def test_revoking_or_deleting_a_key_revokes_what_was_made_through_it(root, method):
    top, mid, leaf = tree(root)
    unrelated = key_with(root, "unrelated")
    root.ok(f"{IFACE}.{method}", {"id": top["key"]["id"]})
    for k in (mid, leaf):
        assert root.get(k["key"]["id"])["status"] == "revoked"
        assert root.verify(k["token"])["code"] == "REVOKED"
    denied(act(root, "Create", mid, name="more"), "disabled, revoked or expired")
    assert root.verify(unrelated["token"])["code"] == "VALID"
    if method == "Delete":
        assert root.verify(top["token"])["code"] == "NOT_FOUND"
        # The children stay listed, naming the parent that is gone.
        assert root.get(mid["key"]["id"])["parent"] == top["key"]["id"]


def test_revoke_of_a_middle_key_spares_its_parent(root):
    top, mid, leaf = tree(root)
    root.ok(f"{IFACE}.Revoke", {"id": mid["key"]["id"]})
    assert root.verify(leaf["token"])["code"] == "REVOKED"
    assert root.verify(top["token"])["code"] == "VALID"


def test_disabling_a_key_suspends_what_was_made_through_it(root):
    top, mid, leaf = tree(root)
    root.ok(f"{IFACE}.Disable", {"id": top["key"]["id"]})
    assert root.verify(leaf["token"])["code"] == "DISABLED"
    assert root.verify(mid["token"])["code"] == "DISABLED"
    denied(act(root, "Create", mid, name="more"), "suspended")
    # Their own status is unchanged; enabling the parent lets them work again.
    assert root.get(leaf["key"]["id"])["status"] == "enabled"
    root.ok(f"{IFACE}.Enable", {"id": top["key"]["id"]})
    assert root.verify(leaf["token"])["code"] == "VALID"
    assert ok(act(root, "Create", mid, name="more"))["key"]["parent"] == mid["key"]["id"]


def test_expiry_of_the_parent_ends_the_children(root):
    top = key_with(root, "top", permissions=["create", "read"], expires="2s")
    child = ok(act(root, "Create", top, name="child"))
    assert parse_iso(child["key"]["expires_at"]) <= parse_iso(top["key"]["expires_at"])
    time.sleep(max(0.0, parse_iso(top["key"]["expires_at"]) + 1.1 - time.time()))
    assert root.verify(child["token"])["code"] == "EXPIRED"


def test_lineage_is_bounded(daemon):
    root = daemon(config={"user_max_keys": 100}).client()
    k = key_with(root, "g0", permissions=["create", "read"])
    depth = 0
    while True:
        r = act(root, "Create", k, name=f"g{depth + 1}", permissions=["create", "read"])
        if "error" in r:
            assert r["error"] == POLICY and "too many keys" in r["parameters"]["reason"], r
            break
        k = r["parameters"]
        depth += 1
        assert depth < 100, "no bound on keys created through keys"
    assert depth == 16
    assert root.verify(k["token"])["code"] == "VALID"


# ---------------------------------------------------------------- an admin's Disable


def test_admins_disable_holds_against_the_owner(root, apikeyd, as_user):
    alice = as_user(ALICE, socket=apikeyd.socket)
    mine = alice.create("laptop")
    kid = mine["key"]["id"]
    k = root.ok(f"{IFACE}.Disable", {"id": kid})["key"]
    assert k["disabled_by_admin"] is True
    err, params = alice.err(f"{IFACE}.Enable", {"id": kid})
    assert err == DENIED and params["reason"] == (
        "an admin disabled this key; only an admin may enable it"), params
    # Nor through one of her keys.
    writer = alice.create("writer", permissions=["read", "write"], scope=["apikeyd"])
    err, params = alice.err(f"{IFACE}.Enable", {"id": kid, "auth": writer["token"]})
    assert err == DENIED and "only an admin may enable it" in params["reason"]
    assert root.verify(mine["token"])["code"] == "DISABLED"
    # She may still revoke or delete it: that narrows.
    k = root.ok(f"{IFACE}.Enable", {"id": kid})["key"]
    assert k["status"] == "enabled" and "disabled_by_admin" not in k
    assert alice.ok(f"{IFACE}.Disable", {"id": kid})["key"]["status"] == "disabled"
    assert alice.ok(f"{IFACE}.Enable", {"id": kid})["key"]["status"] == "enabled"


def test_admin_disabling_its_own_key_is_an_owners_disable(root):
    k = root.create("mine")["key"]
    assert "disabled_by_admin" not in root.ok(f"{IFACE}.Disable", {"id": k["id"]})["key"]
