"""Starting node processes from the CLI and waiting until they answer."""
from __future__ import annotations

import collections
import ipaddress
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ctl import client
from ctl.cli import keys_entry, use_keys
from node import config
from protocol.errors import ErrorCode, TransportError, ZorrentError

REPO = Path(__file__).resolve().parents[1]
RESERVED_NAMES = ("tracker", "web")      # supervisord programs beside the peers

if TYPE_CHECKING:
    import psutil          # imported where used: upload and download need none of it


@dataclass(frozen=True)
class PeerSpec:
    peer_id: str
    ip: str
    port: int
    upload_rate: int = 0     # bytes/s, 0 for no limit (optional "upload_rate" in peers.json)
    disk_io: str = config.DISK_IO   # optional "disk_io" in peers.json: "direct" or "buffered"
    bind: str = ""                  # optional "bind" in peers.json (e.g. 0.0.0.0); "ip" is then advertised
    bt_port: int | None = None      # optional "bt_port": BEP 3 port (default config.default_bt_port; -1: none)


@dataclass(frozen=True)
class PeersFile:
    """What peers.json says: its peers, and the private swarm's key folder if it names one."""

    specs: list[PeerSpec]
    keys: str | None = None         # the top-level "keys", relative to the file's folder

    def use_keys(self) -> None:
        """For a command that starts or reaches these peers: their swarm's keys, unless a
        stronger choice was made (--keys, $ZORRENT_KEYS; see ctl.cli.use_keys)."""
        use_keys(self.keys, source="config")


def read_peers(path: str | os.PathLike) -> PeersFile:
    """peers.json: {"peer1": {"ip": "127.0.0.1", "port": 6881}, ...}; ids and ports unique.
    An optional top-level ``"keys": "DIR"`` names a private swarm's keys. Only reads and
    checks: applying the keys is the caller's (``PeersFile.use_keys``)."""
    try:
        raw = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ZorrentError(f"peers config not found: {path}", ErrorCode.BAD_INPUT) from None
    except (OSError, ValueError) as exc:
        raise ZorrentError(f"cannot read peers config {path}: {exc}", ErrorCode.BAD_INPUT) from None
    if not isinstance(raw, dict) or not raw:
        raise ZorrentError(f"{path} must map peer ids to {{\"ip\": ..., \"port\": ...}}", ErrorCode.BAD_INPUT)
    keys = keys_entry(raw, path)
    specs, seen = [], set()
    for peer_id, entry in raw.items():
        if peer_id == config.KEYS_ENTRY:
            continue
        spec = _spec(peer_id, entry, path)
        if (spec.ip, spec.port) in seen:
            raise ZorrentError(f"{path}: {spec.ip}:{spec.port} is listed twice", ErrorCode.BAD_INPUT)
        seen.add((spec.ip, spec.port))
        specs.append(spec)
    return PeersFile(specs, keys)


def load_peers(path: str | os.PathLike) -> list[PeerSpec]:
    """The peers of peers.json (``read_peers(path).specs``)."""
    return read_peers(path).specs


def _spec(peer_id: str, entry: object, path: str | os.PathLike) -> PeerSpec:
    """One entry of peers.json, checked; every error names the file and the peer."""
    config.check_peer_id(peer_id)
    if peer_id in RESERVED_NAMES:
        raise ZorrentError(f"{path}: {peer_id!r} names a supervisord program; choose another peer id",
                           ErrorCode.BAD_INPUT)
    if not isinstance(entry, dict) or not isinstance(entry.get("ip"), str) \
            or not isinstance(entry.get("port"), int) or not 0 < entry["port"] < 65536:
        raise ZorrentError(f"{path}: {peer_id} needs \"ip\" (string) and \"port\" (1-65535)",
                           ErrorCode.BAD_INPUT)
    rate = entry.get("upload_rate", 0)
    if not isinstance(rate, int) or rate < 0:
        raise ZorrentError(f"{path}: {peer_id} \"upload_rate\" must be bytes/s (0: no limit)",
                           ErrorCode.BAD_INPUT)
    disk_io = entry.get("disk_io", config.DISK_IO)
    if disk_io not in config.DISK_IO_MODES:
        raise ZorrentError(f"{path}: {peer_id} \"disk_io\" must be one of {', '.join(config.DISK_IO_MODES)}",
                           ErrorCode.BAD_INPUT)
    bind = entry.get("bind", "")
    if not isinstance(bind, str):
        raise ZorrentError(f"{path}: {peer_id} \"bind\" must be an address string", ErrorCode.BAD_INPUT)
    if entry["ip"] in config.WILDCARD_HOSTS:
        raise ZorrentError(f"{path}: {peer_id} \"ip\" is the address other peers reach it at, not "
                           f"{entry['ip']} (bind every interface with \"bind\": \"0.0.0.0\")", ErrorCode.BAD_INPUT)
    bt_port = entry.get("bt_port")
    if bt_port is not None and (not isinstance(bt_port, int) or isinstance(bt_port, bool)
                                or not config.BT_PORT_OFF <= bt_port < 65536):
        raise ZorrentError(f"{path}: {peer_id} \"bt_port\" must be 1-65535 (0: any free port, "
                           f"{config.BT_PORT_OFF}: no BEP 3 listener)", ErrorCode.BAD_INPUT)
    return PeerSpec(peer_id, entry["ip"], entry["port"], rate, disk_io, bind, bt_port)


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and its descendants (empty if it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        return root.children(recursive=True) + [root]
    except psutil.Error:
        return []


def stop_processes(procs: list[psutil.Process], timeout_s: float = 10.0) -> None:
    """SIGTERM each, wait up to ``timeout_s``, then SIGKILL what is left and reap it."""
    import psutil

    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=timeout_s)


