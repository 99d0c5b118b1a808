#!/usr/bin/env python3
"""Where a bare master core's memory goes with a million queued jobs (issue 16).

A ``Core`` with --nodes nodes of --cores cores takes --jobs one-core ``/bin/true`` jobs the way
``service.Submit`` does: the Client's protobuf parts of --part jobs (``calls.submit_requests``),
each serialized and parsed again from bytes (as gRPC hands it over), checked
(``speccheck.check_specs``), converted (``convert.specs_from_pb``) and submitted; each part is
freed before the next is made. Then passes place tasks (``Core.step``) and every placed task
starts and exits 0 until all have ended. After each phase: VmRSS and VmHWM (peak) of this process,
the live objects by type (counted once per phase, outside the peak), and with --trace the top
tracemalloc allocation sites (tracemalloc costs memory of its own: RSS figures then read high).

    scripts/memprofile [--nodes 8192] [--cores 128] [--jobs 1000000] [--part 50000] [--wire] [--trace] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from pj.client import calls
from pj.common.speccheck import check_specs
from pj.master import convert
from pj.master.core import Core, Outbox
from pj.master.main import GC_YOUNG
from pj.master.model import NodeInfo, State
from pj.master.runtime import _libc_trim as trim
from pj.v1 import pj_pb2


def vm() -> dict[str, float]:
    """VmRSS and VmHWM of this process, MB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(rest.split()[0]) / 1024, 1)
    return out


def by_type(top: int) -> list[tuple[str, int]]:
    """The most numerous live objects tracked by the GC, by type name."""
    counts = Counter(type(o).__name__ for o in gc.get_objects())
    return counts.most_common(top)


class Phases:
    def __init__(self, trace: bool, top: int, quiet: bool) -> None:
        self.trace, self.top, self.quiet = trace, top, quiet
        self.rows: list[dict[str, Any]] = []
        self.t0 = time.perf_counter()

    def mark(self, name: str, **extra: Any) -> None:
        row: dict[str, Any] = {"phase": name, "t_s": round(time.perf_counter() - self.t0, 2), **vm(), **extra}
        if self.trace:
            snap = tracemalloc.take_snapshot().filter_traces(
                (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>")))
            stats = snap.statistics("lineno")
            row["traced_mb"] = round(sum(s.size for s in stats) / 2**20, 1)
            row["top"] = [(str(s.traceback[0]), round(s.size / 2**20, 1), s.count) for s in stats[: self.top]]
        row["objects"] = by_type(self.top)
        self.rows.append(row)
        if not self.quiet:
            print(f"== {name}: {row['t_s']} s, VmRSS {row['VmRSS']} MB, VmHWM {row['VmHWM']} MB"
                  + "".join(f", {k} {v}" for k, v in extra.items()), flush=True)
            if self.trace:
                print(f"   traced {row['traced_mb']} MB")
                for where, mb, n in row["top"]:
                    print(f"   {mb:8.1f} MB {n:>9} blocks  {where}")
            print("   objects: " + ", ".join(f"{t} {n:,}" for t, n in row["objects"]), flush=True)


def part(first: int, n: int) -> bytes:
    """One Submit of jobs t{first}.. as the Client sends it (serialized)."""
    jobs = [{"name": f"t{j}", "exec": "/bin/true", "cores": 1} for j in range(first, first + n)]
    (req,) = calls.submit_requests(jobs, None, 1, chunk=0)
    return req.SerializeToString()


def wire(out: Outbox) -> list[int]:
    """The pass's launches down the wire (an Orders per node, serialized) and the agents' reports
    back (an AgentEvents per node, parsed): the ids reported."""
    ids = []
    for launches in out.launches.values():
        msg = pj_pb2.MasterMessage()
        convert.add_launches(msg.orders.launch, launches)
        sent = pj_pb2.MasterMessage.FromString(msg.SerializeToString())
        ev = pj_pb2.AgentEvents(exited=[pj_pb2.TaskExited(task_id=x.task_id, exit_code=0) for x in sent.orders.launch])
        ids.extend(e.task_id for e in pj_pb2.AgentEvents.FromString(ev.SerializeToString()).exited)
    return ids


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=8192)
    ap.add_argument("--cores", type=int, default=128)
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--part", type=int, default=calls.SUBMIT_CHUNK_JOBS, help="jobs per Submit")
    ap.add_argument("--trace", action="store_true", help="tracemalloc top sites per phase (slow; RSS reads high)")
    ap.add_argument("--top", type=int, default=8, help="how many sites and types to show")
    ap.add_argument("--no-run", action="store_true", help="stop after the first pass")
    ap.add_argument("--wire", action="store_true",
                    help="each pass's launches as serialized Orders per node, the reports as parsed "
                         "AgentEvents (what the service adds around the core)")
    ap.add_argument("--json", action="store_true", help="print the phases as JSON at the end")
    a = ap.parse_args()
    gc.set_threshold(GC_YOUNG, 10, 10)  # as pj-master
    if a.trace:
        tracemalloc.start()
    ph = Phases(a.trace, a.top, a.json)
    ph.mark("start")
    core = Core()
    now = 1.0
    for i in range(a.nodes):
        core.node_joined(NodeInfo(f"n{i:05d}", a.cores), now)
    ph.mark("nodes", nodes=a.nodes)
    parse_s = submit_s = 0.0
    peak_part = 0.0
    for first in range(0, a.jobs, a.part):
        raw = part(first, min(a.part, a.jobs - first))
        t = time.perf_counter()
        req = pj_pb2.SubmitRequest.FromString(raw)
        del raw
        batch = convert.submit_batch(req)
        check_specs(batch.specs, known=lambda n: None, renamed=batch.renamed, names=batch.names)
        specs, names = convert.batch_specs(batch, req.base_dir), batch.names
        del batch
        t1 = time.perf_counter()
        peak_part = max(peak_part, vm()["VmRSS"])
        del req
        core.check_submit(specs, names)
        core.submit(specs, now, checked=True, names=names)
        del specs, names
        submit_s += time.perf_counter() - t1
        parse_s += t1 - t
        if a.part >= 10_000:
            trim()  # as Dispatcher.trim_soon after a big Submit
    ph.mark("submitted", jobs=a.jobs, parse_s=round(parse_s, 2), submit_s=round(submit_s, 2),
            rss_parsed_max=peak_part)
    out = core.step(now)
    ph.mark("first pass", placed=len(out.placed))
    if a.no_run:
        return report(ph, a)
    t = time.perf_counter()
    done = 0
    while True:
        ids = wire(out) if a.wire else [task.id for task in out.placed]
        del out
        now += 1.0
        for tid in ids:
            core.task_started(tid, now)
        for tid in ids:
            core.task_exited(tid, 0, "", now)
        done += len(ids)
        out = core.step(now)
        if not out.placed:
            break
    run_s = time.perf_counter() - t
    ph.mark("all ended", tasks=done, tasks_per_s=round(done / run_s), unfinished=core.unfinished)
    if core.unfinished or core.job_counts[State.SUCCEED] != a.jobs:
        print(f"not every job SUCCEED: {dict(core.job_counts)}", file=sys.stderr)
        return 1
    return report(ph, a)


def report(ph: Phases, a: argparse.Namespace) -> int:
    if a.json:
        print(json.dumps(ph.rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
