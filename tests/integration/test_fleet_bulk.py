# SPDX-License-Identifier: MIT
"""Bulk changes in fleet mode against a real 3-member etcd cluster on loopback
(fleet_fixtures): on a manager, ChangeMatching (apikeyctl revoke|disable|
enable|delete --owner) and CreateMany (create --from) write every key in one
etcd transaction, which reaches every host within 2 s, or none when a key
changed in etcd meanwhile; the dry run writes nothing; a change etcd would not
take in one transaction (its --max-txn-ops) is refused whole; hosts that
follow refuse bulk changes as they refuse one (ManagedCentrally)."""
import base64
import json
import time
import urllib.request

import pytest

from conftest import ALICE, BOB, IFACE, list_all_audit
from fleet_fixtures import etcd_cluster, fleet, fleet_status, wait_for  # noqa: F401 - fixtures
from pam_fixtures import DEFAULT_BUILD, pam  # noqa: F401 - fixtures
from test_apikeyctl import EXIT_OK, EXIT_REFUSED, Ctl
from test_sessions import END_WITHIN, stack
from test_sessions import USER as SESSION_USER
from test_sessions import sessions  # noqa: F401 - fixtures

# Polling a key that has not arrived yet answers NOT_FOUND: no lockout for that.
HOSTS = {"lockout_threshold": "0"}
# The transaction limit's test makes more keys than a user's default allowance.
MANAGER = {"user_max_keys": "1000"}
POLICY = f"{IFACE}.PolicyViolation"


@pytest.fixture
def build():
    """The module's default build only: what is tested here is the daemons'."""
    return DEFAULT_BUILD.check()


def codes(d, tokens):
    with d.client() as c:
        return [c.verify(t)["code"] for t in tokens]


def everywhere(hosts, tokens, want):
    return lambda: all(codes(h, tokens) == [want] * len(tokens) for h in hosts)


def create_from(manager, keys):
    """create --from on the manager: the tokens, in order."""
    text = "".join(json.dumps(k) + "\n" for k in keys)
    r = Ctl(manager.socket).ok("create", "--from", "-", input=text)
    return [json.loads(line)["token"] for line in r.out.splitlines()]


