#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The benchmark driver behind `make bench` and `make bench-quick`.

Builds the keystores once (bench_load), then measures, each time with the
servers started from a fresh copy of a keystore and stopped by their PID:

  * Verify throughput and latency at 1, 16 and 64 connections on a small and
    a large keystore, the reference server (bench_ref) and apikeyd run
    alternately (ABAB...), medians over the repetitions, and the ratio
    apikeyd / reference for each figure; one connection again with the vCPUs
    pinned to one vCPU and to two, and with a new connection per call (as
    pam_apikey makes);
  * verify throughput while one more client creates keys back to back, beside
    the same load without it; durable creates/s with 1 and 16 clients;
  * List of 100 keys from the large keystore; the daemon's memory and the
    keystore's bytes per key;
  * instructions per verify under callgrind for both servers (the difference
    of two runs of different lengths, so start-up and shut-down cancel out),
    and per function: where the instructions go;
  * the time pam_apikey adds to a pam_permit-only stack (pam_start_confdir,
    in process), and an ssh login with a key beside the same login with
    pam_permit (root only: it runs sshd and writes a service file under
    /etc/pam.d, removed afterwards).

Writes a Markdown report (--out) and prints it.  Slow numbers never fail the
run; a broken harness (a server that does not start, a wrong reply, a failed
login) does, after cleaning up.
"""

import argparse
import datetime
import grp
import os
import platform
import pwd
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
PAM_DIR = Path("/etc/pam.d")
SSH_SERVICES = ("sshd-apikey-bench", "sshd-permit-bench")
MARKER = "# apikeyd benchmark service (removed after the run)"
PROTO = {"ref": "ref", "apikeyd": "varlink"}  # what each server speaks

FULL = dict(small=1000, large=1000000, seconds=2.0, warmup=0.5, reps=3, conns=(1, 16, 64),
            cg=(4000, 16000), pam_rounds=10, pam_batch=200, ssh_pairs=10, list_seconds=2.0)
QUICK = dict(small=1000, large=20000, seconds=0.3, warmup=0.1, reps=1, conns=(1, 16, 64),
             cg=(100, 400), pam_rounds=2, pam_batch=20, ssh_pairs=1, list_seconds=0.3)


class HarnessError(Exception):
    pass


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def parse_kv(text):
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if not sep:
            continue
        try:
            out[k.strip()] = float(v)
        except ValueError:
            out[k.strip()] = v.strip()
    return out


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a, b):
    return a / b if a is not None and b else None


def fmt(v, digits=0):
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    if digits == 0:
        return f"{v:,.0f}"
    return f"{v:,.{digits}f}"


def fmt_ratio(v):
    return "–" if v is None else f"{v:.2f}×"


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_times():
    """(total, steal) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def pam_rounds(out):
    """bench_pam's "<service>_rounds_us=a,b,..." lines as {service: [µs, ...]}."""
    return {k.replace("_rounds_us", ""): [float(x) for x in v.split(",")]
            for k, v in parse_kv(out).items()}


def delta_median(a, b):
    """The median of the pairwise differences a[i] - b[i] (rounds side by side)."""
    return median([x - y for x, y in zip(a, b)])