def local_addresses() -> set[str]:
    """Every IP address of this host (of this network namespace)."""
    import psutil

    return {a.address.split("%")[0] for addrs in psutil.net_if_addrs().values() for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)}


def is_local(ip: str, addresses: set[str]) -> bool:
    try:
        ipaddress.ip_address(ip)
        candidates = {ip}
    except ValueError:           # a host name: whatever it resolves to
        try:
            candidates = {info[4][0] for info in socket.getaddrinfo(ip, None)}
        except OSError:
            return False
    return any(ipaddress.ip_address(a).is_loopback or a in addresses for a in candidates)


def split_local(specs: list[PeerSpec], path: str | os.PathLike) -> list[PeerSpec]:
    """The entries of peers.json whose ip is an address of this host; the others are
    named on stderr. None at all is an error: this is the wrong host or the wrong file."""
    from ctl import render

    addresses = local_addresses()
    local = [s for s in specs if is_local(s.ip, addresses)]
    for spec in specs:
        if spec not in local:
            render.err.print(f"skipping {spec.peer_id}: {spec.ip} is not an address of this host", markup=False)
    if not local:
        raise ZorrentError(f"none of the peers in {path} is on this host (its addresses: "
                           f"{', '.join(sorted(addresses)) or 'none'})", ErrorCode.BAD_INPUT)
    return local


def listed_host(peer_id: str, path: str | os.PathLike, host: str | None) -> str:
    """For a command that reaches one peer of peers.json: the address to reach it at, ``host``
    if given, else its ``ip`` in the file (the peer id must be listed there, if the file
    exists), else the default; the file's keys are used for it (``PeersFile.use_keys``)."""
    config.check_peer_id(peer_id)
    if not Path(path).exists():
        return host or config.DEFAULT_PEER_HOST
    peers = read_peers(path)
    peers.use_keys()
    specs = {s.peer_id: s for s in peers.specs}
    if peer_id not in specs:
        raise ZorrentError(f"peer {peer_id!r} is not in {path} (it lists {', '.join(specs)})", ErrorCode.UNKNOWN_PEER)
    return host or specs[peer_id].ip


def node_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "ctl", *args]


def node_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def peer_args(spec: PeerSpec, tracker: str) -> list[str]:
    args = ["peer", "--peer-id", spec.peer_id, "--host", spec.bind or spec.ip, "--port", str(spec.port),
            "--tracker", tracker]
    if spec.bind:
        args += ["--advertise", spec.ip]
    if spec.upload_rate:
        args += ["--upload-rate", str(spec.upload_rate)]
    if spec.disk_io != config.DISK_IO:
        args += ["--disk-io", spec.disk_io]
    if spec.bt_port is not None:
        args += ["--bt-port", str(spec.bt_port)]
    return args


def peer_argv(spec: PeerSpec, tracker: str) -> list[str]:
    return node_argv(*peer_args(spec, tracker))


def log_path(name: str) -> Path:
    return config.logs_dir() / f"{name}.log"


