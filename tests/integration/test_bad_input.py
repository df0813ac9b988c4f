# SPDX-License-Identifier: MIT
"""Bad input: wrong parameters, broken messages, oversize messages, idle
clients and too many connections.  After each, the daemon still answers a
fresh client."""

import json
import socket
import time

import pytest

from conftest import IFACE, Varlink, field_refusal

INVALID = "org.varlink.service.InvalidParameter"
SERVICE = "org.varlink.service"
TOKEN_SHAPED_ID = "AAAAAAAAAAAA"


def still_answers(d):
    with Varlink(d.socket) as c:
        assert c.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"
    assert d.running()


@pytest.mark.parametrize("method,params,parameter", [
    # missing required parameters
    ("Create", {}, "name"),
    ("Create", {"name": None}, "name"),
    ("Verify", {}, "token"),
    ("Get", {}, "id"),
    ("Update", {"name": "x"}, "id"),
    ("Disable", {}, "id"),
    ("Enable", {}, "id"),
    ("Revoke", {}, "id"),
    ("Delete", {}, "id"),
    # wrong types
    ("Create", {"name": 5}, "name"),
    ("Create", {"name": ["k"]}, "name"),
    ("Create", {"name": "k", "description": 1}, "description"),
    ("Create", {"name": "k", "owner": []}, "owner"),
    ("Create", {"name": "k", "role": 1}, "role"),
    ("Create", {"name": "k", "permissions": "read"}, "permissions"),
    ("Create", {"name": "k", "permissions": [1]}, "permissions"),
    ("Create", {"name": "k", "scope": "sshd"}, "scope"),
    ("Create", {"name": "k", "scope": [None]}, "scope"),
    ("Create", {"name": "k", "expires": 30}, "expires"),
    ("Create", {"name": "k", "expires": {"days": 30}}, "expires"),
    ("Verify", {"token": 5}, "token"),
    ("Verify", {"token": "t", "service": 1}, "service"),
    ("Verify", {"token": "t", "user": True}, "user"),
    ("Verify", {"token": "t", "rhost": 1.5}, "rhost"),
    ("Verify", {"token": "t", "permissions": "read"}, "permissions"),
    ("List", {"limit": "5"}, "limit"),
    ("List", {"limit": 1.5}, "limit"),
    ("List", {"limit": True}, "limit"),
    ("List", {"owner": 0}, "owner"),
    ("List", {"status": ["enabled"]}, "status"),
    ("List", {"name_prefix": 1}, "name_prefix"),
    ("List", {"expiring_within": 86400}, "expiring_within"),
    ("List", {"cursor": 1}, "cursor"),
    ("Get", {"id": 5}, "id"),
    ("Update", {"id": TOKEN_SHAPED_ID, "name": 1}, "name"),
    ("Update", {"id": TOKEN_SHAPED_ID, "scope": "sshd"}, "scope"),
    ("Update", {"id": TOKEN_SHAPED_ID, "expires": 5}, "expires"),
    ("Delete", {"id": None}, "id"),
    # unknown parameters
    ("Create", {"name": "k", "bogus": 1}, "bogus"),
    ("Create", {"name": "k", "Name": "k"}, "Name"),
    ("Verify", {"token": "t", "service_name": "sshd"}, "service_name"),
    ("List", {"page": 2}, "page"),
    ("Get", {"id": TOKEN_SHAPED_ID, "verbose": True}, "verbose"),
    ("Delete", {"id": TOKEN_SHAPED_ID, "force": True}, "force"),
    ("GetSharedSecret", {"length": 64}, "length"),
    ("RotateSharedSecret", {"x": None}, "x"),
])
def test_invalid_parameter_names_the_parameter(apikeyd, method, params, parameter):
    c = apikeyd.client()
    assert c.err(f"{IFACE}.{method}", params) == (INVALID, {"parameter": parameter})
    assert c.list() == {"keys": []}  # nothing was created, the connection goes on


@pytest.mark.parametrize("method,params,parameter", [
    (f"{SERVICE}.GetInfo", {"x": 1}, "x"),
    (f"{SERVICE}.GetInterfaceDescription", {"interface": 1}, "interface"),
    (f"{SERVICE}.GetInterfaceDescription", {"interface": IFACE, "x": 1}, "x"),
])
def test_invalid_parameter_in_the_service_interface(root, method, params, parameter):
    assert root.err(method, params) == (INVALID, {"parameter": parameter})


@pytest.mark.parametrize("duration", ["30x", "-1d", "1.5d", "d", "30", "+1d", "1 d", "1D",
                                      "1M", "0x10d", "99999999999999999999d"])
