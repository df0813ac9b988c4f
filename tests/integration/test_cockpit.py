# SPDX-License-Identifier: MIT
"""The Cockpit page (cockpit/) in a real browser against the real daemon.

Each browser run starts a fresh cockpit-ws in --local-session mode as a test
user (its bridge runs as that user, so the daemon sees that user's uid and
groups), with the page from the tree in the user's XDG data folder and the
daemon's socket named in the user's own override of the page's manifest
(XDG config folder).  Headless Chromium loads the page and is driven over
the DevTools protocol (cdp.py).  apikeyctl, run as root, creates keys and
checks at its next verify what the page did.  Screenshots go to
build/cockpit/: the table (light and dark, an admin's and a user's), the
create dialog, a field error, the shown-once dialog, the row menu, the
delete and shared secret dialogs, a key's detail and recent uses, the
rotate dialog, and the daemon not running.

A Varlink peer of the test's own stands in for the daemon where the daemon
cannot be made to misbehave (answers a byte at a time, answers that are
not Varlink), and tests/fuzz/fuzz_varlink_js.js fuzzes the page's Varlink
client in Chromium.
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cdp import CHROMIUM, Chromium, session_pids, stop_session
from conftest import ADMIN, ALICE, BOB, IFACE, REPO, _short_socket_dir
from pam_fixtures import BUILD

COCKPIT_WS = "/usr/lib/cockpit/cockpit-ws"
COCKPIT_BRIDGE = "/usr/bin/cockpit-bridge"
PAGE = REPO / "cockpit"
SHOTS = BUILD / "cockpit"
APIKEYCTL = Path(os.environ.get("APIKEYCTL") or BUILD / "apikeyctl")
WAIT = 10.0

pytestmark = [
    pytest.mark.skipif(not (os.access(COCKPIT_WS, os.X_OK) and os.access(COCKPIT_BRIDGE, os.X_OK)),
                       reason="cockpit-ws and cockpit-bridge are not installed "
                              "(Debian packages cockpit-ws, cockpit-bridge)"),
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                       reason="chromium is not installed (Debian package chromium)"),
]


# ---------------------------------------------------------------- apikeyctl


def ctl(socket_path, *args, input=None):
    """apikeyctl as root (an admin) on `socket_path`: (exit code, stdout + stderr)."""
    p = subprocess.run([str(APIKEYCTL), "--socket", str(socket_path)] + [str(a) for a in args],
                       input=input, stdin=None if input is not None else subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30,
                       env={**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"})
    return p.returncode, p.stdout + p.stderr


def create_key(socket_path, name, *args):
    rc, out = ctl(socket_path, "--json", "create", name, *args)
    assert rc == 0, out
    return json.loads(out[:out.rindex("}") + 1])


def verify(socket_path, token, *args):
    """The code `apikeyctl verify` reports, with its exit code."""
    rc, out = ctl(socket_path, "--json=short", "verify", *args, input=token + "\n")
    return rc, json.loads(out.splitlines()[0])["code"]


# ---------------------------------------------------------------- cockpit-ws


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable(path):
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & 0o001 for d in (p, *p.parents))


class Cockpit:
    """cockpit-ws --local-session=cockpit-bridge as `user`, serving the page
    from the tree and pointing it at `socket_path`."""

    def __init__(self, user, socket_path):
        pw = pwd.getpwnam(user)
        self.user, self.uid = user, pw.pw_uid
        self.before = set(_user_processes(self.uid))
        self.dir = Path(tempfile.mkdtemp(prefix="akt-cockpit-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        pkgdir = self.dir / "xdg" / "cockpit"
        pkgdir.mkdir(parents=True)
        # The page as the tree has it: linked when the user may read the
        # tree there, else copied.
        if _reachable(PAGE):
            (pkgdir / "apikeys").symlink_to(PAGE)
        else:
            shutil.copytree(PAGE, pkgdir / "apikeys")
        # The user's own override of the page's manifest names the socket.
        confdir = self.dir / "config" / "cockpit"
        confdir.mkdir(parents=True)
        (confdir / "apikeys.override.json").write_text(
            json.dumps({"config": {"socket": str(socket_path)}}))
        (self.dir / "empty").mkdir()
        for d in ("home", "run"):
            (self.dir / d).mkdir(mode=0o700)
        for d in ("xdg", "xdg/cockpit", "config", "config/cockpit", "home", "run"):
            os.chown(self.dir / d, pw.pw_uid, pw.pw_gid)
        self.port = _free_port()
        self.log_path = self.dir / "cockpit-ws.log"
        env = ["PATH=/usr/bin:/bin", f"HOME={self.dir}/home", "LANG=C.UTF-8", "TZ=UTC",
               f"XDG_DATA_HOME={self.dir}/xdg", f"XDG_CONFIG_HOME={self.dir}/config",
               f"XDG_CONFIG_DIRS={self.dir}/empty", f"XDG_RUNTIME_DIR={self.dir}/run",
               # Set, so that the bridge starts no session bus and no ssh-agent.
               "DBUS_SESSION_BUS_ADDRESS=unix:path=/nonexistent", "SSH_AUTH_SOCK=/nonexistent"]
        argv = ["setpriv", f"--reuid={user}", f"--regid={pw.pw_gid}", "--init-groups",
                "env", "-i"] + env + [COCKPIT_WS, "--no-tls", "--address", "127.0.0.1",
                                      "--port", str(self.port),
                                      "--local-session=cockpit-bridge"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         cwd=self.dir, start_new_session=True)
        deadline = time.monotonic() + WAIT
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"cockpit-ws did not listen on {self.port}:\n"
                                         f"{self.log()}")
                time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}/cockpit/@localhost/apikeys/index.html"

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        """The bridge and whatever it started, then cockpit-ws, each by its
        PID (the bridge first, so that cockpit-ws reaps it); the processes
        this run left behind as the user."""
        ws = self.proc.pid
        for pid in session_pids(ws):
            if pid != ws:
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while [p for p in session_pids(ws) if p != ws] and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        stop_session(ws)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)
        return [f"{pid} {_command(pid)}" for pid in _user_processes(self.uid)
                if pid not in self.before]


def _command(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "(gone)"


def _user_processes(uid):
    """The live processes of `uid` but the test sessions' own Python
    children (other tests run calls as the same test users)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        state = stat[stat.rindex(")") + 2]
        if state != "Z" and not comm.startswith("python"):
            pids.append(int(entry))
    return pids


