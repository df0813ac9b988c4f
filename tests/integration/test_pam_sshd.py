# SPDX-License-Identifier: MIT
"""pam_apikey inside a real sshd on 127.0.0.1: logins with an API key over
keyboard-interactive and password authentication, refusals that take effect
at the next attempt, public-key logins through the module's account line,
and sshd's fake password for unknown users and refused root logins.

sshd runs as /usr/sbin/sshd through a symlink named sshd-apikey-test, so its
PAM service is /etc/pam.d/sshd-apikey-test: the admin's snippet
(systemd/pam.d/apikey) with the module's path and socket=, service=sshd and
nodelay, followed by Debian's usual lines.  Every file, process and account
change is undone at the end.  One more sshd runs under its own name and PAM
service, sshd, in a private mount namespace (SshdAsSshd), for lines exactly
as fail2ban and sshguard see them."""

import fcntl
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ALICE, BOB, IFACE, Daemon
from pam_fixtures import (  # noqa: F401 - fixtures
    BUILD, DEFAULT_BUILD, SystemFiles, failure_line, forged, free_port, key_id_of, need_root,
    need_tool, secret_of, socket_dir, snippet_lines, stop_pid, syslog, wait_port)
from test_fail2ban import SSHG_PARSER, auth_log, fail2ban_regex

SERVICE = "sshd-apikey-test"
PAM_FILE = Path("/etc/pam.d") / SERVICE
SSHD = "/usr/sbin/sshd"
APIKEYCTL = BUILD / "apikeyctl"
LOCK = os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp",
                    "apikeyd-pam-tests.sshd.lock")
NOUSER = "akt-no-such-user"
LOCKOUT = 3  # wrong secrets before a key id is rate-limited


def pam_service_text(module, args):
    auth, account = None, None
    for line in snippet_lines():
        words = line.split()
        words[words.index("pam_apikey.so")] = f"{module} {args}"
        if words[0] == "auth":
            auth = " ".join(words)
        elif words[0] == "account":
            account = " ".join(words)
    assert auth and account, "the snippet lost a line"
    return (f"# pam_apikey test service (removed after the tests)\n{auth}\n"
            "@include common-auth\n"
            f"{account}\n"
            "account    required     pam_nologin.so\n"
            "@include common-account\n"
            "@include common-session\n")


