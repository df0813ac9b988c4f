# SPDX-License-Identifier: MIT
"""Calls that carry an API key in `auth` act with that key's role,
permissions and owner, whoever the connecting process is (here root, so a
refusal shows the key and not the caller decided)."""

import time

import pytest

from conftest import IFACE, ME_ACTOR, make_token, other_secret, parse_iso, split_token
from test_apikeyctl import EXIT_OK, run_ctl

DENIED = f"{IFACE}.PermissionDenied"
INVALID = "org.varlink.service.InvalidParameter"
TEAM = "app-team"


def assert_denied(result):
    err, params = result
    assert err == DENIED, (err, params)
    assert set(params) == {"reason"} and params["reason"], params
    return params["reason"]


@pytest.fixture
def team(root):
    """Keys owned by app-team and by others, created by root."""
    class Team:
        a = root.create("a", owner=TEAM)["key"]
        b = root.create("b", owner=TEAM, expires="30d")["key"]
        other = root.create("other", owner="other-team")["key"]
        mine = root.create("root's")["key"]
    return Team


def auth_key(root, **params):
    params.setdefault("owner", TEAM)
    return root.create(f"auth-{len(root.list()['keys'])}", **params)


def snapshot(root):
    return root.list()["keys"]


def test_admin_key_acts_as_admin(root, team):
    admin = auth_key(root, role="admin")
    auth = {"auth": admin["token"]}
    secret = root.ok(f"{IFACE}.GetSharedSecret")["secret"]
    assert root.ok(f"{IFACE}.GetSharedSecret", auth)["secret"] == secret
    k = root.ok(f"{IFACE}.Create", {"name": "x", "owner": "partner", "role": "admin",
                                    **auth})["key"]
    assert k["created_by"] == f"key={admin['key']['id']}({TEAM}) {ME_ACTOR}"
    assert k["owner"] == "partner"
    assert "expires_at" not in k
    assert root.ok(f"{IFACE}.Revoke", {"id": team.other["id"], **auth})["key"]["status"] == (
        "revoked")
    assert len(root.ok(f"{IFACE}.List", auth)["keys"]) == 6


def test_readonly_key_reads_its_owners_keys_only(root, team):
    ro = auth_key(root)
    auth = {"auth": ro["token"]}
    listed = root.ok(f"{IFACE}.List", auth)["keys"]
    assert sorted(k["id"] for k in listed) == sorted([team.a["id"], team.b["id"],
                                                      ro["key"]["id"]])
    # The same keys; the one in auth now with its last use, by the first List.
    again = root.ok(f"{IFACE}.List", {"owner": TEAM, **auth})["keys"]
    assert [k["id"] for k in again] == [k["id"] for k in listed]
    assert [k for k in again if k["id"] != ro["key"]["id"]] == [
        k for k in listed if k["id"] != ro["key"]["id"]]
    assert_denied(root.err(f"{IFACE}.List", {"owner": "other-team", **auth}))
    assert root.ok(f"{IFACE}.Get", {"id": team.a["id"], **auth})["key"] == team.a
    assert_denied(root.err(f"{IFACE}.Get", {"id": team.other["id"], **auth}))
    assert_denied(root.err(f"{IFACE}.Get", {"id": team.mine["id"], **auth}))


@pytest.mark.parametrize("method,params", [
    ("Update", {"name": "renamed"}),
    ("Update", {"description": "x"}),
    ("Disable", {}),
    ("Enable", {}),
    ("Revoke", {}),
    ("Delete", {}),
])
def test_readonly_key_cannot_change_keys(root, team, method, params):
    ro = auth_key(root, role="readonly")
    before = snapshot(root)
    assert_denied(root.err(f"{IFACE}.{method}", {"id": team.a["id"], "auth": ro["token"],
                                                 **params}))
    assert snapshot(root) == before


