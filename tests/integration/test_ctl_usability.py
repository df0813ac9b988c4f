# SPDX-License-Identifier: MIT
"""apikeyctl as a person expects it, against the real daemon: keys named by
id or by name (an ambiguous name refused with its candidates), `list` newest
first or in the --sort order, an empty list that says so, --status in any
case, a table that fits 60 columns (COLUMNS, and a real terminal through
tmux), --json=short|pretty; the bash completion with --opt=value and only
the keys a command can act on; help within 80 columns; the man page's date
and references."""

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from conftest import ALICE, REPO
from test_apikeyctl import (APIKEYCTL, COMPLETION, EXIT_LOCAL, EXIT_OK, EXIT_REFUSED,
                            EXIT_USAGE, MANPAGE, NO_SOCKET, base_env, run_ctl, run_pty)
from test_apikeyctl import ctl, users  # noqa: F401 - fixtures

ID_RE = r"[0-9A-Za-z]{12}"


def ids_in_order(out):
    """The ids that begin the lines of a table, top to bottom."""
    return re.findall(rf"^({ID_RE})  ", out, re.M)


# ---------------------------------------------------------------- keys by name


def test_every_key_command_takes_a_name(ctl):
    key, _ = ctl.create("ci-deploy")
    kid = key["id"]
    # A name that only starts the same is another key's: matched exactly.
    other, _ = ctl.create("ci")
    assert re.search(rf"^ +ID: {kid}$", ctl.ok("show", "ci-deploy").out, re.M)
    assert ctl.json("show", "ci")["id"] == other["id"]
    assert ctl.ok("disable", "ci-deploy").out == f"Disabled key {kid} 'ci-deploy' of root.\n"
    assert ctl.ok("enable", "ci-deploy").out == f"Enabled key {kid} 'ci-deploy' of root.\n"
    assert ctl.json("update", "ci-deploy", "--description", "nightly")["description"] == \
        "nightly"
    assert ctl.ok("revoke", "ci-deploy").out == f"Revoked key {kid} 'ci-deploy' of root.\n"
    assert ctl.json("show", kid)["status"] == "revoked"
    assert ctl.ok("delete", "ci-deploy").out == f"Deleted key {kid}.\n"
    assert ctl.json("show", "ci")["id"] == other["id"]
    # An update renames by --name; the key is still named by its old name.
    assert ctl.json("update", "ci", "--name", "cd")["name"] == "cd"
    assert ctl.json("show", "cd")["id"] == other["id"]


def test_the_question_names_the_key_named_by_name(ctl, apikeyd):
    key, _ = ctl.create("precious")
    for cmd, question in [
            ("revoke", f"Revoke key {key['id']} 'precious' of root? A revoked key never works "
                       "again. [y/N] "),
            ("delete", f"Delete key {key['id']} 'precious' of root? This cannot be undone. "
                       "[y/N] ")]:
        rc, text = run_pty([str(APIKEYCTL), "--socket", ctl.socket, cmd, "precious"],
                           answers=[("[y/N] ", "n\n")])
        assert rc == EXIT_LOCAL and question in text and "Nothing changed." in text, text
    assert apikeyd.client().get(key["id"])["status"] == "enabled"


def test_a_name_several_keys_have_is_refused_with_the_candidates(users, apikeyd):
    root, alice, _, _ = users
    mine, _ = root.create("ci-deploy")
    hers, _ = root.create("ci-deploy", "--owner", ALICE)
    r = root("revoke", "ci-deploy", "--yes", rc=EXIT_USAGE)
    created = {k["id"]: time.strftime("%a %Y-%m-%d %H:%M:%S UTC",
                                      time.strptime(k["created_at"], "%Y-%m-%dT%H:%M:%SZ"))
               for k in (mine, hers)}
    lines = r.err.splitlines()
    assert lines[0] == ("apikeyctl: 2 keys are named 'ci-deploy'; name the one you mean by "
                        "its id:")
    assert lines[1].split() == ["ID", "OWNER", "STATUS", "CREATED"]
    rows = {line.split()[0]: line.split(None, 3)[1:] for line in lines[2:]}
    assert rows == {mine["id"]: ["root", "enabled", created[mine["id"]]],
                    hers["id"]: [ALICE, "enabled", created[hers["id"]]]}, r.err
    assert len(lines) == 4 and r.out == ""
    assert {k["status"] for k in root.json("list")} == {"enabled"}
    # For its owner the name is not ambiguous: she sees her own keys only.
    assert alice.ok("revoke", "ci-deploy").out == \
        f"Revoked key {hers['id']} 'ci-deploy' of {ALICE}.\n"
    assert root.json("show", mine["id"])["status"] == "enabled"


