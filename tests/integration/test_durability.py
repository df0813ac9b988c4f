# SPDX-License-Identifier: MIT
"""What the daemon answers is on disk, and what it deletes leaves nothing behind.

Durability.  kill -9 keeps the page cache, so a daemon that never syncs
survives test_crash.py: these tests look at the calls instead.  The real
daemon runs with sync-shim.so preloaded (tests/integration/sync_shim.c),
which logs, in the order they happened across threads, every sync, every
write to a file, every rename and every message on a socket.  For each
acknowledged change (Create, Update, Disable, Enable, Revoke, Delete,
RotateSharedSecret) the log must show, between the daemon's reading of
the call and its sending of the reply:

- a write to keys.mdb (the change itself), and
- after the last write to keys.mdb that was not O_DSYNC, an fdatasync,
  fsync or msync of keys.mdb that returned 0;
- for RotateSharedSecret also the new secret written to shared-secret.new,
  that file synced, renamed to shared-secret, and the state directory
  synced, in that order.

Calls of several clients at once may share one transaction, written while
earlier replies are still going out: for them, a write to keys.mdb made
after the first call was read must be on disk before each reply.

The same check is run against daemons made careless through the shim
(their keystore opened with MDB_NOSYNC or MDB_NOMETASYNC, or the syncs of
one file dropped) and must fail there.

Deletion.  As root and as an ordinary user: a key created and deleted
(directly, after a Revoke, or a parent whose children it revokes, or a
child while its parent lives) is gone from List by its owner without an
error and from its parent's children, its name is free again, and
`apikeyd --check` on the stopped state directory finds the names, owners
and children indexes in step with the records.
"""

import os
import subprocess
from dataclasses import dataclass

import pytest

from conftest import ALICE, APIKEYD, IFACE, ME_ACTOR, Varlink, list_all_ids

SHIM = APIKEYD.parent / "tests" / "sync-shim.so"
SYNCS = ("fsync", "fdatasync", "msync")
FILE_WRITES = ("write", "pwrite", "writev")


# ---------------------------------------------------------------- the shim's log


@dataclass
class Call:
    seq: int
    call: str
    target: str
    result: str
    dsync: bool

    def __str__(self):
        return f"#{self.seq} {self.call} {self.target} -> {self.result}" + \
            (" (O_DSYNC)" if self.dsync else "")


def parse_log(text):
    calls = []
    for line in text.splitlines():
        seq, call, rest = line.split(" ", 2)
        dsync = rest.endswith(" dsync")
        if dsync:
            rest = rest[:-len(" dsync")]
        target, result = rest.rsplit(" ", 1)
        calls.append(Call(int(seq), call, target, result, dsync))
    return sorted(calls, key=lambda c: c.seq)


class ShimLog:
    def __init__(self, path):
        self.path = path
        self.path.touch()

    def mark(self):
        return self.path.stat().st_size

    def since(self, mark):
        return parse_log(self.path.read_bytes()[mark:].decode())


def with_shim(d, log, **env):
    """Start `d` (a stopped Daemon) with the shim preloaded, through env(1):
    the PID the fixture stops is the daemon's own."""
    plain = d.argv
    asan = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS"), "verify_asan_link_order=0"]))
    settings = {"LD_PRELOAD": str(SHIM), "APIKEYD_SHIM_LOG": str(log.path),
                "ASAN_OPTIONS": asan, **env}
    d.argv = lambda: ["env"] + [f"{k}={v}" for k, v in settings.items()] + plain()
    d.start()
    return d


def exchanges(calls):
    """(call read, reply sent) pairs: each socket's first read, then the
    first thing the daemon sent back on that socket."""
    out, seen = [], set()
    for c in calls:
        if c.call != "recv" or not c.target.startswith("socket:") or c.target in seen:
            continue
        seen.add(c.target)
        reply = next((s for s in calls if s.call == "send" and s.target == c.target
                      and s.seq > c.seq), None)
        out.append((c, reply))
    return out


def durability_problems(calls, state_dir, recv, reply, rotate=False):
    """What is wrong with the calls made between `recv` (the daemon read the
    call) and `reply` (it began to send the answer); [] when the change was
    on disk before the answer left."""
    if reply is None:
        return [f"no reply was sent on {recv.target}"]
    keystore = str(state_dir / "keys.mdb")
    window = [c for c in calls if recv.seq < c.seq < reply.seq]
    problems = [f"{c} failed" for c in window if c.result.startswith("-1")]
    writes = [c for c in window if c.call in FILE_WRITES and c.target == keystore]
    if not writes:
        return problems + [f"nothing was written to keys.mdb between the call ({recv}) "
                           f"and its reply ({reply})"]
    plain = [c for c in writes if not c.dsync]
    if plain:
        last = plain[-1]
        synced = [c for c in window if c.call in SYNCS and c.target == keystore
                  and c.seq > last.seq and c.result == "0"]
        if not synced:
            problems.append(f"keys.mdb written ({last}) but not synced before the reply "
                            f"({reply})")
    if rotate:
        problems += secret_file_problems(window, state_dir, reply)
    return problems


