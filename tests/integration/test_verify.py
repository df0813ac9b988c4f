# SPDX-License-Identifier: MIT
"""Verify: every code the daemon answers, what a valid answer carries, the
signature over each answer, and the last-use record it leaves."""

import base64
import hashlib
import json
import os
import secrets
import subprocess
import time

import pytest

from conftest import (BASE62, IFACE, INTERFACE, ME, base62_check, check_key, check_reply,
                      decode_b64, make_token, other_secret, parse_iso, split_token)

INVALID = "org.varlink.service.InvalidParameter"


def random_base62(n):
    return "".join(secrets.choice(BASE62) for _ in range(n))


def refused(reply, code):
    """A refusal: valid false, the code, and no key."""
    check_reply("Verify", reply)
    assert reply["valid"] is False
    assert reply["code"] == code
    assert "key" not in reply
    return reply


def test_valid_answer_carries_the_key(root):
    created = root.create("ci", scope=["sshd", "sudo"], permissions=["read", "write"],
                          expires="30d", description="runner")
    before = time.time()
    v = root.verify(created["token"], service="sshd", user=ME, rhost="192.0.2.7",
                    permissions=["write"])
    check_reply("Verify", v)
    assert v["valid"] is True
    assert v["code"] == "VALID"
    key = check_key(v["key"])
    expected = dict(created["key"], last_used_service="sshd", last_used_from="192.0.2.7",
                    last_used_at=key["last_used_at"])
    assert key == expected
    assert int(before) - 1 <= parse_iso(key["last_used_at"]) <= time.time() + 1


def test_valid_without_any_condition(root):
    token = root.create("k")["token"]
    v = root.verify(token)
    assert (v["valid"], v["code"], v["key"]["name"]) == (True, "VALID", "k")
    assert "last_used_service" not in v["key"]
    assert "last_used_from" not in v["key"]


def test_brief_answer_names_the_key_without_the_key_object(root):
    """brief, as pam_apikey asks: the key's id and expiry, no Key; signed
    as the full answer is; the same from either decoder of the call."""
    secret = decode_b64(root.ok(f"{IFACE}.GetSharedSecret")["secret"])
    r = root.create("ci", owner="akt-alice", scope=["sshd"], expires="30d")
    login = {"service": "sshd", "user": "akt-alice", "rhost": "192.0.2.7"}
    # "tty": null is not the plain shape: the general decoder answers that call.
    for extra in ({}, {"tty": None}):
        v = root.verify(r["token"], brief=True, **login, **extra)
        check_reply("Verify", v)
        assert (v["valid"], v["code"]) == (True, "VALID")
        assert "key" not in v
        assert v["key_id"] == r["key"]["id"]
        assert v["expires_at"] == r["key"]["expires_at"]
        want = keyed_blake2b(secret, canonical(dict(v, key={"id": r["key"]["id"],
                                                             "owner": "akt-alice"}), **login))
        assert decode_b64(v["signature"]) == want
    assert root.get(r["key"]["id"])["last_used_from"] == "192.0.2.7"
    never = root.create("forever")
    v = root.verify(never["token"], brief=True)
    assert (v["key_id"], "expires_at" in v) == (never["key"]["id"], False)
    # brief false, or absent, answers the Key; a refusal carries neither.
    assert check_key(root.verify(never["token"], brief=False)["key"])["name"] == "forever"
    v = refused(root.verify(r["token"], brief=True, service="sudo"), "OUT_OF_SCOPE")
    assert "key_id" not in v and "expires_at" not in v
    for bad in ("yes", 1, []):
        assert root.err(f"{IFACE}.Verify", {"token": r["token"], "brief": bad}) == (
            INVALID, {"parameter": "brief"})


