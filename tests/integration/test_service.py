# SPDX-License-Identifier: MIT
"""org.varlink.service: the API describes itself, and the daemon answers
exactly the methods its interface file declares."""

import os
import re
import select
import signal
import subprocess
import time

import pytest

from conftest import APIKEYD, IFACE, INTERFACE, INTERFACE_FILE, Daemon, NotifyListener

SERVICE = "org.varlink.service"
# Errors every Varlink service may answer with.
STANDARD_ERRORS = {
    f"{SERVICE}.{e}"
    for e in ("InterfaceNotFound", "MethodNotFound", "MethodNotImplemented",
              "InvalidParameter", "PermissionDenied", "ExpectedMore")
}


def test_get_info(root):
    r = root.call(f"{SERVICE}.GetInfo")
    assert set(r) == {"parameters"}
    info = r["parameters"]
    assert set(info) == {"vendor", "product", "version", "url", "interfaces"}
    assert info["vendor"] == "apikeyd"
    assert info["product"] == "apikeyd"
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["version"]), info["version"]
    assert info["url"].startswith("https://")
    assert info["interfaces"] == [SERVICE, IFACE]


def test_get_info_version_matches_the_binary(root):
    info = root.ok(f"{SERVICE}.GetInfo")
    out = subprocess.run([str(APIKEYD), "--version"], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    assert out == f"apikeyd {info['version']}\n"


def test_interface_description_is_the_interface_file(root):
    r = root.ok(f"{SERVICE}.GetInterfaceDescription", {"interface": IFACE})
    assert set(r) == {"description"}
    assert r["description"] == INTERFACE_FILE.read_text()


def test_service_interface_description(root):
    desc = root.ok(f"{SERVICE}.GetInterfaceDescription", {"interface": SERVICE})["description"]
    assert desc.startswith(f"interface {SERVICE}\n")
    for decl in ("method GetInfo()", "method GetInterfaceDescription(interface: string)",
                 "error InterfaceNotFound (interface: string)",
                 "error MethodNotFound (method: string)",
                 "error InvalidParameter (parameter: string)"):
        assert decl in desc


@pytest.mark.parametrize("iface", ["io.apikeyd.Nope", "org.varlink.service.GetInfo", "",
                                   "io.apikeyd.keys"])
def test_unknown_interface(root, iface):
    assert root.err(f"{SERVICE}.GetInterfaceDescription", {"interface": iface}) == (
        f"{SERVICE}.InterfaceNotFound", {"interface": iface})


def test_get_interface_description_needs_the_interface(root):
    assert root.err(f"{SERVICE}.GetInterfaceDescription", {}) == (
        f"{SERVICE}.InvalidParameter", {"parameter": "interface"})


def test_interface_file_declares_the_methods_of_the_design():
    # The contract: these may be added to, never renamed.
    for m in ("Create", "Verify", "List", "Get", "Update", "Disable", "Enable", "Revoke",
              "Delete", "GetSharedSecret", "RotateSharedSecret"):
        assert m in INTERFACE.method_names
        assert m in INTERFACE.methods, f"{m}: its declaration does not parse"
    assert INTERFACE.name == IFACE


@pytest.mark.parametrize("method", INTERFACE.method_names)
def test_every_declared_method_is_answered(root, method):
    """Called by root with no parameters, each method answers: with a reply,
    or with an error the interface (or org.varlink.service) declares; never
    MethodNotFound."""
    r = root.call(f"{IFACE}.{method}", {})
    if "error" in r:
        assert r["error"] != f"{SERVICE}.MethodNotFound", r
        declared = STANDARD_ERRORS | {f"{IFACE}.{e}" for e in INTERFACE.errors}
        assert r["error"] in declared, r
        if r["error"] == f"{SERVICE}.InvalidParameter":
            # Only a required parameter can be missing.
            required = [n for n, _, opt in INTERFACE.inputs(method) if not opt]
            assert r["parameters"]["parameter"] in required, r
    # The connection is still usable.
    assert root.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"


@pytest.mark.parametrize("method", [f"{IFACE}.Frobnicate", f"{IFACE}.create", f"{IFACE}.verify",
                                    f"{IFACE}.", f"{SERVICE}.Nope", "Create"])
def test_undeclared_method_is_not_found(root, method):
    assert root.err(method, {}) == (f"{SERVICE}.MethodNotFound", {"method": method})
    assert root.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"


@pytest.mark.parametrize("method,iface", [
    ("io.apikeyd.Other.Create", "io.apikeyd.Other"),
    (f"{IFACE}.Create.Extra", f"{IFACE}.Create"),
    ("io.apikeyd.keys.Create", "io.apikeyd.keys"),
    ("org.varlink.Service.GetInfo", "org.varlink.Service"),
    (".Verify", ""),
])
def test_call_to_an_interface_the_daemon_has_not_is_interface_not_found(root, method, iface):
    """The interface is everything before the method name's last dot."""
    assert root.err(method, {}) == (f"{SERVICE}.InterfaceNotFound", {"interface": iface})
    assert root.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"


@pytest.mark.parametrize("method,params", [
    (f"{SERVICE}.GetInfo", {}),
    (f"{IFACE}.Get", {"id": "000000000000"}),
    # A plain Verify takes the daemon's fast path; with the flag it must not.
    (f"{IFACE}.Verify", {"token": "apk_000000000000_" + "0" * 49}),
])
def test_upgrade_is_refused(root, method, params):
    """No method of the daemon hands its connection over to another
    protocol: a call asking to is refused, not answered as if it did not."""
    root.send({"method": method, "parameters": params, "upgrade": True})
    assert root.recv() == {"error": f"{SERVICE}.InvalidParameter",
                           "parameters": {"parameter": "upgrade"}}
    # The connection still speaks Varlink.
    assert root.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"
    root.send({"method": method, "parameters": params, "upgrade": False})
    assert root.recv().get("error") != f"{SERVICE}.InvalidParameter"


def test_only_declared_methods_exist(root):
    """No method beyond the interface file: the names answered by
    MethodNotFound never include a declared one, and vice versa."""
    for method in INTERFACE.method_names:
        assert root.call(f"{IFACE}.{method}", {}).get("error") != f"{SERVICE}.MethodNotFound"
    for undeclared in ("Audit", "Invite", "Rotate", "Export", "Import", "Search"):
        if undeclared in INTERFACE.method_names:
            continue
        assert root.err(f"{IFACE}.{undeclared}", {})[0] == f"{SERVICE}.MethodNotFound"


def test_reply_to_oneway_call_is_not_sent(root):
    root.call(f"{SERVICE}.GetInfo", oneway=True)
    # The next reply on the connection answers the next call.
    r = root.call(f"{IFACE}.Get", {"id": "000000000000"})
    assert r == {"error": f"{IFACE}.NoSuchKey", "parameters": {"id": "000000000000"}}


def test_more_is_refused_by_methods_that_do_not_stream(root):
    replies = root.call(f"{IFACE}.Get", {"id": "000000000000"}, more=True)
    assert replies == [{"error": f"{SERVICE}.InvalidParameter",
                        "parameters": {"parameter": "more"}}]


# ---------------------------------------------------------------- the watchdog


class WatchedDaemon(Daemon):
    """apikeyd with NOTIFY_SOCKET and WATCHDOG_USEC as systemd sets them for
    WatchdogSec=; WATCHDOG_PID is the daemon's own PID (a shell that execs
    it), or `watchdog_pid` when given."""

    def __init__(self, tmp_path, watchdog_usec, watchdog_pid=None):
        super().__init__(tmp_path, 0)
        self.notify = NotifyListener(self.socket_dir / "notify")
        self.notify.sock.setblocking(False)
        self.watchdog_usec = watchdog_usec
        self.watchdog_pid = watchdog_pid

    def argv(self):
        env = [f"NOTIFY_SOCKET={self.notify.path}"]
        if self.watchdog_usec is not None:
            env.append(f"WATCHDOG_USEC={self.watchdog_usec}")
        pid = "$$" if self.watchdog_pid is None else str(self.watchdog_pid)
        return (["env"] + env + ["sh", "-c", f'export WATCHDOG_PID={pid}; exec "$@"', "sh"] +
                super().argv())

    def pings(self, seconds):
        """The WATCHDOG=1 messages that arrive within `seconds`."""
        n = 0
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([self.notify.sock], [], [], left)[0]:
                msg = self.notify.sock.recv(4096).decode()
                self.notify.messages.append(msg)
                n += "WATCHDOG=1" in msg.split("\n")
        return n

    def cleanup(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                os.kill(self.pid, signal.SIGCONT)
            return super().cleanup()
        finally:
            self.notify.close()


@pytest.fixture
def watched(tmp_path):
    started = []

    def factory(watchdog_usec, watchdog_pid=None):
        d = WatchedDaemon(tmp_path, watchdog_usec, watchdog_pid)
        started.append(d)
        return d.start()

    yield factory
    problems = [p for p in (d.cleanup() for d in started) if p]
    assert not problems, "\n".join(problems)


def test_watchdog_pings_come_from_the_turning_loop(watched):
    """WATCHDOG_USEC of 0.4 s: the daemon pings at least every 0.3 s while
    its loop turns; stopped (SIGSTOP), it sends none; running again, it pings
    again."""
    d = watched(400000)
    d.notify.wait_for("READY=1")
    assert d.pings(1.5) >= 3, d.notify.messages
    os.kill(d.pid, signal.SIGSTOP)
    d.pings(0.1)  # what was on its way
    assert d.pings(1.2) == 0, d.notify.messages
    os.kill(d.pid, signal.SIGCONT)
    assert d.pings(1.0) >= 2, d.notify.messages
    # The loop that pings is the one that answers.
    d.client().ok("org.varlink.service.GetInfo")


@pytest.mark.parametrize("usec,pid", [(None, None), (400000, 1)],
                         ids=["no-watchdog", "watchdog-of-another-process"])
def test_no_watchdog_pings_unless_asked_for_this_process(watched, usec, pid):
    d = watched(usec, pid)
    d.notify.wait_for("READY=1")
    assert d.pings(1.0) == 0, d.notify.messages
