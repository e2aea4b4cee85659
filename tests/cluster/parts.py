"""Real cluster parts on loopback, for the cluster tests and bench/cluster.py: a network namespace with
only a loopback interface, Debian's PostgreSQL and redis-server, and Ray nodes started with `ray start`.

Ray's gRPC servers (GCS, raylets) bind every interface and have no option to bind one; inside a network
namespace whose only interface is `lo`, every interface is loopback. Everything here is stopped by
process id (never by name), and every server prints or answers before it counts as started.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from service.cluster.node import descendants

CLONE_NEWNET = 0x40000000
SIOCSIFFLAGS = 0x8914
IFF_UP, IFF_LOOPBACK, IFF_RUNNING = 0x1, 0x8, 0x40
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
# Node-death detection: the GCS health-checks each raylet every 500 ms and calls it dead after 3 misses
# (Ray's default is 3 s x 5 = 15 s). The cost: a raylet stalled for 1.5 s (swap, a long GC) counts as dead.
RAY_FAST_FAILOVER = {
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_health_check_initial_delay_ms": "0",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not within {timeout} s")


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@contextlib.contextmanager
def loopback_namespace() -> Iterator[None]:
    """Move this thread (and every process it starts from now on) into a new network namespace holding only
    `lo`, brought up; back to the original one at exit. Needs root (CAP_SYS_ADMIN), as CI runs."""
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(original)
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed: the cluster tests need root")
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
        yield
    finally:
        if libc.setns(original, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "could not return to the original network namespace")
        os.close(original)


def interfaces() -> list[str]:
    return [line.split(":")[0].strip() for line in Path("/proc/net/dev").read_text().splitlines()[2:]]


def listening_addresses() -> list[str]:
    """Local addresses of every listening TCP socket in this network namespace (hex from /proc/net/tcp*)."""
    out = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{name}").read_text().splitlines()[1:]:
            local, _, state = line.split()[1:4]
            if state == "0A":  # LISTEN
                out.append(local)
    return out


def unprivileged_user() -> tuple[str, int, int]:
    """PostgreSQL refuses to run as root: a user to run it as (nobody exists on every Debian)."""
    entry = pwd.getpwnam("nobody")
    return entry.pw_name, entry.pw_uid, entry.pw_gid


def postgres_bin(name: str) -> str:
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if found is None:
        raise FileNotFoundError(f"{name} not found: Debian's postgresql (scripts/apt-packages.txt, group test)")
    return found


@dataclass
class Postgres:
    """Debian's PostgreSQL, initdb'd into a temporary directory, on a loopback port, no Unix socket."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    root: Path | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://mnad@127.0.0.1:{self.port}/mnad"

    def start(self) -> Postgres:
        _user, uid, gid = unprivileged_user() if os.geteuid() == 0 else (None, None, None)
        self.root = Path(tempfile.mkdtemp(prefix="mnad-pg-"))
        data = self.root / "data"
        as_user = {"user": uid, "group": gid} if uid is not None else {}
        if uid is not None:
            os.chown(self.root, uid, gid)
        initdb = [postgres_bin("initdb"), "-D", str(data), "-U", "mnad", "--auth=trust", "-E", "UTF8", "--locale=C",
                  "--no-sync"]  # fmt: skip
        subprocess.run(initdb, check=True, capture_output=True, timeout=120, **as_user)
        self.proc = subprocess.Popen(
            [postgres_bin("postgres"), "-D", str(data), "-p", str(self.port), "-c", "listen_addresses=127.0.0.1",
             "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "shared_buffers=16MB",
             "-c", "max_connections=60"],
            stdout=subprocess.DEVNULL, stderr=(self.root / "log").open("w"), **as_user,
        )  # fmt: skip
        import psycopg

        def ready() -> bool:
            try:
                with psycopg.connect(f"postgresql://mnad@127.0.0.1:{self.port}/postgres", autocommit=True) as c:
                    c.execute("CREATE DATABASE mnad")
                return True
            except psycopg.OperationalError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"postgres exited: {(self.root / 'log').read_text()[-2000:]}") from None
                return False

        wait_for(ready, 60, "PostgreSQL accepting connections")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class Redis:
    """Debian's redis-server on a loopback port, nothing saved to disk."""

    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise FileNotFoundError("redis-server not found: Debian's redis-server (scripts/apt-packages.txt, test)")
        self.proc = subprocess.Popen(
            [server, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--protected-mode", "yes", "--daemonize", "no", "--dir", tempfile.gettempdir()],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

        def ready() -> bool:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
            return False

        wait_for(ready, 30, "redis-server answering PING")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@dataclass
class RayNode:
    """One Ray node started with `ray start --block` (its processes are that command's descendants). The head
    also runs the GCS; a worker joins `address`."""

    name: str
    temp_dir: Path
    address: str | None = None  # None: this is the head
    port: int = field(default_factory=free_port)
    num_cpus: int = 2
    env: dict[str, str] = field(default_factory=dict)
    handover: bool = False  # run under `mnad-cluster node`: SIGTERM drains its shards before Ray stops
    proc: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def gcs_address(self) -> str:
        return self.address or f"127.0.0.1:{self.port}"

    def start(self) -> RayNode:
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", str(self.num_cpus), "--num-gpus", "0",
                  "--resources", json.dumps({f"mnad_{self.name}": 1}), "--object-store-memory", str(80 * 2**20),
                  "--disable-usage-stats", "--block"]  # fmt: skip
        if self.address is None:
            cmd = [RAY, "start", "--head", "--port", str(self.port), "--include-dashboard=false",
                   "--temp-dir", str(self.temp_dir), *common]  # fmt: skip
        else:
            cmd = [RAY, "start", "--address", self.address, *common]
        if self.handover:  # the wrapper runs `ray start --block` with the same options
            cmd = [str(Path(RAY).with_name("mnad-cluster")), "node", "--", *cmd[2:]]
            cmd.remove("--block")
        self.log = self.temp_dir.parent / f"ray-{self.name}.log"
        env = {**os.environ, **RAY_FAST_FAILOVER, "RAY_DEDUP_LOGS": "0", **self.env}
        self.proc = subprocess.Popen(cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: self._alive() and "Ray runtime started" in self.log.read_text(), 90, f"ray node {self.name}")
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"ray start ({self.name}) exited: {self.log.read_text()[-2000:]}")
        return True

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *descendants(self.proc.pid)]

    def raylet_pid(self) -> int | None:
        for pid in self.pids():
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "raylet":
                    return pid
        return None

    def kill(self) -> None:
        """SIGKILL of every process of the node: its raylet, its workers, its agents, `ray start` itself."""
        pids = self.pids()
        signal_pids(pids, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        """`ray start --block` stops its node on SIGTERM; what is left after 20 s is killed."""
        if self.proc is None:
            return
        pids = self.pids()
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=20)
        time.sleep(0.5)
        signal_pids([p for p in pids if Path(f"/proc/{p}").exists()], signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.proc = None


def ray_processes(nodes: list[RayNode]) -> dict[str, list[int]]:
    """Each node's processes by what they run: `node:raylet`, `node:gcs_server`, `node:ray::Shard`, ..."""
    by_name: dict[str, list[int]] = {}
    for node in nodes:
        for pid in node.pids():
            with contextlib.suppress(OSError):
                argv = Path(f"/proc/{pid}/cmdline").read_text().split("\0")
                name = argv[0].rsplit("/", 1)[-1][:40]
                if name.startswith("python"):  # the script it runs: ray (start), log_monitor.py, monitor.py, ...
                    name = next((a.rsplit("/", 1)[-1] for a in argv[1:] if not a.startswith("-")), name)
                by_name.setdefault(f"{node.name}:{name}", []).append(pid)
    return by_name


def cluster_env(models: Path, pg_dsn: str, redis_url: str, ray_address: str, data: Path) -> dict[str, str]:
    """Settings of the API nodes and the coordinator (the shards get the coordinator's): the tiny test model
    in fp32 on one thread per shard, checkpoints every second; override entries for other runs."""
    return {
        **os.environ, "OMP_NUM_THREADS": "1", "MNAD_MODE": "cluster", "MNAD_DATABASE_URL": pg_dsn,
        "MNAD_BUS_URL": redis_url, "MNAD_RAY_ADDRESS": ray_address, "MNAD_MODELS_DIR": str(models),
        "MNAD_DATA_DIR": str(data), "MNAD_THREADS": "1", "MNAD_DEVICE": "cpu", "MNAD_INFERENCE": "fp32",
        "MNAD_SOURCE_NETWORKS": '["private", "public", "127.0.0.0/8"]', "MNAD_CHECKPOINT_S": "1",
        "MNAD_SHARD_LOST_S": "3", "MNAD_SHARD_METRICS_PORT": "0", **RAY_FAST_FAILOVER,
    }  # fmt: skip


@dataclass
class ApiNode:
    """`serve` (in cluster mode for an API node, or a single process) on a loopback port."""

    proc: subprocess.Popen
    base: str
    log: Path

    def wait(self) -> ApiNode:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200
            return False

        wait_for(ready, 180, "serve ready", interval=0.3)
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
            self.proc.kill()  # nothing when it stopped in time
            self.proc.wait(timeout=10)


def start_api_node(env: dict[str, str], log: Path) -> ApiNode:
    """`serve` with these settings; not waited for (see ApiNode.wait), so nodes start while the cluster does."""
    port = free_port()
    proc = subprocess.Popen([str(BIN / "serve"), "--port", str(port)], env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)  # fmt: skip
    return ApiNode(proc, f"http://127.0.0.1:{port}", log)


def coordinator(env: dict[str, str], *args: str, timeout: float = 240) -> dict:
    """`mnad-cluster ARGS` with these settings; its JSON answer."""
    out = subprocess.run([str(BIN / "mnad-cluster"), *args], env=env, capture_output=True, text=True,
                         timeout=timeout)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"mnad-cluster {' '.join(args)} failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout[out.stdout.index("{") :])


@dataclass
class Feed:
    """One WebSocket client in a thread: every message it receives, with the time it arrived."""

    url: str
    messages: list[tuple[float, dict]] = field(default_factory=list)
    closed: str | None = None
    connected: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Feed:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        from websockets.sync.client import connect

        try:
            with connect(self.url, open_timeout=20) as ws:
                self.connected.set()
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        self.messages.append((time.time(), json.loads(ws.recv(timeout=0.5))))
                self.closed = "by the test"
        except Exception as e:  # the socket closed under the client: the scenario says it must not
            self.closed = repr(e)

    def stop(self) -> None:
        self._stop.set()

    def scores(self, after: float = 0.0) -> list[tuple[float, dict]]:
        return [(t, m) for t, m in list(self.messages) if m["type"] == "score" and t > after]


class WebhookReceiver:
    """A loopback HTTP server for alert webhooks (the cluster tests, bench/webhooks.py): the alert id and
    X-MNAD-Delivery of every POST, answering 503 to the first `down` ones and while `refusing`, else 200; the
    accepted ones also with their arrival time (perf_counter)."""

    def __init__(self, down: int = 0) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.ids: list[int] = []
        self.deliveries: list[str] = []
        self.accepted: list[tuple[float, int]] = []
        self.refusing = False
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.ids.append(body["id"])
                receiver.deliveries.append(self.headers["X-MNAD-Delivery"])
                status = 503 if len(receiver.ids) <= down or receiver.refusing else 200
                if status == 200:
                    receiver.accepted.append((time.perf_counter(), body["id"]))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def frames_lost(scores: list[dict], t_start: float, t_end: float, fps: float, window: int) -> int:
    """Frames a camera streaming without a break at `fps` sent in [t_start, t_end] that were never scored
    (`captured`: when a reader read the frame), less the window - 1 a new reader reads to fill its window."""
    scored = sum(1 for m in scores if t_start <= m["captured"] <= t_end)
    return round((t_end - t_start) * fps) - scored - (window - 1)
