"""Journal entries: every management change and every refused verify is one
entry with APIKEY_* fields, and no entry holds a token.

There is no journald on a machine without systemd as PID 1, so the test
listens on the journal's own socket with the native protocol (datagrams of
FIELD=value lines, or FIELD\\n<64-bit little-endian size><bytes>\\n for values
with newlines) and reads what the daemon's sd_journal_sendv() sends."""
import os
import socket
import struct
import time

import pytest

from conftest import IFACE

JOURNAL_DIR = "/run/systemd/journal"
JOURNAL_SOCKET = JOURNAL_DIR + "/socket"


def parse_native(data):
    fields = {}
    while data:
        nl = data.index(b"\n")
        line = data[:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            data = data[nl + 1:]
        else:
            k = line
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            v = data[nl + 9:nl + 9 + size]
            data = data[nl + 9 + size + 1:]
        fields[k.decode()] = v.decode()
    return fields


@pytest.fixture
def journal():
    if os.geteuid() != 0:
        pytest.skip("needs root to listen on the journal socket")
    if os.path.exists(JOURNAL_SOCKET):
        pytest.skip("a journal socket exists already (a real journald): not replacing it")
    made = []
    for d in ("/run/systemd", JOURNAL_DIR):
        if not os.path.isdir(d):
            os.mkdir(d, 0o755)
            made.append(d)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(JOURNAL_SOCKET)
    s.settimeout(0.2)
    raw = []

    def read():
        while True:
            try:
                raw.append(s.recv(1 << 20))
            except (socket.timeout, BlockingIOError):
                break
        return [parse_native(r) for r in raw], b"".join(raw)

    try:
        yield read
    finally:
        s.close()
        os.unlink(JOURNAL_SOCKET)
        for d in reversed(made):
            os.rmdir(d)


def test_changes_and_refused_verifies_are_journal_entries(journal, daemon):
    d = daemon()
    c = d.client()
    r = c.create("laptop", owner="alice", scope=["sshd"])
    token, key_id = r["token"], r["key"]["id"]
    assert c.verify(token, user="bob", service="sshd", rhost="192.0.2.7")["code"] == "WRONG_USER"
    c.ok(f"{IFACE}.Revoke", {"id": key_id})
    assert c.verify(token, user="alice")["code"] == "REVOKED"
    c.ok(f"{IFACE}.Delete", {"id": key_id})
    time.sleep(0.3)
    entries, raw = journal()

    # Other daemons may be logging at the same time: this key's entries only.
    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "apikeyd"
            and e.get("APIKEY_ID") == key_id]
    actions = [(e["APIKEY_ACTION"], e.get("APIKEY_CODE")) for e in ours]
    assert actions == [("create", None), ("verify", "WRONG_USER"), ("revoke", None),
                       ("verify", "REVOKED"), ("delete", None)], actions
    for e in ours:
        assert e["APIKEY_ID"] == key_id
        assert e["APIKEY_CALLER_UID"] == str(os.getuid())
        assert e["APIKEY_CALLER_PID"] == str(os.getpid())
        assert e["MESSAGE"] and e["PRIORITY"] == "5"
    assert ours[0]["APIKEY_OWNER"] == "alice"
    assert ours[1]["APIKEY_SERVICE"] == "sshd" and ours[1]["APIKEY_RHOST"] == "192.0.2.7"
    assert ours[3]["APIKEY_OWNER"] == "alice"
    # Nothing the daemon sent holds the token, or its secret part.
    assert token.encode() not in raw
    assert token.split("_")[2][:43].encode() not in raw
