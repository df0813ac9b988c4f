# SPDX-License-Identifier: MIT
"""Conditions on a key: not_before (NOT_YET_VALID) and sources
(SOURCE_DENIED) through the real daemon, the CLI and the PAM stack, and how
they narrow under the authority rules."""

import json
import os
import re
import subprocess
import time

import pytest

from conftest import IFACE, check_key, parse_iso
from pam_fixtures import syslog  # noqa: F401 - a fixture

INVALID = "org.varlink.service.InvalidParameter"
# A start that is always ahead, and less than a year away.
NEXT_YEAR = time.gmtime().tm_year + 1
DENIED = f"{IFACE}.PermissionDenied"


def code(client, token, **params):
    return client.verify(token, **params)["code"]


# ---------------------------------------------------------------- not_before


def test_not_before_refuses_until_it_comes(root):
    r = root.create("later", not_before="2s")
    start = parse_iso(r["key"]["not_before"])
    assert time.time() < start <= time.time() + 3
    check_key(r["key"])
    assert code(root, r["token"]) == "NOT_YET_VALID"
    v = root.verify(r["token"])
    assert v["valid"] is False and "key" not in v
    time.sleep(max(0.0, start - time.time()) + 0.2)
    assert code(root, r["token"]) == "VALID"


def test_not_before_as_a_time_or_a_date_is_shown_and_cleared_by_now(root):
    at = root.create("at", not_before=f"{NEXT_YEAR}-01-01T09:00:00Z")
    assert at["key"]["not_before"] == f"{NEXT_YEAR}-01-01T09:00:00Z"
    # A bare date is the first instant of that day (as an expiry, its last).
    day = root.create("day", not_before=f"{NEXT_YEAR}-01-01")
    assert day["key"]["not_before"] == f"{NEXT_YEAR}-01-01T00:00:00Z"
    assert root.get(at["key"]["id"])["not_before"] == f"{NEXT_YEAR}-01-01T09:00:00Z"
    listed = {k["id"]: k for k in root.list()["keys"]}
    assert listed[day["key"]["id"]]["not_before"] == f"{NEXT_YEAR}-01-01T00:00:00Z"
    assert code(root, at["token"]) == "NOT_YET_VALID"
    # "now": no start any more.
    k = root.ok(f"{IFACE}.Update", {"id": at["key"]["id"], "not_before": "now"})["key"]
    assert "not_before" not in k
    assert code(root, at["token"]) == "VALID"
    # A key without one has none.
    assert "not_before" not in root.create("plain")["key"]


@pytest.mark.parametrize("value,words", [
    ("2020-01-01T00:00:00Z", "it is not in the future"),
    ("never", "it is not a duration, a date, a time or \"now\""),
    ("soon", "it is not a duration, a date, a time or \"now\""),
])
def test_not_before_refusals_say_why(root, value, words):
    err, params = root.err(f"{IFACE}.Create", {"name": "k", "not_before": value})
    assert err == INVALID and params["parameter"] == "not_before"
    assert params["reason"].startswith(words), params


def test_not_before_must_come_before_the_expiry(root):
    err, params = root.err(f"{IFACE}.Create", {"name": "k", "not_before": "2d",
                                                 "expires": "1d"})
    assert (err, params["parameter"]) == (INVALID, "not_before")
    assert params["reason"].startswith("it is not before the key's expiry; not_before is"), params


