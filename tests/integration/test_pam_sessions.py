# SPDX-License-Identifier: MIT
"""Revoking a key ends the sessions it opened, in a real sshd and a real
sudo, and the module's session hook under valgrind.

These load the default build of the module into sshd, sudo and valgrind
(no sanitizer runtime there), so they are test_pam_* files, which the
sanitizer run leaves out as it leaves out test_pam_sshd.py; the same
behaviour through the PAM harness, under ASan too, is in test_sessions.py."""

import os
import pwd
import signal
import subprocess
import time

import pytest

from conftest import ALICE, IFACE
from pam_fixtures import (  # noqa: F401 - fixtures
    DEFAULT_BUILD, PamDir, need_root, need_tool, snippet_lines, snippet_stack, trust_me)
from test_sessions import END_WITHIN, PASSWORD, USER, list_sessions


# ---------------------------------------------------------------- real sshd and sudo
#
# These write /etc/pam.d (and /etc/sudoers.d) and run as root: they take the
# same locks as test_pam_sshd.py and test_pam_sudo.py, and undo everything.

def with_session_line(text, module, args, before):
    """A test service file with the snippet's session line added above `before`."""
    line = next(l for l in snippet_lines() if l.split()[0] == "session")
    words = line.split()
    words[words.index("pam_apikey.so")] = f"{module} {args}"
    assert before in text, text
    return text.replace(before, " ".join(words) + "\n" + before, 1)


@pytest.fixture(scope="module")
def sshd_site(tmp_path_factory, test_users):
    import test_pam_sshd as t
    need_root("runs sshd, writes /etc/pam.d and changes the test users' shells")
    need_tool("sshpass", "ssh", "ssh-keygen", "timeout", "usermod")
    if not os.path.exists(t.SSHD):
        pytest.skip(f"{t.SSHD} is not installed (openssh-server)")
    DEFAULT_BUILD.check()
    s = t.Site(tmp_path_factory.mktemp("sshd"), test_users)
    try:
        s.setup()
        args = f"socket={s.daemon.socket} service=sshd nodelay"
        t.PAM_FILE.write_text(with_session_line(t.pam_service_text(DEFAULT_BUILD.module, args),
                                                DEFAULT_BUILD.module, args,
                                                "@include common-session\n"))
        yield s
    finally:
        problems = s.teardown()
        assert not t.PAM_FILE.exists()
        assert not problems, problems


