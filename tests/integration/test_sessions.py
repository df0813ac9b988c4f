# SPDX-License-Identifier: MIT
"""Revoking a key ends the sessions it opened.

pam_apikey's session hook registers a login's session with the daemon
(OpenSession) from the PAM caller's own process; a Revoke, Disable or
Delete of the key (or its expiry) ends that process within 2 s.  These run
the real PAM stack (the shipped snippet, the harness holding a session
open as sshd or sudo would) against the real daemon, under the default
and the ASan/UBSan build of the module.  test_pam_sessions.py runs the same
with a real sshd and sudo, and under valgrind."""

import os
import re
import secrets
import signal
import subprocess
import time

import pytest

from conftest import ALICE, BOB, IFACE
from pam_fixtures import (  # noqa: F401 - fixtures
    build, pam, DEFAULT_BUILD, need_root, snippet_stack, trust_me)

USER = "alice"
PASSWORD = "correct horse battery staple"
END_WITHIN = 2.0


@pytest.fixture
def d(daemon):
    return daemon()


@pytest.fixture
def admin(d):
    return d.client()


def stack(pam, d, password_fallback=False):
    """The shipped snippet pointed at this daemon; with a password line
    below it (pam_permit standing in for pam_unix) when asked."""
    text = snippet_stack(pam.module, f"socket={d.socket} nodelay {trust_me()}".rstrip())
    if password_fallback:
        text += ("auth required pam_permit.so\naccount required pam_permit.so\n"
                 "session required pam_permit.so\n")
    return pam.write("login", text)


class Session:
    """A login held open by the harness (pam_open_session, sleep, close)."""

    def __init__(self, pam, service, user, answer, hold=60, rhost="192.0.2.7", tty="pts/9",
                 fork_auth=False):
        argv = [str(pam.build.harness), "--acct", "--session", str(hold), "--rhost", rhost,
                "--tty", tty] + (["--fork-auth"] if fork_auth else []) + \
            [str(pam.path), service, user]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=pam.build.env())
        self.proc.stdin.write(answer + "\n")
        self.proc.stdin.close()
        self.lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.strip())
            if line.startswith("session="):
                break
        assert self.lines and self.lines[-1] == "session=Success", (self.lines, self.stderr())

    @property
    def pid(self):
        return self.proc.pid

    def stderr(self):
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read()

    def ended_within(self, seconds):
        """How long the process took to end, or None if it still runs."""
        t0 = time.monotonic()
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            return None
        return time.monotonic() - t0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


@pytest.fixture
def sessions():
    opened = []

    def open_(*args, **kw):
        s = Session(*args, **kw)
        opened.append(s)
        return s

    yield open_
    for s in opened:
        s.stop()


def list_sessions(client, key_id=None):
    params = {"id": key_id} if key_id else {}
    return client.ok(f"{IFACE}.ListSessions", params)["sessions"]


@pytest.mark.parametrize("action", ["Revoke", "Disable", "Delete"])
def test_change_ends_the_session(pam, d, admin, sessions, action):
    created = admin.create("laptop", owner=USER)
    key_id = created["key"]["id"]
    svc = stack(pam, d)
    s = sessions(pam, svc, USER, created["token"])
    live = list_sessions(admin, key_id)
    assert [(x["key_id"], x["user"], x["service"], x["rhost"], x["tty"], x["pid"])
            for x in live] == [(key_id, USER, "login", "192.0.2.7", "pts/9", s.pid)], live

    admin.ok(f"{IFACE}.{action}", {"id": key_id})
    took = s.ended_within(END_WITHIN)
    assert took is not None, f"session still running {END_WITHIN}s after {action}"
    assert s.proc.returncode == -signal.SIGTERM, s.proc.returncode
    assert list_sessions(admin) == []
    verb = {"Revoke": "revoked", "Disable": "disabled", "Delete": "deleted"}[action]
    line = f"ending session of key {key_id}: user={USER} service=login rhost=192.0.2.7 " \
           f"tty=pts/9 pid={s.pid}: key {verb}"
    deadline = time.monotonic() + 5
    while line not in d.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert line in d.log()
    audit = admin.ok(f"{IFACE}.ListAudit", {"key_id": key_id})["events"] \
        if action != "Delete" else None
    if audit is not None:
        ends = [e for e in audit if e["action"] == "end-session"]
        deadline = time.monotonic() + 10
        while not ends and time.monotonic() < deadline:
            time.sleep(0.5)
            audit = admin.ok(f"{IFACE}.ListAudit", {"key_id": key_id})["events"]
            ends = [e for e in audit if e["action"] == "end-session"]
        assert ends and f"pid={s.pid}" in ends[0]["detail"], audit