def test_status_comes_before_not_before_and_not_before_before_the_rest(root):
    """REVOKED, EXPIRED, DISABLED first; then when and where the key may be
    used at all; then what it is used for (user, scope, permissions)."""
    r = root.create("future", owner="akt-alice", scope=["sshd"], not_before="1h")
    assert code(root, r["token"], user="akt-bob", service="sudo") == "NOT_YET_VALID"
    root.ok(f"{IFACE}.Disable", {"id": r["key"]["id"]})
    assert code(root, r["token"]) == "DISABLED"
    root.ok(f"{IFACE}.Revoke", {"id": r["key"]["id"]})
    assert code(root, r["token"]) == "REVOKED"
    s = root.create("where", owner="akt-alice", scope=["sshd"], sources=["192.0.2.7"],
                    not_before="1h")
    assert code(root, s["token"], rhost="198.51.100.1") == "NOT_YET_VALID"
    root.ok(f"{IFACE}.Update", {"id": s["key"]["id"], "not_before": "now"})
    assert code(root, s["token"], rhost="198.51.100.1", user="akt-bob") == "SOURCE_DENIED"
    assert code(root, s["token"], rhost="192.0.2.7", user="akt-bob") == "WRONG_USER"


# ---------------------------------------------------------------- sources


@pytest.mark.parametrize("sources,accepted,refused", [
    # IPv4 block: its addresses, and nothing next to it.
    (["10.0.0.0/8"], ["10.0.0.1", "10.255.255.255"], ["11.0.0.1", "9.255.255.255"]),
    # IPv6 block.
    (["2001:db8::/32"], ["2001:db8::1", "2001:db8:ffff::7"], ["2001:db9::1", "2001:db7::1"]),
    # An IPv4-mapped IPv6 rhost is its IPv4 address.
    (["10.0.0.0/8"], ["::ffff:10.1.2.3", "::FFFF:10.9.9.9"], ["::ffff:11.1.2.3", "::10.1.2.3"]),
    # An exact address is that address alone, never its subnet (CVE-2020-24359).
    (["192.0.2.7"], ["192.0.2.7", "::ffff:192.0.2.7"],
     ["192.0.2.8", "192.0.2.6", "192.0.2.0", "192.0.2.255"]),
    (["2001:db8::7"], ["2001:db8::7", "2001:DB8:0::7"], ["2001:db8::8", "2001:db8::"]),
    # A /32 is one address too; a mixed list lets in what any entry does.
    (["192.0.2.7/32", "2001:db8::/32"], ["192.0.2.7", "2001:db8::5"], ["192.0.2.8", "::1"]),
    # Host names: an equal name, ASCII case ignored; never resolved.
    (["build.example.com"], ["build.example.com", "BUILD.Example.COM"],
     ["evil.example.com", "build.example.com.evil", "example.com"]),
    (["localhost"], ["localhost"], ["127.0.0.1", "::1"]),
    # An address entry lets in no name, whatever it resolves to.
    (["127.0.0.0/8"], ["127.0.0.1"], ["localhost"]),
])
def test_sources_accept_and_refuse(root, sources, accepted, refused):
    r = root.create("k", sources=sources)
    assert check_key(r["key"])["sources"] == sources
    for rhost in accepted:
        assert code(root, r["token"], rhost=rhost) == "VALID", rhost
    for rhost in refused:
        v = root.verify(r["token"], rhost=rhost)
        assert (v["valid"], v["code"]) == (False, "SOURCE_DENIED"), rhost
        assert "key" not in v


def test_a_key_with_sources_needs_an_rhost_that_is_a_host(root):
    r = root.create("k", sources=["0.0.0.0/0", "::/0"])
    assert code(root, r["token"], rhost="203.0.113.9") == "VALID"
    assert code(root, r["token"], rhost="2001:db8::1") == "VALID"
    # No rhost, an empty one, or one that is neither an address nor a name.
    assert code(root, r["token"]) == "SOURCE_DENIED"
    for rhost in ("", "not a host", "fe80::1%eth0", "[2001:db8::1]", "10.0.0.256"):
        assert code(root, r["token"], rhost=rhost) == "SOURCE_DENIED", rhost
    # A key without sources needs none.
    assert code(root, root.create("anywhere")["token"]) == "VALID"
    assert "sources" not in root.create("plain")["key"]


