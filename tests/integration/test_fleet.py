# SPDX-License-Identifier: MIT
"""Fleet mode against a real 3-member etcd cluster on loopback (fleet_fixtures):
a manager's changes reach every host within 2 s, hosts without fleet_manage
refuse changes, Verify keeps answering from the replica while every member
is frozen (SIGSTOP), a host that missed compacted revisions resyncs, a host
with another pepper refuses to serve the fleet's keys, a killed leader or a
hung member is survived; and on etcds of their own, authentication with
roles, and TLS with client certificates."""
import os
import statistics
import subprocess
import threading
import time

from conftest import APIKEYD, BASE62, IFACE, make_token
from fleet_fixtures import (  # noqa: F401 - fixtures
    etcd_cluster,
    etcd_single,
    etcd_tls,
    fleet,
    fleet_status,
    wait_for,
)

APIKEYCTL = APIKEYD.parent / "apikeyctl"

# Polling a key that has not arrived yet answers NOT_FOUND: no lockout for that.
HOSTS = {"lockout_threshold": "0"}


def code(d, token):
    with d.client() as c:
        return c.verify(token)["code"]


def create(d, name, **params):
    with d.client() as c:
        r = c.create(name, owner="root", **params)
    return r["key"]["id"], r["token"]


def unknown_token():
    return make_token("apk", "".join(BASE62[(i * 7) % 62] for i in range(12)),
                      "".join(BASE62[(i * 13 + 5) % 62] for i in range(43)))


def everywhere(hosts, token, want):
    return lambda: all(code(h, token) == want for h in hosts)


def ctl(d, *args):
    r = subprocess.run([str(APIKEYCTL), "--socket", d.socket, *args], capture_output=True,
                       text=True, timeout=20)
    return r.returncode, r.stdout, r.stderr


def test_changes_reach_every_host(fleet):
    manager, hosts = fleet(3, host_config=HOSTS)

    # A key created on the manager verifies on every host within 2 s.
    key_id, token = create(manager, "deploy")
    _, took = wait_for("the new key VALID on every host", everywhere(hosts, token, "VALID"), 2.0)
    print(f"\ncreate -> VALID on 3 hosts: {took * 1000:.0f} ms")

    # Hosts follow; they do not manage.
    with hosts[0].client() as c:
        error, params = c.err(f"{IFACE}.Revoke", {"id": key_id})
    assert error == f"{IFACE}.ManagedCentrally"
    assert params["prefix"] == fleet.prefix and params["endpoints"].startswith("http://127.0.0.1:")
    rc, _, err = ctl(hosts[1], "revoke", key_id)
    assert rc != 0
    assert err.startswith("apikeyctl: keys are managed centrally: this host follows the fleet's "
                          "keys in etcd (http://127.0.0.1:")
    assert f"under {fleet.prefix}); change them on a host with fleet_manage = yes " \
           f"[{IFACE}.ManagedCentrally]" in err
    assert code(hosts[0], token) == "VALID"

    # 20 revokes, each timed until every host refuses the key.
    keys = [create(manager, f"k{i}") for i in range(20)]
    for _, t in keys:
        wait_for("a key VALID on every host", everywhere(hosts, t, "VALID"), 2.0)
    times = []
    for kid, t in keys:
        t0 = time.monotonic()
        with manager.client() as c:
            assert c.ok(f"{IFACE}.Revoke", {"id": kid})["key"]["status"] == "revoked"
        # Read your writes: the manager's own replica has it when Revoke answers.
        assert code(manager, t) == "REVOKED"
        wait_for("the revoke on every host", everywhere(hosts, t, "REVOKED"), 2.0)
        times.append(time.monotonic() - t0)
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * len(times))) - 1)]
    print(f"revoke -> REVOKED on 3 hosts, 20 revokes: p50 {statistics.median(times) * 1000:.0f} "
          f"ms, p99 {p99 * 1000:.0f} ms, max {times[-1] * 1000:.0f} ms")
    assert p99 <= 2.0

    # A delete goes too, and every host's status names its revision.
    with manager.client() as c:
        c.ok(f"{IFACE}.Delete", {"id": key_id})
    wait_for("the deleted key NOT_FOUND everywhere", everywhere(hosts, token, "NOT_FOUND"), 2.0)
    applied = fleet_status(manager)["applied_revision"]
    for h in hosts:
        st = fleet_status(h)
        assert st["online"] and st["pepper"] == "ok" and not st["manage"]
        assert st["applied_revision"] == applied
    # The manager sees every host, and the revision each has reported applying.
    seen, _ = wait_for("every host's report", lambda: fleet_status(manager).get("hosts")
                       if len(fleet_status(manager).get("hosts", [])) == 4 else None, 8.0)
    assert [h["host"] for h in seen] == ["host0", "host1", "host2", "manager"]
    assert all(0 < h["applied_revision"] <= applied for h in seen)
    rc, out, _ = ctl(manager, "status")
    assert rc == 0 and "      Hosts: 4 reporting" in out, out
    assert "hosts" not in fleet_status(hosts[0])
    rc, out, _ = ctl(hosts[2], "status")
    assert rc == 0
    assert "      Fleet: host host2, keys managed centrally, etcd at http://127.0.0.1:" in out
    assert f"Fleet state: online, revision {applied} applied, last contact " in out
    assert "     Pepper: ok" in out


