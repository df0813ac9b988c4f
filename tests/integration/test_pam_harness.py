# SPDX-License-Identifier: MIT
"""pam_apikey in a real PAM stack (libpam's pam_start_confdir with service
files of the test's own) against the real daemon: the exact PAM code of
every outcome, the fall-through of passwords, the deadline, the options, the
messages the user sees and the lines the module logs.

Each test runs twice: against the default build and against the ASan/UBSan
build (build-asan/, brought up to date first), whose runs must not report
anything -- except the few that drive the system's libpam through ctypes or
measure delays, which use the default build."""

import json
import os
import re
import secrets
import signal
import socket
import threading
import time

import pytest

from conftest import BASE62, BOB, IFACE, make_token, parse_iso, split_token
from pam_fixtures import (  # noqa: F401 - fixtures
    build, pam, DEFAULT_BUILD, FELL_THROUGH, PAM_AUTH_ERR, PAM_AUTHINFO_UNAVAIL, PAM_MAXTRIES,
    PAM_PERM_DENIED, PAM_SERVICE_ERR, PAM_SUCCESS, SSHD_FAKE_PASSWORD, VALID_REPLY, PamDir,
    conf_dir, failure_line, forged, key_id_of, listener, need_root,
    run_ctypes_pam, secret_of, snippet_lines, snippet_stack, sockdir, syslog, trust_me)

# Owners are plain principals to the daemon: these need no account, so most
# tests run without root.
USER = "alice"
OTHER = "bob"
PASSWORD = "correct horse battery staple"


def random_base62(n):
    return "".join(secrets.choice(BASE62) for _ in range(n))



@pytest.fixture
def default_pam(tmp_path):
    """For what only the default build can do (ctypes drives the system's
    libpam, timing)."""
    return PamDir(tmp_path / "pam.d", DEFAULT_BUILD.check())


@pytest.fixture
def d(daemon):
    return daemon()


@pytest.fixture
def admin(d):
    return d.client()


def sock(d):
    return f"socket={d.socket} nodelay {trust_me()}".rstrip()


# ---------------------------------------------------------------- outcomes


def test_valid_key_succeeds(pam, d, admin):
    created = admin.create("laptop", owner=USER)
    token = created["token"]
    svc = pam.probe("login", sock(d))
    r = pam.run(svc, USER, [token], rhost="192.0.2.10", tty="pts/3")
    assert r.code == PAM_SUCCESS, r
    assert r.prompts == ["API key: "], r
    assert token not in r.out + r.err
    # One Verify with the PAM service and the remote host.
    key = admin.get(created["key"]["id"])
    assert key.get("last_used_service") == "login", key
    assert key.get("last_used_from") == "192.0.2.10", key


def test_refusal_is_audited_with_tty_and_ruser(pam, d, admin):
    created = admin.create("laptop", owner=USER)
    svc = pam.probe("login", sock(d))
    r = pam.run(svc, "akt-bob", [created["token"]], rhost="192.0.2.11", tty="pts/9")
    assert r.code == PAM_AUTH_ERR, r
    events = admin.ok("io.apikeyd.Keys.ListAudit", {"key_id": created["key"]["id"]})["events"]
    assert events[-1]["result"] == "WRONG_USER"
    assert events[-1]["detail"] == "service=login user=akt-bob rhost=192.0.2.11 tty=pts/9 ruser="


def _refusal(admin, case):
    """(token, user, service file name, daemon code) of one refused case."""
    if case == "expired":
        r = admin.create("short", owner=USER, expires="1s")
        time.sleep(max(0.0, parse_iso(r["key"]["expires_at"]) + 1.1 - time.time()))
        return r["token"], USER, "login", "EXPIRED"
    if case == "unknown_id":
        return make_token("apk", random_base62(12), random_base62(43)), USER, "login", \
            "NOT_FOUND"
    if case == "other_owner":
        return admin.create("bobs", owner=OTHER)["token"], USER, "login", "WRONG_USER"
    if case == "out_of_scope":
        return admin.create("ssh only", owner=USER, scope=["sshd"])["token"], USER, "login", \
            "OUT_OF_SCOPE"
    r = admin.create(case, owner=USER)
    token, key_id = r["token"], r["key"]["id"]
    if case == "wrong_secret":
        return forged(token), USER, "login", "NOT_FOUND"
    method = {"disabled": "Disable", "revoked": "Revoke", "deleted": "Delete"}[case]
    admin.ok(f"{IFACE}.{method}", {"id": key_id})
    return token, USER, "login", {"deleted": "NOT_FOUND"}.get(case, case.upper())