@pytest.mark.parametrize("action", ["Delete", "Disable"])
def test_change_to_the_parent_key_ends_the_childs_session(pam, d, admin, sessions, action):
    """A key created through another dies with it: Delete revokes it (the
    cascade), Disable of the parent stops it through its lineage."""
    parent = admin.create("parent", owner=USER, permissions=["create", "read"])
    r = admin.call(f"{IFACE}.Create", {"name": "child", "auth": parent["token"]})
    assert "error" not in r, r
    child = r["parameters"]
    assert child["key"]["parent"] == parent["key"]["id"]
    s = sessions(pam, stack(pam, d), USER, child["token"])
    admin.ok(f"{IFACE}.{action}", {"id": parent["key"]["id"]})
    assert s.ended_within(END_WITHIN) is not None, f"the child's session outlived {action}"
    why = "key revoked" if action == "Delete" else \
        "a key it was created through is no longer usable"
    assert f"ending session of key {child['key']['id']}: user={USER} service=login " \
           f"rhost=192.0.2.7 tty=pts/9 pid={s.pid}: {why}" in d.log()


def test_update_taking_the_service_out_of_scope_ends_the_session(pam, d, admin, sessions):
    created = admin.create("laptop", owner=USER, scope=["login", "sudo"])
    key_id = created["key"]["id"]
    s = sessions(pam, stack(pam, d), USER, created["token"])
    admin.ok(f"{IFACE}.Update", {"id": key_id, "scope": ["login", "sshd"]})
    assert s.ended_within(1.0) is None, "a scope that keeps the service ended the session"
    admin.ok(f"{IFACE}.Update", {"id": key_id, "scope": ["sudo"]})
    assert s.ended_within(END_WITHIN) is not None
    assert "key no longer scoped for this service" in d.log()


def test_password_session_and_other_key_untouched(pam, d, admin, sessions):
    one = admin.create("one", owner=USER)
    two = admin.create("two", owner=USER)
    svc = stack(pam, d, password_fallback=True)
    s1 = sessions(pam, svc, USER, one["token"])
    s2 = sessions(pam, svc, USER, two["token"])
    pw = sessions(pam, svc, USER, PASSWORD)
    # The password login is no key's session.
    assert sorted(x["pid"] for x in list_sessions(admin)) == sorted([s1.pid, s2.pid])

    admin.ok(f"{IFACE}.Revoke", {"id": one["key"]["id"]})
    assert s1.ended_within(END_WITHIN) is not None
    assert s2.ended_within(1.0) is None, "the second key's session was ended"
    assert pw.ended_within(0.1) is None, "the password session was ended"
    assert [x["pid"] for x in list_sessions(admin)] == [s2.pid]


