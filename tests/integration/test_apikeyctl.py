# SPDX-License-Identifier: MIT
"""apikeyctl against the real daemon: every command, as root, as an admin-group
member and as ordinary users, in table and JSON form; its exit codes and
messages; the terminal behaviour (prompts, fitting the width); the man page
and the bash completion; and the token never showing where it must not."""

import base64
import fcntl
import hashlib
import json
import os
import pty
import pwd
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import termios
import threading
import time
from pathlib import Path

import pytest

from conftest import (ADMIN, ALICE, BOB, IFACE, ISO_UTC_RE, REPO, TOKEN_RE, check_key,
                      check_reply, list_all_ids, make_token, other_secret, parse_iso,
                      reachable, split_token)
from pam_fixtures import listener, sockdir  # noqa: F401 - fixtures

APIKEYCTL = Path(os.environ.get("APIKEYCTL") or
                 Path(os.environ.get("APIKEYD_BUILD", str(REPO / "build"))) / "apikeyctl")
COMPLETION = REPO / "apikeyd" / "ctl" / "apikeyctl.bash-completion"
MANPAGE = REPO / "apikeyd" / "ctl" / "apikeyctl.1"

# The exit codes apikeyctl(1) documents.
EXIT_OK, EXIT_LOCAL, EXIT_USAGE, EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_NOT_VALID = range(6)

COMMANDS = ["create", "list", "show", "update", "rotate", "disable", "enable", "revoke", "delete",
            "sessions", "usage", "verify", "shared-secret", "audit", "lockout", "status", "backup",
            "fleet"]
DEFAULT_SOCKET = "/run/apikeyd/io.apikeyd.Keys"
LIST_HEADERS = ["ID", "NAME / DESCRIPTION", "OWNER", "ROLE", "SCOPE", "EXPIRES", "STATUS",
                "LAST USED"]
NO_SOCKET = "/nonexistent/apikeyd.sock"


# ---------------------------------------------------------------- running apikeyctl


class Result:
    def __init__(self, argv, rc, out, err):
        self.argv, self.rc, self.out, self.err = argv, rc, out, err

    def __repr__(self):
        return f"{self.argv}: rc={self.rc}\n--- stdout\n{self.out}--- stderr\n{self.err}"

    def json(self):
        return json.loads(self.out)


def base_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if k not in ("COLUMNS", "APIKEYD_SOCKET", "LANG", "LANGUAGE") and
           not k.startswith("LC_")}
    env.update({"LC_ALL": "C.UTF-8", "TZ": "UTC"})
    env.update(extra or {})
    return env


def sanitizer_clean(text):
    assert "Sanitizer" not in text and "runtime error:" not in text, text


def run_ctl(*args, socket=None, user=None, input=None, env=None, rc=None, timeout=30):
    """Run apikeyctl (as `user` through runuser when given) with `input` on
    stdin (otherwise /dev/null: not a terminal).  Checks `rc` when given."""
    argv = [str(APIKEYCTL if user is None else reachable(APIKEYCTL))]
    if socket is not None:
        argv += ["--socket", str(socket)]
    argv += [str(a) for a in args]
    if user is not None:
        argv = ["runuser", "-u", user, "--"] + argv
    p = subprocess.run(argv, input=input, stdin=None if input is not None else subprocess.DEVNULL,
                       capture_output=True, text=True, env=base_env(env), timeout=timeout)
    r = Result(argv, p.returncode, p.stdout, p.stderr)
    sanitizer_clean(r.err)
    if rc is not None:
        assert r.rc == rc, r
    return r


class Ctl:
    """apikeyctl bound to one daemon's socket and one user (None: root)."""

    def __init__(self, socket_path, user=None):
        self.socket, self.user = socket_path, user

    def __call__(self, *args, **kw):
        kw.setdefault("socket", self.socket)
        kw.setdefault("user", self.user)
        return run_ctl(*args, **kw)

    def ok(self, *args, **kw):
        return self(*args, rc=EXIT_OK, **kw)

    def json(self, *args, **kw):
        return self.ok("--json", *args, **kw).json()

    def create(self, name, *args, **kw):
        """Create a key with --json; (key, token)."""
        r = self.json("create", name, *args, **kw)
        return check_key(r["key"]), r["token"]

    def as_user(self, user):
        return Ctl(self.socket, user)


def run_pty(argv, answers=(), env=None, cols=100, timeout=20):
    """Run `argv` with stdin, stdout and stderr on a pseudo-terminal `cols`
    wide; `answers` are (expected text, reply) pairs typed when the text has
    appeared.  Returns (rc, everything the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=base_env(env),
                         close_fds=True)
    os.close(slave)
    out, pending = b"", list(answers)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every end of the terminal is closed
                    chunk = b""
                if not chunk and p.poll() is not None:
                    break
                out += chunk
                while pending and pending[0][0].encode() in out:
                    os.write(master, pending.pop(0)[1].encode())
            elif p.poll() is not None:
                break
        else:
            p.kill()
            raise AssertionError(f"{argv} did not finish within {timeout}s: {out!r}")
        rc = p.wait(5)
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode(errors="replace").replace("\r\n", "\n")
    sanitizer_clean(text)
    return rc, text


def parse_table(text, headers=LIST_HEADERS):
    """Rows of a table as dicts, cut at the header's column positions."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, text
    header = lines[0]
    starts = [header.index(h) for h in headers]
    assert starts == sorted(starts), header
    rows = []
    for line in lines[1:]:
        if re.fullmatch(r"\d+ keys? listed\.", line):
            continue
        cells = [line[s:(starts[i + 1] if i + 1 < len(starts) else None)].strip()
                 for i, s in enumerate(starts)]
        rows.append(dict(zip(headers, cells)))
    return rows


def rows_by_id(text):
    return {r["ID"]: r for r in parse_table(text)}


def display_width(line):
    return len(line)  # the tests write ASCII names; "…" is one cell and one character


@pytest.fixture
def ctl(apikeyd):
    """apikeyctl as root against a fresh daemon."""
    if not APIKEYCTL.is_file():
        pytest.fail(f"{APIKEYCTL} is missing: build it with `make` first", pytrace=False)
    return Ctl(apikeyd.socket)


@pytest.fixture
def users(test_users, ctl):
    """(root, alice, bob, admin-group member) apikeyctl runners."""
    return ctl, ctl.as_user(ALICE), ctl.as_user(BOB), ctl.as_user(ADMIN)


def secret_file(path, content, owner=None, mode=0o600):
    path.write_text(content)
    os.chmod(path, mode)
    if owner:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