@pytest.mark.parametrize("method,params", [
    ("Create", {"name": "new"}),
    ("Create", {"name": "new", "owner": TEAM}),
    ("GetSharedSecret", {}),
    ("RotateSharedSecret", {}),
])
def test_readonly_key_cannot_create_or_see_the_secret(root, team, method, params):
    secret = root.ok(f"{IFACE}.GetSharedSecret")["secret"]
    ro = auth_key(root, role="readonly")
    before = snapshot(root)
    assert_denied(root.err(f"{IFACE}.{method}", {"auth": ro["token"], **params}))
    assert snapshot(root) == before
    assert root.ok(f"{IFACE}.GetSharedSecret")["secret"] == secret


def test_write_key_updates_but_cannot_revoke_or_delete(root, team):
    w = auth_key(root, permissions=["read", "write"])
    auth = {"auth": w["token"]}
    assert root.ok(f"{IFACE}.Update", {"id": team.a["id"], "name": "a2",
                                       **auth})["key"]["name"] == "a2"
    assert root.ok(f"{IFACE}.Disable", {"id": team.a["id"], **auth})["key"]["status"] == (
        "disabled")
    assert root.ok(f"{IFACE}.Enable", {"id": team.a["id"], **auth})["key"]["status"] == (
        "enabled")
    assert_denied(root.err(f"{IFACE}.Revoke", {"id": team.a["id"], **auth}))
    assert_denied(root.err(f"{IFACE}.Delete", {"id": team.a["id"], **auth}))
    assert_denied(root.err(f"{IFACE}.Create", {"name": "n", **auth}))
    assert_denied(root.err(f"{IFACE}.Update", {"id": team.other["id"], "name": "x", **auth}))
    assert root.get(team.a["id"])["status"] == "enabled"


def test_delete_key_revokes_and_deletes(root, team):
    d = auth_key(root, permissions=["read", "delete"])
    auth = {"auth": d["token"]}
    assert root.ok(f"{IFACE}.Revoke", {"id": team.a["id"], **auth})["key"]["status"] == (
        "revoked")
    assert root.ok(f"{IFACE}.Delete", {"id": team.b["id"], **auth}) == {}
    assert_denied(root.err(f"{IFACE}.Update", {"id": team.a["id"], "name": "x", **auth}))
    assert_denied(root.err(f"{IFACE}.Delete", {"id": team.other["id"], **auth}))


def test_create_key_hands_on_only_what_it_has(root, team):
    c = auth_key(root, permissions=["create", "read"])
    auth = {"auth": c["token"]}
    k = root.ok(f"{IFACE}.Create", {"name": "child", **auth})["key"]
    assert (k["owner"], k["role"], k["permissions"]) == (TEAM, "readonly", ["read"])
    assert k["created_by"] == f"key={c['key']['id']}({TEAM}) {ME_ACTOR}"
    for params in ({"permissions": ["write"]}, {"permissions": ["create", "read", "write"]},
                   {"role": "admin"}, {"owner": "other-team"}, {"owner": "root"}):
        assert_denied(root.err(f"{IFACE}.Create", {"name": "n", **params, **auth}))
    assert root.ok(f"{IFACE}.Create", {"name": "same", "permissions": ["create", "read"],
                                       **auth})["key"]["permissions"] == ["create", "read"]


def test_invite_key_creates_for_other_owners_but_not_for_admins(root, team):
    inv = auth_key(root, permissions=["create", "read", "invite"])
    auth = {"auth": inv["token"]}
    k = root.ok(f"{IFACE}.Create", {"name": "guest", "owner": "partner", **auth})["key"]
    assert k["owner"] == "partner"
    assert_denied(root.err(f"{IFACE}.Create", {"name": "r", "owner": "root", **auth}))
    # Only what it has: not write, not admin.
    assert_denied(root.err(f"{IFACE}.Create", {"name": "w", "owner": "partner",
                                               "permissions": ["write"], **auth}))
    assert_denied(root.err(f"{IFACE}.Create", {"name": "a", "owner": "partner",
                                               "role": "admin", **auth}))


