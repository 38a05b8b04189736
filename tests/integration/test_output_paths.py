"""``download --output PATH`` follows cp -r's rule for a file and a folder alike: an
existing folder gets the content inside it under the torrent's name; any other path is the
content's own. A second run and a restarted peer find the content where the first run put it."""
import os
import subprocess

from protocol import metainfo
from tests.conftest import free_port, write_random


def diff_r(a, b) -> subprocess.CompletedProcess:
    return subprocess.run(["diff", "-r", str(a), str(b)], capture_output=True, text=True)


def test_a_folder_torrent_lands_at_the_path_given_and_stays_there(swarm, tmp_path):
    swarm.tracker()
    swarm.peer("seeder")
    fixed = ("--port", str(free_port()))     # restarted on its own address, it takes its record back at once
    swarm.peer("leecher", *fixed)
    swarm.peer("other")
    src = tmp_path / "in" / "D"
    for i, n in enumerate([300_000, 0, 123_457]):
        write_random(src / ("sub" if i else "") / f"f{i}.bin", n, seed=80 + i)
    up = swarm.cli_json("upload", "--input", str(src), "--one-torrent", "--peer-id", "seeder",
                        "--peer-port", str(swarm.peer_ports["seeder"]))[0]

    def download(peer_id: str, output: str) -> dict:
        return swarm.cli_json("download", "--torrent", up["torrent"], "--output", output, "--peer-id", peer_id,
                              "--peer-port", str(swarm.peer_ports[peer_id]))

    out = tmp_path / "out" / "D"
    assert download("leecher", "out/D")["state"] == "seeding"
    assert diff_r(src, out).returncode == 0 and not (out / "D").exists()     # not out/D/D
    again = download("leecher", "out/D")                 # out/D exists now: the peer's job is found there
    assert again["state"] == "seeding" and again["path"] == str(out) and not (out / "D").exists()

    swarm.stop("leecher")
    (tmp_path / "leecher.ready").unlink()
    swarm.peer("leecher", *fixed)                        # its resume state names the folder it made
    assert swarm.job("leecher", up["info_hash"])["path"] == str(out)
    resumed = download("leecher", "out/D")
    assert resumed["state"] == "seeding" and resumed["path"] == str(out) and not (out / "D").exists()

    (tmp_path / "into").mkdir()                          # an existing folder: the content goes inside it
    assert download("other", "into")["path"] == str(tmp_path / "into" / "D")
    assert diff_r(src, tmp_path / "into" / "D").returncode == 0


def test_one_rule_for_a_file_and_a_folder(tmp_path, monkeypatch):
    from ctl.follow import output_path

    monkeypatch.chdir(tmp_path)
    single = metainfo.create(write_random(tmp_path / "f.bin", 1000, seed=1), "tcp://127.0.0.1:1")
    folder = metainfo.create_folder(write_random(tmp_path / "D" / "a.bin", 1000, seed=2).parent, "tcp://127.0.0.1:1")
    (tmp_path / "here").mkdir()
    for meta in (single, folder):
        assert output_path(meta, "new") == str(tmp_path / "new")                       # the content's own path
        assert output_path(meta, "here") == str(tmp_path / "here" / meta.name)         # inside an existing folder
        assert output_path(meta, None).endswith(os.path.join("downloads", meta.name))
        held = str(tmp_path / "here")                                                  # what the peer holds wins,
        assert output_path(meta, "here", held) == held                                 # named either way
        assert output_path(meta, ".", str(tmp_path / meta.name)) == str(tmp_path / meta.name)
        assert output_path(meta, "elsewhere", held) == str(tmp_path / "elsewhere")     # the peer refuses that one
        assert output_path(meta, None, held) == held
