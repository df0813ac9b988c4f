# SPDX-License-Identifier: MIT
"""Hygiene the admin does not have to remember: max_lifetime for every key,
keys disabled when unused for disable_unused_after, and lockouts that end
on their own -- through the real daemon."""

import signal
import time

import pytest

from conftest import IFACE, check_key, parse_iso

POLICY = f"{IFACE}.PolicyViolation"
LATER = ("the expiry is later than any key may live on this installation (max_lifetime in "
         "apikeyd.conf)")
NEVER = "every key must expire on this installation (max_lifetime in apikeyd.conf): give an expiry"


def policy(result):
    err, params = result
    assert err == POLICY, (err, params)
    assert set(params) == {"reason"}, params
    return params["reason"]


# ---------------------------------------------------------------- max_lifetime


def test_max_lifetime_holds_for_admins_and_users(daemon, as_user):
    d = daemon(config={"max_lifetime": "1d", "user_max_lifetime": "90d"})
    root = d.client()
    create = f"{IFACE}.Create"
    assert policy(root.err(create, {"name": "k", "expires": "2d"})) == LATER
    assert policy(root.err(create, {"name": "k", "expires": "never"})) == NEVER
    # Within it, and without an expiry: that long.
    ok = root.create("within", expires="23h")
    before = time.time()
    default = root.create("default")["key"]
    assert before + 86400 - 2 <= parse_iso(default["expires_at"]) <= time.time() + 86400
    # A user's key too, named by max_lifetime before user_max_lifetime.
    alice = as_user("akt-alice", socket=d.socket)
    assert policy(alice.err(create, {"name": "k", "expires": "30d"})) == LATER
    mine = alice.create("mine")["key"]
    assert parse_iso(mine["expires_at"]) <= time.time() + 86400
    # Update: a later expiry, or none, is refused; another change is not.
    update = f"{IFACE}.Update"
    key_id = ok["key"]["id"]
    assert policy(root.err(update, {"id": key_id, "expires": "2d"})) == LATER
    assert policy(root.err(update, {"id": key_id, "expires": "never"})) == NEVER
    assert root.ok(update, {"id": key_id, "expires": "1h"})["key"]["expires_at"]
    assert root.ok(update, {"id": key_id, "name": "renamed"})["key"]["name"] == "renamed"


def test_max_lifetime_is_unlimited_by_default(root):
    assert "expires_at" not in root.create("forever", expires="never")["key"]
    assert "expires_at" not in root.create("default")["key"]


# ---------------------------------------------------------------- disable_unused_after

UNUSED = 3  # seconds: disable_unused_after in these tests