def test_last_use_across_hosts(fleet, etcd_cluster):
    """A verify on a host reaches the manager's show and list within a few seconds: each
    host writes its last uses under its own prefix in etcd, the manager shows the latest
    across the fleet and the host that saw it."""
    fast = {"last_used_flush_interval": "1s", "fleet_last_used_interval": "1s"}
    manager, hosts = fleet(2, host_config=dict(HOSTS, **fast), manager_config=fast)
    kid, token = create(manager, "web")
    wait_for("the key on every host", everywhere(hosts, token, "VALID"), 2.0)
    login = {"service": "sshd", "user": "root"}
    with hosts[1].client() as c:
        assert c.verify(token, rhost="192.0.2.7", **login)["code"] == "VALID"

    def shown(where):
        def fn():
            _, out, _ = ctl(manager, "show", kid)
            return out if where in out else None
        return fn

    _, took = wait_for("host1's use in the manager's show",
                       shown(", sshd from 192.0.2.7 on host1"), 6.0)
    print(f"\nverify on host1 -> shown on the manager: {took * 1000:.0f} ms")
    rc, out, _ = ctl(manager, "list")
    assert rc == 0 and "(sshd from 192.0.2.7 on host1)" in out, out
    with manager.client() as c:
        k = c.get(kid)
    assert (k["last_used_host"], k["last_used_service"], k["last_used_from"]) == \
        ("host1", "sshd", "192.0.2.7")
    # Under host1's own prefix, which its etcd role may write.
    value = etcd_cluster.etcdctl("get", "--print-value-only",
                                 f"{fleet.prefix}/hosts/host1/used/{kid}")
    assert '"service":"sshd"' in value and '"from":"192.0.2.7"' in value, value
    # A host shows its own last use, without a host name.
    with hosts[1].client() as c:
        k = c.get(kid)
    assert k["last_used_from"] == "192.0.2.7" and "last_used_host" not in k

    # A later use elsewhere is the latest.
    with hosts[0].client() as c:
        assert c.verify(token, rhost="192.0.2.8", **login)["code"] == "VALID"
    wait_for("host0's later use on the manager", shown(", sshd from 192.0.2.8 on host0"), 6.0)


