#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fleet mode's propagation benchmark, behind `make bench-fleet`.

Starts a 3-member etcd cluster on loopback (Debian's etcd-server), one
manager and N hosts (apikeyd daemons with their own sockets and state
directories; 5 and 50 by default), then revokes keys on the manager one at a
time and measures, for each revoke, the time from the Revoke call to the
moment every host answers REVOKED for the key (each host polled over a kept
connection, round after round, so the figure includes up to one polling
round).  Prints p50, p99 and max per fleet size as a Markdown table and
writes it to --out.  Every process is stopped by its PID at the end.

Then verify throughput on a fleet host while the manager makes 100 changes
a second (creates and revokes of other keys, each one etcd revision the
host applies), beside the same keystore served without fleet mode, under
the same load on the machine: a keystore of --keys keys from bench_load,
moved into etcd with apikeyd --fleet-push, bench_client at 16 connections,
the two servers measured in turn (ABAB), medians.

  fleet_bench.py --build build [--hosts 5,50] [--revokes 100] [--keys 10000]
                 [--seconds 10] [--reps 3] [--out FILE]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "integration"))


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * len(v))) - 1))]


def run(n_hosts, revokes, build):
    os.environ["APIKEYD_BUILD"] = str(build)
    import conftest
    from fleet_fixtures import EtcdCluster, fleet_status, wait_for

    tmp = Path(tempfile.mkdtemp(prefix="akt-fleet-bench-"))
    etcd = EtcdCluster(tmp / "etcd")
    (tmp / "etcd").mkdir()
    daemons, clients = [], []
    try:
        etcd.start()

        def start(name, manage, state=None):
            cfg = {"fleet_endpoints": etcd.endpoints, "fleet_prefix": "/bench",
                   "fleet_host": name, "fleet_manage": "yes" if manage else "no",
                   "lockout_threshold": "0"}
            d = conftest.Daemon(tmp, len(daemons), state_dir=state, config=cfg)
            daemons.append(d)
            return d.start()

        manager = start("manager", True)
        wait_for("the manager's first sync", lambda: fleet_status(manager)["online"], 10)
        hosts = []
        for i in range(n_hosts):
            state = tmp / f"state-host{i}"
            state.mkdir(mode=0o700)
            shutil.copyfile(manager.state_dir / "pepper", state / "pepper")
            os.chmod(state / "pepper", 0o600)
            hosts.append(start(f"host{i}", False, state))
        mc = manager.client(timeout=10)
        hc = [h.client(timeout=10) for h in hosts]
        keys = []
        for i in range(revokes):
            r = mc.create(f"k{i}", owner="root")
            keys.append((r["key"]["id"], r["token"]))
        for _, token in keys:
            for c in hc:
                wait_for("a key on every host", lambda: c.verify(token)["code"] == "VALID", 10)
        times = []
        for kid, token in keys:
            pending = set(range(n_hosts))
            t0 = time.monotonic()
            mc.ok(f"{conftest.IFACE}.Revoke", {"id": kid})
            while pending:
                for i in list(pending):
                    if hc[i].verify(token)["code"] == "REVOKED":
                        pending.discard(i)
                if time.monotonic() - t0 > 10:
                    raise AssertionError(f"{len(pending)} hosts did not refuse within 10 s")
            times.append(time.monotonic() - t0)
        return times
    finally:
        for d in daemons:
            problem = d.cleanup()
            if problem:
                print(problem, file=sys.stderr)
        etcd.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def parse_kv(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            try:
                out[k.strip()] = float(v)
            except ValueError:
                out[k.strip()] = v.strip()
    return out


def throughput(build, n_keys, seconds, reps):
    """(fleet verifies/s, plain verifies/s, changes applied/s) medians."""
    os.environ["APIKEYD_BUILD"] = str(build)
    import conftest
    from fleet_fixtures import EtcdCluster, fleet_status, wait_for

    bench = build / "bench"
    tmp = Path(tempfile.mkdtemp(prefix="akt-fleet-bench-"))
    (tmp / "etcd").mkdir()
    etcd = EtcdCluster(tmp / "etcd")
    daemons, stop = [], threading.Event()
    churn_count = [0]
    try:
        src = tmp / "store"
        subprocess.run([str(bench / "bench_load"), "--dir", str(src), "--keys", str(n_keys)],
                       check=True, capture_output=True, timeout=600)
        states = {}
        for name in ("fleet", "plain", "manager"):
            states[name] = tmp / f"state-{name}"
            states[name].mkdir(mode=0o700)
            files = ("pepper",) if name == "manager" else ("pepper", "keys.mdb", "bench.seed")
            for f in files:
                shutil.copy2(src / f, states[name] / f)
        etcd.start()
        base = {"max_connections": "1024", "max_connections_per_uid": "1024",
                "lockout_threshold": "1000000"}
        fleet = dict(base, fleet_endpoints=etcd.endpoints, fleet_prefix="/bench-tp")

        def start(name, cfg):
            d = conftest.Daemon(tmp, len(daemons), state_dir=states[name], config=cfg)
            daemons.append(d)
            return d

        host = start("fleet", dict(fleet, fleet_host="host"))
        subprocess.run([str(build / "apikeyd"), "--config", str(host.config_file), "--state-dir",
                        str(states["fleet"]), "--fleet-push"], check=True, capture_output=True,
                       timeout=600)
        manager = start("manager", dict(fleet, fleet_host="manager", fleet_manage="yes"))
        manager.start()
        wait_for("the manager's resync", lambda: fleet_status(manager)["online"], 120)
        host.start()
        wait_for("the host online", lambda: fleet_status(host)["online"], 30)
        plain = start("plain", base).start()

        def churn():
            c = manager.client(timeout=10)
            i, t = 0, time.monotonic()
            while not stop.is_set():
                r = c.create(f"churn{i}", owner="root")
                c.ok(f"{conftest.IFACE}.Revoke", {"id": r["key"]["id"]})
                churn_count[0] += 2
                i += 1
                t += 0.02  # two changes every 20 ms: 100 a second
                time.sleep(max(0.0, t - time.monotonic()))

        th = threading.Thread(target=churn, daemon=True)
        th.start()
        rates = {"fleet": [], "plain": []}
        rev0, t0 = fleet_status(host)["applied_revision"], time.monotonic()
        for _ in range(reps):
            for name, d in (("fleet", host), ("plain", plain)):
                out = subprocess.run(
                    [str(bench / "bench_client"), "run", "--socket", d.socket, "--state-dir",
                     str(states[name]), "--conns", "16", "--seconds", str(seconds), "--warmup",
                     "2", "--server-pid", str(d.pid)], check=True, capture_output=True,
                    text=True, timeout=seconds + 120).stdout
                rates[name].append(parse_kv(out)["verify_rate"])
        applied = (fleet_status(host)["applied_revision"] - rev0) / (time.monotonic() - t0)
        stop.set()
        th.join(10)
        return statistics.median(rates["fleet"]), statistics.median(rates["plain"]), applied
    finally:
        stop.set()
        for d in daemons:
            problem = d.cleanup()
            if problem:
                print(problem, file=sys.stderr)
        etcd.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--hosts", default="5,50")
    ap.add_argument("--revokes", type=int, default=100)
    ap.add_argument("--keys", type=int, default=10000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()
    if not Path("/usr/bin/etcd").exists():
        print("fleet_bench: /usr/bin/etcd is missing (Debian's etcd-server); nothing measured")
        return 0
    lines = ["| hosts | revokes | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for n in (int(x) for x in args.hosts.split(",")):
        t = run(n, args.revokes, Path(args.build).resolve())
        lines.append(f"| {n} | {len(t)} | {statistics.median(t) * 1000:.1f} | "
                     f"{percentile(t, 99) * 1000:.1f} | {max(t) * 1000:.1f} |")
        print(lines[-1], flush=True)
    fleet_rate, plain_rate, applied = throughput(Path(args.build).resolve(), args.keys,
                                                 args.seconds, args.reps)
    tp = ["| server | verifies/s (16 connections) |", "|---|---|",
          f"| fleet host, applying {applied:.0f} revisions/s | {fleet_rate:,.0f} |",
          f"| the same keystore without fleet mode | {plain_rate:,.0f} |",
          f"| ratio | {fleet_rate / plain_rate:.3f} |"]
    print("\n".join(tp), flush=True)
    report = ("# Fleet mode: from a manager's Revoke to the refusal on every host\n\n"
              "3 etcd members and the hosts on one machine (loopback); each figure "
              "includes up to one round of polling every host.\n\n" + "\n".join(lines) + "\n"
              f"\n# Verify throughput while the watch applies changes ({args.keys:,} keys, "
              f"median of {args.reps})\n\n" + "\n".join(tp) + "\n")
    if args.out:
        Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
