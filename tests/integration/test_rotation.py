# SPDX-License-Identifier: MIT
"""Rotate, against the real daemon: a successor with every field of the
key, the old key through its grace (or retired by the successor's first
VALID verify, durably), both keys naming each other, and each refusal."""

import json
import signal
import subprocess
import time

import pytest

from conftest import ALICE, APIKEYD, BOB, IFACE, parse_iso
from pam_fixtures import DEFAULT_BUILD, pam  # noqa: F401 - a fixture
from test_apikeyctl import EXIT_REFUSED, complete, run_ctl
from test_sessions import END_WITHIN, USER, sessions, stack  # noqa: F401 - a fixture

POLICY = f"{IFACE}.PolicyViolation"


@pytest.fixture
def build():
    """The module's default build: the sanitizer builds are test_sessions.py's."""
    return DEFAULT_BUILD.check()


def rotate(client, key_id, **params):
    return client.ok(f"{IFACE}.Rotate", {"id": key_id, **params})


def test_the_successor_copies_the_key_and_the_old_one_works_through_its_grace(apikeyd):
    c = apikeyd.client()
    old = c.create("deploy", description="ci", owner="app", permissions=["read", "write"],
                   scope=["sshd", "billing"], expires="30d", max_uses=10, rate_limit="50/1m")
    assert c.verify(old["token"])["code"] == "VALID"
    r = rotate(c, old["key"]["id"], grace="1h")
    new, prev = r["key"], r["previous"]
    assert new["id"] != old["key"]["id"] and r["token"] != old["token"]
    for field in ("name", "description", "owner", "role", "permissions", "scope",
                  "expires_at", "max_uses", "rate_limit"):
        assert new[field] == old["key"][field], field
    assert new["uses_left"] == 9  # the uses spent go with it
    assert (new["replaces"], prev["replaced_by"]) == (old["key"]["id"], new["id"])
    assert "replaced_by" not in new and "replaces" not in prev
    assert prev["name"] == f"deploy (old {old['key']['id']})"
    grace_end = parse_iso(prev["expires_at"])
    assert abs(grace_end - (time.time() + 3600)) < 60
    # Both work through the grace; the name now finds the successor.
    # The Verify answer writes the key as Get does, with every field of both.
    assert c.verify(old["token"])["key"] == c.get(old["key"]["id"])
    assert c.verify(r["token"])["key"] == c.get(new["id"])
    assert c.get(old["key"]["id"])["replaced_by"] == new["id"]
    assert c.get(new["id"])["replaces"] == old["key"]["id"]
    events = [(e["action"], e["key_id"], e["detail"])
              for e in c.ok(f"{IFACE}.ListAudit", {})["events"] if e["action"] == "rotate"]
    assert events == [
        ("rotate", old["key"]["id"], f"replaced by {new['id']}; works until {prev['expires_at']}"),
        ("rotate", new["id"], f"replaces {old['key']['id']}")]
    assert (f"rotate key {old['key']['id']} of app: replaced by {new['id']}; works until "
            f"{prev['expires_at']}") in apikeyd.log()


def test_grace_zero_ends_the_old_key_now_and_never_extends_it(apikeyd):
    c = apikeyd.client()
    old = c.create("deploy")
    r = rotate(c, old["key"]["id"], grace="0")
    assert c.verify(old["token"])["code"] == "EXPIRED"
    assert c.verify(r["token"])["code"] == "VALID"
    # Rotated again in its predecessor's grace: that grace ends, two keys
    # of a rotation work at most.
    again = rotate(c, r["key"]["id"], grace="7d")
    second = rotate(c, again["key"]["id"], grace="7d")
    assert [c.verify(t)["code"] for t in (r["token"], again["token"], second["token"])] == [
        "EXPIRED", "VALID", "VALID"]
    # A grace longer than the key had left: it keeps its expiry.
    soon = c.create("soon", expires="2h")
    r = rotate(c, soon["key"]["id"], grace="7d")
    assert r["previous"]["expires_at"] == soon["key"]["expires_at"]


def test_the_default_grace_comes_from_the_config(daemon):
    d = daemon(config={"rotation_grace": "2s"})
    c = d.client()
    old = c.create("deploy")
    r = rotate(c, old["key"]["id"])
    assert c.verify(old["token"])["code"] == "VALID"
    time.sleep(2.2)
    assert c.verify(old["token"])["code"] == "EXPIRED"
    assert c.verify(r["token"])["code"] == "VALID"


