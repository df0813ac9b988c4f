# SPDX-License-Identifier: MIT
"""Text a caller sends, from the attacker's side: an ordinary local user
with a key of their own.  Every text parameter is checked by one rule
(UTF-8 without C0 controls, DEL or C1 controls) and refused as
InvalidParameter naming it; owners and scope entries follow one ASCII name
syntax, so that no key's owner or scope looks like another's; and a use
noted with a bad source can never cost other keys their last-used time."""

import json
import pwd
import subprocess
import sys
import time

import pytest

from conftest import ALICE, IFACE, field_refusal
from test_apikeyctl import EXIT_REFUSED, EXIT_USAGE, run_ctl

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
    assert field_refusal(alice.err(f"{IFACE}.Create", params)) == (INVALID, {"parameter": param})
    assert field_refusal(alice.err(f"{IFACE}.Create", {"name": "k", "scope": ["sshd", value]})) == (
        INVALID, {"parameter": "scope"})
    key = alice.create("mine")["key"]
    if param != "owner":
        assert field_refusal(alice.err(f"{IFACE}.Update", {"id": key["id"], param: value})) == (
            INVALID, {"parameter": param})
    assert field_refusal(alice.err(f"{IFACE}.Update", {"id": key["id"], "scope": [value]})) == (
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
    assert field_refusal(alice.err(f"{IFACE}.Create", {"name": "k", "owner": owner})) == (
        INVALID, {"parameter": "owner"})
    root = apikeyd.client()
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", "owner": owner})) == (
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
    assert field_refusal(alice.err(f"{IFACE}.Create", {"name": "k", "scope": scope})) == (
        INVALID, {"parameter": "scope"})
    key = alice.create("mine", scope=["sshd"])["key"]
    assert field_refusal(alice.err(f"{IFACE}.Update", {"id": key["id"], "scope": scope})) == (
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


# ---------------------------------------------------------------- refusals that say the rule
#
# A value of a key's field that Create or Update refuses is answered with
# InvalidParameter naming the parameter and, beside it, a `reason`: what is
# wrong with the value, then the field's rule.  Every client gets the words;
# apikeyctl prints them.

NAME_RULE = ("a key's name is 1 to 128 bytes of UTF-8 text without control characters "
             "(such as a newline or a tab)")
DESCRIPTION_RULE = ("a description is at most 1024 bytes of UTF-8 text without control "
                    "characters (such as a newline or a tab)")
OWNER_RULE = ("an owner is 1 to 256 ASCII letters, digits, '.', '_', '-' and '@', the first a "
              "letter, a digit or '_', optionally ending in '$', not digits alone")
SCOPE_RULE = ("a scope is at most 32 services, each 1 to 64 ASCII letters, digits, '.', '_' "
              "and '-', the first a letter, a digit or '_', none twice")
ROLE_RULE = ("a role is admin (every permission), readonly (read) or custom (the permissions "
             "given)")
PERMISSIONS_RULE = ("permissions are one or more of create, read, write, delete, invite, for "
                    "the role custom (admin has them all, readonly has read)")
EXPIRES_RULE = ("expires is a duration (45s, 90m, 12h, 30d, 2w), an ISO 8601 date or time in "
                "the future (2027-01-31, 2027-01-31T12:00:00Z) or \"never\"")
NOT_TEXT = ("it holds a control character (such as a newline or a tab) or bytes that are not "
            "UTF-8; ")

# (parameters, the parameter refused, its reason); owner is Create's alone.
FIELD_REFUSALS = [
    pytest.param({"name": "n" * 129}, "name", "it is 129 bytes long, more than 128; " + NAME_RULE,
                 id="name-129"),
    pytest.param({"name": "\u00fc" * 65}, "name",
                 "it is 130 bytes long, more than 128; " + NAME_RULE, id="name-65-umlauts"),
    pytest.param({"name": ""}, "name", "it is empty; " + NAME_RULE, id="name-empty"),
    pytest.param({"name": "a\tb"}, "name", NOT_TEXT + NAME_RULE, id="name-tab"),
    pytest.param({"description": "two\nlines"}, "description", NOT_TEXT + DESCRIPTION_RULE,
                 id="description-newline"),
    pytest.param({"description": "d" * 1025}, "description",
                 "it is 1025 bytes long, more than 1024; " + DESCRIPTION_RULE,
                 id="description-1025"),
    pytest.param({"role": "custom"}, "permissions",
                 "none were given, and the role custom needs them; " + PERMISSIONS_RULE,
                 id="custom-without-permissions"),
    pytest.param({"role": "admin", "permissions": ["read"]}, "permissions",
                 "the role admin has every permission, not these; " + PERMISSIONS_RULE,
                 id="admin-with-read"),
    pytest.param({"role": "readonly", "permissions": ["read", "write"]}, "permissions",
                 "the role readonly has read alone, not these; " + PERMISSIONS_RULE,
                 id="readonly-with-write"),
    pytest.param({"permissions": []}, "permissions", "none were given; " + PERMISSIONS_RULE,
                 id="permissions-empty"),
    pytest.param({"permissions": ["read", "fly"]}, "permissions",
                 "one of them is not a permission; " + PERMISSIONS_RULE, id="permission-unknown"),
    pytest.param({"role": "superuser"}, "role", "it is not a role; " + ROLE_RULE, id="role"),
    pytest.param({"scope": ["sshd", "sshd"]}, "scope", "entry 2: it is given twice; " + SCOPE_RULE,
                 id="scope-twice"),
    pytest.param({"scope": ["x" * 65]}, "scope",
                 "entry 1: it is 65 bytes long, more than 64; " + SCOPE_RULE, id="scope-65"),
    pytest.param({"scope": ["sshd", ""]}, "scope", "entry 2: it is empty; " + SCOPE_RULE,
                 id="scope-empty-entry"),
    pytest.param({"scope": ["sshd", "a b"]}, "scope",
                 "entry 2: its character 2 (' ') is not allowed there; " + SCOPE_RULE,
                 id="scope-space"),
    pytest.param({"scope": ["-sshd"]}, "scope",
                 "entry 1: its character 1 ('-') cannot begin it; " + SCOPE_RULE,
                 id="scope-dash-first"),
    pytest.param({"scope": [f"s{i}" for i in range(33)]}, "scope",
                 "it has 33 entries; " + SCOPE_RULE, id="scope-33"),
    pytest.param({"scope": ["a\u009bb"]}, "scope", NOT_TEXT + SCOPE_RULE, id="scope-C1"),
    pytest.param({"expires": "30x"}, "expires",
                 "it is not a duration, a date, a time or \"never\"; " + EXPIRES_RULE,
                 id="expires-garbage"),
    pytest.param({"expires": "2001-01-01"}, "expires",
                 "it is not in the future, or too far ahead to be a time; " + EXPIRES_RULE,
                 id="expires-past"),
]

OWNER_REFUSALS = [
    pytest.param("", "it is empty; ", id="empty"),
    pytest.param("o" * 257, "it is 257 bytes long, more than 256; ", id="257"),
    pytest.param("1000", "it is digits alone, which reads as a uid; ", id="digits"),
    pytest.param("bad owner", "its character 4 (' ') is not allowed there; ", id="space"),
    pytest.param(".alice", "its character 1 ('.') cannot begin it; ", id="dot-first"),
    pytest.param("a$b", "its character 2 ('$') is not allowed there; ", id="dollar-inside"),
    pytest.param("j\u00f6rg", "its character 2 is not ASCII; ", id="non-ascii"),
    pytest.param("esc\x1b", NOT_TEXT, id="escape"),
]


@pytest.mark.parametrize("params,parameter,reason", FIELD_REFUSALS)
def test_create_and_update_refusals_say_what_is_wrong_and_the_rule(test_users, apikeyd, as_user,
                                                                    params, parameter, reason):
    alice = as_user(ALICE, socket=apikeyd.socket)
    want = (INVALID, {"parameter": parameter, "reason": reason})
    assert alice.err(f"{IFACE}.Create", {"name": "k", **params}) == want
    key = alice.create("mine")["key"]
    assert alice.err(f"{IFACE}.Update", {"id": key["id"], **params}) == want
    assert apikeyd.client().list()["keys"] == [key]


@pytest.mark.parametrize("owner,problem", OWNER_REFUSALS)
def test_owner_refusals_say_what_is_wrong_and_the_rule(test_users, apikeyd, as_user, owner,
                                                       problem):
    want = (INVALID, {"parameter": "owner", "reason": problem + OWNER_RULE})
    assert as_user(ALICE, socket=apikeyd.socket).err(
        f"{IFACE}.Create", {"name": "k", "owner": owner}) == want
    assert apikeyd.client().err(f"{IFACE}.Create", {"name": "k", "owner": owner}) == want


def test_no_owner_for_a_uid_without_a_name(apikeyd):
    """A caller whose uid has no user name, naming no owner: the reason says
    that, not that an owner it never sent is empty."""
    uid = 64999
    try:
        pwd.getpwuid(uid)
        pytest.skip(f"uid {uid} has a name here")
    except KeyError:
        pass
    call = ("import json, socket, sys\n"
            "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
            "s.sendall(json.dumps({'method': sys.argv[2], 'parameters': {'name': 'k'}})"
            ".encode() + b'\\0')\n"
            "buf = b''\n"
            "while not buf.endswith(b'\\0'): buf += s.recv(65536)\n"
            "print(buf[:-1].decode())\n")
    r = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
                        sys.executable, "-c", call, str(apikeyd.socket), f"{IFACE}.Create"],
                       capture_output=True, text=True, timeout=20, check=True)
    assert json.loads(r.stdout) == {"error": INVALID, "parameters": {
        "parameter": "owner",
        "reason": "none was given, and the calling uid has no user name; " + OWNER_RULE}}