def cpu_snapshot():
    """{(pid, start time): CPU seconds} of every process but this driver and
    its children (the servers and the load generator).  A process's reaped
    children count in its own figure, so short-lived ones are not lost."""
    me, tick, out = os.getpid(), os.sysconf("SC_CLK_TCK"), {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == me:
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                f = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        # After the name: state ppid ... utime(11) stime(12) cutime(13) cstime(14) ... start(19)
        if int(f[1]) == me:
            continue
        out[(pid, f[19])] = sum(int(x) for x in f[11:15]) / tick
    return out


def others_cpu(before, after, seconds):
    """The CPU other processes used between two snapshots, in % of one vCPU.
    A process that ended meanwhile shows up in its parent's children's time
    with all it ever used: what it had used before the first snapshot is
    taken off again."""
    used = sum(v - before.get(k, 0) for k, v in after.items())
    used -= sum(v for k, v in before.items() if k not in after)
    return max(0.0, 100.0 * used / seconds) if seconds > 0 else None


# ------------------------------------------------------------------ servers


class Server:
    """A server process of ours, stopped by its PID."""

    def __init__(self, name, argv, sock, logfile, ready_timeout=20):
        self.name, self.sock, self.logfile = name, sock, logfile
        self.log_fd = open(logfile, "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log_fd,
                                     stderr=self.log_fd)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise HarnessError(f"{name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(str(sock))
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise HarnessError(f"{name} did not answer on {sock}:\n{self.tail()}")
                time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def tail(self, n=2000):
        try:
            return Path(self.logfile).read_bytes()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def status(self):
        """VmRSS, RssAnon, RssFile and VmHWM in KiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                    out[k] = int(v.split()[0])
        return out

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise HarnessError(f"{self.name} did not stop on SIGTERM")
        self.log_fd.close()
        if self.proc.returncode != 0:
            raise HarnessError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")


# ------------------------------------------------------------------ the bench


class Bench:
    def __init__(self, args):
        self.args = args
        self.p = dict(QUICK if args.quick else FULL)
        for k in ("seconds", "reps", "warmup"):
            if getattr(args, k) is not None:
                self.p[k] = getattr(args, k)
        if args.large:
            self.p["large"] = args.large
        self.build = Path(args.build).resolve()
        self.bin = self.build / "bench"
        self.tmp = Path(tempfile.mkdtemp(prefix="apikeyd-bench."))
        self.servers = []
        self.etc_files = []
        self.sshd_procs = []
        self.made_run_sshd = False
        self.r = {}  # results
        self.others = []  # CPU % other processes used during each load run
        self.notes = []
        self.n_copy = 0

    # -- plumbing

    def run(self, argv, timeout, stdin=None, env=None, cpu=None):
        pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
        r = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                           timeout=timeout, input=stdin, env=env, preexec_fn=pin)
        if r.returncode != 0:
            raise HarnessError(f"{' '.join(str(a) for a in argv)} exited with {r.returncode}:\n"
                               f"{r.stderr[-2000:]}")
        return r.stdout

    def start(self, name, argv, sock, ready_timeout=20):
        s = Server(name, argv, sock, self.tmp / f"{name}.log", ready_timeout)
        self.servers.append(s)
        return s

    def stop(self, s):
        self.servers.remove(s)
        s.stop()

    def store(self, n):
        """The pristine keystore of n keys, built once into the build directory."""
        d = self.bin / "stores" / str(n)
        if (d / "bench.seed").is_file() and (d / "load.txt").is_file():
            return d
        shutil.rmtree(d, ignore_errors=True)
        tmp = d.with_name(f"{n}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        log(f"loading a keystore of {n:,} keys")
        out = self.run([self.bin / "bench_load", "--dir", tmp, "--keys", n], timeout=3600)
        (tmp / "load.txt").write_text(out)
        tmp.rename(d)
        return d

    def copy(self, n):
        """A working copy of the keystore of n keys (the daemon writes to it)."""
        src = self.store(n)
        self.n_copy += 1
        dst = self.tmp / f"state{self.n_copy}"
        dst.mkdir(mode=0o700)
        for f in ("pepper", "keys.mdb", "bench.seed"):
            shutil.copy2(src / f, dst / f)
        # Written back now, not by the kernel during the measurements.
        fd = os.open(dst / "keys.mdb", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return dst

    def write_conf(self, name, extra=""):
        p = self.tmp / name
        if os.geteuid() != 0:  # our own group makes us an admin of the daemon
            extra += f"admin_group = {grp.getgrgid(os.getegid()).gr_name}\n"
        # Lockout counts every failure of the mix, but locks nothing: the
        # load's failing fifth comes from the same user and host as its
        # valid verifies, and a locked source would answer RATE_LIMITED to
        # them (a valid verify no longer clears the source's own count).
        p.write_text("max_connections = 1024\nmax_connections_per_uid = 1024\n"
                     "lockout_threshold = 1000000\n" + extra)
        p.chmod(0o600)
        return p

    def apikeyd(self, state, conf, wrap=(), ready_timeout=20, tag="apikeyd"):
        sock = self.tmp / f"{tag}.sock"
        argv = list(wrap) + [self.build / "apikeyd", "--config", conf, "--state-dir", state,
                             "--socket", sock]
        return self.start(tag, argv, sock, ready_timeout)

    def reference(self, state, wrap=(), ready_timeout=20, tag="reference"):
        sock = self.tmp / f"{tag}.sock"
        argv = list(wrap) + [self.bin / "bench_ref", "--state-dir", state, "--socket", sock]
        return self.start(tag, argv, sock, ready_timeout)

    def client(self, server, state, conns, proto="varlink", seconds=None, warmup=None,
               extra=(), cpu=None):
        seconds = self.p["seconds"] if seconds is None else seconds
        warmup = self.p["warmup"] if warmup is None else warmup
        argv = [self.bin / "bench_client", "run", "--socket", server.sock, "--state-dir", state,
                "--proto", proto, "--conns", conns, "--seconds", seconds, "--warmup", warmup,
                "--server-pid", server.pid] + list(extra)
        snap, t0 = cpu_snapshot(), time.monotonic()
        out = parse_kv(self.run(argv, timeout=seconds + warmup + 120, cpu=cpu))
        out["others_cpu_pct"] = others_cpu(snap, cpu_snapshot(), time.monotonic() - t0)
        self.others.append(out["others_cpu_pct"])
        if server.proc.poll() is not None:
            raise HarnessError(f"{server.name} died during the run:\n{server.tail()}")
        return out

    # -- the measurements

    def verify_matrix(self):
        """Both keystores served at once, by both servers, so that every
        figure of the table, the small keystore against the large one too,
        is measured side by side: each repetition runs all four in turn."""
        conf = self.write_conf("apikeyd.conf")
        sizes = (self.p["small"], self.p["large"])
        state, srv = {}, {}
        for n in sizes:
            state[n] = self.copy(n)
            srv[(n, "ref")] = self.reference(state[n], tag=f"reference-{n}")
            srv[(n, "apikeyd")] = self.apikeyd(state[n], conf, tag=f"apikeyd-{n}")
            log(f"verify, {n:,} keys: reference (PID {srv[(n, 'ref')].pid}) and apikeyd "
                f"(PID {srv[(n, 'apikeyd')].pid})")
        order = [(n, name) for n in sizes for name in ("ref", "apikeyd")]
        for n, name in order:  # warm-up, not kept
            self.client(srv[(n, name)], state[n], 16, PROTO[name], seconds=self.p["warmup"],
                        warmup=0)
        for conns in self.p["conns"]:
            for rep in range(self.p["reps"]):
                for n, name in order:
                    out = self.client(srv[(n, name)], state[n], conns, PROTO[name])
                    self.r.setdefault(("verify", n, conns, name), []).append(out)
                    log(f"  {n:9,} keys {name:8} {conns:2} conns: {out['verify_rate']:9,.0f}/s "
                        f"p50 {out['verify_p50_us']:7.1f} µs  p99 "
                        f"{out['verify_p99_us']:8.1f} µs  server CPU "
                        f"{out.get('server_cpu_pct', 0):3.0f}%  client CPU "
                        f"{out['client_cpu_pct']:3.0f}%  others {out['others_cpu_pct']:3.0f}%")
        self.pinned(order, state, srv)
        small = sizes[0]
        log("  a new connection for each verify, as pam_apikey makes")
        for rep in range(self.p["reps"]):
            for name in ("ref", "apikeyd"):
                out = self.client(srv[(small, name)], state[small], 1, PROTO[name],
                                  extra=("--reconnect",))
                self.r.setdefault(("reconnect", name), []).append(out)
        for n in sizes:
            self.r.setdefault("rss", {})[n] = {name: srv[(n, name)].status()
                                              for name in ("ref", "apikeyd")}
            self.r.setdefault("load", {})[n] = parse_kv((self.store(n) / "load.txt").read_text())
        large = sizes[1]
        log(f"List of 100 keys from {large:,}")
        self.r["list"] = self.client(srv[(large, "apikeyd")], state[large], 0,
                                     seconds=self.p["list_seconds"],
                                     extra=("--listers", 1, "--list-limit", 100))
        for s in srv.values():
            self.stop(s)

    def pinned(self, order, state, srv):
        """One connection with the client and the server pinned: both on one
        vCPU (every call is two context switches, no vCPU wakes up: the
        code's own latency), then on two (every call wakes the other vCPU,
        as an unpinned client on a quiet machine mostly sees)."""
        ncpu = len(os.sched_getaffinity(0))
        layouts = [("one vCPU", 0, 0)] + ([("two vCPUs", 1, 0)] if ncpu > 1 else [])
        everywhere = os.sched_getaffinity(0)
        for label, server_cpu, client_cpu in layouts:
            for rep in range(self.p["reps"]):
                for n, name in order:
                    s = srv[(n, name)]
                    os.sched_setaffinity(s.pid, {server_cpu})
                    try:
                        out = self.client(s, state[n], 1, PROTO[name], cpu=client_cpu)
                    finally:
                        os.sched_setaffinity(s.pid, everywhere)
                    self.r.setdefault(("pinned", label, n, name), []).append(out)
                    log(f"  {n:9,} keys {name:8}  1 conn, {label}: p50 "
                        f"{out['verify_p50_us']:7.1f} µs  p99 {out['verify_p99_us']:8.1f} µs  "
                        f"others {out['others_cpu_pct']:3.0f}%")

    def creates(self):
        conf = self.write_conf("apikeyd.conf")
        n = self.p["small"]
        state = self.copy(n)
        d = self.apikeyd(state, conf)
        log(f"verify with and without a client creating keys ({n:,} keys, PID {d.pid})")
        self.client(d, state, 16, seconds=self.p["warmup"], warmup=0)  # warm-up, not kept
        for rep in range(self.p["reps"]):
            for creators in (0, 1):
                out = self.client(d, state, 16, extra=("--creators", creators))
                self.r.setdefault(("mixed", creators), []).append(out)
                log(f"  16 verify conns, {creators} creating: {out['verify_rate']:9,.0f} "
                    f"verifies/s" + (f", {out['create_rate']:,.0f} creates/s" if creators
                                     else ""))
        for creators in (1, 16):
            out = self.client(d, state, 0, extra=("--creators", creators))
            self.r[("creates", creators)] = out
            log(f"  durable creates, {creators} clients: {out['create_rate']:,.0f}/s "
                f"p50 {out['create_p50_us']:,.0f} µs")
        self.stop(d)

    def cg_wrap(self, out):
        return ("valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={out}")

    def cg_profile(self, outs, n1, n2):
        """Instructions per call, in total and per function (inclusive), from
        two runs of n1 and n2 calls: the difference leaves start-up out."""
        totals, incs = [], []
        for out in outs:
            m = re.search(r"^totals:\s*(\d+)", out.read_text(), re.M)
            if not m:
                raise HarnessError(f"no totals in {out}")
            totals.append(int(m.group(1)))
            inc = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100",
                                  str(out)], capture_output=True, text=True, timeout=300).stdout
            incs.append(parse_inclusive(inc))
        per_fn = {k: (incs[1][k] - incs[0].get(k, 0)) / (n2 - n1) for k in incs[1]}
        return (totals[1] - totals[0]) / (n2 - n1), per_fn

    def callgrind(self):
        if not shutil.which("valgrind"):
            self.notes.append("callgrind: skipped, valgrind is not installed")
            return
        # No timed flush during the count: what a run does must not depend
        # on how long valgrind takes.  Shut-down flushes cancel out.
        conf = self.write_conf("callgrind.conf", "last_used_flush_interval = 1h\n")
        n1, n2 = self.p["cg"]
        for name in ("ref", "apikeyd"):
            outs = []
            for requests in (n1, n2):
                state = self.copy(self.p["small"])
                out = self.tmp / f"callgrind.{name}.{requests}"
                tag = f"callgrind-{name}"
                s = (self.reference(state, self.cg_wrap(out), 120, tag) if name == "ref"
                     else self.apikeyd(state, conf, self.cg_wrap(out), 120, tag))
                self.run([self.bin / "bench_client", "run", "--socket", s.sock, "--state-dir",
                          state, "--proto", "ref" if name == "ref" else "varlink", "--conns", 1,
                          "--requests", requests], timeout=600)
                self.stop(s)
                outs.append(out)
            per, per_fn = self.cg_profile(outs, n1, n2)
            self.r[("callgrind", name)] = per
            self.r[("callgrind-fn", name)] = per_fn
            log(f"callgrind: {name} {per:,.0f} instructions per verify")
            ann = subprocess.run(["callgrind_annotate", "--threshold=99", str(outs[1])],
                                 capture_output=True, text=True, timeout=300).stdout
            (self.bin / f"callgrind-{name}.txt").write_text(
                f"# {n2} verifies, whole run (start-up included)\n" + ann)

    def pam(self):
        module = self.build / "pam_apikey.so"
        conf = self.write_conf("apikeyd.conf")
        state = self.copy(self.p["small"])
        d = self.apikeyd(state, conf)
        token = self.run([self.bin / "bench_client", "create-one", "--socket", d.sock,
                          "--owner", "root"], timeout=60).strip()
        confdir = self.tmp / "pam.d"
        confdir.mkdir()
        tail = "auth required pam_permit.so\naccount required pam_permit.so\n"
        line = f"auth [success=done ignore=ignore default=die] {module} socket={d.sock} nodelay"
        if os.geteuid() != 0:  # the daemon runs as we do: trust it
            line += f" daemon_user={pwd.getpwuid(os.geteuid()).pw_name}"
        (confdir / "bench-permit").write_text(tail)
        (confdir / "bench-apikey").write_text(f"{line}\n{tail}")
        # Loaded, options parsed, then PAM_IGNORE: no token, no daemon.
        (confdir / "bench-apikey-load").write_text(f"{line} use_first_pass\n{tail}")
        (confdir / "other").write_text("auth required pam_deny.so\naccount required pam_deny.so\n")
        services = ("bench-permit", "bench-apikey", "bench-apikey-load")
        log(f"PAM: {self.p['pam_rounds']} rounds of {self.p['pam_batch']} authentications "
            "per stack")
        argv = [self.bin / "bench_pam", "--confdir", confdir, "--user", "root"]
        out = self.run(argv + ["--rounds", self.p["pam_rounds"], "--batch", self.p["pam_batch"]]
                       + list(services), timeout=600, stdin=token + "\n")
        self.r["pam"] = pam_rounds(out)
        # Again with the harness and the daemon on one vCPU: no vCPU wakes up.
        everywhere = os.sched_getaffinity(0)
        os.sched_setaffinity(d.pid, {0})
        try:
            out = self.run(argv + ["--rounds", self.p["pam_rounds"], "--batch",
                                   self.p["pam_batch"]] + list(services[:2]),
                           timeout=600, stdin=token + "\n", cpu=0)
        finally:
            os.sched_setaffinity(d.pid, everywhere)
        self.r["pam-pinned"] = pam_rounds(out)
        if shutil.which("valgrind"):
            n1, n2 = (20, 120) if not self.args.quick else (5, 25)
            for svc in services:
                outs = []
                for n in (n1, n2):
                    o = self.tmp / f"callgrind.pam.{svc}.{n}"
                    self.run(list(self.cg_wrap(o)) + argv + ["--rounds", 1, "--batch", n, svc],
                             timeout=600, stdin=token + "\n")
                    outs.append(o)
                self.r[("callgrind-pam", svc)] = self.cg_profile(outs, n1, n2)
        self.stop(d)

    def ssh(self):
        missing = [t for t in ("sshpass", "ssh", "ssh-keygen", "timeout") if not shutil.which(t)]
        if os.geteuid() != 0:
            self.r["ssh"] = "skipped: needs root (runs sshd, writes /etc/pam.d)"
        elif not os.path.exists(SSHD) or missing:
            self.r["ssh"] = f"skipped: not installed: {' '.join(missing) or SSHD}"
        if "ssh" in self.r:
            log(f"ssh: {self.r['ssh']}")
            return
        for svc in SSH_SERVICES:
            p = PAM_DIR / svc
            if p.exists() and MARKER not in p.read_text(errors="replace"):
                self.r["ssh"] = f"skipped: {p} exists and is not ours"
                log(f"ssh: {self.r['ssh']}")
                return
        conf = self.write_conf("apikeyd.conf")
        state = self.copy(self.p["small"])
        d = self.apikeyd(state, conf)
        token = self.run([self.bin / "bench_client", "create-one", "--socket", d.sock,
                          "--owner", "root"], timeout=60).strip()
        module = self.build / "pam_apikey.so"
        rest = ("account required pam_permit.so\nsession required pam_permit.so\n"
                "password required pam_deny.so\n")
        texts = {
            "sshd-apikey-bench": f"{MARKER}\nauth [success=done ignore=ignore default=die] "
                                 f"{module} socket={d.sock} service=sshd nodelay\n"
                                 f"auth requisite pam_deny.so\n{rest}",
            "sshd-permit-bench": f"{MARKER}\nauth required pam_permit.so\n{rest}",
        }
        for svc, text in texts.items():
            self.etc_files.append(PAM_DIR / svc)
            (PAM_DIR / svc).write_text(text)
        if not os.path.isdir("/run/sshd"):
            os.mkdir("/run/sshd", 0o755)
            self.made_run_sshd = True
        self.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.tmp / "host_key"],
                 timeout=30)
        sshds = {}
        for svc in SSH_SERVICES:
            port = free_port()
            cfg = self.tmp / f"{svc}.config"
            cfg.write_text(f"Port {port}\nListenAddress 127.0.0.1\nHostKey {self.tmp}/host_key\n"
                           f"PidFile {self.tmp}/{svc}.pid\nUsePAM yes\n"
                           "KbdInteractiveAuthentication no\nPasswordAuthentication yes\n"
                           "PubkeyAuthentication no\nPermitRootLogin yes\nMaxStartups 100\n"
                           "UseDNS no\nPrintMotd no\nPrintLastLog no\nLogLevel ERROR\n")
            argv0 = self.tmp / svc
            os.symlink(SSHD, argv0)
            self.run([argv0, "-t", "-f", cfg], timeout=30)
            proc_log = open(self.tmp / f"{svc}.log", "ab")
            proc = subprocess.Popen([str(argv0), "-D", "-e", "-f", str(cfg)],
                                    stdin=subprocess.DEVNULL, stdout=proc_log, stderr=proc_log)
            sshds[svc] = (port, proc, proc_log)
            self.sshd_procs.append((proc, proc_log))
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise HarnessError(f"sshd for {svc} did not start")
                    time.sleep(0.05)

        def login(svc, password):
            port = sshds[svc][0]
            argv = ["timeout", "20", "sshpass", "-e", "-P", "password", "ssh", "-F", "/dev/null",
                    "-p", str(port), "-o", "StrictHostKeyChecking=no",
                    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                    "-o", "PubkeyAuthentication=no", "-o", "NumberOfPasswordPrompts=1",
                    "-o", "PreferredAuthentications=password", "root@127.0.0.1", "true"]
            t0 = time.monotonic()
            r = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, SSHPASS=password, LC_ALL="C"),
                               stdin=subprocess.DEVNULL)
            dt = time.monotonic() - t0
            if r.returncode != 0:
                raise HarnessError(f"ssh login through {svc} failed ({r.returncode}): "
                                   f"{r.stderr[-500:]}")
            return dt * 1000

        log(f"ssh: {self.p['ssh_pairs']} logins with a key and with pam_permit, alternately")
        login("sshd-permit-bench", "x")  # first-run costs (host key, caches)
        login("sshd-apikey-bench", token)
        times = {"key": [], "permit": []}
        for _ in range(self.p["ssh_pairs"]):
            times["permit"].append(login("sshd-permit-bench", "x"))
            times["key"].append(login("sshd-apikey-bench", token))
        self.r["ssh"] = times
        self.stop_sshds()
        self.stop(d)

    def stop_sshds(self):
        while self.sshd_procs:
            proc, fd = self.sshd_procs.pop()
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            fd.close()

    def cleanup(self):
        problems = []
        self.stop_sshds()
        for s in list(self.servers):
            try:
                self.stop(s)
            except HarnessError as e:
                problems.append(str(e))
        for p in self.etc_files:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
        self.etc_files = []
        if self.made_run_sshd:
            try:
                os.rmdir("/run/sshd")
            except OSError:
                pass
            self.made_run_sshd = False
        shutil.rmtree(self.tmp, ignore_errors=True)
        return problems

    # -- the report

    def machine(self):
        model = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
        distro = "?"
        try:
            for line in open("/etc/os-release"):
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
        except OSError:
            pass
        cc = subprocess.run([self.args.cc or "cc", "--version"], capture_output=True,
                            text=True).stdout.splitlines()
        libs = []
        for pkg in ("lmdb", "libsodium", "jansson", "libsystemd", "pam"):
            v = subprocess.run(["pkg-config", "--modversion", pkg], capture_output=True,
                               text=True).stdout.strip()
            libs.append(f"{pkg} {v or '?'}")
        return (f"{model}, {os.cpu_count()} vCPUs, {mem:,} MiB RAM; {distro}, Linux "
                f"{platform.release()}; {cc[0] if cc else '?'}, CFLAGS `{self.args.cflags}`; "
                + ", ".join(libs))

    def report(self, started, finished, load0, load1, steal):
        p, r = self.p, self.r
        small, large = p["small"], p["large"]
        L = []
        quick = " (quick run: checks the harness, not a speed)" if self.args.quick else ""
        L.append(f"# apikeyd benchmarks{quick}")
        L.append("")
        L.append(f"- **Date**: {started:%Y-%m-%d %H:%M} – {finished:%H:%M} UTC")
        L.append(f"- **Machine**: {self.machine()}")
        L.append(f"- **Load**: load average {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} at "
                 f"the start, {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f} at the end; "
                 f"CPU steal {steal:.1f}% over the run; other processes used "
                 f"{fmt(median(self.others))}% of one vCPU during the median load run, "
                 f"{fmt(max([x for x in self.others if x is not None], default=None))}% "
                 "during the busiest")
        L.append(f"- **Method**: each figure is the median of {p['reps']} runs of {p['seconds']} s "
                 f"(after {p['warmup']} s of warm-up on the same connections); the reference "
                 "and apikeyd serve both keystores at once and take turns (ABAB…) within each "
                 "repetition, so every ratio compares runs made side by side; ratios are "
                 "apikeyd / reference. Requests: 80% valid tokens, 10% wrong secrets, 10% "
                 "unknown ids, each a Verify with user, service and rhost, asking for the "
                 "brief answer, as pam_apikey sends it. The load generator is one thread "
                 "sharing the machine with the server.")
        L.append("")

        L.append("## Verify: apikeyd against the reference")
        L.append("")
        L.append("| keys | conns | reference verifies/s | apikeyd verifies/s | ratio | "
                 "p50 µs ref / apikeyd | ratio | p99 µs ref / apikeyd | ratio | "
                 "p99.9 µs ref / apikeyd | ratio | server CPU ref / apikeyd |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        def row(n, label, ref, d):
            m = {k: (median([x[k] for x in ref if k in x]), median([x[k] for x in d if k in x]))
                 for k in ("verify_rate", "verify_p50_us", "verify_p99_us", "verify_p999_us",
                           "server_cpu_pct")}
            cells = [fmt(n), label, fmt(m["verify_rate"][0]), fmt(m["verify_rate"][1]),
                     fmt_ratio(ratio(m["verify_rate"][1], m["verify_rate"][0]))]
            for k in ("verify_p50_us", "verify_p99_us", "verify_p999_us"):
                cells += [f"{fmt(m[k][0], 1)} / {fmt(m[k][1], 1)}",
                          fmt_ratio(ratio(m[k][1], m[k][0]))]
            cells.append(f"{fmt(m['server_cpu_pct'][0])}% / {fmt(m['server_cpu_pct'][1])}%")
            L.append("| " + " | ".join(cells) + " |")

        for n in (small, large):
            for c in p["conns"]:
                row(n, str(c), r.get(("verify", n, c, "ref"), []),
                    r.get(("verify", n, c, "apikeyd"), []))
                if c == 1:
                    for label in ("one vCPU", "two vCPUs"):
                        if r.get(("pinned", label, n, "ref")):
                            row(n, f"1, {label}", r[("pinned", label, n, "ref")],
                                r[("pinned", label, n, "apikeyd")])
        L.append("")
        L.append("*1, one vCPU*: the client and the server pinned to the same vCPU, so every "
                 "call is two context switches and no vCPU wakes up: the code's own latency. "
                 "*1, two vCPUs*: pinned to different vCPUs, so every call wakes the other "
                 "one (~20–25 µs each way here), as a lone client mostly sees on a quiet "
                 "machine. The unpinned single-connection rows swing between the two, "
                 "depending on where the scheduler puts the processes. CPU % is of one vCPU.")
        L.append("")

        def vrate(n, c, who):
            return median([x["verify_rate"] for x in r.get(("verify", n, c, who), [])])

        def vp50(n, c, who):
            return median([x["verify_p50_us"] for x in r.get(("verify", n, c, who), [])])

        mixed0 = median([x["verify_rate"] for x in r.get(("mixed", 0), [])])
        mixed1 = median([x["verify_rate"] for x in r.get(("mixed", 1), [])])
        mixed_creates = median([x["create_rate"] for x in r.get(("mixed", 1), [])])
        cg_ref, cg_d = r.get(("callgrind", "ref")), r.get(("callgrind", "apikeyd"))
        pam, pamp = r.get("pam"), r.get("pam-pinned")
        pam_delta = pam_load = pam_pinned = None
        if pam:
            pam_delta = delta_median(pam["bench-apikey"], pam["bench-permit"])
            pam_load = delta_median(pam["bench-apikey-load"], pam["bench-permit"])
        if pamp:
            pam_pinned = delta_median(pamp["bench-apikey"], pamp["bench-permit"])

        L.append("## Other figures")
        L.append("")
        L.append("| figure | value |")
        L.append("|---|---:|")
        rc_ref = median([x["verify_p50_us"] for x in r.get(("reconnect", "ref"), [])])
        rc_d = median([x["verify_p50_us"] for x in r.get(("reconnect", "apikeyd"), [])])
        if rc_d:
            L.append(f"| Verify over a new connection each time (as pam_apikey does), 1 client, "
                     f"{small:,} keys: p50 reference / apikeyd | {fmt(rc_ref, 1)} µs / "
                     f"{fmt(rc_d, 1)} µs ({fmt_ratio(ratio(rc_d, rc_ref))}) |")
        if mixed0:
            L.append(f"| verifies/s at 16 conns, {small:,} keys, alone | {fmt(mixed0)} |")
            L.append(f"| the same while 1 more client creates keys back to back | {fmt(mixed1)} "
                     f"({fmt_ratio(ratio(mixed1, mixed0))}), with {fmt(mixed_creates)} creates/s |")
        for c in (1, 16):
            x = r.get(("creates", c))
            if x:
                L.append(f"| durable creates/s, {c} client{'s' if c > 1 else ''} | "
                         f"{fmt(x['create_rate'])} (p50 {fmt(x['create_p50_us'])} µs, p99 "
                         f"{fmt(x['create_p99_us'])} µs) |")
        x = r.get("list")
        if x:
            L.append(f"| List of 100 keys from {large:,} (random cursor), 1 client | "
                     f"{fmt(x['list_rate'])}/s, p50 {fmt(x['list_p50_us'], 1)} µs, p99 "
                     f"{fmt(x['list_p99_us'], 1)} µs ({fmt(x['list_keys_per_reply'], 1)} keys "
                     "per reply) |")
        for n, rss in sorted(r.get("rss", {}).items()):
            a, b = rss["apikeyd"], rss["ref"]
            L.append(f"| memory after the verify runs on {n:,} keys: apikeyd | RSS "
                     f"{a['VmRSS'] / 1024:,.1f} MiB (anonymous {a['RssAnon'] / 1024:,.1f} MiB, "
                     f"keystore pages mapped {a['RssFile'] / 1024:,.1f} MiB), peak "
                     f"{a['VmHWM'] / 1024:,.1f} MiB |")
            L.append(f"| the same: reference | RSS {b['VmRSS'] / 1024:,.1f} MiB "
                     f"(anonymous {b['RssAnon'] / 1024:,.1f} MiB, keystore pages mapped "
                     f"{b['RssFile'] / 1024:,.1f} MiB) |")
        for n, ld in sorted(r.get("load", {}).items()):
            L.append(f"| keystore of {n:,} keys: file / per key | {ld['file_bytes'] / 2**20:,.1f} "
                     f"MiB / {ld['used_bytes'] / n:,.0f} bytes (loaded in "
                     f"{ld['seconds']:.1f} s by bench_load) |")
        if cg_d:
            L.append(f"| callgrind instructions per verify: reference / apikeyd | {fmt(cg_ref)} / "
                     f"{fmt(cg_d)} ({fmt_ratio(ratio(cg_d, cg_ref))}) |")
        if pam:
            L.append(f"| PAM authentication (pam_start_confdir … pam_end), pam_permit only | "
                     f"{fmt(median(pam['bench-permit']), 1)} µs |")
            L.append(f"| the same with pam_apikey and a valid key first | "
                     f"{fmt(median(pam['bench-apikey']), 1)} µs (+{fmt(pam_delta, 1)} µs) |")
            L.append(f"| of which loading pam_apikey and parsing its options (no daemon call) | "
                     f"+{fmt(pam_load, 1)} µs |")
        if pamp:
            L.append(f"| the same two stacks with the harness and the daemon on one vCPU | "
                     f"{fmt(median(pamp['bench-permit']), 1)} µs / "
                     f"{fmt(median(pamp['bench-apikey']), 1)} µs (+{fmt(pam_pinned, 1)} µs) |")
        ssh = r.get("ssh")
        if isinstance(ssh, dict):
            k, pm = median(ssh["key"]), median(ssh["permit"])
            d = delta_median(ssh["key"], ssh["permit"])
            L.append(f"| ssh login (password method, `ssh … true`): pam_permit / API key | "
                     f"{fmt(pm, 1)} ms / {fmt(k, 1)} ms; difference {d:+.1f} ms (median of "
                     f"{len(ssh['key'])} pairs) |")
        elif ssh:
            L.append(f"| ssh login with a key vs pam_permit | {ssh} |")
        for note in self.notes:
            L.append(f"| note | {note} |")
        L.append("")

        L.append("## Targets")
        L.append("")
        L.append("| target | measured | |")
        L.append("|---|---:|---|")

        def target(name, value, ok, shown):
            mark = "–" if value is None else ("met" if ok(value) else "**missed**")
            L.append(f"| {name} | {shown} | {mark} |")

        t16 = ratio(vrate(small, 16, "apikeyd"), vrate(small, 16, "ref"))
        t16l = ratio(vrate(large, 16, "apikeyd"), vrate(large, 16, "ref"))
        target("verify throughput at 16 connections ≥ 0.85× the reference", t16,
               lambda v: v >= 0.85,
               f"{fmt_ratio(t16)} ({fmt(small)} keys), {fmt_ratio(t16l)} ({fmt(large)} keys)")
        def pinned_p50(label, n, who):
            return median([x["verify_p50_us"] for x in r.get(("pinned", label, n, who), [])])

        def p50_ratio(label, n):
            return ratio(pinned_p50(label, n, "apikeyd"), pinned_p50(label, n, "ref"))

        p50 = p50_ratio("one vCPU", small)
        target("single-connection p50 ≤ 1.2× the reference (pinned to one vCPU; to two vCPUs "
               "and unpinned in brackets)", p50, lambda v: v <= 1.2,
               f"{fmt_ratio(p50)} ({fmt(small)} keys), {fmt_ratio(p50_ratio('one vCPU', large))}"
               f" ({fmt(large)} keys) [two vCPUs {fmt_ratio(p50_ratio('two vCPUs', small))}, "
               f"unpinned {fmt_ratio(ratio(vp50(small, 1, 'apikeyd'), vp50(small, 1, 'ref')))}"
               "]")
        cg = ratio(cg_d, cg_ref)
        target("callgrind instructions per verify ≤ 2× the reference", cg, lambda v: v <= 2,
               fmt_ratio(cg))
        big = ratio(vrate(large, 16, "apikeyd"), vrate(small, 16, "apikeyd"))
        bigref = ratio(vrate(large, 16, "ref"), vrate(small, 16, "ref"))
        target(f"{fmt(large)} keys within 10% of {fmt(small)} keys (verifies/s, 16 conns)", big,
               lambda v: v >= 0.9,
               f"{fmt_ratio(big)} (reference: {fmt_ratio(bigref)})")
        mx = ratio(mixed1, mixed0)
        target("throughput under concurrent creates ≥ 0.8× of without", mx, lambda v: v >= 0.8,
               fmt_ratio(mx))
        target("the PAM module adds < 100 µs per authentication (harness and daemon on one "
               "vCPU in brackets)", pam_delta, lambda v: v < 100,
               f"{fmt(pam_delta, 1)} µs [{fmt(pam_pinned, 1)} µs]")
        L.append("")

        L.append("## Where the instructions go")
        L.append("")
        L.append("Instructions per call under callgrind, inclusive of callees, from the difference "
                 f"of two runs ({p['cg'][0]:,} and {p['cg'][1]:,} verifies, one connection, the "
                 "same request mix), so start-up and shut-down cancel out. Library functions "
                 "without symbols are named by their exported entry points. Whole-run "
                 f"listings: `{Path(self.args.build) / 'bench'}/callgrind-*.txt`.")
        L.append("")
        for name, title in (("apikeyd", "apikeyd, per verify"), ("ref", "reference, per verify")):
            per_fn = r.get(("callgrind-fn", name))
            if not per_fn:
                continue
            L.append(f"{title} ({fmt(r[('callgrind', name)])} in all):")
            L.append("")
            L.append("```")
            L.extend(breakdown(per_fn, 28 if name == "apikeyd" else 12,
                               0.01 * r[("callgrind", name)]))
            L.append("```")
            L.append("")
        cgp = {svc: r.get(("callgrind-pam", svc)) for svc in ("bench-permit", "bench-apikey",
                                                               "bench-apikey-load")}
        if all(cgp.values()):
            base = cgp["bench-permit"][0]
            L.append("PAM, per authentication in the harness's process (pam_start_confdir … "
                     f"pam_end): pam_permit only {fmt(base)}; with pam_apikey loaded but "
                     f"ignoring {fmt(cgp['bench-apikey-load'][0])} "
                     f"(+{fmt(cgp['bench-apikey-load'][0] - base)}); with a valid key "
                     f"{fmt(cgp['bench-apikey'][0])} (+{fmt(cgp['bench-apikey'][0] - base)}; "
                     "the daemon's own work is not counted here). The heaviest functions with a "
                     "valid key:")
            L.append("")
            L.append("```")
            L.extend(breakdown(cgp["bench-apikey"][1], 16, 0.02 * cgp["bench-apikey"][0]))
            L.append("```")
            L.append("")
        return "\n".join(L) + "\n"


def parse_inclusive(text):
    """{function: inclusive instructions} from callgrind_annotate --inclusive=yes."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*)", line)
        # "=> callee (Nx)" lines are call edges, listed under their callers.
        if m and not m.group(2).startswith("=>") and ":" in m.group(2):
            out[m.group(2)] = int(m.group(1).replace(",", ""))
    return out


def short_name(where):
    """"/path/file.c:fn [/lib/libx.so.1]" as "fn (file.c)" or "fn [libx]"."""
    m = re.match(r"(.*?):(\S+)(?: \[(.*)\])?$", where)
    if not m:
        return where
    file, fn, obj = m.groups()
    if file != "???":
        return f"{fn} ({os.path.basename(file)})"
    lib = os.path.basename(obj or "").split(".so")[0]
    return f"{fn} [{lib}]"


# Frames every call passes through: left out of the breakdown.
GENERIC = re.compile(r"PROGRAM TOTALS|below main|__libc_start|:main |:main$|sd_event_(loop|run|"
                     r"dispatch)|_dl_catch|_dlerror_run|_rtld_catch|:authenticate ")


def breakdown(per_fn, n, floor):
    """The n heaviest named functions (inclusive, per call), at least `floor` each."""
    rows = [(v, k) for k, v in per_fn.items()
            if v >= floor and "???:0x" not in k and not GENERIC.search(k)]
    rows.sort(reverse=True)
    seen, out = set(), []
    for v, k in rows:
        name = short_name(k)
        # A function may be listed twice: by its source file and by its symbol.
        if name.split()[0] in seen:
            continue
        seen.add(name.split()[0])
        out.append(f"{v:>9,.0f}  {name}")
        if len(out) >= n:
            break
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build", help="the build directory (default build)")
    ap.add_argument("--out", help="write the Markdown report here")
    ap.add_argument("--quick", action="store_true", help="small keystores, short runs")
    ap.add_argument("--seconds", type=float, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per run")
    ap.add_argument("--reps", type=int, help="runs per figure (medians)")
    ap.add_argument("--large", type=int, help="keys in the large keystore")
    ap.add_argument("--only", default="verify,creates,callgrind,pam,ssh",
                    help="comma-separated parts to run")
    ap.add_argument("--cflags", default="", help="the CFLAGS of the build, for the report")
    ap.add_argument("--cc", default="cc", help="the compiler of the build, for the report")
    args = ap.parse_args()

    b = Bench(args)
    for prog in ("apikeyd", "pam_apikey.so", "bench/bench_load", "bench/bench_client",
                 "bench/bench_ref", "bench/bench_pam"):
        if not (b.build / prog).exists():
            print(f"bench: {b.build / prog} is missing: run `make bench-build`", file=sys.stderr)
            return 1
    parts = args.only.split(",")
    started = datetime.datetime.now(datetime.timezone.utc)
    load0, (tot0, st0) = os.getloadavg(), cpu_times()
    failure = None

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        for part in ("verify", "creates", "callgrind", "pam", "ssh"):
            if part in parts:
                getattr(b, "verify_matrix" if part == "verify" else part)()
    except (HarnessError, subprocess.TimeoutExpired, OSError) as e:
        failure = str(e)
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        problems = b.cleanup()
    if problems and not failure:
        failure = "; ".join(problems)
    finished = datetime.datetime.now(datetime.timezone.utc)
    tot1, st1 = cpu_times()
    steal = 100.0 * (st1 - st0) / max(1, tot1 - tot0)
    text = b.report(started, finished, load0, os.getloadavg(), steal)
    if failure:
        text += f"\n**The run failed**: {failure}\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    print(text)
    if failure:
        print(f"bench: FAILED: {failure}", file=sys.stderr)
        return 1
    if args.out:
        log(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
