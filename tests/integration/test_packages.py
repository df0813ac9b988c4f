# SPDX-License-Identifier: MIT
"""The Debian packages, as a packager and an administrator meet them.

- The version lives in VERSION alone: debian/changelog agrees (and
  `make check-version` says so, or says what differs), no C file or man page
  spells it, and the programs and the man pages as installed say it.
- `dpkg-buildpackage -us -uc -b` in a copy of the tree, as an unprivileged
  user (`nobody` when the tests run as root), builds `apikeyd`,
  `libpam-apikey` and `cockpit-apikeys` and runs the unit tests, and only those, on the way.
  lintian reports no error, and no warning that debian/*.lintian-overrides
  does not explain.
- As root, on a machine where systemd is not PID 1: `apt-get install` of the
  built packages lays out their files and the PAM snippet as a conffile,
  creates the apikeyd user and groups, and enables the socket; the installed
  daemon, run by hand as that user on /var/lib/apikeyd as the unit would,
  answers the installed apikeyctl, and the installed module, named the way
  the installed snippet names it, logs a key in.  `apt-get purge` leaves
  nothing behind but the apikeyd user and the apikeyd and apikey-admin
  groups, which Debian keeps (files elsewhere may still belong to them).

The build takes about 20 s on 2 vCPUs, lintian 5 s, install and purge 4 s each.
"""

import grp
import gzip
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import ALICE, REPO, TOKEN_RE, ConnectionClosed, Varlink, _short_socket_dir
from install_fixtures import pam_moduledir, read_unit, systemd_dir, unit_value
from pam_fixtures import (BUILD, DEFAULT_BUILD, PAM_SUCCESS, SNIPPET, PamDir, is_root,
                          need_root, need_tool, stop_pid)

VERSION_FILE = REPO / "VERSION"
VERSION = VERSION_FILE.read_text().strip() if VERSION_FILE.is_file() else None
PACKAGES = ("apikeyd", "libpam-apikey", "cockpit-apikeys")
ARCH_ALL = {"cockpit-apikeys"}  # plain HTML, CSS and JavaScript
DAEMON_USER = "apikeyd"
ADMIN_GROUP = "apikey-admin"
STATE_DIR = Path("/var/lib/apikeyd")
BUILD_TIMEOUT = 900
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}


def _changelog_version():
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    m = re.match(r"^(\S+) \(([^)]+)\)", first)
    assert m, f"debian/changelog: cannot read {first!r}"
    return m.group(1), m.group(2)


def _upstream(debian_version):
    v = debian_version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def _run(argv, timeout=120, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def _tail(text, n=60):
    return "\n".join(text.splitlines()[-n:])


# ---------------------------------------------------------------- the version


def test_the_version_lives_in_VERSION_alone():
    """VERSION is the one place: the changelog agrees, no source spells the
    version, and the built programs and man pages say it."""
    assert VERSION_FILE.is_file(), "no file VERSION at the top of the tree"
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION), f"VERSION holds {VERSION!r}"
    _, debian_version = _changelog_version()
    assert _upstream(debian_version) == VERSION, \
        f"debian/changelog is at {debian_version}, VERSION at {VERSION}"

    sources = [p for pattern in ("common/*.[ch]", "apikeyd/**/*.[ch]", "pam_apikey/*.[ch]",
                                 "apikeyd/**/*.[18]", "pam_apikey/*.8")
               for p in REPO.glob(pattern)]
    assert len(sources) > 20, sources
    spelled = [str(p.relative_to(REPO)) for p in sources if VERSION in p.read_text()]
    assert not spelled, f"these spell the version {VERSION} instead of taking it from VERSION: " \
                        f"{spelled}"

    for page in ("apikeyd.8", "apikeyctl.1", "pam_apikey.8"):
        built = BUILD / "man" / page
        if not built.is_file():
            pytest.fail(f"{built} is missing: build it with `make` first", pytrace=False)
        th = [l for l in built.read_text().splitlines() if l.startswith(".TH ")]
        assert len(th) == 1 and f'"apikeyd {VERSION}"' in th[0], (page, th)
    for prog in ("apikeyd", "apikeyctl"):
        out = _run([str(BUILD / prog), "--version"]).stdout
        assert out == f"{prog} {VERSION}\n", out


