# SPDX-License-Identifier: MIT
"""Rotate in fleet mode against a real 3-member etcd cluster on loopback
(fleet_fixtures): on a manager, the rotation's records (the successor, the
old key renamed with its grace as expiry, the keys created through it moved
to the successor, the name index) go to etcd in one transaction, which
reaches every host: the new token verifies there, the old one through its
grace and EXPIRED after it, its login sessions ended on every host; or
nothing, when the old key changed in etcd meanwhile (or NameTaken, when
another manager gave the old key's new name first).  The retirement by
first use is refused (a host that verifies cannot write to etcd), and hosts
that follow refuse Rotate (ManagedCentrally)."""
import base64
import json
import time

import pytest

from conftest import ALICE, IFACE
from fleet_fixtures import etcd_cluster, fleet, fleet_status, wait_for  # noqa: F401 - fixtures
from pam_fixtures import DEFAULT_BUILD, pam  # noqa: F401 - fixtures
from test_apikeyctl import EXIT_REFUSED, Ctl
from test_fleet_bulk import b64, codes, etcd_kv, everywhere, followed_and_other
from test_sessions import END_WITHIN, stack
from test_sessions import USER as SESSION_USER
from test_sessions import sessions  # noqa: F401 - fixtures

# Polling a key that has not arrived yet answers NOT_FOUND: no lockout for that.
HOSTS = {"lockout_threshold": "0"}
POLICY = f"{IFACE}.PolicyViolation"


@pytest.fixture
def build():
    """The module's default build only: what is tested here is the daemons'."""
    return DEFAULT_BUILD.check()


def names(etcd_cluster, prefix, owner, revisions=False):
    """etcd's name index of `owner`: {name: key id} (or its mod revision)."""
    out = etcd_cluster.etcdctl("get", f"{prefix}/names/{owner}/", "--prefix", "-w", "json")
    kvs = json.loads(out).get("kvs", [])
    start = len(f"{prefix}/names/{owner}/")
    return {b64d(kv["key"])[start:]: int(kv["mod_revision"]) if revisions else b64d(kv["value"])
            for kv in kvs}


def records(etcd_cluster, prefix):
    """etcd's key records: {id: mod revision}."""
    out = etcd_cluster.etcdctl("get", f"{prefix}/keys/", "--prefix", "-w", "json")
    start = len(f"{prefix}/keys/")
    return {b64d(kv["key"])[start:]: int(kv["mod_revision"])
            for kv in json.loads(out).get("kvs", [])}


def b64d(s):
    return base64.b64decode(s).decode()


def get_on(d, key_id):
    with d.client() as c:
        return c.get(key_id)


def test_rotation_reaches_every_host_and_the_old_key_expires_after_its_grace(
        fleet, etcd_cluster, test_users):
    manager, hosts = fleet(2, host_config=HOSTS)
    with manager.client() as c:
        old = c.create("deploy", owner=ALICE, role="custom", permissions=["create", "read"])
        old_id = old["key"]["id"]
        child = c.ok(f"{IFACE}.Create", {"name": "job", "auth": old["token"]})
    wait_for("the keys on every host", everywhere(hosts, [old["token"], child["token"]], "VALID"),
             2.0)
    child_rev = records(etcd_cluster, fleet.prefix)[child["key"]["id"]]

    rev = etcd_cluster.revision()
    t0 = time.monotonic()
    with manager.client() as c:
        r = c.ok(f"{IFACE}.Rotate", {"id": old_id, "grace": "2s"})
    new, prev = r["key"], r["previous"]
    assert (new["replaces"], prev["replaced_by"]) == (old_id, new["id"])
    assert prev["name"] == f"deploy (old {old_id})" and new["name"] == "deploy"
    # Read your writes on the manager; the others within 2 s.
    assert codes(manager, [r["token"], old["token"]]) == ["VALID", "VALID"]
    wait_for("the successor on every host", everywhere(hosts, [r["token"]], "VALID"), 2.0)
    print(f"\nrotate -> the successor VALID on 2 hosts: {(time.monotonic() - t0) * 1000:.0f} ms")
    # One etcd transaction for the whole rotation, the name index with it.
    [txn] = {v for v in records(etcd_cluster, fleet.prefix).values() if v > rev}
    assert records(etcd_cluster, fleet.prefix) == {
        old_id: txn, new["id"]: txn, child["key"]["id"]: txn}
    assert names(etcd_cluster, fleet.prefix, ALICE, revisions=True) == {
        "deploy": txn, f"deploy (old {old_id})": txn, "job": child_rev}
    assert names(etcd_cluster, fleet.prefix, ALICE) == {
        "deploy": new["id"], f"deploy (old {old_id})": old_id, "job": child["key"]["id"]}
    for h in hosts:
        # The old key works through its grace, on every host.
        assert codes(h, [old["token"], child["token"]]) == ["VALID", "VALID"]
        assert get_on(h, old_id)["replaced_by"] == new["id"]
        assert get_on(h, old_id)["expires_at"] == prev["expires_at"]
        assert get_on(h, new["id"])["replaces"] == old_id
        # The key created through the old key is the successor's.
        assert get_on(h, child["key"]["id"])["parent"] == new["id"]

    # The grace ends: the old key answers EXPIRED everywhere, the others stay VALID.
    wait_for("the old key EXPIRED on every host",
             everywhere([manager] + hosts, [old["token"]], "EXPIRED"), 4.0)
    for h in [manager] + hosts:
        assert codes(h, [r["token"], child["token"]]) == ["VALID", "VALID"]


