"""Lockout after failed verifies: per key id, per user and remote host, per
calling uid; only definitive mismatches count; windows end; admins list and
reset; the counts survive a restart."""
import json
import os
import subprocess
import time

import pytest

from conftest import (ALICE, APIKEYD, BOB, IFACE, make_token, other_secret, parse_iso,
                      split_token)

THRESHOLD = 3
APIKEYCTL = APIKEYD.parent / "apikeyctl"


def wrong(token):
    prefix, key_id, secret, _ = split_token(token)
    return make_token(prefix, key_id, other_secret(secret))


def unknown(n):
    return make_token("apk", f"Unknown{n:05d}", "x" * 43)


@pytest.fixture
def locked_daemon(daemon):
    return daemon(config={"lockout_threshold": str(THRESHOLD), "lockout_window": "3s",
                          "last_used_flush_interval": "1s"})


def test_key_id_locks_after_wrong_secrets_and_not_other_keys(locked_daemon):
    c = locked_daemon.client()
    a = c.create("a", owner="alice")["token"]
    b = c.create("b", owner="alice")["token"]
    for _ in range(THRESHOLD):
        assert c.verify(wrong(a))["code"] == "NOT_FOUND"
    # Locked: even the right secret is refused, so guessing cannot go on.
    assert c.verify(a)["code"] == "RATE_LIMITED"
    assert c.verify(wrong(a))["code"] == "RATE_LIMITED"
    # Another key of the same owner is not touched.
    assert c.verify(b)["code"] == "VALID"
    # The window began with the first failure; after it, the key works again.
    time.sleep(3.2)
    assert c.verify(a)["code"] == "VALID"


def test_only_definitive_mismatches_count(locked_daemon):
    c = locked_daemon.client()
    r = c.create("k", owner="alice", scope=["sshd"])
    for _ in range(THRESHOLD + 2):
        assert c.verify(r["token"], user="bob")["code"] == "WRONG_USER"
        assert c.verify(r["token"], service="sudo")["code"] == "OUT_OF_SCOPE"
    c.ok(f"{IFACE}.Disable", {"id": r["key"]["id"]})
    for _ in range(THRESHOLD + 2):
        assert c.verify(r["token"])["code"] == "DISABLED"
    c.ok(f"{IFACE}.Enable", {"id": r["key"]["id"]})
    assert c.verify(r["token"], user="alice", service="sshd")["code"] == "VALID"
    assert c.ok(f"{IFACE}.ListLockouts", {})["lockouts"] == []


def test_user_and_host_lock_together(locked_daemon):
    c = locked_daemon.client()
    token = c.create("k", owner="alice")["token"]
    for n in range(THRESHOLD):
        assert c.verify(unknown(n), user="alice", rhost="192.0.2.7")["code"] == "NOT_FOUND"
    assert c.verify(token, user="alice", rhost="192.0.2.7")["code"] == "RATE_LIMITED"
    # The same user from elsewhere, and another user from there, are not locked.
    assert c.verify(token, user="alice", rhost="198.51.100.1")["code"] == "VALID"
    bob = c.create("b", owner="bob")["token"]
    assert c.verify(bob, user="bob", rhost="192.0.2.7")["code"] == "VALID"
    kinds = {(e["kind"], e["name"]): e for e in c.ok(f"{IFACE}.ListLockouts", {})["lockouts"]}
    e = kinds[("from", "alice@192.0.2.7")]
    assert e["locked"] is True and e["failures"] == THRESHOLD
    assert parse_iso(e["locked_until"]) - parse_iso(e["since"]) == 3
    # Unknown ids are counted too, one name each, not locked.
    assert kinds[("key", "Unknown00000")]["locked"] is False


def test_calling_uid_locks_but_root_is_not_counted(locked_daemon, as_user):
    alice = as_user(ALICE, socket=locked_daemon.socket)
    root = locked_daemon.client()
    token = root.create("k", owner=ALICE)["token"]
    def verify(t):
        return alice.ok(f"{IFACE}.Verify", {"token": t})["code"]

    for n in range(THRESHOLD):
        assert verify(f"garbage-{n}") == "BAD_FORMAT"
    assert verify(token) == "RATE_LIMITED"
    # Root calls for everyone (sshd, sudo): never locked by uid.
    for n in range(THRESHOLD + 1):
        assert root.verify(f"garbage-{n}")["code"] == "BAD_FORMAT"
    assert root.verify(token)["code"] == "VALID"
    names = {(e["kind"], e["name"]) for e in root.ok(f"{IFACE}.ListLockouts", {})["lockouts"]}
    uid = str(int(subprocess.check_output(["id", "-u", ALICE])))
    assert ("uid", uid) in names and ("uid", "0") not in names


def test_reset_by_admin_and_refused_to_users(locked_daemon, as_user):
    c = locked_daemon.client()
    token = c.create("k", owner="alice")["token"]
    key_id = split_token(token)[1]
    for _ in range(THRESHOLD):
        c.verify(wrong(token))
    assert c.verify(token)["code"] == "RATE_LIMITED"
    alice = as_user(ALICE, socket=locked_daemon.socket)
    for method, params in ((f"{IFACE}.ListLockouts", {}),
                           (f"{IFACE}.ResetLockout", {"kind": "key", "name": key_id})):
        err, params = alice.err(method, params)
        assert err == f"{IFACE}.PermissionDenied"
        assert params == {"reason": "only admins may see or reset lockouts"}
    assert c.verify(token)["code"] == "RATE_LIMITED"
    assert c.ok(f"{IFACE}.ResetLockout", {"kind": "key", "name": key_id}) == {"reset": True}
    assert c.verify(token)["code"] == "VALID"
    assert c.ok(f"{IFACE}.ResetLockout", {"kind": "key", "name": key_id}) == {"reset": False}
    assert c.err(f"{IFACE}.ResetLockout", {"kind": "host", "name": "x"}) == (
        "org.varlink.service.InvalidParameter", {"parameter": "kind"})
    assert c.err(f"{IFACE}.ResetLockout", {"kind": "key"}) == (
        "org.varlink.service.InvalidParameter", {"parameter": "name"})


