"""What a scripts/swarm run did, read from its outputs: jobs.jsonl (every job SUCCEEDed, a storm's
requeue and rerun times, a reconnect's reruns), master.log (nodes declared silent or lost), the
master probe, and the workers' own lateness."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from swarm_agents import Worker


def check_report(report: Path, n: int) -> str | None:
    """Every job of WORKDIR/jobs.jsonl SUCCEED, and n of them: read line by line (a 1M-job report
    is ~300 MB of JSON; only the count and the first few bad names are kept)."""
    jobs = 0
    bad: list[str] = []
    nbad = 0
    try:
        with report.open() as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                if "job" in r:
                    continue
                jobs += 1
                if r.get("state") != "SUCCEED":
                    nbad += 1
                    if len(bad) < 5:
                        bad.append(r.get("name"))
    except (OSError, ValueError) as e:
        return f"cannot read {report}: {e}"
    if jobs != n:
        return f"{report}: {jobs} jobs, expected {n}"
    return f"{report}: {nbad} not SUCCEED, e.g. {bad}" if nbad else None


LOSS_LINES = (re.compile(r"node (\S+) lost: its agent said nothing"), re.compile(r"node (\S+) did not come back within"))


def master_losses(log: Path, gone: set[str]) -> dict[str, Any]:
    """From the master's log: nodes it declared silent (--heartbeat-timeout) and nodes it declared
    lost (their grace over), and how many of each did not vanish (``false_*``: live agents)."""
    silent: set[str] = set()
    lost: set[str] = set()
    try:
        with log.open() as f:
            for line in f:
                for found, rx in zip((silent, lost), LOSS_LINES, strict=True):
                    m = rx.search(line)
                    if m:
                        found.add(m.group(1))
    except OSError:
        pass
    return {"declared_silent": len(silent), "false_silent": len(silent - gone),
            "declared_lost": len(lost), "false_lost": len(lost - gone), "names": silent | lost}


def probe_summary(path: Path, t0: float) -> dict[str, Any]:
    """--master-probe's file in short: the master loop's largest lag, the latest it read a heartbeat
    (each with when: seconds after the workers started) and the stalls its watch credited."""
    try:
        p = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return {"error": str(e)}
    out: dict[str, Any] = {}
    for key in ("loop_lag", "hb_read_late"):
        series = {int(k): v for k, v in p[key].items()}
        if series:
            at = max(series, key=series.__getitem__)
            out[key + "_max_s"], out[key + "_max_at"] = round(series[at], 3), round(at - t0)
    out["credited"] = len(p["credits"])
    out["credited_s"] = round(sum(c[1] for c in p["credits"]), 3)
    slow = sorted(p.get("slow", ()), key=lambda x: -x[2])[:8]  # the longest calls, when (s after t0)
    out["slow_calls"] = [[round(t - t0, 1), name, d] for t, name, d in slow]
    return out


def lateness(r: dict[str, Any], t0: float) -> dict[str, Any]:
    """One worker's lateness: its agents' longest gap between heartbeats and between messages sent,
    its event loop's longest lag, each with when it ended (``_at``: seconds after the workers started)."""
    out: dict[str, Any] = {}
    for k in ("hb_max_gap_s", "send_max_gap_s", "write_max_s", "loop_lag_max_s"):
        out[k] = round(r.get(k, 0.0), 3)
        if k + "_at" in r:
            out[k + "_at"] = round(r[k + "_at"] - t0, 3)
    out["loop_lags_over_1s"] = r.get("loop_lags_over_1s", 0)
    return out


