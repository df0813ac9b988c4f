# SPDX-License-Identifier: MIT
"""Secrets: where tokens, and the pepper, may and may not be found.

- A scenario under --debug (create, verify right and wrong, auth with a key,
  update, revoke, delete, restart) leaves no token, token body or 43-char
  secret in keys.mdb or any other file of the state directory, in the
  audit log (ListAudit), in the daemon's log, its environment or its
  command line.
- The daemon is not dumpable: run as an ordinary user, its /proc/PID files
  belong to root and that same user cannot read its environment or memory.
- The pepper lives in locked memory, and nowhere else in the daemon.
- Tokens the daemon only checked (Verify, auth), right or wrong, are gone
  from its memory once answered; so is a token it created and sent.
- No library function is bound lazily once the daemon serves: the dynamic
  linker's resolver would save registers holding pieces of a token on the
  stack, out of reach of any erasing.
- An unknown key id and a wrong secret for an existing id cost the same
  hash and compare (callgrind instruction counts).
"""

import json
import os
import pwd
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (ALICE, APIKEYD, BASE62, BOB, IFACE, Daemon, Varlink, list_all_audit,
                      make_token, other_secret, run_as, split_token)

CONFIG = {"lockout_threshold": 5}


def rnd(rng, n):
    return "".join(rng.choice(BASE62) for _ in range(n))


def needles(tokens):
    """What of each token must not be found: the token, its body (what is
    hashed: without the check digits) and its secret."""
    out = {}
    for label, t in tokens.items():
        _, _, secret, check = split_token(t)
        out[f"{label} token"] = t.encode()
        out[f"{label} body"] = t[:-len(check)].encode()
        out[f"{label} secret"] = secret.encode()
    return out


def find_in(data, what, where):
    return [f"{name} in {where}" for name, n in what.items() if n in data]


# ---------------------------------------------------------------- process memory


def sanitized():
    """Whether the daemon is built with a sanitizer: its allocator keeps
    freed memory in quarantine and reserves terabytes of address space, so
    a memory scan would be blind or endless, and valgrind cannot run it."""
    r = subprocess.run(["ldd", str(APIKEYD)], capture_output=True, text=True)
    return bool(re.search(r"lib(asan|ubsan|tsan|msan)", r.stdout))


def needs_plain_build():
    if sanitized():
        pytest.skip("the daemon is built with sanitizers; this needs a plain build")


def mappings(pid):
    """[lo, hi, line, locked KiB, rss KiB] of each mapping, from /proc/PID/smaps."""
    out = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                out.append([int(m.group(1), 16), int(m.group(2), 16), line.strip(), 0, 0])
            elif line.startswith("Locked:"):
                out[-1][3] = int(line.split()[1])
            elif line.startswith("Rss:"):
                out[-1][4] = int(line.split()[1])
    return out


def scan_memory(pid, what):
    """Where in the memory of `pid` each needle occurs: [(name, mapping, locked KiB)]."""
    hits = []
    with open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for lo, hi, line, locked, rss in mappings(pid):
            perms = line.split()[1]
            if "r" not in perms or rss == 0 or line.endswith(("[vvar]", "[vsyscall]")):
                continue
            try:
                mem.seek(lo)
                data = mem.read(hi - lo)
            except OSError:
                continue
            for name, n in what.items():
                for _ in re.finditer(re.escape(n), data):
                    hits.append((name, line, locked))
    return hits


# ---------------------------------------------------------------- the scenario


