"""The README's simple example, command by command, as subprocesses against real nodes."""
import filecmp
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from ctl import client
from protocol import messages as m
from protocol.errors import ZorrentError
from tests.conftest import free_port, wait_for


def tracker_up(endpoint):
    try:
        return client.tracker(endpoint, m.Ping(), timeout_s=0.2, tries=1)
    except ZorrentError:
        return None


def stats_rows(stdout: str) -> dict[str, int]:
    """Peer ID -> Pieces Downloaded, parsed from the Download Statistics table."""
    block = stdout.split("Download Statistics:", 1)[1]
    return {m_.group(1): int(m_.group(2))
            for m_ in re.finditer(r"│\s*(\S+)(?: \(banned\))?\s*│\s*(\d+)\s*│\s*[\d.]+\s*│", block)}


def test_readme_simple_example(swarm, tmp_path):
    tport = free_port()
    ports = {f"peer{i}": free_port() for i in (1, 2, 3)}
    (tmp_path / "peers.json").write_text(json.dumps({p: {"ip": "127.0.0.1", "port": n} for p, n in ports.items()}))
    swarm.tracker_endpoint = f"tcp://127.0.0.1:{tport}"

    swarm.spawn("tracker", "tracker", "--host", "127.0.0.1", "--port", str(tport))
    wait_for(lambda: tracker_up(swarm.tracker_endpoint), what="the tracker")
    swarm.spawn("start-peer", "start-peer", "--config", "peers.json")
    for peer_id in ports:
        wait_for(lambda: (tmp_path / "output" / "run" / f"{peer_id}.sock").exists(), what=peer_id)
        wait_for(lambda: swarm.status(peer_id)["registered"], what=f"{peer_id} registered")

    swarm.cli("make-inputs", "--num_files", "3", "--path", "input_files", "--min-size", "6M", "--max-size", "10M")
    assert len(list((tmp_path / "input_files").iterdir())) == 3

    made = swarm.cli("create", "--input", "input_files/file_001.bin")
    torrent = tmp_path / "output/torrents/file_001.bin.torrent"
    assert torrent.exists() and "file_001.bin" in made.stdout
    swarm.cli("create", "--input", "input_files")           # a folder: one torrent per file
    assert sorted(p.name for p in (tmp_path / "output/torrents").iterdir()) == [
        "file_001.bin.torrent", "file_002.bin.torrent", "file_003.bin.torrent"]

    swarm.cli("upload", "--input", "input_files/file_001.bin", "--peer-id", "peer1",
              "--peer-port", str(ports["peer1"]))
    res = swarm.cli("download", "--torrent", "output/torrents/file_001.bin.torrent",
                    "--output", "output/downloads/file_001.bin", "--peer-id", "peer2",
                    "--peer-port", str(ports["peer2"]))
    assert filecmp.cmp(tmp_path / "input_files/file_001.bin", tmp_path / "output/downloads/file_001.bin",
                       shallow=False)
    rows = stats_rows(res.stdout)
    total = int(re.search(r"Total pieces downloaded: (\d+)", res.stdout).group(1))
    assert rows == {"peer1": total} and total > 0
    assert "Failed attempts: 0" in res.stdout

    listing = swarm.cli("get", "--torrent", "output/torrents/file_001.bin.torrent").stdout
    assert re.search(rf"peer1\s*│\s*127.0.0.1:{ports['peer1']}\s*│\s*{total}/{total}\s*│\s*100%\s*│\s*yes", listing)
    assert re.search(rf"peer2\s*│\s*127.0.0.1:{ports['peer2']}\s*│\s*{total}/{total}", listing)

    # the same commands through the console script
    zorrent = shutil.which("zorrent", path=str(Path(sys.executable).parent))
    assert zorrent, "the zorrent console script is not installed"
    out = subprocess.run([zorrent, "--json", "get", "--torrent", "output/torrents/file_001.bin.torrent"],
                         cwd=tmp_path, env=swarm.env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {p["peer_id"] for p in json.loads(out.stdout)["peers"]} == {"peer1", "peer2"}


def test_libtorrent_reads_the_info_hash_zorrent_prints(swarm, tmp_path):
    import libtorrent as lt

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.bin").write_bytes(bytes(range(256)) * 20000)
    printed = swarm.cli_json("create", "--input", "in/a.bin")[0]
    ti = lt.torrent_info(str(tmp_path / printed["torrent"]))
    assert str(ti.info_hashes().v1) == printed["info_hash"]


def test_the_seeds_generator_command_is_make_inputs(swarm, tmp_path):
    """`python -m app.tests.create_input_files --num_files 10 --path input_files`, verbatim
    (plus small sizes, to stay quick), writes what make-inputs writes."""
    small = ["--min-size", "1K", "--max-size", "8K"]
    res = subprocess.run([sys.executable, "-m", "app.tests.create_input_files", "--num_files", "10",
                          "--path", "input_files", *small], cwd=tmp_path, env=swarm.env(),
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    swarm.cli("make-inputs", "--num_files", "10", "--path", "reference", *small)
    made = sorted(p.name for p in (tmp_path / "input_files").iterdir())
    assert made == [f"file_{i:03d}.bin" for i in range(1, 11)]
    assert filecmp.cmpfiles(tmp_path / "input_files", tmp_path / "reference", made, shallow=False)[0] == made
    bad = subprocess.run([sys.executable, "-m", "app.tests.create_input_files", "--num_files", "0"],
                         cwd=tmp_path, env=swarm.env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
