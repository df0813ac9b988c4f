# SPDX-License-Identifier: MIT
"""Helpers for the installation tests: `make install` into a directory of
the test's own, the list of files the Makefile promises, unit files read the
way systemd reads them, options parsed from the programs' --help, and man
pages read both as man(1) renders them and as their roff source structures
them (sections, .TP entries and what is nested in them)."""

import os
import re
import shlex
import subprocess
from pathlib import Path

from conftest import REPO
from pam_fixtures import BUILD

APIKEYCTL_BUILT = BUILD / "apikeyctl"
APIKEYD_BUILT = BUILD / "apikeyd"
PAM_OPTIONS_SOURCE = REPO / "pam_apikey" / "options.c"
CONF_EXAMPLE = REPO / "apikeyd" / "apikeyd.conf.example"
FAIL2BAN = REPO / "contrib" / "fail2ban"
COCKPIT_PAGE = REPO / "cockpit"
README = REPO / "README.md"
MAN_PAGES = {
    "apikeyd.8": REPO / "apikeyd" / "apikeyd.8",
    "apikeyctl.1": REPO / "apikeyd" / "ctl" / "apikeyctl.1",
    "pam_apikey.8": REPO / "pam_apikey" / "pam_apikey.8",
}
DEFAULT_PREFIX = "/usr/local"

# Variables of the Makefile a caller's environment must not slip into a
# `make install` (make takes environment variables as defaults for ?=).
MAKE_VARIABLES = ("PREFIX", "DESTDIR", "BINDIR", "SBINDIR", "BUILD", "PAMDIR", "SYSCONFDIR",
                  "DATADIR", "MANDIR", "UNITDIR", "SYSUSERSDIR", "COMPLETIONDIR", "MAKEFLAGS",
                  "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "CFLAGS", "LDFLAGS", "CPPFLAGS",
                  "WERROR", "CC", "CATALOGDIR", "COCKPITDIR")


def clean_env(extra=None, drop=()):
    env = {k: v for k, v in os.environ.items()
           if k not in MAKE_VARIABLES and k not in drop and not k.startswith("LD_")}
    env["LC_ALL"] = "C"
    env.update(extra or {})
    return env


def make(*args, timeout=600):
    """make -C REPO BUILD=<the build under test> ARGS...; the completed process."""
    argv = ["make", "--no-print-directory", "-C", str(REPO), f"BUILD={BUILD}"] + list(args)
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout, env=clean_env())
    r.argv = argv
    return r


def describe(r):
    return (f"{' '.join(r.argv)} exited {r.returncode}\n--- stdout\n{r.stdout[-4000:]}"
            f"--- stderr\n{r.stderr[-4000:]}")


def pam_moduledir():
    """Where libpam loads modules named without a path, the way the Makefile
    finds it: pkg-config's libdir of pam, plus /security."""
    r = subprocess.run(["pkg-config", "--variable=libdir", "pam"], capture_output=True,
                       text=True, timeout=30)
    libdir = r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else \
        "/lib/x86_64-linux-gnu"
    return f"{libdir}/security"


def systemd_dir(prefix, variable, below_prefix):
    """Where `make install` puts units or sysusers entries, the way the
    Makefile finds it: systemd's own directory (its pkg-config `variable`)
    when `prefix` is systemd's prefix, else `below_prefix` under `prefix`."""
    def pc(var):
        r = subprocess.run(["pkg-config", f"--variable={var}", "systemd"], capture_output=True,
                           text=True, timeout=30)
        return r.stdout.strip() if r.returncode == 0 else ""
    if prefix == pc("prefix") and pc(variable):
        return pc(variable)
    return f"{prefix}/{below_prefix}"


