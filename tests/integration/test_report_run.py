"""`pj report` on real runs, and the HTML page in a real headless Chromium (Debian's `chromium`).

The Chromium test skips, saying why, where no chromium is installed (`apt-get install chromium`;
.ci/run installs it), except under CI=true, where a skip is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))  # report_lines
from report_lines import write_report

PJ = str(Path(sys.executable).parent / "pj")


def pj(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM") and k != "PJ_WORKDIR"}
    return subprocess.run([PJ, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=clean)


def test_stats_agree_with_the_run(tmp_path: Path) -> None:
    jobs = {"jobs": [
        {"name": "many", "script": "sleep 0.0${it}", "iterations": 12},
        {"name": "wide", "exec": "/bin/true", "cores": 2, "iterations": 3},
        {"name": "bad", "script": "echo no >&2; exit 4"},
        {"name": "never", "exec": "/bin/true", "after": ["bad"]},
        {"name": "one", "exec": "/bin/true", "after": ["many"]},
    ]}  # fmt: skip
    (tmp_path / "c.json").write_text(json.dumps(jobs))
    run = pj(tmp_path, "run", "c.json", "--workdir", "wd", "--nodes", "2", "--cores", "2", "--quiet")
    assert run.returncode == 1, run.stdout + run.stderr
    m = re.search(r"^tasks: (\d+) run \(([^)]*)\)", run.stdout, re.M)
    assert m, run.stdout
    said = {s: int(n) for s, n in (part.split() for part in m.group(2).split(", "))}
    r = pj(tmp_path, "report", "stats", "--json", "--workdir", "wd")
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["tasks"] == said == {"SUCCEED": 16, "FAILED": 1}  # 12 + 3 + one, and bad
    assert sum(stats["tasks"].values()) == int(m.group(1))
    assert stats["jobs"] == {"SUCCEED": 3, "FAILED": 1, "OMITTED": 1}
    assert stats["nodes"] == {"node0": 2, "node1": 2}  # announced in master.log
    assert 0 < stats["utilisation"] <= 1
    assert stats["duration_s"]["n"] == 17 and stats["submit_to_start_s"]["n"] == 17
    svg = tmp_path / "g.svg"
    g = pj(tmp_path, "report", "gantt", "--workdir", "wd", "-o", str(svg), "--json")
    assert g.returncode == 0, g.stderr
    assert json.loads(g.stdout)["mode"] == "task"  # 17 tasks: a row each
    text = svg.read_text()
    assert text.count('<rect class="task') == 3 + 12 + 1 + 1 + 0  # 'wide' has one node each: one rect a task
    assert text.count('class="task failed"') == 1


# ---------------------------------------------------------------- Chromium


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = "no chromium on PATH (Debian: apt-get install -y chromium; .ci/run installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the headless-browser test cannot run: {reason}")
    pytest.skip(reason)


def browse(browser: str, page: Path, tmp_path: Path, *what: str) -> subprocess.CompletedProcess[str]:
    """Chromium, headless, with every host name unresolvable: a page that loaded anything would show it."""
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
            "--window-size=1100,1300", *what, page.as_uri()]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, head = 8, b"", b""
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            head = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, colour, interlace = (int.from_bytes(head[0:4], "big"), int.from_bytes(head[4:8], "big"), head[8],
                                      head[9], head[12])  # fmt: skip
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return w, h, [bytes(r[i : i + 3]) for r in rows for i in range(0, stride, bpp)]  # type: ignore[misc]


def test_html_page_in_headless_chromium(tmp_path: Path) -> None:
    browser = chromium()
    write_report(tmp_path / "run")
    page = tmp_path / "report.html"
    r = pj(tmp_path, "report", "html", "--workdir", "run", "-o", str(page))
    assert r.returncode == 0, r.stderr
    dom = browse(browser, page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="pj-gantt"' in html
    assert len(re.findall(r'<rect class="task', html)) == 4
    assert html.count('<tr class="failure">') == 1
    assert "ValueError: boom &lt;b&gt;" in html  # the stderr tail, as text
    assert re.search(r"<th>tasks</th><td>4: SUCCEED 3, FAILED 1</td>", html)
    shot = tmp_path / "shot.png"
    r = browse(browser, page, tmp_path, f"--screenshot={shot}")
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    w, h, pixels = png_pixels(shot)
    assert (w, h) == (1100, 1300)
    counts: dict[bytes, int] = {}
    for px in pixels:
        counts[px] = counts.get(px, 0) + 1
    for name, colour in (("job a", "4e79a7"), ("job b", "f28e2b"), ("job d", "59a14f"), ("FAILED", "d62728")):
        assert counts.get(bytes.fromhex(colour), 0) > 40, f"{name}'s colour #{colour} is not drawn"
    # a row per task: a's bars last 4 + 4 s, b's 6 s, d's 5 s: their areas come in that order
    assert counts[bytes.fromhex("4e79a7")] > counts[bytes.fromhex("f28e2b")] > counts[bytes.fromhex("59a14f")]