def scenario(d, tmp_path):
    """Everything that handles tokens; returns {label: token} of every token
    that went over the socket, right or wrong."""
    rng = random.Random(7)
    tokens = {}
    root = Varlink(d.socket)
    admin = root.create("admin-key", role="admin", scope=["apikeyd"])
    tokens["admin"] = admin["token"]
    tokens["ro"] = root.create("ro-key", scope=["sshd"], description="for the test")["token"]
    tokens["alice-by-root"] = root.create("alice-key", owner=ALICE, scope=["sshd"])["token"]
    tokens["alice-own"] = run_as(ALICE, lambda: _as_user_create(d.socket))
    prefix, ro_id, ro_secret, _ = split_token(tokens["ro"])

    # Verify: right, wrong secret, unknown id, a typo caught by the check
    # digits, wrong user, out of scope, locked out.
    assert root.verify(tokens["ro"], service="sshd")["code"] == "VALID"
    tokens["wrong-secret"] = make_token(prefix, ro_id, other_secret(ro_secret))
    assert root.verify(tokens["wrong-secret"])["code"] == "NOT_FOUND"
    tokens["unknown-id"] = make_token(prefix, rnd(rng, 12), rnd(rng, 43))
    assert root.verify(tokens["unknown-id"])["code"] == "NOT_FOUND"
    typo = tokens["ro"][:20] + ("A" if tokens["ro"][20] != "A" else "B") + tokens["ro"][21:]
    tokens["typo"] = typo
    assert root.verify(typo)["code"] in ("BAD_FORMAT", "NOT_FOUND")
    assert root.verify(tokens["alice-by-root"], user=BOB)["code"] == "WRONG_USER"
    assert root.verify(tokens["ro"], service="sudo")["code"] == "OUT_OF_SCOPE"
    for i in range(6):
        tokens[f"guess-{i}"] = make_token(prefix, ro_id, rnd(rng, 43))
        root.verify(tokens[f"guess-{i}"], service="sshd", rhost="192.0.2.7")
    # Locked for the source that guessed (not for the key everywhere).
    assert root.verify(tokens["ro"], rhost="192.0.2.7")["code"] == "RATE_LIMITED"

    # auth: a key acting for a caller who is no admin, and refused keys.
    def with_auth():
        with Varlink(d.socket) as c:
            made = c.ok(f"{IFACE}.Create", {"name": "made-by-key", "auth": tokens["admin"]})
            c.ok(f"{IFACE}.List", {"auth": tokens["admin"]})
            c.ok(f"{IFACE}.Get", {"id": made["key"]["id"], "auth": tokens["admin"]})
            bad = make_token(prefix, split_token(tokens["admin"])[1], rnd(random.Random(3), 43))
            refused = c.call(f"{IFACE}.List", {"auth": bad})
            malformed = c.call(f"{IFACE}.List", {"auth": bad[:-1]})
            return made["token"], bad, refused, malformed

    tokens["made-by-key"], tokens["bad-auth"], refused, malformed = run_as(BOB, with_auth)
    assert refused["error"] == f"{IFACE}.PermissionDenied"
    assert malformed["error"] == f"{IFACE}.PermissionDenied"

    # Changes, then a restart (flushes last-used and the audit queue).
    alice_id = split_token(tokens["alice-by-root"])[1]
    root.ok(f"{IFACE}.Update", {"id": alice_id, "description": "changed"})
    root.ok(f"{IFACE}.Disable", {"id": alice_id})
    root.ok(f"{IFACE}.Enable", {"id": alice_id})
    root.ok(f"{IFACE}.Revoke", {"id": alice_id})
    assert root.verify(tokens["alice-by-root"])["code"] == "REVOKED"
    root.ok(f"{IFACE}.RotateSharedSecret")
    root.close()
    d.restart()
    with Varlink(d.socket) as c:
        assert c.verify(tokens["made-by-key"])["code"] == "VALID"
        # (the lockout may outlive the restart)
        assert c.verify(tokens["wrong-secret"])["code"] in ("NOT_FOUND", "RATE_LIMITED")
        c.ok(f"{IFACE}.Delete", {"id": split_token(tokens["made-by-key"])[1]})
        assert c.verify(tokens["made-by-key"])["code"] == "NOT_FOUND"
    return tokens


def _as_user_create(path):
    with Varlink(path) as c:
        return c.create("alice-own-key", scope=["sshd"])["token"]