REFUSALS = ["wrong_secret", "unknown_id", "disabled", "revoked", "deleted", "expired",
            "other_owner", "out_of_scope"]


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_key_is_auth_err(pam, d, admin, case):
    token, user, service, code = _refusal(admin, case)
    # The daemon's own answer, for the record.
    assert admin.verify(token, user=user, service=service)["code"] == code
    pam.probe(service, sock(d))
    r = pam.run(service, user, [token])
    assert r.code == PAM_AUTH_ERR, r
    # The user is told nothing about which it was.
    assert r.infos == [] and r.errors == [], r


class OlderDaemon:
    """A daemon from before the brief answer, as the module meets it after an
    upgrade that has not restarted the daemon yet: a Verify with `brief` is
    refused with InvalidParameter naming it, as that daemon's strict
    parameter check did; any other call goes to the real daemon behind."""

    def __init__(self, path, daemon_socket):
        self.path = str(path)
        self.daemon_socket = str(daemon_socket)
        self.calls = []
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @staticmethod
    def _recv(conn):
        buf = b""
        while not buf.endswith(b"\0"):
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        return buf[:-1]

    def _serve(self):
        while True:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            with conn:
                while (msg := self._recv(conn)) is not None:
                    call = json.loads(msg)
                    self.calls.append(call)
                    if "brief" in call.get("parameters", {}):
                        reply = json.dumps({"error": "org.varlink.service.InvalidParameter",
                                            "parameters": {"parameter": "brief"}}).encode()
                    else:
                        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
                            up.connect(self.daemon_socket)
                            up.sendall(msg + b"\0")
                            reply = self._recv(up)
                    conn.sendall(reply + b"\0")

    def stop(self):
        self.srv.close()
        self.thread.join(10)


def test_a_daemon_older_than_the_brief_answer_still_logs_keys_in(pam, d, admin, sockdir):
    """The module asks for the brief answer; a daemon that predates it
    refuses the parameter, and the module asks again for the whole one
    within the same deadline, so a key still logs in -- and a refused key is
    still refused."""
    good = admin.create("laptop", owner=USER)["token"]
    old = OlderDaemon(sockdir() / "s", d.socket)
    try:
        svc = pam.probe("older", f"socket={old.path} nodelay timeout=3000 {trust_me()}".rstrip())
        r = pam.run(svc, USER, [good], rhost="192.0.2.10")
        assert r.code == PAM_SUCCESS, r
        assert [("brief" in c["parameters"]) for c in old.calls] == [True, False], old.calls
        assert old.calls[1]["method"] == IFACE + ".Verify"
        assert old.calls[1]["parameters"]["token"] == good
        unknown = make_token("apk", random_base62(12), random_base62(43))
        r = pam.run(svc, USER, [unknown], rhost="192.0.2.10")
        assert r.code == PAM_AUTH_ERR, r
        assert len(old.calls) == 4, old.calls
    finally:
        old.stop()


def test_scope_is_checked_against_the_service_argument(pam, d, admin):
    token = admin.create("ssh only", owner=USER, scope=["sshd"])["token"]
    pam.probe("sshd", sock(d))
    pam.probe("sshd-other-name", f"{sock(d)} service=sshd")
    pam.probe("login", sock(d))
    pam.probe("login-as-sudo", f"{sock(d)} service=sudo")
    assert pam.run("sshd", USER, [token]).code == PAM_SUCCESS
    assert pam.run("sshd-other-name", USER, [token]).code == PAM_SUCCESS
    assert pam.run("login", USER, [token]).code == PAM_AUTH_ERR
    assert pam.run("login-as-sudo", USER, [token]).code == PAM_AUTH_ERR


def test_login_shell_services_are_checked_as_their_command(pam, d, admin):
    """Debian's PAM services for `sudo -i` and `su -l` are checked as sudo
    and su, and only those: service= still says exactly what to check."""
    keys = {s: admin.create(f"{s} only", owner=USER, scope=[s]) for s in ("sudo", "su", "sudo-i")}
    for service in ("sudo-i", "su-l", "sudo-i-x", "su-l-as-sudo-i"):
        pam.probe(service, sock(d) + (" service=sudo-i" if service == "su-l-as-sudo-i" else ""))
    passes = {"sudo-i": "sudo", "su-l": "su", "sudo-i-x": None, "su-l-as-sudo-i": "sudo-i"}
    for service, scope in passes.items():
        for s, k in keys.items():
            r = pam.run(service, USER, [k["token"]])
            assert r.code == (PAM_SUCCESS if s == scope else PAM_AUTH_ERR), (service, s, r)
    assert admin.get(keys["sudo"]["key"]["id"])["last_used_service"] == "sudo"
    assert admin.get(keys["su"]["key"]["id"])["last_used_service"] == "su"


# ---------------------------------------------------------------- not a key


NOT_KEYS = ["password", "empty", "typo", "truncated", "other_prefix"]