def test_make_check_version_names_what_differs():
    """`make check-version` (run by `make check` and by the package build)
    passes as the tree is, and fails naming both versions when they differ."""
    need_tool("make")
    env = dict(ENV, HOME=os.environ.get("HOME", "/"))
    ok = _run(["make", "--no-print-directory", "-C", str(REPO), "check-version"], env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout == f"version: {VERSION} in VERSION and debian/changelog\n", ok.stdout
    bad = _run(["make", "--no-print-directory", "-C", str(REPO), "check-version",
                "VERSION=9.8.7"], env=env)
    assert bad.returncode != 0
    assert f"debian/changelog is at {VERSION}, VERSION at 9.8.7: make them agree" in bad.stdout, \
        bad.stdout + bad.stderr


# ---------------------------------------------------------------- the build


def _copy_tree(dest):
    """The source tree without build output, as a packager unpacks it."""
    top_skip = {".git", "build", "run", ".pytest_cache"}

    def ignore(directory, names):
        skip = {n for n in names if n == "__pycache__" or n.endswith(".pyc")}
        if Path(directory) == REPO:
            skip |= {n for n in names if n in top_skip or n.startswith("build-")}
        return skip

    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)


def _unprivileged():
    """argv prefix and (uid, gid) to run a command as `nobody` when root."""
    if not is_root():
        return [], (os.getuid(), os.getgid())
    pw = pwd.getpwnam("nobody")
    return (["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"],
            (pw.pw_uid, pw.pw_gid))


class Built:
    def __init__(self, top, log, seconds, owner):
        self.top, self.log, self.seconds, self.owner = top, log, seconds, owner
        self.debs = sorted(top.glob("*.deb"))
        self.changes = sorted(top.glob("*.changes"))

    def deb(self, package):
        found = [d for d in self.debs if d.name.startswith(f"{package}_")]
        assert len(found) == 1, (package, self.debs)
        return found[0]


@pytest.fixture(scope="module")
def built():
    """The packages, built once from a copy of the tree in a fresh directory
    (dpkg-buildpackage writes beside the tree it builds)."""
    if shutil.which("dpkg-buildpackage") is None:
        pytest.skip("dpkg-buildpackage is missing (Debian package dpkg-dev; `make deps` "
                    "installs it)")
    if shutil.which("dh") is None:
        pytest.skip("dh is missing (Debian package debhelper; `make deps` installs it)")
    prefix, owner = _unprivileged()
    if prefix:
        need_tool("setpriv")
    top = Path(tempfile.mkdtemp(prefix="apikeyd-deb-", dir="/tmp"))
    try:
        _copy_tree(top / "src")
        for d, dirs, files in os.walk(top):
            for name in [d] + [os.path.join(d, n) for n in dirs + files]:
                os.lchown(name, *owner)
        env = dict(ENV, HOME=str(top), DEB_BUILD_OPTIONS="parallel=2")
        t0 = time.monotonic()
        r = _run(prefix + ["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=top / "src", env=env,
                 timeout=BUILD_TIMEOUT)
        seconds = time.monotonic() - t0
        log = r.stdout + r.stderr
        print(f"dpkg-buildpackage: {seconds:.0f} s")
        if r.returncode != 0:
            pytest.fail(f"dpkg-buildpackage -us -uc -b exited {r.returncode}:\n{_tail(log)}",
                        pytrace=False)
        yield Built(top, log, seconds, owner)
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_build_makes_both_packages_and_runs_the_unit_tests_unprivileged(built):
    """Two packages (and their debug symbols), built by an unprivileged
    user, the unit tests run on the way and nothing else: no `make deps`,
    apt-get, sshd or sudo."""
    arch = _run(["dpkg", "--print-architecture"]).stdout.strip()
    _, debian_version = _changelog_version()
    names = {d.name for d in built.debs}
    for pkg in PACKAGES:
        pkg_arch = "all" if pkg in ARCH_ALL else arch
        assert f"{pkg}_{debian_version}_{pkg_arch}.deb" in names, names
    assert all(os.stat(d).st_uid == built.owner[0] for d in built.debs), \
        "the packages were not written by the unprivileged builder"

    units = len(list((REPO / "tests" / "unit").glob("test_*.c")))
    m = re.search(r"^unit tests: (\d+) programs, (\d+) passed, (\d+) failed$", built.log, re.M)
    assert m, f"the build ran no unit tests:\n{_tail(built.log)}"
    assert (int(m.group(1)), int(m.group(3))) == (units, 0), m.group(0)
    # The make targets debian/rules and dh_auto_* asked for.
    targets = {w for line in re.findall(r"^\s*(?:/usr/bin/)?make ([^\n]*)", built.log, re.M)
               for w in line.split() if not w.startswith(("-", '"')) and "=" not in w}
    assert {"check-unit", "install"} <= targets, targets
    assert not {"check", "test", "deps", "check-run"} & set(targets), targets
    for word in ("deps:", "apt-get", "pytest", "sshd", "sudo "):
        assert word not in built.log, f"the package build ran {word!r}"


def test_lintian_reports_no_errors_or_unexplained_warnings(built):
    """lintian on the .changes: no E: line, no W: line; the warnings
    accepted are in debian/*.lintian-overrides with their reasons."""
    need_tool("lintian")
    prefix, _ = _unprivileged()
    r = _run(prefix + ["lintian", "--display-info", str(built.changes[0])],
             env=dict(ENV, HOME=str(built.top)), timeout=300)
    report = [l for l in r.stdout.splitlines() if re.match(r"^[A-Z]: ", l)]
    print("\n".join(report))
    bad = [l for l in report if l.startswith(("E: ", "W: "))]
    assert not bad, "lintian:\n" + "\n".join(bad)
    assert r.returncode == 0, r.stdout + r.stderr


# ---------------------------------------------------------------- install and purge


def _dpkg_status(pkg):
    r = _run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg])
    return r.stdout.strip() if r.returncode == 0 else "not-installed"


