"""Expiry that reaches people: `expires_in` in Verify answers, a journal
event when a key comes within each of the expiry_warnings, `apikeyctl
list --expiring` and the counts of `apikeyctl status`, against the real
daemon."""
import time

from conftest import IFACE, parse_iso
from test_apikeyctl import Ctl
from test_journal import journal, message_ids  # noqa: F401 - the fixture, by name


def test_verify_answers_carry_expires_in(apikeyd):
    c = apikeyd.client()
    day = c.create("day", owner="alice", expires="1d")
    never = c.create("never", owner="alice")
    expires_at = parse_iso(day["key"]["expires_at"])
    for brief in (False, True):
        r = c.verify(day["token"], brief=brief)
        assert r["valid"] and r["code"] == "VALID"
        left = expires_at - time.time()
        assert left - 5 <= r["expires_in"] <= left, (r["expires_in"], left)
        assert isinstance(r["expires_in"], int) and 86390 <= r["expires_in"] <= 86400
        r = c.verify(never["token"], brief=brief)
        assert r["valid"] and "expires_in" not in r, r
    # A refusal says nothing of the key.
    c.ok(f"{IFACE}.Disable", {"id": day["key"]["id"]})
    r = c.verify(day["token"])
    assert r["code"] == "DISABLED" and "expires_in" not in r


def warnings_of(entries, key_id):
    """The expiry warnings of a key (or keys: a set), as the journal got them.
    Other daemons on the machine may log meanwhile: by key id only."""
    ids = key_id if isinstance(key_id, set) else {key_id}
    return [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "apikeyd"
            and e.get("APIKEY_EVENT") == "expiry_warning" and e.get("APIKEY_ID") in ids]


def test_a_key_made_beyond_every_warning_is_warned_when_it_comes_within_one(journal, daemon):  # noqa: F811,E501
    """A change to a key beyond every warning reads no other key: the daemon
    looks again when that key comes within one, not ten minutes later."""
    d = daemon(config={"last_used_flush_interval": "1s", "expiry_warnings": "1d"})
    c = d.client()
    time.sleep(1.5)  # the scan at start is done, with no key to wait for
    edge = c.create("edge", owner="alice", expires="1d3s")["key"]
    time.sleep(1.5)
    entries, _ = journal()
    assert not warnings_of(entries, edge["id"])
    time.sleep(4)
    entries, _ = journal()
    assert [x["APIKEY_WARNING"] for x in warnings_of(entries, edge["id"])] == ["1d"]


def test_one_event_per_key_and_warning_even_across_a_restart(journal, daemon):  # noqa: F811
    ids = message_ids()
    d = daemon(config={"last_used_flush_interval": "1s", "expiry_warnings": "1d,7d"})
    c = d.client()
    week = c.create("week", owner="alice", expires="3d")["key"]
    soon = c.create("soon", owner="bob", expires="12h")["key"]      # within both: one event
    edge = c.create("edge", owner="alice", expires="1d4s")["key"]   # 7d now, 1d in 4 s
    far = c.create("far", owner="alice", expires="30d")["key"]
    never = c.create("never", owner="alice")["key"]
    off = c.create("off", owner="alice", expires="2d")["key"]
    c.ok(f"{IFACE}.Disable", {"id": off["id"]})
    ours = {k["id"] for k in (week, soon, edge, far, never, off)}
    time.sleep(2.5)
    entries, _ = journal()
    got = {(e["APIKEY_ID"], e["APIKEY_WARNING"]) for e in warnings_of(entries, ours)}
    assert got == {(week["id"], "7d"), (soon["id"], "1d"), (edge["id"], "7d")}, got
    e = warnings_of(entries, week["id"])[0]
    assert e["MESSAGE_ID"] == ids["KEY_EXPIRING"] and e["PRIORITY"] == "4"
    assert e["APIKEY_OWNER"] == "alice" and e["APIKEY_NAME"] == "week"
    assert e["APIKEY_EXPIRES_AT"] == week["expires_at"]
    assert 3 * 86400 - 10 <= int(e["APIKEY_EXPIRES_IN"]) <= 3 * 86400
    assert e["MESSAGE"] == (f"key {week['id']} (week of alice) expires at {week['expires_at']}, "
                            "within 7d")

    # The edge key comes within a day while the daemon runs: warned of again, once.
    time.sleep(4)
    entries, _ = journal()
    assert [x["APIKEY_WARNING"] for x in warnings_of(entries, edge["id"])] == ["7d", "1d"]
    assert len(warnings_of(entries, ours)) == 4
    assert not warnings_of(entries, far["id"]) and not warnings_of(entries, never["id"])
    assert not warnings_of(entries, off["id"])

    # A restart does not warn again; a new expiry is warned of afresh.
    d.restart()
    c = d.client()
    time.sleep(2.5)
    entries, _ = journal()
    assert len(warnings_of(entries, ours)) == 4, [x["MESSAGE"] for x in warnings_of(entries, ours)]
    c.ok(f"{IFACE}.Update", {"id": week["id"], "expires": "5d"})
    time.sleep(2.5)
    entries, _ = journal()
    assert [x["APIKEY_WARNING"] for x in warnings_of(entries, week["id"])] == ["7d", "7d"]
    assert len(warnings_of(entries, ours)) == 5