def test_a_name_no_key_has(users):
    root, alice, _, _ = users
    root.create("roots-own")
    r = root("show", "no-such-name", rc=EXIT_REFUSED)
    assert r.err == ("apikeyctl: no key named 'no-such-name' among the keys you may see "
                     "('apikeyctl list' shows them)\n")
    # Another owner's key is not among those alice may see.
    r = alice("delete", "roots-own", "--yes", rc=EXIT_REFUSED)
    assert "no key named 'roots-own' among the keys you may see" in r.err
    assert root.json("show", "roots-own")["name"] == "roots-own"


def test_an_id_shaped_argument_is_an_id(ctl):
    # Names that look like ids are named by id: the shape decides, with no
    # second call.
    key, _ = ctl.create("abcdefghijkl")
    r = ctl("show", "abcdefghijkl", rc=EXIT_REFUSED)
    assert "no such key abcdefghijkl " in r.err and "[io.apikeyd.Keys.NoSuchKey]" in r.err
    assert ctl.json("show", key["id"])["name"] == "abcdefghijkl"


# ---------------------------------------------------------------- list


def test_list_is_newest_first_or_in_the_sort_order(ctl):
    made, tokens = {}, {}
    # Times are in seconds: a second apart, so "newest" means something.
    for i, (name, owner, expires) in enumerate([("bravo", "zed", "2d"), ("alpha", "amy", "10d"),
                                                ("charlie", "max", None)]):
        if i:
            time.sleep(1.05)
        args = ["--owner", owner] + (["--expires", expires] if expires else [])
        key, tokens[name] = ctl.create(name, *args)
        made[name] = key["id"]
    ctl.ok("verify", input=tokens["alpha"] + "\n")

    def order(*args):
        by_id = {v: k for k, v in made.items()}
        table = [by_id[i] for i in ids_in_order(ctl.ok("list", *args,
                                                        env={"COLUMNS": "300"}).out)]
        assert [by_id[i] for i in ctl.ok("list", "-q", *args).out.split()] == table, args
        assert [by_id[k["id"]] for k in ctl.json("list", *args)] == table, args
        return table

    assert order() == ["charlie", "alpha", "bravo"]
    assert order("--sort", "created") == order()
    assert order("--sort", "name") == ["alpha", "bravo", "charlie"]
    assert order("--sort=owner") == ["alpha", "charlie", "bravo"]
    assert order("--sort", "expires") == ["bravo", "alpha", "charlie"]  # never: last
    # The used key, then those never used, newest first.
    assert order("--sort", "last-used") == ["alpha", "charlie", "bravo"]
    assert order("--sort", "NAME") == order("--sort", "name")
    r = run_ctl("list", "--sort", "size", socket=NO_SOCKET, rc=EXIT_USAGE)
    assert r.err.startswith("apikeyctl list: --sort must be created, name, owner, expires or "
                            "last-used, not 'size'\n"), r.err


def test_list_status_in_any_case(ctl):
    on, _ = ctl.create("on")
    off, _ = ctl.create("off")
    ctl.ok("disable", off["id"])
    for status in ("Disabled", "DISABLED", "disabled"):
        assert ctl.ok("list", "-q", "--status", status).out == off["id"] + "\n"
    assert [k["id"] for k in ctl.json("list", "--status", "Enabled")] == [on["id"]]
    r = run_ctl("list", "--status", "Gone", socket=NO_SOCKET, rc=EXIT_USAGE)
    assert "--status must be enabled, disabled, revoked or expired, not 'Gone'" in r.err


def test_an_empty_list_says_so(ctl):
    assert ctl.ok("list").out == "No keys.\n"
    ctl.create("only")
    r = ctl.ok("list", "--status", "revoked")
    assert r.out == "No keys match the filters given.\n" and r.err == ""
    assert ctl.ok("list", "-q", "--status", "revoked").out == ""
    assert ctl.json("list", "--status", "revoked") == []


LONG = [
    ("a-rather-long-key-name-for-the-nightly-database-backup",
     ["--description", "copies every table to the offsite store", "--scope",
      "sshd,sudo,billing-api,reporting", "--permissions", "read,write,delete", "--expires",
      "30d"]),
    ("deploy", ["--owner", "a-long-application-owner-name"]),
    ("x", ["--role", "admin"]),
]


@pytest.fixture
def long_keys(ctl):
    return [ctl.create(name, *args)[0]["id"] for name, args in LONG]


