# SPDX-License-Identifier: MIT
"""fail2ban reads what pam_apikey and apikeyd log: the module's real lines,
from the real PAM stack (libpam's pam_start_confdir) and the real daemon,
go to `fail2ban-regex` with fail2ban's stock filters and with the filters
shipped in contrib/fail2ban, as they would be read from /var/log/auth.log.

The lines are captured at /dev/log (the harness runs under the name sshd,
as sshd's lines carry it); the daemon's lines are taken from its standard
error, which is what the journal files.  A refused key is matched, host and
user read; the line naming the key and code, and every line of an outage,
are not.  test_pam_sshd.py does the same with a real sshd's lines (and
sshguard), test_pam_sudo.py with a real sudo's."""

import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BASE62, REPO, make_token
from pam_fixtures import (  # noqa: F401 - fixtures
    DEFAULT_BUILD, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, Build, PamDir, forged, key_id_of,
    listener, sockdir, syslog, trust_me)

CONTRIB = REPO / "contrib" / "fail2ban"
STOCK = Path("/etc/fail2ban")
SSHG_PARSER = "/usr/libexec/sshguard/sshg-parser"
USER = "alice"
HOST = "198.51.100.7"


def need_fail2ban():
    if shutil.which("fail2ban-regex") is None or not (STOCK / "filter.d" / "sshd.conf").is_file():
        pytest.skip("fail2ban is not installed (Debian package fail2ban)")


def auth_log(messages, host="testhost"):
    """Datagrams sent to /dev/log ("<85>Dec  6 03:10:00 sshd: ...") as a
    syslog daemon writes them to /var/log/auth.log."""
    out = []
    for m in messages:
        mt = re.match(r"<\d+>(\w{3} [ \d]\d [\d:]{8}) (.*)$", m.rstrip("\n"), re.S)
        assert mt, m
        out.append(f"{mt.group(1)} {host} {mt.group(2)}")
    return out


class Regex:
    """What fail2ban-regex made of some lines with one filter."""

    def __init__(self, out):
        self.out = out
        self.sections = {}
        name = None
        for line in out.splitlines():
            m = re.match(r"\|- (Matched|Ignored|Missed) line\(s\):", line)
            if m:
                name = m.group(1).lower()
                self.sections[name] = []
            elif line.startswith("`-"):
                name = None
            elif name and line.startswith("|  "):
                self.sections[name].append(line[3:])
        self.hits = [(int(n), rx) for n, rx in
                     re.findall(r"^\|\s+\d+\) \[(\d+)\] (.*)$", out.split("Ignoreregex:")[0],
                                re.M)]

    def matched(self):
        return self.sections.get("matched", [])

    def ignored(self):
        return self.sections.get("ignored", [])

    def missed(self):
        return self.sections.get("missed", [])

    def __repr__(self):
        return self.out


