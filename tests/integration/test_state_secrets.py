# SPDX-License-Identifier: MIT
"""The pepper, the shared secret and the state directory, from the side of
someone who can touch the files: the real daemon, started on a prepared
state directory.

- The keystore keeps the pepper's fingerprint: a pepper deleted or replaced
  while keys exist stops the start with a message naming the file and what
  to restore; an empty keystore gets a new pepper; a keystore without a
  fingerprint (made by an older version) gets the present pepper's.
- The shared secret lives in its own 0600 file, never in keys.mdb: a copy
  of the database cannot forge a signed Verify answer.  A keystore that
  still holds the secret in its meta database is migrated at start with
  the same secret, and keys.mdb keeps no copy of it.  Rotation writes the
  file before it answers; signatures check out after a restart.
- A state directory writable by group or others, or owned by another
  user, is refused.
"""

import base64
import hashlib
import os
import subprocess

import pytest

from conftest import IFACE, Varlink

KEYS_MDB = "keys.mdb"
OTHER_UID = 65534  # nobody: any uid but the daemon's


def refused(d, timeout=15):
    """Start `d`, expect it to exit non-zero without answering; its log."""
    d.start(wait=False)
    try:
        rc = d.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"apikeyd started where it should have refused; its log:\n{d.log()}")
    assert rc != 0, d.log()
    assert not os.path.exists(d.socket) or not _answers(d.socket)
    return d.log()


def _answers(path):
    try:
        with Varlink(path, timeout=1.0) as c:
            return "error" not in c.call("org.varlink.service.GetInfo")
    except OSError:
        return False


def with_a_key(daemon, tmp_path):
    """A daemon that made a key, stopped: (daemon, token)."""
    d = daemon(state_dir=tmp_path / "state")
    with Varlink(d.socket) as c:
        token = c.create("k")["token"]
        assert c.verify(token)["code"] == "VALID"
    d.stop()
    return d, token


def holds(path, needle):
    """Whether the file's bytes contain `needle` (a bool, to keep failures short)."""
    return needle in path.read_bytes()


def secret_of(c):
    return base64.b64decode(c.ok(f"{IFACE}.GetSharedSecret")["secret"], validate=True)


def signature_checks(reply, secret):
    key = reply.get("key", {})
    canon = ("apikeyd-verify-v1\n"
             f"signed_at={reply['signed_at']}\n"
             f"valid={'true' if reply['valid'] else 'false'}\n"
             f"code={reply['code']}\n"
             f"id={key.get('id', '')}\n"
             f"owner={key.get('owner', '')}\n"
             "service=\nuser=\nrhost=\n").encode()
    mac = hashlib.blake2b(canon, key=secret, digest_size=32).digest()
    return base64.b64decode(reply["signature"]) == mac


def meta(store):
    """The meta database of `store` as mdb_dump prints it (header, then key/value lines)."""
    return subprocess.run(["mdb_dump", "-n", "-s", "meta", str(store)], capture_output=True,
                          text=True, check=True, timeout=30).stdout.splitlines()


def load_meta(store, dump):
    subprocess.run(["mdb_load", "-n", "-s", "meta", str(store)], input="\n".join(dump) + "\n",
                   text=True, check=True, timeout=30)


def meta_names(store):
    lines = meta(store)
    start = lines.index("HEADER=END") + 1
    return [bytes.fromhex(k.strip()).decode() for k in lines[start:-1:2]]


# ---------------------------------------------------------------- the pepper


def test_deleted_pepper_with_keys_stops_the_start(daemon, tmp_path):
    d, token = with_a_key(daemon, tmp_path)
    pepper = d.state_dir / "pepper"
    saved = pepper.read_bytes()
    pepper.unlink()
    log = refused(d)
    assert (f"{pepper} is missing, but the keystore {d.state_dir / KEYS_MDB} holds keys made "
            f"with it: restore {pepper} from the backup taken with keys.mdb") in log, log
    assert not pepper.exists(), "a new pepper was made over the keys"
    # Restored, every key verifies again.
    pepper.write_bytes(saved)
    os.chmod(pepper, 0o600)
    d.start()
    with Varlink(d.socket) as c:
        assert c.verify(token)["code"] == "VALID"


