# SPDX-License-Identifier: MIT
"""The audit log seen from an attacker's side: an ordinary local user who
floods it with their own changes and with refused calls must not push an
admin's changes out of it; refused calls are in it with who made them
(the calling uid, and the key when acting with one); an update says what
it changed.  Against the real daemon; these tests create users, so they
need root."""

import pwd
import re
import time

import pytest

from conftest import (ADMIN, ALICE, BOB, IFACE, Varlink, list_all_audit, make_token, other_secret,
                      split_token)

DENIED = f"{IFACE}.PermissionDenied"
POLICY = f"{IFACE}.PolicyViolation"
AUDIT_MAX = 20


def uid(name):
    return pwd.getpwnam(name).pw_uid


def actor(name):
    return f"uid={uid(name)}({name})"



@pytest.fixture
def d(daemon):
    return daemon(config={"audit_max_events": AUDIT_MAX})


def test_user_flood_does_not_push_out_admins_changes(d, as_user):
    root = d.client()
    by_root = root.create("ops")["key"]
    for_alice = root.create("issued", owner=ALICE)["key"]
    by_admin = as_user(ADMIN, socket=d.socket).create("admin-laptop")["key"]
    # An admin-role key is an admin, whoever uses it.
    automation = root.create("automation", owner="ops", role="admin", scope=["apikeyd"])
    by_key = as_user(BOB, socket=d.socket).ok(
        f"{IFACE}.Create", {"name": "deploy", "owner": "ci", "auth": automation["token"]})["key"]
    path = d.socket

    def flood():
        # An ordinary user: their own key, updated over and over, and calls
        # that are refused, as fast as one connection goes.
        out = {"refused": set()}
        with Varlink(path) as c:
            own = c.create("mine")["key"]["id"]
            for i in range(10 * AUDIT_MAX):
                c.ok(f"{IFACE}.Update", {"id": own, "description": f"round {i}"})
                err, params = c.err(f"{IFACE}.Disable", {"id": by_root["id"]})
                out["refused"].add((err, params["reason"]))
                err, params = c.err(f"{IFACE}.RotateSharedSecret", {})
                out["refused"].add((err, params["reason"]))
        return out

    started = time.monotonic()
    out = as_user(ALICE, flood)
    seconds = time.monotonic() - started
    assert out["refused"] == {
        (DENIED, "only an admin or the key's owner may do this"),
        (DENIED, "only admins may read or rotate the shared secret"),
    }

    events = list_all_audit(root)
    creates = [(e["actor"], e["key_id"]) for e in events if e["action"] == "create"]
    assert ("uid=0(root)", by_root["id"]) in creates, events
    assert ("uid=0(root)", for_alice["id"]) in creates, events
    assert (actor(ADMIN), by_admin["id"]) in creates, events
    assert (f"key={automation['key']['id']}(ops) {actor(BOB)}", by_key["id"]) in creates, events
    # The flood is there, but bounded: the ordinary part holds AUDIT_MAX
    # events, all of them the attacker's latest.
    flooded = [e for e in events if e["actor"] == actor(ALICE)]
    assert len(flooded) == AUDIT_MAX, events
    assert {e["action"] for e in flooded} <= {"update", "disable", "rotate-shared-secret"}
    assert len(events) == AUDIT_MAX + 5
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    refused = [e for e in flooded if e["result"] == "denied"]
    assert refused and all(e["detail"] for e in refused)
    # Nor does refusing flood the daemon's log: a few lines a second, the
    # rest counted.
    lines = re.findall(r"refused \(denied\)", d.log())
    assert 0 < len(lines) <= 20 * (int(seconds) + 2) < 20 * AUDIT_MAX, (len(lines), seconds)


def test_a_key_acts_with_the_uid_that_used_it(d, as_user):
    root = d.client()
    ops = root.create("ops", owner=ALICE, role="custom",
                      permissions=["create", "read", "write"], scope=["apikeyd"])
    # bob holds alice's token: what he does with it names the key and him.
    made = as_user(BOB, socket=d.socket).ok(
        f"{IFACE}.Create", {"name": "by-bob", "auth": ops["token"]})["key"]
    expected = f"key={ops['key']['id']}({ALICE}) {actor(BOB)}"
    assert made["created_by"] == expected
    [event] = [e for e in list_all_audit(root) if e.get("key_id") == made["id"]]
    assert (event["actor"], event["action"], event["result"]) == (expected, "create", "ok")

    # A long owner is cut in the actor, never the uid, so created_by stays
    # within its 256 bytes and the key can still be made.
    long_owner = "svc-" + "x" * 236
    admin = root.create("long", owner=long_owner, role="admin", scope=["apikeyd"])
    made = root.ok(f"{IFACE}.Create", {"name": "child", "owner": long_owner,
                                       "auth": admin["token"]})["key"]
    assert len(made["created_by"].encode()) <= 256
    assert made["created_by"].startswith(f"key={admin['key']['id']}(svc-xxx")
    assert made["created_by"].endswith(") uid=0(root)")


def refusal(events, action, actor_):
    found = [e for e in events if e["action"] == action and e["actor"] == actor_]
    assert len(found) == 1, (action, actor_, events)
    return found[0]