def bad_format_tokens(token):
    prefix, key_id, secret, check = split_token(token)
    typo = BASE62[(BASE62.index(check[-1]) + 1) % 62]
    secret_typo = secret[:10] + BASE62[(BASE62.index(secret[10]) + 1) % 62] + secret[11:]
    return {
        "garbage": "garbage",
        "empty": "",
        "checksum typo": token[:-1] + typo,
        "secret typo": f"{prefix}_{key_id}_{secret_typo}{check}",
        "truncated": token[:-1],
        "one too many": token + "0",
        "surrounding space": f" {token}",
        "newline": token + "\n",
        "upper-case prefix": make_token("APK", key_id, secret),
        "other installation's prefix": make_token("xyz", key_id, secret),
        "prefix too long": make_token("abcdefghi", key_id, secret),
        "id too short": make_token(prefix, key_id[:11], secret + "A"),
        "non-base62 secret": make_token(prefix, key_id, secret[:-1] + "-"),
        "password": "correct horse battery staple",
        "sshd's fake password": "\b\n\r\177INCORRECT",
    }


def test_bad_format(root):
    token = root.create("k")["token"]
    for what, bad in bad_format_tokens(token).items():
        r = root.verify(bad)
        assert (r["valid"], r["code"]) == (False, "BAD_FORMAT"), what
        refused(r, "BAD_FORMAT")
    # None of it counted as a use.
    assert "last_used_at" not in root.get(split_token(token)[1])


def test_not_found_for_unknown_id(root):
    root.create("k")
    unknown = make_token("apk", random_base62(12), random_base62(43))
    refused(root.verify(unknown), "NOT_FOUND")


def test_not_found_for_wrong_secret(root):
    token = root.create("k")["token"]
    prefix, key_id, secret, _ = split_token(token)
    forged = make_token(prefix, key_id, other_secret(secret))
    assert forged != token and forged[-6:] == base62_check(forged[:-6])
    refused(root.verify(forged), "NOT_FOUND")
    assert "last_used_at" not in root.get(key_id)
    assert root.verify(token)["code"] == "VALID"


def test_disabled_then_enabled(root):
    r = root.create("k")
    root.ok(f"{IFACE}.Disable", {"id": r["key"]["id"]})
    refused(root.verify(r["token"]), "DISABLED")
    root.ok(f"{IFACE}.Enable", {"id": r["key"]["id"]})
    assert root.verify(r["token"])["code"] == "VALID"


def test_revoked(root):
    r = root.create("k")
    root.ok(f"{IFACE}.Revoke", {"id": r["key"]["id"]})
    refused(root.verify(r["token"]), "REVOKED")


def test_expired(root):
    r = root.create("short", expires="1s")
    long_lived = root.create("long", expires="1h")
    assert root.verify(r["token"])["code"] == "VALID"
    time.sleep(2.1)
    refused(root.verify(r["token"]), "EXPIRED")
    key = root.get(r["key"]["id"])
    assert key["status"] == "expired"
    assert [k["id"] for k in root.list(status="expired")["keys"]] == [r["key"]["id"]]
    assert [k["id"] for k in root.list(status="enabled")["keys"]] == [long_lived["key"]["id"]]
    # Disabling an expired key does not hide that it expired.
    root.ok(f"{IFACE}.Disable", {"id": r["key"]["id"]})
    refused(root.verify(r["token"]), "EXPIRED")
    # Revoked is stronger than expired.
    root.ok(f"{IFACE}.Revoke", {"id": r["key"]["id"]})
    refused(root.verify(r["token"]), "REVOKED")


def test_wrong_user(root):
    r = root.create("k", owner="akt-alice")
    refused(root.verify(r["token"], user="akt-bob"), "WRONG_USER")
    refused(root.verify(r["token"], user=ME), "WRONG_USER")
    refused(root.verify(r["token"], user="akt-alice "), "WRONG_USER")
    refused(root.verify(r["token"], user=""), "WRONG_USER")
    assert root.verify(r["token"], user="akt-alice")["code"] == "VALID"


def test_not_for_login(root):
    """A key an invite key made for another owner never logs in as them, for
    whatever user is named, but serves a script that names none."""
    inviter = root.create("inviter", owner="ci-bot", permissions=["create", "read", "invite"])
    r = root.ok(f"{IFACE}.Create", {"name": "script", "owner": "akt-alice",
                                    "auth": inviter["token"]})
    for user in ("akt-alice", "akt-bob", ""):
        refused(root.verify(r["token"], user=user, service="sshd"), "NOT_FOR_LOGIN")
    assert root.verify(r["token"], service="billing-api")["code"] == "VALID"