def commit_problems(calls, state_dir, first, reply):
    """For calls answered while the writer may already be writing the next
    group: some write to keys.mdb after `first` (the first call read) is on
    disk before `reply`, through a sync or an O_DSYNC write with every
    write before it synced."""
    keystore = str(state_dir / "keys.mdb")
    ops = [c for c in calls if first.seq < c.seq < reply.seq and c.target == keystore]
    writes = [c for c in ops if c.call in FILE_WRITES]
    if not writes:
        return [f"nothing was written to keys.mdb before the reply ({reply})"]
    points = [c for c in ops if (c.call in SYNCS and c.result == "0") or
              (c.call in FILE_WRITES and c.dsync)]
    if not points:
        return [f"keys.mdb written ({writes[-1]}) but not synced before the reply ({reply})"]
    last = points[-1]
    if last.call in FILE_WRITES:
        plain = [c for c in writes if c.seq < last.seq and not c.dsync]
        if plain and not any(c.call in SYNCS and plain[-1].seq < c.seq < last.seq for c in ops):
            return [f"keys.mdb written ({plain[-1]}) but not synced before the reply ({reply})"]
    return []


def secret_file_problems(window, state_dir, reply):
    new, final = str(state_dir / "shared-secret.new"), str(state_dir / "shared-secret")
    steps = [
        ("the new secret written", lambda c: c.call in FILE_WRITES and c.target == new),
        ("shared-secret.new synced", lambda c: c.call in SYNCS and c.target == new),
        ("renamed to shared-secret",
         lambda c: c.call == "rename" and c.target == f"{new} -> {final}"),
        ("the state directory synced",
         lambda c: c.call in SYNCS and c.target == str(state_dir)),
    ]
    after = 0
    for what, match in steps:
        hit = next((c for c in window
                    if c.seq > after and match(c) and not c.result.startswith("-1")), None)
        if hit is None:
            return [f"RotateSharedSecret: {what} is missing before the reply ({reply})"]
        after = hit.seq
    return []


# ---------------------------------------------------------------- the changes


def ok(reply):
    assert "error" not in reply and set(reply) == {"parameters"}, reply
    return reply["parameters"]


def prepare(c, method):
    """The parameters of `method`'s call, with the key it needs made first."""
    if method == "Create":
        return {"name": "new-key", "description": "made to be synced"}
    k = ok(c.call(f"{IFACE}.Create", {"name": f"for-{method.lower()}"}))["key"]
    if method == "Enable":
        ok(c.call(f"{IFACE}.Disable", {"id": k["id"]}))
    if method == "Update":
        return {"id": k["id"], "description": "changed", "name": "renamed"}
    if method == "RotateSharedSecret":
        return {}
    return {"id": k["id"]}


def check_answer(method, params):
    if method == "Create":
        assert params["key"]["name"] == "new-key" and params["token"], params
    elif method == "Update":
        assert params["key"]["name"] == "renamed", params
    elif method in ("Disable", "Enable", "Revoke"):
        want = {"Disable": "disabled", "Enable": "enabled", "Revoke": "revoked"}[method]
        assert params["key"]["status"] == want, params
    elif method == "RotateSharedSecret":
        assert len(params["secret"]) == 44, params
    else:
        assert params == {}, params


def synced_call(d, log, method):
    """Call `method` once on a connection of its own; the shim's problems with it."""
    with Varlink(d.socket) as c:
        params = prepare(c, method)
    mark = log.mark()
    with Varlink(d.socket) as c:
        answer = ok(c.call(f"{IFACE}.{method}", params))
    check_answer(method, answer)
    calls = log.since(mark)
    pairs = exchanges(calls)
    assert len(pairs) == 1, f"expected one call in the log, found {pairs}"
    recv, reply = pairs[0]
    return durability_problems(calls, d.state_dir, recv, reply,
                               rotate=method == "RotateSharedSecret"), calls


CHANGES = ["Create", "Update", "Disable", "Enable", "Revoke", "Delete", "RotateSharedSecret"]