def expected_files(prefix=DEFAULT_PREFIX):
    """{absolute installed path: (mode, source)} for `make install` with
    this PREFIX and the default SYSCONFDIR.  `source` is the file whose bytes
    it must hold, or None when it is generated."""
    p = prefix.rstrip("/")
    share = f"{p}/share"
    units = systemd_dir(p, "systemdsystemunitdir", "lib/systemd/system")
    sysusers = systemd_dir(p, "sysusersdir", "lib/sysusers.d")
    catalogs = systemd_dir(p, "catalogdir", "lib/systemd/catalog")
    return {
        f"{p}/sbin/apikeyd": (0o755, APIKEYD_BUILT),
        f"{p}/bin/apikeyctl": (0o755, APIKEYCTL_BUILT),
        f"{pam_moduledir()}/pam_apikey.so": (0o644, BUILD / "pam_apikey.so"),
        f"{units}/apikeyd.socket": (0o644, REPO / "systemd" / "apikeyd.socket"),
        f"{units}/apikeyd.service": (0o644, None),
        f"{sysusers}/apikeyd.conf": (0o644, REPO / "systemd" / "apikeyd.sysusers"),
        f"{catalogs}/apikeyd.catalog": (0o644, REPO / "systemd" / "apikeyd.catalog"),
        f"{share}/man/man1/apikeyctl.1": (0o644, BUILD / "man" / "apikeyctl.1"),
        f"{share}/man/man8/apikeyd.8": (0o644, BUILD / "man" / "apikeyd.8"),
        f"{share}/man/man8/pam_apikey.8": (0o644, BUILD / "man" / "pam_apikey.8"),
        f"{share}/bash-completion/completions/apikeyctl":
            (0o644, REPO / "apikeyd" / "ctl" / "apikeyctl.bash-completion"),
        f"{share}/apikeyd/io.apikeyd.Keys.varlink":
            (0o644, REPO / "apikeyd" / "io.apikeyd.Keys.varlink"),
        f"{share}/apikeyd/apikeyd.conf.example": (0o644, CONF_EXAMPLE),
        **{f"{share}/apikeyd/fail2ban/{f.relative_to(FAIL2BAN)}": (0o644, f)
           for f in FAIL2BAN.glob("*/*.conf")},
        **{f"{share}/cockpit/apikeys/{f.name}": (0o644, f) for f in COCKPIT_PAGE.iterdir()},
        "/etc/pam.d/apikey": (0o644, REPO / "systemd" / "pam.d" / "apikey"),
    }


# Left in place by `make uninstall`, as it says: a PAM service may still
# include the snippet.
UNINSTALL_KEEPS = {"/etc/pam.d/apikey"}


def expected_service_text(prefix=DEFAULT_PREFIX):
    text = (REPO / "systemd" / "apikeyd.service.in").read_text()
    return text.replace("@SBINDIR@", f"{prefix.rstrip('/')}/sbin")


def tree(root):
    """{"/relative/path": mode} of every file (not directory) below root,
    and the list of anything that is neither a regular file nor a directory."""
    files, odd = {}, []
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames:
            path = Path(dirpath) / name
            st = path.lstat()
            rel = "/" + str(path.relative_to(root))
            if not path.is_file() or path.is_symlink():
                odd.append(rel)
            files[rel] = st.st_mode & 0o7777
    return files, odd


def config_from_example(text):
    """The example config made real: the leading '#' of each `#key = value`
    line removed; everything else kept as it is."""
    return re.sub(r"(?m)^#([a-z_]+ = )", r"\1", text)


def example_keys(text=None):
    """{key: default} of the example config's `#key = value` lines."""
    text = CONF_EXAMPLE.read_text() if text is None else text
    return dict(re.findall(r"(?m)^#([a-z_]+) = (.*?)\s*$", text))


# ---------------------------------------------------------------- unit files


def read_unit(path):
    """{section: {key: [values in order]}} of a unit file, with systemd's
    comment and continuation-line rules."""
    sections, current = {}, None
    lines = Path(path).read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        if not line or line[0] in "#;":
            continue
        m = re.fullmatch(r"\[([^\]]+)\]", line)
        if m:
            current = sections.setdefault(m.group(1), {})
            continue
        assert current is not None and "=" in line, f"{path}: cannot read {line!r}"
        key, value = (s.strip() for s in line.split("=", 1))
        current.setdefault(key, []).append(value)
    return sections


def unit_value(unit, section, key, default=None):
    values = unit.get(section, {}).get(key)
    if not values:
        return default
    assert len(values) == 1, f"{key}= is set {len(values)} times in [{section}]"
    return values[0]


def exec_argv(value):
    """The argv of an ExecStart= line that has no special prefix."""
    assert value and value[0] not in "-@:+!", f"ExecStart={value}: prefixes are not simulated"
    argv = shlex.split(value)
    assert argv and argv[0].startswith("/"), f"ExecStart={value}: not an absolute path"
    return argv


