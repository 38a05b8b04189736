"""The README's shell examples, read from README.md and run as written, with only these
changes, each named here:

- every port number in a command (and in the repo's peers.json) moves by one offset, so
  tests run side by side and beside a real swarm; the defaults the commands rely on move
  with it ($ZORRENT_TRACKER for the default tracker, ``--web-port`` for swarm up's web view);
- what README says to replace is replaced: ``db:27017`` by a real MongoDB-protocol server
  (SecantusDB), ``INFOHASH`` by the hash ``create`` printed;
- the simple example makes 3 small input files instead of 10 of up to 16 MiB;
- a command that runs until stopped (``tracker``) is started in the background and waited
  for; ``tail -f`` is run without ``-f``.

Every bash block of the README is either run here or named in NOT_RUN with the reason.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PY, REPO, wait_for

README = REPO / "README.md"
PORT_RE = re.compile(r"(?<![\d.])(6[89]\d\d|79\d\d|8080)(?![\d.])")   # 6800-6999, 7900-7999, 8080
NOT_RUN = {    # heading of a block -> why it is not run here
    "Set-up: the two commands": "the set-up itself (make test runs this suite)",
    "Standard BitTorrent clients: the HTTP tracker": "needs a standard client seeding beside aria2c "
                                                     "(test_http_tracker.py drives aria2 and libtorrent)",
    "Soak swarm": "30 minutes (test_soak.py and test_trackers.py run short soaks)",
    "Web view: the swarm live in a browser": "a synopsis with [optional] parts, not a command (test_web.py)",
    "A lab of hosts on one machine": "5 minutes in a lab (tests/lab runs short ones)",
    "Benchmarks": "benchmarks: minutes each, figures in bench/RESULTS.md",
}
SHRINK = {"--num_files 10": "--num_files 3 --min-size 256K --max-size 1M"}


def blocks() -> list[tuple[str, list[str]]]:
    """Every ```bash block of the README: (the heading above it, its commands), a command's
    backslash-continued lines joined."""
    out, heading, inside = [], "", None
    for line in README.read_text().splitlines():
        if inside is not None:
            if line.startswith("```"):
                out.append((heading, _commands(inside)))
                inside = None
            else:
                inside.append(line)
        elif line.startswith("```bash"):
            inside = []
        elif line.startswith("#"):
            heading = line.lstrip("# ").strip()
    return out


def _commands(lines: list[str]) -> list[str]:
    joined = "\n".join(lines).replace("\\\n", " ")
    cmds = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            cmds.append(shlex.join(words))
    return cmds


def block(heading: str, first: str | None = None) -> list[str]:
    found = [cmds for h, cmds in blocks() if h == heading and (first is None or cmds[0].startswith(first))]
    assert found, f"README has no bash block under {heading!r}"
    return found[0]


def _free_offset() -> int:
    """A port offset under which every README port, and its HTTP door (+1000), is free, all of
    them below the kernel's ephemeral range: a port found free inside that range stays free only
    until some outgoing connection draws it (a CI run lost swarm up's web port that way)."""
    import random

    from ctl.ports import LOWEST, ephemeral_range

    ports = sorted({int(p) for _, cmds in blocks() for c in cmds for p in PORT_RE.findall(c)} | {6881, 6882, 6883, 8080})
    wanted = ports + [p + 1000 for p in ports]
    low, _ = ephemeral_range()
    bottom, top = LOWEST - min(wanted), low - max(wanted) - 1
    assert top > bottom, f"no room below the ephemeral range ({low}) for the README's ports"
    rng = random.Random()
    for _ in range(200):
        offset = rng.randrange(bottom, top)
        socks = []
        try:
            for port in wanted:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port + offset))
            return offset
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no free block of ports")