@pytest.fixture
def shim_daemon(daemon, tmp_path):
    if not SHIM.is_file():
        pytest.fail(f"{SHIM} is missing: build it with `make tests`", pytrace=False)

    logs = []

    def start(**env):
        log = ShimLog(tmp_path / f"shim{len(logs)}.log")
        logs.append(log)
        return with_shim(daemon(start=False), log, **env), log

    return start


@pytest.mark.parametrize("method", CHANGES)
def test_change_is_synced_before_its_reply(shim_daemon, method):
    d, log = shim_daemon()
    problems, calls = synced_call(d, log, method)
    assert not problems, "\n".join(problems + ["the calls:"] + [str(c) for c in calls])


@pytest.mark.parametrize("env,fails", [({}, False),
                                         ({"APIKEYD_SHIM_MDB_FLAGS": "nosync"}, True)],
                         ids=["daemon", "MDB_NOSYNC"])
def test_changes_committed_together_are_synced_before_each_reply(shim_daemon, env, fails):
    """Calls from several clients at once: the writer may commit them in one
    transaction, and no client hears back before it is synced (and with
    MDB_NOSYNC forced, the check says so)."""
    d, log = shim_daemon(**env)
    clients = [Varlink(d.socket) for _ in range(6)]
    try:
        mark = log.mark()
        for i, c in enumerate(clients):
            c.send({"method": f"{IFACE}.Create", "parameters": {"name": f"together-{i}"}})
        for c in clients:
            ok(c.recv())
    finally:
        for c in clients:
            c.close()
    calls = log.since(mark)
    pairs = exchanges(calls)
    assert len(pairs) == len(clients), pairs
    # A call may be written in a group begun for another, before it was
    # itself read: each window runs from the first call read.
    first = min(pairs, key=lambda p: p[0].seq)[0]
    problems = []
    for _, reply in pairs:
        problems += commit_problems(calls, d.state_dir, first, reply)
    if fails:
        assert len(problems) == len(clients) and all("not synced before the reply" in p
                                                     for p in problems), problems
    else:
        assert not problems, "\n".join(problems + [str(c) for c in calls])


CARELESS = [
    pytest.param({"APIKEYD_SHIM_MDB_FLAGS": "nosync"}, CHANGES, "not synced before the reply",
                 id="MDB_NOSYNC"),
    pytest.param({"APIKEYD_SHIM_MDB_FLAGS": "nometasync"}, CHANGES,
                 "not synced before the reply", id="MDB_NOMETASYNC"),
    pytest.param({"APIKEYD_SHIM_SKIP_SYNC": "/keys.mdb"}, CHANGES, "not synced before the reply",
                 id="keys.mdb-syncs-dropped"),
    pytest.param({"APIKEYD_SHIM_SKIP_SYNC": "/shared-secret.new"}, ["RotateSharedSecret"],
                 "shared-secret.new synced is missing", id="secret-file-sync-dropped"),
]


@pytest.mark.parametrize("env,methods,expected", CARELESS)
def test_the_check_fails_on_a_daemon_that_does_not_sync(shim_daemon, env, methods, expected):
    """The check above, run against the daemon made careless: it must
    notice every change (this is what MDB_NOSYNC in keystore_open would
    look like)."""
    d, log = shim_daemon(**env)
    for method in methods:
        problems, calls = synced_call(d, log, method)
        assert any(expected in p for p in problems), \
            f"{method} with {env}: the check did not notice; problems {problems}, calls:\n" + \
            "\n".join(str(c) for c in calls)


def test_rotation_is_audited_in_the_keystore(daemon):
    """RotateSharedSecret writes no key: its audit record is its whole
    keystore transaction, and must not be dropped for want of one."""
    d = daemon()
    c = d.client()
    secret = ok(c.call(f"{IFACE}.RotateSharedSecret"))["secret"]
    d.restart()
    c = d.client()
    assert ok(c.call(f"{IFACE}.GetSharedSecret"))["secret"] == secret
    events = ok(c.call(f"{IFACE}.ListAudit", {}))["events"]
    rotations = [(e["action"], e["actor"], e["result"]) for e in events
                 if e["action"] == "rotate-shared-secret"]
    assert rotations == [("rotate-shared-secret", ME_ACTOR, "ok")], events


# ---------------------------------------------------------------- deletion leaves nothing behind