@pytest.fixture
def shared_dir():
    """A directory every test user can enter (tmp_path's parents are 0700)."""
    d = Path(tempfile.mkdtemp(prefix="akt-ctl-", dir="/tmp"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- help, version, man page


def test_help_lists_every_command():
    r = run_ctl("--help", rc=EXIT_OK)
    for cmd in COMMANDS:
        assert re.search(rf"^  {re.escape(cmd)}\b", r.out, re.M), (cmd, r.out)
    for opt in ("--socket", "--json", "--auth-file", "--help", "--version"):
        assert opt in r.out
    assert r.err == ""
    assert run_ctl("help", rc=EXIT_OK).out == r.out


@pytest.mark.parametrize("cmd", COMMANDS)
def test_every_command_has_help(cmd):
    for argv in ([cmd, "--help"], [cmd, "-h"], ["help", cmd], ["--help", cmd]):
        r = run_ctl(*argv, socket=NO_SOCKET, rc=EXIT_OK)
        assert r.out.startswith("Usage: apikeyctl "), r
        assert f" {cmd}" in r.out.splitlines()[0], r
        assert r.err == ""


def test_command_help_names_its_options():
    expected = {
        "create": ["--owner", "--description", "--role", "--permissions", "--scope", "--expires"],
        "list": ["--status", "--owner", "--expiring", "--name", "--quiet"],
        "update": ["--name", "--description", "--scope", "--permissions", "--expires"],
        "delete": ["--yes"],
        "revoke": ["--yes"],
        "verify": ["--service", "--user", "--rhost"],
        "audit": ["--since", "--key"],
    }
    for cmd, opts in expected.items():
        out = run_ctl(cmd, "--help", rc=EXIT_OK).out
        for o in opts:
            assert o in out, (cmd, o, out)


def test_version_matches_the_daemon(ctl, apikeyd):
    out = run_ctl("--version", rc=EXIT_OK).out
    info = apikeyd.client().ok("org.varlink.service.GetInfo")
    assert out == f"apikeyctl {info['version']}\n"
    assert ctl.json("status")["version"] == info["version"]


def test_man_page_renders_without_warnings():
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    r = subprocess.run(["man", "--warnings", "-l", str(MANPAGE)], capture_output=True,
                       text=True, env=base_env({"MANWIDTH": "80"}), timeout=60)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = re.sub(r".\x08", "", r.stdout)
    for cmd in COMMANDS:
        assert re.search(rf"^\s+{re.escape(cmd)}\b", text, re.M), cmd
    section = text.split("EXIT STATUS", 1)[1].split("ENVIRONMENT", 1)[0]
    for code in range(6):
        assert re.search(rf"^\s+{code}\s", section, re.M), code
    for name in ("NoSuchKey", "PermissionDenied", "PolicyViolation", "APIKEYD_SOCKET"):
        assert name in text


# ---------------------------------------------------------------- usage errors


@pytest.mark.parametrize("argv,message", [
    ([], "no command given"),
    (["lst"], "unknown command 'lst'; did you mean 'list'?"),
    (["list", "--bogus"], "unknown option '--bogus'"),
    (["list", "-x"], "unknown option '-x'"),
    (["list", "--status"], "option '--status' needs a value"),
    (["list", "--status", "gone"], "--status must be enabled, disabled, revoked or expired"),
    (["list", "--expiring", "soon"], "--expiring 'soon' is not a duration"),
    (["list", "--quiet", "--json"], "--quiet and --json exclude each other"),
    (["list", "extra"], "unexpected argument 'extra'"),
    (["create"], "missing argument"),
    (["create", "a", "b"], "unexpected argument 'b'"),
    (["create", "a", "--role", "root"], "--role must be admin, readonly or custom"),
    (["create", "a", "--permissions", "read,fly"], "unknown permission 'fly'"),
    (["create", "a", "--expires", "tomorrow"], "--expires 'tomorrow' is not a duration"),
    (["create", "a", "--expires", "2001-01-01"], "--expires '2001-01-01' is not in the future"),
    (["create", "a", "--status", "enabled"], "unknown option '--status'"),
    (["show"], "missing argument"),
    (["show", ""], "'' is not a key id (12 letters and digits) or a key name"),
    (["update", "AAAAAAAAAAAA"], "nothing to change"),
    (["delete", "AAAAAAAAAAA\x1b"], "is not a key id"),
    (["shared-secret", "print"], "expected 'show' or 'rotate'"),
    (["audit", "--since", "yesterday"], "--since 'yesterday' is not a duration"),
    (["audit", "--key", "nope"], "'nope' is not a key id"),
])
def test_usage_errors(argv, message):
    # NO_SOCKET: a usage error is found before any connection (else exit 4).
    r = run_ctl(*argv, socket=NO_SOCKET, rc=EXIT_USAGE)
    assert message in r.err, r
    assert "Try 'apikeyctl" in r.err
    assert r.out == ""


# ---------------------------------------------------------------- the daemon unreachable


def test_daemon_not_running(tmp_path):
    missing = tmp_path / "io.apikeyd.Keys"
    r = run_ctl("list", socket=missing, rc=EXIT_UNREACHABLE)
    assert r.err == (f"apikeyctl: the daemon is not running at {missing} "
                     "(is apikeyd.socket enabled?)\n")
    # The environment names the socket when --socket does not.
    r = run_ctl("status", env={"APIKEYD_SOCKET": str(missing)}, rc=EXIT_UNREACHABLE)
    assert str(missing) in r.err


def test_default_socket_is_named_when_absent():
    if os.path.exists(DEFAULT_SOCKET):
        pytest.skip(f"a daemon answers at {DEFAULT_SOCKET} on this machine")
    r = run_ctl("list", rc=EXIT_UNREACHABLE)
    assert r.err == (f"apikeyctl: the daemon is not running at {DEFAULT_SOCKET} "
                     "(is apikeyd.socket enabled?)\n")


def test_socket_refusing_connections(tmp_path):
    path = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()  # a socket file nobody listens on: ECONNREFUSED
    r = run_ctl("list", socket=path, rc=EXIT_UNREACHABLE)
    assert "the daemon is not running at" in r.err


class FakeDaemon:
    """A socket that answers every connection with `behaviour`."""

    def __init__(self, path, behaviour):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(8)
        self.behaviour = behaviour
        self.conns = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            c.settimeout(15)
            try:
                buf = b""
                while b"\0" not in buf:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                self.behaviour(c, buf)
            except OSError:
                pass

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("behaviour,message", [
    ("close", "closed the connection before answering"),
    ("garbage", "sent a reply apikeyctl cannot read"),
    ("wrong-shape", "is not what io.apikeyd.Keys describes"),
    ("silent", "did not answer within 10 seconds"),
])
def test_daemon_answering_badly(tmp_path, behaviour, message):
    def act(c, request):
        if behaviour == "close":
            c.close()
        elif behaviour == "garbage":
            c.sendall(b"not json\0")
        elif behaviour == "wrong-shape":
            c.sendall(json.dumps({"parameters": {"keys": "nope"}}).encode() + b"\0")
        else:
            time.sleep(12)

    path = tmp_path / "fake.sock"
    fake = FakeDaemon(path, act)
    try:
        start = time.monotonic()
        r = run_ctl("list", socket=path, rc=EXIT_UNREACHABLE)
        assert message in r.err, r
        if behaviour == "silent":
            assert 9 <= time.monotonic() - start < 12
    finally:
        fake.close()


# ---------------------------------------------------------------- refused by the daemon


def test_no_such_key(ctl):
    r = ctl("show", "7Hq2LmX9aB3z", rc=EXIT_REFUSED)
    assert r.err.startswith("apikeyctl: no such key 7Hq2LmX9aB3z ")
    assert "[io.apikeyd.Keys.NoSuchKey]" in r.err
    for cmd in ("disable", "enable", "revoke", "delete"):
        r = ctl(cmd, "7Hq2LmX9aB3z", rc=EXIT_REFUSED)
        assert "no such key 7Hq2LmX9aB3z" in r.err
    r = ctl("update", "7Hq2LmX9aB3z", "--name", "n", rc=EXIT_REFUSED)
    assert "no such key 7Hq2LmX9aB3z" in r.err


def test_name_taken(ctl):
    ctl.create("deploy")
    r = ctl("create", "deploy", rc=EXIT_REFUSED)
    assert r.err == ("apikeyctl: root already has a key named 'deploy'; choose another name "
                     "[io.apikeyd.Keys.NameTaken]\n")
    assert r.out == ""


def test_revoked_key_cannot_be_enabled_or_changed(ctl):
    key, _ = ctl.create("k")
    ctl.ok("revoke", key["id"])
    r = ctl("enable", key["id"], rc=EXIT_REFUSED)
    assert r.err == (f"apikeyctl: key {key['id']} is revoked; a revoked key cannot be enabled "
                     "or changed [io.apikeyd.Keys.KeyRevoked]\n")


def test_invalid_parameter_names_the_option(ctl):
    r = ctl("create", "x" * 200, rc=EXIT_REFUSED)
    assert "the daemon refused the name: it is 200 bytes long, more than 128; " in r.err
    assert "[org.varlink.service.InvalidParameter]" in r.err
    r = ctl("create", "s", "--scope", ",".join(f"s{i}" for i in range(40)), rc=EXIT_REFUSED)
    assert "the daemon refused --scope: it has 40 entries; " in r.err


def test_invalid_scope_entry_is_named(ctl):
    r = ctl("create", "s", "--scope", "x" * 65, rc=EXIT_REFUSED)
    assert "the daemon refused --scope: entry 1: it is 65 bytes long, more than 64; " in r.err, r


def test_permission_denied_and_policy_for_users(users):
    root, alice, bob, _ = users
    bobs, _ = bob.create("bobs")
    r = alice("show", bobs["id"], rc=EXIT_REFUSED)
    assert r.err.startswith("apikeyctl: permission denied: ")
    assert "[io.apikeyd.Keys.PermissionDenied]" in r.err
    r = alice("list", "--owner", BOB, rc=EXIT_REFUSED)
    assert "permission denied: only admins may list other owners' keys" in r.err
    r = alice("create", "for-bob", "--owner", BOB, rc=EXIT_REFUSED)
    assert "permission denied" in r.err
    r = alice("create", "forever", "--expires", "never", rc=EXIT_REFUSED)
    assert r.err.startswith("apikeyctl: refused by this installation's policy: ")
    assert "[io.apikeyd.Keys.PolicyViolation]" in r.err
    r = alice("create", "admin", "--role", "admin", rc=EXIT_REFUSED)
    assert "permission denied" in r.err
    r = alice("audit", rc=EXIT_REFUSED)
    assert "permission denied: only admins may read the audit log" in r.err
    for argv in (["shared-secret", "show"], ["shared-secret", "rotate"]):
        r = alice(*argv, rc=EXIT_REFUSED)
        assert r.err.startswith("apikeyctl: permission denied: "), r
        assert r.err.endswith(" [io.apikeyd.Keys.PermissionDenied]\n"), r
        assert r.out == ""


def test_shared_secret_refusal_gives_the_reason_for_users(users):
    _, alice, _, _ = users
    r = alice("shared-secret", "show", rc=EXIT_REFUSED)
    assert "only admins may read or rotate the shared secret" in r.err, r


# ---------------------------------------------------------------- create


def test_create_prints_the_token_once_with_a_warning(ctl, apikeyd):
    expires = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 400 * 86400))
    r = ctl.ok("create", "laptop", "--owner", ALICE, "--description", "for CI",
               "--permissions", "read,write", "--scope", "sshd,sudo", "--expires", expires)
    token = r.out.strip()
    assert TOKEN_RE.fullmatch(token) and r.out == token + "\n", r
    key_id = split_token(token)[1]
    assert r.err.count("\n") == 2, r
    assert f"Created key {key_id} 'laptop' for {ALICE} (custom, expires in " in r.err
    assert "shown only this once" in r.err and "cannot be shown again" in r.err
    assert token not in r.err

    key = apikeyd.client().get(key_id)
    assert (key["name"], key["owner"], key["description"]) == ("laptop", ALICE, "for CI")
    assert (key["role"], key["permissions"], key["scope"]) == ("custom", ["read", "write"],
                                                               ["sshd", "sudo"])
    assert key["expires_at"] == f"{expires}T23:59:59Z"
    assert apikeyd.client().verify(token)["code"] == "VALID"