class Sshd:
    def __init__(self, workdir, keys_dir, mode, port):
        self.workdir, self.mode, self.port = workdir, mode, port
        kbd = "yes" if mode == "keyboard-interactive" else "no"
        pwd_auth = "yes" if mode == "password" else "no"
        self.config = workdir / f"sshd_config.{mode}"
        self.config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\n"
            f"PidFile {workdir / ('sshd.pid.' + mode)}\nUsePAM yes\n"
            f"KbdInteractiveAuthentication {kbd}\nPasswordAuthentication {pwd_auth}\n"
            "PubkeyAuthentication yes\n"
            f"AuthorizedKeysFile {keys_dir}/%u\nStrictModes no\n"
            "PermitRootLogin no\nMaxStartups 100\nMaxAuthTries 6\nLogLevel VERBOSE\n"
            "UseDNS no\nPrintMotd no\n")
        self.argv0 = str(workdir / SERVICE)
        self.log_path = workdir / f"sshd.{mode}.log"
        r = subprocess.run([self.argv0, "-t", "-f", str(self.config)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, f"sshd -t: {r.stderr}"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([self.argv0, "-D", "-e", "-f", str(self.config)],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if not wait_port(port, self.proc):
            stop_pid(self.proc)
            raise AssertionError(f"sshd did not start; its log:\n{self.log()}")

    def log(self):
        return self.log_path.read_text(errors="replace")

    def alive(self):
        return self.proc.poll() is None

    def login(self, user, token, command="id", prompt=None, stdin=None, bind=None):
        """ssh user@127.0.0.1 COMMAND answering the one prompt with `token`;
        from the loopback address `bind` (sshd's rhost) when given."""
        if prompt is None:
            prompt = "API key" if self.mode == "keyboard-interactive" else "password"
        argv = ["timeout", "20", "sshpass", "-e", "-P", prompt, "ssh", "-F", "/dev/null",
                "-p", str(self.port), "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
                "-o", f"PreferredAuthentications={self.mode}"] + \
            (["-tt"] if command is None else []) + (["-b", bind] if bind else []) + \
            [f"{user}@127.0.0.1"] + ([command] if command else [])
        env = dict(os.environ, SSHPASS=token, LC_ALL="C")
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30,
                              input=stdin, stdin=None if stdin else subprocess.DEVNULL)

    def pubkey_login(self, user, key, command="id"):
        argv = ["timeout", "20", "ssh", "-F", "/dev/null", "-p", str(self.port),
                "-i", str(key), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "PreferredAuthentications=publickey",
                f"{user}@127.0.0.1", command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL)


class SshdAsSshd(Sshd):
    """/usr/sbin/sshd under its own name, logging to syslog, so that its PAM
    service and its lines are sshd's: in a mount namespace of its own, where
    the test's service file is bind-mounted on /etc/pam.d/sshd (for it
    alone; nothing under /etc changes)."""

    def __init__(self, workdir, pam_file, port):
        self.workdir, self.mode, self.port = workdir, "keyboard-interactive", port
        self.config = workdir / "sshd_config.as-sshd"
        self.config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {workdir / 'host_key'}\n"
            f"PidFile {workdir / 'sshd.pid.as-sshd'}\nUsePAM yes\n"
            "KbdInteractiveAuthentication yes\nPasswordAuthentication no\n"
            "PubkeyAuthentication no\nPermitRootLogin no\nMaxStartups 100\nUseDNS no\n"
            "PrintMotd no\n")
        self.log_path = workdir / "sshd.as-sshd.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 'mount --bind "$1" /etc/pam.d/sshd && exec "$2" -D -f "$3"', "sh",
                 str(pam_file), SSHD, str(self.config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        if not wait_port(port, self.proc):
            stop_pid(self.proc)
            raise AssertionError(f"sshd did not start; its log:\n{self.log()}")


class Site:
    """The daemon, the PAM service, the users' shells and both sshds."""

    def __init__(self, workdir, users):
        self.workdir = workdir
        self.users = users
        self.files = SystemFiles()
        self.sshds = {}
        self.daemon = None
        self.shells = {}
        self.made_run_sshd = False
        self.keys_dir = None

    def setup(self):
        w = self.workdir
        self.lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        # Holding the lock, a service file there is one a killed run left.
        if PAM_FILE.exists() and "pam_apikey test service" in PAM_FILE.read_text():
            PAM_FILE.unlink()
        self.daemon = Daemon(w, 0, config={"lockout_threshold": LOCKOUT})
        self.daemon.start()
        self.admin = self.daemon.client()
        self.files.write(PAM_FILE, pam_service_text(
            DEFAULT_BUILD.module, f"socket={self.daemon.socket} service=sshd nodelay"))
        if not os.path.isdir("/run/sshd"):
            os.mkdir("/run/sshd", 0o755)
            self.made_run_sshd = True
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(w / "host_key")], check=True, timeout=30)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(w / "client_key")], check=True, timeout=30)
        # sshd reads authorized keys as the user: a directory they can enter.
        self.keys_dir = socket_dir()
        (self.keys_dir / ALICE).write_text((w / "client_key.pub").read_text())
        os.chmod(self.keys_dir / ALICE, 0o644)
        self.files.symlink(SSHD, w / SERVICE)
        for u in (ALICE, BOB):
            self.shells[u] = pwd.getpwnam(u).pw_shell
            subprocess.run(["usermod", "-s", "/bin/sh", u], check=True, timeout=30)
        for mode in ("keyboard-interactive", "password"):
            self.sshds[mode] = Sshd(w, self.keys_dir, mode, free_port())

    def teardown(self):
        problems = []
        for s in self.sshds.values():
            if s.alive():
                stop_pid(s.proc)
            elif s.proc.returncode not in (0, -15):
                problems.append(f"sshd ({s.mode}) exited with {s.proc.returncode}:\n{s.log()}")
        for u, shell in self.shells.items():
            r = subprocess.run(["usermod", "-s", shell, u], capture_output=True, text=True,
                               timeout=30)
            if r.returncode != 0:
                problems.append(f"usermod -s {shell} {u}: {r.stderr}")
        problems += self.files.remove_all()
        if self.keys_dir is not None:
            shutil.rmtree(self.keys_dir, ignore_errors=True)
        if self.made_run_sshd:
            try:
                os.rmdir("/run/sshd")
            except OSError:
                pass
        if self.daemon is not None:
            p = self.daemon.cleanup()
            if p:
                problems.append(p)
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        os.close(self.lock_fd)
        return problems

    def key(self, owner, name, scope=("sshd",)):
        r = self.admin.create(name, owner=owner, scope=list(scope))
        return r["token"], r["key"]["id"]

    def ctl(self, *args):
        """apikeyctl if it is built, else the same call over Varlink."""
        if APIKEYCTL.is_file():
            extra = ["--yes"] if args[0] == "revoke" else []
            r = subprocess.run([str(APIKEYCTL), "--socket", self.daemon.socket] + list(args) +
                               extra,
                               capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, f"apikeyctl {args}: {r.returncode} {r.stderr}"
            return
        method = {"disable": "Disable", "enable": "Enable", "revoke": "Revoke"}[args[0]]
        self.admin.ok(f"{IFACE}.{method}", {"id": args[1]})

    def refusals(self):
        """The daemon's log lines of refused Verify calls so far."""
        return [l for l in self.daemon.log().splitlines() if "verify refused" in l]

    def last_used(self, key_id):
        k = self.admin.get(key_id)
        return k.get("last_used_service"), k.get("last_used_from")


@pytest.fixture(scope="module")
def site(tmp_path_factory, test_users):
    need_root("runs sshd, writes /etc/pam.d and changes the test users' shells")
    need_tool("sshpass", "ssh", "ssh-keygen", "timeout", "usermod")
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is not installed (openssh-server)")
    DEFAULT_BUILD.check()
    s = Site(tmp_path_factory.mktemp("sshd"), test_users)
    try:
        s.setup()
        yield s
    finally:
        problems = s.teardown()
        assert not PAM_FILE.exists()
        assert not problems, problems


MODES = ["keyboard-interactive", "password"]


@pytest.fixture(autouse=True)
def fresh_lockouts(site):
    """The tests share one daemon; failed logins of one test (all of them as
    the same user from 127.0.0.1) must not lock the next out."""
    site.admin.ok(f"{IFACE}.ResetLockout", {})


def logged_in(r, user):
    return r.returncode == 0 and re.search(rf"^uid=\d+\({re.escape(user)}\)", r.stdout, re.M)


@pytest.mark.parametrize("mode", MODES)
def test_login_with_key(site, mode):
    token, key_id = site.key(ALICE, f"login {mode}")
    assert site.last_used(key_id) == (None, None)
    r = site.sshds[mode].login(ALICE, token)
    assert logged_in(r, ALICE), (r, site.sshds[mode].log()[-3000:])
    # Verified for the service named by service=, from sshd's PAM_RHOST.
    assert site.last_used(key_id) == ("sshd", "127.0.0.1")


@pytest.mark.parametrize("mode", MODES)
def test_wrong_key_is_refused(site, mode):
    token, _ = site.key(ALICE, f"wrong {mode}")
    s = site.sshds[mode]
    for bad, code in ((forged(token), "NOT_FOUND"),
                      (site.key(BOB, f"bobs {mode}")[0], "WRONG_USER")):
        before = len(site.refusals())
        r = s.login(ALICE, bad)
        assert not logged_in(r, ALICE), r
        assert r.returncode != 0 and "Permission denied" in r.stderr, r
        new = site.refusals()[before:]
        assert len(new) == 1 and f"verify refused: {code}; key={key_id_of(bad)} " \
            f"user={ALICE} service=sshd rhost=127.0.0.1" in new[0], new
    # Not in scope: a key for sudo only.
    sudo_only, _ = site.key(ALICE, f"sudo only {mode}", scope=("sudo",))
    assert not logged_in(s.login(ALICE, sudo_only), ALICE)
    assert logged_in(s.login(ALICE, token), ALICE)


@pytest.mark.parametrize("mode", MODES)
def test_revoke_disable_enable_take_effect_at_once(site, mode):
    s = site.sshds[mode]
    token, key_id = site.key(ALICE, f"lifecycle {mode}")
    assert logged_in(s.login(ALICE, token), ALICE)
    site.ctl("disable", key_id)
    r = s.login(ALICE, token)
    assert not logged_in(r, ALICE) and "Permission denied" in r.stderr, r
    site.ctl("enable", key_id)
    assert logged_in(s.login(ALICE, token), ALICE)
    site.ctl("revoke", key_id)
    r = s.login(ALICE, token)
    assert not logged_in(r, ALICE) and "Permission denied" in r.stderr, r


@pytest.mark.parametrize("mode", MODES)
def test_invited_key_does_not_log_in(site, mode):
    """A script's key with `invite` mints a key for a login user: it is for
    that user's scripts, and sshd refuses it as a login."""
    s = site.sshds[mode]
    inviter = site.admin.create(f"inviter {mode}", owner="ci-bot",
                                permissions=["create", "read", "invite"])
    r = site.admin.ok(f"{IFACE}.Create", {"name": f"for alice {mode}", "owner": ALICE,
                                          "scope": ["sshd"], "auth": inviter["token"]})
    token, key_id = r["token"], r["key"]["id"]
    before = len(site.refusals())
    r = s.login(ALICE, token)
    assert not logged_in(r, ALICE) and "Permission denied" in r.stderr, r
    new = site.refusals()[before:]
    assert len(new) == 1 and f"verify refused: NOT_FOR_LOGIN; key={key_id} " in new[0], new
    # Her own key, from an admin, still logs her in.
    assert logged_in(s.login(ALICE, site.key(ALICE, f"own {mode}")[0]), ALICE)


@pytest.mark.parametrize("mode", MODES)
def test_a_guessing_host_is_locked_out_not_the_key_owner(site, mode):
    """Another host (127.0.0.2) tries Alice's key id with wrong secrets: it
    is locked out, even with the right secret; Alice logs in from her own."""
    s = site.sshds[mode]
    token, key_id = site.key(ALICE, f"targeted {mode}")
    for _ in range(LOCKOUT):
        r = s.login(ALICE, forged(token), bind="127.0.0.2")
        assert not logged_in(r, ALICE) and "Permission denied" in r.stderr, r
    time.sleep(1.1)  # the daemon writes one RATE_LIMITED line a second at most
    before = len(site.refusals())
    r = s.login(ALICE, token, bind="127.0.0.2")
    assert not logged_in(r, ALICE) and "Permission denied" in r.stderr, r
    new = site.refusals()[before:]
    assert len(new) == 1 and f"verify refused: RATE_LIMITED; key={key_id} user={ALICE} " \
        f"service=sshd rhost=127.0.0.2 " in new[0], new
    assert logged_in(s.login(ALICE, token), ALICE)
    locks = {(e["kind"], e["name"], e.get("source")): e
             for e in site.admin.ok(f"{IFACE}.ListLockouts", {})["lockouts"]}
    assert locks[("from", f"{ALICE}@127.0.0.2", None)]["locked"] is True
    assert locks[("key", key_id, f"from:{ALICE}@127.0.0.2")]["locked"] is True
    assert not any(k[1] == f"{ALICE}@127.0.0.1" or k[2] == f"from:{ALICE}@127.0.0.1"
                   for k in locks)
    assert s.alive()


@pytest.mark.parametrize("mode", MODES)
def test_rate_limited_key_is_refused(site, mode):
    s = site.sshds[mode]
    token, key_id = site.key(ALICE, f"guessed {mode}")
    for _ in range(LOCKOUT):
        assert not logged_in(s.login(ALICE, forged(token)), ALICE)
    # The daemon writes one RATE_LIMITED line a second at most.
    time.sleep(1.1)
    before = len(site.refusals())
    r = s.login(ALICE, token)
    assert not logged_in(r, ALICE) and "Permission denied" in r.stderr, r
    new = site.refusals()[before:]
    assert len(new) == 1 and f"verify refused: RATE_LIMITED; key={key_id} " in new[0], new
    assert s.alive()


def test_password_still_falls_through_to_pam_unix(site):
    """A password is not a key: pam_unix decides, and the test users have
    no password, so it refuses -- without asking the daemon."""
    before = len(site.refusals())
    r = site.sshds["password"].login(ALICE, "not an api key")
    assert not logged_in(r, ALICE) and "Permission denied" in r.stderr, r
    assert len(site.refusals()) == before


def test_public_key_login_passes_the_account_line(site):
    s = site.sshds["keyboard-interactive"]
    before = len(site.refusals())
    r = s.pubkey_login(ALICE, site.workdir / "client_key")
    assert logged_in(r, ALICE), (r, s.log()[-3000:])
    assert len(site.refusals()) == before
    # Control: a user without that public key is not let in.
    r = s.pubkey_login(BOB, site.workdir / "client_key")
    assert not logged_in(r, BOB) and r.returncode != 0, r


@pytest.mark.parametrize("user", [NOUSER, "root"])
def test_fake_password_of_unknown_user_and_root(site, user, syslog):
    s = site.sshds["password"]
    token, key_id = site.key(user, f"for {user}")
    log_before = site.daemon.log()
    r = s.login(user, token)
    assert r.returncode != 0 and "uid=" not in r.stdout, r
    assert "Permission denied" in r.stderr, r
    # sshd fed PAM its fake password: not a key, nothing was asked (the
    # daemon logs every refused or malformed call).  What it logs meanwhile
    # of earlier tests' keys (a new source, flushed in the background) is
    # not about this one.
    new = site.daemon.log()[len(log_before):]
    assert key_id not in new and "verify" not in new and "malformed" not in new, new
    assert site.last_used(key_id) == (None, None)
    # The module logs every exchange with the daemon that fails; here it had none.
    assert syslog.grep(r"pam_apikey\(") == []
    # sshd is alive and answers the next login.
    time.sleep(0.1)
    assert s.alive(), s.log()
    good, _ = site.key(ALICE, f"after {user}")
    assert logged_in(s.login(ALICE, good), ALICE)
    assert not re.search(r"fatal|segfault|signal 11|terminated by signal", s.log(), re.I), \
        s.log()[-3000:]


def test_failure_is_logged_for_fail2ban(site, syslog):
    s = site.sshds["keyboard-interactive"]
    token, key_id = site.key(ALICE, "logged")
    r = s.login(ALICE, forged(token))
    assert not logged_in(r, ALICE)
    syslog.wait_for(failure_line(SERVICE, ALICE, key_id, "NOT_FOUND", tty="ssh",
                                 rhost="127.0.0.1", uid=0, euid=0))
    assert not any(secret_of(token) in l for l in syslog.lines())


@pytest.mark.parametrize("mode", MODES)
def test_expiry_warning_reaches_the_client(site, mode):
    """sshd shows PAM's messages at the start of an interactive session."""
    created = site.admin.create(f"soon {mode}", owner=ALICE, scope=["sshd"], expires="2d")
    r = site.sshds[mode].login(ALICE, created["token"], command=None, stdin="id\nexit\n")
    assert r.returncode == 0 and re.search(rf"uid=\d+\({ALICE}\)", r.stdout), r
    expires_at = created["key"]["expires_at"]
    assert re.search(rf"^Your API key expires in (1 day|2 days) \({expires_at}\)\.\r?$",
                     r.stdout, re.M), r


def test_lines_match_fail2ban_and_sshguard(site, syslog, tmp_path):
    """Refused keys and an outage at sshd, as sshd and the module log them,
    read by fail2ban's stock sshd filter and by sshguard: the module's
    failure line is read as pam_unix's is (the filter takes the user from
    it and counts sshd's own "error: PAM: Authentication failure" line of the
    same attempt); the key's line and the outage's lines count for nothing."""
    need_tool("unshare", "mount", "fail2ban-regex")
    if not os.path.isfile("/etc/pam.d/sshd"):
        pytest.skip("/etc/pam.d/sshd is missing (openssh-server)")
    link = tmp_path / "socket"  # removed for the outage
    link.symlink_to(site.daemon.socket)
    pam_file = tmp_path / "pam.sshd"
    pam_file.write_text(pam_service_text(DEFAULT_BUILD.module, f"socket={link} nodelay"))
    s = SshdAsSshd(site.workdir, pam_file, free_port())
    try:
        token, key_id = site.key(ALICE, "fail2ban")
        for bad in (forged(token), site.key(BOB, "fail2ban bob")[0]):
            assert not logged_in(s.login(ALICE, bad), ALICE)
        link.unlink()
        assert not logged_in(s.login(ALICE, token), ALICE)
        syslog.wait_for(r"sshd\[\d+\]: error: PAM: Authentication service cannot retrieve "
                        rf"authentication info for {ALICE} from 127\.0\.0\.1$")
    finally:
        stop_pid(s.proc)
    lines = auth_log(syslog.grep(r"^<\d+>.{15} sshd\[\d+\]: "))
    module = [l for l in lines if "pam_apikey(" in l]
    failures = [l for l in module if "authentication failure;" in l]
    assert len(failures) == 2 and all(
        l.endswith(f"tty=ssh ruser= rhost=127.0.0.1  user={ALICE}") for l in failures), lines
    assert sum("no decision from apikeyd" in l for l in module) == 1, lines
    r = fail2ban_regex(tmp_path, lines, "/etc/fail2ban/filter.d/sshd.conf")
    assert [n for n, rx in r.hits if "authentication failure;" in rx] == [2], r
    assert [l for l in module if l not in r.missed()] == failures, r
    rows = fail2ban_regex(tmp_path, lines, "/etc/fail2ban/filter.d/sshd.conf", out="row")
    counted = re.findall(r"^\['([^']*)',.*'user': '([^']*)'", rows, re.M)
    assert counted == [("127.0.0.1", ALICE)] * 2, (rows, lines)
    if not os.access(SSHG_PARSER, os.X_OK):
        pytest.skip(f"fail2ban checked; {SSHG_PARSER} is not installed (Debian package sshguard)")
    # sshguard reads sshd's lines only (not pam_unix's either): 10 points for
    # each "error: PAM: Authentication failure", 2 for each connection closed
    # before login -- that of the outage too, as for any client that hangs up.
    sshg = subprocess.run([SSHG_PARSER], input="".join(l + "\n" for l in module),
                          capture_output=True, text=True, timeout=30)
    assert sshg.returncode == 0 and sshg.stdout == "", sshg
    sshg = subprocess.run([SSHG_PARSER], input="".join(l + "\n" for l in lines),
                          capture_output=True, text=True, timeout=30)
    assert sorted(sshg.stdout.splitlines()) == ["100 127.0.0.1 4 10"] * 2 + \
        ["100 127.0.0.1 4 2"] * 3, (sshg.stdout, lines)
