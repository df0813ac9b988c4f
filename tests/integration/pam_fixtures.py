# SPDX-License-Identifier: MIT
"""Helpers for the PAM tests: the module and the harness of a build, PAM
service directories of the test's own, the admin's PAM snippet, a capture of
syslog lines at /dev/log, stand-in listeners for the daemon's socket, and a
ctypes driver for answers the line-based harness cannot type.

Every process started here is stopped by its PID, every file created is
removed, also when a test fails."""

import fcntl
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, make_token, other_secret, split_token

BUILD = Path(os.environ.get("APIKEYD_BUILD", str(REPO / "build")))
ASAN_BUILD = REPO / "build-asan"
ASAN_CFLAGS = "-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer"
ASAN_LDFLAGS = "-fsanitize=address,undefined"
SNIPPET = REPO / "systemd" / "pam.d" / "apikey"

# PAM return codes (security/_pam_types.h).
PAM_SUCCESS = 0
PAM_SERVICE_ERR = 3
PAM_PERM_DENIED = 6
PAM_AUTH_ERR = 7
PAM_CRED_INSUFFICIENT = 8
PAM_AUTHINFO_UNAVAIL = 9
PAM_USER_UNKNOWN = 10
PAM_MAXTRIES = 11
PAM_CONV_ERR = 19
PAM_IGNORE = 25

# libpam never hands PAM_IGNORE to the application: the probe stack below
# makes it visible.  pam_apikey sits first with
# [success=done ignore=ignore default=die]; only PAM_IGNORE goes on to
# pam_debug, which answers PAM_CRED_INSUFFICIENT -- a code pam_apikey never
# returns -- and says so in a message.
FELL_THROUGH = PAM_CRED_INSUFFICIENT

# What sshd feeds PAM for unknown users and refused root logins.
SSHD_FAKE_PASSWORD = b"\b\n\r\177INCORRECT"

SANITIZER_RE = re.compile(r"ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: \w+Sanitizer")


def is_root():
    return os.geteuid() == 0


def need_root(what):
    if not is_root():
        pytest.skip(f"needs root: {what}")


def need_tool(*names):
    for n in names:
        if shutil.which(n) is None:
            pytest.skip(f"{n} is not installed")


def trust_me():
    """Module arguments that let it talk to a daemon or listener run by
    whoever runs the tests: nothing for root, else daemon_user=<that user>."""
    return "" if is_root() else f"daemon_user={pwd.getpwuid(os.geteuid()).pw_name}"


def forged(token):
    """The token with another secret and a valid checksum: NOT_FOUND."""
    prefix, key_id, secret, _ = split_token(token)
    return make_token(prefix, key_id, other_secret(secret))


def key_id_of(token):
    return split_token(token)[1]


def secret_of(token):
    return split_token(token)[2]


# ---------------------------------------------------------------- builds


class Build:
    """The PAM module and the harness of one build directory."""

    def __init__(self, path, sanitized=False):
        self.path = Path(path)
        self.sanitized = sanitized
        self.module = self.path / "pam_apikey.so"
        self.harness = self.path / "tests" / "pam-harness"

    def __repr__(self):
        return f"Build({self.path})"

    def check(self):
        for f in (self.module, self.harness):
            if not f.is_file():
                pytest.fail(f"{f} is missing: build it with `make tests` first", pytrace=False)
        return self

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LD_", "ASAN_", "UBSAN_", "LSAN_", "VALGRIND"))}
        env["LC_ALL"] = "C"
        if self.sanitized:
            # Any report fails the run: 99 cannot be mistaken for a PAM code
            # the tests expect, and stderr is checked as well.
            env["ASAN_OPTIONS"] = "detect_leaks=1:exitcode=99:abort_on_error=0"
            env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=99"
        env.update(extra or {})
        return env

    def sanitizer_preload(self):
        """LD_PRELOAD keeping the module mapped after pam_end, so leak
        reports name its frames; the ASan runtime must come first."""
        if not self.sanitized:
            return str(self.module)
        rt = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                            text=True, timeout=30).stdout.strip()
        return f"{rt} {self.module}"


DEFAULT_BUILD = Build(BUILD)
_asan_state = {}


