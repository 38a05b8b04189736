"""A lab of hosts on one machine: each host is a Linux network namespace on a bridge, with
its upload capped, random packet loss and partitions, in the manner of Mininet
(``node.py``: a host owns its namespace; ``link.py``: links own their shaping; ``clean.py``:
sweep leftovers by name). The product never knows it runs in a lab: nodes are started
as usual, prefixed with ``ip netns exec``.

- Addresses come from 198.18.0.0/15 (RFC 2544's benchmarking range): lab N uses the N-th
  /24 of it (198.18.N.0/24, then 198.19.(N-256).0/24), the bridge is .1 (so this namespace
  reaches every host), hosts .2 on. Several labs run at once, each with its own block.
- Upload caps: HTB on the host's own side of its veth (its egress), with a bfifo of
  LINK_QUEUE_S of the link's rate behind it. This kernel has no netem, fq_codel or
  codel, so there is no delay qdisc: latency comes from the delay line below.
- Loss: an nftables ``numgen random`` drop rule on the host's egress, so every packet
  crossing a link meets it exactly once. Segmentation offloads are off on each host's eth0,
  so a dropped packet is one wire packet, not a 64 KiB GSO burst. With latency, on the way in, after the
  cap and the loss, GRO merges a flow's packets (``_offloads``), so the receiving stack and
  its delay line handle one aggregate, not every frame.
- Latency: a delay line (ctl/delay.py, NFQUEUE) holds every packet entering a host for
  its one-way delay, plus optional jitter: ``Lab(rtt_ms=N)`` gives each host N/2, so any
  two hosts see an RTT of N.
- Partitions: the bridge side of the host's veth goes down, then up.
- Lab numbers are handed out under a machine-wide lock (LOCK_PATH): a number is free when
  no bridge and no namespace carries it. The bridge carries the owner's pid (``zl3b4711``),
  and so do the namespaces (``zl3-4711-seed``): ``sweep()`` removes every namespace and link
  whose owner is dead, and nothing of a live lab, with no state from the run that made them.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import select
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from ctl.nodes import stop_processes
from protocol.errors import ErrorCode, ZorrentError

PREFIX = "zl"
NETWORK = ipaddress.ip_network("198.18.0.0/15")
MAX_LABS = NETWORK.num_addresses // 256    # 512 labs: 198.18.0.0/24 .. 198.19.255.0/24
LINK_QUEUE_S = 0.05             # a capped link queues at most this long before it drops
MIN_QUEUE_BYTES = 64 * 1024
DELAY_READY_S = 10.0            # a delay line binds its queue and adds its rule within this
NS_RE = re.compile(rf"^{PREFIX}(\d+)-(\d+)-(.+)$")
BRIDGE_RE = re.compile(rf"^{PREFIX}(\d+)b(\d+)$")      # zl<lab>b<owner pid>: at most 13 of IFNAMSIZ's 15
VETH_RE = re.compile(rf"^{PREFIX}(\d+)v\d+$")
LEGACY_BRIDGE_RE = re.compile(rf"^{PREFIX}(\d+)br$")   # an older lab's bridge, owner unknown: its number is
                                                       # taken, and it is left alone
RECEIVE_GRO = os.environ.get("ZORRENT_LAB_GRO", "1") != "0"   # _offloads(): aggregates on the way in
LOCK_PATH = Path(os.environ.get("ZORRENT_LAB_LOCK", "/run/zorrent-lab.lock"))   # namespaces are machine-wide


@contextlib.contextmanager
def _allocation_lock():
    """One lab at a time sweeps and takes a number, so no sweep sees a half-made lab."""
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class LabError(ZorrentError):
    code = ErrorCode.BAD_INPUT


def _run(*argv: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=30)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} is not installed (the lab needs iproute2 and nftables)") from None
    if check and res.returncode != 0:
        raise LabError(f"`{' '.join(argv)}` failed: {(res.stderr or res.stdout).strip()[:300]}")
    return res


def check_privileges() -> None:
    """Fail with one line (not a skip) where namespaces cannot be made."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (CAP_NET_ADMIN) to create network namespaces")
    for tool in ("ip", "tc", "nft"):
        _run(tool, "-V" if tool != "nft" else "--version")