def storm_figures(out: dict[str, Any], res: list[dict[str, Any]], workers: list[Worker], report: Path,
                  t0: float) -> str | None:
    """What a --vanish storm did: when it struck, the tasks the vanished agents held, how long until
    the master had queued them again (the last attempt ended by ``node lost``, jobs.jsonl) and until
    they had run again, and the rate of the rest in the second before and after. A problem or None."""
    marks = [w.vanished for w in workers if w.vanished is not None]
    if not marks:
        return "--vanish: no agent vanished (the jobs ended before --vanish-at?)"
    tv = min(m[0] for m in marks)
    out["vanish_at_s"] = round(tv - t0, 3)
    out["vanished_agents"] = sum(m[1] for m in marks)
    out["vanished_running_a_task"] = sum(m[2] for m in marks)
    out["vanished_tasks_running"] = sum(m[3] for m in marks)
    out["vanished_tasks_held"] = sum(m[4] for m in marks)
    buckets: dict[int, int] = {}
    for r in res:
        for k, v in r.get("buckets", {}).items():
            buckets[int(k)] = buckets.get(int(k), 0) + v
    k0 = int(tv * 10)
    out["rate_before"] = sum(buckets.get(k, 0) for k in range(k0 - 10, k0))
    out["rate_after"] = sum(buckets.get(k, 0) for k in range(k0, k0 + 10))
    busy = sorted(k for k in buckets if k >= k0)
    gaps = [((b - a_) / 10, a_) for a_, b in itertools.pairwise(busy)]
    gap, since = max(gaps, default=(0.0, k0))
    out["max_gap_after_s"] = gap
    out["max_gap_after_from_s"] = round((since + 1) / 10 - tv, 1)  # when it began, after the vanish
    try:
        rows = [json.loads(x) for x in report.read_text().splitlines() if x.strip()]
    except (OSError, ValueError) as e:
        return f"cannot read {report}: {e}"
    lost = [(r, at) for r in rows if "job" not in r for at in r.get("attempts") or ()
            if str(at.get("reason", "")).startswith("node lost")]
    out["lost_nodes"] = len({n for _, at in lost for n in at["nodes"]})
    out["requeued_lost"] = len(lost)
    if lost:
        out["requeue_s"] = round(max(at["ended"] for _, at in lost) - tv, 3)
        out["requeue_spread_s"] = round(max(at["ended"] for _, at in lost) - min(at["ended"] for _, at in lost), 3)
        out["requeue_passes"] = len({at["ended"] for _, at in lost})  # a pass's losses share its time
        out["rerun_s"] = round(max(max(r["times"].values()) for r, _ in lost) - tv, 3)
    gone = {n for w in workers for n in w.vanished_names}
    lost_nodes = {n for _, at in lost for n in at["nodes"]}
    if lost_nodes - gone:
        return f"nodes lost that did not vanish: {sorted(lost_nodes - gone)[:5]}"
    if out["vanished_tasks_running"] and not lost:
        return f"{out['vanished_tasks_running']} tasks ran on vanished agents, but jobs.jsonl shows no node lost"
    return None


def rate_around(res: list[dict[str, Any]], key: str, t: float) -> tuple[int, int]:
    """Exits counted in ``key`` (per 0.1 s, every worker) in the second before ``t`` and after."""
    buckets: dict[int, int] = {}
    for r in res:
        for k, v in r.get(key, {}).items():
            buckets[int(k)] = buckets.get(int(k), 0) + v
    k0 = int(t * 10)
    return sum(buckets.get(k, 0) for k in range(k0 - 10, k0)), sum(buckets.get(k, 0) for k in range(k0, k0 + 10))


def reconnect_figures(out: dict[str, Any], res: list[dict[str, Any]], workers: list[Worker], report: Path,
                      log: Path) -> str | None:
    """What a --reconnect did: when the streams were cut, what the agents ran and held then, how
    long until every one was welcomed back (the master reconciles a Register before its Welcome),
    the rest's exits in the second before and after the cut; and what a user checks: no task of
    theirs ran twice (no attempt on their nodes in jobs.jsonl), none of them declared lost."""
    marks = [w.cut for w in workers if w.cut is not None]
    if not marks:
        return "--reconnect: no stream was cut (the jobs ended before --reconnect-at?)"
    tc = min(m[0] for m in marks)
    names = {n for w in workers for n in w.cut_names}
    back = {n: t for w in workers for n, t in w.back.items()}
    out["reconnect_agents"] = sum(m[1] for m in marks)
    out["reconnect_tasks_running"] = sum(m[2] for m in marks)
    out["reconnect_launches_held"] = sum(m[3] for m in marks)
    out["rejoin_running"] = sum(r.get("rejoin_running", 0) for r in res)
    out["rejoin_ended"] = sum(r.get("rejoin_ended", 0) for r in res)
    out["reconnected"] = len(back)
    if back:
        out["reconnect_s"] = round(max(back.values()) - tc, 3)  # --reconnect-away included
        out["reconnect_spread_s"] = round(max(back.values()) - min(back.values()), 3)
    out["reconnect_rate_before"], out["reconnect_rate_after"] = rate_around(res, "buckets", tc)
    reruns = 0
    try:
        with report.open() as f:
            for line in f:
                r = json.loads(line) if line.strip() else {}
                reruns += any(names.intersection(at.get("nodes", ())) for at in r.get("attempts") or ()
                              if at.get("state") != "SUCCEED")
    except (OSError, ValueError) as e:
        return f"cannot read {report}: {e}"
    out["reconnect_reruns"] = reruns
    declared = master_losses(log, set())
    out["reconnect_declared_lost"] = sum(1 for n in names if n in declared["names"])
    if len(back) != len(names):
        return f"--reconnect: {len(names) - len(back)} of {len(names)} cut agents were not welcomed back"
    if reruns:
        return f"--reconnect: {reruns} tasks of the reconnecting agents ran again (jobs.jsonl attempts)"
    if out["reconnect_declared_lost"]:
        return f"--reconnect: the master declared {out['reconnect_declared_lost']} reconnecting agents lost"
    return None