def test_disabled_revoked_or_deleted_key_is_refused(root, team):
    k = auth_key(root, role="admin")
    auth = {"auth": k["token"]}
    root.ok(f"{IFACE}.Disable", {"id": k["key"]["id"]})
    assert_denied(root.err(f"{IFACE}.List", auth))
    assert_denied(root.err(f"{IFACE}.Get", {"id": team.a["id"], **auth}))
    root.ok(f"{IFACE}.Enable", {"id": k["key"]["id"]})
    assert root.ok(f"{IFACE}.Get", {"id": team.a["id"], **auth})["key"] == team.a
    root.ok(f"{IFACE}.Revoke", {"id": k["key"]["id"]})
    assert_denied(root.err(f"{IFACE}.List", auth))
    assert_denied(root.err(f"{IFACE}.Enable", {"id": k["key"]["id"], **auth}))
    root.ok(f"{IFACE}.Delete", {"id": k["key"]["id"]})
    assert_denied(root.err(f"{IFACE}.List", auth))


def test_expired_key_is_refused(root, team):
    k = auth_key(root, role="admin", expires="1s")
    assert root.ok(f"{IFACE}.List", {"auth": k["token"]})["keys"]
    time.sleep(1.6)
    assert_denied(root.err(f"{IFACE}.List", {"auth": k["token"]}))


def test_wrong_or_malformed_key_is_refused(root, team):
    k = auth_key(root, role="admin")
    prefix, key_id, secret, _ = split_token(k["token"])
    for bad in (make_token(prefix, key_id, other_secret(secret)),
                make_token(prefix, "AAAAAAAAAAAA", secret),
                k["token"][:-1] + ("0" if k["token"][-1] != "0" else "1"),
                "garbage", ""):
        assert_denied(root.err(f"{IFACE}.GetSharedSecret", {"auth": bad}))
        assert_denied(root.err(f"{IFACE}.List", {"auth": bad}))


@pytest.mark.parametrize("scope,allowed", [
    ([], True),
    (["apikeyd"], True),
    (["sshd", "apikeyd"], True),
    (["sshd"], False),
    (["sshd", "sudo"], False),
    (["apikeyd-staging"], False),
    (["APIKEYD"], False),
])
def test_key_scope_must_allow_apikeyd(root, team, scope, allowed):
    k = auth_key(root, role="admin", scope=scope)
    r = root.call(f"{IFACE}.GetSharedSecret", {"auth": k["token"]})
    if allowed:
        assert "error" not in r, r
    else:
        reason = assert_denied((r.get("error"), r.get("parameters")))
        assert "apikeyd" in reason


def test_auth_must_be_a_string(root):
    for bad in (5, ["x"], {"token": "x"}, True):
        assert root.err(f"{IFACE}.List", {"auth": bad}) == (INVALID, {"parameter": "auth"})
    # null is as if absent: root acts as itself.
    assert root.ok(f"{IFACE}.List", {"auth": None}) == {"keys": []}



def test_a_key_used_in_auth_has_its_last_use(root, team, tmp_path):
    """A script's key that manages keys is used as much as one that logs in:
    Get and `apikeyctl show` say when, and for "apikeyd"."""
    k = auth_key(root, scope=["apikeyd"])
    kid = k["key"]["id"]
    assert "last_used_at" not in root.get(kid)
    # A key refused as the principal (here: disabled) is no use of it.
    root.ok(f"{IFACE}.Disable", {"id": kid})
    assert_denied(root.err(f"{IFACE}.List", {"auth": k["token"]}))
    root.ok(f"{IFACE}.Enable", {"id": kid})
    assert "last_used_at" not in root.get(kid)

    before = time.time()
    assert len(root.ok(f"{IFACE}.List", {"auth": k["token"]})["keys"]) == 3
    used = root.get(kid)
    assert used["last_used_service"] == "apikeyd"
    assert before - 1 <= parse_iso(used["last_used_at"]) <= time.time() + 1
    assert "last_used_from" not in used

    # The same through apikeyctl --auth-file, and `show` tells it.
    other = auth_key(root, scope=["apikeyd"])
    auth_file = tmp_path / "key"
    auth_file.write_text(other["token"] + "\n")
    auth_file.chmod(0o600)
    sock = root.path
    run_ctl("--auth-file", auth_file, "list", socket=sock, rc=EXIT_OK)
    shown = run_ctl("show", other["key"]["id"], socket=sock, rc=EXIT_OK).out
    line = next(l for l in shown.splitlines() if l.strip().startswith("Last used"))
    assert line.rstrip().endswith(", apikeyd"), shown
