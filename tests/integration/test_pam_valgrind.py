# SPDX-License-Identifier: MIT
"""pam_apikey under valgrind and AddressSanitizer, on every path a login can
take: success, refusal, a password ignored, the account step, the daemon
down, the deadline, answers it cannot read, broken options.

valgrind runs the default build's harness with the module preloaded (so it
stays mapped after pam_end and its frames resolve); any error or definite
leak makes it exit 99.  The ASan/UBSan build (build-asan/, brought up to
date with the documented make command) runs the same paths with its runtime
and the module preloaded."""

import os
import shutil
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, make_token
from pam_fixtures import (  # noqa: F401 - fixtures
    DEFAULT_BUILD, FELL_THROUGH, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_CONV_ERR, PAM_MAXTRIES,
    PAM_SERVICE_ERR, PAM_SUCCESS, SANITIZER_RE, Build, PamDir, asan_build, conf_dir, forged,
    listener, sockdir, trust_me)

USER = "alice"
VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--keep-debuginfo=yes", "--track-fds=no",
            "--num-callers=30"]


def _paths(pam, daemon, listener, sockdir, tmp_path, conf_dir):
    """(name, service, answers, acct, expected code) of every path, with the
    daemons, listeners and service files they need."""
    d = daemon(config={"lockout_threshold": 2})
    frozen = daemon()
    down = daemon()
    down.stop()
    admin = d.client()
    token = admin.create("k", owner=USER, expires="2d")["token"]
    locked = admin.create("locked", owner=USER)["token"]
    frozen_token = frozen.client().create("k", owner=USER)["token"]
    mute = listener(sockdir() / "s", reply="not json")
    me = trust_me()
    # Only root's conf files are read (and /tmp is not root's alone).
    conf = (conf_dir or tmp_path) / "pam_apikey.conf"
    conf.write_text(f"socket={d.socket} # the daemon\ntimeout=2000\n")
    os.chmod(conf, 0o644)
    s = f"socket={d.socket} nodelay {me}"
    pam.probe("ok", s)
    pam.probe("conf", f"conf={conf} nodelay {me}")
    pam.write("acct", pam.line("auth", "required", s) +
              pam.line("account", "[success=ok ignore=ignore default=bad]", s))
    pam.write("acct-other", "auth required pam_permit.so\n" +
              pam.line("account", "[success=ok ignore=ignore default=bad]", s) +
              "account required pam_permit.so\n")
    pam.probe("down", f"socket={down.socket} nodelay {me}")
    pam.probe("frozen", f"socket={frozen.socket} nodelay timeout=500 {me}")
    pam.probe("mute", f"socket={mute.path} nodelay timeout=1000 {me}")
    pam.probe("typo", f"{s} timeuot=5")
    pam.probe("first", f"{s} use_first_pass",
              before=pam.line("auth", "[default=ignore]",
                              f"socket={down.socket} nodelay ignore_authinfo_unavail"))
    paths = [
        ("success", "ok", [token], False, PAM_SUCCESS),
        ("success with conf= and expiry info", "conf", [token], False, PAM_SUCCESS)
        if conf_dir else ("conf= refused", "conf", [token], False, PAM_SERVICE_ERR),
        ("success then account", "acct", [token], True, PAM_SUCCESS),
        ("account after another module", "acct-other", [], True, PAM_SUCCESS),
        ("wrong secret", "ok", [forged(token)], False, PAM_AUTH_ERR),
        ("unknown id", "ok", [make_token("apk", "A" * 12, "b" * 43)], False, PAM_AUTH_ERR),
        ("password ignored", "ok", ["correct horse battery staple"], False, FELL_THROUGH),
        ("empty answer", "ok", [""], False, FELL_THROUGH),
        ("no answer (conversation fails)", "ok", [], False, PAM_CONV_ERR),
        ("daemon down", "down", [token], False, PAM_AUTHINFO_UNAVAIL),
        ("deadline", "frozen", [frozen_token], False, PAM_AUTHINFO_UNAVAIL),
        ("unreadable answer", "mute", [token], False, PAM_AUTHINFO_UNAVAIL),
        ("bad option", "typo", [token], False, PAM_SERVICE_ERR),
        ("use_first_pass", "first", [token], False, PAM_SUCCESS),
    ]
    # Two wrong secrets lock the key: the third try is rate-limited.
    for _ in range(2):
        assert pam.run("ok", USER, [forged(locked)]).code == PAM_AUTH_ERR
    paths.append(("rate limited", "ok", [locked], False, PAM_MAXTRIES))
    return paths, frozen


