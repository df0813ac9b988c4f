# SPDX-License-Identifier: MIT
"""Text a caller sends, from the attacker's side: an ordinary local user
with a key of their own.  Every text parameter is checked by one rule
(UTF-8 without C0 controls, DEL or C1 controls) and refused as
InvalidParameter naming it; owners and scope entries follow one ASCII name
syntax, so that no key's owner or scope looks like another's; and a use
noted with a bad source can never cost other keys their last-used time."""

import json
import time

import pytest

from conftest import ALICE, IFACE
from test_apikeyctl import EXIT_USAGE, run_ctl

INVALID = "org.varlink.service.InvalidParameter"
TEXT_PARAMS = ("service", "user", "rhost", "tty", "ruser")

# Controls a terminal or a log acts on, as JSON escapes and as raw UTF-8.
CONTROLS = [
    pytest.param("192.0.2.1\u0085forged line", id="C1-NEL"),
    pytest.param("\u009b31mred", id="C1-CSI"),
    pytest.param("\u0080", id="C1-first"),
    pytest.param("x\u009f", id="C1-last"),
    pytest.param("\x1b[2J", id="C0-ESC"),
    pytest.param("a\nb", id="C0-LF"),
    pytest.param("del\x7f", id="DEL"),
]


@pytest.fixture
def alice_key(test_users, apikeyd):
    """(client as akt-alice, her token, her key) on a fresh daemon."""
    root = apikeyd.client()
    created = root.create("alice-key", owner=ALICE, scope=["sshd"])
    return apikeyd, created["token"], created["key"]


def verify_raw(apikeyd, as_user, params, ensure_ascii=True):
    """Verify as akt-alice, the message written by hand: (error, parameters)
    or the answer's parameters."""
    msg = json.dumps({"method": f"{IFACE}.Verify", "parameters": params},
                     ensure_ascii=ensure_ascii).encode() + b"\0"

    def call(c):
        c.send_bytes(msg)
        return c.recv()

    r = as_user(ALICE, socket=apikeyd.socket).run(call)
    return (r["error"], r.get("parameters", {})) if "error" in r else r["parameters"]


@pytest.mark.parametrize("value", CONTROLS)
@pytest.mark.parametrize("param", TEXT_PARAMS)
def test_verify_refuses_control_characters(alice_key, as_user, param, value):
    apikeyd, token, key = alice_key
    base = {"token": token, "service": "sshd", "user": ALICE, "rhost": "192.0.2.1"}
    other = next(p for p in TEXT_PARAMS if p != param)
    shapes = [
        dict(base, **{param: value}),                # the fast decoder
        dict(base, **{param: value, other: None}),   # the general one
    ]
    for params in shapes:
        for ascii_only in (True, False):  # escaped, and raw UTF-8 bytes
            assert verify_raw(apikeyd, as_user, params, ascii_only) == (
                INVALID, {"parameter": param}), (params, ascii_only)
    # Nothing was noted: the key was never used.
    assert "last_used_at" not in apikeyd.client().get(key["id"])
    # The same call with plain text is fine.
    assert verify_raw(apikeyd, as_user, base)["code"] == "VALID"


def test_verify_takes_printable_non_ascii(alice_key, as_user):
    apikeyd, token, _ = alice_key
    r = verify_raw(apikeyd, as_user, {"token": token, "service": "sshd", "user": ALICE,
                                      "rhost": "h\u00f6st.example", "tty": "pts/\u00a0"})
    assert r["code"] == "VALID"


@pytest.mark.parametrize("value", CONTROLS)
@pytest.mark.parametrize("param", ["name", "description", "owner"])
def test_create_refuses_control_characters(test_users, apikeyd, as_user, param, value):
    alice = as_user(ALICE, socket=apikeyd.socket)
    params = {"name": "k", param: value}
    assert alice.err(f"{IFACE}.Create", params) == (INVALID, {"parameter": param})
    assert alice.err(f"{IFACE}.Create", {"name": "k", "scope": ["sshd", value]}) == (
        INVALID, {"parameter": "scope"})
    key = alice.create("mine")["key"]
    if param != "owner":
        assert alice.err(f"{IFACE}.Update", {"id": key["id"], param: value}) == (
            INVALID, {"parameter": param})
    assert alice.err(f"{IFACE}.Update", {"id": key["id"], "scope": [value]}) == (
        INVALID, {"parameter": "scope"})
    assert apikeyd.client().get(key["id"]) == key


def test_description_keeps_ordinary_non_ascii(test_users, apikeyd, as_user):
    alice = as_user(ALICE, socket=apikeyd.socket)
    text = "Zugang f\u00fcr den Build-Server \u00a9 2026 \U0001F511"
    key = alice.create("build", description=text)["key"]
    assert key["description"] == text
    assert apikeyd.client().get(key["id"])["description"] == text


