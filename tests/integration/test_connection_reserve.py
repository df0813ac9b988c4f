# SPDX-License-Identifier: MIT
"""Connection slots kept for root and the daemon's own user.

sshd and sudo ask the daemon as root: if ordinary users could hold every
connection, every key login on the host would fail.  Here ordinary users
(akt-alice, akt-bob and akt-admin, who is an admin but not root) each open
connections to the real daemon until they are refused; root (or the user
the daemon runs as) must then still connect and be answered, and the
ordinary users must have been refused at their limits with
io.apikeyd.Keys.TooManyConnections.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ADMIN, ALICE, BOB, IFACE, Daemon, Varlink, reachable

TOO_MANY = f"{IFACE}.TooManyConnections"
BASE_CONFIG = {"lockout_threshold": 0}

# Run as an ordinary user: open connections one at a time, each asked for
# GetInfo, until one is refused (or `tries` are open); print what happened
# as one JSON line, then hold the connections until stdin is closed.
HOLDER = r"""
import json, os, socket, sys

path, tries = sys.argv[1], int(sys.argv[2])
call = json.dumps({"method": "org.varlink.service.GetInfo"}).encode() + b"\0"
held, refusal = [], None
for _ in range(tries):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(5)
    s.connect(path)
    try:
        s.sendall(call)
    except OSError:
        pass  # refused and closed before the call went out: the refusal is still there
    buf = b""
    while b"\0" not in buf:
        try:
            chunk = s.recv(4096)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
    reply = json.loads(buf.split(b"\0")[0]) if buf else None
    if reply is not None and "error" not in reply:
        held.append(s)
        continue
    s.close()
    refusal = reply if reply is not None else "closed without a reply"
    break
print(json.dumps({"uid": os.getuid(), "held": len(held), "refusal": refusal}), flush=True)
sys.stdin.read()
"""


class Holder:
    """An ordinary user's process holding as many connections as it got."""

    def __init__(self, socket_path, user, tries=100):
        pw = pwd.getpwnam(user)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(socket_path), str(tries)],
            user=pw.pw_uid, group=pw.pw_gid, extra_groups=os.getgrouplist(user, pw.pw_gid),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            close_fds=True, cwd="/")
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise AssertionError(f"the connection holder of {user} failed: "
                                 f"{self.proc.stderr.read()}")
        self.result = json.loads(line)
        assert self.result["uid"] == pw.pw_uid

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def holders():
    """holders(socket, user, tries=100) -> a Holder; all closed at teardown."""
    started = []

    def start(socket_path, user, tries=100):
        h = Holder(socket_path, user, tries)
        started.append(h)
        return h

    yield start
    for h in started:
        h.close()


def refusal(limit):
    return {"error": TOO_MANY, "parameters": {"limit": limit}}


def open_until_refused(socket_path, tries):
    """Connections of this process (root), each answering GetInfo, until one
    is refused: (the open ones, the refusal)."""
    conns = []
    for _ in range(tries):
        c = Varlink(socket_path)
        try:
            c.send({"method": "org.varlink.service.GetInfo"})
        except OSError:
            pass  # refused and closed before the call went out: the refusal is still there
        r = c.recv()
        if "error" in r:
            c.close()
            return conns, r
        conns.append(c)
    return conns, None


def make_token(d):
    with Varlink(d.socket) as c:
        return c.create("login", scope=["sshd"])["token"]


def test_ordinary_users_cannot_take_the_connections_root_needs(daemon, test_users, holders):
    """The default reserve (an eighth of max_connections, here 1): three
    ordinary users, four connections each allowed, cannot take all 12."""
    d = daemon(config={**BASE_CONFIG, "max_connections": 12, "max_connections_per_uid": 4})
    token = make_token(d)
    alice, bob, admin = (holders(d.socket, u) for u in (ALICE, BOB, ADMIN))

    assert (alice.result["held"], alice.result["refusal"]) == (4, refusal(4))
    assert (bob.result["held"], bob.result["refusal"]) == (4, refusal(4))

    # sshd's and sudo's uid still gets a connection, and its Verify is answered.
    with Varlink(d.socket) as c:
        r = c.call(f"{IFACE}.Verify", {"token": token, "service": "sshd"})
        assert r.get("parameters", {}).get("code") == "VALID", r
        # That was the reserve.
        with Varlink(d.socket) as extra:
            assert extra.recv() == refusal(12)

    # akt-admin is an admin, but not root: the reserve is not theirs either.
    assert (admin.result["held"], admin.result["refusal"]) == (3, refusal(11))

    log = d.log()
    assert "per-user connection limit of 4 reached; refusing new clients" in log
    assert "ordinary users' connection limit of 11 reached; refusing new clients" in log
    assert "total connection limit of 12 reached; refusing new clients" in log