def test_grace_0_two_keys_at_most_retirement_by_use_and_hosts_that_follow(fleet, etcd_cluster, test_users):
    manager, hosts = fleet(1, host_config=HOSTS)
    with manager.client() as c:
        old = c.create("laptop", owner=ALICE)
    wait_for("the key on the host", everywhere(hosts, [old["token"]], "VALID"), 2.0)

    # The retirement by first use: refused, saying why, nothing written.
    before = records(etcd_cluster, fleet.prefix)
    with manager.client() as c:
        error, params = c.err(f"{IFACE}.Rotate", {"id": old["key"]["id"],
                                                  "retire_on_first_use": True})
    assert error == POLICY
    assert params["reason"] == (
        "retire_on_first_use is not available in fleet mode: each host verifies on its own "
        "replica and cannot write to etcd, so the successor's first use would end the old "
        "key's grace on that host alone; rotate with a short grace instead")
    r = Ctl(manager.socket)("rotate", "laptop", "--retire-on-first-use",
                            rc=EXIT_REFUSED)
    assert r.err == (
        "apikeyctl: refused by this installation's policy: retire_on_first_use is not available "
        "in fleet mode: each host verifies on its own replica and cannot write to etcd, so the "
        "successor's first use would end the old key's grace on that host alone; rotate with a "
        f"short grace instead [{POLICY}]\n"), r
    # A host that follows refuses Rotate as it refuses every change.
    with hosts[0].client() as c:
        error, params = c.err(f"{IFACE}.Rotate", {"id": old["key"]["id"], "grace": "0"})
    assert error == f"{IFACE}.ManagedCentrally" and params["prefix"] == fleet.prefix
    r = Ctl(hosts[0].socket)("rotate", "laptop", rc=EXIT_REFUSED)
    assert r.err.startswith("apikeyctl: keys are managed centrally: this host follows the "
                            "fleet's keys in etcd (http://127.0.0.1:"), r
    assert records(etcd_cluster, fleet.prefix) == before
    assert codes(hosts[0], [old["token"]]) == ["VALID"]

    # Grace 0: the old key ends now, everywhere.
    r = json.loads(Ctl(manager.socket).ok("--json", "rotate", "laptop",
                                          "--grace", "0").out)
    assert codes(manager, [r["token"], old["token"]]) == ["VALID", "EXPIRED"]
    wait_for("the successor VALID and the old key EXPIRED on the host",
             lambda: codes(hosts[0], [r["token"], old["token"]]) == ["VALID", "EXPIRED"], 2.0)
    after = records(etcd_cluster, fleet.prefix)
    assert after[old["key"]["id"]] == after[r["key"]["id"]] > before[old["key"]["id"]]

    # At most two keys of a rotation work at once, on every host: rotating the successor
    # while the key it replaced is in its grace ends that grace, in the same transaction.
    with manager.client() as c:
        second = c.ok(f"{IFACE}.Rotate", {"id": r["key"]["id"], "grace": "1h"})
        wait_for("the second successor on the host",
                 everywhere(hosts, [second["token"]], "VALID"), 2.0)
        assert codes(hosts[0], [r["token"]]) == ["VALID"]  # in its grace
        third = c.ok(f"{IFACE}.Rotate", {"id": second["key"]["id"], "grace": "1h"})
    wait_for("the third successor on the host", everywhere(hosts, [third["token"]], "VALID"),
             2.0)
    assert codes(hosts[0], [r["token"], second["token"], third["token"]]) == [
        "EXPIRED", "VALID", "VALID"]
    after = records(etcd_cluster, fleet.prefix)
    assert after[r["key"]["id"]] == after[second["key"]["id"]] == after[third["key"]["id"]]


