# SPDX-License-Identifier: MIT
"""A key's limits, against the real daemon: max_uses (every VALID verify
spends one use, written before VALID is answered, so that racing clients
and kill -9 cannot use a key more often than it allows) and rate_limit
(VALID verifies per window, in memory), at Create and Update, with their
refusals."""

import json
import threading
import time

import pytest

from conftest import ALICE, IFACE
from fleet_fixtures import etcd_cluster, fleet, wait_for  # noqa: F401 - fixtures
from pam_fixtures import DEFAULT_BUILD, PAM_AUTH_ERR, PAM_MAXTRIES, PAM_SUCCESS, PamDir, trust_me
from test_apikeyctl import EXIT_REFUSED, run_ctl


@pytest.fixture
def default_pam(tmp_path):
    return PamDir(tmp_path / "pam.d", DEFAULT_BUILD.check())


def code(d, token):
    with d.client() as c:
        return c.verify(token)["code"]


def test_a_one_use_key_is_valid_once_then_usage_exceeded(apikeyd):
    c = apikeyd.client()
    r = c.create("once", max_uses=1)
    assert r["key"]["max_uses"] == 1 and r["key"]["uses_left"] == 1
    first = c.verify(r["token"], service="deploy")
    assert (first["valid"], first["code"]) == (True, "VALID")
    assert first["key"]["uses_left"] == 0
    again = c.verify(r["token"], service="deploy")
    assert (again["valid"], again["code"]) == (False, "USAGE_EXCEEDED")
    assert "key" not in again
    assert c.get(r["key"]["id"])["uses_left"] == 0
    # A key without limits shows none.
    plain = c.create("plain")
    for k in (plain["key"], c.verify(plain["token"])["key"], c.get(plain["key"]["id"])):
        assert not {"max_uses", "uses_left", "rate_limit"} & set(k), k