def test_other_refusals_keep_the_bare_invalid_parameter(test_users, apikeyd, as_user):
    """The reason is for a key's fields; a filter or a Verify text is refused
    as before, with the parameter alone."""
    alice = as_user(ALICE, socket=apikeyd.socket)
    assert alice.err(f"{IFACE}.List", {"owner": "a\nb"}) == (INVALID, {"parameter": "owner"})
    assert alice.err(f"{IFACE}.Create", {"name": 5}) == (INVALID, {"parameter": "name"})


@pytest.mark.parametrize("args,message", [
    pytest.param(["create", "n" * 129],
                 "the daemon refused the name: it is 129 bytes long, more than 128; " + NAME_RULE,
                 id="name-129"),
    pytest.param(["create", ""], "the daemon refused the name: it is empty; " + NAME_RULE,
                 id="name-empty"),
    pytest.param(["create", "k", "--description", "two\nlines"],
                 "the daemon refused --description: " + NOT_TEXT + DESCRIPTION_RULE,
                 id="description-newline"),
    pytest.param(["create", "k", "--role", "custom"],
                 "the daemon refused --permissions: none were given, and the role custom needs "
                 "them; " + PERMISSIONS_RULE, id="custom-without-permissions"),
    pytest.param(["create", "k", "--owner", "1000"],
                 "the daemon refused --owner: it is digits alone, which reads as a uid; "
                 + OWNER_RULE, id="owner-digits"),
    pytest.param(["update", None, "--name", ""],
                 "the daemon refused the name: it is empty; " + NAME_RULE, id="update-name-empty"),
    pytest.param(["update", None, "--role", "custom"],
                 "the daemon refused --permissions: none were given, and the role custom needs "
                 "them; " + PERMISSIONS_RULE, id="update-custom-without-permissions"),
])
def test_apikeyctl_prints_the_reason(test_users, apikeyd, args, message):
    key = apikeyd.client().create("mine", owner=ALICE)["key"]
    args = [key["id"] if a is None else a for a in args]
    r = run_ctl(*args, socket=apikeyd.socket, user=ALICE, rc=EXIT_REFUSED)
    assert r.err == f"apikeyctl: {message} [{INVALID}]\n", r
    assert apikeyd.client().list()["keys"] == [key]