def test_source_denied_is_audited_with_the_rhost(root):
    r = root.create("k", sources=["192.0.2.0/24"])
    assert code(root, r["token"], rhost="198.51.100.9", service="sshd") == "SOURCE_DENIED"
    events = root.ok(f"{IFACE}.ListAudit", {"key_id": r["key"]["id"]})["events"]
    assert events[-1]["result"] == "SOURCE_DENIED"
    assert "rhost=198.51.100.9" in events[-1]["detail"]


@pytest.mark.parametrize("entry,words", [
    ("10.1.2.3/8", "entry 1 (10.1.2.3/8): its host bits are set (the block is 10.0.0.0/8; an "
                   "address alone is written without a prefix length)"),
    ("2001:db8::1/32", "entry 1 (2001:db8::1/32): its host bits are set (the block is "
                       "2001:db8::/32"),
    ("10.0.0.0/33", "entry 1 (10.0.0.0/33): its prefix length is not a number from 0 to 32"),
    ("2001:db8::/129", "its prefix length is not a number from 0 to 128"),
    ("10.0.0.0/08", "its prefix length is not a number from 0 to 32"),
    ("10.0.0.0/", "its prefix length is not a number from 0 to 32"),
    ("::ffff:10.0.0.1", "it is an IPv4-mapped IPv6 address: write the IPv4 address"),
    ("10.0.0.256", "it is not an IPv4 or IPv6 address, a CIDR block or a host name"),
    ("010.0.0.1", "it is not an IPv4 or IPv6 address, a CIDR block or a host name"),
    ("-bad.example", "it is not an IPv4 or IPv6 address, a CIDR block or a host name"),
    ("a..b", "it is not an IPv4 or IPv6 address, a CIDR block or a host name"),
    ("host_name", "it is not an IPv4 or IPv6 address, a CIDR block or a host name"),
    ("example.com/24", "it is not a CIDR block"),
    ("", "entry 1: it is empty"),
])
def test_sources_syntax_refusals_say_why(root, entry, words):
    err, params = root.err(f"{IFACE}.Create", {"name": "k", "sources": [entry]})
    assert (err, params["parameter"]) == (INVALID, "sources"), params
    reason = params["reason"]
    assert reason.startswith(f"entry 1 ({entry}): " if entry else "entry 1: "), reason
    assert words in reason, reason
    assert "; sources are at most 32 entries, each an IPv4 or IPv6 address" in reason


def test_sources_twice_and_too_many_are_refused(root):
    err, params = root.err(f"{IFACE}.Create", {"name": "k", "sources": [
        "192.0.2.7", "Build.example.com", "build.EXAMPLE.com"]})
    assert params["reason"].startswith("entry 3 (build.EXAMPLE.com): it is given twice"), params
    err, params = root.err(f"{IFACE}.Create", {"name": "k", "sources": [
        "2001:db8::1", "2001:DB8:0::1"]})
    assert params["reason"].startswith("entry 2 (2001:DB8:0::1): it is given twice"), params
    many = [f"192.0.2.{i}" for i in range(33)]
    err, params = root.err(f"{IFACE}.Create", {"name": "k", "sources": many})
    assert (err, params["parameter"]) == (INVALID, "sources")
    assert params["reason"].startswith("it has 33 entries; sources are at most 32"), params
    assert root.create("k32", sources=many[:32])["key"]["sources"] == many[:32]


def test_update_sets_and_clears_sources(root):
    r = root.create("k")
    k = root.ok(f"{IFACE}.Update", {"id": r["key"]["id"], "sources": ["192.0.2.0/24"]})["key"]
    assert k["sources"] == ["192.0.2.0/24"]
    assert code(root, r["token"], rhost="198.51.100.1") == "SOURCE_DENIED"
    assert code(root, r["token"], rhost="192.0.2.77") == "VALID"
    k = root.ok(f"{IFACE}.Update", {"id": r["key"]["id"], "sources": []})["key"]
    assert "sources" not in k
    assert code(root, r["token"], rhost="198.51.100.1") == "VALID"
    events = root.ok(f"{IFACE}.ListAudit", {"key_id": r["key"]["id"]})["events"]
    assert [e["detail"] for e in events if e["action"] == "update"] == [
        "sources: any -> 192.0.2.0/24", "sources: 192.0.2.0/24 -> any"]


