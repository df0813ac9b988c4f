# SPDX-License-Identifier: MIT
"""Backup and restore against the real daemon: `apikeyctl backup FILE` takes a
compacted copy while the daemon serves (under concurrent creates and a bulk
revoke), `apikeyd --restore FILE --state-dir DIR` installs it in a fresh
state directory, and every key acknowledged before the backup began verifies
there as it did; a backup made with another pepper is refused."""

import os
import re
import shutil
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from conftest import ALICE, APIKEYD, IFACE, Varlink
from test_apikeyctl import APIKEYCTL, EXIT_OK, EXIT_REFUSED, Ctl

FP_RE = r"[0-9a-f]{64}"


def backup(apikeyd, path):
    r = Ctl(apikeyd.socket).ok("backup", path)
    m = re.fullmatch(rf"Backed up (\d+) keys? \((\d+) bytes\) to {re.escape(str(path))}\.\n"
                     rf"Pepper fingerprint: ({FP_RE})\n", r.out)
    assert m, r
    assert "Restoring it (apikeyd --restore) needs the pepper with this fingerprint" in r.err, r
    assert os.path.getsize(path) == int(m.group(2))
    return int(m.group(1)), m.group(3)


def fresh_state(tmp_path, name, source=None):
    """A new state directory; with the pepper (and shared secret) of `source` in it."""
    d = tmp_path / name
    d.mkdir(mode=0o700)
    for f in ("pepper", "shared-secret"):
        if source is not None and (source / f).exists():
            shutil.copy(source / f, d / f)
            os.chmod(d / f, 0o600)
    return d


def restore(backup_file, state_dir, *extra):
    return subprocess.run([str(APIKEYD), "--restore", str(backup_file), "--state-dir",
                           str(state_dir), *extra], capture_output=True, text=True, timeout=60)


def codes(d, tokens):
    with d.client() as c:
        return {t: c.verify(t)["code"] for t in tokens}


def test_backup_and_restore_into_a_fresh_state_dir(daemon, test_users, tmp_path):
    d = daemon()
    root = d.client()
    made = [root.create(f"k{i}", owner=ALICE) for i in range(5)]
    root.ok(f"{IFACE}.Disable", {"id": made[1]["key"]["id"]})
    root.ok(f"{IFACE}.Revoke", {"id": made[2]["key"]["id"]})
    tokens = [m["token"] for m in made]
    before = codes(d, tokens)
    assert list(before.values()) == ["VALID", "DISABLED", "REVOKED", "VALID", "VALID"]

    f = tmp_path / "out" / "keys.backup"
    f.parent.mkdir()
    n, fp = backup(d, f)
    assert n == 5
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert sorted(os.listdir(f.parent)) == ["keys.backup"]  # no part left beside it
    assert not (d.state_dir / "backup.tmp").exists()
    # Neither secret is in it.
    data = f.read_bytes()
    for secret in ("pepper", "shared-secret"):
        if (d.state_dir / secret).exists():
            assert (d.state_dir / secret).read_bytes() not in data
    events = root.ok(f"{IFACE}.ListAudit", {})["events"]
    assert any(e["action"] == "backup" and e["detail"] == f"5 keys, {len(data)} bytes"
               for e in events), events

    fresh = fresh_state(tmp_path, "fresh", d.state_dir)
    r = restore(f, fresh)
    assert r.returncode == 0, r
    assert r.stdout == f"Restored 5 keys from {f} into {fresh} (pepper fingerprint {fp}).\n", r
    assert sorted(os.listdir(fresh)) == ["keys.mdb", "pepper", "shared-secret"]
    assert stat.S_IMODE(os.stat(fresh / "keys.mdb").st_mode) == 0o600
    d2 = daemon(state_dir=fresh)
    assert codes(d2, tokens) == before

    # Again over a keystore: the one it replaces is kept beside it.
    d2.stop()
    r = restore(f, fresh)
    assert r.returncode == 0 and f"The keystore it replaced is kept as {fresh}/" \
        "keys.mdb.before-restore." in r.stdout, r


def test_backup_under_concurrent_changes(daemon, test_users, tmp_path):
    """Keys created and a bulk revoke running while backups are taken: every
    key acknowledged before a backup began is in it, and the revoke is in it
    whole or not at all."""
    d = daemon()
    root = d.client()
    batch = [root.create(f"b{i}", owner=ALICE)["token"] for i in range(20)]
    acked, stop = [], threading.Event()

    def creator(n):
        with Varlink(d.socket) as c:
            i = 0
            while not stop.is_set():
                r = c.create(f"c{n}-{i}")
                acked.append((time.monotonic(), r["token"]))
                i += 1

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        taken = []

        def revoke_all():
            with Varlink(d.socket) as c:
                c.ok(f"{IFACE}.ChangeMatching", {"action": "revoke", "owner": ALICE})

        revoker = threading.Thread(target=revoke_all)
        for i in range(3):
            began = time.monotonic()
            if i == 1:  # the bulk revoke races this backup
                revoker.start()
            f = tmp_path / f"b{i}.backup"
            backup(d, f)
            taken.append((f, [tok for at, tok in list(acked) if at < began]))
            if i == 1:
                revoker.join()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert all(len(before) > 0 for _, before in taken), "no create was acknowledged"

    for i, (f, before) in enumerate(taken):
        fresh = fresh_state(tmp_path, f"fresh{i}", d.state_dir)
        r = restore(f, fresh)
        assert r.returncode == 0, r
        d2 = daemon(state_dir=fresh)
        got = codes(d2, before)
        assert set(got.values()) == {"VALID"}, [t for t, c in got.items() if c != "VALID"]
        statuses = set(codes(d2, batch).values())
        assert len(statuses) == 1, f"backup {i} holds the bulk revoke by half: {statuses}"
        # Before the revoke, racing it (either whole), after it.
        assert statuses in [[{"VALID"}], [{"VALID"}, {"REVOKED"}], [{"REVOKED"}]][i], statuses
        d2.stop()