def test_retire_on_first_use_ends_the_old_key_at_the_new_ones_first_valid(daemon):
    d = daemon()
    c = d.client()
    old = c.create("deploy")
    r = rotate(c, old["key"]["id"], grace="7d", retire_on_first_use=True)
    assert r["key"]["retire_on_first_use"] is True
    # Until the successor is used, the old key works.
    assert c.verify(old["token"])["code"] == "VALID"
    assert c.verify(r["token"], service="sshd")["code"] == "VALID"
    refused = c.verify(old["token"])
    assert (refused["valid"], refused["code"]) == (False, "EXPIRED")
    assert "retire_on_first_use" not in c.get(r["key"]["id"])
    assert (f"key {old['key']['id']} retired: its successor {r['key']['id']} was used for "
            f"the first time") in d.log()
    retired = [e for e in c.ok(f"{IFACE}.ListAudit", {"key_id": old["key"]["id"]})["events"]
               if e["action"] == "retire"]
    assert [e["detail"] for e in retired] == [
        f"grace ended by the first use of its successor {r['key']['id']}"]
    # Durable: a kill -9 right after does not bring it back.
    d.kill()
    d.start()
    c = d.client()
    assert c.verify(old["token"])["code"] == "EXPIRED"
    assert c.verify(r["token"])["code"] == "VALID"


def test_a_refused_verify_of_the_successor_does_not_retire(apikeyd):
    c = apikeyd.client()
    old = c.create("deploy", scope=["sshd"])
    r = rotate(c, old["key"]["id"], retire_on_first_use=True)
    assert c.verify(r["token"], service="sudo")["code"] == "OUT_OF_SCOPE"
    assert c.verify(old["token"], service="sshd")["code"] == "VALID"


def test_revoked_expired_disabled_and_rotated_keys_are_refused(apikeyd):
    c = apikeyd.client()
    revoked = c.create("revoked")["key"]["id"]
    c.ok(f"{IFACE}.Revoke", {"id": revoked})
    assert c.err(f"{IFACE}.Rotate", {"id": revoked}) == (f"{IFACE}.KeyRevoked",
                                                         {"id": revoked})
    expired = c.create("expired", expires="1s")["key"]["id"]
    disabled = c.create("disabled")["key"]["id"]
    c.ok(f"{IFACE}.Disable", {"id": disabled})
    rotated = c.create("rotated")["key"]["id"]
    rotate(c, rotated)
    time.sleep(1.1)
    for key_id, reason in (
            (expired, f"key {expired} has expired; an expired key cannot be rotated"),
            (disabled, f"key {disabled} is disabled; enable it before rotating it"),
            (rotated, f"key {rotated} was already rotated; rotate its successor instead")):
        err, p = c.err(f"{IFACE}.Rotate", {"id": key_id})
        assert err == POLICY and p["reason"].startswith(reason), p
    err, p = c.err(f"{IFACE}.Rotate", {"id": disabled, "grace": "soon"})
    assert (err, p["parameter"]) == ("org.varlink.service.InvalidParameter", "grace")
    assert c.err(f"{IFACE}.Rotate", {"id": "AAAAAAAAAAAA"})[0] == f"{IFACE}.NoSuchKey"


def test_an_ordinary_user_rotates_their_own_key_not_anothers(daemon, as_user):
    d = daemon()
    alice = as_user(ALICE, socket=d.socket)
    bob = as_user(BOB, socket=d.socket)
    mine = alice.create("mine")
    r = alice.ok(f"{IFACE}.Rotate", {"id": mine["key"]["id"]})
    assert r["key"]["owner"] == ALICE and r["key"]["name"] == "mine"
    err, p = bob.err(f"{IFACE}.Rotate", {"id": r["key"]["id"]})
    assert err == f"{IFACE}.PermissionDenied"
    assert p["reason"] == "only an admin or the key's owner may do this"
    assert d.client().get(r["key"]["id"]).get("replaced_by") is None