def test_create_json(ctl, apikeyd):
    r = ctl.ok("--json", "create", "ops", "--role", "admin", "--expires", "30d")
    reply = check_reply("Create", r.json())
    key, token = check_key(reply["key"]), reply["token"]
    assert TOKEN_RE.fullmatch(token) and split_token(token)[1] == key["id"]
    assert (key["role"], key["owner"], key["status"]) == ("admin", "root", "enabled")
    delta = parse_iso(key["expires_at"]) - parse_iso(key["created_at"])
    assert abs(delta - 30 * 86400) <= 1
    assert r.err == ""
    # --json after the command works the same.
    reply2 = ctl.ok("create", "ops2", "--json").json()
    assert set(reply2) == {"key", "token"}


def test_create_defaults(ctl):
    key, _ = ctl.create("plain")
    assert (key["role"], key["permissions"], key["scope"]) == ("readonly", ["read"], [])
    assert "expires_at" not in key  # admins' keys do not expire unless asked
    key, _ = ctl.create("never", "--expires", "never")
    assert "expires_at" not in key


# ---------------------------------------------------------------- list


def test_list_shows_a_created_key_with_the_right_fields(ctl):
    key, _ = ctl.create("deploy", "--owner", "nobody", "--description", "nightly",
                        "--scope", "sshd,sudo", "--expires", "30d")
    custom, _ = ctl.create("ci", "--permissions", "read,write")
    r = ctl.ok("list", env={"COLUMNS": "300"})
    assert r.out.splitlines()[0].split() == ["ID", "NAME", "/", "DESCRIPTION", "OWNER", "ROLE",
                                             "SCOPE", "EXPIRES", "STATUS", "LAST", "USED"]
    rows = rows_by_id(r.out)
    assert set(rows) == {key["id"], custom["id"]}
    assert rows[key["id"]] == {
        "ID": key["id"], "NAME / DESCRIPTION": "deploy (nightly)", "OWNER": "nobody",
        "ROLE": "readonly", "SCOPE": "sshd,sudo", "EXPIRES": "in 30 days",
        "STATUS": "enabled", "LAST USED": "Never",
    }
    assert rows[custom["id"]] == {
        "ID": custom["id"], "NAME / DESCRIPTION": "ci", "OWNER": "root",
        "ROLE": "custom: read,write", "SCOPE": "any", "EXPIRES": "never",
        "STATUS": "enabled", "LAST USED": "Never",
    }
    assert not any(line != line.rstrip() for line in r.out.splitlines())


def test_list_json_is_every_key(ctl, apikeyd):
    made = {ctl.create(f"k{i}")[0]["id"] for i in range(5)}
    keys = ctl.json("list")
    assert isinstance(keys, list)
    for k in keys:
        check_key(k)
    assert {k["id"] for k in keys} == made == set(list_all_ids(apikeyd.client()))
    daemon_keys = {k["id"]: k for k in apikeyd.client().list()["keys"]}
    assert {k["id"]: k for k in keys} == daemon_keys
    ids = ctl.ok("list", "--quiet").out.split()
    assert ids == [k["id"] for k in keys]
    assert ctl.ok("list", "-q", "--status", "revoked").out == ""


def test_list_empty(ctl):
    assert ctl.json("list") == []
    assert ctl.ok("list").out == "No keys.\n"


@pytest.fixture
def varied_keys(ctl, apikeyd):
    """Keys in every state, for the filters: name -> id."""
    c = apikeyd.client()
    ids = {}
    for name, owner, expires in [("web-a", "root", "3d"), ("web-b", "nobody", "10d"),
                                 ("db", "nobody", None), ("web-off", "root", None),
                                 ("gone", "root", None), ("old", "nobody", "1s")]:
        params = {"owner": owner}
        if expires:
            params["expires"] = expires
        ids[name] = c.create(name, **params)["key"]["id"]
    ctl.ok("disable", ids["web-off"])
    ctl.ok("revoke", ids["gone"])
    time.sleep(1.5)  # "old" expires
    return ids


FILTER_CASES = [
    ([], ["web-a", "web-b", "db", "web-off", "gone", "old"]),
    (["--status", "enabled"], ["web-a", "web-b", "db"]),
    (["--status", "disabled"], ["web-off"]),
    (["--status", "revoked"], ["gone"]),
    (["--status", "expired"], ["old"]),
    (["--owner", "nobody"], ["web-b", "db", "old"]),
    (["--owner", "nobody", "--status", "enabled"], ["web-b", "db"]),
    (["--name", "web"], ["web-a", "web-b", "web-off"]),
    (["--name", "web-"], ["web-a", "web-b", "web-off"]),
    (["--name", "nothing"], []),
    (["--expiring", "7d"], ["web-a"]),
    (["--expiring", "2w"], ["web-a", "web-b"]),
]