def test_reserved_connections_are_never_taken_by_ordinary_users(daemon, test_users, holders):
    d = daemon(config={**BASE_CONFIG, "max_connections": 12, "reserved_connections": 4,
                       "max_connections_per_uid": 3})
    token = make_token(d)
    alice, bob, admin = (holders(d.socket, u) for u in (ALICE, BOB, ADMIN))
    assert (alice.result["held"], alice.result["refusal"]) == (3, refusal(3))
    assert (bob.result["held"], bob.result["refusal"]) == (3, refusal(3))
    assert (admin.result["held"], admin.result["refusal"]) == (2, refusal(8))

    # Root gets the whole reserve, more than one ordinary user may hold, each
    # connection answered; then the total is reached.
    conns, refused = open_until_refused(d.socket, 10)
    try:
        assert len(conns) == 4 and refused == refusal(12), (len(conns), refused)
        for c in conns:
            assert c.verify(token, service="sshd")["code"] == "VALID"
    finally:
        for c in conns:
            c.close()

    # The reserve is free again, and still not the ordinary users'.
    again = holders(d.socket, ADMIN)
    assert (again.result["held"], again.result["refusal"]) == (0, refusal(8))
    with Varlink(d.socket) as c:
        assert c.verify(token, service="sshd")["code"] == "VALID"


def test_contradicting_connection_settings_stop_the_daemon(daemon):
    d = daemon(config={**BASE_CONFIG, "max_connections": 12, "reserved_connections": 13},
               start=False)
    d.start(wait=False)
    assert d.proc.wait(10) == 1
    assert f"{d.config_file}:4: reserved_connections (13) is more than max_connections (12)" \
        in d.log()


class FewFilesDaemon(Daemon):
    """apikeyd started with RLIMIT_NOFILE 100 (soft and hard): room for 36
    connections beside the 64 descriptors it keeps for its own files."""

    def argv(self):
        return ["prlimit", "--nofile=100:100", "--"] + super().argv()


def test_file_limit_shrink_keeps_the_reserve(tmp_path, test_users, holders):
    d = FewFilesDaemon(tmp_path, 0, config={**BASE_CONFIG, "max_connections": 1000,
                                            "max_connections_per_uid": 1000,
                                            "reserved_connections": 10})
    conns = []
    try:
        d.start()
        log = d.log()
        assert ("max_connections = 1000 does not fit the open-file limit of 100; serving at "
                "most 36 connections (raise LimitNOFILE=)") in log
        assert ("of those, 10 are kept for root and the daemon's user (reserved_connections) "
                "and 26 are left to other users") in log
        alice = holders(d.socket, ALICE)
        assert (alice.result["held"], alice.result["refusal"]) == (26, refusal(26))
        conns, refused = open_until_refused(d.socket, 20)
        assert len(conns) == 10 and refused == refusal(36), (len(conns), refused)
    finally:
        for c in conns:
            c.close()
        problem = d.cleanup()
        assert problem is None, problem


class DaemonAsUser(Daemon):
    """apikeyd running as `user` (as the packaged unit runs it as apikeyd),
    with its files where that user may reach them."""

    def __init__(self, tmp_path, user, **kw):
        self.user = user
        self.own_dir = Path(tempfile.mkdtemp(prefix="akt-own-", dir="/tmp"))
        super().__init__(tmp_path, 0, state_dir=self.own_dir / "state",
                         socket_path=self.own_dir / "run" / "io.apikeyd.Keys", **kw)
        self.config_file = self.own_dir / "apikeyd.conf"
        self.config_file.write_text((tmp_path / "apikeyd0.conf").read_text())
        pw = pwd.getpwnam(user)
        (self.own_dir / "run").mkdir()
        for p in (self.own_dir, self.own_dir / "run", self.config_file):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        os.chmod(self.own_dir, 0o755)
        os.chmod(self.own_dir / "run", 0o755)

    def argv(self):
        argv = super().argv()
        argv[0] = str(reachable(argv[0]))
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--clear-groups",
                "--"] + argv

    def cleanup(self):
        problem = super().cleanup()
        shutil.rmtree(self.own_dir, ignore_errors=True)
        return problem


def test_the_daemons_own_user_gets_the_reserve(tmp_path, test_users, holders):
    """The daemon runs as akt-bob: bob's connections come from the reserve,
    alice's and the admin's do not."""
    d = DaemonAsUser(tmp_path, BOB, config={**BASE_CONFIG, "max_connections": 8,
                                            "max_connections_per_uid": 4})
    try:
        d.start()
        alice = holders(d.socket, ALICE)
        admin = holders(d.socket, ADMIN)
        assert (alice.result["held"], alice.result["refusal"]) == (4, refusal(4))
        bob = holders(d.socket, BOB)
        assert (bob.result["held"], bob.result["refusal"]) == (1, refusal(8))
        assert (admin.result["held"], admin.result["refusal"]) == (3, refusal(7))
    finally:
        problem = d.cleanup()
        assert problem is None, problem