def test_bad_durations(root, duration):
    assert field_refusal(root.err(f"{IFACE}.Create", {"name": "k", "expires": duration})) == (
        INVALID, {"parameter": "expires"})
    k = root.create("k")["key"]
    assert field_refusal(root.err(f"{IFACE}.Update", {"id": k["id"], "expires": duration})) == (
        INVALID, {"parameter": "expires"})
    assert root.err(f"{IFACE}.List", {"expiring_within": duration}) == (
        INVALID, {"parameter": "expiring_within"})
    assert [x["id"] for x in root.list()["keys"]] == [k["id"]]
    assert "expires_at" not in root.get(k["id"])


# ---------------------------------------------------------------- broken messages


@pytest.mark.parametrize("message", [
    b"{not json",
    b"",
    b"null",
    b"42",
    b'"GetInfo"',
    b'["org.varlink.service.GetInfo"]',
    b"{}",
    b'{"parameters": {}}',
    b'{"method": 5}',
    b'{"method": ""}',
    b'{"method": "org.varlink.service.GetInfo", "parameters": []}',
    b'{"method": "org.varlink.service.GetInfo", "parameters": "x"}',
    b'{"method": "org.varlink.service.GetInfo", "more": "yes"}',
    b'{"method": "org.varlink.service.GetInfo", "oneway": 1}',
    b'{"method": "org.varlink.service.GetInfo", "method": "org.varlink.service.GetInfo"}',
    b'{"method": "org.varlink.service.GetInfo"} trailing',
    b"\xff\xfe{}",
    b'{"method": "io.apikeyd.Keys.Verify", "parameters": {"token": "\xc3\x28"}}',
])
def test_broken_message_gets_an_error_and_the_connection_goes_on(apikeyd, message):
    c = apikeyd.client()
    c.send_bytes(message + b"\0")
    reply = c.recv()
    assert "error" in reply, reply
    assert reply["error"] == INVALID
    assert set(reply["parameters"]) == {"parameter"}
    assert c.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"
    still_answers(apikeyd)


def test_messages_split_and_pipelined(root):
    """Framing is by NUL only: a message in pieces, and several in one write."""
    msg = json.dumps({"method": f"{SERVICE}.GetInfo"}).encode() + b"\0"
    for b in msg[:-1]:
        root.send_bytes(bytes([b]))
    root.send_bytes(msg[-1:])
    assert root.recv()["parameters"]["vendor"] == "apikeyd"
    calls = [{"method": f"{IFACE}.Create", "parameters": {"name": f"k{i}"}} for i in range(5)]
    calls.append({"method": f"{IFACE}.List"})
    root.send_bytes(b"".join(json.dumps(m).encode() + b"\0" for m in calls))
    names = [root.recv()["parameters"]["key"]["name"] for _ in range(5)]
    assert names == [f"k{i}" for i in range(5)]
    assert len(root.recv()["parameters"]["keys"]) == 5


def test_client_gone_mid_call_leaves_the_keystore_intact(apikeyd):
    c = apikeyd.client()
    for i in range(20):
        with Varlink(apikeyd.socket) as gone:
            gone.send({"method": f"{IFACE}.Create", "parameters": {"name": f"k{i}"}})
    # Half a message, then gone.
    with Varlink(apikeyd.socket) as gone:
        gone.send_bytes(b'{"method": "io.apikeyd.Keys.Create", "parameters": {"na')
    time.sleep(0.2)
    keys = c.list()["keys"]
    assert sorted(k["name"] for k in keys) == sorted(f"k{i}" for i in range(20))
    still_answers(apikeyd)


# ---------------------------------------------------------------- limits


@pytest.fixture
def limited(daemon):
    return daemon(config={"max_message_size": "1K", "client_timeout": "1s",
                          "max_connections": 4})


def test_message_over_the_limit_is_refused_and_the_connection_closed(limited):
    c = limited.client()
    ok = {"method": f"{IFACE}.Create", "parameters": {"name": "k", "description": ""}}
    pad = 1024 - len(json.dumps(ok))
    ok["parameters"]["description"] = "d" * pad
    assert len(json.dumps(ok)) == 1024
    c.send(ok)  # exactly at the limit: accepted
    assert c.recv()["parameters"]["key"]["description"] == "d" * pad
    big = {"method": f"{IFACE}.Create", "parameters": {"name": "k2", "description": "d" * 2000}}
    c.send(big)
    assert c.recv() == {"error": f"{IFACE}.MessageTooLarge", "parameters": {"limit": 1024}}
    assert c.wait_closed(2)
    with Varlink(limited.socket) as fresh:
        assert [k["name"] for k in fresh.list()["keys"]] == ["k"]
    still_answers(limited)


def test_message_over_the_limit_without_a_nul(limited):
    c = limited.client()
    c.send_bytes(b'{"method": "' + b"x" * 1500)
    assert c.recv() == {"error": f"{IFACE}.MessageTooLarge", "parameters": {"limit": 1024}}
    assert c.wait_closed(2)
    still_answers(limited)


