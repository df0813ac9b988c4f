# SPDX-License-Identifier: MIT
"""The installation, as a packager and a new administrator meet it.

- `make install DESTDIR=...` lays out exactly the promised files, with their
  modes and contents, the unit naming the installed daemon; `make uninstall`
  takes them away again, all but the PAM snippet it says it keeps.
- The daemon and apikeyctl as installed work together, with the installed
  example config made real.
- The man pages render cleanly and document every option the programs and
  the PAM module accept, and every config key.
- The README's "Install and use" steps, for real on this machine (as root):
  make install, the units checked by systemd-analyze, the socket activation
  systemd would do (simulated without PID-1 systemd from the installed
  units), a key created with the installed apikeyctl, and an SSH login with
  it through the installed PAM snippet -- then all of it undone.
"""

import fcntl
import grp
import hashlib
import json
import os
import pwd
import re
import resource
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import (IFACE, REPO, TOKEN_RE, Daemon, NotifyListener, Varlink,
                      _short_socket_dir, split_token)
from install_fixtures import (APIKEYCTL_BUILT, APIKEYD_BUILT, CONF_EXAMPLE, DEFAULT_PREFIX,
                              MAN_PAGES, README, UNINSTALL_KEEPS, ManPage, clean_env,
                              config_from_example, describe, example_keys, exec_argv,
                              expected_files, expected_service_text, help_commands,
                              help_options, hyphenated_splits, make, pam_module_options,
                              pam_moduledir, program_help, read_unit, render_man,
                              systemd_dir, tree, unit_value)
from pam_fixtures import free_port, need_root, need_tool, stop_pid, wait_port


def _require_built():
    for f in (APIKEYD_BUILT, APIKEYCTL_BUILT):
        if not f.is_file():
            pytest.fail(f"{f} is missing: build it with `make` first", pytrace=False)


def _rel(root, path):
    return Path(root) / path.lstrip("/")


# ---------------------------------------------------------------- make install DESTDIR=


def _check_layout(dest, prefix):
    """The installed tree below `dest` is exactly what `make install` promises."""
    expected = expected_files(prefix)
    files, odd = tree(dest)
    assert not odd, f"not regular files: {odd}"
    missing = sorted(set(expected) - set(files))
    extra = sorted(set(files) - set(expected))
    assert not missing and not extra, f"missing: {missing}\nunexpected: {extra}"
    modes = {p: oct(m) for p, m in files.items() if m != expected[p][0]}
    assert not modes, f"wrong modes (binaries 0755, the rest 0644): {modes}"
    for dirpath, _, _ in os.walk(dest):
        if Path(dirpath) != Path(dest):
            mode = os.stat(dirpath).st_mode & 0o7777
            assert mode == 0o755, f"{dirpath}: directory mode {oct(mode)}"
    for path, (_, source) in expected.items():
        if source is not None:
            assert _rel(dest, path).read_bytes() == source.read_bytes(), \
                f"{path} differs from {source}"
        assert str(dest).encode() not in _rel(dest, path).read_bytes(), \
            f"{path} names the staging directory {dest}"
    # The PAM module goes where libpam finds modules named without a path.
    assert Path(pam_moduledir(), "pam_unix.so").exists(), \
        f"{pam_moduledir()} is not libpam's module directory (no pam_unix.so there)"


@pytest.mark.parametrize("prefix", [None, "/usr"], ids=["default-prefix", "prefix-usr"])
def test_make_install_destdir_layout_and_uninstall(tmp_path, prefix):
    """The full list of installed files, their modes and contents, the unit's
    ExecStart, `make uninstall` leaving only the PAM snippet, and a local edit
    of the snippet surviving a reinstall."""
    need_tool("make", "pkg-config")
    dest = tmp_path / "dest"
    args = [f"DESTDIR={dest}"] + ([f"PREFIX={prefix}"] if prefix else [])
    effective = prefix or DEFAULT_PREFIX
    r = make("install", *args)
    assert r.returncode == 0, describe(r)
    # DESTDIR is a staging area: no account is created for it.
    assert "systemd-sysusers" not in r.stdout, r.stdout

    _check_layout(dest, effective)
    service_path = _rel(dest, systemd_dir(effective, "systemdsystemunitdir", "lib/systemd/system")
                        + "/apikeyd.service")
    unit = read_unit(service_path)
    assert unit_value(unit, "Service", "ExecStart") == f"{effective}/sbin/apikeyd", \
        f"{service_path}: ExecStart does not name the installed daemon"
    assert service_path.read_text() == expected_service_text(effective)
    assert not re.search(r"@[A-Z_]+@", service_path.read_text()), "a placeholder is left"

    r = make("uninstall", *args)
    assert r.returncode == 0, describe(r)
    left, _ = tree(dest)
    assert set(left) == UNINSTALL_KEEPS, f"make uninstall left {sorted(left)}"
    assert not _rel(dest, f"{effective}/share/apikeyd").exists()
    assert "kept /etc/pam.d/apikey" in r.stdout, r.stdout

    snippet = _rel(dest, "/etc/pam.d/apikey")
    edited = snippet.read_text() + "# a local edit\n"
    snippet.write_text(edited)
    r = make("install", *args)
    assert r.returncode == 0, describe(r)
    assert snippet.read_text() == edited, "make install replaced a locally edited snippet"
    r = make("uninstall", *args)
    assert r.returncode == 0, describe(r)
    assert set(tree(dest)[0]) == UNINSTALL_KEEPS