def test_names_unique_across_managers(fleet, etcd_cluster):
    """Two managers create a key of the same owner and name at the same moment: one gets it,
    the other the same NameTaken a single host answers (the name index entry in etcd is
    created in the key's Txn, only if absent), and every replica ends with the one key."""
    manager, hosts = fleet(1, host_config=HOSTS)
    other = fleet.start_host("manager2", manager, {"fleet_manage": "yes"})
    wait_for("the second manager online", lambda: fleet_status(other)["online"], 10)
    managers = (manager, other)

    def race(name):
        clients = [m.client() for m in managers]
        barrier = threading.Barrier(2)
        out = [None, None]

        def one(i):
            barrier.wait()
            out[i] = clients[i].call(f"{IFACE}.Create", {"name": name, "owner": "root"})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        for c in clients:
            c.close()
        return out

    for round_ in range(4):
        name = f"race{round_}"
        out = race(name)
        won = [r for r in out if "error" not in r]
        lost = [r for r in out if "error" in r]
        assert len(won) == 1 and len(lost) == 1, out
        assert lost[0]["error"] == f"{IFACE}.NameTaken", out
        assert lost[0]["parameters"] == {"owner": "root", "name": name}, out
        kid = won[0]["parameters"]["key"]["id"]
        token = won[0]["parameters"]["token"]
        assert etcd_cluster.etcdctl("get", "--print-value-only",
                                    f"{fleet.prefix}/names/root/{name}").strip() == kid
        # The loser's replica puts back what etcd has: the winner's key, and only it.
        everyone = [manager, other, hosts[0]]
        wait_for("the winner's key on every replica", everywhere(everyone, token, "VALID"), 5.0)

        def only_one():
            for d in everyone:
                with d.client() as c:
                    keys = c.list()["keys"]
                if [k["id"] for k in keys if k["name"] == name] != [kid]:
                    return False
            return True
        wait_for("one key of that name everywhere", only_one, 5.0)

    # A deleted key frees its name; a renamed key frees the old one and takes the new.
    with manager.client() as c:
        c.ok(f"{IFACE}.Delete", {"id": kid})
    wait_for("the delete on the other manager",
             lambda: code(other, token) == "NOT_FOUND", 5.0)
    kid, _ = create(other, name)
    with other.client() as c:
        c.ok(f"{IFACE}.Update", {"id": kid, "name": "renamed"})
    names = etcd_cluster.etcdctl("get", "--prefix", "--keys-only", f"{fleet.prefix}/names/root/")
    assert f"{fleet.prefix}/names/root/renamed" in names.split()
    assert f"{fleet.prefix}/names/root/{name}" not in names.split()

    def renamed():
        with manager.client() as c:
            return c.get(kid)["name"] == "renamed"
    wait_for("the rename on the manager", renamed, 5.0)
    create(manager, name)
    with manager.client() as c:
        error, params = c.err(f"{IFACE}.Create", {"name": "renamed", "owner": "root"})
    assert (error, params) == (f"{IFACE}.NameTaken", {"owner": "root", "name": "renamed"})


def test_offline_keeps_answering(fleet, etcd_cluster):
    # host 2 allows only 2 s without contact.
    manager, hosts = fleet(3, host_config=HOSTS, per_host={2: {"fleet_offline_max_age": "2s"}})
    _, good = create(manager, "cached")
    bad_id, bad = create(manager, "revoked")
    with manager.client() as c:
        c.ok(f"{IFACE}.Revoke", {"id": bad_id})
    # ... except for its break-glass keys (a revoked one stays refused).
    glass_id, glass = create(manager, "break-glass")
    with open(hosts[2].config_file, "a") as conf:
        conf.write(f"fleet_break_glass_keys = {glass_id},{bad_id}\n")
    hosts[2].restart()
    wait_for("host 2 back", lambda: fleet_status(hosts[2])["online"], 5.0)
    wait_for("both keys everywhere",
             lambda: all(code(h, good) == "VALID" and code(h, bad) == "REVOKED" for h in hosts),
             2.0)
    assert code(hosts[0], unknown_token()) == "NOT_FOUND"

    etcd_cluster.stop_all()
    try:
        _, took = wait_for("every host offline",
                           lambda: not any(fleet_status(h)["online"] for h in hosts), 6.0)
        print(f"\nevery member stopped -> hosts offline after {took:.1f} s")
        for h in hosts[:2]:
            assert code(h, good) == "VALID"
            assert code(h, bad) == "REVOKED"
            assert code(h, unknown_token()) == "UNAVAILABLE"
        s1 = fleet_status(hosts[0])["stale_ms"]
        time.sleep(0.5)
        s2 = fleet_status(hosts[0])["stale_ms"]
        assert s2 >= s1 + 400, (s1, s2)
        assert fleet_status(hosts[0])["last_error"]
        # Past fleet_offline_max_age: the cached key is UNAVAILABLE there, the revoked one refused.
        wait_for("host 2 past its 2 s bound", lambda: code(hosts[2], good) == "UNAVAILABLE", 5.0)
        assert code(hosts[2], bad) == "REVOKED"
        assert code(hosts[0], good) == "VALID"
        assert code(hosts[2], glass) == "VALID"
        assert f"fleet: break-glass key {glass_id} accepted, no contact with etcd since " \
            in hosts[2].log()
        # The manager cannot write meanwhile, and says so at once.
        with manager.client() as c:
            error, params = c.err(f"{IFACE}.Create", {"name": "while-down", "owner": "root"})
        assert error == f"{IFACE}.InternalError"
        assert params["reason"] == ("no etcd member with a leader can be reached (apikeyctl "
                                    "status says why); nothing was changed")
    finally:
        etcd_cluster.continue_all()

    # Back: every host online and following again.
    wait_for("every host online", lambda: all(fleet_status(h)["online"] for h in hosts), 10.0)
    _, fresh = create(manager, "after")
    wait_for("a key made after the outage", everywhere(hosts, fresh, "VALID"), 2.0)
    assert code(hosts[2], good) == "VALID"
    assert code(hosts[0], unknown_token()) == "NOT_FOUND"


