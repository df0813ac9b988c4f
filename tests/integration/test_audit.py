# SPDX-License-Identifier: MIT
"""The audit log seen from an attacker's side: an ordinary local user who
floods it with their own changes and with refused calls must not push an
admin's changes out of it; refused calls are in it with who made them
(the calling uid, and the key when acting with one); an update says what
it changed.  Against the real daemon; these tests create users, so they
need root."""

import pwd

import pytest

from conftest import ADMIN, ALICE, BOB, IFACE, Varlink

DENIED = f"{IFACE}.PermissionDenied"
POLICY = f"{IFACE}.PolicyViolation"
AUDIT_MAX = 20


def uid(name):
    return pwd.getpwnam(name).pw_uid


def actor(name):
    return f"uid={uid(name)}({name})"


def all_events(client):
    events, after = [], 0
    while True:
        page = client.ok(f"{IFACE}.ListAudit", {"after": after, "limit": 1000})["events"]
        if not page:
            return events
        events += page
        after = page[-1]["seq"]


@pytest.fixture
def d(daemon):
    return daemon(config={"audit_max_events": AUDIT_MAX})


def test_user_flood_does_not_push_out_admins_changes(d, as_user):
    root = d.client()
    by_root = root.create("ops")["key"]
    for_alice = root.create("issued", owner=ALICE)["key"]
    by_admin = as_user(ADMIN, socket=d.socket).create("admin-laptop")["key"]
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

    out = as_user(ALICE, flood)
    assert out["refused"] == {
        (DENIED, "only an admin or the key's owner may do this"),
        (DENIED, "only admins may read or rotate the shared secret"),
    }

    events = all_events(root)
    creates = [(e["actor"], e["key_id"]) for e in events if e["action"] == "create"]
    assert ("uid=0(root)", by_root["id"]) in creates, events
    assert ("uid=0(root)", for_alice["id"]) in creates, events
    assert (actor(ADMIN), by_admin["id"]) in creates, events
    # The flood is there, but bounded: the ordinary part holds AUDIT_MAX
    # events, all of them the attacker's latest.
    flooded = [e for e in events if e["actor"] == actor(ALICE)]
    assert len(flooded) == AUDIT_MAX, events
    assert {e["action"] for e in flooded} <= {"update", "disable", "rotate-shared-secret"}
    assert len(events) == AUDIT_MAX + 3
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_a_key_acts_with_the_uid_that_used_it(d, as_user):
    root = d.client()
    ops = root.create("ops", owner=ALICE, role="custom",
                      permissions=["create", "read", "write"], scope=["apikeyd"])
    # bob holds alice's token: what he does with it names the key and him.
    made = as_user(BOB, socket=d.socket).ok(
        f"{IFACE}.Create", {"name": "by-bob", "auth": ops["token"]})["key"]
    expected = f"key={ops['key']['id']}({ALICE}) {actor(BOB)}"
    assert made["created_by"] == expected
    [event] = [e for e in all_events(root) if e.get("key_id") == made["id"]]
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
