"""A key's usage history (GetUsage, `apikeyctl usage`) and the journal
event of its first use from a new source, against the real daemon."""
import shutil
import subprocess
import time

import pytest

from conftest import IFACE, make_token, other_secret, split_token
from test_apikeyctl import EXIT_REFUSED, Ctl
from test_journal import journal, message_ids  # noqa: F401 - the fixture, by name

DENIED = f"{IFACE}.PermissionDenied"
FLUSH = {"last_used_flush_interval": "1s"}


def usage(c, key_id, **params):
    return c.ok(f"{IFACE}.GetUsage", {"id": key_id, **params})["uses"]


def brief(uses):
    return [(u["code"], u.get("service"), u.get("rhost"), u.get("tty")) for u in uses]


def written(d, key_id, n, timeout=10):
    """Wait until the daemon has written `n` uses of the key to its keystore."""
    if shutil.which("mdb_dump") is None:
        pytest.skip("mdb_dump is not installed (package lmdb-utils)")
    deadline = time.monotonic() + timeout
    while True:
        dump = subprocess.run(["mdb_dump", "-n", "-s", "usage", str(d.state_dir / "keys.mdb")],
                              capture_output=True, text=True).stdout
        # Keys and values in hex, one a line; a use's key is the id, "u" and its time.
        keys = [line.strip() for line in dump.splitlines()
                if line.startswith(" " + key_id.encode().hex() + "75")]
        if len(keys) >= n or time.monotonic() > deadline:
            return len(keys)
        time.sleep(0.2)


def test_history_keeps_the_uses_newest_first_with_refusals(daemon):
    d = daemon(config=FLUSH)
    c = d.client()
    r = c.create("laptop", owner="alice", scope=["sshd"])
    token, key_id = r["token"], r["key"]["id"]
    assert usage(c, key_id) == []
    assert c.verify(token, service="sshd", rhost="192.0.2.1", tty="pts/1")["code"] == "VALID"
    assert c.verify(token, service="sudo", rhost="192.0.2.2")["code"] == "OUT_OF_SCOPE"
    assert c.verify(token, service="sshd", rhost="198.51.100.3")["code"] == "VALID"
    assert c.verify(token, service="sshd", rhost="2001:db8::4", user="alice")["code"] == "VALID"
    # A wrong secret is not a use of the key.
    prefix, _, secret, _ = split_token(token)
    assert c.verify(make_token(prefix, key_id, other_secret(secret)),
                    rhost="203.0.113.9")["code"] == "NOT_FOUND"
    expected = [("VALID", "sshd", "2001:db8::4", None),
                ("VALID", "sshd", "198.51.100.3", None),
                ("OUT_OF_SCOPE", "sudo", "192.0.2.2", None),
                ("VALID", "sshd", "192.0.2.1", "pts/1")]
    # Not written yet: the daemon answers from memory.
    uses = usage(c, key_id)
    assert brief(uses) == expected, uses
    times = [u["time"] for u in uses]
    assert times == sorted(times, reverse=True) and all(t.endswith("Z") for t in times)

    # Written by the next flush, and kept across a restart.
    assert written(d, key_id, 4) == 4
    assert brief(usage(c, key_id)) == expected
    d.restart()
    assert brief(usage(d.client(), key_id)) == expected


