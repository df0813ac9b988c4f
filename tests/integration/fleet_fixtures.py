# SPDX-License-Identifier: MIT
"""Fixtures for fleet mode: a real etcd cluster and apikeyd hosts that follow it.

- ``etcd_cluster`` (one per test module): three etcd members from Debian's
  etcd-server on loopback, on free ports, their data in a temporary
  directory; every member stopped by its PID at the end (SIGCONT first,
  in case a test left it stopped).  Skipped, saying why, only where
  /usr/bin/etcd is missing.
- ``fleet``: fleet(n_hosts, ...) -> (manager, [hosts]): apikeyd daemons
  with their own socket, state directory and fleet_host, under a fleet
  prefix of the test's own; the manager (fleet_manage = yes) starts first
  and writes the pepper's fingerprint, the hosts get a copy of its pepper.
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import IFACE

ETCD = Path("/usr/bin/etcd")
ETCDCTL = Path("/usr/bin/etcdctl")
START_TIMEOUT = 20.0


def _free_ports(n):
    """`n` distinct ports nobody listens on now (bound, then released)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class EtcdCluster:
    """Three etcd members on loopback."""

    def __init__(self, base, size=3, tls=None):
        """`tls`: a dict of PEM files (ca, cert, key for the members; client_cert and
        client_key for the tests' own etcdctl): clients then need a certificate."""
        self.base = Path(base)
        self.tls = tls
        ports = _free_ports(2 * size)
        self.names = [f"m{i}" for i in range(size)]
        scheme = "https" if tls else "http"
        self.client_urls = [f"{scheme}://127.0.0.1:{ports[2 * i]}" for i in range(size)]
        self.peer_urls = [f"http://127.0.0.1:{ports[2 * i + 1]}" for i in range(size)]
        self.procs = {}
        self.stopped = set()
        initial = ",".join(f"{n}={u}" for n, u in zip(self.names, self.peer_urls))
        token = f"akt-{uuid.uuid4().hex[:12]}"
        self.argv = {}
        for i, name in enumerate(self.names):
            self.argv[name] = [
                str(ETCD), "--name", name, "--data-dir", str(self.base / name),
                "--listen-client-urls", self.client_urls[i],
                "--advertise-client-urls", self.client_urls[i],
                "--listen-peer-urls", self.peer_urls[i],
                "--initial-advertise-peer-urls", self.peer_urls[i],
                "--initial-cluster", initial, "--initial-cluster-token", token,
                "--initial-cluster-state", "new", "--log-level", "warn",
            ]
            if tls:
                self.argv[name] += ["--cert-file", tls["cert"], "--key-file", tls["key"],
                                    "--client-cert-auth", "--trusted-ca-file", tls["ca"]]

    def start(self):
        for name in self.names:
            log = open(self.base / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen(self.argv[name], stdin=subprocess.DEVNULL,
                                                stdout=log, stderr=log, close_fds=True)
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if all(self.healthy(u, self.tls) for u in self.client_urls):
                return self
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise AssertionError(f"etcd member {name} exited with {p.returncode}:\n"
                                         f"{self.log(name)}")
            time.sleep(0.1)
        raise AssertionError("the etcd cluster did not become healthy within "
                             f"{START_TIMEOUT}s:\n" + "\n".join(self.log(n) for n in self.names))

    def log(self, name):
        try:
            return (self.base / f"{name}.log").read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    @staticmethod
    def healthy(url, tls=None):
        ctx = None
        if tls:
            ctx = ssl.create_default_context(cafile=tls["ca"])
            ctx.load_cert_chain(tls["client_cert"], tls["client_key"])
        try:
            with urllib.request.urlopen(url + "/health", timeout=1, context=ctx) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    @property
    def endpoints(self):
        return ",".join(self.client_urls)

    def etcdctl(self, *args, user=None, check=True):
        env = dict(os.environ, ETCDCTL_API="3")
        live = ",".join(u for n, u in zip(self.names, self.client_urls)
                        if self.procs.get(n) is None or self.procs[n].poll() is None)
        argv = [str(ETCDCTL), "--endpoints", live] + (["--user", user] if user else [])
        if self.tls:
            argv += ["--cacert", self.tls["ca"], "--cert", self.tls["client_cert"],
                     "--key", self.tls["client_key"]]
        r = subprocess.run(argv + list(args), env=env, capture_output=True, text=True, timeout=20)
        if not check:
            return r
        assert r.returncode == 0, f"etcdctl {' '.join(args)}: {r.stderr}"
        return r.stdout

    def revision(self):
        import json
        out = self.etcdctl("endpoint", "status", "-w", "json")
        return max(int(m["Status"]["header"]["revision"]) for m in json.loads(out))

    def compact(self):
        rev = self.revision()
        self.etcdctl("compact", str(rev), "--physical")
        return rev

    def leader(self):
        """The name of the member that leads now."""
        import json
        out = self.etcdctl("endpoint", "status", "-w", "json")
        for m in json.loads(out):
            st = m["Status"]
            if st["header"]["member_id"] == st["leader"]:
                return self.names[self.client_urls.index(m["Endpoint"])]
        raise AssertionError(f"no leader in {out}")

    def kill(self, name):
        """SIGKILL one member, as a crash does; revive() starts it again on its data."""
        p = self.procs[name]
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)

    def revive(self, name):
        log = open(self.base / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen(self.argv[name], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=log, close_fds=True)
        log.close()
        url = self.client_urls[self.names.index(name)]
        deadline = time.monotonic() + START_TIMEOUT
        while not self.healthy(url, self.tls):
            assert time.monotonic() < deadline, f"{name} did not come back:\n{self.log(name)}"
            time.sleep(0.1)

    def stop_all(self):
        """SIGSTOP every member (they hang, as a partitioned or frozen cluster does)."""
        for name in self.names:
            self.stop(name)

    def stop(self, name):
        os.kill(self.procs[name].pid, signal.SIGSTOP)
        self.stopped.add(name)

    def name_of(self, url):
        return self.names[self.client_urls.index(url)]

    def continue_all(self):
        for name in list(self.stopped):
            os.kill(self.procs[name].pid, signal.SIGCONT)
            self.stopped.discard(name)

    def cleanup(self):
        self.continue_all()
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)


