"""Where a big Submit's time goes, in one process, nothing else running (issue 16: Submit <= 30 s at 1M).

    .venv/bin/python scripts/submit_split.py [--jobs N]

The client's conversion of N one-core jobs (``calls.submit_requests``: every job read and checked
before any is sent), then, for each part as the master gets it, the steps of ``service.Submit``:
parse, the batch (copies spelled out; ``alike`` for a request without), check_specs, specs_from_pb, check_submit, the journal's write, core.submit. Prints seconds
per step as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from pj.client import calls
from pj.common.speccheck import check_specs
from pj.master import convert
from pj.master.core import Core
from pj.master.journal import Journal
from pj.v1 import pj_pb2 as pb


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=1_000_000)
    a = ap.parse_args()
    jobs = [{"name": f"t{j}", "exec": "/bin/true", "cores": 1} for j in range(a.jobs)]
    t = time.perf_counter()
    parts = [r.SerializeToString() for r in calls.submit_requests(jobs, None, 1)]
    out = {"jobs": a.jobs, "parts": len(parts), "client_convert_s": time.perf_counter() - t}
    del jobs
    core = Core(now=0.0)
    steps = dict.fromkeys(("parse", "alike", "check_specs", "specs_from_pb", "check_submit", "journal", "core_submit"),
                          0.0)
    with tempfile.TemporaryDirectory() as d:
        journal = Journal(Path(d) / "journal.db")
        for wire in parts:
            t0 = time.perf_counter()
            req = pb.SubmitRequest.FromString(wire)
            ta = time.perf_counter()
            batch = convert.submit_batch(req)
            t1 = time.perf_counter()
            check_specs(batch.specs, known=lambda n: None, renamed=batch.renamed, names=batch.names)
            t2 = time.perf_counter()
            specs = convert.batch_specs(batch, req.base_dir)
            t3 = time.perf_counter()
            core.check_submit(specs, batch.names)
            t4 = time.perf_counter()
            journal.submit(wire, 0.0)
            t5 = time.perf_counter()
            core.submit(specs, 0.0, checked=True, names=batch.names)
            t6 = time.perf_counter()
            spans = ((t0, ta), (ta, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t5, t6))
            for k, (x, y) in zip(steps, spans, strict=True):
                steps[k] += y - x
        journal.close()
    out.update({f"master_{k}_s": v for k, v in steps.items()})
    out["master_total_s"] = sum(steps.values())
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
