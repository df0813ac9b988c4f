# SPDX-License-Identifier: MIT
"""Fleet mode behind a real sshd: a key created on the fleet's manager logs in
over SSH on another host of the fleet (pam_apikey asking that host's
daemon), and is refused there within 2 s of a revoke on the manager.

The etcd member, the manager and the host daemon run as in test_fleet.py;
sshd, its PAM service and the test user's shell as in test_pam_sshd.py, under
the same lock (they share the PAM service's name), and every file, process
and account change is undone at the end.  Root only."""

import fcntl
import os
import pwd
import shutil
import subprocess
import tempfile
import time

import pytest

from conftest import ALICE, IFACE, Daemon
from fleet_fixtures import EtcdCluster, _require_etcd, fleet_status, wait_for
from pam_fixtures import (  # noqa: F401 - fixtures
    DEFAULT_BUILD, SystemFiles, free_port, need_root, need_tool, socket_dir, stop_pid)
from test_pam_sshd import LOCK, PAM_FILE, SERVICE, SSHD, Sshd, logged_in, pam_service_text


@pytest.fixture(scope="module")
def site(tmp_path_factory, test_users):
    need_root("runs sshd, writes /etc/pam.d and changes a test user's shell")
    need_tool("sshpass", "ssh", "ssh-keygen", "timeout", "usermod")
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is not installed (openssh-server)")
    _require_etcd()
    DEFAULT_BUILD.check()
    w = tmp_path_factory.mktemp("fleet-sshd")
    base = tempfile.mkdtemp(prefix="akt-etcd-")
    etcd = EtcdCluster(base, size=1)
    files, daemons, sshd, shell, keys_dir = SystemFiles(), [], None, None, None
    lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock_fd, fcntl.LOCK_EX)
    try:
        if PAM_FILE.exists() and "pam_apikey test service" in PAM_FILE.read_text():
            PAM_FILE.unlink()
        etcd.start()
        conf = {"fleet_endpoints": etcd.endpoints, "fleet_prefix": "/akt-sshd"}
        manager = Daemon(w, 0, config=dict(conf, fleet_host="manager", fleet_manage="yes"))
        daemons.append(manager)
        manager.start()
        wait_for("the manager's first sync", lambda: fleet_status(manager)["online"], 10)
        state = w / "state-host"
        state.mkdir(mode=0o700)
        shutil.copyfile(manager.state_dir / "pepper", state / "pepper")
        os.chmod(state / "pepper", 0o600)
        host = Daemon(w, 1, state_dir=state,
                      config=dict(conf, fleet_host="host0", fleet_manage="no"))
        daemons.append(host)
        host.start()
        files.write(PAM_FILE, pam_service_text(
            DEFAULT_BUILD.module, f"socket={host.socket} service=sshd nodelay"))
        made_run_sshd = not os.path.isdir("/run/sshd")
        if made_run_sshd:
            os.mkdir("/run/sshd", 0o755)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                        str(w / "host_key")], check=True, timeout=30)
        keys_dir = socket_dir()
        files.symlink(SSHD, w / SERVICE)
        shell = pwd.getpwnam(ALICE).pw_shell
        subprocess.run(["usermod", "-s", "/bin/sh", ALICE], check=True, timeout=30)
        sshd = Sshd(w, keys_dir, "keyboard-interactive", free_port())
        yield manager, host, sshd
    finally:
        problems = []
        if sshd is not None and sshd.alive():
            stop_pid(sshd.proc)
        if shell is not None:
            subprocess.run(["usermod", "-s", shell, ALICE], timeout=30)
        problems += files.remove_all()
        if keys_dir is not None:
            shutil.rmtree(keys_dir, ignore_errors=True)
        if "made_run_sshd" in locals() and made_run_sshd:
            try:
                os.rmdir("/run/sshd")
            except OSError:
                pass
        problems += [p for p in (d.cleanup() for d in daemons) if p]
        etcd.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
        assert not PAM_FILE.exists()
        assert not problems, problems


def test_fleet_key_logs_in_and_is_revoked_everywhere(site):
    manager, host, sshd = site
    with manager.client() as c:
        r = c.create("fleet ssh", owner=ALICE, scope=["sshd"])
    token, key_id = r["token"], r["key"]["id"]
    with host.client() as c:
        wait_for("the key on the host", lambda: c.verify(token)["code"] == "VALID", 2.0)
    r = sshd.login(ALICE, token)
    assert logged_in(r, ALICE), (r, sshd.log()[-3000:])

    with manager.client() as c:
        c.ok(f"{IFACE}.Revoke", {"id": key_id})
    t0 = time.monotonic()
    while True:
        r = sshd.login(ALICE, token)
        if not logged_in(r, ALICE):
            break
        assert time.monotonic() - t0 < 2.0, "the revoked key still logs in after 2 s"
    print(f"\nrevoke on the manager -> ssh refused on the host after "
          f"{(time.monotonic() - t0) * 1000:.0f} ms")
    assert "Permission denied" in r.stderr, r
    assert f"key={key_id}" in host.log() and "REVOKED" in host.log()