def _require_etcd():
    if not ETCD.exists() or not ETCDCTL.exists():
        pytest.skip(f"{ETCD} or {ETCDCTL} is missing: install Debian's etcd-server and "
                    "etcd-client (make deps) to run the fleet tests")


@pytest.fixture(scope="module")
def etcd_cluster():
    _require_etcd()
    base = tempfile.mkdtemp(prefix="akt-etcd-")
    cluster = EtcdCluster(base)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def make_certificates(d):
    """A CA, a certificate for the members (127.0.0.1) and client certificates with an
    empty subject CN and the identity in the SAN (etcd's gateway refuses a client
    certificate with a CN): PEM file names in a dict."""
    d = Path(d)

    def ossl(*args):
        r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30,
                           cwd=d)
        assert r.returncode == 0, f"openssl {' '.join(args)}: {r.stderr}"

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=akt fleet test CA")
    for name, subj, san, usage in (
            ("server", "/CN=127.0.0.1", "IP:127.0.0.1", "serverAuth,clientAuth"),
            ("host0", "/O=akt fleet", "DNS:host0", "clientAuth"),
            ("manager", "/O=akt fleet", "DNS:manager", "clientAuth")):
        ossl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subj)
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage={usage}\n")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
    for f in d.iterdir():
        os.chmod(f, 0o600)
    return {"ca": str(d / "ca.pem"), "cert": str(d / "server.pem"), "key": str(d / "server.key"),
            "client_cert": str(d / "manager.pem"), "client_key": str(d / "manager.key"),
            "dir": d}


@pytest.fixture
def etcd_tls():
    """One etcd member that speaks only TLS to clients and asks for their certificate."""
    _require_etcd()
    base = tempfile.mkdtemp(prefix="akt-etcd-")
    cluster = EtcdCluster(base, size=1, tls=make_certificates(base))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def etcd_single():
    """One more etcd, of one member, for a test that changes the whole
    cluster (turns authentication on)."""
    _require_etcd()
    base = tempfile.mkdtemp(prefix="akt-etcd-")
    cluster = EtcdCluster(base, size=1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def fleet_status(d):
    with d.client() as c:
        r = c.call(f"{IFACE}.GetStatus")
    assert "error" not in r, r
    return r["parameters"]["fleet"]


def wait_for(what, fn, timeout):
    """Poll `fn` until it returns a true value; that value, and the seconds it took."""
    t0 = time.monotonic()
    while True:
        v = fn()
        if v:
            return v, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout}s (last: {v!r})")
        time.sleep(0.01)


@pytest.fixture
def fleet(etcd_cluster, daemon, tmp_path):
    """fleet(n_hosts=3, host_config=None, per_host=None, manager_config=None)
    -> (manager, [hosts])."""

    prefix = f"/akt-{uuid.uuid4().hex[:10]}"

    def config(name, manage, extra=None):
        c = {"fleet_endpoints": etcd_cluster.endpoints, "fleet_prefix": prefix,
             "fleet_host": name, "fleet_manage": "yes" if manage else "no"}
        c.update(extra or {})
        return c

    def start_host(name, manager, extra=None, pepper=True):
        state = tmp_path / f"state-{name}"
        state.mkdir(mode=0o700)
        if pepper:
            shutil.copyfile(manager.state_dir / "pepper", state / "pepper")
            os.chmod(state / "pepper", 0o600)
        return daemon(config=config(name, False, extra), state_dir=state)

    def factory(n_hosts=3, host_config=None, per_host=None, manager_config=None):
        manager = daemon(config=config("manager", True, manager_config))
        wait_for("the manager's first sync", lambda: fleet_status(manager)["online"], 10)
        hosts = []
        for i in range(n_hosts):
            extra = dict(host_config or {})
            extra.update((per_host or {}).get(i, {}))
            hosts.append(start_host(f"host{i}", manager, extra))
        return manager, hosts

    factory.prefix = prefix
    factory.start_host = start_host
    yield factory