def test_restore_refuses_another_pepper(daemon, tmp_path):
    d = daemon()
    token = d.client().create("k")["token"]
    f = tmp_path / "keys.backup"
    _, fp = backup(d, f)

    other = fresh_state(tmp_path, "other")
    (other / "pepper").write_bytes(os.urandom(32))
    os.chmod(other / "pepper", 0o600)
    r = restore(f, other)
    assert r.returncode == 1, r
    assert (f"apikeyd: the backup {f} was made with another pepper than {other}/pepper "
            f"(the backup's fingerprint is {fp}, this pepper's ") in r.stderr, r
    assert "give --force to install it all the same" in r.stderr, r
    assert sorted(os.listdir(other)) == ["pepper"]  # nothing installed

    r = restore(f, other, "--force")
    assert r.returncode == 0, r
    assert "will not verify" in r.stderr, r
    d2 = daemon(state_dir=other)
    assert codes(d2, [token]) == {token: "NOT_FOUND"}
    assert len(d2.client().list()["keys"]) == 1


def test_restore_needs_the_pepper_and_a_stopped_daemon(daemon, tmp_path):
    d = daemon()
    d.client().create("k")
    f = tmp_path / "keys.backup"
    _, fp = backup(d, f)

    empty = fresh_state(tmp_path, "empty")
    r = restore(f, empty)
    assert r.returncode == 1, r
    assert (f"apikeyd: {empty}/pepper is missing: put the pepper the backup {f} was made with "
            f"there (its fingerprint is {fp}), then restore again") in r.stderr, r

    r = restore(f, d.state_dir)
    assert r.returncode == 1, r
    assert f"state directory {d.state_dir} is in use by a running apikeyd" in r.stderr, r

    junk = tmp_path / "junk"
    junk.write_bytes(b"not a keystore\n" * 1000)
    r = restore(junk, fresh_state(tmp_path, "for-junk", d.state_dir))
    assert r.returncode == 1, r
    assert f"apikeyd: {junk} is not a keystore backup apikeyd can read" in r.stderr, r


def test_backup_is_for_admins(apikeyd, test_users):
    out = Path(tempfile.mkdtemp(prefix="akt-backup-"))  # where Alice may write
    try:
        os.chmod(out, 0o777)
        r = Ctl(apikeyd.socket, ALICE)("backup", out / "keys.backup", rc=EXIT_REFUSED)
        assert "permission denied: only admins may take a backup of the keystore" in r.err, r
        assert os.listdir(out) == []  # the file begun beside it is removed
    finally:
        shutil.rmtree(out)


def test_backup_to_standard_output(apikeyd, tmp_path):
    apikeyd.client().create("k")
    r = subprocess.run([str(APIKEYCTL), "--socket", apikeyd.socket, "backup", "-"],
                       capture_output=True, timeout=30)
    assert r.returncode == EXIT_OK, r
    assert re.search(rb"Backed up 1 key \((\d+) bytes\) to standard output\.", r.stderr), r
    size = int(re.search(rb"\((\d+) bytes\)", r.stderr).group(1))
    assert len(r.stdout) == size


def test_second_daemon_on_the_state_dir_refuses_to_start(daemon):
    """The lock a restore waits on: a serving daemon holds it."""
    d = daemon()
    second = daemon(state_dir=d.state_dir, start=False)
    second.start(wait=False)
    assert second.proc.wait(timeout=20) == 1
    assert (f"state directory {d.state_dir} is in use by a running apikeyd or by apikeyd "
            "--restore; refusing to start") in second.log(), second.log()
    assert d.client().create("still-serving")["key"]["name"] == "still-serving"
    # Naming a lock that is not the serving daemon's (an fd of its own on the
    # same directory) is no way past it.
    fd = os.open(d.state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        p = subprocess.run(second.argv(), stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=20, pass_fds=(fd,),
                           env={**os.environ, "APIKEYD_STATE_LOCK_FD": str(fd)})
    finally:
        os.close(fd)
    assert p.returncode == 1, p
    assert "is in use by a running apikeyd" in p.stderr + p.stdout, p