def asan_build():
    """build-asan/, brought up to date once per session with the documented
    command (make is incremental, so this is quick when nothing changed)."""
    if "build" not in _asan_state:
        need_tool("make", "gcc")
        r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), "BUILD=build-asan",
                            f"CFLAGS={ASAN_CFLAGS}", f"LDFLAGS={ASAN_LDFLAGS}", "tests"],
                           capture_output=True, text=True, timeout=600)
        _asan_state["build"] = (r.returncode, r.stdout[-3000:] + r.stderr[-3000:])
    rc, out = _asan_state["build"]
    if rc != 0:
        pytest.fail(f"the ASan build failed ({rc}):\n{out}", pytrace=False)
    return Build(ASAN_BUILD, sanitized=True).check()


# ---------------------------------------------------------------- the harness


class HarnessResult:
    def __init__(self, argv, code, out, err, elapsed):
        self.argv, self.code, self.out, self.err, self.elapsed = argv, code, out, err, elapsed
        lines = out.splitlines()
        self.prompts = [l[len("prompt: "):] for l in lines if l.startswith("prompt: ")]
        self.infos = [l[len("info: "):] for l in lines if l.startswith("info: ")]
        self.errors = [l[len("error: "):] for l in lines if l.startswith("error: ")]

    @property
    def fell_through(self):
        """pam_apikey answered PAM_IGNORE in a probe stack."""
        return self.code == FELL_THROUGH and any(
            i in ("auth=cred_insufficient", "acct=cred_insufficient") for i in self.infos)

    def __repr__(self):
        return (f"<harness exit {self.code} after {self.elapsed:.3f}s\n--- stdout\n{self.out}"
                f"--- stderr\n{self.err}>")


class PamDir:
    """A directory of PAM service files read by pam_start_confdir()."""

    def __init__(self, path, build):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.build = build
        # Never falls back to /etc/pam.d; a service without a file gets this.
        self.write("other", "auth required pam_deny.so\naccount required pam_deny.so\n"
                            "password required pam_deny.so\nsession required pam_deny.so\n")

    @property
    def module(self):
        return str(self.build.module)

    def write(self, service, text):
        (self.path / service).write_text(text)
        return service

    def line(self, kind, control, args=""):
        return f"{kind} {control} {self.module} {args}".rstrip() + "\n"

    def probe(self, service, args="", kind="auth", before=""):
        """A stack that shows pam_apikey's own code: its code when it fails
        (die), PAM_SUCCESS (done), FELL_THROUGH when it ignored."""
        word = {"auth": "auth", "account": "acct"}[kind]
        return self.write(service, before +
                          self.line(kind, "[success=done ignore=ignore default=die]", args) +
                          f"{kind} required pam_debug.so {word}=cred_insufficient\n")

    def run(self, service, user, answers=(), acct=False, rhost=None, tty=None, wrapper=(),
            env=None, timeout=60, check_sanitizer=True):
        argv = list(wrapper) + [str(self.build.harness)]
        if acct:
            argv.append("--acct")
        if rhost is not None:
            argv += ["--rhost", rhost]
        if tty is not None:
            argv += ["--tty", tty]
        argv += [str(self.path), service, user]
        stdin = "".join(a + "\n" for a in answers)
        t0 = time.monotonic()
        r = subprocess.run(argv, input=stdin, capture_output=True, text=True,
                           env=self.build.env(env), timeout=timeout)
        res = HarnessResult(argv, r.returncode, r.stdout, r.stderr, time.monotonic() - t0)
        if check_sanitizer and self.build.sanitized:
            assert not SANITIZER_RE.search(r.stderr), f"sanitizer report: {res}"
            assert r.returncode != 99, res
        return res


def snippet_lines():
    """The (non-comment) lines of the admin's PAM snippet."""
    lines = [l.strip() for l in SNIPPET.read_text().splitlines()]
    return [l for l in lines if l and not l.startswith("#")]


def snippet_stack(module, extra_args=""):
    """The snippet with the module named by path and extra arguments added."""
    out = []
    for l in snippet_lines():
        words = l.split()
        assert "pam_apikey.so" in words, l
        i = words.index("pam_apikey.so")
        words[i] = str(module)
        if extra_args:
            words.append(extra_args)
        out.append(" ".join(words))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- ctypes driver