def lock_out_a_key(d):
    """A key of alice's, locked out by failed verifies; its token."""
    c = d.client()
    token = c.create("k", owner="alice")["token"]
    for _ in range(THRESHOLD):
        c.verify(wrong(token))
    assert c.verify(token)["code"] == "RATE_LIMITED"
    c.close()
    return token


def test_counts_survive_a_restart(daemon):
    d = daemon(config={"lockout_threshold": str(THRESHOLD), "lockout_window": "1h"})
    token = lock_out_a_key(d)
    d.restart()
    assert d.client().verify(token)["code"] == "RATE_LIMITED"


def test_damaged_saved_counts_are_dropped_with_a_warning(daemon):
    """Counts saved at a shutdown and damaged since (a bad disk, a hand
    edit): the daemon says so, starts without them and keeps working."""
    d = daemon(config={"lockout_threshold": str(THRESHOLD), "lockout_window": "1h"})
    token = lock_out_a_key(d)
    d.stop()
    store = str(d.state_dir / "keys.mdb")
    dump = subprocess.run(["mdb_dump", "-n", "-s", "meta", store], capture_output=True,
                          text=True, check=True, timeout=30).stdout.splitlines()
    key = " " + b"lockout".hex()
    at = dump.index(key)  # the saved counts are there
    dump[at + 1] = " " + b"\x07damaged".hex()
    subprocess.run(["mdb_load", "-n", "-s", "meta", store], input="\n".join(dump) + "\n",
                   text=True, check=True, timeout=30)
    d.start()
    assert "the saved lockout counts are damaged; starting without them" in d.log()
    c = d.client()
    assert c.verify(token)["code"] == "VALID"  # the lockout went with the counts
    for _ in range(THRESHOLD):
        c.verify(wrong(token))
    assert c.verify(token)["code"] == "RATE_LIMITED"  # and counting works again


def ctl(d, *args, input=None):
    return subprocess.run([str(APIKEYCTL), "--socket", d.socket, *args], input=input,
                          capture_output=True, text=True, timeout=30)


def test_apikeyctl_lockout_list_and_reset(locked_daemon):
    c = locked_daemon.client()
    token = c.create("k", owner="alice")["token"]
    key_id = split_token(token)[1]
    for _ in range(THRESHOLD):
        c.verify(wrong(token))
    r = ctl(locked_daemon, "lockout", "list")
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "FAILURES", "SINCE", "LOCKED", "UNTIL", "SOURCE"]
    row = next(l.split() for l in lines[1:] if key_id in l)
    assert row[:3] == ["key", key_id, str(THRESHOLD)]
    assert row[-1] == "uid:0"  # root, naming no host: the source of these guesses
    r = ctl(locked_daemon, "--json", "lockout", "list")
    assert [e["name"] for e in json.loads(r.stdout) if e["locked"]] == [key_id]
    # Fitted to the terminal's width: the name cut, the source and the
    # start left out, never a wrapped line.
    r = subprocess.run([str(APIKEYCTL), "--socket", locked_daemon.socket, "lockout", "list"],
                       capture_output=True, text=True, timeout=30, env={**os.environ,
                                                                        "COLUMNS": "50"})
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("KIND"), r
    assert all(len(line) <= 50 for line in r.stdout.splitlines()), r.stdout
    r = ctl(locked_daemon, "lockout", "reset", "key", key_id)
    assert (r.returncode, r.stdout) == (0, f"Reset the failed verifies of key {key_id}.\n")
    assert c.verify(token)["code"] == "VALID"
    for _ in range(THRESHOLD):
        c.verify(wrong(token), user="alice", rhost="192.0.2.9")
    r = ctl(locked_daemon, "lockout", "reset", "key", key_id, "from:alice@192.0.2.9")
    assert (r.returncode, r.stdout) == (
        0, f"Reset the failed verifies of key {key_id} (source from:alice@192.0.2.9).\n")
    assert c.verify(token, user="alice", rhost="192.0.2.9")["code"] == "RATE_LIMITED"  # the host
    r = ctl(locked_daemon, "lockout", "reset", "from", "alice@192.0.2.9")
    assert (r.returncode, r.stdout) == (0, "Reset the failed verifies of from alice@192.0.2.9.\n")
    assert c.verify(token, user="alice", rhost="192.0.2.9")["code"] == "VALID"
    r = ctl(locked_daemon, "lockout", "reset", "uid", "0", "x")
    assert r.returncode == 2 and "only a key is reset for one SOURCE" in r.stderr
    r = ctl(locked_daemon, "lockout", "reset", "host", "x")
    assert r.returncode == 2 and "the kind is key, from or uid, not 'host'" in r.stderr
    for _ in range(THRESHOLD):
        c.verify(wrong(token))
    r = ctl(locked_daemon, "lockout", "reset", input="")
    assert (r.returncode, r.stdout) == (0, "Reset every lockout.\n")
    assert c.verify(token)["code"] == "VALID"