@dataclass
class Host:
    lab: "Lab"
    name: str
    index: int
    ns: str
    ip: str
    veth: str                     # the bridge side, in the lab's namespace
    up_mbit: float | None = None
    loss_pct: float = 0.0
    delay_ms: float = 0.0         # one-way, on every packet that enters the host
    jitter_ms: float = 0.0
    partitioned: bool = False
    delay_line: subprocess.Popen | None = None

    def argv(self, *cmd: str) -> list[str]:
        """``cmd`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *cmd]

    def popen(self, cmd: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(*cmd), **kw)

    def shape(self, up_mbit: float | None) -> None:
        """Cap this host's upload (None: uncapped)."""
        _run("tc", "-n", self.ns, "qdisc", "del", "dev", "eth0", "root", check=False)
        self.up_mbit = up_mbit
        if not up_mbit:
            return
        rate_bps = up_mbit * 1e6 / 8
        burst = max(16 * 1024, int(rate_bps / 250))          # 4 ms of the rate
        queue = max(MIN_QUEUE_BYTES, int(rate_bps * LINK_QUEUE_S))
        _run("tc", "-n", self.ns, "qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1")
        _run("tc", "-n", self.ns, "class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb",
             "rate", f"{up_mbit}mbit", "ceil", f"{up_mbit}mbit", "burst", str(burst), "cburst", str(burst))
        _run("tc", "-n", self.ns, "qdisc", "add", "dev", "eth0", "parent", "1:1", "handle", "10:", "bfifo",
             "limit", str(queue))

    def set_loss(self, pct: float) -> None:
        """Drop ``pct`` percent of the packets this host sends (nftables numgen)."""
        _run("ip", "netns", "exec", self.ns, "nft", "delete", "table", "inet", "zlab", check=False)
        self.loss_pct = pct
        if pct <= 0:
            return
        per_10k = round(pct * 100)
        _run("ip", "netns", "exec", self.ns, "nft", "-f", "-", input=(
            "table inet zlab {\n chain egress {\n  type filter hook output priority 0; policy accept;\n"
            f'  oifname "eth0" numgen random mod 10000 < {per_10k} counter drop\n }}\n}}\n'))

    def set_delay(self, delay_ms: float, jitter_ms: float = 0.0) -> None:
        """Hold every packet that enters this host for ``delay_ms`` (0: no delay line)."""
        if self.delay_line:
            self.delay_line.terminate()
            self.delay_line.wait(5)
            self.delay_line = None
        self.delay_ms, self.jitter_ms = delay_ms, jitter_ms
        if delay_ms <= 0:
            return
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        proc = self.popen([sys.executable, "-m", "ctl.delay", "--delay-ms", str(delay_ms), "--jitter-ms",
                           str(jitter_ms)], cwd=repo, env={**os.environ, "PYTHONPATH": repo},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], DELAY_READY_S)
        if not ready or proc.stdout.readline().strip() != "ready":
            proc.kill()
            err = [line for line in proc.communicate(timeout=5)[1].splitlines() if line.strip()]
            raise LabError(f"the delay line on {self.name} did not start: {err[-1].strip() if err else 'no output'}")
        self.delay_line = proc

    def delay_cpu_s(self) -> float:
        """CPU seconds the delay line has used so far."""
        try:
            times = psutil.Process(self.delay_line.pid).cpu_times() if self.delay_line else None
        except psutil.Error:
            return 0.0
        return times.user + times.system if times else 0.0

    def partition(self, down: bool) -> None:
        """Cut this host off the bridge (its link goes down), or bring it back."""
        _run("ip", "link", "set", "dev", self.veth, "down" if down else "up")
        self.partitioned = down

    def kill_all(self, timeout_s: float = 5.0, keep_delay_line: bool = False) -> None:
        """SIGTERM every process in the namespace, then SIGKILL what is left."""
        spare = {self.delay_line.pid} if keep_delay_line and self.delay_line else set()
        _kill_ns_pids(self.ns, timeout_s, spare)


