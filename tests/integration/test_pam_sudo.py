# SPDX-License-Identifier: MIT
"""pam_apikey inside the real (setuid) sudo: a user passes sudo with their
own API key, and not with another user's key, a password or a key scoped to
another service.

sudo always reads /etc/pam.d: a file in /etc/sudoers.d sends the test users
to the PAM service sudo-apikey-test, /etc/pam.d/sudo-apikey-test is the
admin's snippet (systemd/pam.d/apikey, with the module's path and socket=,
service=sudo and nodelay) followed by Debian's usual lines.  Both files are
removed at the end, whatever happened.  For sudo's own PAM services, sudo
and sudo-i (`sudo -i`), a private mount namespace puts the test's files in
their place for one sudo alone (SudoSite.sudo_as_sudo)."""

import fcntl
import os
import pwd
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ALICE, BOB, Daemon
from pam_fixtures import (DEFAULT_BUILD, SystemFiles, forged, key_id_of, need_root, need_tool,
                          snippet_lines, syslog)  # noqa: F401 - fixture
from test_fail2ban import auth_log, fail2ban_regex, filter_dir

SERVICE = "sudo-apikey-test"
PAM_FILE = Path("/etc/pam.d") / SERVICE
SUDOERS_FILE = Path("/etc/sudoers.d") / "apikey-pam-test"
MARK = "pam_apikey test service"
LOCK = os.path.join("/run/lock" if os.path.isdir("/run/lock") else "/tmp",
                    "apikeyd-pam-tests.sudo.lock")
USERS = (ALICE, BOB)
ROOT_SHELL = pwd.getpwnam("root").pw_shell


def pam_service_text(module, args):
    lines = {}
    for line in snippet_lines():
        words = line.split()
        words[words.index("pam_apikey.so")] = f"{module} {args}"
        lines[words[0]] = " ".join(words)
    return (f"# {MARK} (removed after the tests)\n"
            "session    required   pam_limits.so\n"
            f"{lines['auth']}\n@include common-auth\n"
            f"{lines['account']}\n@include common-account\n"
            "@include common-session-noninteractive\n")


def sudoers_text(pam_service=True):
    out = [f"# {MARK} (removed after the tests)"]
    for u in USERS:
        out += [f"Defaults:{u} pam_service={SERVICE}"] if pam_service else []
        out += [f"Defaults:{u} lecture=never",
                f"Defaults:{u} !mail_badpass", f"{u} ALL=(root) NOPASSWD: /usr/bin/id",
                f"{u} ALL=(root) /usr/bin/true"]
        # What `sudo -i /usr/bin/true` asks to run.
        out += [] if pam_service else [f"{u} ALL=(root) {ROOT_SHELL} -c /usr/bin/true"]
    return "\n".join(out) + "\n"


