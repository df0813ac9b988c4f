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

  fleet_bench.py --build build [--hosts 5,50] [--revokes 100] [--out FILE]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--hosts", default="5,50")
    ap.add_argument("--revokes", type=int, default=100)
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
    report = ("# Fleet mode: from a manager's Revoke to the refusal on every host\n\n"
              "3 etcd members and the hosts on one machine (loopback); each figure "
              "includes up to one round of polling every host.\n\n" + "\n".join(lines) + "\n")
    if args.out:
        Path(args.out).write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