def test_refused_calls_are_audited_with_who_made_them(d, as_user):
    root = d.client()
    roots = root.create("ops")["key"]
    alices = root.create("laptop", owner=ALICE)["key"]
    readonly = root.create("reader", owner=ALICE, scope=["apikeyd"])
    prefix, key_id, secret, _ = split_token(readonly["token"])
    bogus = make_token(prefix, key_id, other_secret(secret))
    alice = as_user(ALICE, socket=d.socket)
    bob = as_user(BOB, socket=d.socket)

    # An ordinary user, at another owner's key and beyond the policy.
    err, params = alice.err(f"{IFACE}.Revoke", {"id": roots["id"]})
    assert (err, params) == (DENIED, {"reason": "only an admin or the key's owner may do this"})
    err, params = alice.err(f"{IFACE}.Create", {"name": "forever", "expires": "3650d"})
    assert (err, params["reason"]) == (
        POLICY, "the expiry is later than users' keys may live (user_max_lifetime)")
    err, params = alice.err(f"{IFACE}.List", {"owner": BOB})
    assert (err, params["reason"]) == (DENIED, "only admins may list other owners' keys")
    # Someone else (bob) with alice's read-only key, which may not write.
    err, params = bob.err(f"{IFACE}.Update", {"id": alices["id"], "name": "mine",
                                               "auth": readonly["token"]})
    assert (err, params["reason"]) == (DENIED,
                                       "the API key given in auth lacks the permission for this")
    # And with a token that is not a key at all.
    err, params = bob.err(f"{IFACE}.Delete", {"id": alices["id"], "auth": bogus})
    assert (err, params["reason"]) == (DENIED, "the API key given in auth is not valid")

    events = list_all_audit(root)
    e = refusal(events, "revoke", actor(ALICE))
    assert (e["key_id"], e["result"], e["detail"]) == (
        roots["id"], "denied", "only an admin or the key's owner may do this")
    e = refusal(events, "create", actor(ALICE))
    assert (e["result"], e["detail"]) == (
        "policy", "the expiry is later than users' keys may live (user_max_lifetime)")
    assert "key_id" not in e
    e = refusal(events, "list", actor(ALICE))
    assert (e["result"], e["detail"]) == ("denied", "only admins may list other owners' keys")
    e = refusal(events, "update", f"key={readonly['key']['id']}({ALICE}) {actor(BOB)}")
    assert (e["key_id"], e["result"], e["detail"]) == (
        alices["id"], "denied", "the API key given in auth lacks the permission for this")
    # A key in auth that does not verify is one failed verify of its key,
    # with the action "auth" (counted for lockout too), not a second record.
    found = [e for e in events if e["action"] == "auth" and
             e["actor"].startswith(f"uid={uid(BOB)} ")]
    assert len(found) == 1, events
    assert (found[0]["key_id"], found[0]["result"]) == (readonly["key"]["id"], "NOT_FOUND")
    # The daemon's log says the same.
    log = d.log()
    assert (f"{actor(ALICE)}: revoke key {roots['id']} refused (denied): "
            "only an admin or the key's owner may do this") in log
    assert (f"{actor(ALICE)}: create refused (policy): "
            "the expiry is later than users' keys may live (user_max_lifetime)") in log
    # Nothing was changed, and no token is in the log.
    assert root.get(roots["id"])["status"] == "enabled"
    assert root.get(alices["id"])["name"] == "laptop"
    assert readonly["token"] not in str(events) and bogus not in str(events)


def test_an_update_says_what_it_changed(d, as_user):
    root = d.client()
    alice = as_user(ALICE, socket=d.socket)
    key = alice.create("laptop", description="old")["key"]
    kid = key["id"]

    after = alice.ok(f"{IFACE}.Update", {"id": kid, "name": "desk", "description": "new words",
                                         "scope": ["sshd", "sudo"], "expires": "10d"})["key"]
    alice.ok(f"{IFACE}.Update", {"id": kid, "name": "desk", "scope": ["sshd", "sudo"]})
    root.ok(f"{IFACE}.Update", {"id": kid, "role": "custom", "permissions": ["read", "write"],
                                "expires": "2099-01-01T00:00:00Z", "name": "n" * 100})

    updates = [e for e in list_all_audit(root) if e["action"] == "update"]
    assert [(e["actor"], e["key_id"]) for e in updates] == [
        (actor(ALICE), kid), (actor(ALICE), kid), ("uid=0(root)", kid)]
    assert [e["detail"] for e in updates] == [
        "name: laptop -> desk, description, scope: any -> sshd,sudo, "
        f"expires: {key['expires_at']} -> {after['expires_at']}",
        "nothing changed",
        "name, role: readonly -> custom, permissions: read -> read,write, "
        f"expires: {after['expires_at']} -> 2099-01-01T00:00:00Z",
    ]
    # No value but the short ones: the new description is not in the log.
    assert "new words" not in str(updates)


def test_refusals_never_crowd_failed_verifies_out(daemon, as_user):
    # Nothing is written but what ListAudit and the stop flush: the queue
    # is all there is between the flood and the log.
    d = daemon(config={"last_used_flush_interval": "1h"})
    root = d.client()
    roots = root.create("ops")
    path = d.socket
    prefix, key_id, secret, _ = split_token(roots["token"])
    wrong = make_token(prefix, key_id, other_secret(secret))

    def flood():
        with Varlink(path) as c:
            for _ in range(4200):  # more than the queue holds (4096)
                err, _ = c.err(f"{IFACE}.Revoke", {"id": roots["key"]["id"]})
                assert err == DENIED
            # And then the attack the flood was to hide.
            return c.verify(wrong)["code"]

    assert as_user(ALICE, flood) == "NOT_FOUND"
    events = list_all_audit(root)
    refused = [e for e in events if e["action"] == "revoke"]
    verifies = [e for e in events if e["action"] == "verify"]
    assert 0 < len(refused) <= 2048
    assert [(e["key_id"], e["result"]) for e in verifies] == [(roots["key"]["id"], "NOT_FOUND")]
    assert verifies[0]["actor"].startswith(f"uid={uid(ALICE)} pid=")
    assert "failed verifies and refused calls were not written to the audit database" in d.log()