def test_out_of_scope(root):
    r = root.create("k", scope=["sshd", "billing-api"])
    refused(root.verify(r["token"], service="sudo"), "OUT_OF_SCOPE")
    refused(root.verify(r["token"], service="SSHD"), "OUT_OF_SCOPE")
    refused(root.verify(r["token"], service="sshd-extra"), "OUT_OF_SCOPE")
    assert root.verify(r["token"], service="sshd")["code"] == "VALID"
    assert root.verify(r["token"], service="billing-api")["code"] == "VALID"
    # The scope is checked only when a service is given.
    assert root.verify(r["token"])["code"] == "VALID"
    # An empty scope means any service.
    anywhere = root.create("any")
    assert root.verify(anywhere["token"], service="anything-at-all")["code"] == "VALID"


def test_insufficient_permissions(root):
    ro = root.create("ro")
    refused(root.verify(ro["token"], permissions=["write"]), "INSUFFICIENT_PERMISSIONS")
    refused(root.verify(ro["token"], permissions=["read", "write"]), "INSUFFICIENT_PERMISSIONS")
    assert root.verify(ro["token"], permissions=["read"])["code"] == "VALID"
    assert root.verify(ro["token"], permissions=[])["code"] == "VALID"
    custom = root.create("custom", permissions=["write", "delete"])
    refused(root.verify(custom["token"], permissions=["read"]), "INSUFFICIENT_PERMISSIONS")
    assert root.verify(custom["token"], permissions=["delete", "write"])["code"] == "VALID"
    admin = root.create("admin", role="admin")
    assert root.verify(admin["token"], permissions=["create", "read", "write", "delete",
                                                    "invite"])["code"] == "VALID"


def test_unknown_permission_is_invalid_parameter(root):
    token = root.create("k")["token"]
    assert root.err(f"{IFACE}.Verify", {"token": token, "permissions": ["fly"]}) == (
        INVALID, {"parameter": "permissions"})


def test_status_comes_before_user_scope_and_permissions(root):
    r = root.create("k", scope=["sshd"])
    root.ok(f"{IFACE}.Disable", {"id": r["key"]["id"]})
    refused(root.verify(r["token"], user="nobody", service="sudo", permissions=["write"]),
            "DISABLED")
    root.ok(f"{IFACE}.Revoke", {"id": r["key"]["id"]})
    refused(root.verify(r["token"], user="nobody", service="sudo", permissions=["write"]),
            "REVOKED")


def test_every_declared_code_is_produced_by_a_test():
    # The tests in this file produce each of these; a new code needs a test.
    produced = {"VALID", "BAD_FORMAT", "NOT_FOUND", "DISABLED", "REVOKED", "EXPIRED",
                "WRONG_USER", "OUT_OF_SCOPE", "INSUFFICIENT_PERMISSIONS", "RATE_LIMITED",
                "NOT_FOR_LOGIN", "UNAVAILABLE"}
    # The codes of a key's own limits and conditions, each produced by the
    # tests of the feature (a quoted code in an assertion of that file).
    elsewhere = {"USAGE_EXCEEDED": "test_limits.py", "NOT_YET_VALID": "test_conditions.py",
                 "SOURCE_DENIED": "test_conditions.py"}
    here = os.path.dirname(os.path.abspath(__file__))
    for code, name in elsewhere.items():
        path = os.path.join(here, name)
        assert f'"{code}"' in open(path).read(), f"{code} is declared and {name} never sees it"
    assert set(INTERFACE.types["VerifyCode"]) == produced | set(elsewhere)


