# SPDX-License-Identifier: MIT
"""Fixtures for the integration tests: the real daemon on a real socket.

- ``Varlink``: a small blocking Varlink client (JSON object + NUL framing)
  with a timeout on every socket operation, so no test can hang.
- ``daemon``: a factory that starts build/apikeyd with a fresh state
  directory and socket, waits until it answers GetInfo, and stops it (by its
  PID) at teardown whatever happened.
- ``activated_daemon``: the same daemon started by systemd-socket-activate,
  with a datagram socket at NOTIFY_SOCKET collecting its sd_notify messages.
- ``test_users`` / ``as_user``: ordinary users and an admin-group member,
  created for the session and removed at its end; ``as_user`` runs a function
  in a forked child with the user's uid, gid and groups, so the daemon sees
  that user in SO_PEERCRED / SO_PEERGROUPS.
"""

import base64
import calendar
import fcntl
import grp
import json
import os
import pickle
import pwd
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import traceback
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APIKEYD = Path(os.environ.get("APIKEYD") or
               Path(os.environ.get("APIKEYD_BUILD", str(REPO / "build"))) / "apikeyd")
INTERFACE_FILE = REPO / "apikeyd" / "io.apikeyd.Keys.varlink"
IFACE = "io.apikeyd.Keys"

ADMIN_GROUP = "akt-admins"
ALICE = "akt-alice"
BOB = "akt-bob"
ADMIN = "akt-admin"
TEST_USERS = (ALICE, BOB, ADMIN)

# The scanners' regular expression from the README.
TOKEN_RE = re.compile(r"\b[a-z]{2,8}_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}\b")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
ISO_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

# Who runs the tests: the daemon's clients in most tests.  As root they are
# admins by uid 0; otherwise the daemon is configured with the user's own
# primary group as its admin group, so the same tests run without root.
ME = pwd.getpwuid(os.getuid()).pw_name
ME_ACTOR = f"uid={os.getuid()}({ME})"
DEFAULT_ADMIN_GROUP = ADMIN_GROUP if os.geteuid() == 0 else grp.getgrgid(os.getgid()).gr_name

IO_TIMEOUT = 5.0
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


# ---------------------------------------------------------------- tokens


def base62_check(body):
    """The 6 check digits: zlib's CRC-32 of `body` in base62, most significant first."""
    v = zlib.crc32(body.encode())
    out = []
    for _ in range(6):
        out.append(BASE62[v % 62])
        v //= 62
    return "".join(reversed(out))


def make_token(prefix, key_id, secret):
    body = f"{prefix}_{key_id}_{secret}"
    return body + base62_check(body)


def split_token(token):
    """(prefix, id, secret, check) of a well-formed token."""
    prefix, rest = token.split("_", 1)
    key_id, tail = rest[:12], rest[13:]
    assert rest[12] == "_", token
    return prefix, key_id, tail[:43], tail[43:]


def other_secret(secret):
    """A different 43-character base62 secret."""
    return "".join(BASE62[(BASE62.index(c) + 1) % 62] for c in secret)


def parse_iso(ts):
    """Seconds since the epoch of an ISO 8601 UTC time as the daemon writes it."""
    assert ISO_UTC_RE.match(ts), ts
    return calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ"))


# ---------------------------------------------------------------- Varlink client


class ConnectionClosed(Exception):
    pass