def test_eight_concurrent_verifies_of_a_one_use_key_give_one_valid(apikeyd):
    c = apikeyd.client()
    token = c.create("race", max_uses=1)["token"]
    clients = [apikeyd.client() for _ in range(8)]
    barrier = threading.Barrier(len(clients))
    codes = [None] * len(clients)

    def verify(i):
        barrier.wait()
        codes[i] = clients[i].verify(token, service="deploy")["code"]

    threads = [threading.Thread(target=verify, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(codes) == ["USAGE_EXCEEDED"] * 7 + ["VALID"], codes


def test_uses_left_survive_kill_9(daemon):
    d = daemon()
    c = d.client()
    r = c.create("thrice", max_uses=3)
    for _ in range(2):
        assert c.verify(r["token"])["code"] == "VALID"
    d.kill()
    d.start()
    c = d.client()
    assert c.get(r["key"]["id"])["uses_left"] == 1
    assert c.verify(r["token"])["code"] == "VALID"
    assert c.verify(r["token"])["code"] == "USAGE_EXCEEDED"
    d.kill()
    d.start()
    assert d.client().verify(r["token"])["code"] == "USAGE_EXCEEDED"


def test_update_changes_max_uses_and_keeps_the_uses_spent(apikeyd):
    c = apikeyd.client()
    r = c.create("metered", max_uses=2)
    key_id = r["key"]["id"]
    assert c.verify(r["token"])["code"] == "VALID"
    k = c.ok(f"{IFACE}.Update", {"id": key_id, "max_uses": 5})["key"]
    assert (k["max_uses"], k["uses_left"]) == (5, 4)
    k = c.ok(f"{IFACE}.Update", {"id": key_id, "max_uses": 1})["key"]
    assert (k["max_uses"], k["uses_left"]) == (1, 0)
    assert c.verify(r["token"])["code"] == "USAGE_EXCEEDED"
    # 0 takes the limit away.
    k = c.ok(f"{IFACE}.Update", {"id": key_id, "max_uses": 0})["key"]
    assert "max_uses" not in k and "uses_left" not in k
    assert c.verify(r["token"])["code"] == "VALID"
    events = [e for e in c.ok(f"{IFACE}.ListAudit", {"key_id": key_id})["events"]
              if e["action"] == "update"]
    assert [e["detail"] for e in events] == ["max_uses: 2 -> 5", "max_uses: 5 -> 1",
                                             "max_uses: 1 -> none"]


def test_bad_limits_are_refused_with_their_rule(apikeyd):
    c = apikeyd.client()
    err, p = c.err(f"{IFACE}.Create", {"name": "k", "max_uses": -1})
    assert (err, p["parameter"]) == ("org.varlink.service.InvalidParameter", "max_uses")
    assert "it is negative" in p["reason"]
    for bad in ("100", "0/1m", "ten/1m", "5/0s", "5/1y", "/1m", "5/"):
        err, p = c.err(f"{IFACE}.Create", {"name": "k", "rate_limit": bad})
        assert (err, p["parameter"]) == ("org.varlink.service.InvalidParameter",
                                         "rate_limit"), bad
        assert "rate_limit is the VALID verifies a window may have, as 100/1m" in p["reason"]
    assert c.list()["keys"] == []


def test_rate_limit_refuses_beyond_its_count_until_the_window_frees(daemon):
    # A low lockout threshold: the refusals must not count as failed guesses.
    d = daemon(config={"lockout_threshold": 2})
    c = d.client()
    r = c.create("burst", rate_limit="3/2s")
    assert r["key"]["rate_limit"] == "3/2s"
    other = c.create("other")
    codes = [c.verify(r["token"])["code"] for _ in range(6)]
    assert codes == ["VALID"] * 3 + ["RATE_LIMITED"] * 3
    refused = c.verify(r["token"])
    assert (refused["valid"], "key" in refused) == (False, False)
    # Another key is not affected.
    assert c.verify(other["token"])["code"] == "VALID"
    time.sleep(2.1)
    assert [c.verify(r["token"])["code"] for _ in range(4)] == ["VALID"] * 3 + ["RATE_LIMITED"]
    assert "verify refused: RATE_LIMITED; key=" + r["key"]["id"] in d.log()
    assert c.ok(f"{IFACE}.ListLockouts", {})["lockouts"] == []


def test_rate_limit_is_changed_and_removed_by_update(apikeyd):
    c = apikeyd.client()
    r = c.create("burst", rate_limit="1/1h")
    key_id = r["key"]["id"]
    assert [c.verify(r["token"])["code"] for _ in range(2)] == ["VALID", "RATE_LIMITED"]
    k = c.ok(f"{IFACE}.Update", {"id": key_id, "rate_limit": "none"})["key"]
    assert "rate_limit" not in k
    assert [c.verify(r["token"])["code"] for _ in range(3)] == ["VALID"] * 3
    k = c.ok(f"{IFACE}.Update", {"id": key_id, "rate_limit": "100/1m"})["key"]
    assert k["rate_limit"] == "100/1m"


def test_a_restart_resets_the_rate_windows(daemon):
    d = daemon()
    c = d.client()
    r = c.create("burst", rate_limit="1/1h")
    assert [c.verify(r["token"])["code"] for _ in range(2)] == ["VALID", "RATE_LIMITED"]
    d.restart()
    assert d.client().verify(r["token"])["code"] == "VALID"


def test_a_user_cannot_loosen_the_limits_an_admin_set(apikeyd, as_user):
    # An admin gives alice a key for 5 uses, 10 verifies a minute.
    root = apikeyd.client()
    k = root.create("metered", owner=ALICE, max_uses=5, rate_limit="10/1m")["key"]
    alice = as_user(ALICE, socket=apikeyd.socket)
    uses = ("only an admin may loosen a key's limits: its max_uses may be lowered, never "
            "raised or removed")
    rate = ("only an admin may loosen a key's limits: its rate_limit may be made stricter (no "
            "more verifies, in a window no shorter), never looser or removed")
    for change, reason in (({"max_uses": 6}, uses), ({"max_uses": 0}, uses),
                           ({"rate_limit": "none"}, rate), ({"rate_limit": "11/1m"}, rate),
                           ({"rate_limit": "10/30s"}, rate)):
        err, params = alice.err(f"{IFACE}.Update", {"id": k["id"], **change})
        assert (err, params) == (f"{IFACE}.PermissionDenied", {"reason": reason}), change
    assert root.get(k["id"]) == k
    # Tightening them is hers to do; loosening them again is the admin's.
    k2 = alice.ok(f"{IFACE}.Update", {"id": k["id"], "max_uses": 3, "rate_limit": "5/1m"})["key"]
    assert (k2["max_uses"], k2["rate_limit"]) == (3, "5/1m")
    k3 = root.ok(f"{IFACE}.Update", {"id": k["id"], "max_uses": 0, "rate_limit": "none"})["key"]
    assert not {"max_uses", "rate_limit"} & set(k3), k3


def test_a_key_acting_in_auth_passes_on_its_rate_limit_and_no_wider(apikeyd):
    c = apikeyd.client()
    acting = c.create("script", permissions=["create", "read", "write"], rate_limit="10/1m")
    auth = acting["token"]
    # Left unsaid, the new key gets the acting key's rate limit.
    k = c.ok(f"{IFACE}.Create", {"name": "child", "auth": auth})["key"]
    assert k["rate_limit"] == "10/1m"
    assert c.ok(f"{IFACE}.Create", {"name": "slower", "rate_limit": "5/1h",
                                    "auth": auth})["key"]["rate_limit"] == "5/1h"
    for wider in ("11/1m", "10/30s", "none"):
        err, p = c.err(f"{IFACE}.Create", {"name": "wider", "rate_limit": wider, "auth": auth})
        assert err == f"{IFACE}.PermissionDenied", wider
        assert p["reason"] == ("a key's rate_limit must be at least as strict as that of the "
                               "API key given in auth: no more verifies, in a window no "
                               "shorter"), wider
        err, p = c.err(f"{IFACE}.Update", {"id": k["id"], "rate_limit": wider, "auth": auth})
        assert err == f"{IFACE}.PermissionDenied", wider
    assert c.get(k["id"])["rate_limit"] == "10/1m"


def test_a_key_with_max_uses_cannot_act_in_auth(apikeyd):
    c = apikeyd.client()
    metered = c.create("metered", role="admin", max_uses=5)
    err, p = c.err(f"{IFACE}.List", {"auth": metered["token"]})
    assert err == f"{IFACE}.PermissionDenied"
    assert p["reason"] == "the API key given in auth has max_uses; such a key cannot manage keys"
    assert c.get(metered["key"]["id"])["uses_left"] == 5


def test_fleet_mode_refuses_max_uses_and_retirement_by_use_and_keeps_rate_limits(fleet):
    manager, hosts = fleet(1, host_config={"lockout_threshold": "0"})
    with manager.client() as c:
        err, p = c.err(f"{IFACE}.Create", {"name": "once", "owner": "root", "max_uses": 1})
        assert err == f"{IFACE}.PolicyViolation"
        assert p["reason"] == ("max_uses is not available in fleet mode: each host verifies on "
                               "its own replica, and a use spent on one would not be counted "
                               "on the others")
        r = c.create("burst", owner="root", rate_limit="2/1h")
        err, p = c.err(f"{IFACE}.Update", {"id": r["key"]["id"], "max_uses": 3})
        assert err == f"{IFACE}.PolicyViolation" and p["reason"].startswith("max_uses is not")
        err, p = c.err(f"{IFACE}.Rotate", {"id": r["key"]["id"], "retire_on_first_use": True})
        assert err == f"{IFACE}.PolicyViolation"
        assert p["reason"].startswith("retire_on_first_use is not available in fleet mode")
    with hosts[0].client() as c:
        assert c.err(f"{IFACE}.Rotate", {"id": r["key"]["id"]})[0] == (
            f"{IFACE}.ManagedCentrally")
    # The rate limit is counted on each host on its own: the first VALID on
    # the host is the one that finds the key there.
    wait_for("the key on the host", lambda: code(hosts[0], r["token"]) == "VALID", 5)
    assert [code(hosts[0], r["token"]) for _ in range(2)] == ["VALID", "RATE_LIMITED"]
    assert [code(manager, r["token"]) for _ in range(3)] == ["VALID", "VALID", "RATE_LIMITED"]


def test_a_one_use_key_logs_in_once_through_pam(default_pam, apikeyd):
    """The real PAM stack: the first login spends the key's one use, the
    next is refused PAM_AUTH_ERR, the user told nothing more, the daemon's
    log naming the code."""
    c = apikeyd.client()
    created = c.create("once", owner="alice", max_uses=1)
    svc = default_pam.probe("login", f"socket={apikeyd.socket} nodelay {trust_me()}".rstrip())
    first = default_pam.run(svc, "alice", [created["token"]], rhost="192.0.2.10")
    assert first.code == PAM_SUCCESS, first
    again = default_pam.run(svc, "alice", [created["token"]], rhost="192.0.2.10")
    assert again.code == PAM_AUTH_ERR, again
    assert again.infos == [] and again.errors == [], again
    assert (f"verify refused: USAGE_EXCEEDED; key={created['key']['id']} user=alice "
            "service=login rhost=192.0.2.10") in apikeyd.log()
    assert c.get(created["key"]["id"])["uses_left"] == 0


def test_apikeyctl_sets_and_shows_limits(apikeyd):
    s = apikeyd.socket
    run_ctl("create", "once", "--max-uses", "1", "--rate-limit", "10/1m", socket=s, rc=0)
    shown = run_ctl("show", "once", socket=s, rc=0).out
    assert "  Uses left: 1 of 1\n" in shown, shown
    assert " Rate limit: 10/1m (VALID verifies a window)\n" in shown, shown
    k = json.loads(run_ctl("--json", "update", "once", "--max-uses", "0", "--rate-limit", "none",
                           socket=s, rc=0).out)
    assert not {"max_uses", "uses_left", "rate_limit"} & set(k), k
    r = run_ctl("update", "once", "--max-uses", "many", socket=s)
    assert r.rc != 0 and "--max-uses must be a whole number (0: no limit), not 'many'" in r.err
    r = run_ctl("create", "x", "--rate-limit", "fast", socket=s, rc=EXIT_REFUSED)
    assert "rate_limit is the VALID verifies a window may have, as 100/1m" in r.err, r


def test_a_rate_limited_key_through_pam_is_maxtries_beyond_its_count(default_pam, apikeyd):
    c = apikeyd.client()
    created = c.create("burst", owner="alice", rate_limit="1/1h")
    svc = default_pam.probe("login", f"socket={apikeyd.socket} nodelay {trust_me()}".rstrip())
    assert default_pam.run(svc, "alice", [created["token"]]).code == PAM_SUCCESS
    again = default_pam.run(svc, "alice", [created["token"]])
    assert again.code == PAM_MAXTRIES, again
    assert (f"verify refused: RATE_LIMITED; key={created['key']['id']} user=alice "
            "service=login") in apikeyd.log()
