# SPDX-License-Identifier: MIT
"""Create: the token, the record, expiry, roles, permissions and scope."""

import calendar
import time

import pytest

from conftest import (IFACE, ME, ME_ACTOR, TOKEN_RE, base62_check, check_key, check_reply,
                      field_refusal, parse_iso, split_token)

ALL_PERMS = ["create", "read", "write", "delete", "invite"]
INVALID = "org.varlink.service.InvalidParameter"


def test_create_replies_with_key_and_token(root):
    before = time.time()
    r = root.create("deploy")
    after = time.time()
    check_reply("Create", r)
    assert set(r) == {"key", "token"}
    key, token = r["key"], r["token"]
    check_key(key)
    assert set(key) == {"id", "name", "owner", "role", "permissions", "scope", "status",
                        "created_at", "created_by"}
    assert key["name"] == "deploy"
    assert key["owner"] == ME
    assert key["role"] == "readonly"
    assert key["permissions"] == ["read"]
    assert key["scope"] == []
    assert key["status"] == "enabled"
    assert key["created_by"] == ME_ACTOR
    assert int(before) - 1 <= parse_iso(key["created_at"]) <= after + 1

    assert TOKEN_RE.fullmatch(token), token
    assert TOKEN_RE.findall(f"leaked: {token}.") == [token]
    prefix, key_id, secret, check = split_token(token)
    assert prefix == "apk"
    assert key_id == key["id"]
    assert len(secret) == 43 and len(check) == 6
    assert check == base62_check(token[:-6])


def test_tokens_and_ids_are_unique(root):
    tokens = [root.create(f"k{i}")["token"] for i in range(20)]
    parts = [split_token(t) for t in tokens]
    assert len({p[1] for p in parts}) == 20
    assert len({p[2] for p in parts}) == 20


def test_get_shows_the_created_key_without_its_token(root):
    r = root.create("x", description="for CI", scope=["sshd"], expires="30d")
    assert root.get(r["key"]["id"]) == r["key"]
    assert r["token"] not in str(root.list())


def test_token_prefix_is_configurable(daemon):
    d = daemon(config={"token_prefix": "acme"})
    c = d.client()
    token = c.create("k")["token"]
    assert token.startswith("acme_") and TOKEN_RE.fullmatch(token)
    assert c.verify(token)["code"] == "VALID"


def test_description(root):
    k = root.create("a", description="nightly backup")["key"]
    assert k["description"] == "nightly backup"
    k = root.create("b", description="")["key"]
    assert "description" not in k


@pytest.mark.parametrize("expires,seconds", [
    ("45s", 45), ("90m", 90 * 60), ("12h", 12 * 3600), ("30d", 30 * 86400),
    ("2w", 14 * 86400), ("1d12h", 36 * 3600), ("1h30m", 5400),
])
def test_expiry_by_duration(root, expires, seconds):
    k = root.create("k", expires=expires)["key"]
    delta = parse_iso(k["expires_at"]) - parse_iso(k["created_at"])
    assert abs(delta - seconds) <= 1, (k, delta)
    assert k["status"] == "enabled"


@pytest.mark.parametrize("expires,stored", [
    ("2031-01-31", "2031-01-31T23:59:59Z"),  # a date means the end of that day
    ("2031-01-31T12:00:00Z", "2031-01-31T12:00:00Z"),
    ("2031-01-31T12:00Z", "2031-01-31T12:00:00Z"),
    ("2031-01-31T12:00:00+02:00", "2031-01-31T10:00:00Z"),
    ("2031-01-31T12:00:00-0500", "2031-01-31T17:00:00Z"),
    ("2031-01-31 12:00:00z", "2031-01-31T12:00:00Z"),
])
def test_expiry_by_date(root, expires, stored):
    k = root.create("k", expires=expires)["key"]
    assert k["expires_at"] == stored
    assert root.get(k["id"])["expires_at"] == stored


@pytest.mark.parametrize("expires", ["never", "NEVER", "none"])
def test_expiry_never(root, expires):
    k = root.create("k", expires=expires)["key"]
    assert "expires_at" not in k


def test_admin_key_without_expiry_never_expires(root):
    assert "expires_at" not in root.create("k")["key"]


@pytest.mark.parametrize("expires", ["2001-01-01", "2001-01-01T00:00:00Z", "0s",
                                     "2031-01-31T12:00", "2031-02-30", "soon", "30x", "-1d",
                                     "1D", "", " 1d", "1d ", "12h1d", "1h1h"])
def test_bad_expiry_is_invalid_parameter_expires(root, expires):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", "expires": expires})) == (
        INVALID, {"parameter": "expires"})
    assert root.list()["keys"] == []