@pytest.mark.parametrize("session_line", [True, False], ids=["session-line", "no-session-line"])
def test_key_handed_to_the_session_not_to_its_environment(pam, d, admin, sessions,
                                                          session_line):
    """As sshd's keyboard-interactive login: auth and account in a forked
    child, whose PAM data is lost, then setcred and the session in the
    parent.  The login's key reaches the session hook through the PAM
    environment (the session is registered) and goes no further: the
    environment the session is built from no longer has it, also where the
    service has no session line (setcred, on the auth line, took it)."""
    created = admin.create("laptop", owner=USER)
    key_id = created["key"]["id"]
    text = snippet_stack(pam.module, f"socket={d.socket} nodelay {trust_me()}".rstrip())
    if not session_line:
        text = "".join(l + "\n" for l in text.splitlines() if not l.startswith("session"))
        text += "session required pam_permit.so\n"
    s = sessions(pam, pam.write("login", text), USER, created["token"], fork_auth=True)
    assert "setcred=Success" in s.lines, s.lines
    env = [l for l in s.lines if l.startswith("env: ")]
    assert not [l for l in env if "PAM_APIKEY_KEY_ID" in l], s.lines
    live = list_sessions(admin, key_id)
    assert [x["pid"] for x in live] == ([s.pid] if session_line else []), live


def test_closed_session_is_not_listed(pam, d, admin, sessions):
    created = admin.create("laptop", owner=USER)
    svc = stack(pam, d)
    s = sessions(pam, svc, USER, created["token"], hold=1)
    assert len(list_sessions(admin, created["key"]["id"])) == 1
    assert s.ended_within(10) is not None
    assert s.proc.returncode == 0, s.stderr()
    assert s.proc.stdout.read().strip() == "close=Success"
    assert list_sessions(admin) == []


def test_expiry_ends_the_session(pam, d, admin, sessions):
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 4))
    created = admin.create("brief", owner=USER, expires=expires)
    s = sessions(pam, stack(pam, d), USER, created["token"])
    took = s.ended_within(10)
    assert took is not None, "the session outlived its key's expiry"
    assert s.proc.returncode == -signal.SIGTERM
    assert "key expired" in d.log()


def test_end_sessions_no_keeps_them(pam, daemon, sessions):
    d = daemon(config={"end_sessions": "no"})
    admin = d.client()
    created = admin.create("laptop", owner=USER)
    s = sessions(pam, stack(pam, d), USER, created["token"])
    admin.ok(f"{IFACE}.Revoke", {"id": created["key"]["id"]})
    assert s.ended_within(1.5) is None


def test_session_survives_a_daemon_restart(pam, d, admin, sessions):
    """Sessions are saved in the state directory; after a restart the daemon
    takes back each whose process is provably the same (pidfs), and a revoke
    then still ends it.  A session whose process ended meanwhile is dropped."""
    one = admin.create("one", owner=USER)
    two = admin.create("two", owner=USER)
    svc = stack(pam, d)
    s1 = sessions(pam, svc, USER, one["token"])
    s2 = sessions(pam, svc, USER, two["token"])
    d.stop()
    assert os.stat(d.state_dir / "sessions.json").st_mode & 0o777 == 0o600
    s2.proc.kill()
    s2.proc.wait()
    d.start()
    admin = d.client()
    assert [x["pid"] for x in list_sessions(admin)] == [s1.pid]
    assert "1 login session taken over from before the restart, 1 ended meanwhile" in d.log()
    admin.ok(f"{IFACE}.Revoke", {"id": one["key"]["id"]})
    assert s1.ended_within(END_WITHIN) is not None, "the session outlived the restart's revoke"
    assert s1.proc.returncode == -signal.SIGTERM


def test_users_cannot_register_or_see_others_sessions(pam, d, admin, sessions, as_user):
    need_root("the test users")
    created = admin.create("laptop", owner=ALICE)
    key_id = created["key"]["id"]
    sessions(pam, stack(pam, d), ALICE, created["token"])
    bob = as_user(BOB, socket=d.socket)
    err, params = bob.err(f"{IFACE}.OpenSession",
                          {"session": secrets.token_hex(16), "id": key_id, "user": ALICE,
                           "service": "sshd"})
    assert err == f"{IFACE}.PermissionDenied", (err, params)
    assert params["reason"] == ("only root (the PAM module inside sshd or sudo) may register "
                                "or close a login session")
    err, params = bob.err(f"{IFACE}.CloseSession", {"session": secrets.token_hex(16)})
    assert err == f"{IFACE}.PermissionDenied", (err, params)
    # Get's authorization: bob sees none of alice's sessions, alice sees hers.
    assert bob.ok(f"{IFACE}.ListSessions", {})["sessions"] == []
    err, params = bob.err(f"{IFACE}.ListSessions", {"id": key_id})
    assert err == f"{IFACE}.PermissionDenied", (err, params)
    alice = as_user(ALICE, socket=d.socket)
    assert [x["key_id"] for x in alice.ok(f"{IFACE}.ListSessions", {})["sessions"]] == [key_id]
    assert len(list_sessions(admin)) == 1