def test_history_is_bounded_and_limit_takes_the_newest(daemon):
    d = daemon(config={**FLUSH, "usage_history": 3})
    c = d.client()
    r = c.create("ci", owner="alice")
    token, key_id = r["token"], r["key"]["id"]
    for i in range(5):
        assert c.verify(token, service=f"svc{i}")["code"] == "VALID"
    assert written(d, key_id, 3) == 3
    # The oldest two were dropped from the keystore, not only from the answer.
    time.sleep(1.5)
    assert written(d, key_id, 99, timeout=0) == 3
    assert [u["service"] for u in usage(c, key_id)] == ["svc4", "svc3", "svc2"]
    assert [u["service"] for u in usage(c, key_id, limit=2)] == ["svc4", "svc3"]
    assert [u["service"] for u in usage(c, key_id, limit=1000)] == ["svc4", "svc3", "svc2"]
    for bad in (0, -1, 1001):
        err, params = c.err(f"{IFACE}.GetUsage", {"id": key_id, "limit": bad})
        assert err == "org.varlink.service.InvalidParameter" and params["parameter"] == "limit"
    err, params = c.err(f"{IFACE}.GetUsage", {"id": "x"})
    assert params["parameter"] == "id"
    err, params = c.err(f"{IFACE}.GetUsage", {"id": "A" * 12})
    assert err == f"{IFACE}.NoSuchKey" and params == {"id": "A" * 12}


def test_history_off_keeps_nothing(daemon):
    d = daemon(config={**FLUSH, "usage_history": 0})
    c = d.client()
    r = c.create("ci", owner="alice")
    assert c.verify(r["token"])["code"] == "VALID"
    assert usage(c, r["key"]["id"]) == []
    time.sleep(1.5)
    assert written(d, r["key"]["id"], 1, timeout=0) == 0


def test_only_the_owner_and_admins_read_a_keys_history(daemon, as_user):
    d = daemon(config=FLUSH)
    alice = as_user("akt-alice", socket=d.socket)
    bob = as_user("akt-bob", socket=d.socket)
    admin = as_user("akt-admin", socket=d.socket)
    r = alice.create("mine")
    key_id = r["key"]["id"]
    assert d.client().verify(r["token"], service="sshd", rhost="192.0.2.5")["code"] == "VALID"
    err, params = bob.err(f"{IFACE}.GetUsage", {"id": key_id})
    assert err == DENIED and params == {"reason": "only an admin or the key's owner may do this"}
    for who in (alice, admin):
        assert brief(who.ok(f"{IFACE}.GetUsage", {"id": key_id})["uses"]) == \
            [("VALID", "sshd", "192.0.2.5", None)]
    # A key acting for bob reads bob's keys only.
    b = bob.create("bobs", role="readonly")
    err, params = d.client().err(f"{IFACE}.GetUsage", {"id": key_id, "auth": b["token"]})
    assert err == DENIED and params["reason"] == "only an admin or the key's owner may do this"


def test_deleting_a_key_deletes_its_history(daemon):
    d = daemon(config=FLUSH)
    c = d.client()
    r = c.create("gone", owner="alice")
    key_id = r["key"]["id"]
    for rhost in ("192.0.2.1", "192.0.2.2"):
        assert c.verify(r["token"], rhost=rhost)["code"] == "VALID"
    assert written(d, key_id, 2) == 2
    c.ok(f"{IFACE}.Delete", {"id": key_id})
    assert written(d, key_id, 1, timeout=0) == 0
    dump = subprocess.run(["mdb_dump", "-n", "-s", "usage", str(d.state_dir / "keys.mdb")],
                          capture_output=True, text=True).stdout
    assert key_id.encode().hex() not in dump, "its sources are left behind"