def test_no_token_in_state_audit_log_or_process(daemon, test_users, tmp_path):
    d = daemon(config=CONFIG, debug=True)
    tokens = scenario(d, tmp_path)
    what = needles(tokens)
    found = []

    with Varlink(d.socket) as c:
        events = list_all_audit(c)
    audit_text = json.dumps(events).encode()
    found += find_in(audit_text, what, "ListAudit")
    # The audit log is not empty of what happened: ids, actions, codes.
    ro_id = split_token(tokens["ro"])[1]
    assert any(e.get("key_id") == ro_id and e["result"] == "NOT_FOUND" for e in events)
    assert any(e["action"] == "revoke" for e in events)
    assert any(e["actor"].startswith("key=") for e in events), "no change made with auth"

    pid = d.pid
    for name in ("environ", "cmdline"):
        found += find_in(Path(f"/proc/{pid}/{name}").read_bytes(), what, f"/proc/PID/{name}")
    d.stop()

    log = d.log_path.read_bytes()
    assert b"verify refused" in log and ro_id.encode() in log, "the log says nothing"
    found += find_in(log, what, "the daemon's log")
    files = [p for p in d.state_dir.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"keys.mdb", "pepper"}
    for p in files + [d.config_file]:
        found += find_in(p.read_bytes(), what, str(p.relative_to(d.tmp_path)))
    # Tokens written with their bytes in another order or encoding would
    # escape the byte search: the scanners' pattern finds any token shape.
    for p in files + [d.log_path]:
        text = p.read_bytes().decode("latin-1")
        shaped = re.findall(r"[a-z]{2,8}_[0-9A-Za-z]{12}_[0-9A-Za-z]{49}", text)
        found += [f"token-shaped text in {p.name}: {s[:20]}..." for s in shaped]
    assert not found, found


# ---------------------------------------------------------------- not dumpable


class UserDaemon(Daemon):
    """apikeyd run as an ordinary user through setpriv."""

    user = BOB

    def argv(self):
        pw = pwd.getpwnam(self.user)
        return ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups",
                "--"] + super().argv()


@pytest.fixture
def user_dirs(test_users):
    """A world-searchable directory with a state directory and a socket
    directory owned by BOB; removed afterwards."""
    top = Path(tempfile.mkdtemp(prefix="akt-sec-", dir="/tmp"))
    os.chmod(top, 0o755)
    pw = pwd.getpwnam(BOB)
    for sub in ("state", "run"):
        (top / sub).mkdir(mode=0o700 if sub == "state" else 0o755)
        os.chown(top / sub, pw.pw_uid, pw.pw_gid)
    yield top
    shutil.rmtree(top, ignore_errors=True)


def _read(path):
    try:
        with open(path, "rb") as f:
            return ("read", len(f.read()))
    except OSError as e:
        return ("refused", e.errno)


def test_daemon_is_not_dumpable(user_dirs, test_users):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed")
    bob = pwd.getpwnam(BOB)
    d = UserDaemon(user_dirs, 0, state_dir=user_dirs / "state",
                   socket_path=user_dirs / "run" / "io.apikeyd.Keys", config=CONFIG)
    control = None
    try:
        d.start()
        status = Path(f"/proc/{d.pid}/status").read_text()
        assert re.search(rf"^Uid:\s+{bob.pw_uid}\s+{bob.pw_uid}\s", status, re.M), status
        with Varlink(d.socket) as c:
            token = c.create("k")["token"]
            assert c.verify(token)["code"] == "VALID"
        # The same user's ordinary process, for contrast: its files are its own.
        control = subprocess.Popen(["setpriv", f"--reuid={bob.pw_uid}",
                                    f"--regid={bob.pw_gid}", "--clear-groups", "--",
                                    "sleep", "30"])
        time.sleep(0.2)
        assert os.stat(f"/proc/{control.pid}/environ").st_uid == bob.pw_uid
        assert run_as(BOB, lambda: _read(f"/proc/{control.pid}/environ"))[0] == "read"
        # The daemon's: root's, and unreadable even by its own user.
        for name in ("environ", "mem", "maps"):
            st = os.stat(f"/proc/{d.pid}/{name}")
            assert st.st_uid == 0, f"/proc/PID/{name} belongs to uid {st.st_uid}"
        for user in (BOB, ALICE):
            for name in ("environ", "mem"):
                got = run_as(user, lambda n=name: _read(f"/proc/{d.pid}/{n}"))
                assert got[0] == "refused", f"{user} read /proc/PID/{name} of the daemon"
        # Its pepper is locked in memory here too, within a user's
        # RLIMIT_MEMLOCK (sanitizers make mlock a no-op).
        if not sanitized():
            assert _vmlck(d.pid) > 0
    finally:
        if control is not None:
            control.kill()
            control.wait()
        problem = d.cleanup()
        assert problem is None, problem


