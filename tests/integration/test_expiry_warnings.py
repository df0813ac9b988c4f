"""Expiry that reaches people: `expires_in` in Verify answers, a journal
event when a key comes within each of the expiry_warnings, `apikeyctl
list --expiring` and the counts of `apikeyctl status`, against the real
daemon."""
import time

from conftest import IFACE, parse_iso


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