def _not_a_key(name, token):
    """What a user might type that is not one of our keys."""
    if name == "password":
        return PASSWORD
    if name == "empty":
        return ""
    if name == "typo":  # one character changed: the checksum fails
        i = len(token) - 10
        return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
    if name == "truncated":
        return token[:-1]
    assert name == "other_prefix"  # well formed, but not the prefix= configured
    _, key_id, secret, _ = split_token(token)
    return make_token("zzz", key_id, secret)


@pytest.mark.parametrize("name", NOT_KEYS)
def test_input_that_is_not_a_key_is_ignored_and_never_sent(pam, admin, listener, sockdir,
                                                           name):
    token = admin.create("k", owner=USER)["token"]
    typed = _not_a_key(name, token)
    fake = listener(sockdir() / "s", reply=VALID_REPLY)
    args = f"socket={fake.path} nodelay prefix=apk {trust_me()}"
    pam.probe("probe", args)
    r = pam.run("probe", USER, [typed])
    assert r.fell_through, r
    assert r.prompts == ["API key: "]
    assert fake.connections() == [], "input that is not a key reached the socket"
    # A password stack below the snippet's line decides.
    pam.write("then-permit", pam.line("auth", "[success=done ignore=ignore default=die]", args)
              + "auth required pam_permit.so\n")
    pam.write("then-deny", pam.line("auth", "[success=done ignore=ignore default=die]", args)
              + "auth required pam_deny.so\n")
    assert pam.run("then-permit", USER, [typed]).code == PAM_SUCCESS
    assert pam.run("then-deny", USER, [typed]).code == PAM_AUTH_ERR
    assert fake.connections() == []
    # Control: the listener does see a key.
    r = pam.run("probe", USER, [token])
    assert r.code == PAM_SUCCESS, r
    seen = fake.connections()
    assert len(seen) == 1 and token in seen[0], seen


def test_password_falls_through_even_with_the_daemon_down(pam, d):
    d.stop()
    pam.write("stack", snippet_stack(pam.module, sock(d)) + "auth required pam_permit.so\n")
    r = pam.run("stack", USER, [PASSWORD])
    assert r.code == PAM_SUCCESS, r


def test_sshd_fake_password_is_ignored_without_a_connection(default_pam, admin, listener,
                                                           sockdir):
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply=VALID_REPLY)
    default_pam.probe("sshd", f"socket={fake.path} nodelay {trust_me()}")
    r = run_ctypes_pam(default_pam, "sshd", USER, SSHD_FAKE_PASSWORD)
    assert r.code == FELL_THROUGH and "info: auth=cred_insufficient" in r.out, r
    assert fake.connections() == []
    # Control: the same driver with a key does reach the listener.
    r = run_ctypes_pam(default_pam, "sshd", USER, token.encode())
    assert r.code == PAM_SUCCESS, r
    assert len(fake.connections()) == 1


def test_prefix_option(pam, daemon):
    d = daemon(config={"token_prefix": "corp"})
    token = d.client().create("k", owner=USER)["token"]
    assert token.startswith("corp_")
    pam.probe("any", sock(d))
    pam.probe("corp", f"{sock(d)} prefix=corp")
    pam.probe("apk", f"{sock(d)} prefix=apk")
    assert pam.run("any", USER, [token]).code == PAM_SUCCESS
    assert pam.run("corp", USER, [token]).code == PAM_SUCCESS
    assert pam.run("apk", USER, [token]).fell_through


def test_minimum_uid_ignores_system_accounts_without_a_prompt(pam, d, admin):
    token = admin.create("k", owner="root")["token"]
    pam.probe("svc", f"{sock(d)} minimum_uid=1000")
    r = pam.run("svc", "root", [token])
    assert r.fell_through and r.prompts == [], r
    pam.probe("svc0", sock(d))
    assert pam.run("svc0", "root", [token]).code == PAM_SUCCESS