# ---------------------------------------------------------------- locked pepper


def _vmlck(pid):
    m = re.search(r"^VmLck:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(m.group(1))


def test_pepper_is_in_locked_memory_only(daemon):
    needs_plain_build()
    d = daemon(config=CONFIG)
    with Varlink(d.socket) as c:
        token = c.create("k")["token"]
        assert c.verify(token)["code"] == "VALID"
    pepper = (d.state_dir / "pepper").read_bytes()
    assert len(pepper) == 32
    assert _vmlck(d.pid) > 0, "nothing of the daemon's memory is locked"
    hits = scan_memory(d.pid, {"pepper": pepper})
    print(f"\nsecrets: VmLck {_vmlck(d.pid)} kB; pepper found in "
          f"{[(h[1].split()[0], h[2]) for h in hits]}")
    assert hits, "the pepper is nowhere in the daemon's memory: the scan is blind"
    unlocked = [h[1] for h in hits if h[2] == 0]
    assert not unlocked, f"copies of the pepper in memory that may be swapped: {unlocked}"


# ---------------------------------------------------------------- tokens in memory


def test_checked_tokens_are_erased_from_memory(daemon):
    """Tokens that only came in (Verify, auth), right or wrong, are gone from
    the daemon's memory after the answer: the input buffer, the parsed
    JSON and the hash input are wiped."""
    needs_plain_build()
    d = daemon(config={"lockout_threshold": 0})
    rng = random.Random(11)
    with Varlink(d.socket) as c:
        admin = c.create("admin", role="admin", scope=["apikeyd"])["token"]
    prefix, admin_id, _, _ = split_token(admin)
    checked = {}
    with Varlink(d.socket) as c:
        for i in range(20):
            checked[f"wrong-{i}"] = make_token(prefix, admin_id, rnd(rng, 43))
            checked[f"unknown-{i}"] = make_token(prefix, rnd(rng, 12), rnd(rng, 43))
            assert c.verify(checked[f"wrong-{i}"], service="sshd")["code"] == "NOT_FOUND"
            assert c.verify(checked[f"unknown-{i}"])["code"] == "NOT_FOUND"
            bad = make_token(prefix, admin_id, rnd(rng, 43))
            checked[f"auth-{i}"] = bad
            assert c.call(f"{IFACE}.List", {"auth": bad})["error"] == f"{IFACE}.PermissionDenied"
        # Pipelined, and split across reads.
        t = make_token(prefix, admin_id, rnd(rng, 43))
        checked["split"] = t
        msg = json.dumps({"method": f"{IFACE}.Verify", "parameters": {"token": t}}).encode()
        c.send_bytes(msg[:70])
        time.sleep(0.05)
        c.send_bytes(msg[70:] + b"\0")
        assert c.recv()["parameters"]["code"] == "NOT_FOUND"
        for i in range(5):
            checked[f"oneway-{i}"] = make_token(prefix, admin_id, rnd(rng, 43))
            c.call(f"{IFACE}.Verify", {"token": checked[f"oneway-{i}"]}, oneway=True)
        c.ok("org.varlink.service.GetInfo")
    time.sleep(0.2)
    what = {k: split_token(v)[2].encode() for k, v in checked.items()}
    hits = scan_memory(d.pid, what)
    assert not hits, [(h[0], h[1].split()[-1]) for h in hits]


def test_created_token_is_not_left_in_memory(daemon):
    needs_plain_build()
    d = daemon(config=CONFIG)
    created = {}
    for i in range(5):
        with Varlink(d.socket) as c:
            created[f"created-{i}"] = c.create(f"k{i}")["token"]
    with Varlink(d.socket) as c:
        c.ok("org.varlink.service.GetInfo")
    time.sleep(0.2)
    what = {k: split_token(v)[2].encode() for k, v in created.items()}
    hits = scan_memory(d.pid, what)
    assert not hits, [(h[0], h[1].split()[-1]) for h in hits]


class BindingsDaemon(Daemon):
    """The daemon with the dynamic linker reporting every symbol it binds."""
    ld_debug = None

    def argv(self):
        return ["env", "LD_DEBUG=bindings", f"LD_DEBUG_OUTPUT={self.ld_debug}"] + super().argv()


def test_no_symbol_is_bound_lazily_while_serving(daemon, tmp_path):
    """Every call that carries a token, and every kind of error, after the
    daemon is ready: the dynamic linker binds nothing more (a lazy binding
    saves the vector registers, which may hold a token, on the stack)."""
    needs_plain_build()  # the sanitizers' runtime binds its own functions late
    setup = daemon(start=False)
    d = BindingsDaemon(tmp_path, 20, state_dir=setup.state_dir)
    d.ld_debug = tmp_path / "ld-bindings"
    try:
        d.start()
        out = Path(f"{d.ld_debug}.{d.pid}")
        ready_at = out.stat().st_size
        assert ready_at > 0, "the dynamic linker wrote no bindings: LD_DEBUG had no effect"
        with Varlink(d.socket) as c:
            admin = c.create("admin", role="admin", scope=["apikeyd", "sshd"])["token"]
            prefix, admin_id, secret, _ = split_token(admin)
            assert c.verify(admin, service="sshd", user="root", rhost="192.0.2.1")["code"] \
                == "VALID"
            assert c.verify(admin, service="sudo")["code"] == "OUT_OF_SCOPE"
            assert c.verify(admin, permissions=["read"], tty="pts/1")["code"] == "VALID"
            assert c.verify(make_token(prefix, admin_id, other_secret(secret)))["code"] \
                == "NOT_FOUND"
            assert c.verify(admin[:-1] + "x")["code"] == "BAD_FORMAT"
            made = c.ok(f"{IFACE}.Create", {"name": "made", "auth": admin, "expires": "30d",
                                            "description": "caf\u00e9 \"q\""})
            c.ok(f"{IFACE}.List", {"auth": admin, "limit": 1})
            c.ok(f"{IFACE}.Update", {"id": made["key"]["id"], "scope": ["sshd"]})
            c.ok(f"{IFACE}.Disable", {"id": made["key"]["id"], "auth": admin})
            assert c.verify(made["token"])["code"] == "DISABLED"
            c.ok(f"{IFACE}.Revoke", {"id": made["key"]["id"]})
            c.ok(f"{IFACE}.Delete", {"id": made["key"]["id"]})
            c.ok(f"{IFACE}.GetSharedSecret")
            c.ok(f"{IFACE}.RotateSharedSecret")
            bad = make_token(prefix, admin_id, other_secret(secret))
            assert c.call(f"{IFACE}.List", {"auth": bad})["error"] == f"{IFACE}.PermissionDenied"
            assert c.call(f"{IFACE}.Get", {"id": 5})["error"] \
                == "org.varlink.service.InvalidParameter"
            assert c.call(f"{IFACE}.Nope", {})["error"] == "org.varlink.service.MethodNotFound"
            c.send_bytes(b'{"method": "' + IFACE.encode() + b'.Verify", "parameters": {"token": '
                         + json.dumps(admin).encode() + b', "more": 1.5e300}}\0')
            assert "error" in c.recv()
            c.send_bytes(b'{"method": [1, 2\0')
            assert "error" in c.recv()
        late = out.read_text(errors="replace")[ready_at:]
        d.stop()
        lazy = sorted(set(re.findall(r"binding file (\S+) .*symbol `([^']+)'", late)))
        assert not lazy, f"bound while serving: {lazy}"
    finally:
        problem = d.cleanup()
        assert problem is None, problem


# ---------------------------------------------------------------- same work


class CallgrindDaemon(Daemon):
    out_file = None

    def argv(self):
        return ["valgrind", "--tool=callgrind", "--toggle-collect=api_check_token",
                f"--callgrind-out-file={self.out_file}"] + super().argv()


def _inclusive(out_file):
    """{function: inclusive Ir} from a callgrind profile."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                        str(out_file)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    costs = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*?:([A-Za-z_]\w*)", line)
        if m:
            costs.setdefault(m.group(2), int(m.group(1).replace(",", "")))
    return costs


def test_unknown_id_and_wrong_secret_cost_the_same_hash_and_compare(daemon, tmp_path):
    if shutil.which("valgrind") is None or shutil.which("callgrind_annotate") is None:
        pytest.skip("valgrind is not installed")
    needs_plain_build()
    n = 200
    setup = daemon(config={"lockout_threshold": 0})
    with Varlink(setup.socket, timeout=30) as c:
        target = c.create("target")["token"]
        calls = [{"method": f"{IFACE}.Create", "parameters": {"name": f"other-{i}"}}
                 for i in range(300)]
        c.send_bytes(b"".join(json.dumps(m).encode() + b"\0" for m in calls))
        for _ in calls:
            assert "error" not in c.recv()
    setup.stop()
    prefix, target_id, _, _ = split_token(target)
    rng = random.Random(5)
    per_verify = {}
    for kind in ("unknown id", "wrong secret"):
        g = CallgrindDaemon(tmp_path, 10 + len(per_verify), state_dir=setup.state_dir,
                            config={"lockout_threshold": 0})
        g.out_file = tmp_path / f"callgrind.{kind.replace(' ', '-')}"
        try:
            g.start()
            g.wait_ready(60)
            with Varlink(g.socket, timeout=60) as c:
                for _ in range(n):
                    key_id = rnd(rng, 12) if kind == "unknown id" else target_id
                    assert c.verify(make_token(prefix, key_id, rnd(rng, 43)))["code"] \
                        == "NOT_FOUND"
            g.stop()
        finally:
            problem = g.cleanup()
            assert problem is None, problem
        costs = _inclusive(g.out_file)
        per_verify[kind] = {f: costs.get(f, 0) / n for f in
                            ("api_check_token", "token_hash", "token_hash_equal", "keystore_view",
                             "key_view_end")}
    u, w = per_verify["unknown id"], per_verify["wrong secret"]
    print(f"\nsecrets: instructions per verify: unknown id {u}, wrong secret {w}; "
          f"whole check_token ratio {w['api_check_token'] / u['api_check_token']:.3f}")
    for f in ("token_hash", "token_hash_equal"):
        assert u[f] > 0 and w[f] > 0, f"{f} is skipped: {per_verify}"
        assert abs(u[f] - w[f]) <= 0.01 * max(u[f], w[f]), (f, per_verify)
    assert u["token_hash"] > 1000, "the hash is cheaper than BLAKE2b of a token"
    # Apart from the lookup (which decodes the record when the id exists,
    # and ids are public) and ending it, the same work.
    assert u["keystore_view"] > 0 and w["keystore_view"] > 0, per_verify
    rest_u = u["api_check_token"] - u["keystore_view"] - u["key_view_end"]
    rest_w = w["api_check_token"] - w["keystore_view"] - w["key_view_end"]
    assert abs(rest_u - rest_w) <= 0.03 * max(rest_u, rest_w), per_verify