def wait_for(predicate, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def status(client, key_id):
    return client.get(key_id)["status"]


def test_unused_key_is_disabled_with_reason_unused(daemon, as_user):
    d = daemon(config={"disable_unused_after": f"{UNUSED}s"})
    root = d.client()
    idle = root.create("idle", owner="akt-alice")
    busy = root.create("busy", owner="akt-alice")
    start = time.monotonic()
    # One key used every half second, the other never.
    while time.monotonic() - start < UNUSED + 2.5:
        assert root.verify(busy["token"])["code"] == "VALID"
        time.sleep(0.5)
    key = check_key(root.get(idle["key"]["id"]))
    assert (key["status"], key.get("disabled_reason")) == ("disabled", "unused"), key
    assert "disabled_by_admin" not in key
    assert root.verify(idle["token"])["code"] == "DISABLED"
    assert status(root, busy["key"]["id"]) == "enabled"
    assert "disabled_reason" not in root.get(busy["key"]["id"])
    # The audit and the journal say who and why.
    events = [e for e in root.ok(f"{IFACE}.ListAudit", {"key_id": idle["key"]["id"]})["events"]
              if e["action"] == "disable"]
    assert [(e["actor"], e["result"], e["detail"]) for e in events] == [
        ("apikeyd", "ok", "reason=unused")], events
    line = (f"apikeyd: disable key {idle['key']['id']} of akt-alice: reason=unused, not used "
            f"since {idle['key']['created_at']} (disable_unused_after = {UNUSED}s)")
    assert wait_for(lambda: line in d.log(), 5), d.log()
    # Its owner enables it again, which clears the reason; unused, it goes again.
    alice = as_user("akt-alice", socket=d.socket)
    key = alice.ok(f"{IFACE}.Enable", {"id": idle["key"]["id"]})["key"]
    assert key["status"] == "enabled" and "disabled_reason" not in key
    assert root.verify(idle["token"])["code"] == "VALID"
    assert wait_for(lambda: status(root, idle["key"]["id"]) == "disabled", UNUSED + 3)
    assert time.monotonic() - start > UNUSED


def test_unused_is_counted_from_the_last_use_and_shown_by_apikeyctl(daemon):
    from test_apikeyctl import EXIT_OK, run_ctl
    d = daemon(config={"disable_unused_after": f"{UNUSED}s"})
    root = d.client()
    r = root.create("once")
    time.sleep(UNUSED - 1.5)
    assert root.verify(r["token"], service="sshd")["code"] == "VALID"
    used = time.monotonic()
    # Still enabled after disable_unused_after from its creation...
    time.sleep(2.0)
    assert status(root, r["key"]["id"]) == "enabled"
    # ... and disabled that long after its use.
    assert wait_for(lambda: status(root, r["key"]["id"]) == "disabled", UNUSED + 2)
    assert time.monotonic() - used >= UNUSED - 0.1
    listed = run_ctl("list", socket=d.socket, rc=EXIT_OK).out
    assert "disabled (unused)" in listed, listed
    shown = run_ctl("show", "once", socket=d.socket, rc=EXIT_OK).out
    assert "     Status: disabled, reason: unused\n" in shown, shown


def test_unused_key_disabled_ends_its_sessions(tmp_path, daemon):
    from pam_fixtures import DEFAULT_BUILD, PamDir
    from test_sessions import Session, stack
    d = daemon(config={"disable_unused_after": f"{UNUSED}s"})
    admin = d.client()
    created = admin.create("laptop", owner="alice")
    pam = PamDir(tmp_path / "pam.d", DEFAULT_BUILD.check())
    s = Session(pam, stack(pam, d), "alice", created["token"])
    try:
        # The login was the key's last use: that long after it, the key and
        # its session end, as on Disable.
        assert s.ended_within(UNUSED + 4) is not None, "session still running"
        assert s.proc.returncode == -signal.SIGTERM, s.proc.returncode
        key = admin.get(created["key"]["id"])
        assert (key["status"], key["disabled_reason"]) == ("disabled", "unused")
        line = (f"ending session of key {key['id']}: user=alice service=login "
                f"rhost=192.0.2.7 tty=pts/9 pid={s.pid}: key disabled")
        assert wait_for(lambda: line in d.log(), 5), d.log()
    finally:
        s.stop()


def test_disable_unused_after_is_off_by_default(root):
    r = root.create("idle")
    time.sleep(1.2)
    assert status(root, r["key"]["id"]) == "enabled"


# ---------------------------------------------------------------- lockouts end on their own

WINDOW = 2  # seconds: lockout_window in these tests


def locked_out(client):
    return client.ok(f"{IFACE}.ListLockouts", {})["lockouts"]


def wrong(token):
    from conftest import make_token, other_secret, split_token
    prefix, key_id, secret, _ = split_token(token)
    return make_token(prefix, key_id, other_secret(secret))


def test_lockouts_end_on_their_own_without_an_admin(daemon):
    d = daemon(config={"lockout_threshold": "3", "lockout_window": f"{WINDOW}s"})
    c = d.client()
    token = c.create("k", owner="alice")["token"]
    login = {"user": "alice", "rhost": "198.51.100.9"}
    first = time.monotonic()
    for _ in range(3):
        assert c.verify(wrong(token), **login)["code"] == "NOT_FOUND"
    assert c.verify(token, **login)["code"] == "RATE_LIMITED"
    names = {e["name"] for e in locked_out(c)}
    assert "alice@198.51.100.9" in names, names
    # Attempts refused while locked do not stretch the window.
    while time.monotonic() - first < WINDOW - 0.5:
        assert c.verify(wrong(token), **login)["code"] == "RATE_LIMITED"
        time.sleep(0.2)
    time.sleep(max(0.0, first + WINDOW + 0.2 - time.monotonic()))
    assert locked_out(c) == []
    assert c.verify(token, **login)["code"] == "VALID"


def test_lockouts_whose_window_passed_while_stopped_are_gone_at_start(daemon):
    d = daemon(config={"lockout_threshold": "3", "lockout_window": f"{WINDOW}s"})
    c = d.client()
    token = c.create("k", owner="alice")["token"]
    for _ in range(3):
        assert c.verify(wrong(token), user="alice", rhost="198.51.100.9")["code"] == "NOT_FOUND"
    assert locked_out(c)
    c.close()
    d.stop()
    time.sleep(WINDOW + 0.2)
    d.start()
    c = d.client()
    assert locked_out(c) == []
    assert c.verify(token, user="alice", rhost="198.51.100.9")["code"] == "VALID"