def test_prompt_option(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("svc", f"{sock(d)} prompt=Key:")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_SUCCESS and r.prompts == ["Key:"], r


# ---------------------------------------------------------------- daemon trouble


def test_daemon_stopped_is_authinfo_unavail(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    d.stop()
    pam.probe("svc", f"{sock(d)} timeout=500")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_AUTHINFO_UNAVAIL, r
    assert r.elapsed < 1.5, r
    pam.probe("never", f"socket={d.socket}.missing nodelay timeout=500")
    r = pam.run("never", USER, [token])
    assert r.code == PAM_AUTHINFO_UNAVAIL, r


def test_daemon_frozen_is_authinfo_unavail_within_the_deadline(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("svc", f"{sock(d)} timeout=500")
    pam.probe("svc-ignore", f"{sock(d)} timeout=500 ignore_authinfo_unavail")
    os.kill(d.pid, signal.SIGSTOP)
    try:
        r = pam.run("svc", USER, [token])
        r2 = pam.run("svc-ignore", USER, [token])
    finally:
        os.kill(d.pid, signal.SIGCONT)
    assert r.code == PAM_AUTHINFO_UNAVAIL, r
    assert 0.45 <= r.elapsed < 1.5, r
    assert r2.fell_through and r2.elapsed < 1.5, r2
    # Thawed, the same key works.
    assert pam.run("svc", USER, [token]).code == PAM_SUCCESS


def test_ignore_authinfo_unavail(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    d.stop()
    pam.probe("svc", f"{sock(d)} ignore_authinfo_unavail")
    assert pam.run("svc", USER, [token]).fell_through
    # With a password stack below, the user gets in with the password.
    pam.write("stack", pam.line("auth", "[success=done ignore=ignore default=die]",
                                f"{sock(d)} ignore_authinfo_unavail")
              + "auth required pam_permit.so\n")
    assert pam.run("stack", USER, [token]).code == PAM_SUCCESS


def test_silent_listener_is_authinfo_unavail(pam, admin, listener, sockdir):
    """A listener that takes the call and closes without an answer."""
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply="")
    pam.probe("svc", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_AUTHINFO_UNAVAIL, r
    seen = fake.connections()
    assert len(seen) == 1 and token in seen[0], seen


def test_listener_that_hangs_up_is_authinfo_unavail(default_pam, admin, listener, sockdir):
    """Hung up on in the middle of the call: no SIGPIPE kills the host
    process.  A long user name makes the call larger than the socket
    buffer, so the module is still sending when the listener closes."""
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply="<close>")
    default_pam.probe("svc", f"socket={fake.path} nodelay timeout=2000 {trust_me()}")
    for _ in range(3):
        r = run_ctypes_pam(default_pam, "svc", "repeat:600000:u", token.encode())
        assert r.code == PAM_AUTHINFO_UNAVAIL, (r.code, r.out[-500:], r.err[-2000:])
    assert len(fake.connections()) == 3


def test_socket_is_kept_off_stdio(default_pam, admin, listener, sockdir):
    """In a host whose stdin and stderr are closed, the module's socket does
    not take fd 0 or 2 (where the host's next read or message would go)."""
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply=VALID_REPLY, delay=0.3)
    default_pam.write("svc", default_pam.line("auth", "required",
                                              f"socket={fake.path} nodelay {trust_me()}"))
    r = run_ctypes_pam(default_pam, "svc", USER, token.encode(), watch_fds=True)
    assert r.code == PAM_SUCCESS, r
    m = re.search(r"^sockets=([\d:,]*)$", r.out, re.M)
    assert m, r
    seen = [tuple(int(x) for x in e.split(":")) for e in m.group(1).split(",") if e]
    # The module's socket stays open while the listener holds back its
    # answer; name service lookups (daemon_user=) may open brief ones.
    held = [fd for fd, ms in seen if ms >= 100]
    assert held, f"the watcher never saw the module's socket: {r}"
    assert min(held) >= 3, f"the module's socket took fd {min(held)}: {seen}"


@pytest.mark.parametrize("reply", ['{"parameters":{"valid":true}}',
                                   '{"parameters":{"code":"VALID"}}',
                                   '{"error":"io.apikeyd.Keys.InternalError",'
                                   '"parameters":{"reason":"x"}}',
                                   'not json',
                                   # Success takes both saying so.
                                   '{"parameters":{"valid":false,"code":"VALID"}}',
                                   # Which "code" counts must never be a question.
                                   '{"parameters":{"valid":true,"code":"REVOKED",'
                                   '"code":"VALID"}}',
                                   '{"parameters":{"valid":true,"code":"VALID",'
                                   '"key":{"id":"a","id":"b"}}}',
                                   '{"parameters":{"valid":true,"code":"VALID"}} trailing'])
def test_unreadable_answer_is_never_success(pam, admin, listener, sockdir, reply):
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply=reply)
    pam.probe("svc", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_AUTHINFO_UNAVAIL, r


@pytest.mark.parametrize("reply, message", [
    ("not json", "cannot read apikeyd's answer"),
    ('{"parameters":{"valid":true,"code":"VALID","code":"VALID"}}',
     "cannot read apikeyd's answer"),
    ('{"parameters":{"valid":false,"code":"VALID"}}',
     "apikeyd's answer says VALID but not valid"),
])
def test_unreadable_answer_is_logged(pam, admin, listener, sockdir, syslog, reply, message):
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply=reply)
    pam.probe("svc", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
    assert pam.run("svc", USER, [token]).code == PAM_AUTHINFO_UNAVAIL
    syslog.wait_for(r"pam_apikey\(svc:auth\): " + re.escape(message) + "$")


def test_unknown_daemon_code_is_never_success(pam, admin, listener, sockdir):
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir() / "s", reply='{"parameters":{"valid":true,"code":"MAYBE"}}')
    pam.probe("svc", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
    assert pam.run("svc", USER, [token]).code == PAM_AUTH_ERR


def test_socket_served_by_another_user_never_gets_the_key(pam, admin, listener, sockdir,
                                                         test_users):
    need_root("runs a listener as another user")
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir(owner=BOB) / "s", user=BOB, reply=VALID_REPLY)
    assert fake.uid == test_users[BOB].pw_uid
    pam.probe("svc", f"socket={fake.path} nodelay timeout=1000")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_AUTHINFO_UNAVAIL, r
    seen = fake.connections()
    assert len(seen) == 1 and seen[0] == "", f"the listener received {seen!r}"
    # Named as the daemon's user, the same listener is trusted: it gets the
    # key (and its made-up answer is believed).
    pam.probe("trusting", f"socket={fake.path} nodelay timeout=1000 daemon_user={BOB}")
    r = pam.run("trusting", USER, [token])
    assert r.code == PAM_SUCCESS, r
    seen = fake.connections()
    assert len(seen) == 2 and token in seen[1], seen


# ---------------------------------------------------------------- first pass


def test_use_first_pass_takes_the_token_of_an_earlier_module(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    # The earlier module asks (and sets PAM_AUTHTOK) but cannot reach a daemon.
    first = pam.line("auth", "[success=ignore default=ignore]",
                     f"socket={d.socket}.none nodelay ignore_authinfo_unavail prompt=First:")
    pam.probe("svc", f"{sock(d)} use_first_pass", before=first)
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_SUCCESS, r
    assert r.prompts == ["First:"], r
    r = pam.run("svc", USER, [forged(token)])
    assert r.code == PAM_AUTH_ERR and r.prompts == ["First:"], r


def test_use_first_pass_after_pam_unix(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("svc", f"{sock(d)} use_first_pass", before="auth optional pam_unix.so nodelay\n")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_SUCCESS and r.prompts == ["Password: "], r
    r = pam.run("svc", USER, [PASSWORD])
    assert r.fell_through and r.prompts == ["Password: "], r


def test_use_first_pass_without_an_earlier_token_does_not_ask(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("svc", f"{sock(d)} use_first_pass")
    r = pam.run("svc", USER, [token])
    assert r.fell_through and r.prompts == [], r


def test_try_first_pass(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("alone", f"{sock(d)} try_first_pass")
    r = pam.run("alone", USER, [token])
    assert r.code == PAM_SUCCESS and r.prompts == ["API key: "], r
    pam.probe("after", f"{sock(d)} try_first_pass", before="auth optional pam_unix.so nodelay\n")
    r = pam.run("after", USER, [token])
    assert r.code == PAM_SUCCESS and r.prompts == ["Password: "], r
    r = pam.run("after", USER, [forged(token)])
    assert r.code == PAM_AUTH_ERR and r.prompts == ["Password: "], r


# ---------------------------------------------------------------- lockout


def test_rate_limited_is_maxtries(pam, daemon):
    d = daemon(config={"lockout_threshold": 3})
    token = d.client().create("k", owner=USER)["token"]
    pam.probe("svc", sock(d))
    for _ in range(3):
        assert pam.run("svc", USER, [forged(token)]).code == PAM_AUTH_ERR
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_MAXTRIES, r


# ---------------------------------------------------------------- account


def test_account_after_another_module_is_ignored(pam, d, admin):
    pam.probe("probe", sock(d), kind="account", before="auth required pam_permit.so\n")
    r = pam.run("probe", USER, [], acct=True)
    assert r.fell_through and "auth=Success" in r.out, r
    # The snippet's account line, then the usual ones: the login passes.
    account = [l for l in snippet_lines() if l.startswith("account")]
    assert len(account) == 1
    pam.write("snippet", "auth required pam_permit.so\n" +
              account[0].replace("pam_apikey.so", f"{pam.module} {sock(d)}") +
              "\naccount required pam_permit.so\n")
    r = pam.run("snippet", USER, [], acct=True)
    assert r.code == PAM_SUCCESS and "acct=Success" in r.out, r
    # Alone, an ignoring stack is a denial (libpam's rule, not the module's).
    pam.write("alone", "auth required pam_permit.so\n" +
              account[0].replace("pam_apikey.so", f"{pam.module} {sock(d)}") + "\n")
    r = pam.run("alone", USER, [], acct=True)
    assert r.code == PAM_PERM_DENIED, r


def test_account_after_our_auth_succeeds(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    pam.write("snippet", snippet_stack(pam.module, sock(d)))
    r = pam.run("snippet", USER, [token], acct=True)
    # Only the module's account line: success means it answered PAM_SUCCESS.
    assert r.code == PAM_SUCCESS and "acct=Success" in r.out, r
    pam.write("probe", pam.line("auth", "required", sock(d)) +
              pam.line("account", "[success=done ignore=ignore default=die]", sock(d)) +
              "account required pam_debug.so acct=cred_insufficient\n")
    r = pam.run("probe", USER, [token], acct=True)
    assert r.code == PAM_SUCCESS and "acct=Success" in r.out, r


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("bad", ["timeuot=5", "timeout=abc", "timeout=0", "timeout=-1",
                                 "timeout=600001", "socket=relative/path", "prefix=A",
                                 "prefix=x", "minimum_uid=abc", "expiry_warning=soon",
                                 "daemon_user=akt-no-such-user", "bogus", "debug=1",
                                 "service=", "conf=/nonexistent/pam_apikey.conf"])
def test_bad_option_is_service_err(pam, d, admin, bad):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("svc", f"{sock(d)} {bad}")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_SERVICE_ERR, r
    assert r.prompts == [], "asked for a key with a broken configuration"
    pam.probe("acct", f"{sock(d)} {bad}", kind="account", before="auth required pam_permit.so\n")
    r = pam.run("acct", USER, [], acct=True)
    assert r.code == PAM_SERVICE_ERR, r


def test_good_options_are_accepted(pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    # (daemon_user first: as another user, sock() names that user after it)
    pam.probe("svc", "daemon_user=root timeout=600000 debug quiet prefix=apk minimum_uid=0 "
                     f"expiry_warning=3d try_first_pass {sock(d)}")
    assert pam.run("svc", USER, [token]).code == PAM_SUCCESS


def _conf(directory, text, mode=0o644, name="pam_apikey.conf"):
    p = directory / name
    p.write_text(text)
    os.chmod(p, mode)
    return p


def test_conf_file(pam, d, admin, conf_dir):
    token = admin.create("ssh only", owner=USER, scope=["sshd"])["token"]
    conf = _conf(conf_dir, f"# options for pam_apikey\nsocket={d.socket}   timeout=2000\n"
                           f"{trust_me()}\n"
                           "\tservice=sshd # the scope checked\nnodelay\n")
    pam.probe("login", f"conf={conf}")
    r = pam.run("login", USER, [token])
    assert r.code == PAM_SUCCESS, r
    # Arguments override the file, whatever their order.
    pam.probe("override", f"service=sudo conf={conf}")
    assert pam.run("override", USER, [token]).code == PAM_AUTH_ERR
    bad_socket = _conf(conf_dir, "socket=/nonexistent/socket nodelay\n", name="bad.conf")
    pam.probe("fixed", f"conf={bad_socket} socket={d.socket} service=sshd {trust_me()}")
    assert pam.run("fixed", USER, [token]).code == PAM_SUCCESS
    pam.probe("broken", f"socket={d.socket} service=sshd conf={bad_socket} {trust_me()}")
    assert pam.run("broken", USER, [token]).code == PAM_SUCCESS
    pam.probe("unfixed", f"conf={bad_socket} service=sshd")
    assert pam.run("unfixed", USER, [token]).code == PAM_AUTHINFO_UNAVAIL


@pytest.mark.parametrize("text,mode", [("socket=/x timeuot=5\n", 0o644),
                                       ("conf=/etc/other.conf\n", 0o644),
                                       ("timeout=abc\n", 0o644),
                                       ("nodelay\n", 0o664),
                                       ("nodelay\n", 0o646)])
def test_bad_conf_file_is_service_err(pam, d, admin, conf_dir, text, mode):
    token = admin.create("k", owner=USER)["token"]
    conf = _conf(conf_dir, text, mode)
    pam.probe("svc", f"{sock(d)} conf={conf}")
    r = pam.run("svc", USER, [token])
    assert r.code == PAM_SERVICE_ERR and r.prompts == [], r


def test_conf_must_be_a_regular_file(pam, d, admin, conf_dir):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("svc", f"{sock(d)} conf={conf_dir}")
    assert pam.run("svc", USER, [token]).code == PAM_SERVICE_ERR


# ---------------------------------------------------------------- expiry warning


EXPIRY_INFO = re.compile(r"^Your API key expires (.+) \((\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\)\.$")


@pytest.mark.parametrize("args,warned", [("", True), ("expiry_warning=2d", True),
                                         ("expiry_warning=1h", False),
                                         ("expiry_warning=0", False), ("quiet", False)])
def test_expiry_warning(pam, d, admin, args, warned):
    created = admin.create("k", owner=USER, expires="1d")
    pam.probe("svc", f"{sock(d)} {args}")
    r = pam.run("svc", USER, [created["token"]])
    assert r.code == PAM_SUCCESS, r
    if warned:
        assert len(r.infos) == 1, r
        m = EXPIRY_INFO.match(r.infos[0])
        assert m, r.infos
        assert m.group(2) == created["key"]["expires_at"]
    else:
        assert r.infos == [], r


def test_no_expiry_warning_for_a_key_that_does_not_expire_soon(pam, d, admin):
    never = admin.create("never", owner=USER, expires="never")["token"]
    later = admin.create("later", owner=USER, expires="30d")["token"]
    pam.probe("svc", sock(d))
    for token in (never, later):
        r = pam.run("svc", USER, [token])
        assert r.code == PAM_SUCCESS and r.infos == [], r


# ---------------------------------------------------------------- delay


def test_failure_delay_unless_nodelay(default_pam, d, admin):
    token = admin.create("k", owner=USER)["token"]
    default_pam.probe("delay", f"socket={d.socket} {trust_me()}")
    default_pam.probe("nodelay", f"socket={d.socket} nodelay {trust_me()}")
    r = default_pam.run("delay", USER, [forged(token)])
    assert r.code == PAM_AUTH_ERR and r.elapsed >= 1.0, r
    r = default_pam.run("nodelay", USER, [forged(token)])
    assert r.code == PAM_AUTH_ERR and r.elapsed < 1.0, r
    # Success is never delayed.
    r = default_pam.run("delay", USER, [token])
    assert r.code == PAM_SUCCESS and r.elapsed < 1.0, r


# ---------------------------------------------------------------- syslog


def test_failure_lines_in_pam_unix_shape(pam, d, admin, syslog):
    cases = {}
    for case in ["expired"] + [c for c in REFUSALS if c != "expired"]:
        cases[case] = _refusal(admin, case)
    for case, (token, user, service, code) in cases.items():
        pam.probe(service, sock(d))
        r = pam.run(service, user, [token], rhost="198.51.100.7", tty="pts/7")
        assert r.code == PAM_AUTH_ERR, (case, r)
        syslog.wait_for(failure_line(service, user, key_id_of(token), code, tty="pts/7",
                                     rhost="198.51.100.7", uid=os.getuid(), euid=os.geteuid()))
    # The daemon down.
    token = admin.create("down", owner=USER)["token"]
    d.stop()
    pam.probe("svc", sock(d))
    assert pam.run("svc", USER, [token]).code == PAM_AUTHINFO_UNAVAIL
    syslog.wait_for(r"pam_apikey\(svc:auth\): cannot reach apikeyd at " + re.escape(d.socket))
    # Not an authentication failure: fail2ban must not hold an outage against the user.
    syslog.wait_for(r"pam_apikey\(svc:auth\): " + unavailable_line(USER, key_id_of(token),
                                                                     "DAEMON_UNAVAILABLE"))
    # Not one line carries a secret.
    lines = syslog.lines()
    secrets_used = [secret_of(t) for t, _, _, _ in cases.values()] + [secret_of(token)]
    for line in lines:
        for s in secrets_used:
            assert s not in line, line
    # (Other processes may log here too: the key id is this test's own.)
    assert not any(f"refused key={key_id_of(token)} " in l for l in lines), lines


def test_rate_limited_line(pam, daemon, syslog):
    d = daemon(config={"lockout_threshold": 1})
    token = d.client().create("k", owner=USER)["token"]
    pam.probe("svc", sock(d))
    assert pam.run("svc", USER, [forged(token)]).code == PAM_AUTH_ERR
    assert pam.run("svc", USER, [token]).code == PAM_MAXTRIES
    syslog.wait_for(failure_line("svc", USER, key_id_of(token), "RATE_LIMITED"))
    assert not any(secret_of(token) in l for l in syslog.lines())


def test_option_errors_and_debug_are_logged(pam, d, admin, syslog):
    token = admin.create("k", owner=USER)["token"]
    pam.probe("typo", f"{sock(d)} timeuot=5")
    assert pam.run("typo", USER, [token]).code == PAM_SERVICE_ERR
    syslog.wait_for(r"pam_apikey\(typo:auth\): unknown or malformed option 'timeuot=5'")
    pam.probe("dbg", f"{sock(d)} debug")
    assert pam.run("dbg", USER, [token]).code == PAM_SUCCESS
    syslog.wait_for(rf"pam_apikey\(dbg:auth\): key {key_id_of(token)} accepted for {USER} "
                    r"\(service dbg\)")
    assert pam.run("dbg", USER, [PASSWORD]).fell_through
    syslog.wait_for(rf"pam_apikey\(dbg:auth\): input for {USER} is not an API key; ignoring")
    for line in syslog.lines():
        assert secret_of(token) not in line and PASSWORD not in line, line


def test_refused_socket_owner_is_logged(pam, admin, listener, sockdir, syslog, test_users):
    token = admin.create("k", owner=USER)["token"]
    fake = listener(sockdir(owner=BOB) / "s", user=BOB, reply=VALID_REPLY)
    pam.probe("svc", f"socket={fake.path} nodelay")
    assert pam.run("svc", USER, [token]).code == PAM_AUTHINFO_UNAVAIL
    syslog.wait_for(rf"refusing to send a key to {re.escape(fake.path)}: it is served by uid "
                    rf"{test_users[BOB].pw_uid}, not by root")


# ---------------------------------------------------------------- codes of newer daemons


def unavailable_line(user, key, code, rhost=""):
    """The line of an outage or of no decision: not pam_unix's failure line."""
    return (rf"no decision from apikeyd for user={re.escape(user)} key={re.escape(key)} "
            rf"code={code} rhost={re.escape(rhost)}; not an authentication failure$")


def test_unavailable_is_authinfo_unavail_and_not_a_failure(pam, listener, sockdir, syslog):
    """The daemon could not decide (its storage failed, or it is offline from
    its fleet): like a daemon that cannot be reached, never success, and no
    line fail2ban would count against the user's host."""
    token = make_token("apk", random_base62(12), random_base62(43))
    for valid in ("false", "true"):
        fake = listener(sockdir() / "s",
                        reply=f'{{"parameters":{{"valid":{valid},"code":"UNAVAILABLE"}}}}')
        pam.probe("unavail", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
        r = pam.run("unavail", USER, [token], rhost="198.51.100.7", tty="pts/7")
        assert r.code == PAM_AUTHINFO_UNAVAIL, (valid, r)
        assert len(fake.connections()) == 1
        # ignore_authinfo_unavail lets a password module below decide, as
        # when the daemon is down.
        pam.probe("unavail-ignored",
                  f"socket={fake.path} nodelay timeout=1000 ignore_authinfo_unavail {trust_me()}")
        assert pam.run("unavail-ignored", USER, [token]).fell_through
    syslog.wait_for(r"pam_apikey\(unavail:auth\): " +
                    unavailable_line(USER, split_token(token)[1], "UNAVAILABLE", "198.51.100.7"))
    lines = syslog.grep(re.escape(split_token(token)[1]))
    assert lines and not any("refused key=" in l for l in lines), lines
    assert syslog.grep(r"pam_apikey\(unavail(-ignored)?:auth\): authentication failure") == []


def test_not_for_login_is_auth_err_and_a_failure(pam, listener, sockdir, syslog):
    """A key invited for another owner matched, but it may not log in: a
    refusal like WRONG_USER, logged in pam_unix's shape -- also when the
    answer says valid."""
    token = make_token("apk", random_base62(12), random_base62(43))
    for valid in ("false", "true"):
        fake = listener(sockdir() / "s",
                        reply=f'{{"parameters":{{"valid":{valid},"code":"NOT_FOR_LOGIN"}}}}')
        pam.probe("invited", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
        r = pam.run("invited", USER, [token], rhost="198.51.100.7", tty="pts/7")
        assert r.code == PAM_AUTH_ERR, (valid, r)
    lines = syslog.wait_for(failure_line("invited", USER, split_token(token)[1], "NOT_FOR_LOGIN",
                                         tty="pts/7", rhost="198.51.100.7", uid=os.getuid(),
                                         euid=os.geteuid()))
    assert len(lines) == 2, lines


def test_unknown_refusal_code_is_auth_err_and_a_failure(pam, listener, sockdir, syslog):
    """A code this module does not know yet is a refusal, never success."""
    token = make_token("apk", random_base62(12), random_base62(43))
    fake = listener(sockdir() / "s", reply='{"parameters":{"valid":false,"code":"NEW_REASON"}}')
    pam.probe("newer", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
    assert pam.run("newer", USER, [token]).code == PAM_AUTH_ERR
    syslog.wait_for(failure_line("newer", USER, split_token(token)[1], "NEW_REASON"))


@pytest.mark.parametrize("code", ["NEW_REASON", "valid", "Valid", "VALID ", " VALID", "VALIDX",
                                  ""])
def test_unknown_code_is_auth_err_even_when_valid(pam, listener, sockdir, syslog, code):
    """An answer that says valid with a code this module does not know -- a
    newer daemon's, or an impostor's near miss of VALID -- is a refusal:
    success takes the code VALID, exactly."""
    token = make_token("apk", random_base62(12), random_base62(43))
    fake = listener(sockdir() / "s",
                    reply=f'{{"parameters":{{"valid":true,"code":"{code}"}}}}')
    pam.probe("newer", f"socket={fake.path} nodelay timeout=1000 {trust_me()}")
    r = pam.run("newer", USER, [token])
    assert r.code == PAM_AUTH_ERR, (code, r)
    assert len(fake.connections()) == 1
    syslog.wait_for(failure_line("newer", USER, split_token(token)[1], re.escape(code)))