def test_list_filters_return_exactly_the_matching_keys(ctl, varied_keys):
    # One set of keys for every case: making them takes a wait for "old" to expire.
    for argv, expected in FILTER_CASES:
        want = {varied_keys[n] for n in expected}
        keys = ctl.json("list", *argv)
        assert {k["id"] for k in keys} == want, argv
        assert len(keys) == len(want), argv
        table = rows_by_id(ctl.ok("list", *argv, env={"COLUMNS": "300"}).out) if want else {}
        assert set(table) == want, argv
        if argv[:1] == ["--status"]:
            assert {row["STATUS"] for row in table.values()} <= {argv[1]}, argv
        for k in keys:
            assert table[k["id"]]["STATUS"] == k["status"], argv
        assert set(ctl.ok("list", "-q", *argv).out.split()) == want, argv


def test_list_expired_key_shows_when_it_expired(ctl, varied_keys):
    row = rows_by_id(ctl.ok("list", env={"COLUMNS": "300"}).out)[varied_keys["old"]]
    assert row["STATUS"] == "expired"
    assert re.fullmatch(r"\d+ seconds? ago|just now", row["EXPIRES"]), row


def test_list_pages_through_the_cursor(ctl, apikeyd):
    # One more than the daemon's largest page (1000).
    c = apikeyd.client()
    made = {c.create(f"bulk-{i:04d}")["key"]["id"] for i in range(1001)}
    first = c.list()  # the daemon pages at 1000 ...
    assert len(first["keys"]) == 1000 and first.get("cursor")  # ... and says there is more
    keys = ctl.json("list")
    assert len(keys) == 1001 and {k["id"] for k in keys} == made
    assert len(rows_by_id(ctl.ok("list").out)) == 1001
    assert len(ctl.ok("list", "-q").out.split()) == 1001


def test_list_columns_fit_the_terminal(ctl):
    long_name = "a-rather-long-key-name-for-the-nightly-database-backup"
    key, _ = ctl.create(long_name, "--description", "copies every table to the offsite store",
                        "--scope", "sshd,sudo,billing-api,reporting", "--permissions",
                        "read,write,delete")
    for cols in (80, 100):
        out = ctl.ok("list", env={"COLUMNS": str(cols)}).out
        lines = out.splitlines()
        assert all(display_width(line) <= cols for line in lines), (cols, out)
        assert key["id"] in lines[1]
        assert "\u2026" in lines[1]
        assert lines[1].split()[0] == key["id"]
    wide = ctl.ok("list", env={"COLUMNS": "400"}).out
    assert long_name in wide and "billing-api,reporting" in wide and "\u2026" not in wide
    # Not a terminal and no COLUMNS: nothing is cut.
    assert long_name in ctl.ok("list").out


def test_list_on_a_terminal(ctl):
    for i in range(3):
        ctl.create(f"terminal-key-with-a-long-name-{i}", "--description", "x" * 40)
    rc, text = run_pty([str(APIKEYCTL), "--socket", ctl.socket, "list"], cols=72)
    assert rc == EXIT_OK, text
    lines = text.splitlines()
    assert all(len(line) <= 72 for line in lines), text
    assert lines[-2:] == ["", "3 keys listed."]
    assert lines[0].startswith("ID            NAME")  # headers are cut like the rest
    assert [re.match(r"[0-9A-Za-z]{12}  ", line) is not None for line in lines[1:-2]] == [
        True] * 3, text
    assert "\u2026" in lines[1]


def test_never_turns_into_a_time_after_a_verify(ctl):
    key, token = ctl.create("used", "--scope", "sshd")
    row = rows_by_id(ctl.ok("list", env={"COLUMNS": "300"}).out)[key["id"]]
    assert row["LAST USED"] == "Never"
    assert "last_used_at" not in ctl.json("show", key["id"])
    assert re.search(r"^  Last used: Never$", ctl.ok("show", key["id"]).out, re.M)

    ctl.ok("verify", "--service", "sshd", "--rhost", "192.0.2.7", input=token + "\n")
    row = rows_by_id(ctl.ok("list", env={"COLUMNS": "300"}).out)[key["id"]]
    assert re.fullmatch(r"(just now|\d+ seconds? ago) \(sshd from 192\.0\.2\.7\)",
                        row["LAST USED"]), row
    k = ctl.json("show", key["id"])
    assert ISO_UTC_RE.match(k["last_used_at"])
    assert abs(parse_iso(k["last_used_at"]) - time.time()) < 5
    assert (k["last_used_service"], k["last_used_from"]) == ("sshd", "192.0.2.7")
    shown = ctl.ok("show", key["id"]).out
    local = time.strftime("%a %Y-%m-%d %H:%M:%S UTC",
                          time.gmtime(parse_iso(k["last_used_at"])))
    assert re.search(rf"^  Last used: {local} \((just now|\d+ seconds? ago)\), sshd from "
                     r"192\.0\.2\.7$", shown, re.M), shown


# ---------------------------------------------------------------- show


def test_show_in_local_time(ctl):
    key, _ = ctl.create("shown", "--description", "the description", "--scope", "sshd,sudo",
                        "--permissions", "read,write", "--expires", "30d")
    # A zone five hours east of UTC, from a POSIX TZ string (no tzdata needed).
    out = ctl.ok("show", key["id"], env={"TZ": "XST-5"}).out
    fields = dict(re.match(r"^\s*([^:]+): (.*)$", line).groups() for line in out.splitlines())
    assert fields["ID"] == key["id"]
    assert fields["Name"] == "shown"
    assert fields["Description"] == "the description"
    assert fields["Owner"] == "root"
    assert fields["Role"] == "custom"
    assert fields["Permissions"] == "read, write"
    assert fields["Scope"] == "sshd, sudo"
    assert fields["Status"] == "enabled"
    assert fields["Last used"] == "Never"
    exp = parse_iso(key["expires_at"])
    assert fields["Expires"] == (time.strftime("%a %Y-%m-%d %H:%M:%S XST",
                                               time.gmtime(exp + 5 * 3600)) + " (in 30 days)")
    created = parse_iso(key["created_at"])
    assert re.fullmatch(re.escape(time.strftime("%a %Y-%m-%d %H:%M:%S XST",
                                                time.gmtime(created + 5 * 3600))) +
                        r" \((just now|\d+ seconds? ago)\) by uid=0\(root\)",
                        fields["Created"]), fields["Created"]


def test_show_json_is_the_daemons_key(ctl, apikeyd):
    key, _ = ctl.create("j", "--scope", "sshd")
    shown = ctl.json("show", key["id"])
    assert shown == apikeyd.client().get(key["id"]) == key
    # Times stay ISO 8601 UTC whatever the local zone.
    assert ctl.json("show", key["id"], env={"TZ": "XST-5"}) == key
    ctl.ok("show", key["id"]).out.index("Scope: sshd")


def test_show_key_without_expiry_or_description(ctl):
    key, _ = ctl.create("bare")
    out = ctl.ok("show", key["id"]).out
    assert "Description" not in out
    assert re.search(r"^    Expires: never$", out, re.M)
    assert re.search(r"^      Scope: any service$", out, re.M)


