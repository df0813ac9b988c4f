# SPDX-License-Identifier: MIT
"""The daemon's life: restarts keep every key, the keystore checks out,
signals stop it cleanly, a second daemon does not steal the socket, files
get safe modes, tokens never reach the disk or the log, and socket
activation with sd_notify readiness."""

import os
import signal
import stat
import subprocess
import time

import pytest

from conftest import (ALICE, APIKEYD, IFACE, TOKEN_RE, Varlink, list_all_ids, split_token)

SERVICE = "org.varlink.service"


def run_apikeyd(*args, timeout=20):
    return subprocess.run([str(APIKEYD), *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def test_restart_keeps_every_key(daemon):
    d = daemon()
    c = d.client()
    created = [c.create(f"key-{i:02d}", owner=f"owner-{i % 5}", scope=["sshd"] if i % 2 else [],
                        expires="30d" if i % 3 else "never") for i in range(50)]
    c.ok(f"{IFACE}.Disable", {"id": created[1]["key"]["id"]})
    c.ok(f"{IFACE}.Revoke", {"id": created[2]["key"]["id"]})
    before = {k["id"]: k for k in c.list()["keys"]}
    assert len(before) == 50
    d.stop()
    d.start()
    c = d.client()
    after = {k["id"]: k for k in c.list()["keys"]}
    assert after == before
    assert sorted(list_all_ids(c, limit=7)) == sorted(before)
    for i, r in enumerate(created):
        want = {1: "DISABLED", 2: "REVOKED"}.get(i, "VALID")
        assert c.verify(r["token"])["code"] == want, i
    for owner in range(5):
        assert len(c.list(owner=f"owner-{owner}")["keys"]) == 10
    # Names stay taken.
    assert c.err(f"{IFACE}.Create", {"name": "key-00", "owner": "owner-0"})[0] == (
        f"{IFACE}.NameTaken")


def test_acknowledged_changes_survive_kill_9(daemon):
    d = daemon()
    c = d.client()
    kept = c.create("kept")
    gone = c.create("deleted")
    c.ok(f"{IFACE}.Delete", {"id": gone["key"]["id"]})
    c.ok(f"{IFACE}.Update", {"id": kept["key"]["id"], "description": "changed"})
    d.kill()
    d.start()
    c = d.client()
    assert [k["description"] for k in c.list()["keys"]] == ["changed"]
    assert c.verify(kept["token"])["code"] == "VALID"
    assert c.verify(gone["token"])["code"] == "NOT_FOUND"


def test_check_reports_a_consistent_keystore(daemon):
    d = daemon()
    c = d.client()
    for i in range(10):
        c.create(f"k{i}", owner=f"o{i % 3}")
    keys = c.list()["keys"]
    c.ok(f"{IFACE}.Delete", {"id": keys[0]["id"]})
    c.ok(f"{IFACE}.Update", {"id": keys[1]["id"], "name": "renamed", "scope": ["sshd"]})
    c.ok(f"{IFACE}.Revoke", {"id": keys[2]["id"]})
    c.ok(f"{IFACE}.Disable", {"id": keys[3]["id"]})
    c.create(keys[1]["name"], owner=keys[1]["owner"])  # the old name, free again
    r = c.create("used")
    c.verify(r["token"], service="sshd")
    d.stop()
    r = run_apikeyd("--check", "--no-config", "--state-dir", str(d.state_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"keystore in {d.state_dir} is consistent\n"
    # And the keystore still opens afterwards.
    d.start()
    assert len(d.client().list()["keys"]) == 11


def test_check_on_a_missing_keystore_fails(tmp_path):
    r = run_apikeyd("--check", "--no-config", "--state-dir", str(tmp_path / "nothing"))
    assert r.returncode != 0
    assert "is consistent" not in r.stdout
    assert r.stderr.strip()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_daemon_cleanly(daemon, sig):
    d = daemon()
    c = d.client()
    c.create("k")
    os.kill(d.proc.pid, sig)
    assert d.proc.wait(10) == 0
    assert not os.path.exists(d.socket), "the socket it bound is left behind"
    assert "stopping" in d.log()


def test_sigterm_with_clients_connected(daemon, varlink):
    d = daemon()
    idle = varlink(d.socket)
    busy = varlink(d.socket)
    busy.send_bytes(b'{"method": "org.varlink.service.Get')  # half a message
    assert idle.ok(f"{SERVICE}.GetInfo")
    os.kill(d.proc.pid, signal.SIGTERM)
    assert d.proc.wait(10) == 0
    assert idle.wait_closed(2)
    assert busy.wait_closed(2)


def test_second_daemon_refuses_the_socket(daemon):
    first = daemon()
    second = daemon(socket_path=first.socket, start=False)
    second.start(wait=False)
    try:
        rc = second.proc.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail("the second daemon kept running on a socket that is in use")
    assert rc != 0
    assert first.socket in second.log()
    assert "already" in second.log()
    # The first one is untouched.
    assert os.path.exists(first.socket)
    assert first.client().ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"


def test_stale_socket_is_replaced(daemon):
    d = daemon()
    d.client().create("k")
    d.kill()
    assert os.path.exists(d.socket)  # left behind by kill -9
    d.start()
    assert len(d.client().list()["keys"]) == 1


def test_bad_config_is_refused_with_file_and_line(daemon):
    d = daemon(config_text="admin_group = x\nadmin_grup = y\n", start=False)
    d.start(wait=False)
    assert d.proc.wait(10) != 0
    assert f"{d.config_file}:2:" in d.log()
    assert "admin_grup" in d.log()


def test_bad_arguments(tmp_path):
    r = run_apikeyd("--no-config", "--config", str(tmp_path / "x"))
    assert r.returncode == 2
    r = run_apikeyd("--bogus")
    assert r.returncode == 2


# ---------------------------------------------------------------- files


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_file_modes(daemon):
    d = daemon()
    d.client().create("k")
    assert mode(d.state_dir) == 0o700
    assert mode(d.state_dir / "pepper") == 0o600
    assert os.path.getsize(d.state_dir / "pepper") == 32
    assert mode(d.state_dir / "keys.mdb") == 0o600
    for f in d.state_dir.iterdir():
        assert mode(f) & 0o077 == 0, f"{f} is {oct(mode(f))}"
    st = os.lstat(d.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert mode(d.socket) == 0o666


def test_file_modes_with_a_permissive_umask(daemon):
    old = os.umask(0)
    try:
        d = daemon()
    finally:
        os.umask(old)
    d.client().create("k")
    assert mode(d.state_dir) == 0o700
    assert mode(d.state_dir / "pepper") == 0o600
    assert mode(d.state_dir / "keys.mdb") == 0o600
    assert mode(d.socket) == 0o666


def test_pepper_with_loose_mode_is_refused(daemon):
    d = daemon()
    d.stop()
    os.chmod(d.state_dir / "pepper", 0o644)
    d.start(wait=False)
    assert d.proc.wait(10) != 0
    assert "pepper" in d.log() and "0600" in d.log()


def test_no_token_reaches_the_disk_or_the_log(daemon):
    d = daemon(debug=True)
    c = d.client()
    tokens = []
    for i in range(5):
        r = c.create(f"k{i}", role="admin" if i == 0 else "readonly",
                     scope=["sshd", "apikeyd"])
        tokens.append(r["token"])
    admin_token = tokens[0]
    for t in tokens:
        c.verify(t, service="sshd", rhost="192.0.2.1")
        c.verify(t, service="sudo")  # refused: OUT_OF_SCOPE
        prefix, key_id, secret, check = split_token(t)
        c.verify(t[:-1] + ("0" if t[-1] != "0" else "1"))  # BAD_FORMAT
    c.ok(f"{IFACE}.List", {"auth": admin_token})
    c.ok(f"{IFACE}.Create", {"name": "via-auth", "auth": admin_token})
    c.err(f"{IFACE}.Create", {"name": "k1", "auth": admin_token})  # NameTaken
    c.err(f"{IFACE}.Get", {"id": "bad", "auth": admin_token})
    c.send_bytes(b'{"method": "io.apikeyd.Keys.Verify", "parameters": {"token": "'
                 + tokens[1].encode() + b'", "bogus": 1}}\0')
    assert c.recv()["error"] == "org.varlink.service.InvalidParameter"
    c.ok(f"{IFACE}.Disable", {"id": split_token(tokens[2])[1]})
    c.verify(tokens[2])  # DISABLED
    d.stop()

    log = d.log()
    assert "--debug" in d.argv()
    assert "ready on" in log and "create key" in log and "OUT_OF_SCOPE" in log, log
    haystacks = {"stderr log": log.encode()}
    for root_dir, _, files in os.walk(d.state_dir):
        for f in files:
            p = os.path.join(root_dir, f)
            with open(p, "rb") as fh:
                haystacks[p] = fh.read()
    assert len(haystacks) >= 3
    for t in tokens:
        secret = split_token(t)[2]
        for where, data in haystacks.items():
            assert t.encode() not in data, f"a token is in {where}"
            assert secret.encode() not in data, f"a token's secret is in {where}"
            assert secret[:16].encode() not in data, f"part of a secret is in {where}"
    for where, data in haystacks.items():
        assert not TOKEN_RE.search(data.decode("latin-1")), f"something token-shaped in {where}"


# ---------------------------------------------------------------- socket activation


def test_socket_activation_and_readiness(activated_daemon):
    d = activated_daemon(start=False)
    d.start(wait=False)
    # Nothing has connected yet: the daemon is not running, so not ready.
    time.sleep(0.2)
    assert d.notify.messages == []
    assert d.running()  # systemd-socket-activate waits
    with Varlink(d.socket) as c:  # the first connection starts apikeyd
        info = c.ok(f"{SERVICE}.GetInfo")
        assert info["vendor"] == "apikeyd"
        r = c.create("activated")
    msgs = d.notify.wait_for("READY=1")
    ready = next(m for m in msgs if "READY=1" in m.split("\n"))
    assert "STATUS=" in ready
    with Varlink(d.socket) as c:
        assert c.verify(r["token"])["code"] == "VALID"
    assert "ready on the socket passed by systemd" in d.log()
    # systemd-socket-activate execs apikeyd: the same PID gets the SIGTERM.
    os.kill(d.proc.pid, signal.SIGTERM)
    d.notify.wait_for("STOPPING=1")
    assert d.proc.wait(10) == 0


def test_socket_activated_keystore_is_kept(activated_daemon):
    d = activated_daemon()
    with Varlink(d.socket) as c:
        r = c.create("k")
    d.stop()
    d2 = activated_daemon(start=False)
    d2.state_dir = d.state_dir
    d2.start()
    with Varlink(d2.socket) as c:
        assert c.verify(r["token"])["code"] == "VALID"
    d2.notify.wait_for("READY=1")
    d2.stop()


def test_socket_activated_daemon_serves_users(activated_daemon, as_user):
    d = activated_daemon()
    d.notify.wait_for("READY=1")
    # systemd-socket-activate creates the socket 0644; a socket unit would say 0666.
    os.chmod(d.socket, 0o666)
    alice = as_user(ALICE, socket=d.socket)
    k = alice.create("k")["key"]
    assert k["owner"] == ALICE
    assert alice.err(f"{IFACE}.GetSharedSecret", {})[0] == f"{IFACE}.PermissionDenied"