def test_apikeyctl_rotate(apikeyd):
    s = apikeyd.socket
    created = json.loads(run_ctl("--json", "create", "deploy", socket=s, rc=0).out)
    old_id = created["key"]["id"]
    r = run_ctl("rotate", "deploy", "--grace", "7d", "--retire-on-first-use", socket=s, rc=0)
    token = r.out.strip()
    new_id = token.split("_")[1]
    assert r.err.startswith(f"Rotated key {old_id} to {new_id} 'deploy'. The old key works "
                            "until its grace ends in 7 days, or the new key is first used.")
    assert "Store this token now" in r.err
    shown = run_ctl("show", "deploy", socket=s, rc=0).out
    assert f"Replaces: {old_id} (which stops working at this key's first use)" in shown
    listed = run_ctl("list", socket=s, rc=0).out
    assert "rotated, grace ends in 7 days" in listed
    r = run_ctl("--json", "rotate", new_id, "--grace", "0", socket=s, rc=0)
    reply = json.loads(r.out)
    assert reply["previous"]["id"] == new_id and reply["key"]["replaces"] == new_id
    r = run_ctl("rotate", old_id, socket=s, rc=EXIT_REFUSED)
    assert f"key {old_id} was already rotated; rotate its successor instead" in r.err
    r = run_ctl("rotate", "deploy", "--grace", "soon", socket=s)
    assert "--grace 'soon' is not a duration" in r.err


def test_the_old_keys_session_ends_when_its_successor_retires_it(pam, apikeyd, sessions):
    """A login opened with the old key (pam_apikey's session hook, the real
    PAM stack) lives through the grace and ends once the successor's first
    VALID verify has ended it."""
    c = apikeyd.client()
    old = c.create("laptop", owner=USER)
    s = sessions(pam, stack(pam, apikeyd), USER, old["token"])
    r = rotate(c, old["key"]["id"], grace="7d", retire_on_first_use=True)
    assert s.ended_within(1.5) is None, "the session ended at the rotation, in its grace"
    assert c.verify(r["token"], user=USER)["code"] == "VALID"
    took = s.ended_within(END_WITHIN)
    assert took is not None, f"the session outlived its key's grace by {END_WITHIN}s"
    assert s.proc.returncode == -signal.SIGTERM
    assert (f"ending session of key {old['key']['id']}: user={USER} service=login "
            f"rhost=192.0.2.7 tty=pts/9 pid={s.pid}: key expired") in apikeyd.log()


def test_the_keys_created_through_the_old_key_live_on_with_the_successor(apikeyd):
    c = apikeyd.client()
    parent = c.create("ci", permissions=["create", "read"])
    child = c.ok(f"{IFACE}.Create", {"name": "job", "auth": parent["token"]})
    assert child["key"]["parent"] == parent["key"]["id"]
    r = rotate(c, parent["key"]["id"], grace="0")
    assert c.verify(parent["token"])["code"] == "EXPIRED"
    # Not suspended with the old key: the successor is its parent now.
    assert c.verify(child["token"])["code"] == "VALID"
    assert c.get(child["key"]["id"])["parent"] == r["key"]["id"]
    assert c.ok(f"{IFACE}.Get", {"id": r["key"]["id"]})["children"] == [child["key"]["id"]]
    assert "children" not in c.ok(f"{IFACE}.Get", {"id": parent["key"]["id"]})
    c.ok(f"{IFACE}.Revoke", {"id": r["key"]["id"]})
    assert c.verify(child["token"])["code"] == "REVOKED"
    # The indexes (names, owners, children) agree with the records.
    apikeyd.stop()
    r = subprocess.run([str(APIKEYD), "--check", "--no-config", "--state-dir",
                        str(apikeyd.state_dir)], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout) == (0, f"keystore in {apikeyd.state_dir} is consistent\n")


def test_completion_of_rotate(apikeyd):
    s = apikeyd.socket
    c = apikeyd.client()
    on = c.create("on")["key"]["id"]
    off = c.create("off")["key"]["id"]
    c.ok(f"{IFACE}.Disable", {"id": off})
    assert complete(["rotate", ""], s) == [on]
    assert {"--grace", "--retire-on-first-use"} <= set(complete(["rotate", on, "--"], s))
    assert complete(["rotate", on, "--grace", "7"], s) == ["7d"]
    assert {"--max-uses", "--rate-limit"} <= set(complete(["create", "x", "--"], s))
    assert "100/1m" in complete(["update", on, "--rate-limit", ""], s)