def test_control_characters_never_reach_the_terminal(ctl, apikeyd):
    # The daemon stores descriptions as given; apikeyctl must not replay an
    # escape sequence into the terminal of whoever lists the key.
    r = apikeyd.client().call(f"{IFACE}.Create", {"name": "esc", "description":
                                                  "a\x1b[31mred\x07\u009b]0;title"})
    if "error" in r:
        pytest.skip(f"the daemon refuses control characters in descriptions: {r['error']}")
    kid = r["parameters"]["key"]["id"]
    for out in (ctl.ok("list").out, ctl.ok("show", kid).out, ctl.ok("audit").out):
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f\u0080-\u009f]", out), repr(out)
    assert "a?[31mred??]0;title" in ctl.ok("show", kid).out
    # JSON carries the text exactly, escaped by the encoder.
    assert ctl.json("show", kid)["description"] == "a\x1b[31mred\x07\u009b]0;title"


# ---------------------------------------------------------------- update


def test_update(ctl, apikeyd):
    key, token = ctl.create("before", "--description", "old", "--scope", "sshd")
    out = ctl.ok("update", key["id"], "--name", "after", "--description", "new", "--scope",
                 "sudo,login", "--permissions", "read,delete", "--expires", "7d").out
    assert re.search(r"^       Name: after$", out, re.M)
    assert re.search(r"^Description: new$", out, re.M)
    assert re.search(r"^      Scope: sudo, login$", out, re.M)
    assert re.search(r"^Permissions: read, delete$", out, re.M)
    assert re.search(r"^    Expires: .* \(in 7 days\)$", out, re.M), out
    k = apikeyd.client().get(key["id"])
    assert (k["name"], k["description"], k["scope"], k["role"], k["permissions"]) == (
        "after", "new", ["sudo", "login"], "custom", ["read", "delete"])
    assert abs(parse_iso(k["expires_at"]) - time.time() - 7 * 86400) < 5

    k = ctl.json("update", key["id"], "--description", "", "--scope", "", "--expires", "never",
                 "--role", "readonly")
    assert check_key(k) == apikeyd.client().get(key["id"])
    assert "description" not in k and "expires_at" not in k
    assert (k["scope"], k["role"], k["permissions"]) == ([], "readonly", ["read"])
    # The token still works: an update does not touch the secret.
    assert apikeyd.client().verify(token)["code"] == "VALID"


def test_update_to_a_taken_name(ctl):
    ctl.create("one")
    two, _ = ctl.create("two")
    r = ctl("update", two["id"], "--name", "one", rc=EXIT_REFUSED)
    assert "already has a key named 'one'" in r.err


# ---------------------------------------------------------------- disable .. delete


def verify_code(ctl, token, *args):
    r = ctl("verify", *args, input=token + "\n")
    return r.out.strip(), r.rc


def test_disable_enable_revoke_delete(ctl, apikeyd):
    key, token = ctl.create("life")
    kid = key["id"]
    r = ctl.ok("disable", kid)
    assert r.out == f"Disabled key {kid} 'life' of root.\n"
    assert verify_code(ctl, token) == ("DISABLED", EXIT_NOT_VALID)
    assert rows_by_id(ctl.ok("list").out)[kid]["STATUS"] == "disabled"

    k = ctl.json("enable", kid)
    assert check_key(k)["status"] == "enabled"
    assert verify_code(ctl, token) == ("VALID", EXIT_OK)

    r = ctl.ok("revoke", kid)
    assert r.out == f"Revoked key {kid} 'life' of root.\n"
    assert verify_code(ctl, token) == ("REVOKED", EXIT_NOT_VALID)
    assert ctl.json("show", kid)["status"] == "revoked"
    assert ctl("disable", kid, rc=EXIT_REFUSED).err.endswith("[io.apikeyd.Keys.KeyRevoked]\n")

    r = ctl.ok("delete", kid)  # stdin is not a terminal: no question
    assert r.out == f"Deleted key {kid}.\n" and r.err == ""
    assert verify_code(ctl, token) == ("NOT_FOUND", EXIT_NOT_VALID)
    assert "no such key" in ctl("show", kid, rc=EXIT_REFUSED).err
    assert kid not in list_all_ids(apikeyd.client())


def test_json_forms_of_state_changes(ctl):
    key, _ = ctl.create("j")
    assert check_key(ctl.json("disable", key["id"]))["status"] == "disabled"
    assert check_key(ctl.json("revoke", key["id"], "--yes"))["status"] == "revoked"
    assert ctl.json("delete", key["id"]) == {}


def test_delete_asks_on_a_terminal(ctl, apikeyd):
    key, _ = ctl.create("precious")
    argv = [str(APIKEYCTL), "--socket", ctl.socket, "delete", key["id"]]
    question = f"Delete key {key['id']} 'precious' of root? This cannot be undone. [y/N] "

    rc, text = run_pty(argv, answers=[("[y/N] ", "n\n")])
    assert rc == EXIT_LOCAL and question in text and "Nothing changed." in text, text
    assert apikeyd.client().get(key["id"])["name"] == "precious"

    rc, text = run_pty(argv, answers=[("[y/N] ", "\n")])  # the default is no
    assert rc == EXIT_LOCAL, text
    assert apikeyd.client().get(key["id"])

    rc, text = run_pty(argv, answers=[("[y/N] ", "y\n")])
    assert rc == EXIT_OK and question in text and f"Deleted key {key['id']}." in text, text
    assert key["id"] not in list_all_ids(apikeyd.client())

    other, _ = ctl.create("other")
    rc, text = run_pty([str(APIKEYCTL), "--socket", ctl.socket, "delete", "--yes",
                        other["id"]])
    assert rc == EXIT_OK and "[y/N]" not in text, text
    assert other["id"] not in list_all_ids(apikeyd.client())


def test_revoke_asks_on_a_terminal(ctl, apikeyd):
    key, _ = ctl.create("r")
    argv = [str(APIKEYCTL), "--socket", ctl.socket, "revoke", key["id"]]
    rc, text = run_pty(argv, answers=[("[y/N] ", "no\n")])
    assert rc == EXIT_LOCAL and "never works again" in text, text
    assert apikeyd.client().get(key["id"])["status"] == "enabled"
    rc, text = run_pty(argv, answers=[("[y/N] ", "yes\n")])
    assert rc == EXIT_OK, text
    assert apikeyd.client().get(key["id"])["status"] == "revoked"


# ---------------------------------------------------------------- verify


def test_verify_codes(ctl, apikeyd):
    c = apikeyd.client()
    good = ctl.create("good", "--scope", "sshd", "--permissions", "read")[1]
    prefix, kid, secret, _ = split_token(good)
    tokens = {
        "VALID": (good, ["--service", "sshd", "--user", "root", "--rhost", "192.0.2.1"]),
        "NOT_FOUND": (make_token(prefix, kid, other_secret(secret)), []),
        "WRONG_USER": (good, ["--user", "nobody"]),
        "OUT_OF_SCOPE": (good, ["--service", "sudo"]),
        "INSUFFICIENT_PERMISSIONS": (good, ["--permissions", "write"]),
    }
    for name, status in (("off", "disable"), ("gone", "revoke")):
        t = ctl.create(name)[1]
        ctl.ok(status, split_token(t)[1])
        tokens["DISABLED" if status == "disable" else "REVOKED"] = (t, [])
    tokens["EXPIRED"] = (c.create("old", expires="1s")["token"], [])
    time.sleep(1.5)

    for code, (token, args) in tokens.items():
        r = ctl("verify", *args, input=token + "\n")
        assert r.out == code + "\n", (code, r)
        assert r.rc == (EXIT_OK if code == "VALID" else EXIT_NOT_VALID), (code, r)
        assert (r.err == "") == (code == "VALID"), (code, r)
        j = ctl("--json", "verify", *args, input=token + "\n").json()
        check_reply("Verify", j)
        assert (j["code"], j["valid"]) == (code, code == "VALID")
        assert token not in r.out + r.err