@pytest.mark.parametrize("cols", [60, 44, 20])
def test_list_fits_narrow_widths_without_wrapping(ctl, long_keys, cols):
    out = ctl.ok("list", env={"COLUMNS": str(cols)}).out
    lines = out.splitlines()
    assert len(lines) == 1 + len(long_keys), out  # one line per key: nothing wrapped
    assert all(len(line) <= cols for line in lines), (cols, out)
    assert sorted(ids_in_order(out)) == sorted(long_keys), out
    # Left out first: the last use, the scope, the role, the owner, the expiry.
    assert re.split(r"\s{2,}", lines[0]) == {
        60: ["ID", "NAME / DESCRIPT\u2026", "OWNER", "EXPIRES", "STATUS"],
        44: ["ID", "NAME / DESCRIPTION", "STATUS"],
        20: ["ID", "NAME \u2026"],  # the name is cut rather than the line wrapped
    }[cols], out
    if cols >= 44:
        assert all(re.search(r"  enabled$", line) for line in lines[1:]), out


def test_list_fits_a_60_column_terminal(ctl, long_keys):
    """The real thing: a 60-column terminal (tmux) shows each key on a line of
    its own, and the count below."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    server = f"akt-ctl-{os.getpid()}"
    done = f"/tmp/{server}.done"
    env = base_env()
    env.pop("TMUX", None)
    cmd = (f"{APIKEYCTL} --socket {ctl.socket} list; echo $? > {done}; sleep 30")
    tmux = ["tmux", "-L", server, "-f", "/dev/null"]
    subprocess.run(tmux + ["new-session", "-d", "-x", "60", "-y", "20", "sh", "-c", cmd],
                   check=True, env=env, timeout=10)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(0.05)
        screen = subprocess.run(tmux + ["capture-pane", "-p"], capture_output=True, text=True,
                                env=env, timeout=10).stdout
    finally:
        subprocess.run(tmux + ["kill-server"], env=env, timeout=10)
        rc = open(done).read().strip() if os.path.exists(done) else None
        if os.path.exists(done):
            os.unlink(done)
    assert rc == "0", screen
    lines = [line.rstrip() for line in screen.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    assert lines[-2:] == ["", "3 keys listed."], screen
    table = lines[:-2]
    assert len(table) == 4, screen  # the header and a line per key: nothing wrapped
    assert sorted(ids_in_order("\n".join(table))) == sorted(long_keys), screen
    assert all(len(line) <= 60 for line in table), screen
    assert "\u2026" in screen  # cut, with an ellipsis


def test_json_short_and_pretty(ctl):
    key, _ = ctl.create("j", "--description", "for json")
    pretty = ctl.ok("--json", "list").out
    assert pretty.count("\n") > 3 and pretty.startswith("[\n  {\n")
    assert ctl.ok("--json=pretty", "list").out == pretty
    short = ctl.ok("--json=short", "list").out
    assert short.count("\n") == 1 and short.endswith("}]\n"), short
    assert json.loads(short) == json.loads(pretty)
    # After the command too, and for one key.
    one = ctl.ok("show", key["id"], "--json=short").out
    assert one.count("\n") == 1 and json.loads(one)["description"] == "for json"
    assert ctl.ok("--json", "show", key["id"], "--json=off").out.startswith("         ID: ")
    r = run_ctl("--json=yaml", "list", socket=NO_SOCKET, rc=EXIT_USAGE)
    assert r.err.startswith("apikeyctl: --json must be pretty, short or off, not 'yaml'\n")


# ---------------------------------------------------------------- help, man page


def test_help_names_help_and_fits_80_columns():
    out = run_ctl("--help", rc=EXIT_OK).out
    assert re.search(r"^  help \[COMMAND\] +show this help, or a command's$", out, re.M), out
    assert run_ctl("help", "--help", rc=EXIT_OK).out.startswith(
        "Usage: apikeyctl [GLOBAL OPTIONS] help [COMMAND]\n")
    texts = {"--help": out}
    for cmd in re.findall(r"^  ([a-z][a-z-]+)\b", out.split("Options:")[0], re.M):
        texts[cmd] = run_ctl(cmd, "--help", rc=EXIT_OK).out
    assert len(texts) >= 15, texts.keys()
    wide = [(k, line) for k, text in texts.items() for line in text.splitlines()
            if len(line) > 80]
    assert not wide, wide


def test_man_page_date_parses():
    th = next(line for line in MANPAGE.read_text().splitlines() if line.startswith(".TH "))
    date = re.findall(r'"[^"]*"|\S+', th)[3].strip('"')
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", date), th
    r = subprocess.run(["date", "-u", "-d", date, "+%F"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0 and r.stdout.strip() == date, (th, r.stderr)


def test_man_page_refers_only_to_pages_that_exist():
    if shutil.which("man") is None:
        pytest.skip("man is not installed")
    text = MANPAGE.read_text()
    refs = set(re.findall(r"^\.BR ([\w.-]+) \((\d)\)", text, re.M))
    refs |= set(re.findall(r"\\fB([\w.-]+)\\fR\((\d)\)", text))
    assert ("apikeyd", "8") in refs, refs
    ours = {"apikeyd", "apikeyctl", "pam_apikey"}
    missing = [f"{name}({sec})" for name, sec in sorted(refs) if name not in ours and
               subprocess.run(["man", "-w", f"{name}.{sec}"], capture_output=True,
                              timeout=30).returncode != 0]
    assert not missing, f"apikeyctl.1 refers to pages this system lacks: {missing}"


# ---------------------------------------------------------------- bash completion


PACKAGE = "/usr/share/bash-completion/bash_completion"


@pytest.fixture(params=["bare", "bash-completion"])
def package(request):
    """The completion is used with and without the bash-completion package
    (which gives it _init_completion); the latter when it is installed."""
    if request.param == "bash-completion" and not os.path.exists(PACKAGE):
        pytest.skip(f"bash-completion is not installed ({PACKAGE})")
    return request.param == "bash-completion"


def complete_line(line, with_package):
    """What the completion offers at the end of `line`, with COMP_WORDS split
    as bash splits it: at blanks, and around each '=' (COMP_WORDBREAKS);
    with_package: after sourcing bash-completion's bash_completion."""
    words = []
    if line.startswith("apikeyctl "):
        line = f"{APIKEYCTL} " + line[len("apikeyctl "):]
    for w in line.split(" "):
        parts = re.split(r"(=)", w)
        words += [p for p in parts if p != ""] or [""]
    script = ""
    if with_package:
        script += f"source {PACKAGE}\n"
    script += f"source {COMPLETION}\n"
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
    qline = "'" + line.replace("'", "'\\''") + "'"
    script += (f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
               f"COMP_LINE={qline}; COMP_POINT=${{#COMP_LINE}}\n"
               "_apikeyctl 2>/dev/null; printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True,
                       text=True, env=base_env(), timeout=30)
    assert r.returncode == 0, r.stderr
    return sorted(w for w in r.stdout.splitlines() if w)