# ---------------------------------------------------------------- the staged programs


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A `make install DESTDIR=` tree with the default PREFIX."""
    need_tool("make", "pkg-config")
    dest = tmp_path_factory.mktemp("staged")
    r = make("install", f"DESTDIR={dest}")
    assert r.returncode == 0, describe(r)
    return dest


class StagedDaemon(Daemon):
    def __init__(self, binary, *args, **kw):
        self.binary = binary
        super().__init__(*args, **kw)

    def argv(self):
        return [str(self.binary), "--config", str(self.config_file), "--state-dir",
                str(self.state_dir), "--socket", self.socket]


def test_staged_daemon_and_apikeyctl_with_the_example_config(staged, tmp_path):
    """The installed daemon, with the installed example config uncommented,
    answers GetInfo; the installed apikeyctl creates a key and verifies it."""
    sbin = _rel(staged, f"{DEFAULT_PREFIX}/sbin/apikeyd")
    ctl = _rel(staged, f"{DEFAULT_PREFIX}/bin/apikeyctl")
    example = _rel(staged, f"{DEFAULT_PREFIX}/share/apikeyd/apikeyd.conf.example").read_text()
    config = config_from_example(example)
    settings = re.findall(r"(?m)^([a-z_]+) = ", config)
    assert settings and settings == list(example_keys(example)), config

    d = StagedDaemon(sbin, tmp_path, 0, config_text=config)
    try:
        d.start()
        with Varlink(d.socket) as c:
            info = c.ok("org.varlink.service.GetInfo")
        version = subprocess.run([str(sbin), "--version"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout
        assert version == f"apikeyd {info['version']}\n", (version, info)
        assert IFACE in info["interfaces"], info

        def run_ctl(*args, stdin=None):
            return subprocess.run([str(ctl), "--socket", d.socket] + list(args),
                                  input=stdin, capture_output=True, text=True, timeout=30,
                                  env=clean_env(drop=("APIKEYD_SOCKET",)))

        r = run_ctl("create", "staged-check", "--scope", "billing-api", "--expires", "1d")
        assert r.returncode == 0, r
        token = r.stdout.strip()
        assert TOKEN_RE.fullmatch(token) and r.stdout == token + "\n", r.stdout
        assert token.startswith(example_keys(example)["token_prefix"] + "_")
        r = run_ctl("verify", "--service", "billing-api", stdin=token + "\n")
        assert (r.returncode, r.stdout) == (0, "VALID\n"), r
        r = run_ctl("verify", "--service", "another-api", stdin=token + "\n")
        assert (r.returncode, r.stdout) == (5, "OUT_OF_SCOPE\n"), r
        r = run_ctl("--json", "status")
        assert r.returncode == 0, r
        status = json.loads(r.stdout)
        assert status["state_dir"] == str(d.state_dir) and status["keys"]["enabled"] == 1, status
        d.stop()
    finally:
        problem = d.cleanup()
    assert problem is None, problem


# ---------------------------------------------------------------- man pages


@pytest.mark.parametrize("page", sorted(MAN_PAGES))
def test_man_page_renders_without_warnings(page):
    need_tool("man")
    for locale in ("C", "C.UTF-8"):
        r = render_man(MAN_PAGES[page], locale=locale)
        assert r.returncode == 0 and r.stderr == "", \
            f"MANWIDTH=80 LC_ALL={locale} man --warnings -l {page}: exit {r.returncode}\n" \
            f"{r.stderr}"
        name = page.rsplit(".", 1)[0].upper()
        assert r.stdout.startswith(f"{name}("), r.stdout[:200]


def test_apikeyd_man_page_lists_every_option():
    _require_built()
    opts = help_options(program_help(APIKEYD_BUILT, "--help"), header=None)
    assert {"--config", "--help"} <= opts, opts
    documented = ManPage(MAN_PAGES["apikeyd.8"]).tag_options("OPTIONS")
    assert not opts - documented, f"apikeyd.8 lacks {sorted(opts - documented)}"
    assert not documented - opts, f"apikeyd --help lacks {sorted(documented - opts)}"


def test_apikeyctl_man_page_lists_every_option_and_command():
    _require_built()
    man = ManPage(MAN_PAGES["apikeyctl.1"])
    main_help = program_help(APIKEYCTL_BUILT, "--help")
    opts = help_options(main_help)
    assert {"--socket", "--json", "--help"} <= opts, opts
    documented = man.tag_options("OPTIONS")
    assert not opts - documented, f"apikeyctl.1 OPTIONS lacks {sorted(opts - documented)}"
    assert not documented - opts, f"apikeyctl --help lacks {sorted(documented - opts)}"

    commands = help_commands(main_help)
    assert "create" in commands and "revoke" in commands, commands
    entries = {}
    for e in man.tags("COMMANDS"):
        entries.setdefault(e.tag.split()[0], []).append(e)
    missing = [c for c in commands if c not in entries]
    assert not missing, f"apikeyctl.1 COMMANDS lacks {missing}"
    # A command the page documents is one apikeyctl knows; `help` is, as
    # the page says, the same as --help.
    for c in entries:
        if c == "help":
            assert program_help(APIKEYCTL_BUILT, "help") == main_help
            assert program_help(APIKEYCTL_BUILT, "help", "create") == \
                program_help(APIKEYCTL_BUILT, "create", "--help")
        else:
            program_help(APIKEYCTL_BUILT, c, "--help")

    section = man.section_text("COMMANDS")
    problems = []
    for c in commands:
        cmd_opts = help_options(program_help(APIKEYCTL_BUILT, c, "--help"))
        text = " ".join(e.text for e in entries[c])
        words = {w for w in re.findall(r"--?[\w-]+", text)}
        for o in sorted(cmd_opts):
            if o.startswith("--") and o not in words:
                problems.append(f"{c}: {o} is not in its entry")
            if not o.startswith("--") and o not in re.findall(r"--?[\w-]+", section):
                problems.append(f"{c}: {o} is nowhere in COMMANDS")
    assert not problems, "apikeyctl.1 lacks options that --help lists:\n" + "\n".join(problems)


def test_pam_apikey_man_page_lists_every_module_option():
    accepted = pam_module_options()
    assert {"socket", "nodelay", "conf"} <= accepted, accepted
    documented = set()
    for e in ManPage(MAN_PAGES["pam_apikey.8"]).tags("OPTIONS"):
        m = re.fullmatch(r"([a-z_]+)(=\S+)?", e.tag)
        assert m, f"pam_apikey.8 OPTIONS: cannot read the tag {e.tag!r}"
        documented.add(m.group(1))
    assert not accepted - documented, f"pam_apikey.8 lacks {sorted(accepted - documented)}"
    assert not documented - accepted, \
        f"pam_apikey.8 documents options the module refuses: {sorted(documented - accepted)}"


def test_apikeyd_man_page_lists_every_config_key_with_its_default():
    keys = example_keys()
    assert len(keys) >= 10, keys
    documented = {}
    for e in ManPage(MAN_PAGES["apikeyd.8"]).tags("CONFIGURATION"):
        m = re.fullmatch(r"([a-z_]+) \((.*)\)", e.tag)
        assert m, f"apikeyd.8 CONFIGURATION: cannot read the tag {e.tag!r}"
        documented[m.group(1)] = m.group(2)
    assert not set(keys) - set(documented), \
        f"apikeyd.8 lacks {sorted(set(keys) - set(documented))}"
    assert not set(documented) - set(keys), \
        f"{CONF_EXAMPLE.name} lacks {sorted(set(documented) - set(keys))}"
    differ = {k: (keys[k], documented[k]) for k in keys if keys[k] != documented[k]}
    assert not differ, f"defaults differ (example, man page): {differ}"


@pytest.mark.parametrize("page", sorted(MAN_PAGES))
def test_man_page_keeps_option_names_whole(page):
    """At 80 columns no option or config key is hyphenated across two lines
    (a reader searching the page for it would not find it there)."""
    need_tool("man")
    _require_built()
    names = set()
    names |= help_options(program_help(APIKEYD_BUILT, "--help"), header=None)
    main_help = program_help(APIKEYCTL_BUILT, "--help")
    names |= help_options(main_help)
    for c in help_commands(main_help):
        names |= help_options(program_help(APIKEYCTL_BUILT, c, "--help"))
    names = {n for n in names if n.startswith("--")}
    names |= set(example_keys()) | {n for n in pam_module_options() if "_" in n}
    r = render_man(MAN_PAGES[page])
    assert r.returncode == 0, r.stderr
    broken = [(joined, a, b) for joined, a, b in hyphenated_splits(r.stdout)
              if any(n in re.findall(r"[\w-]+", joined) for n in names)]
    assert not broken, f"{page} breaks names across lines:\n" + "\n".join(
        f"  {j}:\n    {a}\n    {b}" for j, a, b in broken)


# ---------------------------------------------------------------- the README's steps


def _readme_blocks():
    """The fenced code blocks of the README's "Install and use" section."""
    text = README.read_text()
    m = re.search(r"^## Install and use.*?(?=^## )", text, re.S | re.M)
    assert m, "README.md has no 'Install and use' section"
    return m.group(0), re.findall(r"^```[a-z]*\n(.*?)^```", m.group(0), re.S | re.M)