def test_replaced_pepper_with_keys_stops_the_start(daemon, tmp_path):
    d, token = with_a_key(daemon, tmp_path)
    pepper = d.state_dir / "pepper"
    saved = pepper.read_bytes()
    pepper.write_bytes(os.urandom(32))
    log = refused(d)
    assert (f"{pepper} is not the pepper the keys in {d.state_dir / KEYS_MDB} were made with "
            f"(its fingerprint differs from the one the keystore keeps): restore {pepper} from "
            "the backup taken with keys.mdb") in log, log
    pepper.write_bytes(saved)
    d.start()
    with Varlink(d.socket) as c:
        assert c.verify(token)["code"] == "VALID"


def test_fingerprint_is_kept_not_the_pepper(daemon, tmp_path):
    d, _ = with_a_key(daemon, tmp_path)
    store = (d.state_dir / KEYS_MDB).read_bytes()
    assert "pepper_fingerprint" in meta_names(d.state_dir / KEYS_MDB)
    assert (d.state_dir / "pepper").read_bytes() not in store


def test_empty_keystore_gets_a_new_pepper(daemon, tmp_path):
    """No keys: nothing a new pepper could break, so it is made."""
    d = daemon(state_dir=tmp_path / "state")
    d.stop()
    pepper = d.state_dir / "pepper"
    old = pepper.read_bytes()
    pepper.unlink()
    d.start()
    new = pepper.read_bytes()
    assert len(new) == 32 and new != old
    assert os.stat(pepper).st_mode & 0o777 == 0o600
    with Varlink(d.socket) as c:
        token = c.create("after")["token"]
        assert c.verify(token)["code"] == "VALID"
    d.stop()
    # And it is the one kept from now on.
    pepper.write_bytes(old)
    assert "fingerprint differs" in refused(d)


def test_keystore_without_fingerprint_records_it(daemon, tmp_path):
    """A keystore made before there was a fingerprint: the present pepper's
    is recorded at start, and a replaced pepper is noticed after that."""
    d, token = with_a_key(daemon, tmp_path)
    store = d.state_dir / KEYS_MDB
    dump = subprocess.run(["mdb_dump", "-n", "-a", str(store)], capture_output=True, text=True,
                          check=True, timeout=30).stdout.splitlines()
    at = dump.index(" " + b"pepper_fingerprint".hex())
    del dump[at:at + 2]
    store.unlink()
    (d.state_dir / (KEYS_MDB + "-lock")).unlink()
    subprocess.run(["mdb_load", "-n", str(store)], input="\n".join(dump) + "\n", text=True,
                   check=True, timeout=30)
    assert "pepper_fingerprint" not in meta_names(store)
    d.start()
    assert "recorded the fingerprint of" in d.log()
    with Varlink(d.socket) as c:
        assert c.verify(token)["code"] == "VALID"
    d.stop()
    assert "pepper_fingerprint" in meta_names(store)
    (d.state_dir / "pepper").write_bytes(os.urandom(32))
    assert "fingerprint differs" in refused(d)


# ---------------------------------------------------------------- the shared secret


def test_shared_secret_is_in_its_own_file_not_in_the_keystore(daemon, tmp_path):
    d = daemon(state_dir=tmp_path / "state")
    with Varlink(d.socket) as c:
        secret = secret_of(c)
        c.create("k")
    f = d.state_dir / "shared-secret"
    st = os.stat(f)
    assert (st.st_mode & 0o777, st.st_uid, st.st_size) == (0o600, os.geteuid(), 32)
    assert f.read_bytes() == secret
    d.stop()
    assert not holds(d.state_dir / KEYS_MDB, secret)
    assert "shared_secret" not in meta_names(d.state_dir / KEYS_MDB)


def test_rotation_is_written_before_the_answer_and_signs_after_a_restart(daemon, tmp_path):
    d = daemon(state_dir=tmp_path / "state")
    c = d.client()
    token = c.create("k")["token"]
    old = secret_of(c)
    new = base64.b64decode(c.ok(f"{IFACE}.RotateSharedSecret")["secret"])
    assert new != old
    assert (d.state_dir / "shared-secret").read_bytes() == new  # on disk once answered
    assert signature_checks(c.verify(token), new)
    d.kill()  # no clean shutdown: what was answered must be on disk
    d.start()
    with Varlink(d.socket) as c:
        assert secret_of(c) == new
        v = c.verify(token)
        assert v["code"] == "VALID" and signature_checks(v, new)
    assert not holds(d.state_dir / KEYS_MDB, new)
    assert not holds(d.state_dir / KEYS_MDB, old)


