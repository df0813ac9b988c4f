# SPDX-License-Identifier: MIT
"""Lockout blocks the attacker, not the victim, written from the attacker's
side against the real daemon: another local user flooding a victim's key id,
a remote host through the real PAM stack, a flood of sources that fills the
table, wrong `auth` keys used as an oracle, counts saved by an older version."""
import secrets
import struct
import subprocess
import time

import pytest

from conftest import (ADMIN, ALICE, BASE62, BOB, IFACE, Varlink, make_token, other_secret,
                      run_as, split_token)
from pam_fixtures import (DEFAULT_BUILD, PAM_AUTH_ERR, PAM_MAXTRIES, PAM_SUCCESS, PamDir,
                          forged, trust_me)

THRESHOLD = 10  # the default


def wrong(token):
    prefix, key_id, secret, _ = split_token(token)
    return make_token(prefix, key_id, other_secret(secret))


def random_base62(n):
    return "".join(secrets.choice(BASE62) for _ in range(n))


def uid_of(name):
    return int(subprocess.check_output(["id", "-u", name]))


def lockouts(c):
    return {(e["kind"], e["name"], e.get("source")): e
            for e in c.ok(f"{IFACE}.ListLockouts", {})["lockouts"]}


def flood_verify(socket, token, n):
    """In the caller's process: n Verify calls of `token`; their codes."""
    with Varlink(socket) as c:
        return [c.call(f"{IFACE}.Verify", {"token": token})["parameters"]["code"]
                for _ in range(n)]


def test_another_uid_flooding_a_key_locks_itself_out_not_the_owner(daemon):
    d = daemon()
    root = d.client()
    victim = root.create("laptop", owner=ALICE)["token"]
    own = root.create("bobs", owner=BOB)["token"]
    victim_id = split_token(victim)[1]
    # Bob guesses at Alice's key id: wrong secrets, then the right one.
    codes = run_as(BOB, lambda: flood_verify(d.socket, wrong(victim), THRESHOLD + 5))
    assert codes == ["NOT_FOUND"] * THRESHOLD + ["RATE_LIMITED"] * 5
    # Bob is blocked, even for a right secret: his own key, or Alice's.
    assert run_as(BOB, lambda: flood_verify(d.socket, own, 1)) == ["RATE_LIMITED"]
    assert run_as(BOB, lambda: flood_verify(d.socket, victim, 1)) == ["RATE_LIMITED"]
    # Alice, from her own uid, and root (sshd, sudo) are not.
    assert run_as(ALICE, lambda: flood_verify(d.socket, victim, 1)) == ["VALID"]
    assert root.verify(victim)["code"] == "VALID"
    seen = lockouts(root)
    bob = str(uid_of(BOB))
    assert seen[("uid", bob, None)]["locked"] is True
    assert seen[("key", victim_id, f"uid:{bob}")]["locked"] is True
    assert not any(k[0] == "uid" and k[1] == str(uid_of(ALICE)) for k in seen)
    assert f"uid:{bob} locked after {THRESHOLD} failed verifies" in d.log()


@pytest.fixture
def pam(tmp_path):
    return PamDir(tmp_path / "pam.d", DEFAULT_BUILD.check())


def test_pam_remote_attacker_gets_maxtries_victim_on_another_host_succeeds(pam, daemon):
    d = daemon(config={"lockout_threshold": 3})
    token = d.client().create("k", owner="alice")["token"]
    pam.probe("sshd", f"socket={d.socket} nodelay {trust_me()}".rstrip())
    for _ in range(3):
        r = pam.run("sshd", "alice", [forged(token)], rhost="198.51.100.7")
        assert r.code == PAM_AUTH_ERR, r
    # The attacker's host is blocked, for the right secret too.
    r = pam.run("sshd", "alice", [token], rhost="198.51.100.7")
    assert r.code == PAM_MAXTRIES, r
    # Alice from her own host logs in.
    r = pam.run("sshd", "alice", [token], rhost="198.51.100.8")
    assert r.code == PAM_SUCCESS, r
    seen = lockouts(d.client())
    assert seen[("from", "alice@198.51.100.7", None)]["locked"] is True
    assert ("from", "alice@198.51.100.8", None) not in seen


