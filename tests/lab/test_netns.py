"""Several hosts on one machine: each node in its own network namespace (ctl/lab.py), with
capped links. Each host has a working directory of its own, as separate machines would,
and runs the README's commands there: start-peer starts only its own peers.json entry.

These need root (CI runs as root). Where namespaces cannot be made they fail and say
why; they never skip.
"""
from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctl import lab as labmod
from tests.procs import PY, REPO, wait_for, write_random

pytestmark = pytest.mark.xdist_group("heavy")   # one worker runs the lab and the soaks in turn: they load
                                                # the cores hard, and a soak must see its downloads finish

MIB = 1024 * 1024
PORT = 6881
PARTITION_S = 3.0


@pytest.fixture
def lab():
    made = labmod.Lab()
    try:
        yield made
    finally:
        names = [h.ns for h in made.hosts.values()]
        made.close()
        left = [ns for ns in labmod.namespaces() if ns in names]
        assert not left, f"the lab left namespaces behind: {left}"


class Machine:
    """One lab host with a working directory of its own (its output/ and peers.json)."""

    def __init__(self, host: labmod.Host, root: Path, tracker: str) -> None:
        self.host, self.dir, self.tracker = host, root / host.name, tracker
        self.dir.mkdir()
        self.procs: list[subprocess.Popen] = []

    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(REPO), "ZORRENT_TRACKER": self.tracker}

    def spawn(self, *args: str) -> subprocess.Popen:
        log = open(self.dir / f"{args[0]}.log", "ab")
        proc = self.host.popen([PY, str(REPO / "main.py"), *args], cwd=self.dir, env=self.env(),
                               stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        res = subprocess.run(self.host.argv(PY, str(REPO / "main.py"), *args), cwd=self.dir, env=self.env(),
                             capture_output=True, text=True, timeout=120)
        if check and res.returncode != 0:
            logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
                             for p in sorted(self.dir.rglob("*.log")))
            raise AssertionError(f"{self.host.name}: zorrent {' '.join(args)} exited {res.returncode}\n"
                                 f"{res.stdout}\n{res.stderr}\n{logs}")
        return res

    def registered(self, peer_id: str) -> bool:
        res = self.cli("--json", "status", "--peer-id", peer_id, check=False)
        return res.returncode == 0 and json.loads(res.stdout)["registered"]


def swarm_on(lab: labmod.Lab, root: Path, caps: dict[str, float]) -> tuple[labmod.Host, dict[str, Machine]]:
    """A tracker host and one peer per entry of ``caps`` (upload Mbit/s), each started by
    ``start-peer --config peers.json`` run on its own host from the same peers.json."""
    tracker = lab.add_host("tracker")
    hosts = {name: lab.add_host(name, mbit) for name, mbit in caps.items()}
    endpoint = f"tcp://{tracker.ip}:6969"
    peers_json = json.dumps({name: {"ip": h.ip, "port": PORT} for name, h in hosts.items()})
    machines = {name: Machine(h, root, endpoint) for name, h in hosts.items()}
    tracker_machine = Machine(tracker, root, endpoint)
    tracker_machine.spawn("tracker", "--host", tracker.ip, "--port", "6969")
    for name, machine in machines.items():
        (machine.dir / "peers.json").write_text(peers_json)
        machine.spawn("start-peer", "--config", "peers.json", "--foreground", "--tracker", endpoint)
    for name, machine in machines.items():
        wait_for(lambda: machine.registered(name), timeout_s=30, what=f"{name} registered")
    return tracker, machines


def download_everywhere(machines: dict[str, Machine], seed: str, torrent: Path, src: Path) -> None:
    """Every machine but the seed downloads ``torrent`` at once, each on its own host, to
    out/NAME; each exits 0 with a byte-identical copy."""
    downloads = {name: subprocess.Popen(m.host.argv(PY, str(REPO / "main.py"), "download", "--torrent", str(torrent),
                                                    "--output", f"out/{src.name}", "--peer-id", name,
                                                    "--peer-port", str(PORT)),
                                        cwd=m.dir, env=m.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True)
                 for name, m in machines.items() if name != seed}
    for proc in downloads.values():
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, out + err
    for name in downloads:
        assert (machines[name].dir / "out" / src.name).read_bytes() == src.read_bytes()


def test_four_hosts_capped_links_download_byte_identical(lab, tmp_path):
    tracker, machines = swarm_on(lab, tmp_path, {"peer1": 40, "peer2": 40, "peer3": 40})
    src = write_random(machines["peer1"].dir / "in" / "movie.bin", 6 * MIB + 77, seed=14)
    info = json.loads(machines["peer1"].cli("--json", "upload", "--input", str(src), "--peer-id", "peer1",
                                            "--peer-port", str(PORT)).stdout)[0]
    torrent = Path(info["torrent"]) if Path(info["torrent"]).is_absolute() else machines["peer1"].dir / info["torrent"]
    download_everywhere(machines, "peer1", torrent, src)
    # start-peer on each host started only its own entry, and said which it skipped
    log = (machines["peer2"].dir / "start-peer.log").read_text()
    assert "skipping peer1" in log and "skipping peer3" in log and "skipping peer2" not in log
    # the tracker hands out each host's own address
    listing = json.loads(machines["peer3"].cli("--json", "get", "--torrent", str(torrent)).stdout)
    assert {p["peer_id"]: p["host"] for p in listing["peers"]} == {n: m.host.ip for n, m in machines.items()}
    assert all(p["have"] == info["num_pieces"] for p in listing["peers"])