# The harness answers a prompt with one line of stdin; this answers it with
# any bytes (sshd's fake password holds a newline).  It runs as its own
# process so libpam and the module live and die with it.
_CTYPES_DRIVER = r"""
import ctypes, os, signal, sys, threading, time
# Python ignores SIGPIPE; a host process written in C need not.
signal.signal(signal.SIGPIPE, signal.SIG_DFL)
confdir, service, user, answer = sys.argv[1], sys.argv[2], sys.argv[3], bytes.fromhex(sys.argv[4])
watch = len(sys.argv) > 5 and sys.argv[5] == "watch-fds"
if user.startswith("repeat:"):  # a user name longer than one argument may be
    n, ch = user[len("repeat:"):].split(":")
    user = ch * int(n)
seen, done = {}, threading.Event()

def watcher():
    # readlink only: opening anything here would take the free low numbers.
    while not done.is_set():
        now = time.monotonic()
        for fd in range(0, 12):
            try:
                link = os.readlink("/proc/self/fd/%d" % fd)
            except OSError:
                continue
            if link.startswith("socket:"):
                first, _ = seen.get((fd, link), (now, now))
                seen[(fd, link)] = (first, now)
        time.sleep(0.0005)

if watch:
    # A host process with stdin and stderr closed: the module's socket
    # must not take their numbers.
    os.close(0)
    os.close(2)
    threading.Thread(target=watcher, daemon=True).start()
libpam = ctypes.CDLL("libpam.so.0")
libc = ctypes.CDLL(None)
libc.calloc.restype = ctypes.c_void_p
libc.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]

class Msg(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]

class Resp(ctypes.Structure):
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]

CONV = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.POINTER(Msg)),
                        ctypes.POINTER(ctypes.POINTER(Resp)), ctypes.c_void_p)

class Conv(ctypes.Structure):
    _fields_ = [("conv", CONV), ("appdata_ptr", ctypes.c_void_p)]

def converse(n, msgs, resp, data):
    arr = ctypes.cast(libc.calloc(n, ctypes.sizeof(Resp)), ctypes.POINTER(Resp))
    for i in range(n):
        m = msgs[i].contents
        text = (m.msg or b"").decode(errors="replace")
        if m.msg_style in (1, 2):
            print("prompt: " + text, flush=True)
            buf = libc.malloc(len(answer) + 1)
            ctypes.memmove(buf, answer + b"\0", len(answer) + 1)
            arr[i].resp = buf
        else:
            print(("info: " if m.msg_style == 4 else "error: ") + text, flush=True)
    resp[0] = arr
    return 0

conv = Conv(CONV(converse), None)
h = ctypes.c_void_p()
r = libpam.pam_start_confdir(service.encode(), user.encode(), ctypes.byref(conv),
                             confdir.encode(), ctypes.byref(h))
if r != 0:
    sys.exit(98)
r = libpam.pam_authenticate(h, 0)
done.set()
print("auth=%d" % r, flush=True)
if watch:
    # Each socket seen: its fd and for how long (ms) it was open.
    print("sockets=%s" % ",".join("%d:%d" % (fd, (last - first) * 1000)
                                  for (fd, _), (first, last) in sorted(seen.items())),
          flush=True)
libpam.pam_end(h, r)
sys.exit(r)
"""


def run_ctypes_pam(pamdir, service, user, answer, timeout=30, watch_fds=False):
    argv = [sys.executable, "-c", _CTYPES_DRIVER, str(pamdir.path), service, user, answer.hex()]
    if watch_fds:
        argv.append("watch-fds")
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                       env=DEFAULT_BUILD.env())
    return HarnessResult(argv, r.returncode, r.stdout, r.stderr, time.monotonic() - t0)


# ---------------------------------------------------------------- a stand-in daemon

# Listens on a UNIX socket (as whoever runs it) and reports every
# connection and the bytes it received as JSON lines on stdout.  With a
# reply, it answers the first message of each connection with it (after
# `delay` seconds); with "<close>", it closes each connection unread.
_LISTENER = r"""
import json, os, socket, sys, time
path, reply, delay = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(path)
os.chmod(path, 0o666)
s.listen(16)
print(json.dumps({"event": "ready", "uid": os.getuid()}), flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(3)
    data = b""
    try:
        if reply == "<close>":
            # Hang up at once (only a glance, to tell the test's markers).
            c.settimeout(0.5)
            data = c.recv(64, socket.MSG_PEEK)
        while reply != "<close>" and b"\0" not in data:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        if b"\0" in data and reply and not data.startswith(b'{"sync":'):
            time.sleep(delay)
            c.sendall(reply.encode() + b"\0")
    except OSError:
        pass
    text = data.decode(errors="replace")
    if text.startswith('{"sync":'):
        print(json.dumps({"event": "sync", "data": text.rstrip("\0")}), flush=True)
    else:
        print(json.dumps({"event": "conn", "data": text}), flush=True)
    c.close()
"""

