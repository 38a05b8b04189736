"""A short soak in the suite (the 5-minute one is `make soak`): random kills, nothing lost."""
import json
import subprocess

import pytest

from tests.conftest import PY, REPO


@pytest.mark.xdist_group("heavy")     # with the lab tests, on one worker, one at a time
@pytest.mark.timeout(420)
def test_short_soak_loses_nothing(tmp_path):
    res = subprocess.run([PY, str(REPO / "main.py"), "--json", "soak", "--peers", "6", "--files", "3",
                          "--minutes", "0.75", "--kill-every", "6", "--min-size", "4M", "--max-size", "8M",
                          "--upload-rate", "3M", "--workdir", str(tmp_path / "soak")],
                         capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    print("\nsoak:", {k: report[k] for k in ("downloads_started", "downloads_verified", "downloads_corrupt",
                                            "kills", "restarts_seen", "pieces_redownloaded_after_restart",
                                            "pieces_verified_before_kills")})
    assert report["ok"] and report["downloads_corrupt"] == 0 and report["downloads_unfinished"] == 0
    assert report["downloads_verified"] == report["downloads_completed"] >= 1
    assert report["kills"] >= 5 and report["restarts_seen"] >= report["kills"] - 1
    page = (tmp_path / "soak" / "soak-report.html").read_text()     # the picture beside the JSON
    assert "<polyline" in page and page.count('class="mark mark-kill"') == report["kills"]
    assert "web view: http://127.0.0.1:" in res.stderr
