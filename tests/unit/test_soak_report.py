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


def _table(text: str, cls: str) -> list[list[str]]:
    """The rows of the table with class ``cls``: header first, then each body row's cells."""
    block = re.search(rf'<table class="{cls}">(.*?)</table>', text, re.S)
    assert block, f"no table {cls!r}"
    return [re.findall(r"<t[hd]>(.*?)</t[hd]>", row) for row in re.findall(r"<tr>(.*?)</tr>", block.group(1), re.S)]


def test_per_node_maps_are_tables_not_python_reprs():
    report = {"kills": 4, "kills_by_node": {"soak08": 1, "tracker": 2, "soak36": 1},
              "partitions_by_host": {"soak02": 3, "<x>": 1},
              "rss_mib": {"tracker": [40.0, 52.5], "soak01": [60.0, 61.0], "web": [30.0, 29.5],
                          "soak02": [55.0, 90.25]}}
    text = render_html(report, Timeline(started=0.0))
    assert "{'" not in text and "[40.0" not in text          # no dict or list reprs anywhere
    assert _table(text, "kills") == [["Node", "Count"], ["tracker", "2"], ["soak08", "1"], ["soak36", "1"]]
    assert _table(text, "partitions") == [["Host", "Count"], ["soak02", "3"], ["&lt;x&gt;", "1"]]
    assert _table(text, "rss") == [["Program", "Start", "End", "Growth"],
                                   ["soak02", "55.0", "90.2", "+35.2"], ["tracker", "40.0", "52.5", "+12.5"],
                                   ["soak01", "60.0", "61.0", "+1.0"], ["web", "30.0", "29.5", "-0.5"]]
    assert _table(text, "report") == [["kills", "4"]]         # the scalars stay in the summary
    assert _table(render_html({"kills_by_node": {}}, Timeline()), "kills")[1] == ["(none)", "0"]