def _readme_commands(block):
    return [line.split("#", 1)[0].strip() for line in block.splitlines()
            if line.split("#", 1)[0].strip()]


# What the README says, in the order it says it; the test below does each.
README_INSTALL = ["sudo make deps", "make", "sudo make install",
                  "sudo systemctl daemon-reload", "sudo systemctl enable --now apikeyd.socket"]


def test_readme_install_steps_and_snippet_are_the_ones_tested():
    """The README still says what the README test does, and shows the PAM
    snippet that is installed."""
    section, blocks = _readme_blocks()
    assert _readme_commands(blocks[0]) == README_INSTALL, blocks[0]
    snippet = [l for l in (REPO / "systemd" / "pam.d" / "apikey").read_text().splitlines()
               if l.strip() and not l.startswith("#")]
    shown = [b for b in blocks if "pam_apikey.so" in b]
    assert shown and shown[0].splitlines() == snippet, (shown, snippet)
    assert "@include apikey" in [b.strip() for b in blocks], blocks
    sock = read_unit(REPO / "systemd" / "apikeyd.socket")
    assert f"`{unit_value(sock, 'Socket', 'ListenStream')}`" in section


LOCK_DIR = "/run/lock" if os.path.isdir("/run/lock") else "/tmp"
INSTALL_LOCK = os.path.join(LOCK_DIR, "apikeyd-install-tests.lock")
# Shared with the other sshd tests: one sshd test at a time on the machine.
SSHD_LOCK = os.path.join(LOCK_DIR, "apikeyd-pam-tests.sshd.lock")
# What a run changed on the machine, kept until it is undone, so that a run
# that was killed is cleaned up by the next one.
STATE_FILE = Path("/var/tmp/apikeyd-install-test.state.json")

