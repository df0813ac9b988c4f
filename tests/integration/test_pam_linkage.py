# SPDX-License-Identifier: MIT
"""What the PAM module brings into sshd and sudo: libpam and libc, nothing
else (the shared code from common/ is linked in statically), and only the
pam_sm_* entry points exported (module.map).  A dependency pulled in by
accident -- jansson through a common/ file, libsodium through a daemon
header -- would load a library into every process that authenticates."""

import re
import shutil
import subprocess

import pytest

from pam_fixtures import DEFAULT_BUILD

ALLOWED_NEEDED = {"libpam.so.0", "libc.so.6"}
PAM_ENTRY_POINTS = {"pam_sm_authenticate", "pam_sm_setcred", "pam_sm_acct_mgmt",
                    "pam_sm_open_session", "pam_sm_close_session", "pam_sm_chauthtok"}


def tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def test_module_needs_only_libpam_and_libc():
    module = DEFAULT_BUILD.check().module
    out = subprocess.run([tool("readelf"), "--dynamic", "--wide", str(module)],
                         capture_output=True, text=True, check=True).stdout
    needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))
    assert "libpam.so.0" in needed, out
    assert needed <= ALLOWED_NEEDED, f"pam_apikey.so also needs {sorted(needed - ALLOWED_NEEDED)}"


def test_module_exports_only_pam_entry_points():
    module = DEFAULT_BUILD.check().module
    out = subprocess.run([tool("nm"), "--dynamic", "--defined-only", str(module)],
                         capture_output=True, text=True, check=True).stdout
    exported = {l.split()[-1].split("@")[0] for l in out.splitlines()
                if re.search(r" [TDBRVW] ", l)}
    assert exported, out
    assert "pam_sm_authenticate" in exported
    assert exported <= PAM_ENTRY_POINTS, f"pam_apikey.so also exports {sorted(exported - PAM_ENTRY_POINTS)}"