def test_a_full_table_goes_on_counting(daemon):
    """16,384 names of sources that failed once fill the table; a new
    attacker is still counted and locked out, one that keeps trying stays
    locked, and the log says once that names are evicted."""
    d = daemon(config={"lockout_threshold": 3})
    c = d.client(timeout=60)

    def guess(rhost):
        t = make_token("apk", random_base62(12), random_base62(43))
        return c.verify(t, user="mallory", rhost=rhost)["code"]

    assert [guess("203.0.113.1") for _ in range(4)] == ["NOT_FOUND"] * 3 + ["RATE_LIMITED"]
    # Each failure from a new source is two names: the source, and the key from it.
    for i in range(8400):
        assert guess(f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}") == "NOT_FOUND"
        if i % 1000 == 0:
            assert guess("203.0.113.1") == "RATE_LIMITED"
    # A new attacker is counted and blocked, as it would be in an empty table.
    assert [guess("192.0.2.66") for _ in range(4)] == ["NOT_FOUND"] * 3 + ["RATE_LIMITED"]
    assert guess("203.0.113.1") == "RATE_LIMITED"
    log = d.log()
    assert log.count("the lockout table is full (16384 names): evicting the least recently "
                     "failed to keep counting") == 1, log[-2000:]
    assert len(c.ok(f"{IFACE}.ListLockouts", {})["lockouts"]) == 16384


def test_wrong_auth_keys_are_counted_logged_and_audited(daemon):
    d = daemon(config={"last_used_flush_interval": "1s"})
    root = d.client()
    admin = root.create("automation", owner=ADMIN, role="admin")["token"]
    admin_id = split_token(admin)[1]
    bad = wrong(admin)

    def oracle():
        with Varlink(d.socket) as c:
            return [c.call(f"{IFACE}.List", {"auth": bad}) for _ in range(200)]

    replies = run_as(BOB, oracle)
    assert all(r["error"] == f"{IFACE}.PermissionDenied" for r in replies)
    reasons = [r["parameters"]["reason"] for r in replies]
    assert reasons[:THRESHOLD] == ["the API key given in auth is not valid"] * THRESHOLD
    assert set(reasons[THRESHOLD:]) == {
        "the API key given in auth is locked out after too many failed attempts from this "
        "caller; try again later"}
    bob = str(uid_of(BOB))
    seen = lockouts(root)
    assert seen[("uid", bob, None)]["failures"] == THRESHOLD
    assert seen[("key", admin_id, f"uid:{bob}")]["locked"] is True
    log = d.log()
    refused = [l for l in log.splitlines() if f"auth refused: NOT_FOUND; key={admin_id} " in l]
    assert len(refused) == THRESHOLD and f"caller uid={bob} " in refused[0], refused
    assert f"auth refused: RATE_LIMITED; key={admin_id} " in log
    assert admin.split("_")[2][:20] not in log
    # Audited as a Verify failure is, with the action "auth".
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        events = [e for e in root.ok(f"{IFACE}.ListAudit", {"key_id": admin_id})["events"]
                  if e.get("action") == "auth"]
        if len(events) >= THRESHOLD:
            break
        time.sleep(0.2)
    assert [e["result"] for e in events[:THRESHOLD]] == ["NOT_FOUND"] * THRESHOLD, events
    assert f"uid={bob} " in events[0]["actor"], events[0]

    # The right key is refused as auth from Bob's uid, and works from Alice's.
    def with_right_key():
        with Varlink(d.socket) as c:
            return c.call(f"{IFACE}.List", {"auth": admin})

    r = run_as(BOB, with_right_key)
    assert r["error"] == f"{IFACE}.PermissionDenied" and "locked out" in r["parameters"]["reason"]
    assert "error" not in run_as(ALICE, with_right_key)


def test_a_key_locked_for_root_cannot_act_as_auth(daemon):
    """Root is not counted as a source of its own, but a key guessed at
    from root is locked for root: as auth too."""
    d = daemon(config={"lockout_threshold": 3})
    root = d.client()
    admin = root.create("automation", owner=ADMIN, role="admin")["token"]
    for _ in range(3):
        err, params = root.err(f"{IFACE}.List", {"auth": wrong(admin)})
        assert params == {"reason": "the API key given in auth is not valid"}
    err, params = root.err(f"{IFACE}.List", {"auth": admin})
    assert err == f"{IFACE}.PermissionDenied"
    assert params == {"reason": "the API key given in auth is locked out after too many "
                                "failed attempts from this caller; try again later"}
    assert root.verify(admin)["code"] == "RATE_LIMITED"  # the same count
    root.ok(f"{IFACE}.List", {})  # root itself is not locked out
    root.ok(f"{IFACE}.ResetLockout", {"kind": "key", "name": split_token(admin)[1]})
    root.ok(f"{IFACE}.List", {"auth": admin})