def last_log_line(name: str, tail_bytes: int = 4096) -> str:
    """The last line a node wrote to its log (why it exited, as a rule), or ""."""
    try:
        with open(log_path(name), "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def wait_answering(ping: Callable[[], object], what: str, log_name: str, timeout_s: float,
                   gone: Callable[[], str | None] = lambda: None) -> None:
    """Until ``ping()`` returns (it raises TransportError while nothing answers): the one wait
    for a started node. ``gone()`` says why waiting on is pointless (the process exited,
    supervisord gave up), else None. Either, or the deadline, is one line naming the log."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            ping()
            return
        except TransportError:
            pass
        why = gone()
        if why is not None:
            raise TransportError(f"{what} {why} (see {log_path(log_name)})")
        if time.monotonic() > deadline:
            raise TransportError(f"{what} did not answer within {timeout_s:g}s (see {log_path(log_name)})")
        time.sleep(config.STATUS_POLL_S / 4)     # a refused connection fails at once: no busy loop


def ping_peer(spec: PeerSpec) -> Callable[[], None]:
    return lambda: client.check_peer(spec.peer_id, spec.ip, spec.port, timeout_s=config.PING_PROBE_TIMEOUT_S)


def wait_peer(spec: PeerSpec, proc: subprocess.Popen | None, timeout_s: float = config.READY_TIMEOUT_S) -> None:
    """The peer answers a ping on its data port; fail at once if ``proc`` (its process) exits."""
    def gone() -> str | None:
        if proc is None or proc.poll() is None:
            return None
        why = last_log_line(spec.peer_id)
        return f"exited with code {proc.returncode}" + (f": {why}" if why else "")

    wait_answering(ping_peer(spec), f"peer {spec.peer_id} on {spec.ip}:{spec.port}", spec.peer_id, timeout_s, gone)


class SupervisorGone(TransportError):
    """supervisord's socket stopped answering (ctl.supervisor.call raises it)."""


PEERS_NOT_STARTED_SHOWN = 3     # reasons named in the one error line (300 would make a 30 KB "line")


class PeersNotStarted(TransportError):
    """Some peers did not start, the others did; ``failed`` maps each one's id to why (one line)."""

    def __init__(self, failed: dict[str, str], total: int) -> None:
        self.failed, self.total = failed, total
        shown = list(failed.values())[:PEERS_NOT_STARTED_SHOWN]
        more = len(failed) - len(shown)
        super().__init__(f"{len(failed)} of {total} peers did not start: " + "; ".join(shown)
                         + (f"; and {more} more (see output/logs/)" if more else ""))


def start_paced(specs: list[PeerSpec], start: Callable[[PeerSpec], object],
                wait: Callable[[PeerSpec], None] | None = None, window: int = config.PEER_START_WINDOW) -> None:
    """Start each peer with ``start``, at most ``window`` at a time: the next one starts once
    the oldest still starting answers (``wait``, by default a ping), or fails. Returns once
    all answer; a peer that fails (its port taken, say) does not stop the others, as with
    supervisord's autostart: then PeersNotStarted names each one that failed and why.

    A peer's start-up is CPU-bound (an interpreter importing its modules), so hundreds
    started at once take as long in total as in a row, and everything else on the host
    (the tracker first) waits meanwhile."""
    wait = wait or (lambda spec: wait_peer(spec, None))
    starting: collections.deque[PeerSpec] = collections.deque()
    failed: dict[str, str] = {}

    def attempt(step: Callable[[PeerSpec], object], spec: PeerSpec) -> bool:
        try:
            step(spec)
            return True
        except ZorrentError as exc:
            if isinstance(exc, SupervisorGone):
                raise                   # no use trying the others
            failed[spec.peer_id] = exc.message
            return False

    for spec in specs:
        if len(starting) >= window:
            attempt(wait, starting.popleft())
        if attempt(start, spec):
            starting.append(spec)
    while starting:
        attempt(wait, starting.popleft())
    if failed:
        raise PeersNotStarted(failed, len(specs))


def wait_tracker(endpoint: str, timeout_s: float = config.READY_TIMEOUT_S, log_name: str = "tracker") -> None:
    from protocol import messages as m

    wait_answering(lambda: client.tracker(endpoint, m.Ping(), timeout_s=config.PING_PROBE_TIMEOUT_S, tries=1),
                   f"the tracker on {endpoint}", log_name, timeout_s)


def wait_web(url: str, timeout_s: float = config.READY_TIMEOUT_S) -> None:
    """The web view answers /api/swarm."""
    import urllib.error
    import urllib.request

    def ping() -> None:
        try:
            with urllib.request.urlopen(f"{url}api/swarm?{config.WEB_PROBE_QUERY}", timeout=1) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        raise TransportError("no answer")

    wait_answering(ping, f"the web view on {url}", "web", timeout_s)