class Varlink:
    """A blocking Varlink client.  Every socket operation has a timeout."""

    def __init__(self, path, timeout=IO_TIMEOUT):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(self.path)
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def settimeout(self, t):
        self.sock.settimeout(t)

    # raw framing

    def send_bytes(self, data):
        self.sock.sendall(data)

    def send(self, obj):
        self.send_bytes(json.dumps(obj).encode() + b"\0")

    def recv_raw(self):
        """One message without its NUL; None when the peer closed the connection."""
        while b"\0" not in self.buf:
            if self.eof:
                return None
            chunk = self.sock.recv(65536)
            if not chunk:
                self.eof = True
                if self.buf:
                    raise AssertionError(f"connection closed inside a message: {self.buf!r}")
                return None
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return msg

    def recv(self):
        msg = self.recv_raw()
        if msg is None:
            raise ConnectionClosed(f"{self.path}: connection closed by the daemon")
        obj = json.loads(msg)
        assert isinstance(obj, dict), msg
        return obj

    def wait_closed(self, timeout=IO_TIMEOUT):
        """True when the daemon closes the connection within `timeout`
        (anything it sends before is skipped); False if it stays open."""
        old = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return False
                except ConnectionResetError:
                    return True
                if not chunk:
                    return True
            return False
        finally:
            self.sock.settimeout(old)

    # calls

    def call(self, method, params=None, more=False, oneway=False):
        """The reply as a dict; for `more`, the list of replies (the last one
        without "continues"); for `oneway`, None."""
        msg = {"method": method}
        if params is not None:
            msg["parameters"] = params
        if more:
            msg["more"] = True
        if oneway:
            msg["oneway"] = True
        self.send(msg)
        if oneway:
            return None
        if not more:
            return self.recv()
        replies = []
        while True:
            r = self.recv()
            replies.append(r)
            if "error" in r or not r.get("continues"):
                return replies

    def ok(self, method, params=None):
        """Call and return the reply's parameters; fails on an error reply."""
        r = self.call(method, params)
        assert "error" not in r, f"{method}({params}) failed: {r}"
        assert set(r) == {"parameters"}, r
        return r["parameters"]

    def err(self, method, params=None):
        """Call, expect an error reply, return (error, parameters)."""
        r = self.call(method, params)
        assert "error" in r, f"{method}({params}) succeeded: {r}"
        return r["error"], r.get("parameters", {})

    # shortcuts for io.apikeyd.Keys

    def create(self, name, **params):
        return self.ok(f"{IFACE}.Create", {"name": name, **params})

    def verify(self, token, **params):
        return self.ok(f"{IFACE}.Verify", {"token": token, **params})

    def get(self, key_id, **params):
        return self.ok(f"{IFACE}.Get", {"id": key_id, **params})["key"]

    def list(self, **params):
        return self.ok(f"{IFACE}.List", params)


def field_refusal(result):
    """The (error, parameters) of a refused key field, its `reason` checked
    present and then left out: for tests of which parameter is refused;
    test_validation.py shows the words."""
    err, params = result
    params = dict(params)
    assert params.pop("reason", None), result
    return err, params


def list_all_audit(client):
    """Every audit event ListAudit shows, page by page, oldest first."""
    events, after = [], 0
    while True:
        page = client.ok(f"{IFACE}.ListAudit", {"after": after, "limit": 1000})["events"]
        if not page:
            return events
        events += page
        after = page[-1]["seq"]


def list_all_ids(client, **params):
    """Every key id List shows, page by page."""
    ids, cursor = [], None
    for _ in range(10000):
        p = dict(params)
        if cursor:
            p["cursor"] = cursor
        page = client.list(**p)
        ids += [k["id"] for k in page["keys"]]
        cursor = page.get("cursor")
        if not cursor:
            return ids
    raise AssertionError("List never stopped returning a cursor")


@pytest.fixture
def varlink():
    """varlink(path) -> a connected Varlink client, closed at teardown."""
    clients = []

    def connect(path, timeout=IO_TIMEOUT):
        c = Varlink(path, timeout)
        clients.append(c)
        return c

    yield connect
    for c in clients:
        c.close()


# ---------------------------------------------------------------- processes


