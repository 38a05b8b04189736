"""Real processes for tests and benchmarks: spawn nodes, wait with deadlines, kill trees."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import psutil

from ctl.nodes import process_tree, stop_processes

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
DEADLINE_S = 20.0


def wait_for(predicate: Callable[[], object], timeout_s: float = DEADLINE_S, what: str = "condition",
             interval_s: float = 0.05):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    """A free port below the ephemeral range (ctl/ports.py says why), its port + 1000 free too."""
    from ctl.ports import free_ports

    return free_ports()


def kill_tree(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    stop_processes(process_tree(proc.pid), timeout_s)
    try:
        proc.wait(timeout=1)
    except subprocess.TimeoutExpired:
        pass


def start_secantus(data: Path, timeout_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """A real MongoDB wire-protocol server (SecantusDB) on a free loopback port, storing in
    ``data``, once it answers a ping: (process, mongodb://127.0.0.1:PORT)."""
    import shutil

    import pymongo

    binary = shutil.which("secantusd-py", path=str(Path(PY).parent)) or shutil.which("secantusd-py")
    assert binary, "secantusd-py is missing: run `make test`, which installs SecantusDB"
    data.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(data / "server.log", "ab") as log:
        proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                                 str(data / "db")], stdout=log, stderr=subprocess.STDOUT)
    base = f"mongodb://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, (data / "server.log").read_text()
        try:
            pymongo.MongoClient(base, serverSelectionTimeoutMS=300).admin.command("ping")
            return True
        except Exception:
            return False

    wait_for(up, timeout_s=timeout_s, what="SecantusDB to accept connections")
    return proc, base


def write_random(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


class Swarm:
    """Real nodes and CLI runs in one working directory (``output/`` lives there)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []
        self.tracker_endpoint: str | None = None
        self.peer_ports: dict[str, int] = {}
        (workdir / "logs").mkdir(exist_ok=True)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO)
        env.pop("ZORRENT_OUTPUT", None)
        if self.tracker_endpoint:
            env["ZORRENT_TRACKER"] = self.tracker_endpoint
        return env

    def argv(self, *args: str) -> list[str]:
        return [PY, str(REPO / "main.py"), *args]

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        log = self.workdir / "logs" / f"{name}.log"
        with open(log, "ab") as out:          # the child has its own copy of the fd
            proc = subprocess.Popen([PY, str(REPO / "main.py"), *args], cwd=self.workdir, env=self.env(),
                                    stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((name, proc, log))
        return proc

    def _ready(self, name: str, proc: subprocess.Popen, ready: Path) -> str:
        def check():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")
            return ready.exists() and ready.read_text()

        return wait_for(check, what=f"{name} to be ready")

    def tracker(self, *extra: str) -> str:
        ready = self.workdir / "tracker.ready"
        proc = self.spawn("tracker", "tracker", "--port", "0", "--ready-file", str(ready), *extra)
        self.tracker_endpoint = self._ready("tracker", proc, ready)
        return self.tracker_endpoint

    def peer_start_unregistered(self, peer_id: str, *extra: str) -> int:
        """A running peer, without waiting for the tracker to know it."""
        ready = self.workdir / f"{peer_id}.ready"
        proc = self.spawn(peer_id, "peer", "--peer-id", peer_id, "--port", "0", "--tracker",
                          self.tracker_endpoint, "--ready-file", str(ready), *extra)
        port = int(self._ready(peer_id, proc, ready).rsplit(":", 1)[1])
        self.peer_ports[peer_id] = port
        return port

    def peer(self, peer_id: str, *extra: str) -> int:
        port = self.peer_start_unregistered(peer_id, *extra)
        wait_for(lambda: self.status(peer_id)["registered"], what=f"{peer_id} to register")
        return port

    def cli(self, *args: str, check: bool = True, timeout_s: float = 120) -> subprocess.CompletedProcess:
        res = subprocess.run([PY, str(REPO / "main.py"), *args], cwd=self.workdir, env=self.env(),
                             capture_output=True, text=True, timeout=timeout_s)
        if check and res.returncode != 0:
            raise AssertionError(f"zorrent {' '.join(args)} exited {res.returncode}\n"
                                 f"stdout:\n{res.stdout}\nstderr:\n{res.stderr}")
        return res

    def cli_json(self, *args: str) -> object:
        return json.loads(self.cli("--json", *args).stdout)

    def status(self, peer_id: str) -> dict:
        return self.cli_json("status", "--peer-id", peer_id)

    def job(self, peer_id: str, info_hash: str) -> dict | None:
        return next((j for j in self.status(peer_id)["jobs"] if j["info_hash"] == info_hash), None)

    def seeded(self, seeder: str, others: list[str], name: str, size: int, seed: int) -> tuple[Path, dict]:
        """A tracker, a seeder of a fresh random file, and the other peers: (file, upload info)."""
        self.tracker()
        for peer_id in [seeder, *others]:
            self.peer(peer_id)
        src = write_random(self.workdir / "in" / name, size, seed)
        return src, self.upload(src, seeder)

    def upload(self, path: Path, peer_id: str) -> dict:
        return self.cli_json("upload", "--input", str(path), "--peer-id", peer_id,
                             "--peer-port", str(self.peer_ports[peer_id]))[0]

    def log(self, name: str) -> str:
        for n, _, log in self.procs:
            if n == name:
                return log.read_text(errors="replace")[-6000:]
        return ""

    def stop(self, name: str) -> None:
        for n, proc, _ in self.procs:
            if n == name:
                kill_tree(proc)

    def supervisor_pid(self) -> int | None:
        pidfile = self.workdir / "output" / "run" / "supervisord.pid"
        try:
            return int(pidfile.read_text())
        except (OSError, ValueError):
            return None

    def close(self, failed: bool) -> None:
        pid = self.supervisor_pid()
        if pid:
            self.cli("swarm", "down", check=False, timeout_s=60)
            try:
                proc = psutil.Process(pid)
                for p in proc.children(recursive=True) + [proc]:
                    p.kill()
            except psutil.NoSuchProcess:
                pass
        for name, proc, log in reversed(self.procs):
            kill_tree(proc)
            if failed:
                sys.stderr.write(f"\n----- {name} log -----\n{log.read_text(errors='replace')[-6000:]}\n")
        if failed:
            for log in sorted((self.workdir / "output" / "logs").glob("*.log")):
                sys.stderr.write(f"\n----- {log.name} -----\n{log.read_text(errors='replace')[-4000:]}\n")


