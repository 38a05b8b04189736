"""The web view at scale: N real peers, rate-limited downloads, headless Chromium.

    python bench/web_view.py --peers 20 --screenshot /tmp/swarm20.png
    python bench/web_view.py --peers 100 --no-browser
    python bench/web_view.py --synthetic --peers 100 --pieces 10000 --files 4

Starts a tracker, N peers (one process each), seeds a few files from a few peers
(upload-rate limited so downloads last), starts downloads on the rest through their
control sockets, runs `web`, then reports the size of /metrics and /api/swarm, and,
with a browser, the page's update latency (server snapshot time to the page having
drawn it), its drawing time per update, and a screenshot.

``--synthetic`` serves the same page from made-up observations instead (N peers, each
on every torrent, PIECES pieces each), to see the page at sizes one machine cannot run.
Everything it started is stopped, and its work directory removed, at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctl import client  # noqa: E402
from protocol import messages as m  # noqa: E402
from tests.procs import PY, REPO, Swarm, kill_tree, wait_for, write_random  # noqa: E402

CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,2200")


def fetch(url: str) -> bytes:
    return urllib.request.urlopen(url, timeout=10).read()


def browse(url: str, shot: Path | None, seconds: float, workdir: Path) -> tuple[list[float], list[float]]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (*CHROMIUM_ARGS, f"--user-data-dir={workdir / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        driver.get(url)
        time.sleep(seconds)          # a measurement window, not a synchronisation
        latencies = driver.execute_script("return window.zorrentLatencies")[1:]
        drawing = driver.execute_script("return window.zorrentRenderMs")
        if shot:
            driver.save_screenshot(str(shot))
        return latencies, drawing
    finally:
        driver.quit()


def registered(peer_id: str) -> bool:
    return client.peer_control(peer_id, m.Status(info_hash=""), timeout_s=5, tries=1).registered


def report(url: str, args, workdir: Path) -> None:
    metrics, api = fetch(url + "metrics"), fetch(url + "api/swarm")
    print(f"{args.peers} peers, {args.files} torrents: /metrics {len(metrics)} bytes "
          f"({sum(1 for line in metrics.splitlines() if not line.startswith(b'#'))} samples), "
          f"/api/swarm {len(api)} bytes")
    if not args.no_browser:
        latencies, drawing = browse(url, args.screenshot, args.watch_s, workdir)
        print(f"page over {len(latencies)} pushes: update latency median {statistics.median(latencies):.1f} ms, "
              f"max {max(latencies):.1f} ms; drawing median {statistics.median(drawing):.1f} ms, "
              f"max {max(drawing):.1f} ms" + (f"; screenshot {args.screenshot}" if args.screenshot else ""))


def synthetic(args, workdir: Path) -> None:
    """The real server and page, fed by bench/web_fake.py instead of a swarm."""
    ready = workdir / "web.ready"
    log = open(workdir / "web.log", "ab")
    proc = subprocess.Popen([PY, str(REPO / "bench" / "web_fake.py"), str(args.peers), str(args.files),
                             str(args.pieces), str(ready)], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = wait_for(lambda: ready.exists() and ready.read_text(), what="the synthetic web view")
        wait_for(lambda: b'"peers_live":%d' % args.peers in fetch(url + "api/swarm"), what="synthetic peers")
        report(url, args, workdir)
    finally:
        kill_tree(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peers", type=int, default=20)
    ap.add_argument("--files", type=int, default=3)
    ap.add_argument("--size", type=int, default=8_000_000)
    ap.add_argument("--upload-rate", type=int, default=1_000_000)
    ap.add_argument("--screenshot", type=Path)
    ap.add_argument("--watch-s", type=float, default=10.0)
    ap.add_argument("--no-browser", action="store_true")
    ap.add_argument("--synthetic", action="store_true")
    ap.add_argument("--pieces", type=int, default=10_000, help="pieces per torrent (--synthetic)")
    args = ap.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="zorrent-web-"))
    if args.synthetic:
        try:
            synthetic(args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    os.environ["ZORRENT_OUTPUT"] = str(workdir / "output")     # the peers' control sockets
    s = Swarm(workdir)
    try:
        s.tracker()
        ids = [f"peer{i:03d}" for i in range(1, args.peers + 1)]
        seeders = ids[: max(1, args.files)]
        for peer_id in ids:
            extra = ("--upload-rate", str(args.upload_rate)) if peer_id in seeders else ()
            s.peer_start_unregistered(peer_id, *extra)
        wait_for(lambda: all(registered(p) for p in seeders), timeout_s=120, what="seeders registered")
        ready = workdir / "web.ready"
        proc = s.spawn("web", "web", "--port", "0", "--tracker", s.tracker_endpoint, "--ready-file", str(ready))
        url = s._ready("web", proc, ready)
        torrents = []
        for k in range(args.files):
            src = write_random(workdir / "in" / f"file{k}.bin", args.size, k)
            torrents.append(s.upload(src, seeders[k % len(seeders)])["torrent"])
        wait_for(lambda: all(registered(p) for p in ids), timeout_s=180, what="every peer registered")
        for i, peer_id in enumerate(ids[len(seeders):]):
            raw = (workdir / torrents[i % len(torrents)]).read_bytes()
            client.peer_control(peer_id, m.Download(metainfo=raw, output=str(workdir / "out" / peer_id)),
                                timeout_s=10)
        wait_for(lambda: b'"peers_live":%d' % args.peers in fetch(url + "api/swarm"), timeout_s=120,
                 what="every peer live on the view")
        time.sleep(2)              # a few polls with the downloads running
        report(url, args, workdir)
    finally:
        for _, proc, _ in s.procs:  # SIGTERM to all at once: a hundred one by one takes minutes
            if proc.poll() is None:
                proc.terminate()
        for _, proc, _ in s.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        s.close(failed=False)       # kills what is left; a failure shows as the exception
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
