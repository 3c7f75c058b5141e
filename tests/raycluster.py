"""A real Ray cluster on this machine for the `--executor ray` tests: a head and worker
nodes, each started as its own `ray start --block` process in a session of its own.

Teardown stops exactly the processes of those sessions (by id: the `ray start` process,
then any process left in its session, e.g. the raylet's workers), never `ray stop`, which
would stop every Ray cluster of every user of the machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: Mapping[str, str]) -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    env = {
        **os.environ,
        "PYTHONPATH": root + (os.pathsep + path if path else ""),
        "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


@dataclass
class Cluster:
    address: str
    temp_dir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def add_node(self, *, cpus: int = 1, env: Mapping[str, str] = {}) -> subprocess.Popen[bytes]:
        """Start a worker node and wait until the cluster counts it."""
        before = self.node_count()
        args = [RAY, "start", "--block", "--address", self.address, f"--num-cpus={cpus}"]
        args += ["--num-gpus=0", "--disable-usage-stats"]
        process = _start(args, self.temp_dir / f"node{len(self.processes)}.log", env)
        self.processes.append(process)
        self._wait(lambda: self.node_count() > before, process)
        return process

    def node_count(self) -> int:
        """Alive nodes, as `ray status` lists them (no driver connection in this process;
        `ray list` would need the dashboard, which the tests leave off)."""
        out = subprocess.run(
            [RAY, "status", "--address", self.address],
            capture_output=True,
            text=True,
            env=_env({}),
            timeout=60,
        ).stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0] if "Active:" in out else ""
        return sum(1 for line in active.splitlines() if line.strip().startswith("1 node_"))

    def _wait(self, ready: object, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"ray start exited {process.returncode}; see {self.temp_dir}")
            if ready():  # type: ignore[operator]
                return
            time.sleep(0.5)
        raise RuntimeError(f"the Ray node did not join in 90 s; see {self.temp_dir}")

    def stop_node(self, process: subprocess.Popen[bytes]) -> None:
        _stop(process)
        self.processes.remove(process)

    def stop(self) -> None:
        for process in reversed(self.processes):
            _stop(process)
        self.processes.clear()


def _start(args: list[str], log: Path, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    """A node in a session of its own, its working directory its log's (a worker reads a
    relative path from there: the tests' checkpoints are not in it)."""
    with log.open("wb") as fh:
        return subprocess.Popen(
            args,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=_env(env),
            cwd=log.parent,
            start_new_session=True,
        )


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                if os.getsid(int(entry.name)) == sid:
                    pids.append(int(entry.name))
    return pids


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `ray start --block` (it stops its node), then SIGKILL whatever of its
    session is left after a few seconds."""
    sid = process.pid  # start_new_session: the session id is the leader's pid
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    deadline = time.monotonic() + 5
    while _session_pids(sid) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in _session_pids(sid):
        with suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextmanager
def ray_cluster(
    temp_dir: Path, *, head_cpus: int = 1, workers: int = 1, env: Mapping[str, str] = {}
) -> Iterator[Cluster]:
    """A head (with ``head_cpus`` CPUs for units) and ``workers`` nodes of one CPU each."""
    temp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cluster = Cluster(f"127.0.0.1:{port}", temp_dir)
    args = [
        RAY,
        "start",
        "--block",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={head_cpus}",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--temp-dir={temp_dir}",
    ]
    try:
        head = _start(args, temp_dir / "head.log", env)
        cluster.processes.append(head)
        cluster._wait(lambda: cluster.node_count() >= 1, head)
        for _ in range(workers):
            cluster.add_node(env=env)
        yield cluster
    finally:
        cluster.stop()
