# SPDX-License-Identifier: MIT
"""Crash safety: the daemon is killed with SIGKILL at random moments while
concurrent clients create, update, disable, enable, revoke and delete keys
(some of them pipelining several calls in one write), while a client reads
a long List stream slowly, and while another process holds a read
transaction on the keystore.  After every kill:

- `apikeyd --check` finds the keystore consistent (every record decodes,
  the name and owner indexes agree with the records both ways);
- every change whose reply was received is there (a created key exists
  with its token verifying, unless a later acknowledged delete removed it;
  a revoked key is revoked; an update's values are stored);
- a change whose reply never came is either wholly there or not at all,
  and no key exists that no client asked for;
- the audit log holds exactly one record for each change that happened
  (acknowledged, or in flight and applied) and none for one that did not;
- the daemon starts again on the same state directory, answers, and clears
  the LMDB reader slot the killed process left behind.

A second test kills the daemon during its first start, between creating
the pepper file and writing it, and expects the state directory to start.

APIKEYD_STRESS_KILLS sets the number of kills (default 10; `make stress`
uses more); APIKEYD_STRESS_SEED fixes the random choices (kill moments,
operations), though thread timing still varies from run to run.
"""

import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import APIKEYD, IFACE, ConnectionClosed, Varlink

KILLS = int(os.environ.get("APIKEYD_STRESS_KILLS", "10"))
SEED = int(os.environ.get("APIKEYD_STRESS_SEED", str(random.SystemRandom().randrange(1 << 32))))

CHANGE_ACTIONS = {"create", "update", "disable", "enable", "revoke", "delete"}
SEED_KEYS = 1000  # static keys: a List of them is a long stream
SEED_DESCRIPTION = "s" * 300
WORKERS = 4
CONFIG = {"lockout_threshold": 0, "last_used_flush_interval": "1s"}
# The ways a connection to a killed daemon ends.
CONNECTION_ENDED = (ConnectionClosed, OSError, AssertionError, ValueError)


# ---------------------------------------------------------------- the model


@dataclass
class Key:
    id: str
    name: str
    owner: str
    description: str
    status: str
    token: str = None

    def state(self):
        return (self.name, self.owner, self.description, self.status)


def observed_state(k):
    return (k["name"], k["owner"], k.get("description"), k["status"])


@dataclass
class Op:
    """One change sent to the daemon.  `before`/`after`: the key's state
    (None: absent) without and with the change."""
    action: str
    params: dict
    key: Key = None  # None for create
    before: tuple = None
    after: tuple = None

    def message(self):
        return json.dumps({"method": f"{IFACE}.{self.action.capitalize()}",
                           "parameters": self.params}).encode() + b"\0"