def _account(kind, name):
    try:
        return (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
    except KeyError:
        return None


def _apt(*args):
    env = dict(ENV, DEBIAN_FRONTEND="noninteractive", HOME="/root")
    return _run(["apt-get", "-y", "-q", *args], env=env, timeout=300)


def _installed_files(pkg):
    r = _run(["dpkg-query", "-L", pkg])
    assert r.returncode == 0, r.stderr
    return {p for p in r.stdout.splitlines() if p and not os.path.isdir(p)}


def _expected_files():
    units = systemd_dir("/usr", "systemdsystemunitdir", "lib/systemd/system")
    catalogs = systemd_dir("/usr", "catalogdir", "lib/systemd/catalog")
    return {
        "apikeyd": {
            "/usr/sbin/apikeyd", "/usr/bin/apikeyctl",
            f"{units}/apikeyd.service", f"{units}/apikeyd.socket",
            f"{catalogs}/apikeyd.catalog",
            "/usr/lib/sysusers.d/apikeyd.conf",
            "/usr/share/man/man1/apikeyctl.1.gz", "/usr/share/man/man8/apikeyd.8.gz",
            "/usr/share/bash-completion/completions/apikeyctl",
            "/usr/share/apikeyd/apikeyd.conf.example",
            "/usr/share/apikeyd/io.apikeyd.Keys.varlink",
            *(f"/usr/share/apikeyd/fail2ban/{f}" for f in (
                "filter.d/apikey-pam.conf", "filter.d/apikey-sudo.conf",
                "filter.d/apikeyd.conf", "action.d/apikey-mail-user.conf",
                "jail.d/apikey.conf")),
            "/usr/share/doc/apikeyd/copyright", "/usr/share/doc/apikeyd/changelog.Debian.gz",
            "/usr/share/lintian/overrides/apikeyd",
        },
        "libpam-apikey": {
            f"{pam_moduledir()}/pam_apikey.so", "/etc/pam.d/apikey",
            "/usr/share/man/man8/pam_apikey.8.gz",
            "/usr/share/doc/libpam-apikey/copyright",
            "/usr/share/doc/libpam-apikey/changelog.Debian.gz",
            "/usr/share/lintian/overrides/libpam-apikey",
        },
        "cockpit-apikeys": {
            *(f"/usr/share/cockpit/apikeys/{f}" for f in (
                "manifest.json", "index.html", "apikeys.js", "apikeys.css", "varlink.js")),
            "/usr/share/doc/cockpit-apikeys/copyright",
            "/usr/share/doc/cockpit-apikeys/changelog.Debian.gz",
            "/usr/share/lintian/overrides/cockpit-apikeys",
        },
    }


# Where the packages put things, and what their maintainer scripts touch:
# every name below these is compared before install and after purge.
WATCHED = ["/etc", "/usr/sbin", "/usr/bin", "/usr/lib/sysusers.d", "/usr/share/apikeyd",
           "/usr/share/doc", "/usr/share/man/man1", "/usr/share/man/man8",
           "/usr/share/bash-completion/completions", "/usr/share/lintian/overrides",
           "/usr/share/cockpit",
           "/var/lib/systemd", "/var/lib/dpkg/info",
           "/var/lib/apikeyd", "/run/apikeyd"]
# Written when the system user is created, and kept with it.
ACCOUNT_FILES = {"/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-",
                 "/etc/.pwd.lock"}


def _snapshot():
    roots = WATCHED + [systemd_dir("/usr", "systemdsystemunitdir", "lib/systemd/system"),
                       pam_moduledir()]
    names = set()
    for root in roots:
        for d, dirs, files in os.walk(root):
            names.add(d)
            names.update(os.path.join(d, n) for n in dirs + files)
    return names


def _preflight(expected):
    need_root("installs the packages with apt-get and purges them")
    need_tool("apt-get", "dpkg-query", "setpriv", "systemd-sysusers")
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd runs here: the packages would start the daemon on "
                    "/var/lib/apikeyd themselves, and this test runs it by hand there")
    for pkg in PACKAGES:
        status = _dpkg_status(pkg)
        if status != "not-installed":
            pytest.skip(f"{pkg} is already known to dpkg on this machine (status {status}): "
                        "this test would replace and purge it")
    for path in sorted(set().union(*expected.values())) + [str(STATE_DIR), "/run/apikeyd"]:
        if os.path.lexists(path):
            pytest.skip(f"{path} exists, installed from elsewhere (make install PREFIX=/usr?): "
                        "the packages would overwrite it and their purge remove it")


