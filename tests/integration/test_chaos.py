"""A bounded chaos campaign on real processes (issue 13, item 10): about 1,000 short tasks with
dependencies and iterations (chains, fan-out/fan-in, ``after: sim:${it}``, fail-once retries) on a
master and 3 agents, while the master is killed -9 twice (and resumed with ``pj-master --resume``;
the agents find it by themselves) and an agent once (restarted under the same name). Every job
ends SUCCEED, none is lost, no task ever runs twice at once (an exclusive flock per task, and the
start/end log), nothing starts before its dependencies ended; with master kills only, no task runs
twice at all. The kill points come from a fixed seed (printed; ``scripts/chaos --seed N`` reruns
one, longer). The harness is scripts/chaos_harness.py; its checks are tested below on made-up
logs, so that they can fail."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chaos_harness", REPO / "scripts" / "chaos_harness.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["chaos_harness"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


ch = _harness()

SEED_ALL = 20240613  # master killed twice, an agent once
SEED_MASTER = 1301  # master killed twice, no agent kill: every task starts exactly as often as it must


def _run(tmp_path: Path, plan: ch.Plan) -> ch.Result:
    print(f"chaos seed {plan.seed} (reproduce: scripts/chaos --jobs {plan.jobs} --master-kills "
          f"{plan.master_kills} --agent-kills {plan.agent_kills} --seed {plan.seed})")
    try:
        res = ch.run(plan, tmp_path / "chaos", say=print)
    finally:
        left = ch.sweep(tmp_path, wait=0)  # run() sweeps too: this only makes sure
    print(res.figures())
    assert not left, f"processes left behind: {left}"
    assert not ch.leftovers(tmp_path)
    return res


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_chaos_master_killed_twice_and_an_agent_once(tmp_path: Path) -> None:
    plan = ch.Plan(jobs=1000, master_kills=2, agent_kills=1, seed=SEED_ALL, duration=45)
    res = _run(tmp_path, plan)
    assert res.violations == [], f"seed {plan.seed}: " + "\n".join(res.violations)
    assert len(res.kills) == 3 and res.restarts == 3, res.kills
    assert res.duplicates == 0
    assert res.starts >= res.tasks


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_chaos_with_master_kills_only_no_task_runs_twice(tmp_path: Path) -> None:
    plan = ch.Plan(jobs=700, master_kills=2, agent_kills=0, seed=SEED_MASTER, duration=45)
    res = _run(tmp_path, plan)
    assert res.violations == [], f"seed {plan.seed}: " + "\n".join(res.violations)
    assert len(res.kills) == 2 and res.restarts == 2, res.kills
    assert res.reruns == 0 and res.duplicates == 0


# ----------------------------------------------------------------------------- the checks can fail


def _tiny() -> ch.Workload:
    w = ch.make_workload(40, random.Random(0), Path("/nonexistent"))
    return w


def _good_log(w: ch.Workload) -> list[str]:
    """Every task run as often as it must, one after the other, dependencies first."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(k: str) -> None:
        if k not in seen:
            seen.add(k)
            for d in w.deps[k]:
                visit(d)
            order.append(k)

    for k in w.runs:
        visit(k)
    lines, t = [], 1.0
    for pid, k in enumerate(order, 100):
        for n in range(w.runs[k]):
            rc = 1 if n + 1 < w.runs[k] else 0
            lines += [f"start {k} {pid}{n} {t:.6f}", f"end {k} {pid}{n} {t + 0.1:.6f} {rc}"]
            t += 0.2
    return lines


def _report(tmp_path: Path, w: ch.Workload, drop: str | None = None) -> Path:
    out = tmp_path / "jobs.jsonl"
    rows: list[dict[str, object]] = []
    for j in w.jobs:
        if j["name"] == drop:
            continue
        rows.append({"name": j["name"], "state": "SUCCEED"})
        rows += [{"name": f"{j['name']}:{i}", "job": j["name"], "iteration": i, "state": "SUCCEED"}
                 for i in range(int(j.get("iterations", 0)))]
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def _check(tmp_path: Path, w: ch.Workload, log: list[str], exact: bool = True,
           listed: dict[str, str] | None = None, drop: str | None = None) -> ch.Result:
    (tmp_path / "log").write_text("".join(x + "\n" for x in log))
    names = {n: "SUCCEED" for n in w.names}
    res = ch.Result(0, len(w.jobs), w.tasks)
    ch.check(w, names, names if listed is None else listed, _report(tmp_path, w, drop), tmp_path / "log",
             exact, res)
    return res


def test_check_passes_a_clean_campaign(tmp_path: Path) -> None:
    w = _tiny()
    res = _check(tmp_path, w, _good_log(w))
    assert res.violations == [] and res.duplicates == 0 and res.reruns == 0
    assert res.starts == sum(w.runs.values())


def test_check_finds_a_second_copy_at_once_a_rerun_a_lost_job_and_an_early_start(tmp_path: Path) -> None:
    w = _tiny()
    log = _good_log(w)
    key = next(k for k, n in w.runs.items() if n == 1 and not w.deps[k])
    first = next(i for i, x in enumerate(log) if x.startswith(f"start {key} "))
    t = float(log[first].split()[3])
    # A second copy while the first runs (its flock refused, and one that slipped past it).
    overlap = [f"dup {key} 9 {t + 0.05:.6f}", f"start {key} 8 {t + 0.05:.6f}", f"end {key} 8 {t + 0.3:.6f} 0"]
    res = _check(tmp_path, w, log + overlap)
    assert res.duplicates == 2
    assert any("flock" in v for v in res.violations) and any("overlapping" in v for v in res.violations)
    assert any("wrong number of times" in v for v in res.violations)
    # A rerun after the first ended: fine when agents die, a violation with master kills only.
    rerun = [f"start {key} 7 {t + 100:.6f}", f"end {key} 7 {t + 100.1:.6f} 0"]
    assert _check(tmp_path, w, log + rerun, exact=False).violations == []
    res = _check(tmp_path, w, log + rerun, exact=True)
    assert res.reruns == 1 and any("wrong number of times" in v for v in res.violations)
    # A job lost from the List and from jobs.jsonl.
    lost = w.names[0]
    res = _check(tmp_path, w, log, listed={n: "SUCCEED" for n in w.names[1:]}, drop=lost)
    assert any("not in the final List" in v for v in res.violations)
    assert any("not in jobs.jsonl" in v for v in res.violations)
    # A task started before what it runs after had ended.
    dep_key = next(k for k, d in w.deps.items() if d)
    early = [x for x in log if not x.startswith(("start " + dep_key + " ", "end " + dep_key + " "))]
    early = [f"start {dep_key} 6 0.000001", f"end {dep_key} 6 0.000002 0", *early]
    res = _check(tmp_path, w, early)
    assert any("before their dependencies ended" in v for v in res.violations)
    # A task that never ended well.
    res = _check(tmp_path, w, [x for x in log if not x.startswith(f"end {key} ")])
    assert any("never ended with exit 0" in v for v in res.violations)