class Worker(threading.Thread):
    """A client changing its own keys until the connection ends.  Every
    change whose reply arrives is applied to the model (`keys`) and logged
    in `acked`; changes sent whose reply has not arrived are `pending`."""

    def __init__(self, wid, path, keys, rng, pipelined=False):
        super().__init__(daemon=True)
        self.wid, self.path, self.keys, self.rng = wid, path, keys, rng
        self.pipelined = pipelined
        self.pending = []
        self.acked = []  # (action, key id)
        self.deleted_tokens = []
        self.errors = []
        self.seq = 0

    def next_name(self):
        self.seq += 1
        return f"w{self.wid}-{os.getpid()}-{self.seq}-{self.rng.randrange(1 << 30)}"

    def make_op(self, busy):
        live = [k for k in self.keys.values() if k.id not in busy]
        unrevoked = [k for k in live if k.status != "revoked"]
        choices = [("create", 5 if len(self.keys) < 15 else 2)]
        if unrevoked:
            choices += [("update", 3), ("toggle", 2), ("revoke", 1)]
        if live:
            choices.append(("delete", 1 if len(self.keys) < 15 else 3))
        if self.pipelined:
            choices = [c for c in choices if c[0] in ("create", "delete")]
        action = self.rng.choices([c[0] for c in choices], [c[1] for c in choices])[0]
        if action == "create":
            name = self.next_name()
            params = {"name": name, "owner": f"crash-owner-{self.wid % 3}",
                      "description": f"created {name}", "scope": ["crash"]}
            return Op("create", params, None, None,
                      (name, params["owner"], params["description"], "enabled"))
        if action == "delete":
            k = self.rng.choice(live)
            return Op("delete", {"id": k.id}, k, k.state(), None)
        k = self.rng.choice(unrevoked)
        if action == "update":
            params = {"id": k.id, "description": f"updated {self.next_name()}"}
            name = k.name
            if self.rng.random() < 0.3:
                name = params["name"] = self.next_name()
            return Op("update", params, k, k.state(),
                      (name, k.owner, params["description"], k.status))
        if action == "toggle":
            action = "enable" if k.status == "disabled" else "disable"
            status = "enabled" if action == "enable" else "disabled"
            return Op(action, {"id": k.id}, k, k.state(), (k.name, k.owner, k.description, status))
        return Op("revoke", {"id": k.id}, k, k.state(),
                  (k.name, k.owner, k.description, "revoked"))

    def acknowledge(self, op, reply):
        if "error" in reply or set(reply) != {"parameters"}:
            self.errors.append(f"{op.action} {op.params}: {reply}")
            return False
        p = reply["parameters"]
        if op.action == "create":
            kj = p["key"]
            k = Key(kj["id"], kj["name"], kj["owner"], kj.get("description"), kj["status"],
                    p["token"])
            if k.state() != op.after:
                self.errors.append(f"create replied {kj}, expected {op.after}")
                return False
            self.keys[k.id] = k
            self.acked.append(("create", k.id))
        elif op.action == "delete":
            del self.keys[op.key.id]
            if op.key.token:
                self.deleted_tokens.append(op.key.token)
            self.acked.append(("delete", op.key.id))
        else:
            kj = p["key"]
            if kj["id"] != op.key.id or observed_state(kj) != op.after:
                self.errors.append(f"{op.action} replied {kj}, expected {op.after}")
                return False
            op.key.name, op.key.owner, op.key.description, op.key.status = op.after
            self.acked.append((op.action, op.key.id))
        return True

    def run(self):
        try:
            conn = Varlink(self.path, timeout=5)
        except OSError:
            return
        try:
            while not self.errors:
                busy = set()
                batch = []
                for _ in range(self.rng.randint(1, 12) if self.pipelined else 1):
                    op = self.make_op(busy)
                    if op.key:
                        busy.add(op.key.id)
                    batch.append(op)
                self.pending = list(batch)
                conn.send_bytes(b"".join(op.message() for op in batch))
                for op in batch:
                    reply = conn.recv()
                    if not self.acknowledge(op, reply):
                        return
                    self.pending.remove(op)
        except CONNECTION_ENDED:
            pass
        finally:
            conn.close()


class SlowLister(threading.Thread):
    """Reads long List streams (`more`) slowly, so a kill finds one open."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path = path
        self.replies = 0

    def run(self):
        try:
            conn = Varlink(self.path, timeout=5)
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        except OSError:
            return
        try:
            while True:
                conn.send({"method": f"{IFACE}.List", "parameters": {"limit": 1000},
                           "more": True})
                while True:
                    r = conn.recv()
                    self.replies += 1
                    time.sleep(0.001)
                    if "error" in r or not r.get("continues"):
                        break
        except CONNECTION_ENDED:
            pass
        finally:
            conn.close()


# A process that keeps the keystore open with a read transaction, so the
# reader slot of a killed daemon stays in the lock file (LMDB resets the
# table only when the environment is opened by a process alone).
HOLDER = r"""
import ctypes, sys
lib = ctypes.CDLL("liblmdb.so.0")
env, txn = ctypes.c_void_p(), ctypes.c_void_p()
assert lib.mdb_env_create(ctypes.byref(env)) == 0
assert lib.mdb_env_set_mapsize(env, ctypes.c_size_t(1 << 32)) == 0
assert lib.mdb_env_set_maxdbs(env, 16) == 0
rc = lib.mdb_env_open(env, sys.argv[1].encode(), 0x4000 | 0x20000 | 0x200000, 0o600)
assert rc == 0, rc
assert lib.mdb_txn_begin(env, None, 0x20000, ctypes.byref(txn)) == 0
print("ready", flush=True)
for line in sys.stdin:
    lib.mdb_txn_reset(txn)  # let the pages of old snapshots be reused
    assert lib.mdb_txn_renew(txn) == 0
    print("renewed", flush=True)