def test_verify_rate_limited(daemon):
    d = daemon(config={"lockout_threshold": "3"})
    ctl = Ctl(d.socket)
    _, token = ctl.create("guessed")
    prefix, kid, secret, _ = split_token(token)
    wrong = make_token(prefix, kid, other_secret(secret))
    for _ in range(3):
        assert verify_code(ctl, wrong) == ("NOT_FOUND", EXIT_NOT_VALID)
    r = ctl("verify", input=token + "\n", rc=EXIT_NOT_VALID)
    assert r.out == "RATE_LIMITED\n"
    assert r.err == ("apikeyctl: too many attempts (failed guesses, or more than the key's "
                     "rate_limit); try again later\n")
    # A key's rate_limit answers the same code, and the message covers it.
    _, limited = ctl.create("limited", "--rate-limit", "1/1h")
    assert verify_code(ctl, limited) == ("VALID", EXIT_OK)
    r = ctl("verify", input=limited + "\n", rc=EXIT_NOT_VALID)
    assert r.out == "RATE_LIMITED\n"
    assert "more than the key's rate_limit" in r.err, r.err


@pytest.mark.parametrize("code, rc, message", [
    ("UNAVAILABLE", EXIT_UNREACHABLE,
     "the daemon could not decide (see its log); try again later"),
    ("NOT_FOR_LOGIN", EXIT_NOT_VALID,
     "the key was created by an invite, for scripts and services: it cannot log in"),
])
def test_verify_codes_of_newer_daemons(listener, sockdir, code, rc, message):
    """No decision is not a refusal (a script may try again); an invited key
    used to log in is."""
    fake = listener(sockdir() / "s", reply=json.dumps({"parameters": {"valid": False,
                                                                      "code": code}}))
    token = make_token("apk", "A" * 12, "b" * 43)
    r = run_ctl("verify", "--user", "alice", socket=fake.path, input=token + "\n", rc=rc)
    assert r.out == code + "\n", r
    assert r.err == f"apikeyctl: {message}\n", r
    j = run_ctl("--json", "verify", socket=fake.path, input=token + "\n", rc=rc).json()
    assert j == {"valid": False, "code": code}


@pytest.mark.parametrize("code", ["NEW_REASON", "valid", "VALID ", "VALIDX", ""])
def test_verify_unknown_code_is_not_valid_even_when_valid(listener, sockdir, code):
    """A reply that says valid with a code apikeyctl does not know -- a newer
    daemon's, or a near miss of VALID -- is not taken for a valid token."""
    fake = listener(sockdir() / "s", reply=json.dumps({"parameters": {"valid": True,
                                                                      "code": code}}))
    token = make_token("apk", "A" * 12, "b" * 43)
    r = run_ctl("verify", socket=fake.path, input=token + "\n", rc=EXIT_NOT_VALID)
    assert r.out == code + "\n", r
    assert r.err == "apikeyctl: the token is not valid\n", r


def test_verify_bad_format_is_answered_without_the_daemon(ctl):
    token = ctl.create("t")[1]
    typo = token[:-1] + ("A" if token[-1] != "A" else "B")
    for t, reason in ((typo, "checksum"), ("hunter2", "")):
        # No daemon at this socket: the answer comes from apikeyctl itself.
        r = run_ctl("verify", socket=NO_SOCKET, input=t + "\n", rc=EXIT_NOT_VALID)
        assert r.out == "BAD_FORMAT\n"
        assert r.err.startswith("apikeyctl: not an API key: ") and reason in r.err, r
        j = run_ctl("--json", "verify", socket=NO_SOCKET, input=t + "\n",
                    rc=EXIT_NOT_VALID).json()
        assert j == {"valid": False, "code": "BAD_FORMAT"}


def test_verify_signature_checks_with_the_shared_secret(ctl):
    key, token = ctl.create("signed")
    j = ctl("--json", "verify", "--service", "sshd", "--rhost", "192.0.2.9",
            input=token + "\n", rc=EXIT_OK).json()
    secret = base64.b64decode(ctl.ok("shared-secret", "show").out.strip(), validate=True)
    canon = (f"apikeyd-verify-v1\nsigned_at={j['signed_at']}\nvalid=true\ncode=VALID\n"
             f"id={key['id']}\nowner=root\nservice=sshd\nuser=\nrhost=192.0.2.9\n")
    mac = hashlib.blake2b(canon.encode(), key=secret, digest_size=32).digest()
    assert base64.b64decode(j["signature"]) == mac


def test_verify_input_forms(ctl):
    token = ctl.create("forms")[1]
    for text in (token, token + "\n", f"  {token}\r\n", token + "\nsecond line\n"):
        assert ctl("verify", input=text).out == "VALID\n", repr(text)
    r = ctl("verify", input="", rc=EXIT_USAGE)
    assert "no token on standard input" in r.err
    r = ctl("verify", input="x" * 5000, rc=EXIT_USAGE)
    assert "too long" in r.err


def test_verify_never_takes_the_token_from_arguments(ctl):
    token = ctl.create("argv")[1]
    for argv in (["verify", token], ["verify", "--service", token], ["show", token],
                 ["create", f"name-{token}"], [f"--socket={token}", "list"]):
        r = ctl(*argv, rc=EXIT_USAGE)
        assert "on the command line" in r.err, r
        assert token not in r.out + r.err
        assert split_token(token)[2] not in r.err
    r = ctl("verify", "something", rc=EXIT_USAGE)
    assert "never from the command line" in r.err


def test_verify_prompts_without_echo_on_a_terminal(ctl):
    token = ctl.create("typed")[1]
    rc, text = run_pty([str(APIKEYCTL), "--socket", ctl.socket, "verify"],
                       answers=[("API key: ", token + "\n")])
    assert rc == EXIT_OK, text
    assert "API key: " in text and "VALID" in text
    assert token not in text  # not echoed


# ---------------------------------------------------------------- shared secret, audit, status


def test_shared_secret_show_and_rotate(ctl, apikeyd):
    first = ctl.ok("shared-secret", "show").out.strip()
    assert len(base64.b64decode(first, validate=True)) == 32
    assert ctl.json("shared-secret", "show") == {"secret": first}
    r = ctl.ok("shared-secret", "rotate")
    second = r.out.strip()
    assert len(base64.b64decode(second, validate=True)) == 32 and second != first
    assert "replaced" in r.err
    assert ctl.ok("shared-secret", "show").out.strip() == second
    third = ctl.json("shared-secret", "rotate", "--yes")["secret"]
    assert third not in (first, second)
    rc, text = run_pty([str(APIKEYCTL), "--socket", ctl.socket, "shared-secret", "rotate"],
                       answers=[("[y/N] ", "n\n")])
    assert rc == EXIT_LOCAL, text
    assert ctl.ok("shared-secret", "show").out.strip() == third


def test_audit(ctl):
    key, token = ctl.create("audited")
    other, _ = ctl.create("other")
    ctl.ok("update", key["id"], "--description", "d")
    ctl.ok("disable", key["id"])
    ctl.ok("enable", key["id"])
    ctl.ok("revoke", key["id"])
    ctl.ok("delete", key["id"])
    events = ctl.json("audit")
    assert isinstance(events, list)
    for e in events:
        check_reply("ListAudit", {"events": [e]})
    mine = [(e["action"], e["result"]) for e in events if e.get("key_id") == key["id"]]
    assert mine == [(a, "ok") for a in ("create", "update", "disable", "enable", "revoke",
                                        "delete")]
    assert all(e["actor"] == "uid=0(root)" for e in events)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)

    only = ctl.json("audit", "--key", other["id"])
    assert [(e["action"], e["key_id"]) for e in only] == [("create", other["id"])]
    assert len(ctl.json("audit", "--since", "1h")) == len(events)
    future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    assert ctl.json("audit", "--since", future) == []

    out = ctl.ok("audit").out
    rows = parse_table(out, ["TIME", "ACTOR", "ACTION", "KEY", "RESULT", "DETAIL"])
    assert [(r["ACTION"], r["KEY"]) for r in rows if r["KEY"] == key["id"]] == [
        (a, key["id"]) for a in ("create", "update", "disable", "enable", "revoke", "delete")]
    first = events[0]
    local = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(parse_iso(first["time"])))
    assert rows[0]["TIME"] == local
    assert token not in out