def test_a_record_that_cannot_be_read_is_unavailable_not_a_failed_guess(daemon):
    """A damaged record (a bad disk, a hand edit): UNAVAILABLE, logged, and
    not counted as a failed guess however often it is asked."""
    d = daemon(config={"lockout_threshold": 2})
    c = d.client()
    r = c.create("k")
    key_id = r["key"]["id"]
    d.stop()
    store = str(d.state_dir / "keys.mdb")
    dump = subprocess.run(["mdb_dump", "-n", "-s", "keys", store], capture_output=True,
                          text=True, check=True, timeout=30).stdout.splitlines()
    at = dump.index(" " + key_id.encode().hex())
    dump[at + 1] = " " + b"\x01damaged record".hex()
    subprocess.run(["mdb_load", "-n", "-s", "keys", store], input="\n".join(dump) + "\n",
                   text=True, check=True, timeout=30)
    d.start()
    c = d.client()
    for _ in range(5):
        refused(c.verify(r["token"]), "UNAVAILABLE")
        refused(c.verify(forged(r["token"])), "UNAVAILABLE")
    assert c.ok(f"{IFACE}.ListLockouts", {})["lockouts"] == []
    log = d.log()
    assert f"reading key {key_id} failed: Bad message; answered UNAVAILABLE" in log, log
    assert f"verify refused: UNAVAILABLE; key={key_id} " in log
    assert split_token(r["token"])[2] not in log


# ---------------------------------------------------------------- lockout


def forged(token):
    """The token with another secret (and a valid checksum): NOT_FOUND."""
    prefix, key_id, secret, _ = split_token(token)
    return make_token(prefix, key_id, other_secret(secret))


def test_rate_limited_after_wrong_secrets(daemon):
    d = daemon(config={"lockout_threshold": 3, "lockout_window": "2s"})
    c = d.client()
    r = c.create("k")
    other = c.create("other")
    key_id = r["key"]["id"]
    for _ in range(3):
        refused(c.verify(forged(r["token"])), "NOT_FOUND")
    # Locked: even the right secret is refused, and it is no use.
    refused(c.verify(r["token"]), "RATE_LIMITED")
    refused(c.verify(forged(r["token"])), "RATE_LIMITED")
    refused(c.verify(r["token"], service="sshd", user=ME), "RATE_LIMITED")
    assert "last_used_at" not in c.get(key_id)
    # Other keys are not affected.
    assert c.verify(other["token"])["code"] == "VALID"
    # The window began with the first failure; after it, the key works again.
    time.sleep(2.2)
    assert c.verify(r["token"])["code"] == "VALID"
    log = d.log()
    assert key_id in log and "locked" in log
    assert r["token"] not in log and split_token(r["token"])[2] not in log


def test_unknown_id_is_rate_limited_too(daemon):
    d = daemon(config={"lockout_threshold": 2})
    c = d.client()
    unknown = make_token("apk", random_base62(12), random_base62(43))
    refused(c.verify(unknown), "NOT_FOUND")
    refused(c.verify(unknown), "NOT_FOUND")
    refused(c.verify(unknown), "RATE_LIMITED")
    refused(c.verify(forged(unknown)), "RATE_LIMITED")


def test_a_valid_answer_resets_the_count(daemon):
    d = daemon(config={"lockout_threshold": 3})
    c = d.client()
    r = c.create("k")
    for _ in range(4):
        refused(c.verify(forged(r["token"])), "NOT_FOUND")
        refused(c.verify(forged(r["token"])), "NOT_FOUND")
        assert c.verify(r["token"])["code"] == "VALID"


def test_only_wrong_secrets_count(daemon):
    d = daemon(config={"lockout_threshold": 2})
    c = d.client()
    r = c.create("k", scope=["sshd"])
    key_id = r["key"]["id"]
    typo = r["token"][:-1] + ("0" if r["token"][-1] != "0" else "1")
    for _ in range(4):
        refused(c.verify(r["token"], user="somebody"), "WRONG_USER")
        refused(c.verify(r["token"], service="sudo"), "OUT_OF_SCOPE")
        refused(c.verify(r["token"], permissions=["write"]), "INSUFFICIENT_PERMISSIONS")
        refused(c.verify(typo), "BAD_FORMAT")
    c.ok(f"{IFACE}.Disable", {"id": key_id})
    for _ in range(4):
        refused(c.verify(r["token"]), "DISABLED")
    c.ok(f"{IFACE}.Enable", {"id": key_id})
    assert c.verify(r["token"])["code"] == "VALID"


def test_default_threshold_is_ten(root):
    r = root.create("k")
    for _ in range(10):
        refused(root.verify(forged(r["token"])), "NOT_FOUND")
    refused(root.verify(r["token"]), "RATE_LIMITED")