def ssh_holding(sshd, user, token, command="sleep 60", tty=True):
    """ssh user@127.0.0.1 COMMAND, left running, on a terminal (-tt) or
    without one (-T); as Sshd.login builds it."""
    prompt = "API key" if sshd.mode == "keyboard-interactive" else "password"
    argv = ["sshpass", "-e", "-P", prompt, "ssh", "-F", "/dev/null", "-p", str(sshd.port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "LogLevel=ERROR", "-o", "PubkeyAuthentication=no",
            "-o", "NumberOfPasswordPrompts=1", "-o", f"PreferredAuthentications={sshd.mode}",
            "-tt" if tty else "-T", f"{user}@127.0.0.1", command]
    env = dict(os.environ, SSHPASS=token, LC_ALL="C")
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def wait_sessions(client, key_id, n=1, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = list_sessions(client, key_id)
        if len(live) >= n:
            return live
        time.sleep(0.1)
    return list_sessions(client, key_id)


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def user_sleeps(user, seconds):
    """pids of `sleep SECONDS` processes running as `user`."""
    uid = pwd.getpwnam(user).pw_uid
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            if os.stat(f"/proc/{p}").st_uid != uid:
                continue
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"sleep", str(seconds).encode()]:
                    out.append(int(p))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def kill_sleeps(user, *seconds):
    """What a test's sessions left running (a test that failed half-way)."""
    for n in seconds:
        for pid in user_sleeps(user, n):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def stop_proc(p):
    if p.poll() is None:
        p.kill()
    p.communicate(timeout=10)


@pytest.mark.parametrize("mode", ["keyboard-interactive", "password"])
@pytest.mark.parametrize("action", ["revoke", "disable", "delete"])
def test_sshd_session_ends(sshd_site, mode, action):
    site = sshd_site
    token, key_id = site.key(ALICE, f"ssh-{mode}-{action}")
    other_token, other_id = site.key(ALICE, f"ssh-{mode}-{action}-other")
    ssh = ssh_holding(site.sshds[mode], ALICE, token)
    other = ssh_holding(site.sshds[mode], ALICE, other_token, "sleep 61")
    pubkey = subprocess.Popen(
        ["ssh", "-F", "/dev/null", "-p", str(site.sshds[mode].port),
         "-i", str(site.workdir / "client_key"), "-o", "IdentitiesOnly=yes",
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
         "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
         "-o", "PreferredAuthentications=publickey", "-tt", f"{ALICE}@127.0.0.1", "sleep 62"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        live = wait_sessions(site.admin, key_id)
        assert len(live) == 1, (live, site.sshds[mode].log()[-2000:])
        assert len(wait_sessions(site.admin, other_id)) == 1
        s = live[0]
        assert (s["user"], s["service"], s["rhost"]) == (ALICE, "sshd", "127.0.0.1"), s
        # The process that opened the session: sshd's per-connection
        # privileged process, running as root.
        with open(f"/proc/{s['pid']}/cmdline", "rb") as f:
            title = f.read().decode(errors="replace")
        assert comm(s["pid"]).startswith("sshd") and f": {ALICE} [priv]\0" in title, \
            (s, title)
        assert os.stat(f"/proc/{s['pid']}").st_uid == 0
        # The public-key login runs the same stack and is no key's session.
        time.sleep(0.5)
        assert pubkey.poll() is None, pubkey.communicate()
        assert len(list_sessions(site.admin)) == 2

        t0 = time.monotonic()
        if action == "delete":
            site.admin.ok(f"{IFACE}.Delete", {"id": key_id})
        else:
            site.ctl(action, key_id)
        try:
            ssh.wait(END_WITHIN + 0.5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"ssh session still open {END_WITHIN}s after {action}")
        assert time.monotonic() - t0 <= END_WITHIN + 0.5
        assert ssh.returncode != 0
        # The session's command ended with it (its terminal hung up).
        deadline = time.monotonic() + 1
        while user_sleeps(ALICE, 60) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert user_sleeps(ALICE, 60) == []
        assert other.poll() is None, "the other key's session was ended"
        assert pubkey.poll() is None, "the public-key session was ended"
        assert [x["key_id"] for x in list_sessions(site.admin)] == [other_id]
        assert f"ending session of key {key_id}: user={ALICE} service=sshd rhost=127.0.0.1" \
            in site.daemon.log()
    finally:
        for p in (ssh, other, pubkey):
            stop_proc(p)
        kill_sleeps(ALICE, 60, 61, 62)
        site.admin.call(f"{IFACE}.Revoke", {"id": other_id})


def pidfds_of(pids):
    """A pidfd for each pid, so that what is watched is that process and no
    later holder of its pid."""
    return {pid: os.pidfd_open(pid) for pid in pids}


def running(pidfds):
    """The pids among `pidfds` whose process has not ended (a pidfd turns
    readable when it does)."""
    import select
    return sorted(pid for pid, fd in pidfds.items() if not select.select([fd], [], [], 0)[0])


def wait_for(cond, timeout):
    deadline = time.monotonic() + timeout
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.05)
    return cond()


@pytest.mark.parametrize("mode", ["keyboard-interactive", "password"])
def test_sshd_command_without_tty_ends(sshd_site, mode):
    """`ssh -T host COMMAND`: no terminal hangs up on the command when sshd
    goes, so the daemon ends every process the session started: the
    command, and a job it left in the background whose parent exited (it
    stays in the command's process session).  A process of the same user
    outside the session runs on."""
    site = sshd_site
    token, key_id = site.key(ALICE, f"ssh-notty-{mode}")
    outside = subprocess.Popen(["runuser", "-u", ALICE, "--", "sleep", "65"],
                               stdin=subprocess.DEVNULL)
    ssh = ssh_holding(site.sshds[mode], ALICE, token, "(sleep 64 &); sleep 60", tty=False)
    fds = {}
    try:
        live = wait_sessions(site.admin, key_id)
        assert len(live) == 1, (live, site.sshds[mode].log()[-2000:])
        assert wait_for(lambda: user_sleeps(ALICE, 60) and user_sleeps(ALICE, 64), 10), \
            "the session's command did not start"
        cmd, job = user_sleeps(ALICE, 60), user_sleeps(ALICE, 64)
        fds = pidfds_of(cmd + job + user_sleeps(ALICE, 65))
        assert len(fds) == 3, fds
        # The background job's parent shell has exited: it hangs from no
        # process of the session, only from the command's process session.
        with open(f"/proc/{job[0]}/stat") as f:
            ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        assert ppid not in cmd, ppid

        t0 = time.monotonic()
        site.ctl("revoke", key_id)
        ended = wait_for(lambda: running(fds) == user_sleeps(ALICE, 65), END_WITHIN)
        took = time.monotonic() - t0
        assert ended, f"still running {END_WITHIN}s after revoke: {running(fds)} " \
                      f"(the command {cmd}, its job {job})"
        assert took <= END_WITHIN, took
        assert ssh.wait(5) != 0
        assert outside.poll() is None, "a process outside the session was ended"
        assert f"ending session of key {key_id}: user={ALICE} service=sshd rhost=127.0.0.1 " \
            in site.daemon.log()
        assert list_sessions(site.admin, key_id) == []
    finally:
        for fd in fds.values():
            os.close(fd)
        stop_proc(ssh)
        stop_proc(outside)
        kill_sleeps(ALICE, 60, 64, 65)


@pytest.mark.parametrize("tty", [True, False], ids=["tty", "no-tty"])
def test_sshd_session_ends_when_the_key_expires(sshd_site, tty):
    """No call at all: the key's expiry passing ends its live session within
    2 s, the command with it."""
    site = sshd_site
    expires_at = int(time.time()) + 4
    created = site.admin.create(f"ssh-expiry-{tty}", owner=ALICE, scope=["sshd"],
                                expires=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                      time.gmtime(expires_at)))
    key_id = created["key"]["id"]
    ssh = ssh_holding(site.sshds["keyboard-interactive"], ALICE, created["token"], tty=tty)
    fds = {}
    try:
        live = wait_sessions(site.admin, key_id)
        assert len(live) == 1, (live, site.sshds["keyboard-interactive"].log()[-2000:])
        assert wait_for(lambda: user_sleeps(ALICE, 60), 10), "the command did not start"
        fds = pidfds_of(user_sleeps(ALICE, 60))
        assert time.time() < expires_at, "the login took until the key expired"
        assert running(fds), "the command ended before the key expired"
        left = expires_at - time.time()
        assert wait_for(lambda: not running(fds), left + END_WITHIN), \
            f"the command still runs {END_WITHIN}s after the key expired"
        assert time.time() <= expires_at + END_WITHIN
        assert ssh.wait(5) != 0
        assert f"ending session of key {key_id}: user={ALICE} service=sshd rhost=127.0.0.1 " \
            in site.daemon.log()
        assert f"pid={live[0]['pid']}: key expired" in site.daemon.log()
    finally:
        for fd in fds.values():
            os.close(fd)
        stop_proc(ssh)
        kill_sleeps(ALICE, 60)


@pytest.mark.parametrize("mode", ["keyboard-interactive", "password"])
@pytest.mark.parametrize("session_line", [True, False], ids=["session-line", "no-session-line"])
def test_key_id_stays_out_of_the_session_environment(sshd_site, mode, session_line):
    """The module hands the login's key to its session hook in the PAM
    environment (keyboard-interactive auth runs in a process of its own):
    it never reaches the user's session, also where the service has the
    auth line and no session line."""
    import test_pam_sshd as t
    site = sshd_site
    token, key_id = site.key(ALICE, f"ssh-env-{mode}-{session_line}")
    with_session = t.PAM_FILE.read_text()
    if not session_line:
        t.PAM_FILE.write_text(t.pam_service_text(
            DEFAULT_BUILD.module, f"socket={site.daemon.socket} service=sshd nodelay"))
    try:
        r = site.sshds[mode].login(ALICE, token, "env")
        assert r.returncode == 0, (r, site.sshds[mode].log()[-2000:])
        env = dict(l.split("=", 1) for l in r.stdout.splitlines() if "=" in l)
        assert env.get("USER") == ALICE, r.stdout
        assert "PAM_APIKEY_KEY_ID" not in env, r.stdout
    finally:
        t.PAM_FILE.write_text(with_session)
    # The session hook still learns the key of a keyboard-interactive login.
    ssh = ssh_holding(site.sshds[mode], ALICE, token)
    try:
        assert len(wait_sessions(site.admin, key_id)) == 1
    finally:
        stop_proc(ssh)
        kill_sleeps(ALICE, 60)


@pytest.fixture(scope="module")
def sudo_site(tmp_path_factory, test_users):
    import test_pam_sudo as t
    need_root("writes /etc/sudoers.d and /etc/pam.d and runs sudo as the test users")
    need_tool("sudo", "visudo", "runuser", "timeout")
    DEFAULT_BUILD.check()
    s = t.SudoSite(tmp_path_factory.mktemp("sudo"))
    try:
        s.setup()
        args = f"socket={s.daemon.socket} service=sudo nodelay"
        t.PAM_FILE.write_text(with_session_line(t.pam_service_text(DEFAULT_BUILD.module, args),
                                                DEFAULT_BUILD.module, args,
                                                "@include common-session-noninteractive\n"))
        t.SUDOERS_FILE.write_text(t.sudoers_text() + f"{ALICE} ALL=(root) /usr/bin/sleep\n")
        r = subprocess.run(["visudo", "-c"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"visudo -c: {r.stdout}{r.stderr}"
        yield s
    finally:
        problems = s.teardown()
        assert not t.PAM_FILE.exists() and not t.SUDOERS_FILE.exists()
        assert not problems, problems


def test_sudo_command_ends_on_revoke(sudo_site):
    site = sudo_site
    token, key_id = site.key(ALICE, "sudo-sleep")
    env = dict(os.environ, TOKEN=token, LC_ALL="C")
    p = subprocess.Popen(["runuser", "-u", ALICE, "--", "sh", "-c",
                          'echo "$TOKEN" | exec sudo -S -k -u root /usr/bin/sleep 63'],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env)
    try:
        live = wait_sessions(site.admin, key_id)
        assert len(live) == 1, (live, p.poll())
        # sudo itself opened the session: ending it ends the command.
        assert comm(live[0]["pid"]) == "sudo", live
        site.admin.ok(f"{IFACE}.Revoke", {"id": key_id})
        try:
            p.wait(END_WITHIN + 0.5)
        except subprocess.TimeoutExpired:
            pytest.fail(f"sudo sleep 60 still running {END_WITHIN}s after revoke")
        assert p.returncode != 0
        # The command (sleep, as root) ended with sudo.
        assert user_sleeps("root", 63) == []
        assert list_sessions(site.admin) == []
    finally:
        stop_proc(p)
        kill_sleeps("root", 63)


# ---------------------------------------------------------------- valgrind

VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--keep-debuginfo=yes", "--track-fds=no",
            "--num-callers=30"]


def test_session_paths_are_valgrind_clean(tmp_path, daemon):
    """The module's session hook under valgrind (the module preloaded so its
    frames resolve): a key's session opened and closed, the daemon away when
    the session opens (ignored, the session still opens), a password
    login's session (ignored), and a key's session whose auth ran in a
    forked child as sshd's keyboard-interactive auth does (the key handed
    over in the PAM environment, taken out by setcred)."""
    need_tool("valgrind")
    build = DEFAULT_BUILD.check()
    pam = PamDir(tmp_path / "pam.d", build)
    d = daemon()
    down = daemon()
    down.stop()
    token = d.client().create("k", owner=USER)["token"]
    up = f"socket={d.socket} nodelay {trust_me()}".rstrip()
    away = f"socket={down.socket} nodelay {trust_me()}".rstrip()
    permit = ("auth required pam_permit.so\naccount required pam_permit.so\n"
              "session required pam_permit.so\n")
    pam.write("up", snippet_stack(pam.module, up) + permit)
    pam.write("away", pam.line("auth", "[success=done ignore=ignore default=die]", up) +
              pam.line("account", "[success=ok ignore=ignore default=bad]", up) +
              pam.line("session", "optional", away) + permit)
    cases = [("key session", "up", token, ["session=Success", "close=Success"], 1, []),
             ("daemon away", "away", token, ["session=Success", "close=Success"], 0, []),
             ("password session", "up", PASSWORD, ["session=Success", "close=Success"], 0, []),
             ("auth in a child", "up", token, ["session=Success", "close=Success"], 1,
              ["--fork-auth"])]
    failures = []
    for i, (name, svc, answer, want, registered, extra) in enumerate(cases):
        log = tmp_path / f"valgrind.{i}.log"
        argv = VALGRIND + [f"--log-file={log}", str(build.harness), "--acct", "--session", "2",
                           *extra, str(pam.path), svc, USER]
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             env=build.env({"LD_PRELOAD": str(build.module)}))
        p.stdin.write(answer + "\n")
        p.stdin.close()
        first = ""
        while not first.startswith("session="):
            line = p.stdout.readline()
            if not line:
                break
            first = line.strip()
        # Held open: registered with the daemon only when it was the key's.
        live = [x["pid"] for x in list_sessions(d.client())]
        out, err = p.stdout.read(), p.stderr.read()
        p.wait(120)
        p.stdout.close()
        p.stderr.close()
        lines = [first] + [l for l in out.splitlines() if l.startswith("close=")]
        text = log.read_text(errors="replace")
        if p.returncode != 0 or lines != want or "ERROR SUMMARY: 0 errors" not in text:
            failures.append(f"{name}: exit {p.returncode}, {lines}\n{err}\n{text}")
        if live != [p.pid] * registered:
            failures.append(f"{name}: sessions while open {live}, harness pid {p.pid}")
    assert not failures, "\n\n".join(failures)