VALID_REPLY = json.dumps({"parameters": {"valid": True, "code": "VALID",
                                         "signed_at": "2030-01-01T00:00:00Z",
                                         "signature": "AAAA"}})


class Listener:
    """A process listening at `path`, run as `user` or as us."""

    def __init__(self, path, user=None, reply="", delay=0.0):
        self.path = str(path)
        self.syncs = 0
        argv = [sys.executable, "-c", _LISTENER, self.path, reply, str(delay)]
        kw = {}
        if user is not None:
            pw = pwd.getpwnam(user)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, close_fds=True, **kw)
        self.events = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(10):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise AssertionError(f"listener at {self.path} did not start: {err}")

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(ev)
            if ev.get("event") == "ready":
                self.uid = ev["uid"]
                self._ready.set()

    def connections(self, timeout=10):
        """The data received on each connection so far.  The listener takes
        connections one by one: once our own marker connection is reported,
        every earlier one has been."""
        self.syncs += 1
        marker = json.dumps({"sync": self.syncs})
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(self.path)
            s.sendall(marker.encode() + b"\0")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if any(e.get("event") == "sync" and e["data"] == marker for e in self.events):
                    return [e["data"] for e in self.events if e.get("event") == "conn"]
            time.sleep(0.005)
        raise AssertionError(f"the listener at {self.path} did not report {marker}")

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._reader.join(5)
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


@pytest.fixture
def listener():
    """listener(path, user=None, reply="", delay=0) -> a running Listener,
    stopped at teardown."""
    started = []

    def start(path, user=None, reply="", delay=0.0):
        lst = Listener(path, user=user, reply=reply, delay=delay)
        started.append(lst)
        return lst

    yield start
    for lst in started:
        lst.stop()


def socket_dir(owner=None):
    """A short, world-searchable directory for a socket (sun_path is small)."""
    d = Path(tempfile.mkdtemp(prefix="akp-", dir="/tmp"))
    os.chmod(d, 0o755)
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(d, pw.pw_uid, pw.pw_gid)
    return d