def test_no_lockout_when_the_threshold_is_zero(daemon):
    d = daemon(config={"lockout_threshold": 0})
    c = d.client()
    r = c.create("k")
    for _ in range(25):
        refused(c.verify(forged(r["token"])), "NOT_FOUND")
    assert c.verify(r["token"])["code"] == "VALID"


# ---------------------------------------------------------------- signatures


def canonical(reply, service="", user="", rhost=""):
    key = reply.get("key", {})
    return ("apikeyd-verify-v1\n"
            f"signed_at={reply['signed_at']}\n"
            f"valid={'true' if reply['valid'] else 'false'}\n"
            f"code={reply['code']}\n"
            f"id={key.get('id', '')}\n"
            f"owner={key.get('owner', '')}\n"
            f"service={service}\nuser={user}\nrhost={rhost}\n").encode()


def keyed_blake2b(secret, data):
    return hashlib.blake2b(data, key=secret, digest_size=32).digest()


@pytest.mark.skipif("signature" not in {n for n, _, _ in INTERFACE.outputs("Verify")},
                    reason="the interface declares no Verify signature")
def test_answers_are_signed_with_the_shared_secret(root):
    secret = decode_b64(root.ok(f"{IFACE}.GetSharedSecret")["secret"])
    r = root.create("k", owner="akt-alice", scope=["sshd"])
    prefix, key_id, sec, _ = split_token(r["token"])
    cases = [
        ({"service": "sshd", "user": "akt-alice", "rhost": "198.51.100.4"}, "VALID"),
        ({}, "VALID"),
        ({"service": "sudo"}, "OUT_OF_SCOPE"),
        ({"user": "akt-bob", "rhost": "::1"}, "WRONG_USER"),
    ]
    for params, code in cases:
        v = root.verify(r["token"], **params)
        assert v["code"] == code
        want = keyed_blake2b(secret, canonical(v, **params))
        assert decode_b64(v["signature"]) == want, (params, v)
        assert abs(parse_iso(v["signed_at"]) - time.time()) <= 2
    for token, code in ((make_token(prefix, key_id, other_secret(sec)), "NOT_FOUND"),
                        ("garbage", "BAD_FORMAT")):
        v = root.verify(token, service="sshd")
        assert v["code"] == code
        assert decode_b64(v["signature"]) == keyed_blake2b(
            secret, canonical(v, service="sshd"))
    # A rotated secret signs from then on.
    new = decode_b64(root.ok(f"{IFACE}.RotateSharedSecret")["secret"])
    v = root.verify(r["token"])
    assert decode_b64(v["signature"]) == keyed_blake2b(new, canonical(v))
    assert base64.b64encode(keyed_blake2b(secret, canonical(v))).decode() != v["signature"]


@pytest.mark.parametrize("field", ["service", "user", "rhost"])
def test_control_characters_in_signed_fields_are_refused(root, field):
    token = root.create("k")["token"]
    assert root.err(f"{IFACE}.Verify", {"token": token, field: "a\nvalid=true"}) == (
        INVALID, {"parameter": field})


# ---------------------------------------------------------------- last use


def test_last_use_is_recorded(root):
    r = root.create("k")
    key_id = r["key"]["id"]
    assert not {"last_used_at", "last_used_service", "last_used_from"} & set(root.get(key_id))
    root.verify(r["token"], service="sshd", rhost="203.0.113.9")
    got = root.get(key_id)
    assert got["last_used_service"] == "sshd"
    assert got["last_used_from"] == "203.0.113.9"
    assert abs(parse_iso(got["last_used_at"]) - time.time()) <= 2
    # A refused verification is no use.
    root.verify(r["token"], service="sudo", user="somebody-else")
    assert root.get(key_id) == got
    # The latest use wins.
    root.verify(r["token"], service="sudo", rhost="2001:db8::1")
    got2 = root.get(key_id)
    assert (got2["last_used_service"], got2["last_used_from"]) == ("sudo", "2001:db8::1")
    # List shows the same.
    assert root.list()["keys"] == [got2]


def test_last_use_survives_a_clean_restart(daemon):
    d = daemon()
    c = d.client()
    r = c.create("k")
    c.verify(r["token"], service="sshd", rhost="192.0.2.1")
    before = c.get(r["key"]["id"])
    assert before["last_used_service"] == "sshd"
    d.stop()
    d.start()
    assert d.client().get(r["key"]["id"]) == before