def test_audit_fits_the_terminal(ctl):
    name = "a-rather-long-key-name-for-the-nightly-database-backup-of-billing"
    key, _ = ctl.create(name)
    ctl.ok("update", key["id"], "--description", "d")
    wide = ctl.ok("audit", env={"COLUMNS": "400"}).out
    assert "\u2026" not in wide and key["id"] in wide and name in wide
    for cols in (60, 100):
        out = ctl.ok("audit", env={"COLUMNS": str(cols)}).out
        lines = out.splitlines()
        assert all(display_width(line) <= cols for line in lines), (cols, out)
        assert lines[0].startswith("TIME") and "ACTION" in lines[0]
        assert any("update" in line for line in lines[1:]), out
        assert name not in out
    # A pipe with no COLUMNS gets every cell whole.
    assert name in ctl.ok("audit").out


def test_audit_pages(ctl, apikeyd):
    c = apikeyd.client()
    for i in range(1005):
        c.create(f"a{i:04d}")
    events = ctl.json("audit")
    assert len(events) == 1005
    assert len({e["seq"] for e in events}) == 1005


def test_status(users, apikeyd):
    root, alice, _, _ = users
    root.create("r1")
    k, _ = root.create("r2")
    root.ok("disable", k["id"])
    alice.create("a1")
    s = root.json("status")
    check_reply("GetStatus", s)
    assert s["admin"] is True
    assert s["keys"] == {"enabled": 2, "disabled": 1, "revoked": 0, "expired": 0}
    assert s["socket"] == apikeyd.socket and s["state_dir"] == str(apikeyd.state_dir)
    out = root.ok("status").out
    fields = dict(re.match(r"^\s*([^:]+): (.*)$", line).groups() for line in out.splitlines())
    assert fields["Daemon"] == f"apikeyd {s['version']}"
    assert fields["Socket"] == apikeyd.socket
    assert fields["State dir"] == str(apikeyd.state_dir)
    assert fields["Keys"] == "2 enabled, 1 disabled, 0 revoked, 0 expired (all keys)"
    assert re.fullmatch(r"\w{3} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((just now|\d+ "
                        r"(seconds?|minutes?) ago)\)", fields["Started"]), fields
    a = alice.json("status")
    assert a["admin"] is False
    assert a["keys"] == {"enabled": 1, "disabled": 0, "revoked": 0, "expired": 0}
    assert "(your keys)" in alice.ok("status").out


# ---------------------------------------------------------------- ordinary users


def test_ordinary_user_manages_own_keys(users, apikeyd):
    root, alice, bob, _ = users
    rootkey, _ = root.create("roots")
    bobkey, _ = bob.create("bobs")

    r = alice.ok("create", "mine", "--description", "alice's", "--scope", "sshd")
    token = r.out.strip()
    assert TOKEN_RE.fullmatch(token) and "shown only this once" in r.err
    kid = split_token(token)[1]
    key = apikeyd.client().get(kid)
    assert key["owner"] == ALICE and key["created_by"].endswith(f"({ALICE})")
    # The self-service policy: a default lifetime of 30 days.
    assert abs(parse_iso(key["expires_at"]) - time.time() - 30 * 86400) < 10

    keys = alice.json("list")
    assert [k["id"] for k in keys] == [kid]
    rows = rows_by_id(alice.ok("list", env={"COLUMNS": "300"}).out)
    assert set(rows) == {kid}
    assert rows[kid]["OWNER"] == ALICE and rows[kid]["EXPIRES"] == "in 30 days"
    assert alice.json("list", "--owner", ALICE) == keys

    assert alice.json("show", kid)["name"] == "mine"
    assert "Owner: " + ALICE in alice.ok("show", kid).out
    k = alice.json("update", kid, "--name", "renamed", "--expires", "7d")
    assert k["name"] == "renamed"
    assert alice.ok("disable", kid).out == f"Disabled key {kid} 'renamed' of {ALICE}.\n"
    alice.ok("enable", kid)
    assert verify_code(alice, token, "--service", "sshd") == ("VALID", EXIT_OK)
    alice.ok("revoke", kid)
    alice.ok("delete", kid)
    assert alice.json("list") == []

    for other in (rootkey, bobkey):
        for argv in (["show", other["id"]], ["disable", other["id"]],
                     ["delete", other["id"]], ["update", other["id"], "--name", "x"]):
            r = alice(*argv, rc=EXIT_REFUSED)
            assert "permission denied" in r.err, r
    assert apikeyd.client().get(bobkey["id"])["status"] == "enabled"
    r = alice("update", bobkey["id"], "--expires", "never", rc=EXIT_REFUSED)


def test_user_cannot_extend_beyond_policy(users):
    _, alice, _, _ = users
    key, _ = alice.create("short")
    r = alice("update", key["id"], "--expires", "365d", rc=EXIT_REFUSED)
    assert "[io.apikeyd.Keys.PolicyViolation]" in r.err
    r = alice("update", key["id"], "--role", "admin", rc=EXIT_REFUSED)
    assert "[io.apikeyd.Keys.PermissionDenied]" in r.err


def test_admin_group_member_sees_every_key(users):
    root, alice, bob, admin = users
    ids = {root.create("r")[0]["id"], alice.create("a")[0]["id"], bob.create("b")[0]["id"]}
    assert {k["id"] for k in admin.json("list")} == ids
    assert set(rows_by_id(admin.ok("list").out)) == ids
    assert {k["id"] for k in admin.json("list", "--owner", BOB)} <= ids
    assert admin.json("status")["admin"] is True
    key, _ = admin.create("for-alice", "--owner", ALICE)
    assert key["owner"] == ALICE
    assert admin.json("audit")


# ---------------------------------------------------------------- --auth-file


def test_auth_file_acts_with_the_key(users, apikeyd, shared_dir):
    root, alice, bob, _ = users
    admin_key, admin_token = root.create("automation", "--role", "admin", "--scope", "apikeyd")
    bobs, _ = bob.create("bobs")
    path = secret_file(shared_dir / "admin.key", admin_token + "\n", owner=ALICE)

    # alice, an ordinary user, acts as the admin key: she sees bob's key.
    ids = {k["id"] for k in alice.json("--auth-file", path, "list")}
    assert {admin_key["id"], bobs["id"]} <= ids
    created, token = alice.create("by-key", "--auth-file", path, "--owner", BOB)
    assert created["owner"] == BOB
    # The key, and the uid that used it.
    assert created["created_by"] == f"key={admin_key['id']}(root) uid={pwd.getpwnam(ALICE).pw_uid}({ALICE})"
    events = root.json("audit", "--key", created["id"])
    assert events[0]["actor"] == created["created_by"]
    assert token not in json.dumps(events)

    # A key without "apikeyd" in its scope cannot be used to manage keys.
    _, ssh_only = root.create("ssh-only", "--role", "admin", "--scope", "sshd")
    p2 = secret_file(shared_dir / "ssh.key", ssh_only, owner=ALICE)
    r = alice("--auth-file", p2, "list", rc=EXIT_REFUSED)
    assert "permission denied" in r.err and "apikeyd" in r.err