@pytest.fixture
def browse(test_users):
    """browse(user, socket_path) -> Chromium on the page, served by a fresh
    cockpit-ws run as `user`.  At teardown the browser, cockpit-ws, the
    bridge and their children are stopped by PID, and none may be left."""
    runs = []

    def start(user, socket_path):
        cockpit = Cockpit(user, socket_path)
        runs.append((cockpit, None))
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser = Chromium(log_path=str(cockpit.dir / "chromium.log"))
        runs[-1] = (cockpit, browser)
        browser.navigate(cockpit.url)
        return browser

    yield start
    problems = []
    for cockpit, browser in runs:
        if browser is not None:
            chromium_pid = browser.proc.pid
            browser.close()
            if session_pids(chromium_pid):
                problems.append(f"chromium left {session_pids(chromium_pid)}")
        ws_pid = cockpit.proc.pid
        left = cockpit.stop()
        if left or session_pids(ws_pid):
            problems.append(f"processes of {cockpit.user} left: {left}")
    assert not problems, problems


# ---------------------------------------------------------------- the page


def rows(b):
    """{id: row text} of the keys the table shows."""
    return b.evaluate("""Object.fromEntries(Array.from(
        document.querySelectorAll('#keys-body tr')).map(r => [r.dataset.keyId, r.innerText]))""")


def row_cell(b, key_id, column):
    return b.evaluate(f"document.querySelector('[data-key-id=\"{key_id}\"] .col-{column}')"
                      ".innerText")


def wait_loaded(b):
    b.wait_for("document.getElementById('page').getAttribute('aria-busy') === 'false'",
               what="the page to load")


def wait_rows(b, ids, what, ordered=False):
    """Wait until the table shows exactly the keys `ids` (in that order)."""
    want = json.dumps(list(ids) if ordered else sorted(ids), separators=(",", ":"))
    b.wait_for(f"JSON.stringify(Array.from(document.querySelectorAll('#keys-body tr'))"
               f".map(r => r.dataset.keyId){'' if ordered else '.sort()'}) === "
               f"{json.dumps(want)}", what=what)


def set_status_filter(b, status):
    b.evaluate(f"""(() => {{ const s = document.getElementById('status-filter');
        s.value = {json.dumps(status)}; s.dispatchEvent(new Event('change')); }})()""")


def row_action(b, key_id, action, screenshot=None):
    b.click(f"[data-key-id='{key_id}'] .kebab")
    b.wait_for(f"document.activeElement && document.activeElement.dataset.action === '{action}'"
               f" || document.querySelector(\"[data-key-id='{key_id}'] [data-action='{action}']\")",
               what=f"the {action} menu item")
    if screenshot:
        b.screenshot(SHOTS / screenshot)
    b.click(f"[data-key-id='{key_id}'] [data-action='{action}']")


def token_traces(b, token):
    """Where the page still holds `token`: its DOM, form values, storage, state."""
    return b.evaluate(f"""(() => {{
        const t = {json.dumps(token)};
        const where = [];
        if (document.documentElement.outerHTML.includes(t)) where.push("DOM");
        for (const e of document.querySelectorAll("input, textarea"))
            if (e.value.includes(t)) where.push("field " + e.id);
        for (const s of [localStorage, sessionStorage])
            for (let i = 0; i < s.length; i++)
                if ((s.getItem(s.key(i)) || "").includes(t)) where.push("storage " + s.key(i));
        if (JSON.stringify(window.apikeysPage.state).includes(t)) where.push("page state");
        return where;
    }})()""")


def daemon_keys(root, status=None):
    params = {"status": status} if status else {}
    return {k["id"]: k for k in root.list(**params)["keys"]}


# ---------------------------------------------------------------- tests