def test_compaction_resync(fleet, etcd_cluster):
    manager, hosts = fleet(1, host_config=HOSTS)
    host = hosts[0]
    old_id, old = create(manager, "old")
    wait_for("the key on the host", lambda: code(host, old) == "VALID", 2.0)

    host.stop()
    with manager.client() as c:
        c.ok(f"{IFACE}.Revoke", {"id": old_id})
    # 2,000 changes meanwhile (1,000 keys created, 999 of them revoked, one deleted),
    # four callers at a time.
    made = [None] * 1000

    def worker(k):
        with manager.client(timeout=10) as c:
            for i in range(k, 1000, 4):
                r = c.create(f"new{i}", owner="root")
                made[i] = (r["key"]["id"], r["token"])
                if i > 0:
                    c.ok(f"{IFACE}.Revoke", {"id": made[i][0]})

    t0 = time.monotonic()
    workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert all(made), "not every key was created"
    kept_id, kept = made[0]
    gone_id, gone = made[1]
    with manager.client() as c:
        c.ok(f"{IFACE}.Delete", {"id": gone_id})
    print(f"\n2,000 changes on the manager: {time.monotonic() - t0:.1f} s")
    rev = etcd_cluster.compact()

    host.start()
    _, took = wait_for("the host resynced", lambda: fleet_status(host)["applied_revision"] >= rev,
                       5.0)
    print(f"resync after compaction to revision {rev}: {took * 1000:.0f} ms")
    assert "compacted" in host.log() and "resynced" in host.log()
    assert code(host, old) == "REVOKED"
    assert code(host, gone) == "NOT_FOUND"
    assert code(host, kept) == "VALID"
    assert all(code(host, t) == "REVOKED" for _, t in made[2:])
    # Converged: the same keys, counted by status, on both.
    with manager.client() as c:
        want = c.ok(f"{IFACE}.GetStatus")["keys"]
    with host.client() as c:
        assert c.ok(f"{IFACE}.GetStatus")["keys"] == want


def test_other_pepper_refused(fleet):
    manager, _ = fleet(0)
    _, token = create(manager, "k")
    # A host whose pepper is not the fleet's (it made its own).
    stranger = fleet.start_host("stranger", manager, HOSTS, pepper=False)
    wait_for("the pepper checked", lambda: fleet_status(stranger)["pepper"] == "differs", 5.0)
    assert code(stranger, token) == "UNAVAILABLE"
    assert "this host's pepper is not the fleet's" in stranger.log()


def test_leader_killed(fleet, etcd_cluster):
    manager, hosts = fleet(3, host_config=HOSTS)
    kid, token = create(manager, "k")
    wait_for("the key on every host", everywhere(hosts, token, "VALID"), 2.0)
    leader = etcd_cluster.leader()
    t0 = time.monotonic()
    etcd_cluster.kill(leader)
    try:
        # A revoke while the cluster elects another leader: tried until etcd takes it.
        while True:
            with manager.client(timeout=10) as c:
                r = c.call(f"{IFACE}.Revoke", {"id": kid})
            if "error" not in r:
                break
            assert r["error"] == f"{IFACE}.InternalError", r
            assert time.monotonic() - t0 < 5.0, f"no revoke within 5 s of the kill: {r}"
            time.sleep(0.1)
        wait_for("the revoke on every host", everywhere(hosts, token, "REVOKED"),
                 max(0.1, 5.0 - (time.monotonic() - t0)))
        print(f"\nleader {leader} killed -> revoked on 3 hosts after "
              f"{(time.monotonic() - t0) * 1000:.0f} ms")
    finally:
        etcd_cluster.revive(leader)


