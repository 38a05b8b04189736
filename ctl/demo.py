"""``make demo``: the README's simple example, command by command, on real processes.

Starts the tracker, then the peers of peers.json under supervisord, generates input, creates a torrent,
uploads from peer1, downloads to peer2, lists the swarm, checks the bytes, then
stops everything it started (also on failure or Ctrl-C).
"""
from __future__ import annotations

import filecmp
import shlex
import subprocess
import sys


from ctl import nodes
from node import config
from protocol.errors import ZorrentError

INPUTS = config.output_dir() / "demo_inputs"


def zorrent(*args: str) -> list[str]:
    return [sys.executable, "main.py", *args]


def show(argv: list[str]) -> None:
    print(f"\n$ python {' '.join(shlex.quote(a) for a in argv[1:])}", flush=True)


def run(*args: str) -> None:
    argv = zorrent(*args)
    show(argv)
    subprocess.run(argv, check=True, env=nodes.node_env())


def background(*args: str, log: str) -> subprocess.Popen:
    argv = zorrent(*args)
    show(argv)
    print(f"  (in the background; log: {config.logs_dir() / log})", flush=True)
    with open(config.ensure_dir(config.logs_dir()) / log, "ab") as out:     # the child keeps its own copy
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=nodes.node_env())


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        nodes.stop_processes(nodes.process_tree(proc.pid))


def main() -> int:
    peers = nodes.load_peers(config.DEFAULT_PEERS_CONFIG)
    seeder, leecher = peers[0], peers[1]
    procs: list[subprocess.Popen] = []
    try:
        procs.append(background("tracker", "--host", config.DEFAULT_TRACKER_HOST,
                                "--port", str(config.DEFAULT_TRACKER_PORT), log="tracker.log"))
        nodes.wait_tracker(config.endpoint(config.DEFAULT_TRACKER_HOST, config.DEFAULT_TRACKER_PORT))
        run("start-peer", "--config", config.DEFAULT_PEERS_CONFIG)   # under supervisord
        run("make-inputs", "--num_files", "3", "--path", str(INPUTS), "--min-size", "24M", "--max-size", "64M")
        source = INPUTS / "file_001.bin"
        target = config.downloads_dir() / source.name
        target.unlink(missing_ok=True)   # a re-run downloads again rather than resuming
        run("create", "--input", str(INPUTS))
        run("upload", "--input", str(source), "--peer-id", seeder.peer_id, "--peer-port", str(seeder.port))
        torrent = config.torrents_dir() / f"{source.name}.torrent"
        run("download", "--torrent", str(torrent), "--output", str(target),
            "--peer-id", leecher.peer_id, "--peer-port", str(leecher.port))
        run("get", "--torrent", str(torrent))
        if not filecmp.cmp(source, target, shallow=False):
            print(f"\nFAILED: {target} differs from {source}", file=sys.stderr)
            return 1
        print(f"\nOK: {target} is byte-identical to {source}")
        return 0
    except subprocess.CalledProcessError as exc:
        print(f"\nFAILED: a command exited with {exc.returncode}", file=sys.stderr)
        return 1
    except ZorrentError as exc:
        print(f"\nFAILED: {exc.message}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(zorrent("swarm", "down"), env=nodes.node_env())
        stop(procs)
        print("Stopped the tracker and the peers.")


if __name__ == "__main__":
    sys.exit(main())