# ---------------------------------------------------------------- authority only narrows


def denied(result):
    err, params = result
    assert err == DENIED, (err, params)
    assert set(params) == {"reason"}, params
    return params["reason"]


@pytest.fixture
def setup(daemon, as_user):
    d = daemon()

    class Setup:
        daemon = d
        root = d.client()
        alice = as_user("akt-alice", socket=d.socket)
        admin = as_user("akt-admin", socket=d.socket)

    return Setup


def test_a_user_narrows_the_conditions_an_admin_set_and_never_loosens_them(setup):
    s = setup
    r = s.admin.create("laptop", owner="akt-alice", sources=["192.0.2.0/24"], not_before="1h")
    key_id = r["key"]["id"]
    update = f"{IFACE}.Update"
    for params, words in [
        ({"sources": ["0.0.0.0/0"]}, "its sources may be narrowed (every entry within one it "
                                     "has), never widened or removed"),
        ({"sources": []}, "its sources may be narrowed"),
        ({"sources": ["192.0.2.0/23"]}, "its sources may be narrowed"),
        ({"not_before": "now"}, "its not_before may move later, never earlier"),
        ({"not_before": "30m"}, "its not_before may move later, never earlier"),
    ]:
        reason = denied(s.alice.err(update, {"id": key_id, **params}))
        assert reason.startswith("only an admin may loosen a key's conditions: " + words), reason
    assert s.root.get(key_id)["sources"] == ["192.0.2.0/24"]
    # Narrower, later: hers to choose.
    k = s.alice.ok(update, {"id": key_id, "sources": ["192.0.2.0/25", "192.0.2.200"],
                            "not_before": "2h"})["key"]
    assert k["sources"] == ["192.0.2.0/25", "192.0.2.200"]
    assert parse_iso(k["not_before"]) > time.time() + 3600
    # An admin loosens them.
    k = s.admin.ok(update, {"id": key_id, "sources": [], "not_before": "now"})["key"]
    assert "sources" not in k and "not_before" not in k
    assert code(s.root, r["token"], rhost="198.51.100.1") == "VALID"
    # Her own key without conditions: she adds them as she likes.
    own = s.alice.create("own")
    k = s.alice.ok(update, {"id": own["key"]["id"], "sources": ["10.0.0.0/8"]})["key"]
    assert k["sources"] == ["10.0.0.0/8"]


def test_a_key_with_conditions_cannot_act_in_auth(setup):
    s = setup
    where = s.root.create("where", owner="akt-alice", role="admin", sources=["192.0.2.7"])
    reason = denied(s.alice.err(f"{IFACE}.List", {"auth": where["token"]}))
    assert reason == ("the API key given in auth may be used only from its sources, and a call "
                      "over the local socket comes from no host")
    later = s.root.create("later", owner="akt-alice", role="admin", not_before="1h")
    reason = denied(s.alice.err(f"{IFACE}.List", {"auth": later["token"]}))
    assert reason == "the API key given in auth is not valid yet (not_before)"
    # Without them, the same key acts; a key it creates may be given conditions.
    s.root.ok(f"{IFACE}.Update", {"id": where["key"]["id"], "sources": []})
    child = s.alice.ok(f"{IFACE}.Create", {"name": "child", "auth": where["token"],
                                           "sources": ["10.0.0.0/8"], "not_before": "1h"})
    assert child["key"]["sources"] == ["10.0.0.0/8"]
    assert child["key"]["parent"] == where["key"]["id"]