"""


def reader_pids(db):
    """The pids in the keystore's reader table (mdb_stat, package lmdb-utils)."""
    if shutil.which("mdb_stat") is None:
        pytest.skip("mdb_stat is not installed (package lmdb-utils)")
    r = subprocess.run(["mdb_stat", "-n", "-r", str(db)], capture_output=True, text=True,
                       timeout=30)
    return {int(m.group(1)) for m in re.finditer(r"^\s*(\d+)\s+[0-9a-f]+\s", r.stdout, re.M)}


# ---------------------------------------------------------------- checks


def all_keys(client):
    keys, cursor = {}, None
    while True:
        p = {"limit": 1000}
        if cursor:
            p["cursor"] = cursor
        page = client.list(**p)
        for k in page["keys"]:
            assert k["id"] not in keys, f"List gave {k['id']} twice"
            keys[k["id"]] = k
        cursor = page.get("cursor")
        if not cursor:
            return keys


def audit_after(client, seq):
    events = []
    while True:
        page = client.ok(f"{IFACE}.ListAudit", {"after": seq, "limit": 1000})["events"]
        if not page:
            return events, seq
        events += page
        seq = page[-1]["seq"]


def run_check(d):
    r = subprocess.run([str(APIKEYD), "--config", str(d.config_file), "--state-dir",
                        str(d.state_dir), "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "is consistent" in r.stdout, \
        f"apikeyd --check: rc {r.returncode}\n{r.stdout}{r.stderr}"


def startup_problems(log_text):
    """Lines of a start-up (up to "ready") that speak of trouble."""
    head = log_text.split(" ready on ", 1)[0]
    return [line for line in head.splitlines()
            if re.search(r"\b(error|failed|corrupt|cannot|inconsistent)\b", line, re.I)]


@dataclass
class Tally:
    kills: int = 0
    acked: int = 0
    in_flight: int = 0
    applied: int = 0
    not_applied: int = 0
    losses: list = field(default_factory=list)
    half_applied: list = field(default_factory=list)
    phantoms: list = field(default_factory=list)
    audit: list = field(default_factory=list)
    tokens: list = field(default_factory=list)
    stale_readers: int = 0
    stream_replies: int = 0


def reconcile(workers, models, observed, seeds, tally):
    """Compare the keystore after a restart with what the clients know;
    resolve changes in flight to applied or not.  Returns the audit records
    expected for the round."""
    observed = dict(observed)
    expected = Counter()
    for s in seeds:
        k = observed.pop(s, None)
        if k is None or k.get("description") != SEED_DESCRIPTION or k["status"] != "enabled":
            tally.losses.append(f"seed key {s}: {k}")
    for w in workers:
        keys = models[w.wid]
        expected.update(w.acked)
        tally.acked += len(w.acked)
        resolved = set()  # keys whose state the changes in flight explain
        for op in w.pending:
            tally.in_flight += 1
            if op.action == "create":
                name, owner = op.params["name"], op.params["owner"]
                found = [k for k in observed.values() if (k["name"], k["owner"]) == (name, owner)]
                if not found:
                    tally.not_applied += 1
                    continue
                kj = observed.pop(found[0]["id"])
                if observed_state(kj) != op.after:
                    tally.half_applied.append(f"create in flight: {kj}, expected {op.after}")
                keys[kj["id"]] = Key(kj["id"], *observed_state(kj))
                resolved.add(kj["id"])
                expected[("create", kj["id"])] += 1
                tally.applied += 1
                continue
            resolved.add(op.key.id)
            kj = observed.pop(op.key.id, None)
            st = None if kj is None else observed_state(kj)
            if st == op.after:
                tally.applied += 1
                expected[(op.action, op.key.id)] += 1
                if st is None:
                    del keys[op.key.id]
                else:
                    op.key.name, op.key.owner, op.key.description, op.key.status = st
            elif st == op.before:
                tally.not_applied += 1
            else:
                tally.half_applied.append(f"{op.action} {op.params} in flight: found {kj}, "
                                          f"expected {op.before} or {op.after}")
        for k in list(keys.values()):
            if k.id in resolved:
                continue
            kj = observed.pop(k.id, None)
            if kj is None:
                tally.losses.append(f"acknowledged key {k.id} {k.state()} is gone")
                del keys[k.id]
            elif observed_state(kj) != k.state():
                tally.losses.append(f"key {k.id}: acknowledged {k.state()}, found "
                                    f"{observed_state(kj)}")
                k.name, k.owner, k.description, k.status = observed_state(kj)
    for k in observed.values():
        tally.phantoms.append(f"key nobody created (or whose delete was acknowledged): {k}")
    return expected


def check_tokens(client, keys, deleted_tokens, rng, tally):
    want = {"enabled": "VALID", "disabled": "DISABLED", "revoked": "REVOKED"}
    with_token = [k for k in keys if k.token]
    sample = rng.sample(with_token, min(len(with_token), 150))
    for k in sample:
        code = client.verify(k.token)["code"]
        if code != want[k.status]:
            tally.tokens.append(f"token of {k.id} ({k.status}): {code}")
    for t in deleted_tokens[-50:]:
        code = client.verify(t)["code"]
        if code != "NOT_FOUND":
            tally.tokens.append(f"token of a deleted key: {code}")
    return len(sample)


# ---------------------------------------------------------------- the test


def seed_keys(d):
    with Varlink(d.socket, timeout=30) as c:
        calls = [{"method": f"{IFACE}.Create",
                  "parameters": {"name": f"seed-{i:04d}", "owner": "crash-seed",
                                 "description": SEED_DESCRIPTION}} for i in range(SEED_KEYS)]
        c.send_bytes(b"".join(json.dumps(m).encode() + b"\0" for m in calls))
        ids = [c.recv()["parameters"]["key"]["id"] for _ in calls]
    return ids


def test_acknowledged_changes_survive_sigkill(daemon, tmp_path):
    if shutil.which("mdb_stat") is None:
        pytest.skip("mdb_stat is not installed (package lmdb-utils)")
    rng = random.Random(SEED)
    print(f"\ncrash: seed {SEED} (APIKEYD_STRESS_SEED), {KILLS} kills")
    d = daemon(config=CONFIG)
    db = d.state_dir / "keys.mdb"
    seeds = seed_keys(d)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    tally = Tally()
    models = {w: {} for w in range(WORKERS + 1)}
    audit_seq = 0
    with Varlink(d.socket) as c:
        _, audit_seq = audit_after(c, 0)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for round_no in range(KILLS):
            holder.stdin.write("renew\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "renewed"
            workers = [Worker(w, d.socket, models[w], random.Random(rng.random()),
                              pipelined=(w == WORKERS)) for w in range(WORKERS + 1)]
            lister = SlowLister(d.socket)
            half = Varlink(d.socket)
            half.send_bytes(b'{"method": "io.apikeyd.Keys.Create", "parameters": {"name": "ha')
            lister.start()
            for w in workers:
                w.start()
            time.sleep(rng.uniform(0.05, 1.5))
            dead = d.pid
            d.kill()
            tally.kills += 1
            half.close()
            for t in workers + [lister]:
                t.join(15)
                assert not t.is_alive(), "a client did not notice the kill"
            tally.stream_replies += lister.replies
            errors = [e for w in workers for e in w.errors]
            assert not errors, f"round {round_no}: unexpected replies: {errors}"

            # The killed daemon's reader slot is stale now; whoever opens the
            # keystore next (the check, or the daemon itself) clears it.
            if dead in reader_pids(db):
                tally.stale_readers += 1
            log_before = len(d.log())
            if round_no % 2 == 0:
                run_check(d)
                assert dead not in reader_pids(db), "apikeyd --check left a stale reader"
                d.start()
            else:
                d.start()
                assert dead not in reader_pids(db), "the restarted daemon left a stale reader"
                run_check(d)
            problems = startup_problems(d.log()[log_before:])
            assert not problems, f"round {round_no}: start-up after a kill: {problems}"

            with Varlink(d.socket, timeout=30) as c:
                observed = all_keys(c)
                expected = reconcile(workers, models, observed, seeds, tally)
                events, audit_seq = audit_after(c, audit_seq)
                got = Counter((e["action"], e.get("key_id")) for e in events
                              if e["action"] in CHANGE_ACTIONS)
                bad = [e for e in events if e["action"] in CHANGE_ACTIONS and e["result"] != "ok"]
                if got != expected or bad:
                    tally.audit.append(f"round {round_no}: missing "
                                       f"{dict(expected - got)}, unexplained {dict(got - expected)}"
                                       f", not ok {bad}")
                live = [k for m in models.values() for k in m.values()]
                check_tokens(c, live, [t for w in workers for t in w.deleted_tokens], rng, tally)
            # Anything wrong is reported with the round it happened in.
            assert not (tally.losses or tally.half_applied or tally.phantoms or tally.audit
                        or tally.tokens), f"after kill {tally.kills}: {tally}"
        d.stop()
        run_check(d)
    finally:
        holder.stdin.close()
        try:
            holder.wait(10)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait()
    live = sum(len(m) for m in models.values())
    print(f"crash: kills={tally.kills} acknowledged_changes={tally.acked} "
          f"in_flight={tally.in_flight} (applied {tally.applied}, not applied "
          f"{tally.not_applied}) losses={len(tally.losses)} half_applied="
          f"{len(tally.half_applied)} phantoms={len(tally.phantoms)} audit_mismatches="
          f"{len(tally.audit)} stale_reader_slots_cleared={tally.stale_readers} "
          f"stream_replies_read={tally.stream_replies} keys_at_end={live + len(seeds)}")
    assert tally.kills == KILLS
    assert tally.acked > KILLS * 10, "too few changes were made to mean anything"
    assert tally.stale_readers > 0, "no kill ever left a reader slot behind: the test is blind"


# ---------------------------------------------------------------- first start


def test_killed_while_writing_the_pepper_the_state_still_starts(daemon, tmp_path):
    """The first start creates the pepper.  strace holds the daemon inside
    the write() of the new pepper so the kill lands in that window."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    state = tmp_path / "fresh-state"
    d = daemon(state_dir=state, config=CONFIG, start=False)
    pepper, partial = state / "pepper", state / "pepper.new"
    argv = ["strace", "-f", "-qq", "-o", "/dev/null", "-P", str(partial), "-e", "trace=write",
            "-e", "inject=write:delay_enter=3s:when=1"] + d.argv()
    tracer = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    children = []
    try:
        deadline = time.monotonic() + 10
        while not partial.exists():
            assert time.monotonic() < deadline and tracer.poll() is None, \
                "the daemon never created its pepper under strace"
            time.sleep(0.01)
        children = Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children").read_text().split()
        assert len(children) == 1, children
        time.sleep(0.2)
        assert partial.stat().st_size == 0, "the write was not held: the test is blind"
        os.kill(int(children[0]), signal.SIGKILL)
        tracer.wait(10)
    finally:
        # A daemon strace let go of would run on: stop it by its PID too.
        for pid in children:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if tracer.poll() is None:
            tracer.kill()
            tracer.wait()
    # The half-written pepper never got its name: no pepper exists yet, and
    # the next start makes one.
    assert sorted(p.name for p in state.iterdir()) == ["pepper.new"]
    d.start()
    with Varlink(d.socket) as c:
        token = c.create("after-the-crash")["token"]
        assert c.verify(token)["code"] == "VALID"
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("pepper")) == ["pepper"]
    assert len(pepper.read_bytes()) == 32