def run_check(d):
    r = subprocess.run([str(APIKEYD), "--config", str(d.config_file), "--state-dir",
                        str(d.state_dir), "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "is consistent" in r.stdout, \
        f"apikeyd --check: rc {r.returncode}\n{r.stdout}{r.stderr}"


class Caller:
    """Calls as root on the test's own connection, or as ALICE from a child
    process (each call its own connection, SO_PEERCRED her uid)."""

    def __init__(self, d, as_user, who):
        self.owner = who
        self.as_user = as_user
        self.reconnect(d)

    def reconnect(self, d):
        if self.owner == "root":
            c = d.client()
            self.call = lambda m, p: c.call(f"{IFACE}.{m}", p)
            self.ids = lambda **p: list_all_ids(c, **p)
        else:
            u = self.as_user(self.owner, socket=d.socket)
            self.call = lambda m, p: u.call(f"{IFACE}.{m}", p)
            self.ids = lambda **p: u.run(lambda c: list_all_ids(c, **p))

    def ok(self, method, **params):
        return ok(self.call(method, params))

    def listed(self):
        """The owner's keys, as List by owner shows them (no error), by id."""
        r = self.call("List", {"owner": self.owner})
        keys = ok(r)["keys"]
        assert sorted(k["id"] for k in keys) == sorted(self.ids(owner=self.owner))
        return {k["id"]: k for k in keys}


@pytest.fixture(params=["root", ALICE])
def caller(request, daemon, as_user):
    d = daemon(config={"user_max_keys": 10})
    return d, Caller(d, as_user, request.param)


def assert_gone(who, key, name):
    kid = key["id"]
    assert kid not in who.listed(), f"{kid} is listed after its Delete"
    err = who.call("Get", {"id": kid})
    assert err.get("error") == f"{IFACE}.NoSuchKey" and err["parameters"] == {"id": kid}, err
    # The name is free again, for the same owner.
    again = who.ok("Create", name=name)["key"]
    assert again["id"] != kid and again["owner"] == who.owner
    assert again["id"] in who.listed()
    return again


@pytest.mark.parametrize("revoke_first", [False, True], ids=["delete", "revoke-then-delete"])
def test_deleted_key_leaves_no_index_entry(caller, revoke_first):
    d, who = caller
    keep = who.ok("Create", name="kept")["key"]
    k = who.ok("Create", name="short-lived")["key"]
    assert k["owner"] == who.owner and k["id"] in who.listed()
    if revoke_first:
        assert who.ok("Revoke", id=k["id"])["key"]["status"] == "revoked"
    assert who.ok("Delete", id=k["id"]) == {}
    again = assert_gone(who, k, "short-lived")
    # Deleting the new one frees the name once more; the other key is untouched.
    assert who.ok("Delete", id=again["id"]) == {}
    assert_gone(who, again, "short-lived")
    assert who.listed()[keep["id"]]["status"] == "enabled"
    d.stop()
    run_check(d)


def test_deleting_a_parent_revokes_its_children_and_frees_its_name(caller):
    d, who = caller
    maker = ["create", "read"]
    parent = who.ok("Create", name="parent", permissions=maker)
    pid = parent["key"]["id"]
    child = ok(who.call("Create", {"name": "child", "auth": parent["token"],
                                   "permissions": maker}))
    sibling = ok(who.call("Create", {"name": "sibling", "auth": parent["token"]}))
    grandchild = ok(who.call("Create", {"name": "grandchild", "auth": child["token"]}))
    assert child["key"]["parent"] == pid and sibling["key"]["parent"] == pid

    # A child deleted while its parent lives is gone from the parent's children.
    assert who.ok("Delete", id=sibling["key"]["id"]) == {}
    got = who.ok("Get", id=pid)
    assert (got["children"], got["children_total"]) == ([child["key"]["id"]], 1), got
    assert_gone(who, sibling["key"], "sibling")

    assert who.ok("Delete", id=pid) == {}
    listed = who.listed()
    assert pid not in listed, f"the deleted parent {pid} is still listed"
    for k in (child, grandchild):
        assert listed[k["key"]["id"]]["status"] == "revoked", listed[k["key"]["id"]]
    assert listed[child["key"]["id"]]["parent"] == pid
    # The children keep their names; the parent's is free.
    err = who.call("Create", {"name": "child"})
    assert err.get("error") == f"{IFACE}.NameTaken", err
    assert err["parameters"] == {"owner": who.owner, "name": "child"}, err
    assert_gone(who, parent["key"], "parent")
    d.stop()
    run_check(d)

    # Deleting the revoked children too leaves nothing of them.
    d.start()
    who.reconnect(d)
    for k in (grandchild, child):
        assert who.ok("Delete", id=k["key"]["id"]) == {}
    assert sorted(k["name"] for k in who.listed().values()) == ["parent", "sibling"]
    d.stop()
    run_check(d)
