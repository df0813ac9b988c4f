# SPDX-License-Identifier: MIT
"""List, Get, Update, Disable/Enable, Revoke, Delete and the shared secret,
called by root (an admin)."""

import json
import time

import pytest

from conftest import (IFACE, INTERFACE, ME, ME_ACTOR, check_key, check_reply, decode_b64,
                      field_refusal, list_all_ids, parse_iso)

INVALID = "org.varlink.service.InvalidParameter"


# ---------------------------------------------------------------- List


@pytest.fixture
def catalogue(root):
    """Keys of three owners in every stored status, with various expiries.
    Returns {name: key}; names are unique across owners here."""
    keys = {}

    def add(name, **params):
        keys[name] = root.create(name, **params)["key"]

    add("ci-build", owner="akt-alice", expires="12h")
    add("ci-deploy", owner="akt-alice", expires="30d")
    add("laptop", owner="akt-alice")
    add("ci-nightly", owner="akt-bob", expires="2h")
    add("backup", owner="akt-bob", expires="3d")
    add("app", owner="billing-api", expires="20h")
    add("root-ci", expires="1w")
    root.ok(f"{IFACE}.Disable", {"id": keys["laptop"]["id"]})
    root.ok(f"{IFACE}.Revoke", {"id": keys["backup"]["id"]})
    root.ok(f"{IFACE}.Disable", {"id": keys["ci-build"]["id"]})
    root.ok(f"{IFACE}.Enable", {"id": keys["ci-build"]["id"]})
    return keys


def names(reply):
    check_reply("List", reply)
    for k in reply["keys"]:
        check_key(k)
    return sorted(k["name"] for k in reply["keys"])


def test_list_all(root, catalogue):
    r = root.list()
    assert names(r) == sorted(catalogue)
    assert "cursor" not in r
    # In id order, each as Get shows it.
    ids = [k["id"] for k in r["keys"]]
    assert ids == sorted(ids)
    for k in r["keys"]:
        assert root.get(k["id"]) == k


@pytest.mark.parametrize("filters,expected", [
    ({"owner": "akt-alice"}, ["ci-build", "ci-deploy", "laptop"]),
    ({"owner": "akt-bob"}, ["backup", "ci-nightly"]),
    ({"owner": ME}, ["root-ci"]),
    ({"owner": "no-such-owner"}, []),
    ({"owner": "akt-"}, []),
    ({"status": "enabled"}, ["app", "ci-build", "ci-deploy", "ci-nightly", "root-ci"]),
    ({"status": "disabled"}, ["laptop"]),
    ({"status": "revoked"}, ["backup"]),
    ({"status": "expired"}, []),
    ({"name_prefix": "ci-"}, ["ci-build", "ci-deploy", "ci-nightly"]),
    ({"name_prefix": "ci-d"}, ["ci-deploy"]),
    ({"name_prefix": "CI"}, []),
    ({"name_prefix": ""}, ["app", "backup", "ci-build", "ci-deploy", "ci-nightly", "laptop",
                           "root-ci"]),
    ({"expiring_within": "1d"}, ["app", "ci-build", "ci-nightly"]),
    ({"expiring_within": "3h"}, ["ci-nightly"]),
    ({"expiring_within": "4d"}, ["app", "backup", "ci-build", "ci-nightly"]),
    ({"expiring_within": "1d12h"}, ["app", "ci-build", "ci-nightly"]),
    ({"expiring_within": "60d"}, ["app", "backup", "ci-build", "ci-deploy", "ci-nightly",
                                  "root-ci"]),
    ({"owner": "akt-alice", "name_prefix": "ci-"}, ["ci-build", "ci-deploy"]),
    ({"owner": "akt-alice", "status": "disabled"}, ["laptop"]),
    ({"name_prefix": "ci-", "expiring_within": "1d"}, ["ci-build", "ci-nightly"]),
    ({"owner": "akt-bob", "status": "revoked", "expiring_within": "1w"}, ["backup"]),
    ({"owner": "akt-bob", "status": "enabled", "name_prefix": "b"}, []),
])
def test_list_filters(root, catalogue, filters, expected):
    assert names(root.list(**filters)) == expected
    # The same with paging by one.
    ids = list_all_ids(root, limit=1, **filters)
    assert sorted(ids) == sorted(catalogue[n]["id"] for n in expected)


