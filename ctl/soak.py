"""The soak swarm: a tracker (or several on one MongoDB store) and N peers under
supervisord, random downloads, and a random node SIGKILLed every K seconds (trackers
included). Every finished download
is checked by sha256 against its input. The run fails if any file is wrong, or if any
download never finishes.

It runs in its own work directory, with its own output/ and supervisor_conf/, so it
never touches the swarm of the directory it is started from.

With ``Links`` (``soak --netns``) every node is a host of its own in a lab of network
namespaces (ctl/lab.py): upload caps, latency, random loss, and partitions (a host's link goes
down for a while, then comes back) on top of the kills. The lab is removed on the way
out, and a crashed soak's lab is swept at the next start.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from ctl import client, nodes, supervisor
from ctl.ports import distinct_free_ports, free_ports
from ctl.commands.inputs import write_random_file
from ctl.soak_report import Timeline, write_html
from node import config
from node.web.poller import append_event
from protocol import messages as m
from protocol import making, metainfo
from protocol.errors import ZorrentError

POLL_S = 1.0
LAB_PEER_PORT = 6881


@dataclass
class Links:
    """The lab's links (``soak --netns``)."""

    up_mbit: float = 32.0
    seed_up_mbit: float = 32.0
    loss_pct: float = 0.0
    partition_every_s: float = 0.0
    partition_s: float = 10.0
    rtt_ms: float = 0.0             # between any two hosts (a delay line on each, ctl/delay.py)
    jitter_ms: float = 0.0
DRAIN_S = 180.0             # after the last minute, unfinished downloads get this long


@dataclass
class Job:
    peer_id: str
    name: str
    info_hash: str
    output: Path
    started: float
    last_have: int = 0
    last_bytes: int = 0
    done: bool = False
    recycled: bool = False      # verified, then removed so the pair can be downloaded again
    verified: bool | None = None


@dataclass
class Report:
    peers: int
    files: int
    minutes: float
    kill_every_s: float
    upload_rate: int = 0
    trackers: int = 1
    downloads_started: int = 0
    downloads_completed: int = 0
    downloads_verified: int = 0
    downloads_corrupt: int = 0
    downloads_unfinished: int = 0
    downloads_recycled: int = 0
    kills: int = 0
    partitions: int = 0
    partitions_by_host: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)        # the lab's caps and loss (soak --netns)
    restarts_seen: int = 0
    pieces_redownloaded_after_restart: int = 0
    pieces_verified_before_kills: int = 0
    kills_by_node: dict = field(default_factory=dict)
    unfinished: list = field(default_factory=list)   # [peer, file, last verified count]
    rss_mib: dict = field(default_factory=dict)      # program -> [start, end]

    @property
    def ok(self) -> bool:
        return self.downloads_corrupt == 0 and self.downloads_unfinished == 0


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def _pids() -> dict[str, int]:
    """Every program's current pid, STARTING ones included: a restarted peer answers
    status before supervisord calls it RUNNING, and its restart must be seen first."""
    return {p["name"]: p["pid"] for p in supervisor.process_info() if p["pid"]}


def _rss_mib(pid: int) -> float:
    try:
        return round(psutil.Process(pid).memory_info().rss / 1048576, 1)
    except psutil.Error:
        return 0.0


