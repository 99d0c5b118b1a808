"""What `pj run` prints at its end: the ``Summary`` of a campaign, from the master (Status, a List
of the jobs that ended badly, the first failed task's stderr tail) or, when the master cannot
answer, from what the Watch told (the ``Tracker``); and why DIR/jobs.jsonl is missing, if it is."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pj.common.journalcheck import JOURNAL_FILE
from pj.common.workdir import REPORT_NOT_WRITTEN_EXIT

from . import slurm
from .convert import BAD_STATES, JobSummary, sort_counts
from .errors import PJError
from .progress import Summary, Tracker, first_tail

if TYPE_CHECKING:  # api pulls in grpc
    from .api import Client

MAX_BAD_SHOWN = 10


@dataclass(frozen=True)
class RunFacts:
    """What a summary says of the run besides its counts."""

    workdir: Path
    t0: float  # when pj run started (monotonic)
    t_submit: float | None  # when the jobs were submitted (None: they never were)
    logs: tuple[str, ...]  # the log files to point at


def log_names(slurm_mode: bool, has_agents: bool) -> tuple[str, ...]:
    if slurm_mode:
        return ("master.log", "agent-*.log", slurm.SRUN_LOG)
    return ("master.log", "agent-node*.log") if has_agents else ("master.log",)


def final_summary(client: Client, tracker: Tracker, facts: RunFacts) -> Summary:
    """The master's own counts and bad jobs (the tracker's when it cannot answer)."""
    try:
        st = client.status()
        bad: list[JobSummary] = []
        bad_total = sum(st.jobs.get(s, 0) for s in BAD_STATES)
        for j in client.list(states=BAD_STATES) if bad_total else ():  # all succeeded: no List
            bad.append(j)
            if len(bad) >= MAX_BAD_SHOWN:
                break
        summary = summary_of("finished", st.jobs, st.tasks, bad, bad_total, facts)
        summary.tail = first_tail(client, bad)
        return summary
    except PJError:
        return tracker_summary(tracker, "finished", facts)


def tracker_summary(tracker: Tracker, outcome: str, facts: RunFacts) -> Summary:
    bad = tracker.bad_jobs()
    return summary_of(outcome, tracker.job_counts(), tracker.tasks, bad[:MAX_BAD_SHOWN], len(bad), facts)


def summary_of(
    outcome: str, jobs: dict[str, int], tasks: dict[str, int], bad: list[JobSummary], bad_total: int, facts: RunFacts
) -> Summary:
    now = time.monotonic()
    return Summary(
        jobs=sort_counts(dict(jobs)),
        tasks=sort_counts(dict(tasks)),
        bad=bad,
        bad_total=bad_total,
        elapsed=now - facts.t0,
        campaign=now - (facts.t_submit if facts.t_submit is not None else now),
        workdir=facts.workdir,
        outcome=outcome,
        logs=facts.logs,
    )


def report_missing(workdir: Path, master_rc: int | None) -> str:
    """Why DIR/jobs.jsonl was not written by this run's master ("": it was, the master exited 0).
    ``master_rc``: the master's exit status (None: still running, or never started)."""
    report, rc = workdir / "jobs.jsonl", master_rc
    if rc == 0 and report.exists():
        return ""
    journal = workdir / JOURNAL_FILE
    if rc == REPORT_NOT_WRITTEN_EXIT:
        return (f"the master could not write {report} (a full disk? see master.log); every job's end is "
                f"in the journal {journal}: free space, then continue the campaign with --resume to write it")
    how = "is still running" if rc is None else f"exited with status {rc}"
    return f"the master {how} and did not write {report}; what it journaled is in {journal}"