def test_completion_takes_option_values_after_an_equals_sign(ctl, package):
    def complete(line):
        return complete_line(line, package)

    on, _ = ctl.create("on")
    gone, _ = ctl.create("gone")
    ctl.ok("revoke", gone["id"])
    both = sorted([on["id"], gone["id"]])
    assert complete(f"apikeyctl --socket={ctl.socket} show ") == both
    assert complete(f"apikeyctl --socket {ctl.socket} show ") == both
    assert {"--name", "--sort"} <= set(complete(f"apikeyctl --socket={ctl.socket} list --"))
    assert complete("apikeyctl list --status=dis") == ["disabled"]
    assert complete("apikeyctl list --sort=") == ["created", "expires", "last-used", "name",
                                                  "owner"]
    assert complete("apikeyctl list --sort l") == ["last-used"]
    assert complete("apikeyctl --json=") == ["off", "pretty", "short"]
    assert complete("apikeyctl --js") == ["--json", "--json="]
    assert complete("apikeyctl create x --permissions=read,w") == ["read,write"]
    assert complete(f"apikeyctl --socket={REPO}/apikeyd/ctl/apikeyctl.bash-") == \
        [str(COMPLETION)]


def test_completion_offers_only_keys_the_command_can_act_on(ctl, package):
    def complete(line):
        return complete_line(line, package)

    on, _ = ctl.create("on")
    off, _ = ctl.create("off")
    gone, _ = ctl.create("gone")
    old, _ = ctl.create("old", "--expires", "1s")
    ctl.ok("disable", off["id"])
    ctl.ok("revoke", gone["id"])
    time.sleep(1.2)  # "old" expires; an expired key can still be revoked
    s = f"--socket={ctl.socket}"
    live = sorted([on["id"], off["id"], old["id"]])
    assert complete(f"apikeyctl {s} revoke ") == live
    assert complete(f"apikeyctl {s} update ") == live
    assert complete(f"apikeyctl {s} delete ") == sorted(live + [gone["id"]])
    assert complete(f"apikeyctl {s} disable ") == [on["id"]]
    assert complete(f"apikeyctl {s} enable ") == [off["id"]]