class Soak:
    def __init__(self, workdir: Path, peers: int, files: int, minutes: float, kill_every_s: float,
                 min_size: int, max_size: int, seed: int, upload_rate: int = 0, say=print,
                 links: Links | None = None, trackers: int = 1, store_uri: str | None = None) -> None:
        self.workdir = workdir
        self.rng = random.Random(seed)
        self.faults = random.Random(seed * 7919 + 1)   # who is killed or cut off: the seed alone decides,
                                                       # not how the downloads went (a run can be replayed)
        self.say = say
        self.minutes, self.kill_every_s = minutes, kill_every_s
        self.min_size, self.max_size = min_size, max_size
        self.report = Report(peers=peers, files=files, minutes=minutes, kill_every_s=kill_every_s,
                             upload_rate=upload_rate, trackers=trackers)
        ports = free_ports(trackers, twin_offset=config.HTTP_PORT_OFFSET)
        self.tracker = supervisor.TrackerSpec("127.0.0.1", ports, store_uri, trackers)
        self.peer_ids = [f"soak{i:02d}" for i in range(1, peers + 1)]
        self.nfiles = files
        self.upload_rate = upload_rate
        self.jobs: list[Job] = []
        self.inputs: dict[str, tuple[Path, str, metainfo.Metainfo]] = {}   # name -> (path, sha256, meta)
        self.pids: dict[str, int] = {}
        self.seeded: set[tuple[str, str]] = set()                               # (peer, file)
        self.timeline = Timeline()
        self.seeders = self.peer_ids[: max(2, len(self.peer_ids) // 5)]
        self.links, self.lab = links, None
        self.cut: dict[str, float] = {}          # partitioned host -> when it comes back
        if links:
            self.report.links = asdict(links)

    # ------------------------------------------------------------------ setup
    def up(self) -> None:
        os.environ["ZORRENT_OUTPUT"] = str(self.workdir / "output")
        os.environ["ZORRENT_SUPERVISOR_CONF"] = str(self.workdir / "supervisor_conf")
        launcher = None
        if self.links:
            from ctl.lab import Lab

            self.lab = Lab(rtt_ms=self.links.rtt_ms, jitter_ms=self.links.jitter_ms)
            loss = self.links.loss_pct
            tracker_host = self.lab.add_host("tracker", None, loss)
            tracker = supervisor.TrackerSpec(tracker_host.ip, config.DEFAULT_TRACKER_PORT, self.tracker.store_uri,
                                             self.tracker.count)
            self.specs = []
            for p in self.peer_ids:
                cap = self.links.seed_up_mbit if p in self.seeders else self.links.up_mbit
                self.specs.append(nodes.PeerSpec(p, self.lab.add_host(p, cap, loss).ip, LAB_PEER_PORT, self.upload_rate))
            # every tracker program runs on the lab's tracker host
            launcher = lambda name: self.lab.hosts["tracker" if name in tracker.names else name].argv()   # noqa: E731
            self.say(f"lab: {len(self.lab.hosts)} hosts on {self.lab.bridge} ({self.lab.address(0)}/24)")
            web_port = free_ports()
        else:
            tracker = self.tracker
            base = tracker.port                  # the trackers' ports and their HTTP doors' are taken
            door = base + config.HTTP_PORT_OFFSET
            *ports, web_port = distinct_free_ports(len(self.peer_ids) + 1,
                                                   {*range(base, base + 2 * tracker.count),
                                                    *range(door, door + 2 * tracker.count)})
            self.specs = [nodes.PeerSpec(p, "127.0.0.1", port, self.upload_rate) for p, port in zip(self.peer_ids, ports)]
        self.tracker = tracker
        os.environ["ZORRENT_TRACKER"] = ",".join(tracker.endpoints)
        web = supervisor.WebSpec("127.0.0.1", web_port)    # in this namespace: the lab's bridge reaches all
        conf = supervisor.write(supervisor.render(self.specs, tracker, tracker_autostart=False, launcher=launcher,
                                                  web=web))
        supervisor.start_or_update(conf)
        supervisor.start_trackers(tracker)
        supervisor.start_peers(self.specs)
        nodes.wait_web(web.url)
        self.pids = _pids()
        self.say(f"up: tracker {', '.join(tracker.endpoints)} and {len(self.specs)} peers under supervisord ({conf})")
        self.say(f"web view: {web.url}")

    def seed(self) -> None:
        inputs = self.workdir / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        seeders = self.seeders
        for i in range(1, self.nfiles + 1):
            path = inputs / f"soak_{i:03d}.bin"
            write_random_file(path, self.rng.randint(self.min_size, self.max_size), self.rng)
            trackers = config.tracker_endpoints()
            meta = making.create(path, trackers[0], None, making.announce_list(*trackers))
            self.inputs[path.name] = (path, sha256_of(path), meta)
            for peer_id in {seeders[i % len(seeders)], seeders[(i + 1) % len(seeders)]}:
                self.seeded.add((peer_id, path.name))
                client.seed(peer_id, str(path), meta, timeout_s=config.SEED_TIMEOUT_S)
        self.say(f"seeded {self.nfiles} files from {len(seeders)} seeders")
        self.report.rss_mib = {name: [_rss_mib(pid), 0.0] for name, pid in self.pids.items()}

    # ------------------------------------------------------------------ the loop
    def start_download(self) -> None:
        busy = {(j.peer_id, j.name) for j in self.jobs if not j.recycled} | self.seeded
        choices = [(p, n) for p in self.peer_ids for n in self.inputs if (p, n) not in busy]
        if not choices:
            self.recycle()
            return
        peer_id, name = self.rng.choice(choices)
        path, _, meta = self.inputs[name]
        out = self.workdir / "downloads" / peer_id / name
        try:
            client.peer_control(peer_id, m.Download(metainfo=meta.raw, output=str(out)), timeout_s=5, tries=2)
        except ZorrentError as exc:          # that peer is restarting: try another next time
            self.say(f"  could not start {name} on {peer_id}: {exc.message}")
            return
        self.jobs.append(Job(peer_id, name, meta.info_hash, out, time.monotonic()))
        self.report.downloads_started += 1

    def recycle(self) -> None:
        """Every pair has been downloaded: remove a verified one (file deleted) to go again."""
        done = [j for j in self.jobs if j.done and j.verified and not j.recycled]
        if not done:
            return
        job = self.rng.choice(done)
        try:
            client.peer_control(job.peer_id, m.Remove(info_hash=job.info_hash, delete_data=True),
                                timeout_s=2, tries=2)
        except ZorrentError:
            return
        job.recycled = True
        self.report.downloads_recycled += 1

    def poll(self) -> None:
        pids = _pids()
        for name, pid in pids.items():
            if name in self.pids and self.pids[name] != pid:
                self.report.restarts_seen += 1
                self._mark("restart", name, f"supervisord restarted {name} (pid {pid})")
        restarted = {n for n, pid in pids.items() if self.pids.get(n) not in (None, pid)}
        self.pids.update(pids)
        for job in self.jobs:
            if job.done:
                continue
            try:
                status = client.peer_control(job.peer_id, m.Status(info_hash=job.info_hash),
                                             timeout_s=1, tries=1).jobs[0]
            except ZorrentError:
                continue
            if job.peer_id in restarted:
                lost = max(0, job.last_have - status.resumed)
                self.report.pieces_redownloaded_after_restart += lost
                self.report.pieces_verified_before_kills += job.last_have
                self.say(f"  {job.peer_id} restarted mid-download: {job.name} had {job.last_have} verified "
                         f"pieces at the last poll, {status.resumed} found on restart ({status.state})")
            job.last_have, job.last_bytes = status.have, status.bytes_done
            if status.state == m.JobState.SEEDING.value:
                job.done = True
                self.report.downloads_completed += 1
                job.verified = sha256_of(job.output) == self.inputs[job.name][1]
                if job.verified:
                    self.report.downloads_verified += 1
                else:
                    self.report.downloads_corrupt += 1
                    self.say(f"  CORRUPT: {job.output}")
        self.timeline.sample(sum(j.last_bytes for j in self.jobs))

    def _mark(self, kind: str, node: str, text: str) -> None:
        """On the report's picture, and in the web view's events."""
        self.timeline.mark(kind, node)
        try:
            append_event(kind, node, text)
        except OSError:
            pass

    def kill_one(self) -> None:
        victims = [n for n in [*self.tracker.names, *self.peer_ids] if n in self.pids]
        name = self.faults.choice(victims)
        try:
            os.kill(self.pids[name], signal.SIGKILL)
        except ProcessLookupError:
            return
        self.report.kills += 1
        self.report.kills_by_node[name] = self.report.kills_by_node.get(name, 0) + 1
        self._mark("kill", name, f"soak SIGKILLed {name} (pid {self.pids[name]})")
        self.say(f"  kill -9 {name} (pid {self.pids[name]})")

    def heal(self, now: float) -> None:
        for name, until in list(self.cut.items()):
            if now >= until:
                self.lab.hosts[name].partition(False)
                del self.cut[name]
                self.say(f"  {name} is back on the network")
                self._mark("heal", name, f"{name} is back on the network")

    def partitions(self, now: float) -> None:
        """Heal the partitions that are due; cut a random host off when it is time."""
        self.heal(now)
        if now >= self.next_partition:
            self.next_partition = now + self.links.partition_every_s
            name = self.faults.choice([n for n in self.lab.hosts if n not in self.cut])
            self.lab.hosts[name].partition(True)
            self.cut[name] = now + self.links.partition_s
            self.report.partitions += 1
            self.report.partitions_by_host[name] = self.report.partitions_by_host.get(name, 0) + 1
            self.say(f"  partition: {name} is cut off for {self.links.partition_s:g} s")
            self._mark("partition", name, f"{name} is cut off for {self.links.partition_s:g} s")

    def run(self) -> Report:
        end = time.monotonic() + self.minutes * 60
        next_kill = time.monotonic() + self.kill_every_s if self.kill_every_s else float("inf")
        every = self.links.partition_every_s if self.links else 0
        self.next_partition = time.monotonic() + every if every else float("inf")
        concurrency = max(2, len(self.peer_ids) // 4)
        last_line = 0.0
        while time.monotonic() < end:
            if sum(not j.done for j in self.jobs) < concurrency:
                self.start_download()
            self.poll()
            if time.monotonic() >= next_kill:
                self.kill_one()
                next_kill += self.kill_every_s
            if self.lab:
                self.partitions(time.monotonic())
            if time.monotonic() - last_line > 30:
                last_line = time.monotonic()
                r = self.report
                self.say(f"  {r.downloads_started} started, {r.downloads_completed} done, "
                         f"{r.downloads_corrupt} corrupt, {r.kills} kills, {r.partitions} partitions, "
                         f"{r.restarts_seen} restarts")
            time.sleep(POLL_S)
        if self.lab:
            self.heal(float("inf"))                      # every host back before the drain
        drain_end = time.monotonic() + DRAIN_S
        while any(not j.done for j in self.jobs) and time.monotonic() < drain_end:
            self.poll()
            time.sleep(POLL_S)
        self.report.unfinished = [[j.peer_id, j.name, j.last_have] for j in self.jobs if not j.done]
        self.report.downloads_unfinished = len(self.report.unfinished)
        for name, pid in _pids().items():
            self.report.rss_mib.setdefault(name, [0.0, 0.0])[1] = _rss_mib(pid)
        return self.report

    def down(self) -> None:
        try:
            supervisor.shutdown()
        except ZorrentError as exc:
            self.say(f"  swarm down: {exc.message}")
        finally:
            if self.lab:
                self.lab.close()
        (self.workdir / "soak-report.json").write_text(json.dumps(asdict(self.report), indent=2))
        page = write_html(self.workdir / "soak-report.html", asdict(self.report), self.timeline,
                          f"zorrent soak: {self.report.peers} peers, {self.report.files} files, {self.report.minutes:g} min")
        self.say(f"report: {self.workdir / 'soak-report.json'} and {page}")