def _stop_pid(proc, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Signal `proc` by its PID and reap it; SIGKILL if it does not exit."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout)
        raise AssertionError(f"pid {proc.pid} ignored signal {sig} for {timeout}s; killed")


def _short_socket_dir():
    """A world-searchable directory with a short path for a socket: tmp_path
    sits below a 0700 directory that other users cannot enter, and
    sun_path holds at most 107 bytes."""
    d = tempfile.mkdtemp(prefix="akt-", dir="/tmp")
    os.chmod(d, 0o755)
    return Path(d)


def _config_text(config, config_text):
    if config_text is not None:
        return config_text
    opts = {"admin_group": DEFAULT_ADMIN_GROUP}
    opts.update(config or {})
    return "".join(f"{k} = {v}\n" for k, v in opts.items())


class Daemon:
    """One apikeyd process.  Started by the `daemon` fixture."""

    def __init__(self, tmp_path, index, state_dir=None, socket_path=None, config=None,
                 config_text=None, debug=False, extra_args=()):
        self.tmp_path = tmp_path
        self.state_dir = Path(state_dir) if state_dir else tmp_path / f"state{index}"
        if socket_path is None:
            self.socket_dir = _short_socket_dir()
            socket_path = self.socket_dir / "io.apikeyd.Keys"
        else:
            self.socket_dir = None
        self.socket = str(socket_path)
        self.config_file = tmp_path / f"apikeyd{index}.conf"
        self.config_file.write_text(_config_text(config, config_text))
        self.log_path = tmp_path / f"apikeyd{index}.log"
        self.debug = debug
        self.extra_args = list(extra_args)
        self.proc = None
        self.killed = False
        self.clients = []

    def argv(self):
        argv = [str(APIKEYD), "--config", str(self.config_file), "--state-dir",
                str(self.state_dir), "--socket", self.socket]
        if self.debug:
            argv.append("--debug")
        return argv + self.extra_args

    def start(self, wait=True):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, close_fds=True)
        self.pid = self.proc.pid
        self.killed = False
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"apikeyd exited with {self.proc.returncode} while "
                                     f"starting; its log:\n{self.log()}")
            try:
                with Varlink(self.socket, timeout=1.0) as c:
                    r = c.call("org.varlink.service.GetInfo")
                    if "error" not in r:
                        return
                    last = r
            except (OSError, ConnectionClosed) as e:
                last = e
            time.sleep(0.02)
        raise AssertionError(f"apikeyd did not answer GetInfo within {timeout}s ({last}); "
                             f"its log:\n{self.log()}")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def client(self, timeout=IO_TIMEOUT):
        c = Varlink(self.socket, timeout)
        self.clients.append(c)
        return c

    def _close_clients(self):
        for c in self.clients:
            c.close()
        self.clients = []

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        """SIGTERM, wait, and insist on exit code 0."""
        self._close_clients()
        rc = _stop_pid(self.proc, signal.SIGTERM)
        assert rc == 0, f"apikeyd exited with {rc} on SIGTERM; its log:\n{self.log()}"
        return rc

    def kill(self):
        """SIGKILL: no clean shutdown (the test wants to see what survives)."""
        self._close_clients()
        _stop_pid(self.proc, signal.SIGKILL)
        self.killed = True

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        """Stop the daemon by its PID if it still runs; a problem to report
        (it did not exit 0 on SIGTERM, or it died of a signal nobody sent)."""
        problem = None
        self._close_clients()
        if self.proc is not None and self.proc.poll() is None:
            try:
                rc = _stop_pid(self.proc, signal.SIGTERM)
                if rc != 0:
                    problem = f"exited with {rc} on SIGTERM"
            except AssertionError as e:
                problem = str(e)
        elif self.proc is not None and self.proc.returncode < 0 and not self.killed:
            problem = f"died of signal {-self.proc.returncode}"
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if problem:
            return f"apikeyd (pid {self.proc.pid}) {problem}; its log:\n{self.log()}"
        return None


# Programs run as another user (runuser, setpriv) need a path that user can
# traverse; a checkout in a 0700 home (root's, or Debian 12's default for new
# users) has none.  Such runs get a copy in a world-readable folder of the
# session's own, made on first use and removed when the session ends.
_reachable = {"dir": None, "copies": {}}


def _reachable_by_all(path):
    """Whether every folder on the way to `path` may be searched by others."""
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & 0o001 for d in (p, *p.parents))


def reachable(path):
    """The program (or module) at `path`, as a copy any user may run: the
    path to give runuser or setpriv.  One copy per file and session."""
    path = Path(path).resolve()
    if path not in _reachable["copies"]:
        if _reachable["dir"] is None:
            base = tempfile.gettempdir()
            if not _reachable_by_all(base):
                base = "/tmp"
            d = Path(tempfile.mkdtemp(prefix="akt-bin-", dir=base))
            os.chmod(d, 0o755)
            _reachable["dir"] = d
        sub = Path(tempfile.mkdtemp(dir=_reachable["dir"]))
        os.chmod(sub, 0o755)
        copy = sub / path.name
        shutil.copy2(path, copy)
        os.chmod(copy, 0o755)
        _reachable["copies"][path] = copy
    return _reachable["copies"][path]


def pytest_unconfigure(config):
    if _reachable["dir"] is not None:
        shutil.rmtree(_reachable["dir"], ignore_errors=True)
        _reachable["dir"] = None
        _reachable["copies"].clear()


def _require_binary():
    if not APIKEYD.is_file() or not os.access(APIKEYD, os.X_OK):
        pytest.fail(f"{APIKEYD} is missing: build it with `make` first", pytrace=False)


