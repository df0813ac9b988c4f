# SPDX-License-Identifier: MIT
"""Hygiene the admin does not have to remember: max_lifetime for every key,
keys disabled when unused for disable_unused_after, and lockouts that end
on their own -- through the real daemon."""

import time

import pytest

from conftest import IFACE, parse_iso

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