# ---------------------------------------------------------------- apikeyctl


def test_apikeyctl_sets_and_shows_conditions(apikeyd):
    from test_apikeyctl import EXIT_OK, EXIT_USAGE, run_ctl
    sock = apikeyd.socket
    r = run_ctl("create", "ci", "--sources", "10.0.0.0/8, 2001:db8::/32,build.example.com",
                "--not-before", f"{NEXT_YEAR}-01-01T09:00:00Z", "--json", socket=sock, rc=EXIT_OK)
    key = json.loads(r.out)["key"]
    assert key["sources"] == ["10.0.0.0/8", "2001:db8::/32", "build.example.com"]
    assert key["not_before"] == f"{NEXT_YEAR}-01-01T09:00:00Z"
    shown = run_ctl("show", "ci", socket=sock, rc=EXIT_OK).out
    assert "    Sources: 10.0.0.0/8, 2001:db8::/32, build.example.com\n" in shown
    # In local time, as every time `show` prints.
    assert re.search(r"\n Not before: \w{3} \d{4}-\d\d-\d\d \d\d:\d\d:00 \S+ \(in [^)]+\)\n", shown)
    run_ctl("create", "plain", socket=sock, rc=EXIT_OK)
    plain = run_ctl("show", "plain", socket=sock, rc=EXIT_OK).out
    assert "Sources" not in plain and "Not before" not in plain
    run_ctl("update", "ci", "--sources", "", "--not-before", "now", socket=sock, rc=EXIT_OK)
    key = json.loads(run_ctl("show", "ci", "--json", socket=sock, rc=EXIT_OK).out)
    assert "sources" not in key and "not_before" not in key
    # A bad entry is named by the daemon, as the option it came from.
    r = run_ctl("create", "bad", "--sources", "10.1.2.3/8", socket=sock)
    assert r.rc != EXIT_OK
    assert "--sources" in r.err and "its host bits are set (the block is 10.0.0.0/8" in r.err, r
    r = run_ctl("create", "bad", "--not-before", "yesterday", socket=sock, rc=EXIT_USAGE)
    assert "--not-before 'yesterday' is not a duration" in r.err, r


# ---------------------------------------------------------------- through the PAM stack


def test_source_denied_through_pam_names_the_code(tmp_path, daemon, syslog):
    from pam_fixtures import (DEFAULT_BUILD, PAM_AUTH_ERR, PAM_SUCCESS, PamDir, failure_line,
                              key_id_of, trust_me)
    d = daemon()
    admin = d.client()
    pam = PamDir(tmp_path / "pam.d", DEFAULT_BUILD.check())
    svc = pam.probe("login", f"socket={d.socket} nodelay {trust_me()}".rstrip())
    r = admin.create("laptop", owner="alice", sources=["192.0.2.0/24"])
    token = r["token"]
    ok = pam.run(svc, "alice", [token], rhost="192.0.2.10", tty="pts/3")
    assert ok.code == PAM_SUCCESS, ok
    # Another host, no host, and a name where only addresses are listed.
    for rhost in ("198.51.100.7", None, "gw.example.com"):
        res = pam.run(svc, "alice", [token], rhost=rhost, tty="pts/3")
        assert res.code == PAM_AUTH_ERR, (rhost, res)
        syslog.wait_for(failure_line(svc, "alice", key_id_of(token), "SOURCE_DENIED",
                                     tty="pts/3", rhost=rhost or "", uid=os.getuid(),
                                     euid=os.geteuid()))
    later = admin.create("later", owner="alice", not_before="1h")["token"]
    assert pam.run(svc, "alice", [later], rhost="192.0.2.10").code == PAM_AUTH_ERR
    syslog.wait_for(failure_line(svc, "alice", key_id_of(later), "NOT_YET_VALID",
                                 rhost="192.0.2.10", uid=os.getuid(), euid=os.geteuid()))