def test_auth(etcd_single, daemon, tmp_path):
    """etcd with users and roles (RBAC): the manager may write the fleet's
    prefix, a host only read its keys; the host still follows."""
    etcd, prefix = etcd_single, "/akt-auth"
    root = "root:akt-root-pw"
    etcd.etcdctl("user", "add", root)
    for role, perms in (("manager", [("readwrite", prefix + "/")]),
                        ("host", [("read", prefix + "/keys/"),
                                  ("read", prefix + "/pepper-fingerprint"),
                                  ("readwrite", prefix + "/hosts/host0/")]),
                        ("blind", [("read", prefix + "/pepper-fingerprint")])):
        etcd.etcdctl("role", "add", role)
        for perm, key in perms:
            etcd.etcdctl("role", "grant-permission", role, "--prefix=true", perm, key)
    for user, pw, role in (("mgr", "mgr-pw", "manager"), ("h0", "h0-pw", "host"),
                           ("h1", "h1-pw", "blind")):
        etcd.etcdctl("user", "add", f"{user}:{pw}")
        etcd.etcdctl("user", "grant-role", user, role)
        (tmp_path / f"{user}.pw").write_text(pw + "\n")
        os.chmod(tmp_path / f"{user}.pw", 0o600)
    etcd.etcdctl("auth", "enable", user=root)

    def conf(name, user, manage):
        return {"fleet_endpoints": etcd.endpoints, "fleet_prefix": prefix, "fleet_host": name,
                "fleet_manage": manage, "fleet_user": user,
                "fleet_password_file": str(tmp_path / f"{user}.pw"), "lockout_threshold": "0"}

    manager = daemon(config=conf("manager", "mgr", "yes"))
    wait_for("the manager's first sync", lambda: fleet_status(manager)["online"], 10)
    state = tmp_path / "state-host0"
    state.mkdir(mode=0o700)
    (state / "pepper").write_bytes((manager.state_dir / "pepper").read_bytes())
    os.chmod(state / "pepper", 0o600)
    host = daemon(config=conf("host0", "h0", "no"), state_dir=state)

    kid, token = create(manager, "k")
    wait_for("the key on the host", lambda: code(host, token) == "VALID", 2.0)
    # The host's credentials cannot write the keys, nor the fingerprint.
    for key in (f"{prefix}/keys/{kid}", f"{prefix}/pepper-fingerprint"):
        r = etcd.etcdctl("put", key, "forged", user="h0:h0-pw", check=False)
        assert r.returncode != 0 and "permission denied" in r.stderr, r
    # ... and still follows.
    with manager.client() as c:
        c.ok(f"{IFACE}.Revoke", {"id": kid})
    wait_for("the revoke on the host", lambda: code(host, token) == "REVOKED", 2.0)

    # A role that reaches etcd but may not read the keys: never online, whatever the
    # member answers, so a key the host cannot know is UNAVAILABLE, not NOT_FOUND.
    state = tmp_path / "state-host1"
    state.mkdir(mode=0o700)
    (state / "pepper").write_bytes((manager.state_dir / "pepper").read_bytes())
    os.chmod(state / "pepper", 0o600)
    blind = daemon(config=conf("host1", "h1", "no"), state_dir=state)
    try:
        wait_for("the refusal in the status", lambda: "permission denied" in
                 (fleet_status(blind).get("last_error") or ""), 5.0)
    except AssertionError:
        print(fleet_status(blind), blind.log())
        raise
    time.sleep(1.5)
    assert not fleet_status(blind)["online"]
    assert code(blind, token) == "UNAVAILABLE"

    # A wrong password: refused by etcd, and said so.
    (tmp_path / "h0.pw").write_text("wrong\n")
    host.restart()
    wait_for("the refusal in the status", lambda: "authentication failed" in
             (fleet_status(host).get("last_error") or ""), 5.0)
    assert not fleet_status(host)["online"]