def test_first_use_from_a_new_source_is_a_journal_event(journal, daemon):  # noqa: F811
    ids = message_ids()
    d = daemon(config=FLUSH)
    c = d.client()
    r = c.create("laptop", owner="alice", scope=["sshd", "billing"])
    token, key_id = r["token"], r["key"]["id"]
    calls = [dict(service="sshd", rhost="192.0.2.1", tty="pts/0"),
             dict(service="sshd", rhost="192.0.2.1"),            # known
             dict(service="sshd", rhost="198.51.100.7"),         # new
             dict(service="billing"),                            # local: the service
             dict(service="billing"),                            # known
             dict(service="sudo", rhost="203.0.113.5")]          # refused: not a source
    for call in calls:
        c.verify(token, **call)
    assert written(d, key_id, len(calls)) == len(calls)
    time.sleep(0.3)
    entries, _ = journal()
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "apikeyd"
            and e.get("APIKEY_EVENT") == "new_source" and e.get("APIKEY_ID") == key_id]
    got = [(e.get("APIKEY_SERVICE"), e.get("APIKEY_RHOST"), e["APIKEY_SOURCES_KNOWN"])
           for e in ours]
    assert got == [("sshd", "192.0.2.1", "0"), ("sshd", "198.51.100.7", "1"),
                   ("billing", None, "2")], [e.get("MESSAGE") for e in ours]
    first = ours[0]
    assert first["MESSAGE_ID"] == ids["KEY_NEW_SOURCE"]
    assert first["APIKEY_OWNER"] == "alice" and first["APIKEY_NAME"] == "laptop"
    assert first["APIKEY_TTY"] == "pts/0" and first["PRIORITY"] == "5"
    assert first["MESSAGE"] == (f"key {key_id} (laptop of alice) used from a new source: "
                                "rhost 192.0.2.1, service sshd")
    assert ours[2]["MESSAGE"].endswith("used from a new source: local service billing")
    # And in the audit log, as the key's own events.
    events = c.ok(f"{IFACE}.ListAudit", {"key_id": key_id})["events"]
    new = [(e["action"], e.get("detail")) for e in events if e["action"] == "new-source"]
    assert new == [("new-source", "rhost 192.0.2.1, service sshd"),
                   ("new-source", "rhost 198.51.100.7, service sshd"),
                   ("new-source", "local service billing")], events
    # Known sources survive a restart: no event again.
    d.restart()
    c = d.client()
    assert c.verify(token, service="sshd", rhost="198.51.100.7")["code"] == "VALID"
    assert written(d, key_id, len(calls) + 1) == len(calls) + 1
    time.sleep(0.3)
    entries, _ = journal()
    again = [e for e in entries if e.get("APIKEY_EVENT") == "new_source"
             and e.get("APIKEY_ID") == key_id]
    assert len(again) == 3, [e.get("MESSAGE") for e in again]


def test_apikeyctl_usage_table_and_json(daemon, test_users):
    d = daemon(config=FLUSH)
    ctl = Ctl(d.socket)
    c = d.client()
    r = c.create("laptop", owner="akt-alice", scope=["sshd"])
    token, key_id = r["token"], r["key"]["id"]
    assert c.verify(token, service="sshd", rhost="192.0.2.1", tty="ssh")["code"] == "VALID"
    assert c.verify(token, service="sudo", tty="pts/1")["code"] == "OUT_OF_SCOPE"

    out = ctl.ok("usage", "laptop").out.splitlines()
    assert out[0].split() == ["TIME", "CODE", "SERVICE", "FROM", "TTY"], out
    assert [line.split()[4:] for line in out[1:]] == [
        ["OUT_OF_SCOPE", "sudo", "local", "pts/1"],
        ["VALID", "sshd", "192.0.2.1", "ssh"]], out
    uses = ctl.json("usage", key_id)
    assert [(u["code"], u.get("rhost")) for u in uses] == [("OUT_OF_SCOPE", None),
                                                          ("VALID", "192.0.2.1")]
    assert set(uses[1]) == {"time", "code", "service", "rhost", "tty"}
    # The owner reads it, another user is refused with the daemon's reason.
    assert len(ctl.as_user("akt-alice").json("usage", key_id)) == 2
    r = ctl.as_user("akt-bob")("usage", key_id, rc=EXIT_REFUSED)
    assert r.err == ("apikeyctl: permission denied: only an admin or the key's owner may do "
                     "this [io.apikeyd.Keys.PermissionDenied]\n"), r
    r = ctl("usage", "AAAAAAAAAAAA", rc=EXIT_REFUSED)
    assert r.err.startswith("apikeyctl: no such key AAAAAAAAAAAA ")
