"""How stderr tails and task figures are shown: pj info's lines, pj run's summary, the safe tail lines."""

from __future__ import annotations

from pathlib import Path

from pj.client.commands import _info_lines
from pj.client.convert import JobInfo, JobSummary, TaskInfo
from pj.client.formats import fmt_cpu, fmt_rss, tail_lines
from pj.client.progress import Summary, first_tail


def test_tail_lines_keep_the_last_lines_indented_and_neutralise_control_characters() -> None:
    text = "\n".join(f"line {i}" for i in range(10)) + "\n"
    assert tail_lines(text, 3) == ["    ... (7 earlier lines)", "    line 7", "    line 8", "    line 9"]
    assert tail_lines("a\x1b[2Jb\tc\x9bd\r\n", 5, "  ") == ["  a?[2Jb\tc?d"]
    assert tail_lines("", 5) == [] and tail_lines("\n\n", 5) == []


def test_figures_are_short() -> None:
    assert fmt_cpu(0.25, 0.06) == "0.31s" and fmt_cpu(0, 0) == "-" and fmt_cpu(150.0, 1.0) == "151s"
    assert fmt_rss(51200) == "50.0 MiB" and fmt_rss(0) == "-"


def test_info_lines_show_cpu_rss_and_the_failed_tasks_tail() -> None:
    info = JobInfo(JobSummary("j", "FAILED", "j:1: exit code 1", 2, 2, 1), tasks=(
        TaskInfo("j:0", 0, "SUCCEED", 0, cpu_user_s=0.5, cpu_system_s=0.25, max_rss_kb=2048),
        TaskInfo("j:1", 1, "FAILED", 1, "exit code 1", cpu_user_s=0.1, max_rss_kb=1024,
                 stderr_tail="Traceback (most recent call last):\nValueError: bad"),
    ))
    lines = _info_lines(info)
    header = next(line for line in lines if "TASK" in line)
    assert "CPU" in header and "MAX RSS" in header
    row0 = next(line for line in lines if line.strip().startswith("j:0"))
    assert "0.75s" in row0 and "2.0 MiB" in row0
    at = lines.index("  stderr of j:1 (its end):")
    assert lines[at + 1:at + 3] == ["    Traceback (most recent call last):", "    ValueError: bad"]
    assert not any("stderr of j:0" in line for line in lines)


def test_summary_shows_the_first_tail_after_the_failed_jobs() -> None:
    s = Summary(jobs={"FAILED": 1}, tasks={"FAILED": 1}, bad=[JobSummary("bad", "FAILED", "exit code 1")],
                bad_total=1, elapsed=1.0, campaign=1.0, workdir=Path("/w"), tail=("bad", "boom\n"))
    lines = s.lines()
    at = lines.index("stderr of bad (its last lines):")
    assert lines[at - 1].startswith("  bad") and lines[at + 1] == "    boom" and lines[at + 2].startswith("report:")


class _Infos:
    """A client whose Info answers from a dict (only what first_tail calls)."""

    def __init__(self, infos: dict[str, JobInfo]) -> None:
        self.infos = infos
        self.asked: list[tuple[str, bool]] = []

    def info(self, names: list[str], with_tasks: bool = False) -> list[JobInfo]:
        self.asked.append((names[0], with_tasks))
        return [self.infos[names[0]]]


def test_first_tail_skips_jobs_without_one_and_huge_ones() -> None:
    client = _Infos({
        "n127": JobInfo(JobSummary("n127", "FAILED"), tasks=(TaskInfo("n127", None, "FAILED", 127),)),
        "its": JobInfo(JobSummary("its", "FAILED", iterations=3), tasks=(
            TaskInfo("its:0", 0, "SUCCEED", 0), TaskInfo("its:2", 2, "FAILED", 1, stderr_tail="bad 2"))),
    })
    bad = [JobSummary("dep", "OMITTED"), JobSummary("huge", "FAILED", iterations=10**6),
           JobSummary("n127", "FAILED"), JobSummary("its", "FAILED", iterations=3)]
    assert first_tail(client, bad) == ("its:2", "bad 2")  # type: ignore[arg-type]
    assert client.asked == [("n127", False), ("its", True)]  # never the omitted or the huge job