def _run_all(pam, paths, frozen, wrapper, env):
    os.kill(frozen.pid, signal.SIGSTOP)
    try:
        with ThreadPoolExecutor(max_workers=4) as ex:
            futures = [(p, ex.submit(pam.run, p[1], USER, p[2], acct=p[3], wrapper=wrapper(p),
                                     env=env, timeout=120, check_sanitizer=False))
                       for p in paths]
            return [(p, f.result()) for p, f in futures]
    finally:
        os.kill(frozen.pid, signal.SIGCONT)


def _check(results, report):
    failures = []
    for (name, _, _, _, expected), r in results:
        text = report(name, r)
        if r.code == 99:
            failures.append(f"{name}: errors reported\n{text}")
        elif r.code != expected:
            failures.append(f"{name}: exit {r.code}, expected {expected}\n{r}")
        elif expected == FELL_THROUGH and not r.fell_through:
            failures.append(f"{name}: did not fall through\n{r}")
    assert not failures, "\n\n".join(failures)


@pytest.fixture
def root_conf_dir(request):
    """A directory pam_apikey reads conf= files from when we are root, else None."""
    return request.getfixturevalue("conf_dir") if os.geteuid() == 0 else None


def _valgrind_paths(tmp_path, daemon, listener, sockdir, conf_dir, build,
                    keep=lambda name: True):
    """Every path kept, each run under valgrind with the module preloaded."""
    pam = PamDir(tmp_path / "pam.d", build)
    paths, frozen = _paths(pam, daemon, listener, sockdir, tmp_path, conf_dir)
    paths = [p for p in paths if keep(p[0])]
    logs = {p[0]: tmp_path / f"valgrind.{i}.log" for i, p in enumerate(paths)}
    results = _run_all(pam, paths, frozen, lambda p: VALGRIND + [f"--log-file={logs[p[0]]}"],
                       {"LD_PRELOAD": str(build.module)})
    _check(results, lambda name, r: logs[name].read_text(errors="replace"))
    for (name, *_), r in results:
        log = logs[name].read_text(errors="replace")
        assert "ERROR SUMMARY: 0 errors" in log, f"{name}:\n{log}"
        assert "definitely lost" not in log or "definitely lost: 0 bytes" in log, \
            f"{name}:\n{log}"
    return dict((p[0], r) for p, r in results)


def test_valgrind_every_path(tmp_path, daemon, listener, sockdir, root_conf_dir):
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    results = _valgrind_paths(tmp_path, daemon, listener, sockdir, root_conf_dir,
                              DEFAULT_BUILD.check())
    # The deadline held under valgrind too.
    assert results["deadline"].elapsed < 10, results["deadline"]


# The module built without optimisation: memcheck sees what -O2 may hide
# (it once found the answer read before it was set when the daemon was down).


@pytest.fixture(scope="module")
def unoptimised(tmp_path_factory):
    """The default build's harness with the module built at -O0 (outside the tree)."""
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed")
    out = tmp_path_factory.mktemp("build-O0")
    r = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), f"BUILD={out}",
                        "CFLAGS=-O0 -g", f"{out}/pam_apikey.so"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"make -O0 failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    build = Build(DEFAULT_BUILD.path).check()
    build.module = out / "pam_apikey.so"
    return build


def test_valgrind_unoptimised_module(tmp_path, daemon, listener, sockdir, root_conf_dir,
                                     unoptimised):
    _valgrind_paths(tmp_path, daemon, listener, sockdir, root_conf_dir, unoptimised)


def test_sanitizers_every_path(tmp_path, daemon, listener, sockdir, root_conf_dir):
    build = asan_build()
    pam = PamDir(tmp_path / "pam.d", build)
    paths, frozen = _paths(pam, daemon, listener, sockdir, tmp_path, root_conf_dir)
    env = {"LD_PRELOAD": build.sanitizer_preload()}
    results = _run_all(pam, paths, frozen, lambda p: [], env)

    def report(name, r):
        return r.err

    _check(results, report)
    for (name, *_), r in results:
        assert not SANITIZER_RE.search(r.err), f"{name}:\n{r.err}"