def test_old_keys_new_name_given_meanwhile_is_name_taken(fleet, etcd_cluster, test_users):
    """The name the old key is to take, "NAME (old ID)", given by another manager first
    (its entry in etcd's name index, which this manager's replica does not hold): the
    rotation is refused with NameTaken, as Update's rename would be, and nothing changes."""
    manager, _ = fleet(0)
    with manager.client() as c:
        old = c.create("deploy", owner=ALICE)
    old_id = old["key"]["id"]
    taken = f"deploy (old {old_id})"
    etcd_kv(etcd_cluster.client_urls[0], "put", key=b64(f"{fleet.prefix}/names/{ALICE}/{taken}"),
            value=b64("A" * 12))
    before = records(etcd_cluster, fleet.prefix)
    r = Ctl(manager.socket)("rotate", old_id, rc=EXIT_REFUSED)
    assert r.err == (f"apikeyctl: {ALICE} already has a key named '{taken}'; choose another "
                     f"name [{IFACE}.NameTaken]\n"), r
    assert records(etcd_cluster, fleet.prefix) == before
    assert names(etcd_cluster, fleet.prefix, ALICE) == {"deploy": old_id, taken: "A" * 12}

    def as_before():
        with manager.client() as c:
            keys = c.list()["keys"]
        return [(k["id"], k["name"]) for k in keys] == [(old_id, "deploy")]
    wait_for("the manager's replica back to etcd's keys", as_before, 5.0)
    assert codes(manager, [old["token"]]) == ["VALID"]


def test_old_key_changed_meanwhile_changes_nothing(fleet, etcd_cluster, test_users):
    """The old key rewritten in etcd after the manager's replica saw it (while the member
    the manager follows hangs, so its watch cannot tell it): the transaction's compare
    fails, the rotation fails as any change does, and nothing of it is anywhere."""
    manager, hosts = fleet(1, host_config=HOSTS)
    with manager.client() as c:
        old = c.create("deploy", owner=ALICE)
    old_id = old["key"]["id"]
    wait_for("the key on the host", everywhere(hosts, [old["token"]], "VALID"), 2.0)
    before = names(etcd_cluster, fleet.prefix, ALICE)
    assert before == {"deploy": old_id}

    followed, other = followed_and_other(etcd_cluster, manager)
    key = b64(f"{fleet.prefix}/keys/{old_id}")
    etcd_cluster.stop(etcd_cluster.name_of(followed))
    try:
        value = etcd_kv(other, "range", key=key)["kvs"][0]["value"]
        etcd_kv(other, "put", key=key, value=value)  # the same record, a new mod revision
        changed = {old_id: int(etcd_kv(other, "range", key=key)["kvs"][0]["mod_revision"])}
        r = Ctl(manager.socket)("rotate", "deploy", "--grace", "0",
                                rc=EXIT_REFUSED)
    finally:
        etcd_cluster.continue_all()
    assert ("the daemon failed: the key changed in etcd meanwhile (another manager); nothing "
            "was changed: try again") in r.err, r
    assert f"[{IFACE}.InternalError]" in r.err, r
    assert records(etcd_cluster, fleet.prefix) == changed
    assert names(etcd_cluster, fleet.prefix, ALICE) == before

    # The manager's replica puts back what etcd has: the old key as it was, no successor.
    def as_before():
        with manager.client() as c:
            keys = c.list()["keys"]
        return [(k["id"], k["name"], "replaced_by" in k) for k in keys] == [
            (old_id, "deploy", False)]
    wait_for("the manager back to etcd's keys", as_before, 5.0)
    assert codes(manager, [old["token"]]) == codes(hosts[0], [old["token"]]) == ["VALID"]
    with hosts[0].client() as c:
        assert [k["id"] for k in c.list()["keys"]] == [old_id]

    # Tried again, it is done.
    r = json.loads(Ctl(manager.socket).ok("--json", "rotate", "deploy",
                                          "--grace", "0").out)
    wait_for("the rotation tried again on the host",
             lambda: codes(hosts[0], [r["token"], old["token"]]) == ["VALID", "EXPIRED"], 2.0)


def test_the_old_keys_sessions_end_on_every_host_with_its_grace(fleet, pam, sessions):
    """A login opened with the old key on each of two hosts lives through the grace and
    ends when it does: each host sees the expiry in the key's record."""
    manager, hosts = fleet(2, host_config=HOSTS)
    with manager.client() as c:
        old = c.create("laptop", owner=SESSION_USER)
    wait_for("the key on every host", everywhere(hosts, [old["token"]], "VALID"), 2.0)
    opened = [sessions(pam, stack(pam, h), SESSION_USER, old["token"]) for h in hosts]

    with manager.client() as c:
        r = c.ok(f"{IFACE}.Rotate", {"id": old["key"]["id"], "grace": "2s"})
    wait_for("the successor on every host", everywhere(hosts, [r["token"]], "VALID"), 2.0)
    for h, s in zip(hosts, opened):
        assert s.proc.poll() is None, f"the session on {h.socket} ended in the old key's grace"
    for h, s in zip(hosts, opened):
        assert s.ended_within(2.0 + END_WITHIN + 1.0) is not None, \
            f"the session on {h.socket} outlived the old key's grace"
