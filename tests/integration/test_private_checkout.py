# SPDX-License-Identifier: MIT
"""The suite from a checkout that other users cannot enter.

Root's home is 0700, and so is a new user's home on Debian 12: the tests
that run the build's programs as akt-alice and the others must not run
them from there.  This runs a small test session of its own, as `make
check` would, against a build in a 0700 folder, and checks that its
user-switching path works and leaves no copy behind."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import ALICE, APIKEYD, REPO

# A test that runs apikeyctl as ordinary users (through runuser).
AS_USERS = "tests/integration/test_apikeyctl.py::test_ordinary_user_manages_own_keys"


@pytest.fixture
def private_build(tmp_path):
    """A copy of the build's programs in a 0700 folder."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run programs as the test users")
    for name in ("apikeyd", "apikeyctl"):
        if not (APIKEYD.parent / name).is_file():
            pytest.fail(f"{APIKEYD.parent / name} is missing: build it with `make` first",
                        pytrace=False)
    home = Path(tempfile.mkdtemp(prefix="akt-home-"))
    os.chmod(home, 0o700)
    build = home / "checkout" / "build"
    build.mkdir(parents=True)
    for name in ("apikeyd", "apikeyctl"):
        shutil.copy2(APIKEYD.parent / name, build / name)
    try:
        yield build
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_users_run_the_programs_of_a_checkout_in_a_0700_home(private_build, test_users):
    ctl = private_build / "apikeyctl"
    # The folder is what the issue describes: its programs, named as they
    # are, do not run as another user.
    r = subprocess.run(["runuser", "-u", ALICE, "--", str(ctl), "--version"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "Permission denied" in r.stderr, r

    tmp = Path(tempfile.mkdtemp(prefix="akt-session-", dir="/tmp"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env.update({"APIKEYD_BUILD": str(private_build), "TMPDIR": str(tmp)})
        env.pop("APIKEYD", None)
        env.pop("APIKEYCTL", None)
        r = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                            "-rs", AS_USERS], cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=300)
        out = r.stdout + r.stderr
        assert r.returncode == 0 and "1 passed" in out, out
        assert "Permission denied" not in out, out
        # The session removed the copies it made for the users.
        left = sorted(p.name for p in tmp.iterdir() if p.name.startswith("akt-bin-"))
        assert left == [], left
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