class SudoSite:
    def __init__(self, workdir):
        self.workdir = workdir
        self.files = SystemFiles()
        self.daemon = None
        self.ts_before = {}

    def setup(self):
        self.lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        # Holding the lock, files of ours there are left over by a killed run.
        for f in (PAM_FILE, SUDOERS_FILE):
            if f.exists() and MARK in f.read_text():
                f.unlink()
        for u in USERS:
            self.ts_before[u] = os.path.exists(f"/run/sudo/ts/{u}")
        self.daemon = Daemon(self.workdir, 0)
        self.daemon.start()
        self.admin = self.daemon.client()
        self.files.write(PAM_FILE, pam_service_text(
            DEFAULT_BUILD.module, f"socket={self.daemon.socket} service=sudo nodelay"))
        self.files.write(SUDOERS_FILE, sudoers_text(), mode=0o440)
        r = subprocess.run(["visudo", "-c"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"visudo -c: {r.stdout}{r.stderr}"

    def teardown(self):
        problems = self.files.remove_all()
        for u, existed in self.ts_before.items():
            ts = f"/run/sudo/ts/{u}"
            if not existed and os.path.exists(ts):
                os.unlink(ts)
        if self.daemon is not None:
            p = self.daemon.cleanup()
            if p:
                problems.append(p)
        fcntl.flock(self.lock_fd, fcntl.LOCK_UN)
        os.close(self.lock_fd)
        return problems

    def key(self, owner, name, scope=("sudo",)):
        r = self.admin.create(name, owner=owner, scope=list(scope))
        return r["token"], r["key"]["id"]

    def sudo(self, user, token, command="true"):
        env = dict(os.environ, TOKEN=token, LC_ALL="C")
        return subprocess.run(
            ["timeout", "20", "runuser", "-u", user, "--", "sh", "-c",
             f'echo "$TOKEN" | sudo -S -k -u root {command}'],
            capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)

    def refusals(self):
        return [l for l in self.daemon.log().splitlines() if "verify refused" in l]

    def sudo_as_sudo(self, user, token, login=False):
        """`sudo /usr/bin/true`, or `sudo -i /usr/bin/true`, under sudo's own
        PAM services sudo and sudo-i, as on a Debian system whose two files
        include the snippet (no service= argument): in a mount namespace of
        its own, the test's service file is bind-mounted on /etc/pam.d/sudo
        and /etc/pam.d/sudo-i, and a sudoers file without pam_service= on the
        test's (for this sudo alone; nothing under /etc changes)."""
        pam_file, sudoers = self.workdir / "pam.sudo", self.workdir / "sudoers"
        if not pam_file.exists():
            pam_file.write_text(pam_service_text(DEFAULT_BUILD.module,
                                                 f"socket={self.daemon.socket} nodelay"))
            sudoers.write_text(sudoers_text(pam_service=False))
            os.chmod(sudoers, 0o440)
        command = f'echo "$TOKEN" | sudo -S -k {"-i " if login else ""}-u root /usr/bin/true'
        env = dict(os.environ, TOKEN=token, LC_ALL="C")
        return subprocess.run(
            ["timeout", "20", "unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount --bind "$1" /etc/pam.d/sudo && mount --bind "$1" /etc/pam.d/sudo-i && '
             'mount --bind "$2" "$3" && exec runuser -u "$4" -- sh -c "$5"', "sh",
             str(pam_file), str(sudoers), str(SUDOERS_FILE), user, command],
            capture_output=True, text=True, env=env, timeout=30, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def site(tmp_path_factory, test_users):
    need_root("writes /etc/sudoers.d and /etc/pam.d and runs sudo as the test users")
    need_tool("sudo", "visudo", "runuser", "timeout")
    DEFAULT_BUILD.check()
    s = SudoSite(tmp_path_factory.mktemp("sudo"))
    try:
        s.setup()
        yield s
    finally:
        problems = s.teardown()
        assert not PAM_FILE.exists() and not SUDOERS_FILE.exists()
        assert not problems, problems


def test_the_rules_apply_to_the_test_service(site):
    """Control: the sudoers file is in effect (a NOPASSWD rule works)."""
    r = site.sudo(ALICE, "", "/usr/bin/id -un")
    assert r.returncode == 0 and r.stdout.strip() == "root", r


@pytest.mark.parametrize("user", USERS)
def test_own_key_passes_sudo(site, user):
    token, key_id = site.key(user, f"sudo {user}")
    r = site.sudo(user, token)
    assert r.returncode == 0, r
    # sudo showed the module's prompt: the key went through pam_apikey.
    assert "API key: " in r.stderr, r
    k = site.admin.get(key_id)
    assert k.get("last_used_service") == "sudo", k


def test_another_users_key_is_refused(site):
    bobs, _ = site.key(BOB, "bobs key")
    before = len(site.refusals())
    r = site.sudo(ALICE, bobs)
    assert r.returncode != 0, r
    assert "incorrect password attempt" in r.stderr, r
    new = site.refusals()[before:]
    assert len(new) == 1 and f"verify refused: WRONG_USER; key={key_id_of(bobs)} " \
        f"user={ALICE} service=sudo" in new[0], new


@pytest.mark.parametrize("case", ["forged", "other_scope", "password", "disabled"])
def test_other_refusals(site, case):
    token, key_id = site.key(ALICE, f"alice {case}",
                             scope=("sshd",) if case == "other_scope" else ("sudo",))
    typed = {"forged": forged(token), "password": "not an api key"}.get(case, token)
    if case == "disabled":
        site.admin.ok("io.apikeyd.Keys.Disable", {"id": key_id})
    before = len(site.refusals())
    r = site.sudo(ALICE, typed)
    assert r.returncode != 0 and "incorrect password attempt" in r.stderr, r
    new = site.refusals()[before:]
    if case == "password":
        assert new == [], "a password reached the daemon"
    else:
        code = {"forged": "NOT_FOUND", "other_scope": "OUT_OF_SCOPE",
                "disabled": "DISABLED"}[case]
        assert len(new) == 1 and re.search(rf"verify refused: {code}; key={key_id} ", new[0]), new


def need_namespaces():
    need_tool("unshare", "mount")
    for f in ("/etc/pam.d/sudo", "/etc/pam.d/sudo-i"):
        if not os.path.isfile(f):
            pytest.skip(f"{f} is missing: not Debian's sudo")


@pytest.mark.parametrize("login", [False, True], ids=["sudo", "sudo-i"])
def test_key_scoped_sudo_passes_sudo_and_sudo_i(site, login):
    """Debian runs `sudo -i` as the PAM service sudo-i, with its own file
    including the same snippet: a key scoped sudo passes it, and is noted
    as used for sudo; a key scoped sshd does not."""
    need_namespaces()
    token, key_id = site.key(ALICE, f"sudo login={login}")
    r = site.sudo_as_sudo(ALICE, token, login=login)
    assert r.returncode == 0 and "API key: " in r.stderr, r
    assert site.admin.get(key_id).get("last_used_service") == "sudo"
    ssh_only, ssh_id = site.key(ALICE, f"ssh only login={login}", scope=("sshd",))
    before = len(site.refusals())
    r = site.sudo_as_sudo(ALICE, ssh_only, login=login)
    assert r.returncode != 0 and "incorrect password attempt" in r.stderr, r
    new = site.refusals()[before:]
    assert len(new) == 1 and f"verify refused: OUT_OF_SCOPE; key={ssh_id} user={ALICE} " \
        "service=sudo " in new[0], new


def test_refusals_match_the_shipped_sudo_filter(site, syslog, tmp_path):
    """A wrong key at sudo and at `sudo -i`, as the module logs it inside
    the real sudo: the shipped apikey-sudo filter reads each, by the user
    who ran sudo (sudo gives PAM no remote host to ban)."""
    need_namespaces()
    need_tool("fail2ban-regex")
    token, key_id = site.key(ALICE, "fail2ban")
    for login in (False, True):
        r = site.sudo_as_sudo(ALICE, forged(token), login=login)
        assert r.returncode != 0 and "incorrect password attempt" in r.stderr, r
    hits = syslog.wait_for((r"sudo: pam_apikey\(sudo-i:auth\): authentication failure; ",
                            rf"pam_apikey\(sudo-i:auth\): refused key={key_id} code=NOT_FOUND "))
    lines = auth_log(syslog.grep(r"pam_apikey\(sudo(-i)?:auth\): "))
    failures = [l for l in lines if "authentication failure;" in l]
    assert len(failures) == 2 and all(
        re.search(rf" ruser={ALICE} rhost=  user={ALICE}$", l) for l in failures), (hits, lines)
    f = filter_dir(tmp_path) / "filter.d" / "apikey-sudo.conf"
    rows = fail2ban_regex(tmp_path, lines, f, out="row")
    assert re.findall(r"^\['([^']*)',.*'user': '([^']*)'", rows, re.M) == [(ALICE, ALICE)] * 2, \
        (rows, lines)
    assert len(fail2ban_regex(tmp_path, lines, f).missed()) == len(lines) - 2