def test_a_partitioned_seed_heals_and_the_download_finishes(lab, tmp_path):
    tracker, machines = swarm_on(lab, tmp_path, {"seed": 16, "leech": 16})
    src = write_random(machines["seed"].dir / "in" / "p.bin", 8 * MIB, seed=15)   # about 4.4 s at 16 Mbit/s
    info = json.loads(machines["seed"].cli("--json", "upload", "--input", str(src), "--peer-id", "seed",
                                           "--peer-port", str(PORT)).stdout)[0]
    torrent = machines["seed"].dir / info["torrent"]
    leech = machines["leech"]
    proc = leech.spawn("download", "--torrent", str(torrent), "--output", "out/p.bin", "--peer-id", "leech",
                       "--peer-port", str(PORT))

    def have() -> int:
        res = leech.cli("--json", "status", "--peer-id", "leech", check=False)
        jobs = json.loads(res.stdout)["jobs"] if res.returncode == 0 else []
        return jobs[0]["have"] if jobs else 0

    wait_for(lambda: have() >= info["num_pieces"] // 5, timeout_s=60, what="a fifth of the pieces")
    machines["seed"].host.partition(True)
    time.sleep(PARTITION_S)                      # the fault itself lasts this long (not a synchronisation)
    assert proc.poll() is None and have() < info["num_pieces"], "the download went on without its only seed"
    machines["seed"].host.partition(False)
    assert proc.wait(timeout=90) == 0, (leech.dir / "download.log").read_text()
    assert (leech.dir / "out" / "p.bin").read_bytes() == src.read_bytes()


def test_a_crashed_labs_namespaces_are_swept_at_the_next_start(tmp_path):
    script = ("import sys, time; sys.path.insert(0, %r)\n"
              "from ctl.lab import Lab\n"
              "lab = Lab(); lab.add_host('a', 10); lab.add_host('b')\n"
              "print(' '.join(h.ns for h in lab.hosts.values()), flush=True); time.sleep(600)\n") % str(REPO)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        made = proc.stdout.readline().split()
        assert made and all(ns in labmod.namespaces() for ns in made)
    finally:
        proc.send_signal(signal.SIGKILL)       # the lab itself crashes: nothing of it runs its cleanup
        proc.wait()
    assert all(ns in labmod.namespaces() for ns in made)
    removed = labmod.sweep()
    assert set(made) <= set(removed)
    assert not [ns for ns in labmod.namespaces() if ns in made]
    number, owner = made[0].split("-")[:2]               # zl<N>, its pid
    assert f"{number}b{owner}" in removed                # the bridge went too
    assert not [name for name in labmod.links() if name == f"{number}b{owner}" or name.startswith(f"{number}v")]


LAB_SCRIPT = ("import sys, time; sys.path.insert(0, %r)\n"
              "from ctl.lab import Lab\n"
              "lab = Lab(); h = lab.add_host('a', 10)\n"
              "print(lab.number, lab.bridge, h.ns, h.ip, flush=True); time.sleep(600)\n") % str(REPO)


def test_two_labs_at_once_have_their_own_names_and_addresses(lab):
    """Another live lab (another run, another test) keeps its number, names and /24, and
    neither lab's sweep touches the other."""
    other = subprocess.Popen([sys.executable, "-c", LAB_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        number, bridge, ns, ip = other.stdout.readline().split()
        mine = lab.add_host("a", 10)
        assert int(number) != lab.number and bridge != lab.bridge and ns != mine.ns
        block = lambda address: ipaddress.ip_network(f"{address}/24", strict=False)   # noqa: E731
        assert block(ip) != block(mine.ip) and {block(ip), block(mine.ip)} <= set(labmod.NETWORK.subnets(new_prefix=24))
        assert str(os.getpid()) in lab.bridge and str(other.pid) in bridge
        assert not set(labmod.sweep()) & {bridge, ns, lab.bridge, mine.ns}          # both owners are alive
        assert {ns, mine.ns} <= set(labmod.namespaces()) and {bridge, lab.bridge} <= set(labmod.links())
        seen = subprocess.run(["ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0"],
                              capture_output=True, text=True).stdout
        assert f" {ip}/24 " in seen
    finally:
        other.send_signal(signal.SIGKILL)
        other.wait()
    removed = labmod.sweep()                              # now the other's owner is dead: it goes, mine stays
    assert {ns, bridge} <= set(removed) and mine.ns in labmod.namespaces() and lab.bridge in labmod.links()


def test_the_lab_says_why_when_it_cannot_run(monkeypatch):
    monkeypatch.setattr(labmod.os, "geteuid", lambda: 1000)
    with pytest.raises(labmod.LabError, match="needs root"):
        labmod.Lab()


@pytest.mark.timeout(300)
def test_netns_soak_with_kills_loss_and_partitions_loses_nothing(tmp_path):
    before = set(labmod.namespaces())
    res = subprocess.run([PY, str(REPO / "main.py"), "--json", "soak", "--netns", "--peers", "4", "--files", "2",
                          "--minutes", "0.5", "--kill-every", "9", "--partition-every", "7", "--partition-s", "3",
                          "--loss", "1", "--up-mbit", "40", "--min-size", "2M", "--max-size", "4M",
                          "--workdir", str(tmp_path / "soak")], capture_output=True, text=True, timeout=280, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] and report["downloads_corrupt"] == 0 and report["downloads_unfinished"] == 0
    assert report["downloads_verified"] >= 1 and report["kills"] >= 2 and report["partitions"] >= 3
    assert report["links"]["loss_pct"] == 1.0
    page = (tmp_path / "soak" / "soak-report.html").read_text()     # partitions are on the picture too
    assert page.count('class="mark mark-partition"') == report["partitions"]
    assert "web view: http://127.0.0.1:" in res.stderr
    assert set(labmod.namespaces()) <= before, "the soak's lab was left behind"
