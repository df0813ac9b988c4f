"""Expiry that reaches people: `expires_in` in Verify answers, a journal
event when a key comes within each of the expiry_warnings, `apikeyctl
list --expiring` and the counts of `apikeyctl status`, against the real
daemon."""
import time

from conftest import IFACE, parse_iso
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


def warnings_of(entries, key_id=None):
    return [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "apikeyd"
            and e.get("APIKEY_EVENT") == "expiry_warning"
            and (key_id is None or e.get("APIKEY_ID") == key_id)]


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
    time.sleep(2.5)
    entries, _ = journal()
    got = {(e["APIKEY_ID"], e["APIKEY_WARNING"]) for e in warnings_of(entries)}
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
    assert len(warnings_of(entries)) == 4
    assert not warnings_of(entries, far["id"]) and not warnings_of(entries, never["id"])
    assert not warnings_of(entries, off["id"])

    # A restart does not warn again; a new expiry is warned of afresh.
    d.restart()
    c = d.client()
    time.sleep(2.5)
    entries, _ = journal()
    assert len(warnings_of(entries)) == 4, [x["MESSAGE"] for x in warnings_of(entries)]
    c.ok(f"{IFACE}.Update", {"id": week["id"], "expires": "5d"})
    time.sleep(2.5)
    entries, _ = journal()
    assert [x["APIKEY_WARNING"] for x in warnings_of(entries, week["id"])] == ["7d", "7d"]
    assert len(warnings_of(entries)) == 5


def test_no_warnings_when_none_are_configured(journal, daemon):  # noqa: F811
    d = daemon(config={"last_used_flush_interval": "1s", "expiry_warnings": "none"})
    d.client().create("week", owner="alice", expires="3d")
    time.sleep(2.5)
    entries, _ = journal()
    assert warnings_of(entries) == []