class Runner:
    """Runs README commands in the swarm's work directory, with the changes named above."""

    def __init__(self, swarm, replace: dict[str, str] | None = None) -> None:
        self.swarm, self.workdir = swarm, swarm.workdir
        self.offset = _free_offset()
        self.replace = {**SHRINK, **(replace or {})}
        self.env = {**swarm.env(), "PATH": f"{Path(PY).parent}:{os.environ.get('PATH', '')}",
                    "ZORRENT_TRACKER": f"tcp://127.0.0.1:{6969 + self.offset}"}
        peers = (REPO / "peers.json").read_text()
        (self.workdir / "peers.json").write_text(self.shift(peers))

    def shift(self, text: str) -> str:
        return PORT_RE.sub(lambda m_: str(int(m_.group(1)) + self.offset), text)

    def argv(self, command: str) -> list[str]:
        for old, new in self.replace.items():
            command = command.replace(old, new)
        if "INFOHASH" in command:
            from protocol import metainfo
            torrent = self.workdir / "output" / "torrents" / "input_files.torrent"
            command = command.replace("INFOHASH", metainfo.read(torrent).info_hash)
        words = shlex.split(self.shift(command))
        if words[:2] == ["python", "main.py"]:
            words = [PY, str(REPO / "main.py"), *words[2:]]
        elif words[0] == "python":
            words = [PY, *words[1:]]
        if words[2:4] == ["swarm", "up"]:
            words += ["--web-port", str(8080 + self.offset)]
        if words[:1] == ["supervisorctl"] and "-f" in words:
            words.remove("-f")
        return words

    def run(self, command: str) -> subprocess.CompletedProcess | None:
        if command.startswith("export "):
            name, _, value = command.removeprefix("export ").partition("=")
            self.env[name] = self.shift(value)
            return None
        argv = self.argv(command)
        if argv[2:3] == ["tracker"]:                     # runs until stopped
            port = int(argv[argv.index("--port") + 1])
            name = f"tracker-{port}"
            log = self.workdir / "logs" / f"{name}.log"
            with open(log, "ab") as out:                 # the child has its own copy of the fd
                proc = subprocess.Popen(argv, cwd=self.workdir, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            self.swarm.procs.append((name, proc, log))
            from tests.integration.test_readme_flow import tracker_up

            def up():
                assert proc.poll() is None, f"`{command}` exited {proc.returncode}:\n{log.read_text()}"
                return tracker_up(f"tcp://127.0.0.1:{port}")

            wait_for(up, what=f"`{command}` to answer")
            return None
        res = subprocess.run(argv, cwd=self.workdir, env=self.env, capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, f"`{command}` exited {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
        return res

    def stop_trackers(self) -> None:
        for name, _, _ in list(self.swarm.procs):
            if name.startswith("tracker-"):
                self.swarm.stop(name)


def test_every_bash_block_is_run_or_says_why_not():
    run_here = {"The simple example, from start to end", "A folder as one torrent, and magnet links",
                "Supervision: supervisord keeps every node alive", "Several trackers",
                "Private swarms: only key holders join"}
    for heading, cmds in blocks():
        assert heading in run_here or heading in NOT_RUN, f"README block under {heading!r} ({cmds[0]!r}) is " \
                                                          f"neither run by this test nor in NOT_RUN"


def test_the_simple_example_then_a_folder_and_a_magnet(swarm):
    r = Runner(swarm)
    for command in block("The simple example, from start to end"):
        r.run(command)
    assert (r.workdir / "output" / "downloads" / "file_001.bin").read_bytes() == \
        (r.workdir / "input_files" / "file_001.bin").read_bytes()
    for command in block("A folder as one torrent, and magnet links"):
        r.run(command)
    got = r.workdir / "output" / "downloads" / "input_files"
    assert subprocess.run(["diff", "-r", str(r.workdir / "input_files"), str(got)]).returncode == 0
    assert not (got / "input_files").exists()


@pytest.mark.mongo
def test_several_trackers_as_written(swarm, mongo_uri):
    """Two trackers on consecutive ports (their HTTP doors must not collide), peers with both,
    then the same under supervisord."""
    r = Runner(swarm, {"mongodb://db:27017/bittorrent": f"{mongo_uri}/readme{os.getpid()}?retryWrites=false"})
    for command in block("Several trackers"):
        r.run(command)
    for log_name in ("tracker-%d" % (6969 + r.offset), "tracker-%d" % (6970 + r.offset)):
        assert "running without the HTTP tracker" not in swarm.log(log_name)
    got = r.run("python main.py --json swarm status --config peers.json")
    assert got is not None and got.stdout.count('"RUNNING"') == 3, got.stdout     # the three peers
    r.stop_trackers()
    for command in block("Several trackers", "python main.py swarm up"):
        r.run(command)


def test_the_supervision_example(swarm):
    r = Runner(swarm)
    for command in block("Supervision: supervisord keeps every node alive"):
        r.run(command)


def test_the_private_swarm_key_examples(swarm):
    """Making the swarm's keys and a member's (test_private_swarm.py runs a swarm with them)."""
    r = Runner(swarm)
    for heading, cmds in blocks():
        if heading == "Private swarms: only key holders join":
            for command in cmds:
                r.run(command)
    assert (r.workdir / "keys" / "allowed" / "laptop.key").exists()
    assert (r.workdir / "laptop-keys").is_dir() and (r.workdir / "host2-keys" / "allowed").is_dir()
