# SPDX-License-Identifier: MIT
"""The state directory, from the side of someone who can touch its files:
the real daemon, started on a prepared state directory.

- A state directory writable by group or others, or owned by another
  user, is refused: they could swap the pepper or the keystore.
"""

import os
import subprocess

import pytest

from conftest import Varlink

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