@pytest.mark.parametrize("params,parameter", [
    ({"status": "bogus"}, "status"),
    ({"status": "Enabled"}, "status"),
    ({"expiring_within": "30x"}, "expiring_within"),
    ({"expiring_within": "-1d"}, "expiring_within"),
    ({"expiring_within": "0s"}, "expiring_within"),
    ({"expiring_within": "2030-01-01"}, "expiring_within"),
    ({"limit": 0}, "limit"),
    ({"limit": -5}, "limit"),
    ({"limit": 1001}, "limit"),
    ({"cursor": "short"}, "cursor"),
    ({"cursor": "!!!!!!!!!!!!"}, "cursor"),
])
def test_list_bad_parameters(root, params, parameter):
    assert root.err(f"{IFACE}.List", params) == (INVALID, {"parameter": parameter})


def test_list_paging_visits_every_key_once(root):
    created = {root.create(f"k{i:02d}", owner=("o1" if i % 3 else "o2"))["key"]["id"]
               for i in range(25)}
    for limit in (1, 7, 24, 25, 26, 1000):
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            page = root.list(**params)
            assert len(page["keys"]) <= limit
            seen += [k["id"] for k in page["keys"]]
            pages += 1
            cursor = page.get("cursor")
            if not cursor:
                break
            assert cursor == page["keys"][-1]["id"]
        assert len(seen) == len(set(seen)) == 25, limit
        assert set(seen) == created
        assert seen == sorted(seen)
        # No empty pages, except perhaps a last one when the keys fill the pages exactly.
        full_pages = -(-25 // limit)
        assert pages == full_pages or (25 % limit == 0 and pages == full_pages + 1), limit
    # The same for one owner.
    o2 = list_all_ids(root, owner="o2", limit=2)
    assert sorted(o2) == sorted(k["id"] for k in root.list(owner="o2")["keys"])
    assert len(o2) == 9


def create_many(client, n, prefix="k"):
    """Create n keys in one pipelined write; their ids."""
    msgs = b"".join(json.dumps({"method": f"{IFACE}.Create",
                                "parameters": {"name": f"{prefix}{i:05d}"}}).encode() + b"\0"
                    for i in range(n))
    client.send_bytes(msgs)
    ids = []
    for _ in range(n):
        r = client.recv()
        assert "error" not in r, r
        ids.append(r["parameters"]["key"]["id"])
    return ids


def test_list_default_limit_is_1000(root):
    ids = create_many(root, 1001)
    first = root.list()
    assert len(first["keys"]) == 1000
    assert first["cursor"] == first["keys"][-1]["id"]
    rest = root.list(cursor=first["cursor"])
    assert "cursor" not in rest
    seen = [k["id"] for k in first["keys"] + rest["keys"]]
    assert seen == sorted(ids)


def test_list_with_more_and_cursors_visits_every_key_once(root):
    ids = create_many(root, 1003)
    seen, cursor = [], None
    for _ in range(5):
        replies = root.call(f"{IFACE}.List", {"cursor": cursor} if cursor else {}, more=True)
        for r in replies:
            assert len(r["parameters"]["keys"]) == 1
            seen.append(r["parameters"]["keys"][0]["id"])
        for r in replies[:-1]:
            assert "cursor" not in r["parameters"]
        cursor = replies[-1]["parameters"].get("cursor")
        if not cursor:
            break
    assert seen == sorted(ids)


def test_list_cursor_past_the_end_and_empty(root):
    assert root.list() == {"keys": []}
    key_id = root.create("k")["key"]["id"]
    assert root.list(cursor=key_id) == {"keys": []}
    assert root.list(cursor="")["keys"][0]["id"] == key_id


def test_list_with_more_streams_one_key_per_reply(root):
    ids = sorted(root.create(f"k{i}")["key"]["id"] for i in range(6))
    replies = root.call(f"{IFACE}.List", {}, more=True)
    assert len(replies) == 6
    for r in replies[:-1]:
        assert set(r) == {"parameters", "continues"} and r["continues"] is True
    assert set(replies[-1]) == {"parameters"}
    streamed = []
    for r in replies:
        check_reply("List", r["parameters"])
        assert len(r["parameters"]["keys"]) == 1
        streamed.append(check_key(r["parameters"]["keys"][0])["id"])
    assert streamed == ids
    # The connection goes on after the stream.
    assert len(root.list()["keys"]) == 6


def test_list_with_more_and_filters(root):
    root.create("a1")
    want = root.create("b1")["key"]
    replies = root.call(f"{IFACE}.List", {"name_prefix": "b"}, more=True)
    assert replies == [{"parameters": {"keys": [want]}}]


def test_list_with_more_and_nothing_to_list(root):
    assert root.call(f"{IFACE}.List", {}, more=True) == [{"parameters": {"keys": []}}]


# ---------------------------------------------------------------- Get


def test_get(root):
    k = root.create("k", description="d", scope=["sshd"], expires="1d")["key"]
    r = root.ok(f"{IFACE}.Get", {"id": k["id"]})
    check_reply("Get", r)
    assert r == {"key": k}


def test_get_unknown_and_malformed_id(root):
    assert root.err(f"{IFACE}.Get", {"id": "AAAAAAAAAAAA"}) == (
        f"{IFACE}.NoSuchKey", {"id": "AAAAAAAAAAAA"})
    for bad in ("", "short", "AAAAAAAAAAAAA", "AAAAAAAAAAA-", "apk_AAAAAAAAAAAA"):
        assert root.err(f"{IFACE}.Get", {"id": bad}) == (INVALID, {"parameter": "id"}), bad


# ---------------------------------------------------------------- Update


def update(client, key_id, **params):
    r = client.ok(f"{IFACE}.Update", {"id": key_id, **params})
    check_reply("Update", r)
    return check_key(r["key"])


def test_update_rename(root):
    k = root.create("old")["key"]
    u = update(root, k["id"], name="new")
    assert u == dict(k, name="new")
    assert root.get(k["id"]) == u
    # The old name is free again, the new one is taken.
    root.create("old")
    assert root.err(f"{IFACE}.Create", {"name": "new"}) == (
        f"{IFACE}.NameTaken", {"owner": ME, "name": "new"})


def test_update_to_a_taken_name(root):
    a = root.create("a")["key"]
    root.create("b")
    assert root.err(f"{IFACE}.Update", {"id": a["id"], "name": "b"}) == (
        f"{IFACE}.NameTaken", {"owner": ME, "name": "b"})
    assert root.get(a["id"]) == a
    # A key of another owner with that name is no conflict.
    other = root.create("c", owner="someone")["key"]
    assert update(root, other["id"], name="b")["name"] == "b"


def test_update_description(root):
    k = root.create("k", description="first")["key"]
    assert update(root, k["id"], description="second")["description"] == "second"
    cleared = update(root, k["id"], description="")
    assert "description" not in cleared
    assert "description" not in root.get(k["id"])
    assert update(root, k["id"], description="again")["description"] == "again"


def test_update_scope(root):
    r = root.create("k", scope=["sshd"])
    k = r["key"]
    assert update(root, k["id"], scope=["sudo", "billing-api"])["scope"] == ["sudo",
                                                                             "billing-api"]
    assert root.verify(r["token"], service="sshd")["code"] == "OUT_OF_SCOPE"
    assert root.verify(r["token"], service="sudo")["code"] == "VALID"
    assert update(root, k["id"], scope=[])["scope"] == []
    assert root.verify(r["token"], service="sshd")["code"] == "VALID"


def test_update_permissions_and_role(root):
    r = root.create("k")
    k = r["key"]
    u = update(root, k["id"], permissions=["read", "write"])
    assert (u["role"], u["permissions"]) == ("custom", ["read", "write"])
    assert root.verify(r["token"], permissions=["write"])["code"] == "VALID"
    u = update(root, k["id"], role="admin")
    assert (u["role"], u["permissions"]) == ("admin", ["create", "read", "write", "delete",
                                                       "invite"])
    u = update(root, k["id"], role="readonly")
    assert (u["role"], u["permissions"]) == ("readonly", ["read"])
    assert root.verify(r["token"], permissions=["write"])["code"] == "INSUFFICIENT_PERMISSIONS"
    assert field_refusal(root.err(f"{IFACE}.Update", {"id": k["id"], "role": "custom"})) == (
        INVALID, {"parameter": "permissions"})
    assert field_refusal(root.err(f"{IFACE}.Update", {"id": k["id"], "permissions": ["fly"]})) == (
        INVALID, {"parameter": "permissions"})
    assert root.get(k["id"])["role"] == "readonly"


def test_update_expiry(root):
    r = root.create("k")
    k = r["key"]
    u = update(root, k["id"], expires="12h")
    assert abs(parse_iso(u["expires_at"]) - (time.time() + 12 * 3600)) <= 2
    assert update(root, k["id"], expires="2031-05-01")["expires_at"] == "2031-05-01T23:59:59Z"
    u = update(root, k["id"], expires="never")
    assert "expires_at" not in u
    for bad in ("30x", "-1d", "2001-01-01", ""):
        assert field_refusal(root.err(f"{IFACE}.Update", {"id": k["id"], "expires": bad})) == (
            INVALID, {"parameter": "expires"}), bad
    assert root.get(k["id"]) == u
    update(root, k["id"], expires="1s")
    time.sleep(1.5)
    assert root.verify(r["token"])["code"] == "EXPIRED"
    # Extending an expired key brings it back.
    assert update(root, k["id"], expires="1h")["status"] == "enabled"
    assert root.verify(r["token"])["code"] == "VALID"


def test_update_leaves_absent_fields_alone(root):
    k = root.create("k", description="d", scope=["sshd"], permissions=["write"],
                    expires="2031-01-01")["key"]
    assert update(root, k["id"]) == k
    assert update(root, k["id"], description="e") == dict(k, description="e")


@pytest.mark.parametrize("params,parameter", [
    ({"name": ""}, "name"),
    ({"name": "n" * 129}, "name"),
    ({"scope": ["sshd", "sshd"]}, "scope"),
    ({"scope": ["x" * 65]}, "scope"),
    ({"scope": [f"s{i}" for i in range(33)]}, "scope"),
])
def test_update_bad_values(root, params, parameter):
    k = root.create("k", description="d")["key"]
    assert field_refusal(root.err(f"{IFACE}.Update", {"id": k["id"], **params})) == (
        INVALID, {"parameter": parameter})
    assert root.get(k["id"]) == k


def test_update_too_long_description_is_invalid_parameter_description(root):
    k = root.create("k")["key"]
    assert field_refusal(root.err(f"{IFACE}.Update",
                                  {"id": k["id"], "description": "d" * 1025})) == (
        INVALID, {"parameter": "description"})


def test_update_unknown_key(root):
    assert root.err(f"{IFACE}.Update", {"id": "ZZZZZZZZZZZZ", "name": "x"}) == (
        f"{IFACE}.NoSuchKey", {"id": "ZZZZZZZZZZZZ"})


# ---------------------------------------------------------------- Disable, Enable, Revoke


def status_call(client, method, key_id):
    r = client.ok(f"{IFACE}.{method}", {"id": key_id})
    check_reply(method, r)
    return check_key(r["key"])


def test_disable_and_enable(root):
    k = root.create("k")["key"]
    assert status_call(root, "Disable", k["id"]) == dict(k, status="disabled")
    assert status_call(root, "Disable", k["id"])["status"] == "disabled"
    assert root.get(k["id"])["status"] == "disabled"
    assert status_call(root, "Enable", k["id"]) == k
    assert status_call(root, "Enable", k["id"]) == k


def test_revoke_is_permanent(root):
    r = root.create("k")
    k = r["key"]
    assert status_call(root, "Revoke", k["id"]) == dict(k, status="revoked")
    revoked = (f"{IFACE}.KeyRevoked", {"id": k["id"]})
    assert root.err(f"{IFACE}.Enable", {"id": k["id"]}) == revoked
    assert root.err(f"{IFACE}.Update", {"id": k["id"], "name": "again"}) == revoked
    assert root.err(f"{IFACE}.Update", {"id": k["id"], "expires": "never"}) == revoked
    assert root.err(f"{IFACE}.Disable", {"id": k["id"]}) == revoked
    assert root.get(k["id"]) == dict(k, status="revoked")
    assert root.verify(r["token"])["code"] == "REVOKED"
    # It stays listed.
    assert [x["id"] for x in root.list(status="revoked")["keys"]] == [k["id"]]


@pytest.mark.parametrize("method", ["Disable", "Enable", "Revoke", "Delete"])
def test_status_methods_on_unknown_key(root, method):
    assert root.err(f"{IFACE}.{method}", {"id": "ZZZZZZZZZZZZ"}) == (
        f"{IFACE}.NoSuchKey", {"id": "ZZZZZZZZZZZZ"})
    assert root.err(f"{IFACE}.{method}", {"id": "nope"}) == (INVALID, {"parameter": "id"})


# ---------------------------------------------------------------- Delete


def test_delete(root):
    r = root.create("k")
    other = root.create("other")
    key_id = r["key"]["id"]
    reply = root.call(f"{IFACE}.Delete", {"id": key_id})
    assert reply == {"parameters": {}}
    assert root.verify(r["token"])["code"] == "NOT_FOUND"
    assert root.err(f"{IFACE}.Get", {"id": key_id}) == (f"{IFACE}.NoSuchKey", {"id": key_id})
    assert root.err(f"{IFACE}.Delete", {"id": key_id}) == (f"{IFACE}.NoSuchKey", {"id": key_id})
    assert [k["id"] for k in root.list()["keys"]] == [other["key"]["id"]]
    # The name is free again.
    assert root.create("k")["key"]["id"] != key_id
    assert root.verify(other["token"])["code"] == "VALID"


def test_delete_revoked_key(root):
    r = root.create("k")
    root.ok(f"{IFACE}.Revoke", {"id": r["key"]["id"]})
    assert root.ok(f"{IFACE}.Delete", {"id": r["key"]["id"]}) == {}
    assert root.verify(r["token"])["code"] == "NOT_FOUND"


# ---------------------------------------------------------------- shared secret


def test_shared_secret_is_stable(daemon):
    d = daemon()
    c = d.client()
    r = c.ok(f"{IFACE}.GetSharedSecret")
    check_reply("GetSharedSecret", r)
    assert set(r) == {"secret"}
    assert len(decode_b64(r["secret"])) == 32
    assert c.ok(f"{IFACE}.GetSharedSecret") == r
    assert d.client().ok(f"{IFACE}.GetSharedSecret") == r
    d.restart()
    assert d.client().ok(f"{IFACE}.GetSharedSecret") == r


def test_rotate_shared_secret(daemon):
    d = daemon()
    c = d.client()
    old = c.ok(f"{IFACE}.GetSharedSecret")["secret"]
    new = c.ok(f"{IFACE}.RotateSharedSecret")
    check_reply("RotateSharedSecret", new)
    assert len(decode_b64(new["secret"])) == 32
    assert new["secret"] != old
    assert c.ok(f"{IFACE}.GetSharedSecret")["secret"] == new["secret"]
    newer = c.ok(f"{IFACE}.RotateSharedSecret")["secret"]
    assert newer not in (old, new["secret"])
    d.restart()
    assert d.client().ok(f"{IFACE}.GetSharedSecret")["secret"] == newer


# ---------------------------------------------------------------- audit


@pytest.mark.skipif("ListAudit" not in INTERFACE.methods, reason="no ListAudit in the interface")
def test_management_changes_are_audited(root):
    r = root.create("k", description="d")
    key_id = r["key"]["id"]
    other = root.create("other")["key"]["id"]
    root.ok(f"{IFACE}.Update", {"id": key_id, "name": "k2"})
    root.ok(f"{IFACE}.Disable", {"id": key_id})
    root.ok(f"{IFACE}.Enable", {"id": key_id})
    root.ok(f"{IFACE}.Revoke", {"id": key_id})
    root.ok(f"{IFACE}.Delete", {"id": key_id})
    reply = root.ok(f"{IFACE}.ListAudit", {"key_id": key_id})
    check_reply("ListAudit", reply)
    events = reply["events"]
    assert [e["action"] for e in events] == ["create", "update", "disable", "enable", "revoke",
                                             "delete"]
    assert all(e["actor"] == ME_ACTOR and e["result"] == "ok" and e["key_id"] == key_id
               for e in events)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for e in events:
        assert abs(parse_iso(e["time"]) - time.time()) <= 5
    # Paging by sequence number.
    page = root.ok(f"{IFACE}.ListAudit", {"key_id": key_id, "after": seqs[1], "limit": 2})
    assert [e["seq"] for e in page["events"]] == seqs[2:4]
    everything = root.ok(f"{IFACE}.ListAudit", {})["events"]
    assert {e.get("key_id") for e in everything} >= {key_id, other}
    assert r["token"] not in json.dumps(everything)


def test_audit_is_in_time_order_with_failed_verifies(root):
    # A failed verify is written in a batch, but never after a change made later.
    r = root.create("k")
    key_id = r["key"]["id"]
    wrong = r["token"][:-10] + ("A" if r["token"][-10] != "A" else "B") + r["token"][-9:]
    assert root.verify(wrong)["valid"] is False
    time.sleep(1.1)
    root.ok(f"{IFACE}.Disable", {"id": key_id})
    events = root.ok(f"{IFACE}.ListAudit", {})["events"]
    assert [e["action"] for e in events][-3:] == ["create", "verify", "disable"]
    times = [parse_iso(e["time"]) for e in events]
    assert times == sorted(times)
    # A failed verify is in the answer of the very next ListAudit.
    assert root.verify(wrong)["valid"] is False
    last = root.ok(f"{IFACE}.ListAudit", {})["events"][-1]
    assert (last["action"], last["result"], last.get("key_id")) == ("verify", "BAD_FORMAT", None)