@dataclass
class Lab:
    """A bridge and its hosts. ``with Lab() as lab:`` removes everything on the way out."""

    number: int = -1
    bridge: str = ""
    hosts: dict = field(default_factory=dict)
    rtt_ms: float = 0.0           # between any two hosts: each gets rtt_ms / 2 one way
    jitter_ms: float = 0.0        # per host and direction

    def __post_init__(self) -> None:
        check_privileges()
        with _allocation_lock():
            sweep()
            taken = {lab for lab, _ in _labs_in_use()}
            # the upper half first: labs made by older code took numbers from 0 without this lock
            free = next((n for n in [*range(MAX_LABS // 2, MAX_LABS), *range(MAX_LABS // 2)] if n not in taken), None)
            if free is None:
                raise LabError(f"no free lab number: {MAX_LABS} labs already exist (see `ip link`)")
            bridge = f"{PREFIX}{free}b{os.getpid()}"
            _run("ip", "link", "add", bridge, "type", "bridge")
            self.number, self.bridge = free, bridge
        _run("ip", "addr", "add", f"{self.address(1)}/24", "dev", self.bridge)
        _run("ip", "link", "set", "dev", self.bridge, "up")

    def address(self, index: int) -> str:
        return str(NETWORK.network_address + self.number * 256 + index)

    @property
    def gateway(self) -> str:
        """This (the root) namespace's address on the bridge."""
        return self.address(1)

    def add_host(self, name: str, up_mbit: float | None = None, loss_pct: float = 0.0,
                 delay_ms: float | None = None) -> Host:
        """A host on the bridge; ``delay_ms`` (one-way) defaults to the lab's rtt_ms / 2."""
        index = len(self.hosts) + 2
        if index > 254:
            raise LabError("a lab holds at most 253 hosts")
        ns = f"{PREFIX}{self.number}-{os.getpid()}-{name}"
        veth = f"{PREFIX}{self.number}v{index}"
        host = Host(self, name, index, ns, self.address(index), veth)
        self.hosts[name] = host
        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _run("ip", "link", "set", "dev", veth, "master", self.bridge, "up")
        _run("ip", "-n", ns, "addr", "add", f"{host.ip}/24", "dev", "eth0")
        _run("ip", "-n", ns, "link", "set", "dev", "eth0", "up")
        _run("ip", "-n", ns, "link", "set", "dev", "lo", "up")
        one_way = self.rtt_ms / 2 if delay_ms is None else delay_ms
        _offloads(ns, veth, gro=RECEIVE_GRO and (self.rtt_ms > 0 or one_way > 0))
        host.shape(up_mbit)
        host.set_loss(loss_pct)
        host.set_delay(one_way, min(self.jitter_ms, one_way))
        return host

    def dead_delay_lines(self) -> list[str]:
        """One line for each host whose delay line has died: its rule has no bypass, so that
        host has received nothing since (a run that stalls says why here)."""
        dead = []
        for host in self.hosts.values():
            proc = host.delay_line
            if proc is not None and proc.poll() is not None:
                err = [line for line in proc.stderr.read().splitlines() if line.strip()] if proc.stderr else []
                dead.append(f"the delay line on {host.name} died (exit {proc.returncode}): "
                            f"{err[-1].strip() if err else 'no output'}")
        return dead

    def close(self) -> None:
        for line in self.dead_delay_lines():
            print(f"lab: {line}", file=sys.stderr)
        for host in self.hosts.values():      # the nodes first: their last words still cross the delay lines
            host.kill_all(keep_delay_line=True)
        for host in self.hosts.values():
            host.kill_all()
            _run("ip", "netns", "del", host.ns, check=False)
        self.hosts.clear()
        if self.bridge:
            _run("ip", "link", "del", self.bridge, check=False)
            self.bridge = ""

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _offloads(ns: str, veth: str, gro: bool) -> None:
    """A host sends wire packets (TSO and GSO off on its eth0, so HTB and the loss rule count
    1514-byte frames) and receives aggregates (GRO on the path in, with GSO on the bridge side so
    the bridge forwards them whole): the delay line then holds one packet per aggregate, not one
    per frame. Only in a lab with delay lines: without them every offload stays off, as before,
    so the RTT 0 figures compare with earlier ones (``--quick``, one pair: 1.074 / 1.082 / 1.111x
    with GRO against 1.066 / 1.075 / 1.098x without). ZORRENT_LAB_GRO=0 turns it off everywhere."""
    inside = ("ip", "netns", "exec", ns)
    if not gro:
        for dev, where in ((veth, ()), ("eth0", inside)):
            _run(*where, "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", check=False)
        return
    _run(*inside, "ethtool", "-K", "eth0", "tso", "off", "gso", "off", "gro", "on", check=False)
    _run("ethtool", "-K", veth, "tso", "on", "gso", "on", "gro", "on", check=False)


def _kill_ns_pids(ns: str, timeout_s: float, spare: set[int] = frozenset()) -> None:
    procs = []
    for pid in _run("ip", "netns", "pids", ns, check=False).stdout.split():
        if int(pid) in spare:
            continue
        try:
            procs.append(psutil.Process(int(pid)))
        except psutil.Error:
            pass
    stop_processes(procs, timeout_s)


def namespaces() -> list[str]:
    return [line.split()[0] for line in _run("ip", "netns", "list", check=False).stdout.splitlines() if line.strip()]


def links() -> list[str]:
    """The names of this namespace's network interfaces."""
    out = []
    for line in _run("ip", "-o", "link", "show", check=False).stdout.splitlines():
        if ":" in line:
            out.append(line.split(":")[1].strip().split("@")[0])
    return out


def _alive(pid: int) -> bool:
    return pid > 0 and psutil.pid_exists(pid)


def _labs_in_use() -> set[tuple[int, int]]:
    """(lab number, owner pid) of every bridge and namespace of a lab."""
    found = set()
    for name in namespaces() + links():
        match = NS_RE.match(name) or BRIDGE_RE.match(name)
        if match:
            found.add((int(match.group(1)), int(match.group(2))))
        elif legacy := LEGACY_BRIDGE_RE.match(name):
            found.add((int(legacy.group(1)), -1))
    return found


def sweep() -> list[str]:
    """Remove what dead labs left: namespaces and bridges whose owner pid is gone, and veths
    of labs with no live owner. A live lab (another run, another test) is never touched."""
    live = {lab for lab, owner in _labs_in_use() if _alive(owner) or owner == -1}
    removed = []
    for ns in namespaces():
        match = NS_RE.match(ns)
        if match and not _alive(int(match.group(2))):
            _kill_ns_pids(ns, 2.0)
            _run("ip", "netns", "del", ns, check=False)
            removed.append(ns)
    for name in links():
        bridge, veth = BRIDGE_RE.match(name), VETH_RE.match(name)
        if (bridge and not _alive(int(bridge.group(2)))) or (veth and int(veth.group(1)) not in live):
            _run("ip", "link", "del", name, check=False)
            removed.append(name)
    return removed