def etcd_kv(url, op, **body):
    """etcd's JSON gateway: /v3/kv/<op> with `body` (keys and values base64)."""
    req = urllib.request.Request(f"{url}/v3/kv/{op}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def b64(s):
    return base64.b64encode(s.encode()).decode()


def test_bulk_revoke_reaches_every_host(fleet, etcd_cluster, test_users):
    manager, hosts = fleet(2, host_config=HOSTS)
    ctl = Ctl(manager.socket)

    # create --from on the manager: keys that verify on the other hosts.
    t0 = time.monotonic()
    tokens = create_from(manager, [{"name": "ci-build", "owner": ALICE, "role": "custom",
                                    "permissions": ["create", "read", "invite"]},
                                   {"name": "ci-deploy", "owner": ALICE},
                                   {"name": "laptop", "owner": ALICE},
                                   {"name": "nightly", "owner": BOB}])
    alice, bob = tokens[:3], tokens[3:]
    wait_for("create --from's keys VALID on every host", everywhere(hosts, tokens, "VALID"), 2.0)
    print(f"\ncreate --from (4 keys) -> VALID on 2 hosts: "
          f"{(time.monotonic() - t0) * 1000:.0f} ms")
    # A key created through one of them, for another owner: revoked with it.
    with manager.client() as c:
        invited = c.ok(f"{IFACE}.Create", {"name": "invited", "owner": BOB,
                                           "auth": alice[0]})["token"]
    wait_for("the invited key on every host", everywhere(hosts, [invited], "VALID"), 2.0)
    names = etcd_cluster.etcdctl("get", f"{fleet.prefix}/names/{ALICE}/", "--prefix",
                                 "--keys-only").split()
    assert names == [f"{fleet.prefix}/names/{ALICE}/{n}" for n in
                     ("ci-build", "ci-deploy", "laptop")]

    # The dry run lists them and writes nothing to etcd.
    rev = etcd_cluster.revision()
    r = ctl.ok("revoke", "--owner", ALICE, "--dry-run")
    assert r.out.startswith(f"Would revoke 3 keys of {ALICE}:\n"), r
    assert etcd_cluster.revision() == rev
    assert codes(hosts[0], alice) == ["VALID"] * 3

    # The revoke: one etcd revision for the three keys and the one created through them,
    # refused on every host within 2 s.
    t0 = time.monotonic()
    r = ctl.ok("revoke", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Revoked 3 keys of {ALICE}.", r
    assert codes(manager, alice + [invited]) == ["REVOKED"] * 4  # read your writes
    wait_for("the bulk revoke on every host", everywhere(hosts, alice + [invited], "REVOKED"),
             2.0)
    print(f"revoke --owner (3 keys) -> REVOKED on 2 hosts: "
          f"{(time.monotonic() - t0) * 1000:.0f} ms")
    assert etcd_cluster.revision() == rev + 1
    assert all(codes(h, bob) == ["VALID"] for h in hosts)
    for h in [manager] + hosts:
        assert fleet_status(h)["applied_revision"] >= rev + 1
    # One audit entry per key, as on one host.
    with manager.client() as c:
        events = [e for e in list_all_audit(c) if e["action"] == "revoke"]
    assert len(events) == 3 and all("3 keys of akt-alice" in e["detail"] for e in events)

    # The delete removes the keys and their names everywhere: the names are free again.
    r = ctl.ok("delete", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Deleted 3 keys of {ALICE}.", r
    wait_for("the bulk delete on every host", everywhere(hosts, alice, "NOT_FOUND"), 2.0)
    assert etcd_cluster.etcdctl("get", f"{fleet.prefix}/names/{ALICE}/", "--prefix",
                                "--keys-only").split() == []
    again = create_from(manager, [{"name": "ci-build", "owner": ALICE}])
    wait_for("a name used again", everywhere(hosts, again, "VALID"), 2.0)

    # Disable and enable go the same way.
    r = ctl.ok("disable", "--owner", BOB, "--yes")
    assert r.out.splitlines()[-1] == f"Disabled 1 key of {BOB}.", r
    wait_for("the bulk disable on every host", everywhere(hosts, bob, "DISABLED"), 2.0)
    r = ctl.ok("enable", "--owner", BOB, "--yes")
    assert r.out.splitlines()[-1] == f"Enabled 1 key of {BOB}.", r
    wait_for("the bulk enable on every host", everywhere(hosts, bob, "VALID"), 2.0)

    # A host that follows refuses bulk changes as it refuses one.
    host = Ctl(hosts[0].socket)
    for argv in (["revoke", "--owner", BOB, "--yes"], ["create", "--from", "-"]):
        r = host(*argv, input='{"name": "x"}\n', rc=EXIT_REFUSED)
        assert r.err.startswith("apikeyctl: keys are managed centrally: this host follows the "
                                "fleet's keys in etcd (http://127.0.0.1:"), r
        assert f"[{IFACE}.ManagedCentrally]" in r.err, r
    with hosts[1].client() as c:
        error, params = c.err(f"{IFACE}.ChangeMatching", {"action": "disable", "owner": BOB})
    assert error == f"{IFACE}.ManagedCentrally" and params["prefix"] == fleet.prefix
    assert all(codes(h, bob) == ["VALID"] for h in [manager] + hosts)


def test_bulk_change_beyond_etcds_transaction_limit(fleet, etcd_cluster, test_users):
    """etcd takes at most 128 operations in one transaction (--max-txn-ops): a bulk
    change that would need more is refused whole, saying how to split it."""
    manager, hosts = fleet(1, host_config=HOSTS, manager_config=MANAGER)
    root = manager.client()

    error, params = root.err(f"{IFACE}.CreateMany",
                             {"keys": [{"name": f"k{i}", "owner": ALICE} for i in range(65)]})
    assert error == POLICY, params
    assert params["reason"] == (
        "in fleet mode the keys are created in one etcd transaction, and etcd takes at most "
        "128 operations in one (--max-txn-ops): 64 keys at most, not 65; split them into parts "
        "of 64 keys; nothing was created")
    lines = "".join(json.dumps({"name": f"k{i}", "owner": ALICE}) + "\n" for i in range(65))
    r = Ctl(manager.socket)("create", "--from", "-", input=lines, rc=EXIT_REFUSED)
    assert r.err == (
        "apikeyctl: refused by this installation's policy: in fleet mode the keys are created "
        "in one etcd transaction, and etcd takes at most 128 operations in one "
        "(--max-txn-ops): 64 keys at most, not 65; split them into parts of 64 keys; nothing "
        f"was created [{POLICY}]\n"), r

    assert root.ok(f"{IFACE}.CreateMany", {"keys": []}) == {"created": []}
    tokens = []
    for part in ("a", "b"):
        tokens += [c["token"] for c in root.ok(f"{IFACE}.CreateMany", {"keys": [
            {"name": f"{part}{i:02}", "owner": ALICE} for i in range(64)]})["created"]]
    tokens += [root.create("c00", owner=ALICE)["token"]]
    wait_for("129 keys on the host", everywhere(hosts, tokens, "VALID"), 4.0)

    rev = etcd_cluster.revision()
    r = Ctl(manager.socket)("revoke", "--owner", ALICE, "--yes", rc=EXIT_REFUSED)
    assert ("apikeyctl: refused by this installation's policy: in fleet mode a bulk change is "
            "one etcd transaction, and etcd takes at most 128 operations in one "
            "(--max-txn-ops); to revoke these 129 keys of akt-alice takes more") in r.err, r
    assert "change them in parts (--name PREFIX, --status STATUS); nothing was changed" in r.err
    assert etcd_cluster.revision() == rev
    assert codes(manager, tokens) == ["VALID"] * 129
    with root as c:
        assert not [e for e in list_all_audit(c) if e["action"] == "revoke"]

    # In parts, as told: one key, then 128, exactly the limit.
    r = Ctl(manager.socket).ok("revoke", "--owner", ALICE, "--name", "c", "--yes")
    assert r.out.splitlines()[-1] == f"Revoked 1 key of {ALICE}.", r
    r = Ctl(manager.socket).ok("revoke", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Revoked 128 keys of {ALICE}.", r
    assert etcd_cluster.revision() == rev + 2
    wait_for("129 revoked keys on the host", everywhere(hosts, tokens, "REVOKED"), 2.0)


def followed_and_other(etcd_cluster, manager):
    """The member `manager` follows, and another one, made the leader if the
    followed one leads: stopping the followed member then leaves the others
    answering at once, without an election."""
    followed = fleet_status(manager)["endpoint"]
    other = next(u for u in etcd_cluster.client_urls if u != followed)
    if etcd_cluster.leader() == etcd_cluster.name_of(followed):
        members = json.loads(etcd_cluster.etcdctl("member", "list", "-w", "json"))["members"]
        to = next(m["ID"] for m in members if other in m["clientURLs"])
        etcd_cluster.etcdctl("move-leader", format(to, "x"))
        assert etcd_cluster.leader() == etcd_cluster.name_of(other)
    return followed, other


def test_key_changed_meanwhile_changes_nothing(fleet, etcd_cluster, test_users):
    """A key changed in etcd after the manager's replica saw it (here: rewritten while the
    member the manager follows hangs, so its watch cannot tell it): the transaction's
    compare fails, the call fails as a change of one key does, and no key is changed."""
    manager, hosts = fleet(1, host_config=HOSTS)
    tokens = create_from(manager, [{"name": f"k{i}", "owner": ALICE} for i in range(3)])
    wait_for("the keys on the host", everywhere(hosts, tokens, "VALID"), 2.0)
    with manager.client() as c:
        ids = sorted(k["id"] for k in c.list()["keys"])

    followed, other = followed_and_other(etcd_cluster, manager)
    key = b64(f"{fleet.prefix}/keys/{ids[1]}")
    etcd_cluster.stop(etcd_cluster.name_of(followed))
    try:
        value = etcd_kv(other, "range", key=key)["kvs"][0]["value"]
        etcd_kv(other, "put", key=key, value=value)  # the same record, a new mod revision
        r = Ctl(manager.socket)("revoke", "--owner", ALICE, "--yes", rc=EXIT_REFUSED)
    finally:
        etcd_cluster.continue_all()
    assert ("the daemon failed: the key changed in etcd meanwhile (another manager); nothing "
            "was changed: try again") in r.err, r
    assert f"[{IFACE}.InternalError]" in r.err, r
    # The manager's replica puts back what etcd has: no key revoked, anywhere.
    wait_for("the manager back to etcd's keys", everywhere([manager], tokens, "VALID"), 5.0)
    assert codes(hosts[0], tokens) == ["VALID"] * 3
    r = Ctl(manager.socket).ok("revoke", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Revoked 3 keys of {ALICE}.", r
    wait_for("the revoke tried again", everywhere(hosts, tokens, "REVOKED"), 2.0)


def test_bulk_revoke_ends_sessions_on_every_host(fleet, pam, sessions):
    """A login opened with the key on each of two hosts ends when the manager revokes
    every key of its owner."""
    manager, hosts = fleet(2, host_config=HOSTS)
    [token] = create_from(manager, [{"name": "laptop", "owner": SESSION_USER}])
    wait_for("the key on every host", everywhere(hosts, [token], "VALID"), 2.0)
    opened = [sessions(pam, stack(pam, h), SESSION_USER, token) for h in hosts]

    r = Ctl(manager.socket)("revoke", "--owner", SESSION_USER, "--yes", rc=EXIT_OK)
    assert r.out.splitlines()[-1] == f"Revoked 1 key of {SESSION_USER}.", r
    for h, s in zip(hosts, opened):
        assert s.ended_within(END_WITHIN + 1.0) is not None, \
            f"the session on {h.socket} still runs after the bulk revoke"


def test_name_given_meanwhile_is_name_taken(fleet, etcd_cluster, test_users):
    """A name another manager gave first (its entry in etcd's name index, which this
    manager's replica does not hold): create --from is refused with NameTaken naming the
    line, as Create is, and nothing is created."""
    manager, _ = fleet(0)
    other = "A" * 12  # another manager's key
    etcd_kv(etcd_cluster.client_urls[0], "put", key=b64(f"{fleet.prefix}/names/{ALICE}/dup"),
            value=b64(other))
    lines = "".join(json.dumps({"name": n, "owner": ALICE}) + "\n"
                    for n in ("fresh", "dup", "also-fresh"))
    r = Ctl(manager.socket)("create", "--from", "-", input=lines, rc=EXIT_REFUSED)
    assert r.err == (f"apikeyctl: {ALICE} already has a key named 'dup'; choose another name "
                     f"[{IFACE}.NameTaken]\n"
                     "apikeyctl: that is standard input, line 2; nothing was created\n"), r
    with manager.client() as c:
        error, params = c.err(f"{IFACE}.CreateMany",
                              {"keys": [{"name": "x", "owner": ALICE},
                                        {"name": "dup", "owner": ALICE}]})
    assert (error, params) == (f"{IFACE}.NameTaken", {"owner": ALICE, "name": "dup", "index": 1})
    assert etcd_cluster.etcdctl("get", f"{fleet.prefix}/names/{ALICE}/", "--prefix",
                                "--keys-only").split() == [f"{fleet.prefix}/names/{ALICE}/dup"]

    def none_left():
        with manager.client() as c:
            return c.list()["keys"] == []
    wait_for("the manager's replica back to etcd's keys", none_left, 5.0)