@pytest.fixture
def sockdir():
    """sockdir(owner=None) -> a fresh socket directory, removed at teardown."""
    made = []

    def make(owner=None):
        d = socket_dir(owner)
        made.append(d)
        return d

    yield make
    for d in made:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def conf_dir():
    """A fresh directory pam_apikey takes conf= files from: root's, 0755, under
    /run (root's and not writable by others, unlike /tmp); removed at teardown."""
    need_root("pam_apikey reads conf= files only from root's own directories")
    d = Path(tempfile.mkdtemp(prefix="akp-conf-", dir="/run"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- syslog at /dev/log

DEV_LOG = "/dev/log"
_LOCK_DIR = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
DEVLOG_LOCK = os.path.join(_LOCK_DIR, "apikeyd-pam-tests.devlog.lock")
DEVLOG_MARK = os.path.join(_LOCK_DIR, "apikeyd-pam-tests.devlog.ours")


class SyslogCapture:
    """A datagram socket bound at /dev/log collecting what processes send to
    syslog (there is no syslog daemon).  Only created if /dev/log did not
    exist; removed afterwards."""

    def __init__(self):
        self.messages = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.lock_fd = os.open(DEVLOG_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        deadline = time.monotonic() + 60
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.lock_fd)
                    pytest.fail("another test run holds /dev/log for over 60 s")
                time.sleep(0.05)
        try:
            self._remove_stale()
            if os.path.lexists(DEV_LOG):
                pytest.skip("/dev/log exists (a syslog daemon runs): its lines cannot be "
                            "captured here")
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self.sock.bind(DEV_LOG)
            os.chmod(DEV_LOG, 0o666)
            with open(DEVLOG_MARK, "w") as f:
                f.write(str(os.stat(DEV_LOG).st_ino))
        except BaseException:
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)
            raise
        self.sock.settimeout(0.05)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    @staticmethod
    def _remove_stale():
        """A socket a killed run of these tests left behind (the lock is ours)."""
        try:
            ino = int(Path(DEVLOG_MARK).read_text())
            st = os.lstat(DEV_LOG)
        except (FileNotFoundError, ValueError):
            return
        if stat.S_ISSOCK(st.st_mode) and st.st_ino == ino:
            os.unlink(DEV_LOG)
        os.unlink(DEVLOG_MARK)

    def _drain(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append(data.decode(errors="replace"))

    def lines(self, settle=0.2):
        time.sleep(settle)
        with self._lock:
            return list(self.messages)

    def grep(self, pattern, settle=0.2):
        rx = re.compile(pattern)
        return [m for m in self.lines(settle) if rx.search(m)]

    @staticmethod
    def _hits(messages, pattern):
        """The messages matching `pattern`; for a pair of patterns, those
        matching the first whose next message from the same process
        matches the second."""
        if isinstance(pattern, str):
            rx = re.compile(pattern)
            return [m for m in messages if rx.search(m)]
        first, second = (re.compile(p) for p in pattern)
        hits = []
        for i, m in enumerate(messages):
            # "<85>Dec  6 03:10:00 sshd[123]: ...": the process is its tag.
            tag = re.match(r"<\d+>\w{3} [ \d]\d [\d:]{8} (\S+: )", m)
            if not tag or not first.search(m):
                continue
            after = [n for n in messages[i + 1:] if tag.group(1) in n]
            if after and second.search(after[0]):
                hits.append(m)
        return hits

    def wait_for(self, pattern, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                hits = self._hits(self.messages, pattern)
            if hits:
                return hits
            time.sleep(0.02)
        raise AssertionError(f"no syslog line matches {pattern!r}; got:\n" +
                             "\n".join(self.lines(0)))

    def close(self):
        self._stop.set()
        self._thread.join(5)
        try:
            if os.stat(DEV_LOG).st_ino == int(Path(DEVLOG_MARK).read_text()):
                os.unlink(DEV_LOG)
            os.unlink(DEVLOG_MARK)
        except (FileNotFoundError, ValueError):
            pass
        finally:
            self.sock.close()
            fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
            os.close(self.lock_fd)


@pytest.fixture
def syslog():
    """Lines sent to /dev/log during the test."""
    need_root("binds a socket at /dev/log to capture pam_syslog lines")
    cap = SyslogCapture()
    yield cap
    cap.close()


FAILURE_LINE = (r"pam_apikey\({service}:auth\): authentication failure; logname=\S* uid={uid} "
                r"euid={euid} tty={tty} ruser={ruser} rhost={rhost}  user={user}$")
REFUSED_LINE = r"pam_apikey\({service}:auth\): refused key={key} code={code} for user={user}$"


def failure_line(service, user, key, code, tty="", ruser="", rhost="", uid=r"\d+", euid=r"\d+"):
    """The regular expressions of pam_apikey's two lines for a refusal, for
    SyslogCapture.wait_for: pam_unix's failure line to its last byte, then
    the key and the code."""
    e = re.escape
    return (FAILURE_LINE.format(service=e(service), uid=uid, euid=euid, tty=e(tty),
                                ruser=e(ruser), rhost=e(rhost), user=e(user)),
            REFUSED_LINE.format(service=e(service), user=e(user), key=e(key), code=code))


# ---------------------------------------------------------------- system files


class SystemFiles:
    """Files written under /etc (and symlinks), removed at teardown."""

    def __init__(self):
        self.paths = []

    def write(self, path, text, mode=0o644):
        path = Path(path)
        assert not path.exists(), f"{path} exists already; refusing to overwrite it"
        self.paths.append(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def symlink(self, target, path):
        path = Path(path)
        self.paths.append(path)
        os.symlink(target, path)
        return path

    def remove_all(self):
        problems = []
        for p in reversed(self.paths):
            try:
                if p.is_symlink() or p.is_file():
                    p.unlink()
                elif p.is_dir():
                    shutil.rmtree(p)
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append(f"{p}: {e}")
        self.paths = []
        return problems


def stop_pid(proc, timeout=10):
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture(params=["default", "asan"])
def build(request):
    """The module's default build, then its ASan/UBSan one: each test that
    uses it runs against both."""
    if request.param == "asan":
        return asan_build()
    return DEFAULT_BUILD.check()


@pytest.fixture
def pam(tmp_path, build):
    return PamDir(tmp_path / "pam.d", build)