def test_no_warnings_when_none_are_configured(journal, daemon):  # noqa: F811
    d = daemon(config={"last_used_flush_interval": "1s", "expiry_warnings": "none"})
    week = d.client().create("week", owner="alice", expires="3d")["key"]
    time.sleep(2.5)
    entries, _ = journal()
    assert warnings_of(entries, week["id"]) == []


def test_list_expiring_and_status_counts(daemon, test_users):
    d = daemon()
    ctl = Ctl(d.socket)
    c = d.client()
    soon = [c.create(f"soon{i}", owner="akt-alice", expires=e)["key"]
            for i, e in enumerate(("3d", "12h"))]
    bobs = c.create("bobs", owner="akt-bob", expires="6d")["key"]
    off = c.create("off", owner="akt-alice", expires="2d")["key"]
    c.ok(f"{IFACE}.Disable", {"id": off["id"]})
    c.create("far", owner="akt-alice", expires="30d")
    c.create("never", owner="akt-alice")

    listed = ctl.json("list", "--expiring", "7d")
    # The disabled key expires within a week too; list shows it, status does not count it.
    assert sorted(k["name"] for k in listed) == ["bobs", "off", "soon0", "soon1"], listed
    assert ctl.ok("list", "-q", "--expiring", "13h").out.split() == [soon[1]["id"]]

    status = c.ok(f"{IFACE}.GetStatus")
    assert status["expiring"] == 3 and "expiry_cliff" not in status, status
    out = ctl.ok("status").out
    assert "   Expiring: 3 within 7 days\n" in out and "Warning" not in out, out
    # A user counts their own.
    alice = ctl.as_user("akt-alice")
    assert alice.json("status")["expiring"] == 2
    assert "   Expiring: 2 within 7 days\n" in alice.ok("status").out
    assert bobs["owner"] == "akt-bob"


def test_status_warns_of_an_expiry_cliff(daemon, test_users):
    d = daemon(config={"expiry_cliff": 3})
    ctl = Ctl(d.socket)
    c = d.client()
    for i in range(4):
        c.create(f"ci{i}", owner="akt-alice", expires="2027-06-30T08:00:00Z")
    for i in range(3):
        c.create(f"cd{i}", owner="akt-bob", expires="2027-05-02T10:00:00Z")
    status = c.ok(f"{IFACE}.GetStatus")
    assert status["expiry_cliff"] == {"day": "2027-06-30", "keys": 4, "threshold": 3}, status
    out = ctl.ok("status").out
    assert ("    Warning: 4 keys expire on 2027-06-30, more than 3 (expiry_cliff): renew them "
            "on different days\n") in out, out
    # Three on a day is not more than three: bob's own keys give no warning.
    assert "expiry_cliff" not in ctl.as_user("akt-bob").json("status")
    # An early cliff is named first.
    for i in range(4):
        c.create(f"early{i}", owner="akt-bob", expires="2027-05-01T23:59:59Z")
    assert c.ok(f"{IFACE}.GetStatus")["expiry_cliff"]["day"] == "2027-05-01"


def test_no_cliff_warning_when_it_is_off(daemon):
    d = daemon(config={"expiry_cliff": 0})
    c = d.client()
    for i in range(12):
        c.create(f"ci{i}", owner="alice", expires="2027-06-30T08:00:00Z")
    assert "expiry_cliff" not in c.ok(f"{IFACE}.GetStatus")
