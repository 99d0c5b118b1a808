"""`pj report`: text, --json, -o, the Gantt files, the HTML page, and bad input as one line (exit 2)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # report_lines beside this file
from report_lines import LINES, write_report
from test_report_figures import _uniform_lines

from pj.client.cli import pj_main


def has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


needs_matplotlib = pytest.mark.skipif(
    not has_matplotlib() and os.environ.get("CI") != "true",
    reason="matplotlib is not installed (pip install 'pj[report]'); under CI=true this test runs and fails instead")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = pj_main(["report", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def wd(tmp_path: Path) -> Path:
    write_report(tmp_path / "run")
    return tmp_path / "run"


def test_stats_text_json_and_output_file(capsys: pytest.CaptureFixture[str], wd: Path, tmp_path: Path) -> None:
    rc, out, err = run(capsys, "stats", "--workdir", str(wd))
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert re.fullmatch(r"jobs +4: SUCCEED 2, FAILED 1, OMITTED 1", lines[0])
    assert re.fullmatch(r"tasks +4: SUCCEED 3, FAILED 1", lines[1])
    assert lines[0].index("4:") == lines[1].index("4:")  # aligned
    assert "10.00 s" in lines[2] and "0.4" in lines[3]
    assert "6 (n0 4, n1 2)" in out and "used 28.0 of 60.0: utilisation 46.7%" in out
    assert "min 4.00 s  median 4.50 s  p95 6.00 s  max 6.00 s" in out
    rc, out, _ = run(capsys, "stats", "--workdir", str(wd), "--json")
    data = json.loads(out)
    assert data["jobs"] == {"SUCCEED": 2, "FAILED": 1, "OMITTED": 1}
    assert data["tasks"] == {"SUCCEED": 3, "FAILED": 1}
    assert data["utilisation"] == pytest.approx(28 / 60)
    target = tmp_path / "stats.json"
    rc, out, _ = run(capsys, "stats", "--workdir", str(wd), "--json", "-o", str(target))
    assert rc == 0 and out == ""
    assert json.loads(target.read_text()) == data


def test_workdir_from_the_environment_and_a_report_file(capsys: pytest.CaptureFixture[str], wd: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("PJ_WORKDIR", str(wd))
    rc, out, _ = run(capsys, "stats", "--json")
    assert rc == 0 and json.loads(out)["tasks"]["FAILED"] == 1
    monkeypatch.delenv("PJ_WORKDIR")
    rc, out, _ = run(capsys, "stats", "--json", "--workdir", str(wd / "jobs.jsonl"))
    assert rc == 0 and json.loads(out)["tasks"]["SUCCEED"] == 3


def test_efficiency_rusage_launch(capsys: pytest.CaptureFixture[str], wd: Path) -> None:
    rc, out, _ = run(capsys, "efficiency", "--workdir", str(wd))
    assert rc == 0
    assert "efficiency 55.6% (4 tasks)" in out  # 15 / 27
    assert "2 tasks used less than 25% of their cores" in out
    worst = out[out.index("\nTASK ") + 1 :].splitlines()[1:]
    assert [w.split()[0] for w in worst] == ["a:1", "d"]
    rc, out, _ = run(capsys, "efficiency", "--workdir", str(wd), "--below", "0.15", "--json")
    assert [w["name"] for w in json.loads(out)["worst"]] == ["a:1"]
    rc, out, _ = run(capsys, "rusage", "--workdir", str(wd))
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    assert rows["a"][1:] == ["2", "1.00", "s", "4.00", "s", "7.00", "s", "1000", "KiB", "2.0", "MiB", "2.9", "MiB"]
    assert rows["(all)"][1] == "4"
    rc, out, _ = run(capsys, "launch", "--workdir", str(wd))
    assert "peak 2/s" in out
    buckets = [line.split()[:2] for line in out.splitlines() if re.match(r"\d+-\d+s ", line)]
    assert buckets == [["1-2s", "1"], ["2-3s", "1"], ["3-4s", "0"], ["4-5s", "2"]]
    rc, out, _ = run(capsys, "launch", "--workdir", str(wd), "--json")
    assert json.loads(out)["per_second"] == [1, 1, 0, 2]


def test_an_old_report_without_rusage_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = [re.sub(r',"cpu_user_s":[^,]+,"cpu_system_s":[^,]+,"max_rss_kb":\d+', "", line) for line in LINES]
    write_report(tmp_path, old)
    rc, out, _ = run(capsys, "efficiency", "--workdir", str(tmp_path))
    assert rc == 0 and "4 tasks without CPU figures" in out
    rc, out, _ = run(capsys, "rusage", "--workdir", str(tmp_path))
    assert rc == 0 and "4 tasks without CPU or memory figures" in out


def one_line_error(err: str) -> str:
    assert err.startswith("pj: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("PJ_WORKDIR", raising=False)
    rc, _, err = run(capsys, "stats", "--workdir", str(tmp_path))
    assert rc == 2 and f"{tmp_path / 'jobs.jsonl'}: no such file" in one_line_error(err)
    rc, _, err = run(capsys, "stats")
    assert rc == 2 and "--workdir DIR" in one_line_error(err)
    write_report(tmp_path, [*LINES[:4], "garbage", *LINES[4:]])
    for kind in ("stats", "gantt", "html", "efficiency"):
        extra = ["-o", str(tmp_path / "g.svg")] if kind == "gantt" else []
        rc, _, err = run(capsys, kind, "--workdir", str(tmp_path), *extra)
        assert rc == 2 and f"{tmp_path / 'jobs.jsonl'} line 5: not JSON" in one_line_error(err)
    rc, _, err = run(capsys, "nonsense", "--workdir", str(tmp_path))
    assert rc == 2 and "invalid choice" in one_line_error(err)
    rc, _, err = run(capsys, "efficiency", "--below", "2", "--workdir", str(tmp_path))
    assert rc == 2 and "between 0 and 1" in one_line_error(err)


def test_gantt_needs_an_output_file(capsys: pytest.CaptureFixture[str], wd: Path, tmp_path: Path) -> None:
    rc, _, err = run(capsys, "gantt", "--workdir", str(wd))
    assert rc == 2 and "-o FILE.png or -o FILE.svg" in one_line_error(err)
    rc, _, err = run(capsys, "gantt", "--workdir", str(wd), "-o", str(tmp_path / "x.pdf"))
    assert rc == 2
    rc, _, err = run(capsys, "gantt", "--workdir", str(wd), "-o", str(tmp_path / "no" / "x.svg"))
    assert rc == 2 and "cannot write" in one_line_error(err)


def test_gantt_svg_has_a_rect_per_task(capsys: pytest.CaptureFixture[str], wd: Path, tmp_path: Path) -> None:
    target = tmp_path / "g.svg"
    rc, out, err = run(capsys, "gantt", "--workdir", str(wd), "-o", str(target), "--json")
    assert rc == 0 and err == ""
    assert json.loads(out) == {"file": str(target), "mode": "task", "rows": 4, "bars": 4, "tasks": 4, "failed": 1}
    svg = target.read_text()
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    rects = re.findall(r'<rect class="(task[^"]*)"[^>]*>(?:<title>([^<]*)</title>)?', svg)
    assert sorted(t for _, t in rects) == ["a:0", "a:1", "b", "d"]
    assert [t for cls, t in rects if cls == "task failed"] == ["a:1"]
    assert 'fill="#4e79a7"' in svg  # job a, the largest, has the first colour


def big_report(directory: Path, tasks: int = 100_000) -> Path:
    return write_report(directory, _uniform_lines(tasks, nodes=4, cores=64, dur=3.0))


def test_gantt_svg_of_100k_tasks_is_aggregated(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    big_report(tmp_path / "big")
    target = tmp_path / "big.svg"
    rc, out, _ = run(capsys, "gantt", "--workdir", str(tmp_path / "big"), "-o", str(target), "--json")
    assert rc == 0 and json.loads(out)["mode"] == "band"
    svg = target.read_text()
    assert 'class="task' not in svg
    assert svg.count('class="busy"') == 8  # 4 nodes x 2 jobs
    assert svg.count('class="fail"') > 0
    assert 20_000 < len(svg) < 1_000_000  # readable and small: not 100 000 rectangles


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@needs_matplotlib
def test_gantt_png_small_and_big(capsys: pytest.CaptureFixture[str], wd: Path, tmp_path: Path) -> None:
    target = tmp_path / "g.png"
    rc, _, err = run(capsys, "gantt", "--workdir", str(wd), "-o", str(target))
    assert rc == 0 and err == ""
    assert png_size(target)[0] == 1000 and target.stat().st_size > 10_000
    big_report(tmp_path / "big")
    target = tmp_path / "big.png"
    rc, _, err = run(capsys, "gantt", "--workdir", str(tmp_path / "big"), "-o", str(target))
    assert rc == 0 and err == ""
    w, h = png_size(target)
    assert w == 1000 and 300 < h < 1000 and target.stat().st_size > 20_000


def test_png_without_matplotlib_names_it(wd: Path, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None; sys.modules['matplotlib.figure'] = None\n"
            "from pj.client.cli import pj_main\n"
            f"sys.exit(pj_main(['report', 'gantt', '--workdir', {str(wd)!r}, '-o', {str(tmp_path / 'g.png')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    err = one_line_error(r.stderr)
    assert "matplotlib" in err and "pip install 'pj[report]'" in err
    assert not (tmp_path / "g.png").exists()


def test_html_is_self_contained(capsys: pytest.CaptureFixture[str], wd: Path, tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    rc, out, _ = run(capsys, "html", "--workdir", str(wd), "-o", str(target))
    assert rc == 0 and out == ""
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "Traceback...\nValueError: boom &lt;b&gt;" in page  # the stderr tail, escaped
    assert "exit code 3" in page and '<span class="failed" id="failed-count">1</span>' in page
    assert page.count('<rect class="task') == 4
    # nothing to load: no src/href attributes, no url(), no @import; the only URL is SVG's namespace
    assert not re.search(r"\b(src|href)\s*=|url\(|@import", page)
    assert set(re.findall(r"https?://[^\s\"']+", page)) == {"http://www.w3.org/2000/svg"}
    rc, out, _ = run(capsys, "html", "--workdir", str(wd))
    assert rc == 0 and out == page
    rc, out, _ = run(capsys, "html", "--workdir", str(wd), "--json")
    assert json.loads(out)["failures"][0]["name"] == "a:1"