def test_member_stopped(fleet, etcd_cluster):
    """The member a host follows hangs: the host moves to another and catches up on every
    change made meanwhile."""
    manager, hosts = fleet(1, host_config=HOSTS)
    host = hosts[0]
    kid, token = create(manager, "before")
    wait_for("the key on the host", lambda: code(host, token) == "VALID", 2.0)
    followed = etcd_cluster.name_of(fleet_status(host)["endpoint"])
    etcd_cluster.stop(followed)
    try:
        t0 = time.monotonic()
        with manager.client(timeout=10) as c:
            c.ok(f"{IFACE}.Revoke", {"id": kid})
        made = [create(manager, f"meanwhile{i}") for i in range(5)]
        wait_for("the revoke and the new keys on the host",
                 lambda: code(host, token) == "REVOKED" and
                 all(code(host, t) == "VALID" for _, t in made), 8.0)
        print(f"\nmember {followed} stopped -> the host caught up after "
              f"{(time.monotonic() - t0) * 1000:.0f} ms")
        st = fleet_status(host)
        assert st["online"] and etcd_cluster.name_of(st["endpoint"]) != followed
    finally:
        etcd_cluster.continue_all()


def test_tls(etcd_tls, daemon, tmp_path):
    """Members that speak only TLS and ask for a client certificate (its identity in the
    SAN, its CN empty, as etcd's gateway needs)."""
    etcd, tls = etcd_tls, etcd_tls.tls

    def conf(name, manage, cert=True):
        c = {"fleet_endpoints": etcd.endpoints, "fleet_prefix": "/akt-tls", "fleet_host": name,
             "fleet_manage": manage, "fleet_cacert": tls["ca"], "lockout_threshold": "0"}
        if cert:
            c.update(fleet_cert=str(tls["dir"] / f"{name}.pem"),
                     fleet_key=str(tls["dir"] / f"{name}.key"))
        return c

    manager = daemon(config=conf("manager", "yes"))
    wait_for("the manager's first sync", lambda: fleet_status(manager)["online"], 10)
    states = []
    for name in ("host0", "nocert"):
        state = tmp_path / f"state-{name}"
        state.mkdir(mode=0o700)
        (state / "pepper").write_bytes((manager.state_dir / "pepper").read_bytes())
        os.chmod(state / "pepper", 0o600)
        states.append(state)
    host = daemon(config=conf("host0", "no"), state_dir=states[0])
    _, token = create(manager, "k")
    wait_for("the key on the host", lambda: code(host, token) == "VALID", 2.0)
    assert fleet_status(host)["endpoint"].startswith("https://127.0.0.1:")

    # Without a client certificate the member refuses the host, and the status says so.
    stranger = daemon(config=conf("nocert", "no", cert=False), state_dir=states[1])
    wait_for("the refusal in the status",
             lambda: fleet_status(stranger).get("last_error"), 5.0)
    error = fleet_status(stranger)["last_error"]
    # (The TLS layer's words vary: "alert bad certificate", or the connection closed.)
    assert error.startswith(f"{etcd.endpoints}: reading the pepper's fingerprint: "), error
    assert not fleet_status(stranger)["online"]
    assert code(stranger, token) == "UNAVAILABLE"