def test_last_use_is_flushed_while_running(daemon):
    d = daemon(config={"last_used_flush_interval": "1s"})
    c = d.client()
    r = c.create("k")
    c.verify(r["token"], service="sudo", rhost="192.0.2.2")
    before = c.get(r["key"]["id"])
    time.sleep(2.2)
    d.kill()  # no flush at shutdown: what is there was written by the timer
    d.start()
    assert d.client().get(r["key"]["id"]) == before


# The daemon reads plain Verify calls with its own small decoder and every
# other call with the general one; both must give the same answer.
AWKWARD = "quote \" back\\slash caf\u00e9 \U0001F600 </x> \u2028"


def raw_verify(client, text):
    client.send_bytes(text.encode() + b"\0")
    return client.recv()


def without_signature(reply):
    p = dict(reply["parameters"])
    assert p.pop("signature") and p.pop("signed_at")
    return p


def test_both_decoders_give_the_same_answer(root):
    created = root.create("fast-\u00e9\"q", description=AWKWARD, scope=["sshd", "billing-api.v2"],
                          permissions=["read", "write"], expires="30d")
    token = created["token"]
    base = {"token": token, "service": "sshd", "user": ME, "rhost": "192.0.2.8",
            "permissions": ["read"]}
    plain = json.dumps({"method": f"{IFACE}.Verify", "parameters": base})
    # The same call in shapes only the general decoder takes: a null
    # parameter, a null flag, non-ASCII left unescaped.
    general = [
        json.dumps({"method": f"{IFACE}.Verify", "parameters": dict(base, tty=None)}),
        json.dumps({"more": None, "parameters": base, "method": f"{IFACE}.Verify"}),
        json.dumps({"method": f"{IFACE}.Verify", "parameters": dict(base, ruser=None)},
                   ensure_ascii=False),
    ]
    fast = raw_verify(root, plain)
    assert fast["parameters"]["code"] == "VALID", fast
    for text in general:
        assert without_signature(raw_verify(root, text)) == without_signature(fast), text
    # The key in the answer is the key as Get shows it (the last use included).
    assert fast["parameters"]["key"] == root.get(created["key"]["id"])
    assert fast["parameters"]["key"]["description"] == AWKWARD
    # Refusals agree too.
    for params in ({"token": token, "service": "sudo"}, {"token": token, "user": "akt-bob"},
                   {"token": token[:-1] + "x"}, {"token": "garbage"}):
        a = raw_verify(root, json.dumps({"method": f"{IFACE}.Verify", "parameters": params}))
        b = raw_verify(root, json.dumps({"method": f"{IFACE}.Verify",
                                         "parameters": dict(params, tty=None)}))
        assert without_signature(a) == without_signature(b), params


@pytest.mark.parametrize("text, parameter", [
    # A member twice: refused as a whole, never read as either value.
    ('{"method":"io.apikeyd.Keys.Verify","parameters":{"token":"a","token":"b"}}',
     "message: not a JSON object with a string \"method\""),
    ('{"method":"io.apikeyd.Keys.Verify","parameters":{"token":"a","permissions":["fly"]}}',
     "permissions"),
    ('{"method":"io.apikeyd.Keys.Verify","parameters":{"token":"a","user":"a\\u0001"}}',
     "user"),
    ('{"method":"io.apikeyd.Keys.Verify","parameters":{"token":"a","rhost":"' + "h" * 257 + '"}}',
     "rhost"),
    ('{"method":"io.apikeyd.Keys.Verify","parameters":{"user":"a"}}', "token"),
    ('{"method":"io.apikeyd.Keys.Verify","parameters":{"token":"a","colour":"red"}}', "colour"),
    ('{"method":"io.apikeyd.Keys.Verify","parameters":{"token":"\\ud800"}}',
     "message: not a JSON object with a string \"method\""),
])
def test_malformed_verify_calls_are_refused_by_name(root, text, parameter):
    r = raw_verify(root, text)
    assert r["error"] == "org.varlink.service.InvalidParameter", r
    assert r["parameters"] == {"parameter": parameter}