# ---------------------------------------------------------------- --help


def help_sections(text):
    """{header: [lines]} of a --help text: a header is a line at column 0
    ending with ':' ("Options:", "Commands:"); its lines run to a blank
    line."""
    out, current = {}, None
    for line in text.splitlines():
        if not line.strip():
            current = None
        elif not line[0].isspace() and line.endswith(":"):
            current = out.setdefault(line[:-1], [])
        elif current is not None:
            current.append(line)
    return out


OPTION_RE = re.compile(r"(?<![\w-])(--?[A-Za-z0-9][\w-]*)")


def help_options(text, header="Options"):
    """Options (long and short) that lines of the `header` section start
    with, e.g. "-c, --config FILE   read ..." -> {"-c", "--config"}; with
    header=None, every indented line of the text."""
    opts = set()
    lines = [l for l in text.splitlines() if l[:1].isspace()] if header is None else \
        help_sections(text).get(header, [])
    for line in lines:
        spec = line.strip().split("  ")[0]
        if spec.startswith("-"):
            opts.update(OPTION_RE.findall(spec))
    return opts


def help_commands(text):
    return [line.split()[0] for line in help_sections(text).get("Commands", [])
            if line.startswith("  ") and not line.startswith("   ")]


def program_help(*argv):
    r = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL, env=clean_env())
    assert r.returncode == 0, f"{argv}: exit {r.returncode}: {r.stderr}"
    assert r.stdout.strip(), f"{argv} printed nothing"
    return r.stdout


def pam_module_options():
    """The options pam_apikey accepts: the names apply_option() compares
    with IS("..."), and conf=, which parse_options() handles itself."""
    src = PAM_OPTIONS_SOURCE.read_text()
    m = re.search(r"\bapply_option\s*\([^)]*\)\s*\{(.*?)\n\}", src, re.S)
    assert m, "apply_option() not found in pam_apikey/options.c"
    names = set(re.findall(r'\bIS\("([^"]+)"\)', m.group(1)))
    assert names, "no IS(\"...\") in apply_option()"
    m = re.search(r"\bparse_options\s*\([^)]*\)\s*\{(.*?)\n\}", src, re.S)
    assert m, "parse_options() not found in pam_apikey/options.c"
    names |= {s.rstrip("=") for s in re.findall(r'strncmp\([^,]+,\s*"(\w+=)"', m.group(1))}
    return names


# ---------------------------------------------------------------- man pages


def render_man(path, width=80, locale="C", hyphenate=True):
    """`man --warnings -l PATH` as a reader's terminal of `width` columns
    would show it (plain text: stdout is not a terminal)."""
    argv = ["man", "--warnings", "-l", str(path)]
    if not hyphenate:
        argv[1:1] = ["--no-hyphenation", "--no-justification"]
    env = clean_env({"MANWIDTH": str(width), "LC_ALL": locale},
                    drop=("MANOPT", "MANPAGER", "PAGER", "MAN_KEEP_FORMATTING", "MANROFFOPT",
                          "GROFF_SGR", "GROFF_NO_SGR"))
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env,
                          stdin=subprocess.DEVNULL)


_FONT_MACROS = {"B", "I", "SM", "SB"}
_ALTERNATING = {"BR", "BI", "IB", "IR", "RB", "RI"}
_SPECIAL = {"dq": '"', "lq": '"', "rq": '"', "aq": "'", "em": "--", "en": "-", "mi": "-",
            "hy": "-", "bu": "*", "co": "(C)"}


def _unescape(s):
    s = re.split(r'\\"', s, maxsplit=1)[0]

    def repl(m):
        e = m.group(1)
        if e.startswith("f"):
            return ""
        if e.startswith("("):
            return _SPECIAL.get(e[1:], "?")
        if e.startswith("["):
            return _SPECIAL.get(e[1:-1], "?")
        return {"-": "-", "%": "", "&": "", "e": "\\", " ": " ", "~": " ", "|": "",
                "^": "", "c": ""}.get(e, e)

    return re.sub(r"\\(f(?:\[[^\]]*\]|\(..|.)|\(..|\[[^\]]*\]|.)", repl, s)