def test_idle_connection_is_closed_after_the_client_timeout(limited):
    c = limited.client()
    assert c.ok(f"{SERVICE}.GetInfo")
    start = time.monotonic()
    assert c.wait_closed(4)
    waited = time.monotonic() - start
    assert 0.8 <= waited <= 3.0, waited
    still_answers(limited)


def test_stalled_half_message_is_closed_after_the_client_timeout(limited):
    c = limited.client()
    c.send_bytes(b'{"method": "org.varlink.service.GetInfo"')
    start = time.monotonic()
    assert c.wait_closed(4)
    assert time.monotonic() - start <= 3.0
    still_answers(limited)


def test_active_connection_is_not_closed(limited):
    c = limited.client()
    for _ in range(4):
        time.sleep(0.5)
        assert c.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"


def test_too_many_connections(limited):
    clients = [limited.client() for _ in range(4)]
    for c in clients:  # each one accepted and answered
        assert c.ok(f"{SERVICE}.GetInfo")["vendor"] == "apikeyd"
    fifth = limited.client()
    assert fifth.recv() == {"error": f"{IFACE}.TooManyConnections", "parameters": {"limit": 4}}
    assert fifth.wait_closed(2)
    # The others are not stalled by it.
    for c in clients:
        assert c.list() == {"keys": []}
    clients[0].close()
    deadline = time.monotonic() + 2
    while True:
        try:
            still_answers(limited)
            break
        except (AssertionError, OSError, json.JSONDecodeError, KeyError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_client_that_does_not_read_is_dropped_without_stalling_others(limited):
    setup = limited.client()
    for i in range(30):
        setup.create(f"key-{i:02d}", description="x" * 500)
    hog = limited.client()
    hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    call = json.dumps({"method": f"{IFACE}.List"}).encode() + b"\0"
    # Ask for far more than the socket buffers hold, and read nothing.
    hog.sock.setblocking(False)
    sent = 0
    try:
        for _ in range(2000):
            sent += hog.sock.send(call * 10)
    except BlockingIOError:
        pass
    hog.sock.setblocking(True)
    hog.settimeout(5)
    assert sent > 0
    # Others are served meanwhile.
    start = time.monotonic()
    other = Varlink(limited.socket)
    try:
        assert len(other.list()["keys"]) == 30
    finally:
        other.close()
    assert time.monotonic() - start < 0.5
    # After the client timeout (1s) the hog is dropped: reading on finds the end.
    time.sleep(2.0)
    hog.settimeout(2)
    closed = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            chunk = hog.sock.recv(1 << 20)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
    assert closed, "a client that reads nothing was not disconnected"
    still_answers(limited)


def test_daemon_survives_garbage_on_many_connections(apikeyd):
    for payload in (b"\0" * 100, b"\xff" * 5000 + b"\0", b"{" * 10000 + b"\0",
                    b'{"method":"x"}\0' * 200):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(apikeyd.socket)
        s.sendall(payload)
        s.close()
    still_answers(apikeyd)


def test_pipelined_calls_whose_replies_back_up_are_all_answered(apikeyd):
    # 300 calls in one write, each answered with the ~10 KiB interface text:
    # the replies pass the daemon's output high-water mark while calls are
    # still waiting in its input; every one must still be answered, in order.
    c = apikeyd.client(timeout=20)
    call = json.dumps({"method": "org.varlink.service.GetInterfaceDescription",
                       "parameters": {"interface": "io.apikeyd.Keys"}}).encode() + b"\0"
    last = json.dumps({"method": "org.varlink.service.GetInfo"}).encode() + b"\0"
    c.send_bytes(call * 300 + last)
    for _ in range(300):
        assert c.recv()["parameters"]["description"].startswith("# API keys")
    assert c.recv()["parameters"]["product"] == "apikeyd"


def test_client_that_shuts_its_writing_side_gets_every_answer(apikeyd):
    # socat and other tools send their calls, shut the writing side and read.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(apikeyd.socket)
    call = json.dumps({"method": "org.varlink.service.GetInterfaceDescription",
                       "parameters": {"interface": "io.apikeyd.Keys"}}).encode() + b"\0"
    s.sendall(call * 50 + b'{"method":"org.varlink.service.GetInfo"}\0{"method":"io.apikeyd')
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        chunk = s.recv(1 << 16)
        if not chunk:
            break
        data += chunk
    s.close()
    replies = [json.loads(m) for m in data.split(b"\0")[:-1]]
    assert data.endswith(b"\0")
    assert len(replies) == 51
    assert all(r["parameters"]["description"].startswith("# API keys") for r in replies[:50])
    assert replies[50]["parameters"]["product"] == "apikeyd"
    # The half message at the end is dropped, and the daemon goes on serving.
    assert apikeyd.client().call("org.varlink.service.GetInfo")["parameters"]["product"] == "apikeyd"