def test_reset_of_a_source_and_of_a_key_from_one_source(daemon, as_user):
    d = daemon(config={"lockout_threshold": 2})
    root = d.client()
    token = root.create("k", owner=ALICE)["token"]
    key_id = split_token(token)[1]
    for rhost in ("192.0.2.1", "192.0.2.2"):
        for _ in range(2):
            root.verify(wrong(token), user=ALICE, rhost=rhost)
    seen = lockouts(root)
    assert {k for k in seen if k[0] == "key"} == {
        ("key", key_id, f"from:{ALICE}@192.0.2.1"), ("key", key_id, f"from:{ALICE}@192.0.2.2")}
    # One source: its own count and its keys' go.
    assert root.ok(f"{IFACE}.ResetLockout",
                   {"kind": "from", "name": f"{ALICE}@192.0.2.1"}) == {"reset": True}
    assert root.verify(token, user=ALICE, rhost="192.0.2.1")["code"] == "VALID"
    assert root.verify(token, user=ALICE, rhost="192.0.2.2")["code"] == "RATE_LIMITED"
    # One key from one source: the source stays locked.
    assert root.ok(f"{IFACE}.ResetLockout", {"kind": "key", "name": key_id,
                                              "source": f"from:{ALICE}@192.0.2.2"}) == {
        "reset": True}
    assert root.verify(token, user=ALICE, rhost="192.0.2.2")["code"] == "RATE_LIMITED"
    assert ("key", key_id, f"from:{ALICE}@192.0.2.2") not in lockouts(root)
    assert root.err(f"{IFACE}.ResetLockout", {"kind": "uid", "name": "0", "source": "x"}) == (
        "org.varlink.service.InvalidParameter", {"parameter": "source"})


def test_sudo_and_su_count_the_user_who_ran_them(daemon):
    """A root caller without rhost names the local user by ruser (whom sudo
    or su was run by): that user is blocked, the victim is not."""
    d = daemon(config={"lockout_threshold": 3})
    root = d.client()
    token = root.create("k", owner=ALICE)["token"]
    for _ in range(3):
        assert root.verify(wrong(token), user=ALICE, ruser=BOB,
                           tty="/dev/pts/3")["code"] == "NOT_FOUND"
    assert root.verify(token, user=ALICE, ruser=BOB)["code"] == "RATE_LIMITED"
    assert root.verify(token, user=ALICE, ruser=ALICE)["code"] == "VALID"
    assert ("from", f"{BOB}@(local)", None) in lockouts(root)


def saved_counts_v1(entries):
    blob = struct.pack("<II", 1, len(entries))
    for name, failures, since in entries:
        blob += struct.pack("<H", len(name)) + name.encode() + struct.pack("<IQ", failures, since)
    return blob


def test_counts_saved_by_the_old_version_are_loaded_without_whole_key_counts(daemon):
    """Version 1 counted a key from every source ("key:<id>"): such a count
    is dropped with a warning, the others kept."""
    d = daemon(config={"lockout_threshold": 3, "lockout_window": "1h"})
    c = d.client()
    token = c.create("k", owner=ALICE)["token"]
    key_id = split_token(token)[1]
    d.stop()
    now = int(time.time() * 1e6)
    blob = saved_counts_v1([(f"key:{key_id}", 5, now - 10**6), ("uid:4242", 3, now - 10**6)])
    store = str(d.state_dir / "keys.mdb")
    dump = subprocess.run(["mdb_dump", "-n", "-s", "meta", store], capture_output=True,
                          text=True, check=True, timeout=30).stdout.splitlines()
    end = dump.index("DATA=END")
    key = " " + b"lockout".hex()
    if key in dump:
        at = dump.index(key)
        dump[at + 1] = " " + blob.hex()
    else:
        dump[end:end] = [key, " " + blob.hex()]
    subprocess.run(["mdb_load", "-n", "-s", "meta", store], input="\n".join(dump) + "\n",
                   text=True, check=True, timeout=30)
    d.start()
    assert ("1 saved lockout count of a kind no longer kept (a key counted from every "
            "source) dropped; starting without them") in d.log()
    c = d.client()
    assert c.verify(token)["code"] == "VALID"
    seen = lockouts(c)
    assert seen[("uid", "4242", None)]["locked"] is True
    assert not any(k[0] == "key" for k in seen)
    # Saved without it: the next start says nothing.
    time.sleep(0.1)
    d.restart()
    assert d.log().count("no longer kept") == 1
    assert ("uid", "4242", None) in lockouts(d.client())