def fail2ban_regex(tmp_path, lines, filter_path, out=None):
    log = tmp_path / f"auth.log.{secrets.token_hex(4)}"
    log.write_text("".join(l + "\n" for l in lines))
    argv = ["fail2ban-regex"] + (["-o", out] if out else
                                 ["--print-all-matched", "--print-all-missed",
                                  "--print-all-ignored"]) + [str(log), str(filter_path)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (argv, r.stdout, r.stderr)
    return r.stdout if out else Regex(r.stdout)


def filter_dir(tmp_path):
    """fail2ban's stock filters with the shipped ones beside them, as an
    admin installs them (a filter includes others by name, from its folder)."""
    d = tmp_path / "fail2ban"
    if not d.exists():
        shutil.copytree(STOCK, d, symlinks=True)
        for sub in ("filter.d", "action.d", "jail.d"):
            for f in (CONTRIB / sub).iterdir():
                shutil.copy(f, d / sub / f.name)
    return d


def random_base62(n):
    return "".join(secrets.choice(BASE62) for _ in range(n))


@pytest.fixture
def d(daemon):
    return daemon()


@pytest.fixture
def admin(d):
    return d.client()


@pytest.fixture
def as_sshd(tmp_path):
    """The harness under the name sshd: its lines carry sshd's tag."""
    need_fail2ban()
    link = tmp_path / "bin" / "sshd"
    link.parent.mkdir()
    link.symlink_to(DEFAULT_BUILD.check().harness)
    build = Build(DEFAULT_BUILD.path)
    build.harness = link
    return PamDir(tmp_path / "pam.d", build)


def refuse(pam, d, admin, service, user=USER, rhost=HOST):
    """Refusals of four kinds for `user` at `service`; the key ids."""
    pam.probe(service, f"socket={d.socket} nodelay {trust_me()}")
    tokens = [forged(admin.create(f"forged {service}", owner=user)["token"]),
              admin.create(f"bobs {service}", owner="bob")["token"],
              admin.create(f"other scope {service}", owner=user, scope=["other"])["token"]]
    revoked = admin.create(f"revoked {service}", owner=user)
    admin.ok("io.apikeyd.Keys.Revoke", {"id": revoked["key"]["id"]})
    tokens.append(revoked["token"])
    for t in tokens:
        r = pam.run(service, user, [t], rhost=rhost, tty="ssh")
        assert r.code == PAM_AUTH_ERR, r
    return [key_id_of(t) for t in tokens]


def outage(pam, listener, sockdir, d, admin, service, rhost=HOST):
    """The daemon answering UNAVAILABLE, then not there at all."""
    token = admin.create("outage", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply='{"parameters":{"valid":false,"code":"UNAVAILABLE"}}')
    pam.probe(service + "-unavail", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
    assert pam.run(service + "-unavail", USER, [token], rhost=rhost).code == PAM_AUTHINFO_UNAVAIL
    d.stop()
    assert pam.run(service, USER, [token], rhost=rhost).code == PAM_AUTHINFO_UNAVAIL
    return key_id_of(token)


def module_lines(syslog, service_re):
    return auth_log(syslog.grep(rf"pam_apikey\({service_re}:auth\): "))


def test_refusals_match_the_stock_sshd_filter_and_outages_do_not(as_sshd, d, admin, listener,
                                                                 sockdir, syslog, tmp_path):
    ids = refuse(as_sshd, d, admin, "sshd")
    outage_id = outage(as_sshd, listener, sockdir, d, admin, "sshd")
    lines = module_lines(syslog, r"sshd(-unavail)?")
    failures = [l for l in lines if "authentication failure;" in l]
    assert len(failures) == len(ids), lines
    assert all(l.endswith(f"rhost={HOST}  user={USER}") for l in failures), failures
    r = fail2ban_regex(tmp_path, lines, STOCK / "filter.d" / "sshd.conf")
    # Read by the stock filter's PAM line, as pam_unix's is: the filter takes
    # host and user from it and counts sshd's own "Failed ..." line for the
    # same attempt (fail2ban 0.10 and later mark the PAM line <F-NOFAIL>).
    pam_hits = [n for n, rx in r.hits if "authentication failure" in rx]
    assert pam_hits == [len(ids)], r
    assert not any("authentication failure;" in l for l in r.missed()), r
    # The key and code, and the outage, count for nothing.
    refused = [l for l in lines if " refused key=" in l]
    assert [re.search(r"refused key=(\S+) ", l).group(1) for l in refused] == ids, lines
    assert all(l in r.missed() for l in refused), r
    unavailable = [l for l in lines if outage_id in l or "apikeyd at" in l]
    assert len(unavailable) == 3, lines  # UNAVAILABLE; cannot reach, DAEMON_UNAVAILABLE
    assert all(l in r.missed() for l in unavailable), r


def test_refusals_at_other_services_match_the_shipped_pam_filter(as_sshd, d, admin, listener,
                                                                  sockdir, syslog, tmp_path):
    """apikey-pam: the stock pam-generic filter reading pam_apikey's lines,
    for a service with a remote host (here vsftpd): each refusal counts once,
    with its host; nothing of an outage, nothing without a remote host."""
    ids = refuse(as_sshd, d, admin, "vsftpd")
    refuse(as_sshd, d, admin, "local", rhost="")
    outage(as_sshd, listener, sockdir, d, admin, "vsftpd")
    lines = module_lines(syslog, r"(vsftpd|local)(-unavail)?")
    f = filter_dir(tmp_path) / "filter.d" / "apikey-pam.conf"
    rows = fail2ban_regex(tmp_path, lines, f, out="row")
    found = re.findall(r"^\['([^']*)',.*'user': '([^']*)'", rows, re.M)
    assert found == [(HOST, USER)] * len(ids), (rows, lines)
    r = fail2ban_regex(tmp_path, lines, f)
    assert len(r.matched()) == len(ids) and all("(vsftpd:auth)" in l for l in r.matched()), r


def test_daemon_refusals_match_the_shipped_apikeyd_filter(d, admin, tmp_path):
    """apikeyd: the daemon's own lines for refused Verify calls, from any
    client; UNAVAILABLE and calls without a remote host never count."""
    need_fail2ban()
    token = admin.create("k", owner=USER, scope=["billing-api"])["token"]
    refusals = [(forged(token), "billing-api", HOST),
                (token, "sshd", "2001:db8::5"),
                (forged(token), "billing-api", ""),
                (make_token("apk", random_base62(12), random_base62(43)), "billing-api",
                 "192.0.2.9")]
    for t, service, rhost in refusals:
        params = {"service": service, "user": USER}
        if rhost:
            params["rhost"] = rhost
        assert admin.verify(t, **params)["valid"] is False
    assert admin.verify(token, service="billing-api", user=USER, rhost=HOST)["valid"] is True
    time.sleep(0.2)
    log = [l[len("apikeyd: "):] for l in d.log().splitlines() if l.startswith("apikeyd: ")]
    stamp = time.strftime("%b %e %H:%M:%S")
    lines = [f"{stamp} testhost apikeyd[{d.pid}]: {l}" for l in log]
    assert sum("verify refused:" in l for l in lines) == len(refusals), lines
    f = filter_dir(tmp_path) / "filter.d" / "apikeyd.conf"
    rows = fail2ban_regex(tmp_path, lines, f, out="row")
    found = re.findall(r"^\['([^']*)',.*'user': '([^']*)'", rows, re.M)
    assert found == [(HOST, USER), ("2001:db8::5", USER), ("192.0.2.9", USER)], (rows, lines)
    # A filter for some services only.
    rows = fail2ban_regex(tmp_path, lines, f"{f}[_service=billing-api]", out="row")
    assert re.findall(r"^\['([^']*)'", rows, re.M) == [HOST, "192.0.2.9"], rows


def test_the_shipped_jails_load(tmp_path):
    """fail2ban reads the example jails, with their filters and action,
    once they are copied in and turned on."""
    need_fail2ban()
    d = filter_dir(tmp_path)
    jail = d / "jail.d" / "apikey.conf"
    text = jail.read_text()
    assert text.count("enabled  = false") == 3, text
    jail.write_text(text.replace("enabled  = false", "enabled  = true"))
    r = subprocess.run(["fail2ban-client", "-c", str(d), "-d"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "ERROR" not in r.stdout + r.stderr, r
    for name in ("apikey-pam", "apikey-sudo", "apikeyd"):
        assert f"['add', '{name}', " in r.stdout, r.stdout
    assert "['set', 'apikey-sudo', 'addaction', 'apikey-mail-user']" in r.stdout
    for name, match in (("apikey-pam", "SYSLOG_FACILITY=10"), ("apikey-sudo", "_COMM=sudo"),
                        ("apikeyd", "_SYSTEMD_UNIT=apikeyd.service")):
        assert f"['set', '{name}', 'addjournalmatch', '{match}']" in r.stdout, r.stdout