SERVICE = "sshd-apikey-readme"
PAM_SERVICE_FILE = Path("/etc/pam.d") / SERVICE
SERVICE_MARK = "# A test service of apikeyd's installation tests; removed after them."
SSHD = "/usr/sbin/sshd"
USER = "akt-readme"
DAEMON_USER = "apikeyd"
ADMIN_GROUP = "apikey-admin"
# systemd-analyze security --offline=true: 0.7 measured for this unit on
# Debian 12 (systemd 252), 0.5 before CAP_KILL (ending a revoked key's
# sessions) was granted; a small margin above that.
MAX_EXPOSURE = 0.8


def _exists_user(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _exists_group(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def _sha256(path):
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _starttime(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _run(argv, timeout=60, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


class Machine:
    """Every change the README test makes to the machine, recorded (in
    STATE_FILE too) before it is made, and undone by undo()."""

    def __init__(self):
        self.records = []
        self.procs = {}

    def record(self, kind, **data):
        rec = dict(kind=kind, **data)
        self.records.append(rec)
        self.save()
        return rec

    def save(self):
        # /var/tmp is world-writable: never follow or reuse another user's file.
        tmp = STATE_FILE.with_suffix(".tmp")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self.records))
        os.replace(tmp, STATE_FILE)

    def load_leftovers(self):
        """The record of a run that was killed before it undid its changes."""
        try:
            st = os.lstat(STATE_FILE)
        except FileNotFoundError:
            self.records = []
            return
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and not st.st_mode & 0o022, \
            f"{STATE_FILE} is not a file only root can write: not acting on it"
        try:
            self.records = json.loads(STATE_FILE.read_text())
        except ValueError:
            self.records = []

    def of(self, kind):
        return [r for r in self.records if r["kind"] == kind]

    def undo(self):
        """Undo whatever is recorded; the problems met on the way."""
        problems = []
        for r in self.of("proc"):
            proc = self.procs.get(r["pid"])
            if proc is not None:
                stop_pid(proc)
                if r.get("expect_zero") and proc.returncode != 0:
                    problems.append(f"{r['what']} (pid {r['pid']}) exited with "
                                    f"{proc.returncode} on SIGTERM")
            elif _starttime(r["pid"]) == r["start"]:  # left by a killed run
                os.kill(r["pid"], signal.SIGKILL)
        if self.of("install"):
            rec = self.of("install")[0]
            r = make("uninstall")
            if r.returncode != 0:
                problems.append(describe(r))
            hashes = rec.get("hashes") or {}
            for path in rec["files"]:
                if not os.path.lexists(path):
                    continue
                if path not in UNINSTALL_KEEPS and self.of("uninstall-checked"):
                    problems.append(f"make uninstall left {path}")
                if path not in hashes or _sha256(path) == hashes[path]:
                    os.unlink(path)
                else:
                    problems.append(f"{path} changed since the test installed it; left alone")
        for r in self.of("file"):
            p = Path(r["path"])
            if p.is_symlink() or p.is_file():
                if r.get("mark") and r["mark"] not in p.read_text(errors="replace"):
                    problems.append(f"{p} is not the test's any more; left alone")
                else:
                    p.unlink()
        for r in self.of("tree"):
            shutil.rmtree(r["path"], ignore_errors=True)
            if os.path.lexists(r["path"]):
                problems.append(f"could not remove {r['path']}")
        for r in self.of("user"):
            deadline = time.monotonic() + 5
            while _exists_user(r["name"]):
                res = _run(["userdel", r["name"]])
                # 8: a process of the user is still exiting (sshd's session).
                if res.returncode == 8 and time.monotonic() < deadline:
                    time.sleep(0.1)
                elif res.returncode != 0:
                    problems.append(f"userdel {r['name']}: {res.stderr.strip()}")
                    break
        for r in self.of("group"):
            if _exists_group(r["name"]):
                res = _run(["groupdel", r["name"]])
                if res.returncode != 0:
                    problems.append(f"groupdel {r['name']}: {res.stderr.strip()}")
        dirs = sorted({d for r in self.of("dirs") for d in r["paths"]},
                      key=lambda d: d.count("/"), reverse=True)
        for d in dirs:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as e:
                problems.append(f"rmdir {d}: {e}")
        self.records = []
        self.procs = {}
        try:
            STATE_FILE.unlink()
        except FileNotFoundError:
            pass
        return problems


def _lock(path, what, timeout=120):
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                pytest.skip(f"another test run held {what} for {timeout}s")
            time.sleep(0.1)


@pytest.fixture
def machine():
    """The machine, locked for this test; whatever it changed is undone at
    teardown (also after failures)."""
    need_root("installs to /, creates users, runs sshd and the daemon as the README says")
    need_tool("make", "pkg-config", "systemd-analyze", "systemd-socket-activate",
              "systemd-sysusers", "setpriv", "ssh", "sshpass", "ssh-keygen", "useradd",
              "userdel", "groupdel", "timeout")
    if not os.access(SSHD, os.X_OK):
        pytest.skip(f"{SSHD} is not installed (package openssh-server)")
    fds = [_lock(INSTALL_LOCK, "the installation lock")]
    m = Machine()
    try:
        fds.append(_lock(SSHD_LOCK, "the sshd test lock"))
        m.load_leftovers()
        problems = m.undo()  # what a killed run left, known by its record
        assert not problems, f"cleaning up after an earlier run: {problems}"
        yield m
        problems = m.undo()
        assert not problems, "undoing the README steps: " + "\n".join(problems)
    finally:
        for fd in reversed(fds):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _preflight(installed):
    """Skip, naming it, if the machine has anything the test would create."""
    paths = list(installed) + ["/run/apikeyd", "/var/lib/apikeyd", "/etc/apikeyd",
                               str(PAM_SERVICE_FILE)]
    found = [p for p in paths if os.path.lexists(p)]
    found += [f"user {u}" for u in (DAEMON_USER, USER) if _exists_user(u)]
    found += [f"group {g}" for g in (DAEMON_USER, ADMIN_GROUP, USER) if _exists_group(g)]
    if found:
        pytest.skip("the machine has apikeyd things the test would create and must not "
                    f"overwrite: {', '.join(found)}")


def _new_dirs(paths):
    """The directories (and their missing parents) that do not exist yet."""
    out = set()
    for p in paths:
        d = Path(p).parent
        while not d.exists():
            out.add(str(d))
            d = d.parent
    return sorted(out)


def _proc_status(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            fields[k] = v.split()
    return fields


def _ssh_login(port, user, token, command="id"):
    argv = ["timeout", "20", "sshpass", "-e", "-P", "API key", "ssh", "-F", "/dev/null",
            "-p", str(port), "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
            "-o", "PreferredAuthentications=keyboard-interactive",
            f"{user}@127.0.0.1", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env=clean_env({"SSHPASS": token}))


def test_readme_install_and_use_for_real(machine, tmp_path):
    """README "Install and use" on this machine: make install (which creates
    the apikeyd user), the installed units verified and their exposure
    measured, `systemctl enable --now apikeyd.socket` done as systemd would
    from the installed units, `@include apikey` at the top of an sshd PAM
    file, a key from the installed apikeyctl logging in over SSH, and
    refused after `apikeyctl revoke`."""
    _require_built()
    section, blocks = _readme_blocks()
    assert _readme_commands(blocks[0]) == README_INSTALL, \
        "the README's install steps changed: update this test"
    prefix = DEFAULT_PREFIX
    installed = expected_files(prefix)
    _preflight(installed)

    # -- sudo make install  (PREFIX=/usr/local; creates the apikeyd user)
    machine.record("dirs", paths=_new_dirs(installed))
    install_rec = machine.record("install", files=sorted(installed))
    for name in (DAEMON_USER, ADMIN_GROUP):
        machine.record("group", name=name)
    machine.record("user", name=DAEMON_USER)
    r = make("install")
    assert r.returncode == 0, describe(r)
    install_rec["hashes"] = {p: _sha256(p) for p in installed}
    machine.save()
    assert f"systemd-sysusers {prefix}/lib/sysusers.d/apikeyd.conf" in r.stdout, r.stdout
    for path, (mode, _) in installed.items():
        st = os.stat(path)
        assert (st.st_mode & 0o7777, st.st_uid) == (mode, 0), f"{path}: {oct(st.st_mode)}"
    daemon_pw = pwd.getpwnam(DAEMON_USER)
    assert daemon_pw.pw_uid < 1000 and daemon_pw.pw_dir == "/var/lib/apikeyd", daemon_pw
    assert grp.getgrgid(daemon_pw.pw_gid).gr_name == DAEMON_USER
    assert _exists_group(ADMIN_GROUP)
    # What the README points to is where it says, and found by its tools.
    for page, path in (("apikeyd", "man8/apikeyd.8"), ("apikeyctl", "man1/apikeyctl.1"),
                       ("pam_apikey", "man8/pam_apikey.8")):
        r = _run(["man", "-w", page], env=clean_env(drop=("MANPATH", "MANOPT")))
        found = os.path.realpath(r.stdout.strip()) if r.returncode == 0 else None
        assert found == f"{prefix}/share/man/{path}", (page, r.stdout, r.stderr)
    assert f"{prefix}/share/apikeyd/apikeyd.conf.example" in section
    assert os.path.isfile(f"{prefix}/share/apikeyd/apikeyd.conf.example")
    r = _run(["systemd-analyze", "cat-config", "sysusers.d"])
    assert f"# {prefix}/lib/sysusers.d/apikeyd.conf" in r.stdout.splitlines(), \
        "systemd-sysusers at boot would not read the installed sysusers entry"

    # -- sudo systemctl daemon-reload: systemd must find the installed units.
    unitdir = f"{prefix}/lib/systemd/system"
    r = _run(["systemd-analyze", "unit-paths"])
    assert unitdir in r.stdout.split(), f"{unitdir} is not a unit directory: {r.stdout}"
    socket_unit, service_unit = f"{unitdir}/apikeyd.socket", f"{unitdir}/apikeyd.service"
    r = _run(["systemd-analyze", "verify", "--man=no", socket_unit, service_unit])
    assert (r.returncode, r.stdout + r.stderr) == (0, ""), \
        f"systemd-analyze verify: exit {r.returncode}\n{r.stdout}{r.stderr}"
    r = _run(["systemd-analyze", "security", "--offline=true", service_unit])
    m = re.search(r"Overall exposure level for apikeyd\.service: (\d+\.\d+)", r.stdout)
    assert m, f"systemd-analyze security: exit {r.returncode}\n{r.stdout}{r.stderr}"
    exposure = float(m.group(1))
    print(f"systemd-analyze security --offline=true: exposure {exposure}")
    assert exposure <= MAX_EXPOSURE, \
        f"exposure {exposure} > {MAX_EXPOSURE}:\n" + "\n".join(
            l for l in r.stdout.splitlines() if l.startswith("\u2717"))

    # -- sudo systemctl enable --now apikeyd.socket, as systemd would do it.
    sock, svc = read_unit(socket_unit), read_unit(service_unit)
    listen = unit_value(sock, "Socket", "ListenStream")
    socket_mode = int(unit_value(sock, "Socket", "SocketMode", "0666"), 8)
    dir_mode = int(unit_value(sock, "Socket", "DirectoryMode", "0755"), 8)
    assert f"`{listen}`" in section, f"the README does not name the socket {listen}"
    assert unit_value(svc, "Service", "Type") == "notify"
    argv = exec_argv(unit_value(svc, "Service", "ExecStart"))
    assert argv[0] == f"{prefix}/sbin/apikeyd", argv
    user = unit_value(svc, "Service", "User")
    group = unit_value(svc, "Service", "Group", user)
    state_dir = Path("/var/lib") / unit_value(svc, "Service", "StateDirectory")
    state_mode = int(unit_value(svc, "Service", "StateDirectoryMode", "0755"), 8)
    umask = int(unit_value(svc, "Service", "UMask", "0022"), 8)
    assert (user, group) == (DAEMON_USER, DAEMON_USER)
    assert unit_value(svc, "Service", "LimitCORE") == "0"

    machine.record("tree", path=str(Path(listen).parent))
    machine.record("tree", path=str(state_dir))
    os.mkdir(Path(listen).parent, dir_mode)
    os.chmod(Path(listen).parent, dir_mode)
    pw = pwd.getpwnam(user)
    os.mkdir(state_dir, state_mode)
    os.chmod(state_dir, state_mode)
    os.chown(state_dir, pw.pw_uid, grp.getgrnam(group).gr_gid)
    notify_dir = _short_socket_dir()
    machine.record("tree", path=str(notify_dir))
    notify = NotifyListener(notify_dir / "notify")
    os.chmod(notify.path, 0o666)

    def service_limits():
        os.umask(umask)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    log_path = tmp_path / "apikeyd.log"
    activate = ["systemd-socket-activate", "-l", listen,
                "-E", f"NOTIFY_SOCKET={notify.path}", "-E", f"STATE_DIRECTORY={state_dir}",
                "setpriv", f"--reuid={user}", f"--regid={group}", "--init-groups", "--"] + argv
    try:
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(activate, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    close_fds=True, preexec_fn=service_limits,
                                    env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                                                 "/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"})
        machine.procs[proc.pid] = proc
        machine.record("proc", pid=proc.pid, start=_starttime(proc.pid),
                       what="the socket-activated apikeyd", expect_zero=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(listen):
            assert proc.poll() is None and time.monotonic() < deadline, \
                f"systemd-socket-activate did not create {listen}:\n{log_path.read_text()}"
            time.sleep(0.01)
        os.chmod(listen, socket_mode)

        def ctl(*args, stdin=None, as_user=None, groups=None):
            prefix_argv = []
            if as_user:
                prefix_argv = ["setpriv", f"--reuid={as_user}", f"--regid={as_user}",
                               f"--groups={groups}" if groups else "--init-groups", "--"]
            return subprocess.run(prefix_argv + [f"{prefix}/bin/apikeyctl"] + list(args),
                                  input=stdin, capture_output=True, text=True, timeout=30,
                                  env=clean_env(drop=("APIKEYD_SOCKET",)),
                                  stdin=None if stdin else subprocess.DEVNULL)

        # A test user, who will log in with a key; the first connection to
        # the socket is theirs (SocketMode lets every local user in).
        machine.record("user", name=USER)
        machine.record("group", name=USER)
        r = _run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                  "/bin/sh", "--user-group", USER])
        assert r.returncode == 0, r.stderr
        r = ctl("--json", "status", as_user=USER)
        assert r.returncode == 0, f"{r}\n{log_path.read_text()}"
        assert json.loads(r.stdout)["admin"] is False, r.stdout
        notify.wait_for("READY=1")
        # The group make install created is the admins' group by default.
        r = ctl("--json", "status", as_user=USER, groups=ADMIN_GROUP)
        assert r.returncode == 0 and json.loads(r.stdout)["admin"] is True, r
        st = _proc_status(proc.pid)
        assert st["Uid"] == [str(pw.pw_uid)] * 4 and st["Gid"] == [str(pw.pw_gid)] * 4, st
        assert int(st["Umask"][0], 8) == umask, st["Umask"]
        assert os.readlink(f"/proc/{proc.pid}/exe") == argv[0]
        pepper = os.stat(state_dir / "pepper")
        assert (pepper.st_uid, pepper.st_mode & 0o777) == (pw.pw_uid, 0o600)
        assert (state_dir / "keys.mdb").is_file(), sorted(os.listdir(state_dir))

        # -- `@include apikey` at the top of the service's PAM file (here a
        # symlinked sshd's, so that /etc/pam.d/sshd stays as it is).
        include = next(b.strip() for b in blocks if b.strip().startswith("@include"))
        machine.record("file", path=str(PAM_SERVICE_FILE), mark=SERVICE_MARK)
        fd = os.open(PAM_SERVICE_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(f"{include}\n" + Path("/etc/pam.d/sshd").read_text() + f"\n{SERVICE_MARK}\n")
        if not os.path.isdir("/run/sshd"):
            machine.record("dirs", paths=["/run/sshd"])
            os.mkdir("/run/sshd", 0o755)
        host_key = tmp_path / "host_key"
        r = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)])
        assert r.returncode == 0, r.stderr
        machine.record("file", path=str(host_key))
        machine.record("file", path=f"{host_key}.pub")
        sshd_link = tmp_path / SERVICE
        machine.record("file", path=str(sshd_link))
        os.symlink(SSHD, sshd_link)
        port = free_port()
        config = tmp_path / "sshd_config"
        machine.record("file", path=str(config))
        # The README: UsePAM yes and KbdInteractiveAuthentication yes.
        config.write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {tmp_path / 'sshd.pid'}\nUsePAM yes\nKbdInteractiveAuthentication yes\n"
            "PasswordAuthentication no\nPubkeyAuthentication no\nPermitRootLogin no\n"
            "MaxStartups 100\nUseDNS no\nPrintMotd no\nLogLevel VERBOSE\n")
        r = _run([str(sshd_link), "-t", "-f", str(config)])
        assert r.returncode == 0, f"sshd -t: {r.stderr}"
        sshd_log = tmp_path / "sshd.log"
        with open(sshd_log, "ab") as log:
            sshd = subprocess.Popen([str(sshd_link), "-D", "-e", "-f", str(config)],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        machine.procs[sshd.pid] = sshd
        machine.record("proc", pid=sshd.pid, start=_starttime(sshd.pid), what="sshd")
        assert wait_port(port, sshd), f"sshd did not start:\n{sshd_log.read_text()}"

        # -- apikeyctl create ... --scope: a key's scope names PAM services;
        # this sshd's is the symlink's name (the README's /etc/pam.d/sshd
        # would be "sshd").
        r = ctl("create", "laptop", "--owner", USER, "--scope", SERVICE, "--expires", "30d")
        assert r.returncode == 0, f"{r}\n{log_path.read_text()}"
        token = r.stdout.strip()
        assert r.stdout == token + "\n" and TOKEN_RE.fullmatch(token), r.stdout
        key_id = split_token(token)[1]
        r = ctl("list")
        assert r.returncode == 0 and key_id in r.stdout, r

        # -- ssh user@host with the key.  (Debian's session stack writes
        # /run/motd.dynamic: the test's to remove if it was not there.)
        if not os.path.lexists("/run/motd.dynamic"):
            machine.record("file", path="/run/motd.dynamic")
        r = _ssh_login(port, USER, token)
        assert r.returncode == 0, \
            f"login with the key failed: {r}\n--- sshd\n{sshd_log.read_text()}" \
            f"--- apikeyd\n{log_path.read_text()}"
        assert r.stdout.startswith(f"uid={pwd.getpwnam(USER).pw_uid}({USER})"), r.stdout

        # -- apikeyctl revoke ID: refused at the very next attempt.
        r = ctl("revoke", key_id)
        assert r.returncode == 0, r
        r = _ssh_login(port, USER, token)
        assert r.returncode != 0 and "uid=" not in r.stdout, \
            f"a revoked key still logs in: {r}"
        assert re.search(rf"verify refused: REVOKED; key={key_id} user={USER} "
                         rf"service={SERVICE}", log_path.read_text()), log_path.read_text()
        assert sshd.poll() is None, sshd_log.read_text()

        # Stop as systemd would: SIGTERM, STOPPING=1, exit 0.
        stop_pid(proc)
        assert proc.returncode == 0, f"apikeyd exited {proc.returncode}:\n" \
                                     f"{log_path.read_text()}"
        notify.wait_for("STOPPING=1", timeout=2)
    finally:
        notify.close()

    # The end of the README test: everything undone, make uninstall leaving
    # nothing but the snippet it keeps.
    machine.record("uninstall-checked")
    problems = machine.undo()
    assert not problems, "\n".join(problems)
    left = [p for p in list(installed) + [str(state_dir), str(Path(listen).parent),
                                          str(PAM_SERVICE_FILE)] if os.path.lexists(p)]
    assert not left, f"left behind: {left}"
    assert not any(_exists_user(u) for u in (DAEMON_USER, USER))
    assert not any(_exists_group(g) for g in (DAEMON_USER, ADMIN_GROUP, USER))
