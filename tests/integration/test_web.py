"""The web view against a real swarm: tracker, rate-limited seeder, leechers, the `web`
process, and a real headless Chromium (Debian's chromium + chromium-driver) via Selenium."""
from __future__ import annotations

import http.client
import shutil
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.procs import Swarm, wait_for, write_random

HOSTILE_NAME = "<img src=x onerror=alert(1)>.bin"
SEED_RATE = 1_500_000           # bytes/s: a 6 MB download takes about 4 s, long enough to watch
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """(swarm, base URL): a tracker, a rate-limited seeder, three leechers and the web view."""
    s = Swarm(tmp_path_factory.mktemp("web"))
    failed = True
    try:
        s.tracker()
        s.peer("seed", "--upload-rate", str(SEED_RATE))
        for peer_id in ("leech1", "leech2", "leech3"):
            s.peer(peer_id)
        ready = s.workdir / "web.ready"
        proc = s.spawn("web", "web", "--port", "0", "--tracker", s.tracker_endpoint, "--ready-file", str(ready))
        url = s._ready("web", proc, ready)
        yield s, url
        failed = False
    finally:
        s.close(failed)


def start_download(s: Swarm, leecher: str, name: str, size: int, seed: int) -> dict:
    src = write_random(s.workdir / "in" / name, size, seed)
    info = s.upload(src, "seed")
    s.spawn(f"download-{leecher}", "download", "--torrent", info["torrent"], "--output",
            str(s.workdir / "out" / leecher / name), "--peer-id", leecher,
            "--peer-port", str(s.peer_ports[leecher]))
    return info


def get(url: str, path: str, host: str | None = None) -> tuple[int, dict, bytes]:
    base = url.removeprefix("http://").rstrip("/")
    conn = http.client.HTTPConnection(base, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    text = urllib.request.urlopen(url + "metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_foreign_host_header_is_refused(web):
    _, url = web
    port = url.rstrip("/").rsplit(":", 1)[1]
    status, headers, body = get(url, "/", host="evil.example")
    assert status == 421 and b"Host" in body
    assert get(url, "/api/swarm", host=f"rebind.attacker.test:{port}")[0] == 421
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        status, headers, body = get(url, "/", host=host)
        assert status == 200 and b"/static/app.js" in body
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert b"<script>" not in body and b"onerror" not in body     # no inline script on the page
    status, headers, _ = get(url, "/static/../../etc/passwd", host=f"127.0.0.1:{port}")
    assert status == 404 and "Content-Security-Policy" in headers


def test_metrics_counters_grow_during_a_download(web):
    s, url = web
    info = start_download(s, "leech1", "metrics.bin", 6_000_000, 11)
    ih = info["info_hash"]
    key = ("zorrent_downloaded_bytes_total", (("info_hash", ih), ("peer_id", "leech1")))
    up = ("zorrent_uploaded_bytes_total", (("info_hash", ih), ("peer_id", "seed")))
    first = wait_for(lambda: (m := scrape(url)).get(key, 0) > 0 and m, what="leech1 bytes in /metrics")
    second = wait_for(lambda: (m := scrape(url)).get(key, 0) > first[key] and m, what="the counter to grow")
    assert second[up] >= first[up] > 0
    assert second[("zorrent_pieces_verified_total", (("info_hash", ih), ("peer_id", "leech1")))] > 0
    assert second[("zorrent_tracker_announces_total", ())] > first[("zorrent_tracker_announces_total", ())] - 1
    assert second[("zorrent_tracker_request_latency_seconds_count", ())] > 0
    assert second[("zorrent_peers_live", ())] == 4
    text = urllib.request.urlopen(url + "metrics", timeout=5).read().decode()
    for name in ("downloaded_bytes", "uploaded_bytes", "pieces_verified", "hash_failures", "bans"):
        assert f"# TYPE zorrent_{name}_total counter" in text
    labels = {k for _, ls in second for k, _ in ls}
    assert labels <= {"peer_id", "info_hash", "le"}, labels     # never a free-text name


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are missing: run `make test`, which installs them")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log")))
    driver.set_page_load_timeout(15)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def js(driver, script: str, *args):
    return driver.execute_script(script, *args)


def test_the_page_shows_the_swarm_live_and_strangers_names_as_text(web, browser, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException

    s, url = web
    hostile = write_random(s.workdir / "in" / HOSTILE_NAME, 100_000, 12)
    hostile_ih = s.upload(hostile, "seed")["info_hash"]
    info = start_download(s, "leech2", "live.bin", 6_000_000, 13)
    browser.get(url)
    js(browser, "window.__sameDocument = true;")
    row = "return document.querySelector('#peers tr[data-peer-id=\"' + arguments[0] + '\"]')"
    wait_for(lambda: all(js(browser, row, p) for p in ("seed", "leech1", "leech2", "leech3")),
             what="the four peers on the page")
    torrent = "return document.querySelector('.torrent[data-info-hash=\"' + arguments[0] + '\"] .name')"
    wait_for(lambda: js(browser, torrent + "?.textContent", info["info_hash"]) == "live.bin",
             what="the torrent on the page")
    pieces = "return document.querySelector('#peers tr[data-peer-id=\"leech2\"] td.pieces').textContent"
    seen = {js(browser, pieces)}
    wait_for(lambda: seen.add(js(browser, pieces)) or len(seen) >= 3, timeout_s=20,
             what="leech2's pieces to change on the page")
    assert js(browser, "return window.__sameDocument === true"), "the page reloaded"
    assert js(browser, "return document.querySelector('#peers tr[data-peer-id=\"leech2\"] progress') !== null")

    # a stranger's torrent name is text: shown literally, no element made from it, no script run
    wait_for(lambda: js(browser, torrent + "?.textContent", hostile_ih) == HOSTILE_NAME,
             what="the hostile torrent name, literally")
    assert js(browser, "return document.querySelectorAll('img').length") == 0
    assert HOSTILE_NAME in browser.find_element("id", "torrents").text
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert js(browser, "return document.querySelectorAll('.torrent canvas').length") >= 2

    shot = tmp_path / "swarm.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    # updates keep arriving by push, each a newer snapshot, each drawn, in the same document
    # (how fast is bench/web_view.py's to measure, not a test's on a loaded machine)
    seq = "return Number(document.body.dataset.seq)"
    first = js(browser, seq)
    wait_for(lambda: js(browser, seq) >= first + 3, what="three more pushed updates")
    assert js(browser, "return window.__sameDocument === true"), "the page reloaded"
    latencies = js(browser, "return window.zorrentLatencies")[1:]   # the first is the snapshot already made
    assert len(latencies) >= 3, latencies                          # one drawing per update
    print(f"\nscreenshot {shot}; update latency in the page (ms): median "
          f"{sorted(latencies)[len(latencies) // 2]:.1f}, max {max(latencies):.1f} over {len(latencies)} updates")
