# SPDX-License-Identifier: MIT
"""Bulk changes (ChangeMatching; apikeyctl disable|enable|revoke|delete
--owner USER [--name PREFIX] [--status S] [--dry-run]) against the real
daemon: every matching key the caller may change, in one transaction, one
audit event per key; the dry run, the question on a terminal; an ordinary
user touching only their own keys."""

import json

import pytest

from conftest import ALICE, BOB, IFACE, check_key, check_reply, list_all_audit
from test_apikeyctl import (APIKEYCTL, EXIT_LOCAL, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, Ctl,
                            parse_table, run_pty)
from test_sessions import END_WITHIN, list_sessions, stack
from test_sessions import USER as SESSION_USER
from test_sessions import admin, d, sessions  # noqa: F401 - fixtures
from pam_fixtures import build, pam  # noqa: F401 - fixtures

DENIED = f"{IFACE}.PermissionDenied"


@pytest.fixture
def keys(test_users, apikeyd):
    """Alice's ci-build, ci-deploy and laptop, Bob's ci-nightly: {name: (key, token)}."""
    root = apikeyd.client()
    made = {}
    for name, owner in (("ci-build", ALICE), ("ci-deploy", ALICE), ("laptop", ALICE),
                        ("ci-nightly", BOB)):
        r = root.create(name, owner=owner)
        made[name] = (check_key(r["key"]), r["token"])
    return made


def codes(apikeyd, keys):
    root = apikeyd.client()
    return {name: root.verify(token)["code"] for name, (_, token) in keys.items()}