def apikeyctl(d, *args):
    r = subprocess.run([str(DEFAULT_BUILD.path / "apikeyctl"), "--socket", d.socket, *args],
                       capture_output=True, text=True, timeout=30, env=dict(os.environ, LC_ALL="C"),
                       stdin=subprocess.DEVNULL)
    return r


def test_apikeyctl_sessions_lists_live_not_ended(pam, d, admin, sessions):
    created = admin.create("laptop", owner=USER)
    key_id = created["key"]["id"]
    s = sessions(pam, stack(pam, d), USER, created["token"])
    r = apikeyctl(d, "sessions")
    assert r.returncode == 0, r
    head, row = r.stdout.splitlines()
    assert head.split() == ["KEY", "USER", "SERVICE", "FROM", "TTY", "SINCE", "PID"], r.stdout
    assert row.split()[:5] == [key_id, USER, "login", "192.0.2.7", "pts/9"], r.stdout
    assert row.split()[-1] == str(s.pid), r.stdout
    r = apikeyctl(d, "--json", "sessions", "laptop")
    assert r.returncode == 0, r
    assert '"pid": %d' % s.pid in r.stdout, r.stdout
    r = apikeyctl(d, "show", key_id)
    assert re.search(r"^ *Sessions: 1 live$", r.stdout, re.M), r.stdout

    r = apikeyctl(d, "revoke", "--yes", key_id)
    assert r.returncode == 0, r
    assert s.ended_within(END_WITHIN) is not None
    r = apikeyctl(d, "sessions", key_id)
    assert r.returncode == 0 and r.stdout.splitlines()[1:] == [], r.stdout
    assert re.search(r"^ *Sessions: 0 live$", apikeyctl(d, "show", key_id).stdout, re.M)


@pytest.mark.parametrize("cap_kill", [True, False], ids=["CAP_KILL", "no-capability"])
def test_daemon_as_its_own_user_needs_cap_kill(pam, tmp_path, test_users, sessions, cap_kill):
    """As the unit runs it: apikeyd as its own user (akt-bob here), with the
    ambient CAP_KILL alone, ends a root process's session; without it the
    signal is refused and the journal says so."""
    from test_connection_reserve import DaemonAsUser

    class Daemon(DaemonAsUser):
        def argv(self):
            argv = super().argv()
            caps = ["--inh-caps=+kill", "--ambient-caps=+kill"] if cap_kill else []
            return argv[:4] + caps + argv[4:]

    d = Daemon(tmp_path, BOB)
    try:
        d.start()
        created = d.client().create("laptop", owner=USER)
        text = snippet_stack(pam.module, f"socket={d.socket} nodelay daemon_user={BOB} "
                                         f"{trust_me()}".rstrip())
        s = sessions(pam, pam.write("login", text), USER, created["token"])
        d.client().ok(f"{IFACE}.Revoke", {"id": created["key"]["id"]})
        if cap_kill:
            assert s.ended_within(END_WITHIN) is not None
            assert s.proc.returncode == -signal.SIGTERM
        else:
            assert s.ended_within(1.5) is None
            assert f"cannot signal pid {s.pid} of a session of key {created['key']['id']}: " \
                   "Operation not permitted" in d.log()
    finally:
        problem = d.cleanup()
        assert problem is None, problem