def test_admin_manages_keys_through_the_page(apikeyd, browse):
    """An admin sees every key, creates one through the dialog (its token
    verifies; closing the dialog forgets it), sorts and filters, uses the
    row actions, each seen at the next verify, and shows and rotates the
    shared secret."""
    root = apikeyd.client()
    sock = apikeyd.socket
    made = create_key(sock, "ci-deploy", "--owner", ALICE, "--description", "made by apikeyctl",
                      "--scope", "sshd", "--expires", "never")
    made_id = made["key"]["id"]

    b = browse(ADMIN, sock)
    wait_loaded(b)
    wait_rows(b, [made_id], "the key apikeyctl created")
    assert row_cell(b, made_id, "last_used") == "Never"
    assert row_cell(b, made_id, "expires") == "Never"
    assert row_cell(b, made_id, "owner") == ALICE
    assert "made by apikeyctl" in row_cell(b, made_id, "name")
    assert row_cell(b, made_id, "status") == "Enabled"
    assert not b.evaluate("document.getElementById('shared-secret-button').hidden")
    b.screenshot(SHOTS / "table.png")

    # Create through the dialog, submitted with Enter.
    b.click("#create-button")
    b.wait_for("document.activeElement && document.activeElement.id === 'create-name'",
               what="the create dialog, its name field focused")
    b.fill("#create-description", "deploys the web site")
    assert b.evaluate("Array.from(document.querySelectorAll('#create-owner-list option'))"
                      ".map(o => o.value)") == [ADMIN, ALICE]
    b.fill("#create-owner", BOB)
    b.fill("#create-scope", "sshd, sudo")
    b.click("#create-role-custom")
    b.click("#create-permission-read")
    b.click("#create-permission-write")
    b.evaluate("""(() => { const k = document.getElementById('create-expires');
        k.value = 'date'; k.dispatchEvent(new Event('change'));
        document.getElementById('create-expires-date').value = '2030-01-31'; })()""")
    b.fill("#create-name", "web-deploy")
    b.screenshot(SHOTS / "create-dialog.png")
    b.press("Enter")
    b.wait_for("document.getElementById('token-value')", what="the shown-once dialog")
    token = b.evaluate("document.getElementById('token-value').value")
    assert b.wait_for("document.getElementById('token-warning').innerText").startswith(
        "Copy the token now. It will not be shown again")
    b.screenshot(SHOTS / "token-dialog.png")
    rc, code = verify(sock, token, "--service", "sshd", "--rhost", "192.0.2.7")
    assert (rc, code) == (0, "VALID")
    new = [k for k in daemon_keys(root).values() if k["name"] == "web-deploy"]
    assert len(new) == 1, new
    new = new[0]
    assert (new["owner"], new["role"], new["permissions"], new["scope"],
            new.get("description"), new["expires_at"]) == \
        (BOB, "custom", ["read", "write"], ["sshd", "sudo"], "deploys the web site",
         "2030-01-31T23:59:59Z")
    new_id = new["id"]

    # Escape closes it; nothing of the token stays in the page.
    b.press("Escape")
    b.wait_for("!document.getElementById('token-dialog')", what="the dialog to close")
    assert token_traces(b, token) == []
    wait_rows(b, [made_id, new_id], "the new key in the table")
    expires = b.evaluate(f"document.querySelector(\"[data-key-id='{new_id}'] .col-expires time\")"
                         ".title")
    assert expires.endswith("(2030-01-31T23:59:59Z)"), expires
    assert re.fullmatch(r"in \d+ years", row_cell(b, new_id, "expires")), \
        row_cell(b, new_id, "expires")

    # Newest first; a column header sorts, and again the other way.
    wait_rows(b, [new_id, made_id], "newest first", ordered=True)
    b.click("[data-sort='name']")
    wait_rows(b, [made_id, new_id], "sorted by name", ordered=True)
    b.click("[data-sort='name']")
    wait_rows(b, [new_id, made_id], "sorted by name, descending", ordered=True)
    # The text filter matches names, descriptions, owners and ids.
    for text, want in (("WEB", [new_id]), ("apikeyctl", [made_id]), (made_id, [made_id]),
                       ("akt-", [made_id, new_id]), ("nothing like it", [])):
        b.fill("#text-filter", text)
        wait_rows(b, want, f"the keys matching {text!r}")
    b.fill("#text-filter", "")

    # The status filter shows exactly the keys of that status.
    for status in ("enabled", "disabled", "revoked", "expired", "all"):
        set_status_filter(b, status)
        want = daemon_keys(root, None if status == "all" else status)
        wait_rows(b, want, f"the {status} keys")
    set_status_filter(b, "disabled")
    b.wait_for("document.getElementById('empty-state-title').innerText === "
               "'No keys match the filter'", what="the filtered empty state")

    # Disable from the Enabled view: the key leaves it, and stops verifying.
    set_status_filter(b, "enabled")
    wait_rows(b, [made_id, new_id], "the enabled keys")
    row_action(b, new_id, "disable")
    wait_rows(b, [made_id], "the disabled key to leave the Enabled view")
    assert verify(sock, token) == (5, "DISABLED")
    set_status_filter(b, "all")
    wait_rows(b, [made_id, new_id], "every key")
    # Its last use, listed again after the action: when, for what, from where.
    last_used = row_cell(b, new_id, "last_used")
    assert re.fullmatch(r"(just now|1 minute ago)\nsshd from 192\.0\.2\.7", last_used), last_used
    b.call("Emulation.setEmulatedMedia",
           {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    b.wait_for("document.documentElement.classList.contains('pf-theme-dark')", what="dark")
    b.screenshot(SHOTS / "table-dark.png")
    b.call("Emulation.setEmulatedMedia",
           {"features": [{"name": "prefers-color-scheme", "value": "light"}]})

    # Enable from the Disabled view: it leaves that one, and verifies again.
    set_status_filter(b, "disabled")
    wait_rows(b, [new_id], "the disabled key")
    row_action(b, new_id, "enable")
    wait_rows(b, [], "the enabled key to leave the Disabled view")
    assert verify(sock, token) == (0, "VALID")

    # Revoke, confirmed.
    set_status_filter(b, "all")
    wait_rows(b, [made_id, new_id], "every key")
    row_action(b, new_id, "revoke")
    b.wait_for("document.getElementById('revoke-dialog')", what="the revoke confirmation")
    b.click("#revoke-confirm")
    b.wait_for(f"document.querySelector(\"[data-key-id='{new_id}']\").dataset.status === "
               "'revoked'", what="the key shown revoked")
    assert row_cell(b, new_id, "status") == "Revoked"
    assert verify(sock, token) == (5, "REVOKED")

    # Delete, confirmed by typing the name.
    row_action(b, new_id, "delete", screenshot="row-menu.png")
    b.wait_for("document.getElementById('delete-dialog')", what="the delete confirmation")
    assert b.evaluate("document.getElementById('delete-confirm').disabled")
    b.fill("#delete-confirm-name", "web-deplo")
    assert b.evaluate("document.getElementById('delete-confirm').disabled")
    b.fill("#delete-confirm-name", "web-deploy")
    b.screenshot(SHOTS / "delete-dialog.png")
    b.press("Enter")
    wait_rows(b, [made_id], "the deleted key to go")
    assert verify(sock, token) == (5, "NOT_FOUND")

    # The shared secret: hidden until shown.
    b.click("#shared-secret-button")
    b.wait_for("document.getElementById('shared-secret-dialog')", what="the shared secret dialog")
    assert set(b.evaluate("document.getElementById('shared-secret-value').value")) == {"\u2022"}
    b.click("#shared-secret-show")
    secret = root.ok(f"{IFACE}.GetSharedSecret")["secret"]
    b.wait_for(f"document.getElementById('shared-secret-value').value === {json.dumps(secret)}",
               what="the shared secret shown")
    b.screenshot(SHOTS / "shared-secret.png")
    # Rotate, confirmed: the page shows the new secret, which the daemon signs with.
    b.click("#shared-secret-rotate")
    b.wait_for("document.getElementById('rotate-dialog')", what="the rotate confirmation")
    b.click("#rotate-confirm")
    b.wait_for(f"!document.getElementById('rotate-dialog') && document.getElementById("
               f"'shared-secret-value').value !== {json.dumps(secret)}", what="a new secret")
    secret = root.ok(f"{IFACE}.GetSharedSecret")["secret"]
    assert b.evaluate("document.getElementById('shared-secret-value').value") == secret
    assert b.evaluate("document.activeElement.closest('#shared-secret-dialog') !== null")
    b.press("Escape")
    b.wait_for("!document.getElementById('shared-secret-dialog')", what="the dialog to close")
    assert token_traces(b, secret) == []


def test_field_error_from_the_daemon_is_shown_beside_the_field(apikeyd, browse):
    """A value the daemon refuses comes back with its reason beside the field
    it names; the dialog stays open and nothing is created."""
    root = apikeyd.client()
    # The reason the daemon gives for a scope entry with a '/', in its words.
    err, params = root.err(f"{IFACE}.Create", {"name": "x", "scope": ["web/server"]})
    assert err == "org.varlink.service.InvalidParameter" and params["parameter"] == "scope"
    reason = params["reason"]

    b = browse(ADMIN, apikeyd.socket)
    wait_loaded(b)
    b.wait_for("!document.getElementById('empty-state').hidden", what="the empty state")
    assert b.evaluate("document.getElementById('empty-state-title').innerText") == "No API keys"
    b.click("#empty-state-action")
    b.wait_for("document.getElementById('create-dialog')", what="the create dialog")
    # An empty name is refused before anything is sent.
    b.click("#create-submit")
    assert b.wait_for("document.getElementById('create-name-error').innerText") == \
        "A name is required."
    b.fill("#create-name", "x")
    b.fill("#create-scope", "web/server")
    b.click("#create-submit")
    shown = b.wait_for("document.getElementById('create-scope-error').innerText",
                       what="the scope's error")
    assert shown == reason[0].upper() + reason[1:]
    assert "web/server" in shown or "scope" in shown
    assert b.evaluate("document.getElementById('create-scope').getAttribute('aria-invalid')") \
        == "true"
    assert b.evaluate("document.activeElement.id") == "create-scope"
    b.screenshot(SHOTS / "create-error.png")
    assert root.list()["keys"] == []


def detail_field(b, field):
    """The text the key detail shows for `field` (None: not shown)."""
    return b.evaluate(f"(() => {{ const r = document.querySelector("
                      f"\"#detail-dialog [data-field='{field}'] dd\"); "
                      f"return r ? r.innerText : null; }})()")


def open_detail(b, key_id, name):
    b.click(f"[data-key-id='{key_id}'] .key-name-link")
    b.wait_for("document.getElementById('detail-body') && document.getElementById('detail-body')"
               ".getAttribute('aria-busy') === 'false' && document.getElementById('detail-usage')"
               ".getAttribute('aria-busy') === 'false'", what="the key detail")
    assert b.evaluate("document.querySelector('#detail-dialog .modal-title').innerText") == \
        f"API key \u201C{name}\u201D"


def test_conditions_and_limits_through_the_create_form(apikeyd, browse):
    """Sources, not before, max uses and rate limit given in the create form
    reach the daemon and show in the key's detail, and are changed through
    the edit form; a value the daemon refuses is shown beside its field, in
    the daemon's words."""
    root = apikeyd.client()
    err, params = root.err(f"{IFACE}.Create", {"name": "x", "sources": ["10.0.0.1/8"]})
    assert err == "org.varlink.service.InvalidParameter" and params["parameter"] == "sources"
    reason = params["reason"]

    b = browse(ADMIN, apikeyd.socket)
    wait_loaded(b)
    b.click("#create-button")
    b.wait_for("document.getElementById('create-dialog')", what="the create dialog")
    b.fill("#create-name", "ci-limited")
    b.fill("#create-sources", "10.0.0.1/8")
    b.click("#create-submit")
    shown = b.wait_for("document.getElementById('create-sources-error').innerText",
                       what="the sources' error")
    assert shown == reason[0].upper() + reason[1:]
    assert b.evaluate("document.getElementById('create-sources').getAttribute('aria-invalid')") \
        == "true"
    assert root.list()["keys"] == []
    b.screenshot(SHOTS / "create-sources-error.png")

    b.fill("#create-sources", "10.0.0.0/8, build.example.com")
    b.fill("#create-not-before", "2h")
    b.fill("#create-max-uses", "5")
    b.fill("#create-rate-limit", "100/1m")
    b.click("#create-submit")
    b.wait_for("document.getElementById('token-value')", what="the shown-once dialog")
    key = root.list()["keys"][0]
    got = root.ok(f"{IFACE}.Get", {"id": key["id"]})["key"]
    assert (got["sources"], got["max_uses"], got["uses_left"], got["rate_limit"]) == \
        (["10.0.0.0/8", "build.example.com"], 5, 5, "100/1m"), got
    assert got["not_before"] > got["created_at"], got
    b.press("Escape")
    b.wait_for("!document.getElementById('token-dialog')", what="the dialog to close")
    wait_rows(b, [key["id"]], "the new key")

    open_detail(b, key["id"], "ci-limited")
    assert detail_field(b, "sources") == "10.0.0.0/8, build.example.com"
    assert detail_field(b, "uses") == "5 of 5"
    assert detail_field(b, "rate_limit") == "100/1m (successful verifies a window)"
    assert re.fullmatch(r"in (2 hours|1\d\d minutes)", detail_field(b, "not_before")), \
        detail_field(b, "not_before")
    assert b.evaluate("document.querySelector(\"#detail-dialog [data-field='not_before'] time\")"
                      ".getAttribute('datetime')") == got["not_before"]
    assert detail_field(b, "replaced_by") is None
    assert b.evaluate("document.getElementById('usage-empty').innerText") == "No recorded uses."
    b.screenshot(SHOTS / "key-detail.png")
    b.press("Escape")
    b.wait_for("!document.getElementById('detail-dialog')", what="the detail to close")

    # Changed through the edit form: a refused rate limit beside its field,
    # then a narrower source list, fewer uses and no rate limit.
    err, params = root.err(f"{IFACE}.Update", {"id": key["id"], "rate_limit": "lots"})
    assert err == "org.varlink.service.InvalidParameter" and params["parameter"] == "rate_limit"
    reason = params["reason"]
    row_action(b, key["id"], "edit")
    b.wait_for("document.getElementById('edit-dialog')", what="the edit dialog")
    assert b.evaluate("['sources', 'max-uses', 'rate-limit'].map(f => "
                      "document.getElementById('edit-' + f).value)") == \
        ["10.0.0.0/8, build.example.com", "5", "100/1m"]
    b.fill("#edit-rate-limit", "lots")
    b.click("#edit-submit")
    shown = b.wait_for("document.getElementById('edit-rate-limit-error').innerText",
                       what="the rate limit's error")
    assert shown == reason[0].upper() + reason[1:]
    b.fill("#edit-rate-limit", "")
    b.fill("#edit-max-uses", "3")
    b.fill("#edit-sources", "10.0.0.0/8")
    b.click("#edit-submit")
    b.wait_for("!document.getElementById('edit-dialog')", what="the edit dialog to close")
    got = root.ok(f"{IFACE}.Get", {"id": key["id"]})["key"]
    assert (got["sources"], got["max_uses"], got["uses_left"], got.get("rate_limit")) == \
        (["10.0.0.0/8"], 3, 3, None), got


def test_rotate_through_the_page_and_recent_uses(apikeyd, browse):
    """The detail lists the key's recent uses, newest first; Rotate (with a
    grace, retiring the old key at the new one's first use) shows the
    successor's token once, the old key shows its grace in the list and
    "Replaced by" in its detail, linking to the new key.  The daemon's text
    is shown as text."""
    root = apikeyd.client()
    sock = apikeyd.socket
    made = create_key(sock, "ci-rot", "--owner", ALICE, "--description", "<img src=x id=injected>")
    old_id, old_token = made["key"]["id"], made["token"]
    root.ok(f"{IFACE}.Verify", {"token": old_token, "service": "sshd", "rhost": "192.0.2.7",
                                "tty": "ssh"})
    root.ok(f"{IFACE}.Verify", {"token": old_token, "service": "sudo", "rhost": "198.51.100.9",
                                "tty": "/dev/pts/3"})

    b = browse(ADMIN, sock)
    wait_loaded(b)
    wait_rows(b, [old_id], "the key")
    open_detail(b, old_id, "ci-rot")
    assert detail_field(b, "description") == "<img src=x id=injected>"
    assert not b.evaluate("document.getElementById('injected')")
    uses = b.evaluate("Array.from(document.querySelectorAll('#usage-table tbody tr'))"
                      ".map(r => Array.from(r.cells).map(c => c.innerText))")
    assert uses == [["just now", "sudo", "198.51.100.9", "/dev/pts/3", "VALID"],
                    ["just now", "sshd", "192.0.2.7", "ssh", "VALID"]], uses
    b.screenshot(SHOTS / "key-usage.png")
    b.press("Escape")
    b.wait_for("!document.getElementById('detail-dialog')", what="the detail to close")

    row_action(b, old_id, "rotate")
    b.wait_for("document.getElementById('key-rotate-dialog')", what="the rotate dialog")
    b.fill("#rotate-grace", "2h")
    b.click("#rotate-retire")
    b.screenshot(SHOTS / "key-rotate.png")
    b.click("#key-rotate-confirm")
    b.wait_for("document.getElementById('token-value')", what="the new token")
    token = b.evaluate("document.getElementById('token-value').value")
    assert b.evaluate("document.querySelector('#token-dialog .modal-title').innerText") == \
        "API key \u201Cci-rot\u201D rotated"
    old = root.ok(f"{IFACE}.Get", {"id": old_id})["key"]
    new_id = old["replaced_by"]
    new = root.ok(f"{IFACE}.Get", {"id": new_id})["key"]
    assert (new["replaces"], new["retire_on_first_use"]) == (old_id, True), new
    b.press("Escape")
    b.wait_for("!document.getElementById('token-dialog')", what="the dialog to close")
    assert token_traces(b, token) == []
    wait_rows(b, [old_id, new_id], "both keys")
    status = row_cell(b, old_id, "status")
    assert re.fullmatch(r"Rotated, grace ends in (2 hours|1\d\d minutes)", status), status
    assert row_cell(b, new_id, "status") == "Enabled"

    open_detail(b, old_id, f"ci-rot (old {old_id})")
    assert detail_field(b, "replaced_by") == f"{new_id} (this key works until it expires)"
    b.click(f"#detail-dialog [data-key-link='{new_id}']")
    b.wait_for(f"document.querySelector('#detail-dialog .modal-title').innerText === "
               f"'API key \u201Cci-rot\u201D'", what="the new key's detail")
    b.wait_for("document.getElementById('detail-usage').getAttribute('aria-busy') === 'false'",
               what="the new key's uses")
    assert detail_field(b, "replaces") == \
        f"{old_id} (which stops working at this key's first use)"
    assert detail_field(b, "replaced_by") is None

    # The new key's first use retires the old one.
    assert verify(sock, token) == (0, "VALID")
    assert verify(sock, old_token) == (5, "EXPIRED")


def test_a_key_the_daemon_disabled_as_unused(daemon, browse):
    """A key disabled for disable_unused_after shows "Disabled (unused)" in
    the list, as apikeyctl list says "disabled (unused)", and why in its
    detail."""
    d = daemon(config={"disable_unused_after": "2s"})
    root = d.client()
    key_id = root.create("idle", owner=ALICE)["key"]["id"]
    deadline = time.monotonic() + 6
    while root.get(key_id)["status"] != "disabled":
        assert time.monotonic() < deadline, root.get(key_id)
        time.sleep(0.2)
    b = browse(ADMIN, d.socket)
    wait_loaded(b)
    wait_rows(b, [key_id], "the idle key")
    assert row_cell(b, key_id, "status") == "Disabled (unused)"
    open_detail(b, key_id, "idle")
    assert detail_field(b, "disabled_reason") == \
        "unused (not used for longer than the installation allows)"


def test_non_admin_sees_only_their_keys_and_no_shared_secret(apikeyd, browse, as_user):
    """Someone outside the admin group sees their own keys only, creates keys
    for themself only, and is not offered the shared secret (the daemon
    refuses it to them)."""
    sock = apikeyd.socket
    mine = create_key(sock, "alice-laptop", "--owner", ALICE)["key"]["id"]
    create_key(sock, "bob-laptop", "--owner", BOB)
    create_key(sock, "admin-ci", "--owner", ADMIN)
    err, params = as_user(ALICE, socket=sock).err(f"{IFACE}.GetSharedSecret")
    assert err == f"{IFACE}.PermissionDenied", (err, params)

    b = browse(ALICE, sock)
    wait_loaded(b)
    wait_rows(b, [mine], "alice's own key only")
    b.screenshot(SHOTS / "table-not-admin.png")
    assert b.evaluate("document.getElementById('shared-secret-button').hidden")

    b.click("#create-button")
    b.wait_for("document.getElementById('create-dialog')", what="the create dialog")
    assert b.evaluate("[document.getElementById('create-owner').value, "
                      "document.getElementById('create-owner').readOnly]") == [ALICE, True]
    b.fill("#create-name", "alice-script")
    b.press("Enter")
    b.wait_for("document.getElementById('token-value')", what="the shown-once dialog")
    token = b.evaluate("document.getElementById('token-value').value")
    b.click("#token-dialog [data-dialog-close]")
    b.wait_for("!document.getElementById('token-dialog')", what="the dialog to close")
    assert token_traces(b, token) == []
    rc, code = verify(apikeyd.socket, token)
    assert (rc, code) == (0, "VALID")
    new = [k for k in apikeyd.client().list()["keys"] if k["name"] == "alice-script"]
    assert [k["owner"] for k in new] == [ALICE]
    wait_rows(b, [mine, new[0]["id"]], "alice's two keys")

    # The row menu by keyboard: Enter opens it on its first item, the arrows
    # move, Escape closes it back onto its button.
    b.evaluate(f"document.querySelector(\"[data-key-id='{mine}'] .kebab\").focus()")
    b.press("Enter")
    b.wait_for("document.activeElement.dataset.action === 'disable'", what="the menu open")
    b.press("ArrowDown")
    b.wait_for("document.activeElement.dataset.action === 'revoke'", what="the next item")
    b.press("Escape")
    b.wait_for("document.activeElement.classList.contains('kebab') && "
               "document.activeElement.getAttribute('aria-expanded') === 'false'",
               what="the menu closed, its button focused")

    # A key an admin disabled: alice's Enable is refused, and the page says why.
    rc, out = ctl(sock, "disable", mine)
    assert rc == 0, out
    b.evaluate("window.apikeysPage.refresh()")
    b.wait_for(f"document.querySelector(\"[data-key-id='{mine}']\").dataset.status === "
               "'disabled'", what="the key disabled by the admin")
    assert row_cell(b, mine, "status") == "Disabled by an admin"
    row_action(b, mine, "enable")
    alert = b.wait_for("!document.getElementById('page-alert').hidden && "
                       "document.getElementById('page-alert-text').innerText",
                       what="the refusal")
    err, params = as_user(ALICE, socket=sock).err(f"{IFACE}.Enable", {"id": mine})
    assert err == f"{IFACE}.PermissionDenied"
    assert alert == f"\u201Calice-laptop\u201D: Not permitted: {params['reason']}"


def test_daemon_not_running(daemon, browse):
    """With no daemon behind the socket the page says so plainly, and lists
    the keys once the daemon is there and the user tries again."""
    d = daemon(start=False)
    b = browse(ALICE, d.socket)
    wait_loaded(b)
    text = b.wait_for("!document.getElementById('daemon-error').hidden && "
                      "document.getElementById('daemon-error').innerText",
                      what="the unreachable message")
    assert "The API key service cannot be reached" in text
    assert (f"The API key service (apikeyd) is not running: its socket {d.socket} does not "
            "exist or does not answer.") in text
    assert b.evaluate("document.getElementById('create-button').disabled")
    assert b.evaluate("document.getElementById('table-wrap').hidden")
    b.screenshot(SHOTS / "daemon-not-running.png")

    d.start()
    create_key(d.socket, "back", "--owner", ALICE)
    b.click("#retry-button")
    b.wait_for("document.querySelectorAll('#keys-body tr').length === 1",
               what="the key once the daemon runs")
    assert b.evaluate("document.getElementById('daemon-error').hidden")


def test_a_list_larger_than_one_piece(apikeyd, browse):
    """A List reply of about 170 KB reaches the page in several pieces of
    the bridge's (64 KiB at most) and is put together again."""
    root = apikeyd.client()
    ids = [root.create(f"bulk-{i:03}", owner=ALICE,
                       description=f"{i:03} " + "d" * 1000)["key"]["id"] for i in range(150)]
    b = browse(ADMIN, apikeyd.socket)
    wait_loaded(b)
    wait_rows(b, ids, "all 150 keys")
    assert row_cell(b, ids[149], "name") == "bulk-149\n149 " + "d" * 1000


def test_the_page_connects_again_after_the_daemon_closes_an_idle_connection(daemon, browse):
    """The daemon closes a client idle for client_timeout; the page's next
    action opens a new connection and works."""
    d = daemon(config={"client_timeout": "1s"})
    key = create_key(d.socket, "idle", "--owner", ALICE)
    key_id = key["key"]["id"]
    b = browse(ADMIN, d.socket)
    wait_loaded(b)
    wait_rows(b, [key_id], "the key")
    # The daemon counts its connections: wait until the page's is gone.
    root = d.client()
    deadline = time.monotonic() + WAIT
    while root.ok(f"{IFACE}.GetStatus")["connections"] > 1:
        assert time.monotonic() < deadline, "the daemon kept the page's idle connection"
        time.sleep(0.1)
    row_action(b, key_id, "disable")
    b.wait_for(f"document.querySelector(\"[data-key-id='{key_id}']\").dataset.status === "
               "'disabled'", what="the key shown disabled")
    assert b.evaluate("document.getElementById('page-alert').hidden")
    assert verify(d.socket, key["token"]) == (5, "DISABLED")


# ---------------------------------------------------------------- a peer that is not apikeyd


class OddPeer:
    """A Varlink server on a socket of its own that answers GetStatus and
    List the way `answer(method)` says, writing each answer in pieces of
    `piece` bytes `gap` seconds apart (so that the bridge reads and passes
    them on one by one); a thread serves one connection after another."""

    def __init__(self, answer, piece, gap):
        self.dir = _short_socket_dir()
        self.path = str(self.dir / "io.apikeyd.Keys")
        self.answer, self.piece, self.gap = answer, piece, gap
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                buf = b""
                try:
                    while not self.stopping:
                        while b"\0" not in buf:
                            chunk = conn.recv(65536)
                            if not chunk:
                                raise EOFError
                            buf += chunk
                        msg, buf = buf.split(b"\0", 1)
                        data = self.answer(json.loads(msg)["method"])
                        for i in range(0, len(data), self.piece):
                            conn.sendall(data[i:i + self.piece])
                            if self.gap:
                                time.sleep(self.gap)
                except (EOFError, OSError):
                    pass

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def odd_peer():
    peers = []

    def start(answer, piece=1, gap=0):
        peers.append(OddPeer(answer, piece, gap))
        return peers[-1]

    yield start
    for p in peers:
        p.close()


def _reply(params):
    return json.dumps({"parameters": params}, ensure_ascii=False).encode() + b"\0"


ODD_KEY = {"id": "AbCdEfGhIjKl", "name": "clé ключ 🔑", "description": "日本語の説明",
           "owner": ALICE, "role": "readonly", "permissions": ["read"], "scope": [],
           "status": "enabled", "created_at": "2026-01-01T00:00:00Z"}
ODD_STATUS = {"version": "0", "started_at": "2026-01-01T00:00:00Z", "state_dir": "/x",
              "admin": False, "connections": 1,
              "keys": {"enabled": 1, "disabled": 0, "revoked": 0, "expired": 0}}


def test_answers_in_one_byte_pieces_split_inside_characters(odd_peer, browse):
    """Every answer arrives one byte at a time, UTF-8 characters cut in the
    middle: the page joins the bytes before it decodes them."""
    peer = odd_peer(lambda m: _reply(ODD_STATUS if m.endswith("GetStatus")
                                     else {"keys": [ODD_KEY]}), piece=1, gap=0.001)
    b = browse(ALICE, peer.path)
    wait_loaded(b)
    wait_rows(b, [ODD_KEY["id"]], "the key")
    assert row_cell(b, ODD_KEY["id"], "name") == "clé ключ 🔑\n日本語の説明"


def test_an_answer_that_is_not_a_reply_is_reported(odd_peer, browse):
    """A peer that answers List with bytes that are not a Varlink reply (not
    JSON, invalid UTF-8) gets a clear message, not a page waiting for ever."""
    peer = odd_peer(lambda m: _reply(ODD_STATUS) if m.endswith("GetStatus")
                    else b"\xff\xfe{not json\0", piece=4096)
    b = browse(ALICE, peer.path)
    wait_loaded(b)
    text = b.wait_for("!document.getElementById('daemon-error').hidden && "
                      "document.getElementById('daemon-error').innerText",
                      what="the error message")
    assert f"The connection to the API key service at {peer.path} failed (protocol-error: " \
           "the daemon sent a message that is not a Varlink reply)." in text


def test_a_socket_nobody_listens_on(browse):
    """A socket file left behind by a daemon that is gone: the same plain
    message as a missing socket."""
    d = _short_socket_dir()
    try:
        path = str(d / "io.apikeyd.Keys")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(path)
        os.chmod(path, 0o666)
        b = browse(ALICE, path)
        wait_loaded(b)
        text = b.wait_for("!document.getElementById('daemon-error').hidden && "
                          "document.getElementById('daemon-error').innerText",
                          what="the unreachable message")
        assert (f"The API key service (apikeyd) is not running: its socket {path} does not "
                "exist or does not answer.") in text
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_socket_the_user_may_not_open(browse):
    """A socket the user has no write permission on: the page says so."""
    d = _short_socket_dir()
    try:
        path = str(d / "io.apikeyd.Keys")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(path)
            s.listen(1)
            os.chmod(path, 0o600)
            b = browse(ALICE, path)
            wait_loaded(b)
            text = b.wait_for("!document.getElementById('daemon-error').hidden && "
                              "document.getElementById('daemon-error').innerText",
                              what="the refusal")
        assert f"You may not connect to the API key service's socket {path}." in text
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- fuzzing the page's decoder


FUZZ_JS = REPO / "tests" / "fuzz" / "fuzz_varlink_js.js"


def test_fuzz_the_pages_varlink_client():
    """tests/fuzz/fuzz_varlink_js.js on cockpit/varlink.js in Chromium for
    APIKEYD_JS_FUZZ_SECONDS (5); APIKEYD_JS_FUZZ_SEED replays a failure."""
    seconds = float(os.environ.get("APIKEYD_JS_FUZZ_SECONDS", "5"))
    seed = int(os.environ.get("APIKEYD_JS_FUZZ_SEED", "0")) or \
        (int.from_bytes(os.urandom(4), "little") or 1)
    b = Chromium()
    try:
        b.evaluate((PAGE / "varlink.js").read_text())
        b.evaluate(FUZZ_JS.read_text())
        r = b.evaluate(f"fuzzVarlink({seconds}, {seed})", timeout=seconds + 10)
    finally:
        b.close()
    assert r["failure"] is None, \
        f"{r['failure']}\n(replay with APIKEYD_JS_FUZZ_SEED={r['seed']})"
    print(f"fuzz_varlink_js: {r['runs']} rounds in {seconds} s from seed {seed}")
    assert r["runs"] > 100, r