def test_push_a_single_host_into_the_fleet(fleet, etcd_cluster, daemon, tmp_path, as_user):
    """A host with keys of its own joins: it does not follow etcd (whose keys would replace
    its own) and answers for its keys until `apikeyctl fleet push` (admins only) moves them
    into etcd; then it manages them for the fleet.  `apikeyd --fleet-push` does the same
    with the daemon stopped; a key whose name the fleet has for another key stays out."""
    alone = daemon(config={"lockout_threshold": "0"})
    kept = [create(alone, f"old{i}") for i in range(3)]
    alone.stop()
    fleet_conf = (f"lockout_threshold = 0\nfleet_endpoints = {etcd_cluster.endpoints}\n"
                  f"fleet_prefix = {fleet.prefix}\nfleet_host = joined\nfleet_manage = yes\n")
    alone.config_file.write_text(fleet_conf)
    alone.start()
    assert ("the keystore holds 3 keys of this host alone; in fleet mode it holds the fleet's "
            "keys from etcd, which would replace them: not following etcd until they are moved "
            "there (apikeyctl fleet push), answering for them meanwhile; or start with an "
            "empty state directory") in alone.log()
    st = fleet_status(alone)
    assert st["joining"] == 3 and not st["online"], st
    rc, out, _ = ctl(alone, "status")
    assert rc == 0 and ("    Joining: 3 keys of this host alone, not in etcd yet: not "
                        "following it (apikeyctl fleet push)") in out, out
    # Its own keys go on working; changes wait for the push.
    assert code(alone, kept[0][1]) == "VALID"
    rc, _, err = ctl(alone, "create", "new", "--owner", "root")
    assert rc != 0 and ("this host's own keys are not in the fleet's etcd yet (apikeyctl fleet "
                        "push moves them there)") in err, err
    # Admins only.
    error, params = as_user("akt-alice", socket=alone.socket).err(f"{IFACE}.FleetPush", {})
    assert error == f"{IFACE}.PermissionDenied"
    assert params["reason"] == "only admins may push this host's keys into the fleet"

    rc, out, err = ctl(alone, "fleet", "push")
    assert rc == 0, err
    assert out.startswith("pushed 3 keys to http://127.0.0.1:") and \
        f"under {fleet.prefix}/keys/; 0 were there already" in out, out
    assert out.endswith("\nThis host follows the fleet's keys in etcd now.\n"), out
    # With their names in the fleet's name index.
    for i, (kid, _) in enumerate(kept):
        assert etcd_cluster.etcdctl("get", "--print-value-only",
                                    f"{fleet.prefix}/names/root/old{i}").strip() == kid
    wait_for("the joined manager online", lambda: fleet_status(alone)["online"], 10)
    assert "joining" not in fleet_status(alone)
    # Nothing left to push.
    rc, _, err = ctl(alone, "fleet", "push")
    assert rc != 0 and err == (
        "apikeyctl: fleet push: this host's keystore is the fleet's replica already: it holds "
        f"no keys of its own to push [{IFACE}.FleetPushFailed]\n"), err

    host = fleet.start_host("newhost", alone, HOSTS)
    for kid, token in kept:
        wait_for("a pushed key on the new host", lambda: code(host, token) == "VALID", 2.0)
    with alone.client() as c:
        c.ok(f"{IFACE}.Revoke", {"id": kept[0][0]})
    wait_for("the revoke on the new host", lambda: code(host, kept[0][1]) == "REVOKED", 2.0)

    # Another host, stopped, whose key has a name the fleet has: apikeyd --fleet-push
    # leaves that key out and the keystore as it is (fleet mode would drop the key).
    state = tmp_path / "state-clash"
    state.mkdir(mode=0o700)
    (state / "pepper").write_bytes((alone.state_dir / "pepper").read_bytes())
    os.chmod(state / "pepper", 0o600)
    clash = daemon(config={"lockout_threshold": "0"}, state_dir=state)
    old1, _ = create(clash, "old1")
    create(clash, "fresh")
    clash.stop()
    clash_conf = fleet_conf.replace("fleet_host = joined", "fleet_host = clash")
    clash.config_file.write_text(clash_conf)
    push = [str(APIKEYD), "--config", str(clash.config_file), "--state-dir",
            str(clash.state_dir), "--fleet-push"]
    r = subprocess.run(push, capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r
    assert "not pushed: the fleet has another key named 'old1' of owner root; rename one of " \
        "them and push again" in r.stderr, r.stderr
    assert "pushed 1 keys, 0 were there already; 1 keys not pushed: their names are taken " \
        "in the fleet" in r.stderr, r.stderr
    # Renamed on the host alone, pushed again: the rest goes, once.
    clash.config_file.write_text("lockout_threshold = 0\n")
    clash.start()
    with clash.client() as c:
        c.ok(f"{IFACE}.Update", {"id": old1, "name": "old1-clash"})
    clash.stop()
    clash.config_file.write_text(clash_conf)
    r = subprocess.run(push, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("pushed 1 keys") and \
        "1 were there already" in r.stdout, r
    clash.start()
    assert "joining" not in fleet_status(clash)
    wait_for("the clash host online", lambda: fleet_status(clash)["online"], 10)
    wait_for("its key on the new host", lambda: code(host, kept[1][1]) == "VALID", 2.0)