def test_revoke_every_key_of_an_owner(apikeyd, keys):
    ctl = Ctl(apikeyd.socket)
    r = ctl.ok("revoke", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Revoked 3 keys of {ALICE}.", r
    for name in ("ci-build", "ci-deploy", "laptop"):
        assert f"Revoked key {keys[name][0]['id']} '{name}'." in r.out, r
    assert codes(apikeyd, keys) == {"ci-build": "REVOKED", "ci-deploy": "REVOKED",
                                    "laptop": "REVOKED", "ci-nightly": "VALID"}

    # One audit event per key, as the single-key call records it.
    events = [e for e in list_all_audit(apikeyd.client()) if e["action"] == "revoke"]
    assert sorted(e["key_id"] for e in events) == sorted(
        keys[n][0]["id"] for n in ("ci-build", "ci-deploy", "laptop"))
    assert all(e["result"] == "ok" and "3 keys of akt-alice" in e["detail"] for e in events)

    # Nothing left to revoke: said so, and nothing is written.
    r = ctl.ok("revoke", "--owner", ALICE, "--yes")
    assert r.out == f"No keys of {ALICE} to revoke; nothing changed.\n", r


def test_filters_and_dry_run(apikeyd, keys):
    ctl = Ctl(apikeyd.socket)
    r = ctl.ok("disable", "--owner", ALICE, "--name", "ci-", "--dry-run")
    assert r.out.startswith(f"Would disable 2 keys of {ALICE}:\n"), r
    rows = parse_table(r.out.split("\n", 1)[1])
    assert sorted(row["ID"] for row in rows) == sorted(
        keys[n][0]["id"] for n in ("ci-build", "ci-deploy"))
    assert set(codes(apikeyd, keys).values()) == {"VALID"}  # nothing changed

    r = ctl.ok("disable", "--owner", ALICE, "--name", "ci-", "--yes")
    assert r.out.splitlines()[-1] == f"Disabled 2 keys of {ALICE}.", r
    assert codes(apikeyd, keys)["ci-build"] == "DISABLED"
    assert codes(apikeyd, keys)["laptop"] == "VALID"

    # --status picks the disabled ones; the enable gives them back.
    reply = apikeyd.client().ok(f"{IFACE}.ChangeMatching",
                                {"action": "enable", "owner": ALICE, "status": "disabled",
                                 "dry_run": True})
    check_reply("ChangeMatching", reply)
    assert sorted(k["name"] for k in reply["keys"]) == ["ci-build", "ci-deploy"]
    assert reply["refused"] == []
    r = ctl.ok("enable", "--owner", ALICE, "--status", "disabled", "--yes")
    assert r.out.splitlines()[-1] == f"Enabled 2 keys of {ALICE}.", r
    assert set(codes(apikeyd, keys).values()) == {"VALID"}

    r = ctl.json("delete", "--owner", ALICE, "--name", "ci-", "--yes")
    check_reply("ChangeMatching", r)
    assert sorted(k["name"] for k in r["keys"]) == ["ci-build", "ci-deploy"]
    assert codes(apikeyd, keys) == {"ci-build": "NOT_FOUND", "ci-deploy": "NOT_FOUND",
                                    "laptop": "VALID", "ci-nightly": "VALID"}


def test_asks_on_a_terminal(apikeyd, keys):
    argv = [str(APIKEYCTL), "--socket", apikeyd.socket, "revoke", "--owner", ALICE]
    question = (f"Revoke 3 keys of {ALICE}? A revoked key never works again. "
                "('--dry-run' lists them.) [y/N] ")
    rc, text = run_pty(argv, answers=[("[y/N] ", "n\n")])
    assert rc == EXIT_LOCAL and question in text and "Nothing changed." in text, text
    assert set(codes(apikeyd, keys).values()) == {"VALID"}

    rc, text = run_pty(argv, answers=[("[y/N] ", "y\n")])
    assert rc == EXIT_OK and f"Revoked 3 keys of {ALICE}." in text, text
    assert codes(apikeyd, keys)["laptop"] == "REVOKED"


def test_usage(apikeyd):
    ctl = Ctl(apikeyd.socket)
    r = ctl("revoke", rc=EXIT_USAGE)
    assert "missing argument: revoke KEY, or --owner USER for every key of an owner" in r.err, r
    r = ctl("disable", "abcdefghijkl", "--owner", ALICE, rc=EXIT_USAGE)
    assert "give a KEY, or --owner USER for every matching key of an owner, not both" in r.err
    r = ctl("delete", "--owner", ALICE, "--status", "gone", rc=EXIT_USAGE)
    assert "--status must be enabled, disabled, revoked or expired, not 'gone'" in r.err, r


def test_user_changes_only_their_own_keys(apikeyd, keys):
    alice = Ctl(apikeyd.socket, ALICE)
    r = alice("revoke", "--owner", BOB, "--yes", rc=EXIT_REFUSED)
    assert "only an admin or the key's owner may do this" in r.err, r
    assert codes(apikeyd, keys)["ci-nightly"] == "VALID"

    # A key an admin disabled: Alice sees it, may not enable it, and is told so.
    laptop = keys["laptop"][0]["id"]
    apikeyd.client().ok(f"{IFACE}.Disable", {"id": laptop})
    r = alice.ok("disable", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Disabled 2 keys of {ALICE}.", r
    r = alice.ok("enable", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Enabled 2 keys of {ALICE}.", r
    assert (f"Left alone (1):\n  {laptop} 'laptop': an admin disabled this key; only an admin "
            "may enable it") in r.err, r
    assert codes(apikeyd, keys) == {"ci-build": "VALID", "ci-deploy": "VALID",
                                    "laptop": "DISABLED", "ci-nightly": "VALID"}

    r = alice.ok("revoke", "--owner", ALICE, "--yes")
    assert r.out.splitlines()[-1] == f"Revoked 3 keys of {ALICE}.", r
    assert codes(apikeyd, keys) == {"ci-build": "REVOKED", "ci-deploy": "REVOKED",
                                    "laptop": "REVOKED", "ci-nightly": "VALID"}


def test_key_without_the_permission_changes_nothing(apikeyd, keys, tmp_path):
    root = apikeyd.client()
    reader = root.create("reader", owner=ALICE, role="readonly")["token"]
    error, params = root.err(f"{IFACE}.ChangeMatching",
                             {"action": "revoke", "owner": ALICE, "auth": reader})
    assert error == DENIED, params
    assert params["reason"] == "the API key given in auth lacks the permission for this"
    assert set(codes(apikeyd, keys).values()) == {"VALID"}


def test_revoke_ends_the_sessions(pam, d, admin, sessions):
    """A login opened with one of the keys ends, as after Revoke of that key."""
    created = admin.create("laptop", owner=SESSION_USER)
    key_id = created["key"]["id"]
    s = sessions(pam, stack(pam, d), SESSION_USER, created["token"])
    assert [x["pid"] for x in list_sessions(admin, key_id)] == [s.pid]

    reply = admin.ok(f"{IFACE}.ChangeMatching", {"action": "revoke", "owner": SESSION_USER})
    assert [k["id"] for k in reply["keys"]] == [key_id]
    assert s.ended_within(END_WITHIN) is not None, \
        f"session still running {END_WITHIN}s after the bulk revoke"
    assert list_sessions(admin) == []


# ---------------------------------------------------------------- create --from


def all_names(apikeyd):
    return sorted(k["name"] for k in apikeyd.client().list()["keys"])


def test_create_from_file(apikeyd, test_users, tmp_path):
    f = tmp_path / "keys.jsonl"
    f.write_text(json.dumps({"name": "ci-build", "owner": ALICE, "scope": ["sshd"]}) + "\n\n" +
                 json.dumps({"name": "ci-deploy", "owner": ALICE, "expires": "30d"}) + "\r\n" +
                 json.dumps({"name": "nightly", "owner": BOB, "role": "custom",
                             "permissions": ["read", "write"]}))
    r = Ctl(apikeyd.socket).ok("create", "--from", f)
    lines = r.out.splitlines()
    assert len(lines) == 3, r
    assert r.err == ("Created 3 keys. Store these tokens now: they are shown only this once, "
                     "and they cannot be shown again.\n"), r
    root = apikeyd.client()
    for line, (name, owner) in zip(lines, [("ci-build", ALICE), ("ci-deploy", ALICE),
                                           ("nightly", BOB)]):
        made = json.loads(line)
        check_reply("Create", made)
        assert (made["key"]["name"], made["key"]["owner"]) == (name, owner)
        v = root.verify(made["token"], service="sshd")
        assert v["code"] == "VALID" and v["key"]["id"] == made["key"]["id"], v
    assert json.loads(lines[2])["key"]["permissions"] == ["read", "write"]
    # One audit event per key, as Create records it.
    created = [e["key_id"] for e in list_all_audit(root) if e["action"] == "create"]
    assert created == [json.loads(line)["key"]["id"] for line in lines]


@pytest.mark.parametrize("bad,message,rc", [
    ('{"name": "third",', "{f}, line 4: not JSON: ", EXIT_LOCAL),
    ('["third"]', "{f}, line 4: not a JSON object; each line must be one JSON object of "
                  "Create's parameters", EXIT_LOCAL),
    ('{"name": "third", "expires": "soon"}',
     'the daemon refused --expires: it is not a duration, a date, a time or "never"',
     EXIT_REFUSED),
    ('{"name": "first", "owner": "akt-alice"}',
     "akt-alice already has a key named 'first'; choose another name", EXIT_REFUSED),
    ('{"name": "third", "colour": "red"}', "the daemon refused the value of colour",
     EXIT_REFUSED),
])
def test_create_from_bad_line_creates_nothing(apikeyd, test_users, tmp_path, bad, message, rc):
    f = tmp_path / "keys.jsonl"
    f.write_text('{"name": "first", "owner": "akt-alice"}\n'
                 '{"name": "second", "owner": "akt-alice"}\n'
                 '\n' + bad + '\n{"name": "fifth"}\n')
    r = Ctl(apikeyd.socket)("create", "--from", f, rc=rc)
    assert message.format(f=f) in r.err, r
    if rc == EXIT_REFUSED:
        assert f"that is {f}, line 4; nothing was created" in r.err, r
    assert "nothing was created" in r.err and r.out == "", r
    assert all_names(apikeyd) == []


def test_create_many_names_the_index(apikeyd):
    root = apikeyd.client()
    error, params = root.err(f"{IFACE}.CreateMany", {"keys": [
        {"name": "a"}, {"name": "b", "role": "wizard"}]})
    assert error == "org.varlink.service.InvalidParameter", params
    assert params["parameter"] == "role" and params["index"] == 1, params
    error, params = root.err(f"{IFACE}.CreateMany", {"keys": [{"name": "a"}, {"name": "a"}]})
    assert (error, params) == (f"{IFACE}.NameTaken", {"owner": "root", "name": "a", "index": 1})
    error, params = root.err(f"{IFACE}.CreateMany", {"keys": [{"name": "a", "auth": "x"}]})
    assert params == {"parameter": "auth", "index": 0}, params
    assert all_names(apikeyd) == []
    reply = root.ok(f"{IFACE}.CreateMany", {"keys": []})
    assert reply == {"created": []}


def test_create_from_as_a_user(apikeyd, test_users, tmp_path):
    """Each line is authorized as Create is: a user creates for themself only."""
    alice = Ctl(apikeyd.socket, ALICE)
    lines = '{"name": "mine"}\n{"name": "for-bob", "owner": "akt-bob"}\n'
    r = alice("create", "--from", "-", input=lines, rc=EXIT_REFUSED)
    assert "permission denied: " in r.err, r
    assert "that is standard input, line 2; nothing was created" in r.err, r
    assert all_names(apikeyd) == []

    r = alice.ok("create", "--from", "-", input='{"name": "mine"}\n{"name": "also-mine"}\n')
    made = [json.loads(line)["key"] for line in r.out.splitlines()]
    assert [(k["name"], k["owner"]) for k in made] == [("mine", ALICE), ("also-mine", ALICE)]


def test_create_from_usage(apikeyd, tmp_path):
    ctl = Ctl(apikeyd.socket)
    r = ctl("create", "--from", tmp_path / "missing", rc=EXIT_LOCAL)
    assert f"cannot read {tmp_path / 'missing'}: No such file or directory" in r.err, r
    r = ctl("create", "x", "--from", "-", rc=EXIT_USAGE)
    assert "--from FILE gives every key's parameters; give no NAME or other option" in r.err
    r = ctl("create", rc=EXIT_USAGE)
    assert "missing argument: create NAME [OPTIONS], or create --from FILE" in r.err, r
    r = ctl("create", "--from", "-", input="\n \n", rc=EXIT_LOCAL)
    assert "standard input describes no keys; nothing was created" in r.err, r


def test_create_from_a_file_larger_than_one_call(apikeyd):
    lines = "".join(json.dumps({"name": f"k{i}", "description": "x" * 200}) + "\n"
                    for i in range(400))
    r = Ctl(apikeyd.socket)("create", "--from", "-", input=lines, rc=EXIT_REFUSED)
    assert ("apikeyctl: standard input is one call: split it into smaller files (each is "
            "created whole or not at all), or raise max_message_size in apikeyd.conf; nothing "
            "was created") in r.err, r
    assert all_names(apikeyd) == []
