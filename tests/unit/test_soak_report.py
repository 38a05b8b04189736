"""The soak's self-contained HTML picture."""
import re

from ctl.soak_report import Timeline, render_html, write_html


def test_the_picture_marks_kills_and_restarts_and_escapes_everything(tmp_path):
    tl = Timeline(started=0.0)
    tl.samples = [(0.0, 0), (1.0, 4 * 1048576), (2.0, 6 * 1048576), (3.0, 5 * 1048576), (4.0, 9 * 1048576)]
    tl.marks = [(1.5, "kill", "soak03"), (2.5, "restart", "soak03"), (3.2, "partition", "<b>lab</b>")]
    assert [round(v, 2) for _, v in tl.throughput(window_s=1.0)] == [4.0, 2.0, 0.0, 4.0]
    assert [round(v, 2) for _, v in tl.throughput(window_s=2.0)] == [4.0, 3.0, 0.5, 1.5]
    text = render_html({"kills": 1, "note": "<script>alert(1)</script>"}, tl, "soak <i>")
    assert "<svg" in text and "<polyline" in text
    assert len(re.findall(r'class="mark mark-kill"', text)) == 1 and 'class="mark mark-restart"' in text
    assert "<script" not in text and "&lt;script&gt;" in text and "&lt;b&gt;lab&lt;/b&gt;" in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")   # nothing fetched
    path = write_html(tmp_path / "soak-report.html", {"kills": 1}, tl)
    assert path.read_text().startswith("<!doctype html>")