def test_racing_rotations_leave_the_file_and_the_daemon_agreeing(daemon, tmp_path):
    """Rotations from many connections at once (written in groups by the
    writer): the secret the daemon signs with, the file and what a restart
    loads are the same, and it is one of the answers."""
    d = daemon(state_dir=tmp_path / "state")
    token = d.client().create("k")["token"]
    clients = [Varlink(d.socket) for _ in range(16)]
    try:
        for c in clients:
            c.send({"method": f"{IFACE}.RotateSharedSecret"})
        answers = [base64.b64decode(c.recv()["parameters"]["secret"]) for c in clients]
    finally:
        for c in clients:
            c.close()
    assert len(set(answers)) == len(answers)
    with Varlink(d.socket) as c:
        now = secret_of(c)
        assert signature_checks(c.verify(token), now)
    assert now in answers
    assert (d.state_dir / "shared-secret").read_bytes() == now
    d.restart()
    with Varlink(d.socket) as c:
        assert secret_of(c) == now
        assert signature_checks(c.verify(token), now)


def test_old_keystore_secret_is_migrated_and_scrubbed(daemon, tmp_path):
    """A keystore of the old layout: the secret in meta, no file.  Many
    writes after it left copies of the page holding it in the file."""
    d, token = with_a_key(daemon, tmp_path)
    store = d.state_dir / KEYS_MDB
    old = os.urandom(32)
    (d.state_dir / "shared-secret").unlink()
    dump = meta(store)
    load_meta(store, dump[:-1] + [" " + b"shared_secret".hex(), " " + old.hex(), dump[-1]])
    assert "shared_secret" in meta_names(store)
    # Writes to meta after it, as the old daemon made (the lockout counts).
    for i in range(20):
        load_meta(store, dump[:-1] + [" " + b"shared_secret".hex(), " " + old.hex(),
                                      " " + b"zz-filler".hex(), " " + os.urandom(40 + i).hex(),
                                      dump[-1]])
    assert holds(store, old), "no copy of the secret in keys.mdb to begin with: the test is blind"

    d.start()
    assert "moved the shared secret from the keystore to" in d.log()
    with Varlink(d.socket) as c:
        assert secret_of(c) == old  # integrations keep working
        v = c.verify(token)
        assert v["code"] == "VALID" and signature_checks(v, old)
    d.stop()
    assert (d.state_dir / "shared-secret").read_bytes() == old
    assert os.stat(d.state_dir / "shared-secret").st_mode & 0o777 == 0o600
    assert "shared_secret" not in meta_names(store)
    assert not holds(store, old), "a copy of the shared secret is left in keys.mdb"
    # The next start has nothing to move.
    d.start()
    with Varlink(d.socket) as c:
        assert secret_of(c) == old
    assert d.log().count("moved the shared secret") == 1


@pytest.mark.parametrize("damage, message", [
    (lambda f: os.chmod(f, 0o640), "has mode 0640; it must be 0600"),
    (lambda f: f.write_bytes(b"short"), "is 5 bytes, not 32"),
    (lambda f: (f.unlink(), f.mkdir()), "is not a regular file"),
    (lambda f: (f.unlink(), f.symlink_to(f.with_name("pepper"))), "cannot open"),
])
def test_bad_shared_secret_file_is_refused(daemon, tmp_path, damage, message):
    d, _ = with_a_key(daemon, tmp_path)
    f = d.state_dir / "shared-secret"
    damage(f)
    log = refused(d)
    assert f"{f} {message}" in log or (message == "cannot open" and f"cannot open {f}" in log), log


def test_shared_secret_of_another_owner_is_refused(daemon, tmp_path):
    d, _ = with_a_key(daemon, tmp_path)
    f = d.state_dir / "shared-secret"
    uid = OTHER_UID
    os.chown(f, uid, -1)
    log = refused(d)
    assert f"{f} is owned by uid {uid}, not by this daemon (uid {os.geteuid()})" in log, log


# ---------------------------------------------------------------- the state directory


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_state_dir_writable_by_others_is_refused(daemon, tmp_path, mode):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, mode)
    d = daemon(state_dir=state, start=False)
    log = refused(d)
    assert (f"state directory {state} has mode {mode:04o}: group or others may write to it and "
            "replace the pepper or the keystore; refusing to start (chmod 0700 it)") in log, log
    assert not (state / "pepper").exists()
    os.chmod(state, 0o700)
    d.start()


def test_state_dir_of_another_owner_is_refused(daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    uid = OTHER_UID
    os.chown(state, uid, -1)
    d = daemon(state_dir=state, start=False)
    log = refused(d)
    assert f"state directory {state} is owned by uid {uid}, not by this daemon" in log, log