@pytest.mark.parametrize("params,role,perms", [
    ({}, "readonly", ["read"]),
    ({"role": "readonly"}, "readonly", ["read"]),
    ({"role": "admin"}, "admin", ALL_PERMS),
    ({"role": "admin", "permissions": list(reversed(ALL_PERMS))}, "admin", ALL_PERMS),
    ({"role": "readonly", "permissions": ["read"]}, "readonly", ["read"]),
    ({"permissions": ["read", "write"]}, "custom", ["read", "write"]),
    ({"permissions": ["write", "read", "write"]}, "custom", ["read", "write"]),
    ({"permissions": ["invite"]}, "custom", ["invite"]),
    ({"role": "custom", "permissions": ["delete", "create"]}, "custom", ["create", "delete"]),
    ({"role": "custom", "permissions": ALL_PERMS}, "custom", ALL_PERMS),
])
def test_role_and_permissions(root, params, role, perms):
    k = root.create("k", **params)["key"]
    assert (k["role"], k["permissions"]) == (role, perms)
    assert root.get(k["id"])["permissions"] == perms


@pytest.mark.parametrize("params,parameter", [
    ({"role": "admin", "permissions": ["read"]}, "permissions"),
    ({"role": "readonly", "permissions": ["read", "write"]}, "permissions"),
    ({"role": "custom"}, "permissions"),
    ({"permissions": []}, "permissions"),
    ({"permissions": ["fly"]}, "permissions"),
    ({"permissions": ["Read"]}, "permissions"),
    ({"role": "superuser"}, "role"),
    ({"role": "Admin"}, "role"),
])
def test_bad_role_or_permissions(root, params, parameter):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", **params})) == (
        INVALID, {"parameter": parameter})


def test_scope(root):
    k = root.create("k", scope=["sshd", "billing-api", "sudo"])["key"]
    assert k["scope"] == ["sshd", "billing-api", "sudo"]
    assert root.get(k["id"])["scope"] == ["sshd", "billing-api", "sudo"]
    assert root.create("any", scope=[])["key"]["scope"] == []


def test_scope_limits(root):
    assert root.create("k32", scope=[f"svc{i}" for i in range(32)])["key"]["scope"][-1] == "svc31"
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k33",
                                                      "scope": [f"s{i}" for i in range(33)]})) == (
        INVALID, {"parameter": "scope"})


@pytest.mark.parametrize("scope", [["x" * 65], ["sshd", "sshd"], [""], ["a\nb"]])
def test_bad_scope_entry_is_invalid_parameter_scope(root, scope):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", "scope": scope})) == (
        INVALID, {"parameter": "scope"})


def test_too_long_description_is_invalid_parameter_description(root):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", "description": "d" * 1025})) == (
        INVALID, {"parameter": "description"})


def test_description_limit(root):
    assert root.create("k", description="d" * 1024)["key"]["description"] == "d" * 1024
    assert root.err(f"{IFACE}.Create", {"name": "k2", "description": "d" * 1025})[0] == INVALID


def test_too_long_owner_is_invalid_parameter_owner(root):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", "owner": "o" * 257})) == (
        INVALID, {"parameter": "owner"})


def test_owner_limit(root):
    assert root.create("k", owner="o" * 256)["key"]["owner"] == "o" * 256
    assert root.err(f"{IFACE}.Create", {"name": "k", "owner": "o" * 257})[0] == INVALID


@pytest.mark.parametrize("name", ["", "n" * 129, "tab\there", "new\nline"])
def test_bad_name(root, name):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": name})) == (
        INVALID, {"parameter": "name"})


def test_name_limits(root):
    assert root.create("n" * 128)["key"]["name"] == "n" * 128
    assert root.create("with spaces and ünïcödé")["key"]["name"] == "with spaces and ünïcödé"


def test_empty_owner_is_invalid(root):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", "owner": ""})) == (
        INVALID, {"parameter": "owner"})


def test_admin_creates_for_another_owner(root):
    k = root.create("app", owner="billing-api")["key"]
    assert k["owner"] == "billing-api"
    assert k["created_by"] == ME_ACTOR


def test_name_is_unique_per_owner(root):
    root.create("ci")
    assert root.err(f"{IFACE}.Create", {"name": "ci"}) == (
        f"{IFACE}.NameTaken", {"owner": ME, "name": "ci"})
    assert root.create("ci", owner="someone")["key"]["owner"] == "someone"
    assert root.err(f"{IFACE}.Create", {"name": "ci", "owner": "someone"}) == (
        f"{IFACE}.NameTaken", {"owner": "someone", "name": "ci"})
    assert root.create("CI")["key"]["name"] == "CI"
    assert len(root.list()["keys"]) == 3


def test_expires_at_is_utc(root):
    k = root.create("k", expires="1h")["key"]
    exp = calendar.timegm(time.strptime(k["expires_at"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(exp - (time.time() + 3600)) <= 2


@pytest.mark.parametrize("description", ["two\nlines", "bell \x07", "esc \x1b[2J", "csi \u009b31m",
                                         "del \x7f"])
def test_control_characters_in_description_are_refused(root, description):
    assert field_refusal(root.err(f"{IFACE}.Create",
                                  {"name": "k", "description": description})) == (
        INVALID, {"parameter": "description"})