def _start_daemon(log_path, socket):
    """/usr/sbin/apikeyd as the unit starts it: as the apikeyd user, state
    in /var/lib/apikeyd (0700, which systemd's StateDirectory= makes)."""
    pw = pwd.getpwnam(DAEMON_USER)
    os.mkdir(STATE_DIR, 0o700)
    os.chown(STATE_DIR, pw.pw_uid, pw.pw_gid)
    os.chown(socket.parent, pw.pw_uid, pw.pw_gid)
    argv = ["setpriv", f"--reuid={DAEMON_USER}", f"--regid={DAEMON_USER}", "--init-groups",
            "--", "/usr/sbin/apikeyd", "--no-config", "--state-dir", str(STATE_DIR),
            "--socket", str(socket)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                close_fds=True, env=ENV)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, \
            f"apikeyd exited with {proc.returncode}:\n{Path(log_path).read_text()}"
        try:
            with Varlink(str(socket), timeout=1.0) as c:
                if "error" not in c.call("org.varlink.service.GetInfo"):
                    return proc
        except (OSError, ConnectionClosed):
            pass
        time.sleep(0.05)
    stop_pid(proc)
    raise AssertionError(f"apikeyd did not answer:\n{Path(log_path).read_text()}")


def test_install_use_and_purge(built, tmp_path, request):
    """apt-get install ./*.deb, the files and the account, the installed
    programs and module at work, then apt-get purge leaving nothing."""
    expected = _expected_files()
    _preflight(expected)
    request.getfixturevalue("test_users")
    harness = DEFAULT_BUILD.check()
    accounts_before = {(k, n): _account(k, n) is not None
                       for k, n in (("user", DAEMON_USER), ("group", DAEMON_USER),
                                    ("group", ADMIN_GROUP))}
    before = _snapshot()
    debs = [str(built.deb(p)) for p in PACKAGES]
    socket_dir = _short_socket_dir()
    socket = socket_dir / "io.apikeyd.Keys"
    proc = None
    try:
        r = _apt("install", *debs)
        assert r.returncode == 0, f"apt-get install exited {r.returncode}:\n{r.stdout}{r.stderr}"

        # -- the files, each in its package, as promised.
        for pkg, files in expected.items():
            assert _dpkg_status(pkg) == "installed"
            listed = _installed_files(pkg)
            assert listed == files, f"{pkg}: missing {sorted(files - listed)}, " \
                                    f"unexpected {sorted(listed - files)}"
            for f in files:
                assert os.path.isfile(f), f
        conffiles = _run(["dpkg-query", "-W", "-f=${Conffiles}", "libpam-apikey"]).stdout
        assert [l.split()[0] for l in conffiles.splitlines() if l.strip()] == \
            ["/etc/pam.d/apikey"], conffiles
        assert Path("/etc/pam.d/apikey").read_bytes() == SNIPPET.read_bytes()
        units = systemd_dir("/usr", "systemdsystemunitdir", "lib/systemd/system")
        service = read_unit(f"{units}/apikeyd.service")
        assert unit_value(service, "Service", "ExecStart") == "/usr/sbin/apikeyd"
        assert Path("/usr/lib/sysusers.d/apikeyd.conf").read_bytes() == \
            (REPO / "systemd" / "apikeyd.sysusers").read_bytes()
        for page in ("man1/apikeyctl.1.gz", "man8/apikeyd.8.gz", "man8/pam_apikey.8.gz"):
            text = gzip.decompress(Path("/usr/share/man", page).read_bytes()).decode()
            assert f'"apikeyd {VERSION}"' in text, f"{page} does not say apikeyd {VERSION}"

        # -- postinst, with no systemd as PID 1: the user, the groups, the socket enabled.
        pw = _account("user", DAEMON_USER)
        assert pw, f"the install created no {DAEMON_USER} user"
        assert pw.pw_uid < 1000 and pw.pw_dir == str(STATE_DIR), pw
        assert pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin"), pw
        assert grp.getgrgid(pw.pw_gid).gr_name == DAEMON_USER
        assert _account("group", ADMIN_GROUP), f"the install created no {ADMIN_GROUP} group"
        assert grp.getgrnam(ADMIN_GROUP).gr_gid < 1000
        wants = "/etc/systemd/system/sockets.target.wants/apikeyd.socket"
        assert os.readlink(wants) == f"{units}/apikeyd.socket", wants

        # -- the installed programs and module at work.
        for prog in ("/usr/sbin/apikeyd", "/usr/bin/apikeyctl"):
            out = _run([prog, "--version"]).stdout
            assert out == f"{os.path.basename(prog)} {VERSION}\n", out
        proc = _start_daemon(tmp_path / "apikeyd.log", socket)
        st = _run(["/usr/bin/apikeyctl", "--socket", str(socket), "status"], env=ENV)
        assert st.returncode == 0, st.stdout + st.stderr
        assert f"apikeyd {VERSION}" in st.stdout, st.stdout
        assert str(STATE_DIR) in st.stdout, st.stdout
        service_name = "apikey-pkg-test"
        cr = _run(["/usr/bin/apikeyctl", "--socket", str(socket), "create", "pkg-test",
                   "--owner", ALICE, "--scope", service_name], env=ENV)
        assert cr.returncode == 0, cr.stdout + cr.stderr
        token = TOKEN_RE.search(cr.stdout).group(0)
        # The installed snippet's lines, pointed at this daemon: pam_apikey.so
        # without a path is the installed module, found where libpam looks.
        pamdir = PamDir(tmp_path / "pam.d", harness)
        args = f"socket={socket} daemon_user={DAEMON_USER}"
        lines = [l for l in Path("/etc/pam.d/apikey").read_text().splitlines()
                 if l.strip() and not l.startswith("#")]
        assert all(l.split()[-1] == "pam_apikey.so" for l in lines), lines
        pamdir.write(service_name, "".join(f"{l} {args}\n" for l in lines))
        res = pamdir.run(service_name, ALICE, answers=[token], acct=True)
        assert res.code == PAM_SUCCESS, res
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0, (tmp_path / "apikeyd.log").read_text()
        proc = None
        assert (STATE_DIR / "keys.mdb").exists(), sorted(os.listdir(STATE_DIR))

        # -- purge: nothing left but the kept accounts.
        r = _apt("purge", *PACKAGES)
        assert r.returncode == 0, f"apt-get purge exited {r.returncode}:\n{r.stdout}{r.stderr}"
        for pkg in PACKAGES:
            assert _dpkg_status(pkg) == "not-installed", pkg
        left = sorted(p for p in _snapshot() - before
                      if p not in ACCOUNT_FILES and (not os.path.isdir(p) or "apikey" in p))
        assert not left, f"apt-get purge left: {left}"
        assert not STATE_DIR.exists(), "the purge kept the keystore"
        assert _account("user", DAEMON_USER) and _account("group", ADMIN_GROUP), \
            "the purge removed the system user or the admin group, which Debian keeps"
    finally:
        if proc is not None:
            stop_pid(proc)
        installed = [p for p in PACKAGES if _dpkg_status(p) != "not-installed"]
        if installed:
            _run(["dpkg", "--purge", *installed], env=dict(ENV, DEBIAN_FRONTEND="noninteractive"))
        shutil.rmtree(socket_dir, ignore_errors=True)
        # Absent before (see _preflight): whatever is there now is this test's.
        shutil.rmtree(STATE_DIR, ignore_errors=True)
        if accounts_before[("user", DAEMON_USER)] is False and _account("user", DAEMON_USER):
            _run(["userdel", DAEMON_USER])
        for name in (DAEMON_USER, ADMIN_GROUP):
            if accounts_before[("group", name)] is False and _account("group", name):
                _run(["groupdel", name])