def _macro_args(s):
    args, cur, quoted, i, started = [], "", False, 0, False
    while i < len(s):
        c = s[i]
        if quoted:
            if c == '"' and s[i + 1:i + 2] == '"':
                cur += '"'
                i += 1
            elif c == '"':
                quoted = False
            else:
                cur += c
        elif c == '"' and not started:
            quoted, started = True, True
        elif c in " \t":
            if started:
                args.append(cur)
                cur, started = "", False
        else:
            cur += c
            started = True
            if c == "\\" and i + 1 < len(s):
                cur += s[i + 1]
                i += 1
        i += 1
    if started:
        args.append(cur)
    return args


def roff_text(line):
    """The text a roff line contributes (fonts dropped), '' for requests."""
    if line.startswith((".", "'")):
        m = re.match(r"[.']\s*(\w+)\s*(.*)", line)
        if not m:
            return ""
        name, rest = m.groups()
        args = _macro_args(rest)
        if name in _ALTERNATING:
            return _unescape("".join(args))
        if name in _FONT_MACROS:
            return _unescape(" ".join(args))
        if name == "OP":
            return "[" + _unescape(" ".join(args)) + "]"
        return ""
    return _unescape(line)


class ManEntry:
    def __init__(self, section, depth, tag):
        self.section, self.depth, self.tag = section, depth, tag
        self.body = []

    @property
    def text(self):
        return " ".join([self.tag] + self.body)

    def __repr__(self):
        return f"<{self.section} depth {self.depth}: {self.tag!r}>"


class ManPage:
    """The structure of a man page's roff source: its sections' text and
    its .TP entries, each with its tag and the text that belongs to it (its
    paragraph, .IP continuations and any entries nested with .RS/.RE)."""

    def __init__(self, path):
        self.path = Path(path)
        self.sections = {}
        self.entries = []
        section, depth, want_tag, open_entries = None, 0, False, []
        for raw in self.path.read_text().splitlines():
            if raw.startswith((".\\\"", "'\\\"")) or raw.strip() in (".", ""):
                continue
            req = re.match(r"[.']\s*(\w+)\s*(.*)", raw)
            name = req.group(1) if req else None
            if name in ("SH", "SS"):
                if name == "SH":
                    section = " ".join(_macro_args(req.group(2)))
                    self.sections[section] = []
                    depth, want_tag, open_entries = 0, False, []
                continue
            if name == "RS":
                depth += 1
                continue
            if name == "RE":
                depth = max(0, depth - 1)
                open_entries = [e for e in open_entries if e.depth <= depth]
                continue
            if name == "TP":
                want_tag = True
                open_entries = [e for e in open_entries if e.depth < depth]
                continue
            if name in ("PP", "P", "LP") and depth == 0:
                open_entries = []
                continue
            text = roff_text(raw).strip()
            if not text:
                continue
            if want_tag:
                entry = ManEntry(section, depth, text)
                self.entries.append(entry)
                want_tag = False
                for e in open_entries:
                    e.body.append(text)
                open_entries.append(entry)
            else:
                for e in open_entries:
                    e.body.append(text)
            if section is not None:
                self.sections[section].append(text)

    def section_text(self, name):
        assert name in self.sections, f"{self.path.name} has no section {name}: " \
                                      f"{sorted(self.sections)}"
        return " ".join(self.sections[name])

    def tags(self, section, depth=0):
        return [e for e in self.entries if e.section == section and e.depth == depth]

    def tag_options(self, section, depth=0):
        """Options named by the tags of a section's entries."""
        opts = set()
        for e in self.tags(section, depth):
            opts.update(OPTION_RE.findall(e.tag))
        return opts


def words_of(text):
    """Whitespace-separated words with surrounding punctuation removed."""
    return {w.strip(".,;:()[]\"'") for w in text.split()} | set(text.split())


def hyphenated_splits(rendered):
    """Words man(1) broke across two lines with a hyphen: the joined word
    for every line ending in a letter or digit followed by '-'."""
    lines = rendered.splitlines()
    out = []
    for a, b in zip(lines, lines[1:]):
        m = re.search(r"(\S*[\w\[])-$", a)
        if m and b.strip():
            out.append((m.group(1) + b.split()[0], a.strip(), b.strip()))
    return out