@pytest.mark.parametrize("value", CONTROLS)
@pytest.mark.parametrize("param", ["owner", "name_prefix"])
def test_list_filters_refuse_control_characters(test_users, apikeyd, as_user, param, value):
    alice = as_user(ALICE, socket=apikeyd.socket)
    assert alice.err(f"{IFACE}.List", {param: value}) == (INVALID, {"parameter": param})
    assert apikeyd.client().err(f"{IFACE}.List", {param: value}) == (
        INVALID, {"parameter": param})


@pytest.mark.parametrize("owner", [
    "root ",                 # trailing space
    " root",
    "ro ot",
    "bad owner!",
    "r\u043e\u043et",        # Cyrillic o, twice
    "\uff52oot",             # fullwidth r
    "root\u00a0",            # no-break space
    "j\u00fcrgen",
    "-root",
    ".root",
    "root:0",
    "a,b",
    "@root",
    "1000",                  # reads as a uid
    "root$$",
])
def test_lookalike_owners_refused(test_users, apikeyd, as_user, owner):
    # The attacker, and an admin who was handed the name: both refused.
    alice = as_user(ALICE, socket=apikeyd.socket)
    assert alice.err(f"{IFACE}.Create", {"name": "k", "owner": owner}) == (
        INVALID, {"parameter": "owner"})
    root = apikeyd.client()
    assert root.err(f"{IFACE}.Create", {"name": "k", "owner": owner}) == (
        INVALID, {"parameter": "owner"})
    assert root.list() == {"keys": []}


@pytest.mark.parametrize("owner", ["root", "akt-alice", "_apt", "www-data", "host$",
                                   "Debian-exim", "billing-api", "ci.example",
                                   "alice@ad.example.com", "o" * 256])
def test_login_and_application_owners_accepted(apikeyd, owner):
    assert apikeyd.client().create("k", owner=owner)["key"]["owner"] == owner


@pytest.mark.parametrize("scope", [
    ["ssh d", "", "x"],      # what apikeyctl --scope "ssh d,,x" used to mean
    ["ssh d", "x"],
    [""],
    ["sshd", ""],
    ["sshd "],
    [" sshd"],
    ["sshd", "sshd"],
    ["s\u00fcdo"],
    ["ssh\u200bd"],           # zero-width space
    ["-sshd"],
    ["sshd,sudo"],
])
def test_bad_scope_entries_refused(test_users, apikeyd, as_user, scope):
    alice = as_user(ALICE, socket=apikeyd.socket)
    assert alice.err(f"{IFACE}.Create", {"name": "k", "scope": scope}) == (
        INVALID, {"parameter": "scope"})
    key = alice.create("mine", scope=["sshd"])["key"]
    assert alice.err(f"{IFACE}.Update", {"id": key["id"], "scope": scope}) == (
        INVALID, {"parameter": "scope"})
    assert apikeyd.client().get(key["id"])["scope"] == ["sshd"]


def test_apikeyctl_refuses_a_scope_with_an_empty_or_spaced_entry(test_users, apikeyd):
    for scope, message in [
        ("ssh d,,x", "apikeyctl create: --scope entry 'ssh d' is not a service name (ASCII "
                     "letters, digits, '.', '_' and '-', no spaces)\n"),
        ("sshd,,x", "apikeyctl create: --scope 'sshd,,x' has an empty entry: separate "
                    "services with single commas\n"),
        ("sshd,", "apikeyctl create: --scope 'sshd,' has an empty entry: separate services "
                  "with single commas\n"),
        ("sshd,sudo,sshd", "apikeyctl create: --scope names 'sshd' twice\n"),
    ]:
        r = run_ctl("create", "k", "--scope", scope, socket=apikeyd.socket, user=ALICE,
                    rc=EXIT_USAGE)
        assert r.err.startswith(message), r
    # Spaces around the commas are still fine, and nothing else was created.
    r = run_ctl("--json", "create", "k", "--scope", "sshd, sudo", socket=apikeyd.socket,
                user=ALICE, rc=0)
    assert r.json()["key"]["scope"] == ["sshd", "sudo"]
    assert len(apikeyd.client().list()["keys"]) == 1


def test_c1_rhost_does_not_cost_other_keys_their_last_use(test_users, daemon, as_user):
    d = daemon(config={"last_used_flush_interval": "1s"})
    root = d.client()
    good = root.create("good", owner=ALICE)
    bad = root.create("bad", owner=ALICE)
    alice = as_user(ALICE, socket=d.socket)

    v = alice.ok(f"{IFACE}.Verify", {"token": good["token"], "service": "sshd",
                                     "rhost": "192.0.2.1"})
    assert v["code"] == "VALID"
    # The attacker's own key, with a source no record may store.
    assert alice.err(f"{IFACE}.Verify", {"token": bad["token"], "service": "sshd",
                                         "rhost": "192.0.2.2\u0085"}) == (
        INVALID, {"parameter": "rhost"})
    time.sleep(2.5)  # two flushes
    d.restart()      # and the one at shutdown: what is shown now was stored
    stored = d.client().get(good["key"]["id"])
    assert (stored["last_used_service"], stored["last_used_from"]) == ("sshd", "192.0.2.1")
    assert "last_used_at" not in d.client().get(bad["key"]["id"])
    assert "writing last-used times failed" not in d.log()