def test_auth_file_refusals(ctl, shared_dir):
    _, token = ctl.create("k", "--role", "admin")
    loose = secret_file(shared_dir / "loose.key", token, mode=0o644)
    r = ctl("--auth-file", loose, "list", rc=EXIT_LOCAL)
    assert r.err == (f"apikeyctl: the auth file {loose} is accessible by other users "
                     f"(mode 0644); run 'chmod 600 {loose}', and consider the key in it "
                     "exposed\n")
    group = secret_file(shared_dir / "group.key", token, mode=0o640)
    assert "(mode 0640)" in ctl("--auth-file", group, "list", rc=EXIT_LOCAL).err

    r = ctl("list", "--auth-file", shared_dir / "missing", rc=EXIT_LOCAL)
    assert "cannot open the auth file" in r.err and "No such file" in r.err
    garbage = secret_file(shared_dir / "garbage.key", "not a key\n")
    assert "must hold one API key" in ctl("--auth-file", garbage, "list", rc=EXIT_LOCAL).err
    typo = secret_file(shared_dir / "typo.key", token[:-1] + ("A" if token[-1] != "A" else "B"))
    r = ctl("--auth-file", typo, "list", rc=EXIT_LOCAL)
    assert "does not hold an API key: " in r.err and token not in r.err
    prefix, kid, secret, _ = split_token(token)
    wrong = secret_file(shared_dir / "wrong.key", make_token(prefix, kid, other_secret(secret)))
    r = ctl("--auth-file", wrong, "list", rc=EXIT_REFUSED)
    assert "permission denied: the API key given in auth is not valid" in r.err
    assert ctl("--auth-file", shared_dir, "list", rc=EXIT_LOCAL).err


# ---------------------------------------------------------------- the token stays secret


def test_token_never_in_list_show_audit_or_log(ctl, apikeyd):
    made = [ctl.create(f"s{i}", "--scope", "sshd") for i in range(3)]
    for _, token in made:
        ctl.ok("verify", "--service", "sshd", "--rhost", "192.0.2.3", input=token + "\n")
        ctl("verify", "--service", "sudo", input=token + "\n", rc=EXIT_NOT_VALID)
    ctl.ok("disable", made[0][0]["id"])
    outputs = [
        ctl.ok("list").out, ctl.ok("list", "--json").out, ctl.ok("list", "-q").out,
        ctl.ok("audit").out, ctl.ok("audit", "--json").out, ctl.ok("status").out,
        ctl.ok("status", "--json").out,
    ]
    for key, _ in made:
        outputs += [ctl.ok("show", key["id"]).out, ctl.ok("show", "--json", key["id"]).out]
    events = ctl.json("audit")
    assert {"create", "disable"} <= {e["action"] for e in events}
    time.sleep(0.2)
    outputs.append(apikeyd.log())
    for _, token in made:
        prefix, kid, secret, check = split_token(token)
        for text in outputs:
            assert token not in text
            assert secret not in text and secret[:20] not in text
    for text in outputs[:-1]:
        assert not TOKEN_RE.search(text), text


def test_token_never_in_journal_fields(ctl):
    if not os.path.exists("/run/systemd/journal/socket"):
        pytest.skip("no journald on this machine (/run/systemd/journal/socket is absent): "
                    "the journal fields cannot be read back")
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl is not installed")
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - 2))
    key, token = ctl.create("journaled")
    ctl.ok("verify", input=token + "\n")
    ctl.ok("revoke", key["id"])
    time.sleep(1)
    r = subprocess.run(["journalctl", "--no-pager", "-o", "export", "--since", since,
                        "SYSLOG_IDENTIFIER=apikeyd"], capture_output=True, timeout=30)
    text = r.stdout.decode(errors="replace")
    assert f"APIKEY_ID={key['id']}" in text
    assert token not in text and split_token(token)[2] not in text


# ---------------------------------------------------------------- bash completion


def complete(words, socket_path=None):
    """What the completion offers for the last of `words` (after apikeyctl)."""
    argv = [str(APIKEYCTL)]
    if socket_path:
        argv += ["--socket", socket_path]
    argv += words
    script = ""
    if os.path.exists("/usr/share/bash-completion/bash_completion"):
        script += "source /usr/share/bash-completion/bash_completion\n"
    script += f"source {COMPLETION}\n"
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in argv)
    script += (f"COMP_WORDS=({quoted}); COMP_CWORD={len(argv) - 1}\n"
               f"COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}\n"
               "_apikeyctl 2>/dev/null; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                       text=True, env=base_env(), timeout=30)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_bash_completion_commands_and_options():
    assert sorted(complete([""])) == sorted(COMMANDS + ["help"])
    assert complete(["sh"]) == ["show", "shared-secret"] or \
        sorted(complete(["sh"])) == ["shared-secret", "show"]
    assert set(complete(["list", "--"])) >= {"--status", "--owner", "--expiring", "--name",
                                             "--quiet", "--json", "--socket"}
    assert "--owner" not in complete(["verify", "--"])
    assert sorted(complete(["list", "--status", ""])) == ["disabled", "enabled", "expired",
                                                          "revoked"]
    assert sorted(complete(["create", "x", "--permissions", "read,"])) == [
        f"read,{p}" for p in sorted(["create", "read", "write", "delete", "invite"])]
    assert complete(["shared-secret", "r"]) == ["rotate"]
    assert complete(["create", "x", "--role", "ad"]) == ["admin"]
    assert sorted(complete(["lockout", ""])) == ["list", "reset"]
    assert sorted(complete(["lockout", "reset", ""])) == ["from", "key", "uid"]


def test_bash_completion_key_ids(ctl):
    on, _ = ctl.create("on")
    off, _ = ctl.create("off")
    ctl.ok("disable", off["id"])
    assert sorted(complete(["show", ""], ctl.socket)) == sorted([on["id"], off["id"]])
    assert complete(["show", on["id"][:6]], ctl.socket) == [on["id"]] or \
        on["id"] in complete(["show", on["id"][:6]], ctl.socket)
    assert complete(["enable", ""], ctl.socket) == [off["id"]]
    assert complete(["disable", ""], ctl.socket) == [on["id"]]
    assert sorted(complete(["audit", "--key", ""], ctl.socket)) == sorted([on["id"],
                                                                          off["id"]])
    # Only the first argument is a key id.
    assert complete(["show", on["id"], ""], ctl.socket) == []
    # No daemon: nothing offered, no error.
    assert complete(["show", ""], NO_SOCKET) == []


def test_completion_and_man_page_know_every_command():
    text = COMPLETION.read_text()
    man = MANPAGE.read_text()
    for cmd in COMMANDS:
        assert re.search(rf"\b{re.escape(cmd)}\b", text), cmd
        assert cmd.replace("-", "\\-") in man, cmd


def test_show_names_parent_children_and_limits(root, apikeyd):
    top = root.create("top", owner="app-team", permissions=["create", "read", "invite"])
    mid = root.ok(f"{IFACE}.Create", {"name": "mid", "auth": top["token"]})["key"]
    invited = root.ok(f"{IFACE}.Create", {"name": "for-bob", "owner": "someone-else",
                                          "auth": top["token"]})["key"]
    out = run_ctl("show", top["key"]["id"], socket=apikeyd.socket, rc=0).out
    children = sorted([mid["id"], invited["id"]])
    assert re.search(r"^ +Children: (\w+), (\w+) \(2 in all\)$", out, re.M), out
    assert sorted(re.search(r"Children: (\w+), (\w+)", out).groups()) == children
    out = run_ctl("show", invited["id"], socket=apikeyd.socket, rc=0).out
    assert f"    Through: {top['key']['id']}\n" in out, out
    assert "      Login: no: created through invite, for scripts and services only\n" in out, out
    root.ok(f"{IFACE}.Disable", {"id": invited["id"]})
    out = run_ctl("show", invited["id"], socket=apikeyd.socket, rc=0).out
    assert "     Status: disabled (by an admin: only an admin may enable it)\n" in out, out
    # A key of no tree shows neither line.
    out = run_ctl("show", root.create("plain")["key"]["id"], socket=apikeyd.socket, rc=0).out
    assert "Through" not in out and "Children" not in out and "Login" not in out