@pytest.fixture
def daemon(tmp_path):
    """daemon(config=None, config_text=None, debug=False, state_dir=None,
    socket_path=None, extra_args=(), start=True) -> a running Daemon.

    `config` is a dict of options added to `admin_group = akt-admins` (when
    not root: the caller's primary group);
    `config_text` replaces the whole file.  Every daemon started is stopped by
    its PID at teardown."""
    _require_binary()
    started = []

    def factory(config=None, config_text=None, debug=False, state_dir=None, socket_path=None,
                extra_args=(), start=True):
        d = Daemon(tmp_path, len(started), state_dir=state_dir, socket_path=socket_path,
                   config=config, config_text=config_text, debug=debug,
                   extra_args=extra_args)
        started.append(d)
        if start:
            d.start()
        return d

    yield factory
    _cleanup_all(started)


def _cleanup_all(daemons):
    problems = [p for p in (d.cleanup() for d in daemons) if p]
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def apikeyd(daemon):
    """One daemon with the default test configuration."""
    return daemon()


@pytest.fixture
def root(apikeyd):
    """A root client of `apikeyd`."""
    return apikeyd.client()


# ---------------------------------------------------------------- socket activation


class NotifyListener:
    """A datagram socket at NOTIFY_SOCKET that collects sd_notify messages."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, line, timeout=START_TIMEOUT):
        """Wait until a message holds `line` (e.g. "READY=1"); the messages so far."""
        deadline = time.monotonic() + timeout
        while True:
            if any(line in m.split("\n") for m in self.messages):
                return self.messages
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {line} within {timeout}s; got {self.messages}")
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                self.messages.append(self.sock.recv(4096).decode(errors="replace"))

    def close(self):
        self.sock.close()


class ActivatedDaemon(Daemon):
    """apikeyd behind systemd-socket-activate, which listens on the socket and
    execs the daemon (same PID) on the first connection."""

    def __init__(self, tmp_path, index, **kw):
        super().__init__(tmp_path, index, **kw)
        self.notify = NotifyListener(self.socket_dir / "notify")

    def argv(self):
        return ["systemd-socket-activate", "-l", self.socket,
                "-E", f"NOTIFY_SOCKET={self.notify.path}"] + super().argv()

    def start(self, wait=True):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, close_fds=True)
        self.pid = self.proc.pid
        self.killed = False
        deadline = time.monotonic() + START_TIMEOUT
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"systemd-socket-activate did not create {self.socket}; "
                                     f"log:\n{self.log()}")
            time.sleep(0.01)
        if wait:
            self.wait_ready()
        return self

    def stop(self):
        """SIGTERM: the daemon says STOPPING=1 (if it was ever started by a
        connection) and exits 0."""
        was_ready = any("READY=1" in m.split("\n") for m in self.notify.messages)
        rc = super().stop()
        if was_ready:
            self.notify.wait_for("STOPPING=1", timeout=2)
        return rc

    def cleanup(self):
        try:
            return super().cleanup()
        finally:
            self.notify.close()


@pytest.fixture
def activated_daemon(tmp_path):
    """activated_daemon(config=None, ..., start=True) -> ActivatedDaemon,
    already started and answering (the first GetInfo activated it)."""
    _require_binary()
    if shutil.which("systemd-socket-activate") is None:
        pytest.skip("systemd-socket-activate is not installed (package systemd)")
    started = []

    def factory(config=None, config_text=None, debug=False, start=True):
        d = ActivatedDaemon(tmp_path, 100 + len(started), config=config,
                            config_text=config_text, debug=debug)
        started.append(d)
        if start:
            d.start()
        return d

    yield factory
    _cleanup_all(started)


# ---------------------------------------------------------------- test users


def _run(argv, check=True):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _remove_test_accounts():
    problems = []
    for u in TEST_USERS:
        if _user_exists(u):
            r = _run(["userdel", "-r", u], check=False)
            # 12: the home directory was not there to remove (we create none).
            if r.returncode not in (0, 12) or _user_exists(u):
                problems.append(f"userdel {u}: {r.returncode} {r.stderr.strip()}")
    for g in (ADMIN_GROUP,) + TEST_USERS:
        if _group_exists(g):
            r = _run(["groupdel", g], check=False)
            if r.returncode != 0:
                problems.append(f"groupdel {g}: {r.returncode} {r.stderr.strip()}")
    return problems


# Test sessions may run side by side on one machine (several checkouts, or a
# developer's run during CI): they share the accounts.  Each session holds a
# shared lock on USERS_INUSE_LOCK while it uses them; USERS_SETUP_LOCK makes
# "create unless present" and "remove if last" atomic.  A session that is
# killed drops its locks with its file descriptors, so the next one to find
# nobody else holding the accounts replaces whatever it left behind.
_LOCK_DIR = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
USERS_SETUP_LOCK = os.path.join(_LOCK_DIR, "apikeyd-integration-users.setup.lock")
USERS_INUSE_LOCK = os.path.join(_LOCK_DIR, "apikeyd-integration-users.inuse.lock")


def _create_test_accounts():
    _run(["groupadd", "--system", ADMIN_GROUP])
    for u in TEST_USERS:
        argv = ["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                "--shell", "/usr/sbin/nologin", "--user-group", u]
        if u == ADMIN:
            argv[1:1] = ["--groups", ADMIN_GROUP]
        _run(argv)


def _sole_user(inuse_fd):
    """True if no other session holds the accounts; we keep our shared lock
    either way.  Call with the setup lock held."""
    try:
        fcntl.flock(inuse_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        alone = True
    except BlockingIOError:
        alone = False
    # flock converts by unlocking first: take the shared lock (back).
    fcntl.flock(inuse_fd, fcntl.LOCK_SH)
    return alone


@pytest.fixture(scope="session")
def test_users():
    """Create akt-alice, akt-bob and akt-admin (in group akt-admins) for the
    session; remove them and the group at its end, even after failures
    (unless another test session still uses them)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates users and calls the daemon as them")
    for tool in ("useradd", "userdel", "groupadd", "groupdel"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    setup_fd = os.open(USERS_SETUP_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    inuse_fd = os.open(USERS_INUSE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(setup_fd, fcntl.LOCK_EX)
        try:
            fcntl.flock(inuse_fd, fcntl.LOCK_SH)
            if _sole_user(inuse_fd):
                _remove_test_accounts()  # left over by a run that was killed
                _create_test_accounts()
            else:
                missing = [u for u in TEST_USERS if not _user_exists(u)]
                assert not missing, f"another test session holds the accounts, but {missing} " \
                                    "are missing"
        finally:
            fcntl.flock(setup_fd, fcntl.LOCK_UN)
        yield {u: pwd.getpwnam(u) for u in TEST_USERS}
    finally:
        fcntl.flock(setup_fd, fcntl.LOCK_EX)
        try:
            problems = _remove_test_accounts() if _sole_user(inuse_fd) else []
        finally:
            os.close(inuse_fd)
            os.close(setup_fd)
        assert not problems, f"could not remove test accounts: {problems}"


def run_as(name, fn, timeout=20.0, groups=None):
    """Run fn() in a forked child with the uid, gid and groups of user `name`
    (or the supplementary `groups` given); return its (picklable) result, or
    raise its exception's text."""
    pw = pwd.getpwnam(name)
    if groups is None:
        groups = os.getgrouplist(name, pw.pw_gid)
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(rfd)
            try:
                os.setgroups(groups)
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
                assert os.getuid() == pw.pw_uid and os.geteuid() == pw.pw_uid
                result = ("ok", fn())
            except BaseException as e:  # noqa: B902 - reported to the parent
                result = ("error", "".join(traceback.format_exception(type(e), e,
                                                                      e.__traceback__)))
            try:
                data = pickle.dumps(result)
            except Exception as e:
                data = pickle.dumps(("error", f"result not picklable: {e!r}"))
            view = memoryview(data)
            while view:
                n = os.write(wfd, view)
                view = view[n:]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(wfd)
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"call as {name} did not finish within {timeout}s")
            r, _, _ = select.select([rfd], [], [], left)
            if not r:
                continue
            chunk = os.read(rfd, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(rfd)
        os.waitpid(pid, 0)
    if not data:
        raise AssertionError(f"the child running as {name} died without an answer")
    status, value = pickle.loads(data)
    if status != "ok":
        raise AssertionError(f"as {name}:\n{value}")
    return value


class UserClient:
    """Varlink calls made by a process running as a given user; each call is
    its own connection from a fresh child."""

    def __init__(self, name, socket_path, groups=None):
        self.name = name
        self.socket = socket_path
        self.groups = groups
        self.uid = pwd.getpwnam(name).pw_uid

    def run(self, fn):
        """fn(client) inside the user's process; its result."""
        path = self.socket

        def body():
            with Varlink(path) as c:
                return fn(c)

        return run_as(self.name, body, groups=self.groups)

    def call(self, method, params=None, more=False):
        return self.run(lambda c: c.call(method, params, more=more))

    def ok(self, method, params=None):
        r = self.call(method, params)
        assert "error" not in r, f"as {self.name}: {method}({params}) failed: {r}"
        return r["parameters"]

    def err(self, method, params=None):
        r = self.call(method, params)
        assert "error" in r, f"as {self.name}: {method}({params}) succeeded: {r}"
        return r["error"], r.get("parameters", {})

    def create(self, name, **params):
        return self.ok(f"{IFACE}.Create", {"name": name, **params})


@pytest.fixture
def as_user(test_users):
    """as_user(name, fn) runs fn() as that user in a child process;
    as_user(name, socket=PATH) returns a UserClient for that socket.
    `groups` replaces the user's supplementary groups (a list of gids)."""

    def helper(name, fn=None, socket=None, groups=None):
        if fn is not None:
            return run_as(name, fn, groups=groups)
        return UserClient(name, str(socket), groups=groups)

    return helper


def decode_b64(s):
    return base64.b64decode(s, validate=True)


# ---------------------------------------------------------------- the interface file


class Interface:
    """The declarations of a Varlink interface file: methods (with their
    input and output fields), types and errors.  A field is
    (name, type, optional); an enum type is a list of its values."""

    def __init__(self, text):
        self.text = text
        src = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        self.name = re.search(r"^\s*interface\s+([\w.]+)", src, re.M).group(1)
        self.method_names = re.findall(r"^method\s+(\w+)\s*\(", text, re.M)
        self.methods = {}
        for m in re.finditer(r"\bmethod\s+(\w+)\s*\((.*?)\)\s*->\s*\((.*?)\)", src, re.S):
            self.methods[m.group(1)] = (self._fields(m.group(2)), self._fields(m.group(3)))
        self.types = {}
        for m in re.finditer(r"\btype\s+(\w+)\s*\((.*?)\)", src, re.S):
            body = m.group(2)
            if ":" in body:
                self.types[m.group(1)] = self._fields(body)
            else:
                self.types[m.group(1)] = [v.strip() for v in body.split(",") if v.strip()]
        self.errors = {}
        for m in re.finditer(r"\berror\s+(\w+)\s*\((.*?)\)", src, re.S):
            self.errors[m.group(1)] = self._fields(m.group(2))

    @staticmethod
    def _fields(body):
        out = []
        for part in body.split(","):
            part = part.strip()
            if not part:
                continue
            name, typ = (x.strip() for x in part.split(":", 1))
            out.append((name, typ.lstrip("?"), typ.startswith("?")))
        return out

    def inputs(self, method):
        return self.methods[method][0]

    def outputs(self, method):
        return self.methods[method][1]


INTERFACE = Interface(INTERFACE_FILE.read_text())


def _check_value(where, typ, value):
    if typ.startswith("[]"):
        assert isinstance(value, list), f"{where}: {value!r} is not an array"
        for i, v in enumerate(value):
            _check_value(f"{where}[{i}]", typ[2:], v)
    elif typ == "string":
        assert isinstance(value, str), f"{where}: {value!r} is not a string"
    elif typ == "bool":
        assert isinstance(value, bool), f"{where}: {value!r} is not a bool"
    elif typ == "int":
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: {value!r}"
    elif typ in INTERFACE.types:
        spec = INTERFACE.types[typ]
        if spec and isinstance(spec[0], str):
            assert value in spec, f"{where}: {value!r} is not one of {spec}"
        else:
            check_struct(where, spec, value)
    else:
        raise AssertionError(f"{where}: unknown type {typ}")


def check_struct(where, fields, value):
    """`value` has every required field, no undeclared one, each of its type."""
    assert isinstance(value, dict), f"{where}: {value!r} is not an object"
    declared = {name for name, _, _ in fields}
    extra = set(value) - declared
    assert not extra, f"{where}: fields {sorted(extra)} are not declared in the interface"
    for name, typ, optional in fields:
        if name not in value:
            assert optional, f"{where}: required field {name!r} is missing from {value}"
            continue
        _check_value(f"{where}.{name}", typ, value[name])


def check_reply(method, params):
    """The parameters of a reply of IFACE.`method` match the interface file."""
    check_struct(f"{method} reply", INTERFACE.outputs(method), params)
    return params


def check_key(key):
    """A Key as the interface declares it, with its times in ISO 8601 UTC."""
    check_struct("Key", INTERFACE.types["Key"], key)
    for f in ("expires_at", "created_at", "last_used_at"):
        if f in key:
            assert ISO_UTC_RE.match(key[f]), f"{f}: {key[f]!r}"
    return key
