"""The Python-functions half of scripts/bench (imports nothing from PJ, like it): trivial calls
(``inc(x) = x + 1``) through three executors on the same cores (--exec-cores, default 2):

  exec-pj    pj.client.Executor over `pj.client.LocalCluster(nodes=1, cores=C)` (warm workers)
  exec-dask  dask.distributed's LocalCluster(n_workers=C, threads_per_worker=1, processes=True)
             and its Client (`pip install 'pj[bench]'`, or 'dask[distributed]', into PJ's venv)
  exec-pool  concurrent.futures.ProcessPoolExecutor(C)

Each run is one fresh interpreter: start the executor, warm it with 100 calls, then two timed
phases, --exec-small calls (default 2,000) and --exec-calls calls (default 20,000): the clock starts
before the first submit (one `submit` per call, as a user's loop does) and stops when every future
is done; every result is checked. Reported per system: calls/s of each phase, µs per call, and the
ratios pj/dask (target >= 2) and pj's µs per call over the pool's (target <= 3).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from bench_cluster import run_driver

EXECUTOR_SYSTEMS = ("exec-pj", "exec-dask", "exec-pool")
EXECUTOR_EXTRAS = ("small_rate", "large_rate", "small_wall_s")

DRIVER = r'''
import json, sys, time
from concurrent.futures import wait

def inc(x):
    return x + 1

def phase(submit, n, wait):
    t = time.perf_counter()
    fs = [submit(inc, i) for i in range(n)]
    wait(fs)
    d = time.perf_counter() - t
    ok = all(f.result() == i + 1 for i, f in enumerate(fs))
    return d, ok

def measure(submit, small, large, wait=wait):
    wait([submit(inc, i) for i in range(100)])
    ds, oks = phase(submit, small, wait)
    dl, okl = phase(submit, large, wait)
    return {"small_wall": ds, "large_wall": dl, "ok": oks and okl}

if __name__ == "__main__":
    system, cores, small, large = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if system == "exec-pj":
        from pj.client import Executor, LocalCluster
        with LocalCluster(nodes=1, cores=cores, workdir="wd") as c, Executor(c) as ex:
            out = measure(ex.submit, small, large)
    elif system == "exec-dask":
        import logging
        from dask.distributed import Client, LocalCluster
        from dask.distributed import wait as dask_wait
        logging.getLogger("distributed").setLevel(logging.ERROR)
        with LocalCluster(n_workers=cores, threads_per_worker=1, processes=True,
                          dashboard_address=None) as c, Client(c) as client:
            out = measure(lambda fn, x: client.submit(fn, x, pure=False), small, large, dask_wait)
    else:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(cores) as ex:
            out = measure(ex.submit, small, large)
    print(json.dumps(out), flush=True)
'''


def executor_label(s: str, a: Any) -> str:
    what = {"exec-pj": "pj.client.Executor", "exec-dask": "dask LocalCluster", "exec-pool": "ProcessPoolExecutor"}[s]
    return f"{s} ({what}, {a.exec_cores} cores, {a.exec_calls} calls)"


def run_executor(system: str, rnd: int, a: Any, ctx: dict, tools: Any) -> dict:
    """One run of an EXECUTOR_SYSTEMS system; returns scripts/bench's run record (plus extras)."""
    run_dir: Path = ctx["tmp"] / f"{system}-r{rnd}"
    run_dir.mkdir()
    driver = run_dir / "driver.py"
    driver.write_text(DRIVER)
    python = Path(ctx["pj"]).parent / "python"
    cmd = [str(python), str(driver), system, str(a.exec_cores), str(a.exec_small), str(a.exec_calls)]
    rc, _, cpu, out, problem = run_driver(cmd, run_dir, a.timeout, tools)
    if problem is None and not out.get("ok"):
        problem = "a call returned a wrong result"
    if problem:
        hint = " (pip install 'pj[bench]' into PJ's venv)" if system == "exec-dask" else ""
        print(f"\nbench: error: {system} round {rnd}: {problem}{hint}\n--- logs kept in {run_dir}", file=sys.stderr)
        ctx["keep"] = True
        sys.exit(1)
    if not a.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    large = out["large_wall"]
    return {"system": system, "round": rnd, "tasks": a.exec_calls, "wall_s": large, "cpu_s": cpu,
            "tasks_per_s": a.exec_calls / large, "rc": rc, "ok": True, "problem": None, "cmd": cmd,
            "small_rate": a.exec_small / out["small_wall"], "large_rate": a.exec_calls / large,
            "small_wall_s": out["small_wall"]}


def print_executor(summary: dict[str, dict], a: Any) -> None:
    """Calls/s and µs per call of each phase; pj/dask and pj's per-call overhead over the pool's."""
    if not any(s in summary for s in EXECUTOR_SYSTEMS):
        return
    print(f"\nPython functions, trivial calls on {a.exec_cores} cores (medians):")
    for s in EXECUTOR_SYSTEMS:
        m = summary.get(s)
        if m:
            sr, lr = m["small_rate_median"], m["large_rate_median"]
            print(f"  {s:9}  {a.exec_small:>6} calls: {sr:8.0f} calls/s ({1e6 / sr:6.1f} µs/call)"
                  f"   {a.exec_calls:>6} calls: {lr:8.0f} calls/s ({1e6 / lr:6.1f} µs/call)")
    pj = summary.get("exec-pj")
    for other, what, target in (("exec-dask", "pj/dask calls/s", ">= 2"), ("exec-pool", "pj/pool µs per call", "<= 3")):
        m = summary.get(other)
        if not (pj and m):
            continue
        cells = []
        for key, n in (("small_rate_median", a.exec_small), ("large_rate_median", a.exec_calls)):
            x = pj[key] / m[key] if other == "exec-dask" else m[key] / pj[key]
            cells.append(f"{n} calls {x:.2f}x")
        print(f"  {what} (target {target}): {', '.join(cells)}")
