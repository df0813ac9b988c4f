"""Journal entries: every management change and every refused verify is one
entry with APIKEY_* fields, and no entry holds a token.

There is no journald on a machine without systemd as PID 1, so the test
listens on the journal's own socket with the native protocol (datagrams of
FIELD=value lines, or FIELD\\n<64-bit little-endian size><bytes>\\n for values
with newlines) and reads what the daemon's sd_journal_sendv() sends."""
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import IFACE, REPO, make_token, other_secret, split_token

JOURNAL_DIR = "/run/systemd/journal"
JOURNAL_SOCKET = JOURNAL_DIR + "/socket"
MESSAGE_IDS_H = REPO / "apikeyd" / "base" / "message_ids.h"
CATALOG = REPO / "systemd" / "apikeyd.catalog"


def message_ids():
    """{"STARTED": "cef0...", ...} from the header that defines them."""
    ids = dict(re.findall(r'#define MESSAGE_ID_(\w+)\s+"MESSAGE_ID=([^"]*)"',
                          MESSAGE_IDS_H.read_text()))
    assert ids, f"no MESSAGE_ID_ definitions in {MESSAGE_IDS_H}"
    return ids


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
    s.settimeout(0.1)
    raw = []
    done = threading.Event()

    # Read as they come: a datagram socket queues only a few
    # (net.unix.max_dgram_qlen, 10 by default), and a sender finding it full
    # waits in sd_journal_sendv() -- every daemon on the machine, ours too.
    def drain():
        while not done.is_set():
            try:
                raw.append(s.recv(1 << 20))
            except socket.timeout:
                continue
            except OSError:
                break

    def read():
        time.sleep(0.2)  # what is on its way
        got = list(raw)
        return [parse_native(r) for r in got], b"".join(got)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        yield read
    finally:
        done.set()
        reader.join(5)
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


def test_events_an_admin_searches_for_carry_their_message_id(journal, daemon):
    ids = message_ids()
    d = daemon(config={"lockout_threshold": 2})
    c = d.client()
    r = c.create("laptop", owner="alice", scope=["sshd"])
    token, key_id = r["token"], r["key"]["id"]
    c.ok(f"{IFACE}.Disable", {"id": key_id})
    assert c.verify(token, user="alice")["code"] == "DISABLED"
    ro = c.create("reader", owner="alice", role="readonly")
    assert c.err(f"{IFACE}.Create", {"name": "x", "auth": ro["token"]})[0] == \
        f"{IFACE}.PermissionDenied"
    c.ok(f"{IFACE}.Enable", {"id": key_id})
    prefix, _, secret, _ = split_token(token)
    wrong = make_token(prefix, key_id, other_secret(secret))
    for _ in range(2):
        assert c.verify(wrong, user="bob", rhost="192.0.2.9")["code"] == "NOT_FOUND"
    c.ok(f"{IFACE}.Revoke", {"id": key_id})
    c.ok(f"{IFACE}.Delete", {"id": key_id})
    d.stop()
    time.sleep(0.3)
    entries, _ = journal()

    ours = [e for e in entries if e.get("SYSLOG_IDENTIFIER") == "apikeyd"]
    by_id = {}
    for e in ours:
        by_id.setdefault(e.get("MESSAGE_ID"), []).append(e)

    def one(name, **fields):
        found = [e for e in by_id.get(ids[name], [])
                 if all(e.get(k) == v for k, v in fields.items())]
        assert found, f"no {name} entry with {fields}: {[e.get('MESSAGE') for e in ours]}"
        return found[0]

    assert d.socket in one("STARTED")["MESSAGE"]
    assert one("STARTED")["PRIORITY"] == "6"
    assert "stopping" in one("STOPPING")["MESSAGE"]
    one("KEY_CREATED", APIKEY_ID=key_id, APIKEY_ACTION="create")
    one("KEY_CHANGED", APIKEY_ID=key_id, APIKEY_ACTION="disable")
    one("KEY_CHANGED", APIKEY_ID=key_id, APIKEY_ACTION="enable")
    one("AUTH_REFUSED", APIKEY_ID=key_id, APIKEY_CODE="DISABLED")
    one("AUTH_REFUSED", APIKEY_ID=key_id, APIKEY_CODE="NOT_FOUND", APIKEY_RHOST="192.0.2.9")
    refused = one("CALL_REFUSED", APIKEY_ACTION="create", APIKEY_CODE="denied")
    assert refused["APIKEY_ACTOR"].startswith(f"key={ro['key']['id']}("), refused
    locked = one("LOCKED_OUT")
    assert locked["PRIORITY"] == "4" and "locked after 2 failed verifies" in locked["MESSAGE"]
    one("KEY_REVOKED", APIKEY_ID=key_id, APIKEY_ACTION="revoke")
    one("KEY_DELETED", APIKEY_ID=key_id, APIKEY_ACTION="delete")


def test_catalog_explains_every_message_id(tmp_path):
    """systemd/apikeyd.catalog parses as journalctl reads it and has one
    entry, with a subject, for each id of message_ids.h."""
    ids = message_ids()
    for name, value in ids.items():
        assert re.fullmatch(r"[0-9a-f]{32}", value), (name, value)
    assert len(set(ids.values())) == len(ids), "two events share a MESSAGE_ID"
    man = (REPO / "apikeyd" / "apikeyd.8").read_text()
    assert [v for v in ids.values() if f".B {v}\n" not in man] == [], "apikeyd(8) misses ids"
    text = CATALOG.read_text()
    headers = re.findall(r"^-- (\S+)$", text, re.M)
    assert sorted(headers) == sorted(ids.values()), \
        f"catalog entries {sorted(headers)} != header ids {sorted(ids.values())}"
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl is not installed (package systemd)")
    # journalctl builds its database from the root given, not the system's.
    (tmp_path / "usr/lib/systemd/catalog").mkdir(parents=True)
    (tmp_path / "var/lib/systemd/catalog").mkdir(parents=True)
    shutil.copy(CATALOG, tmp_path / "usr/lib/systemd/catalog/apikeyd.catalog")
    r = subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not r.stderr, r
    r = subprocess.run(["journalctl", f"--root={tmp_path}", "--list-catalog"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r
    listed = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert sorted(listed) == sorted(ids.values()), r.stdout
    for value in ids.values():
        assert listed[value].startswith("apikeyd: ") and len(listed[value]) > 12, listed[value]
