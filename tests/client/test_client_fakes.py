"""A small fake PilotJob master for the client tests: a real gRPC server on 127.0.0.1:0.

Imported by test_client_api.py and test_client_cli.py (no tests here). Run as a script it is a
fake `python -m pj.master` for `pj run`: it serves until Finish, marks every submitted job
SUCCEED (FAILED for names starting with "bad"; jobs named "hang*" never end; a job named
"crash*" makes it die with exit code 5; a job named "notice*" makes it send a run notice), writes
DIR/jobs.jsonl and DIR/fake-finished (the fake agents' cue to exit), and exits 0. It writes its
options to DIR/fake-master-argv.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc

from pj.common.specbatch import SpecBatch
from pj.common.workdir import TOKEN_METADATA_KEY, write_master_info, write_token
from pj.v1 import pj_pb2, pj_pb2_grpc

S = pj_pb2.JobState
# A QCG-PilotJob file the parser accepts with remarks (an ignored key, an ignored request).
QCG_FILE = [
    {"request": "submit", "extra": 1,
     "jobs": [{"name": "q", "execution": {"exec": "/bin/true"}, "resources": {"numCores": {"exact": 1}}}]},
    {"request": "status"},
]
FINAL = {S.JOB_STATE_SUCCEED, S.JOB_STATE_FAILED, S.JOB_STATE_CANCELED, S.JOB_STATE_OMITTED}


class FakeMaster(pj_pb2_grpc.PilotJobServicer):
    """Keeps jobs as JobSummary messages; tests move them with ``set_state``."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.jobs: dict[str, pj_pb2.JobSummary] = {}
        self.submits: list[pj_pb2.SubmitRequest] = []
        self.finishes: list[bool] = []
        self.list_requests: list[pj_pb2.ListRequest] = []
        self.default_page = 2
        self.finishing = False
        self.nodes: list[pj_pb2.NodeResources] = [
            pj_pb2.NodeResources(name="node0", cores=4, cores_free=3, gpus=["0", "1"], gpus_free=1,
                                 memory_bytes=8 << 30, online=True, memory_free_bytes=6 << 30),
        ]
        self.cond = threading.Condition()
        self.version = 0
        self.changed_at: dict[str, int] = {}
        self.on_submit: list[object] = []  # callables(name) run after a Submit
        self.notices: list[str] = []  # every notice so far
        self.notices_sent = 0  # by Watch streams (one stream at a time in these tests)
        self.nodes_missing: list[str] = []

    # ------------------------------------------------------------ test helpers

    def add(self, name: str, state: int = S.JOB_STATE_QUEUED, reason: str = "", iterations: int = 0) -> None:
        with self.cond:
            self.jobs[name] = pj_pb2.JobSummary(name=name, state=state, reason=reason, iterations=iterations)
            self._changed(name)

    def set_state(self, name: str, state: int, reason: str = "") -> None:
        with self.cond:
            j = self.jobs[name]
            j.state = state
            j.reason = reason
            if j.iterations:
                j.iterations_done = j.iterations if state in FINAL else 0
                j.iterations_failed = j.iterations if state == S.JOB_STATE_FAILED else 0
            self._changed(name)

    def set_later(self, delay: float, name: str, state: int, reason: str = "") -> threading.Timer:
        t = threading.Timer(delay, self.set_state, (name, state, reason))
        t.daemon = True
        t.start()
        return t

    def notice(self, text: str) -> None:
        with self.cond:
            self.notices.append(text)
            self.version += 1
            self.cond.notify_all()

    def _changed(self, name: str) -> None:
        self.version += 1
        self.changed_at[name] = self.version
        self.cond.notify_all()

    def _unfinished(self, names: list[str] | None) -> int:
        jobs = [self.jobs[n] for n in names] if names else list(self.jobs.values())
        return sum(1 for j in jobs if j.state not in FINAL)

    def _task_counts(self) -> list[pj_pb2.StateCount]:
        counts: dict[int, int] = {}
        for j in self.jobs.values():
            if j.state != S.JOB_STATE_QUEUED:
                counts[j.state] = counts.get(j.state, 0) + max(j.iterations, 1)
        return [pj_pb2.StateCount(state=s, count=n) for s, n in counts.items()]

    # ------------------------------------------------------------ the service

    def _auth(self, context: grpc.ServicerContext) -> None:
        md = dict(context.invocation_metadata())
        if md.get(TOKEN_METADATA_KEY) != self.token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong pj-token")

    def _known(self, names: list[str], context: grpc.ServicerContext) -> None:
        for n in names:
            if n not in self.jobs:
                context.abort(grpc.StatusCode.NOT_FOUND, f"no job named {n!r}")

    def Submit(self, request: pj_pb2.SubmitRequest, context: grpc.ServicerContext) -> pj_pb2.SubmitReply:
        self._auth(context)
        batch = SpecBatch.from_request(request)
        with self.cond:
            seen = set(self.jobs)
            for i, name in enumerate(batch.names):
                if name in seen:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"job {name!r} (#{i + 1}): field 'name': a job with this name exists")
                seen.add(name)
            self.submits.append(request)
            for spec, name in zip(batch.specs, batch.names, strict=True):
                its = spec.iterations.stop - spec.iterations.start if spec.HasField("iterations") else 0
                self.add(name, iterations=its)
        for hook in self.on_submit:
            for name in batch.names:
                hook(name)  # type: ignore[operator]
        return pj_pb2.SubmitReply(names=batch.names)

    def Status(self, request: pj_pb2.StatusRequest, context: grpc.ServicerContext) -> pj_pb2.StatusReply:
        self._auth(context)
        with self.cond:
            counts: dict[int, int] = {}
            for j in self.jobs.values():
                counts[j.state] = counts.get(j.state, 0) + 1
            return pj_pb2.StatusReply(
                jobs=[pj_pb2.StateCount(state=s, count=n) for s, n in counts.items()],
                tasks=self._task_counts(),
                jobs_total=len(self.jobs),
                jobs_unfinished=self._unfinished(None),
                nodes=1, cores_total=4, cores_used=1, started_at=time.time() - 75,
                finishing=self.finishing, address="fake:1", notices=self.notices,
            )

    def Info(self, request: pj_pb2.InfoRequest, context: grpc.ServicerContext) -> pj_pb2.InfoReply:
        self._auth(context)
        self._known(list(request.names), context)
        out = []
        for n in request.names:
            j = self.jobs[n]
            info = pj_pb2.JobInfo(summary=j, history=[pj_pb2.StateChange(state=S.JOB_STATE_QUEUED, time=1.7e9)])
            if request.with_tasks:
                t = pj_pb2.TaskInfo(name=f"{n}:0" if j.iterations else n, iteration=0,
                                    has_iteration=bool(j.iterations), state=j.state, reason="",
                                    shares=[pj_pb2.NodeShare(node="node0", cores=[0, 1, 2, 5], gpus=["1"])])
                if j.state in FINAL:
                    t.exit_code = 0 if j.state == S.JOB_STATE_SUCCEED else 3
                info.tasks.append(t)
            out.append(info)
        return pj_pb2.InfoReply(jobs=out)

    def List(self, request: pj_pb2.ListRequest, context: grpc.ServicerContext) -> pj_pb2.ListReply:
        self._auth(context)
        self.list_requests.append(request)
        size = request.page_size or self.default_page
        start = int(request.page_token or 0)
        jobs = list(self.jobs.values())
        out: list[pj_pb2.JobSummary] = []
        i = start
        while i < len(jobs) and len(out) < size:
            if not request.states or jobs[i].state in request.states:
                out.append(jobs[i])
            i += 1
        return pj_pb2.ListReply(jobs=out, next_page_token=str(i) if i < len(jobs) else "")

    def Cancel(self, request: pj_pb2.CancelRequest, context: grpc.ServicerContext) -> pj_pb2.CancelReply:
        self._auth(context)
        self._known(list(request.names), context)
        reply = pj_pb2.CancelReply()
        for n in request.names:
            if self.jobs[n].state in FINAL:
                reply.already_finished.append(n)
            else:
                self.set_state(n, S.JOB_STATE_CANCELED, "canceled by the user")
                reply.canceled.append(n)
        return reply

    def _event(self, names: list[str] | None, changed: list[str], counts_only: bool = False) -> pj_pb2.WatchEvent:
        news, self.notices_sent = self.notices[self.notices_sent :], len(self.notices)
        if counts_only:  # like the real master: counts per state, and only the jobs that ended badly
            changed = [n for n in changed if self.jobs[n].state in (S.JOB_STATE_FAILED, S.JOB_STATE_CANCELED, S.JOB_STATE_OMITTED)]
        ev = pj_pb2.WatchEvent(
            notices=news,
            changed=[self.jobs[n] for n in changed],
            watched_total=len(names) if names else len(self.jobs),
            watched_unfinished=self._unfinished(names),
            tasks=self._task_counts(),
            master_finishing=self.finishing,
        )
        if counts_only:
            per_state: dict[int, int] = {}
            for n in names or list(self.jobs):
                per_state[self.jobs[n].state] = per_state.get(self.jobs[n].state, 0) + 1
            ev.jobs.extend(pj_pb2.StateCount(state=k, count=v) for k, v in sorted(per_state.items()))
        return ev

    def Watch(self, request: pj_pb2.WatchRequest, context: grpc.ServicerContext) -> Iterator[pj_pb2.WatchEvent]:
        self._auth(context)
        names = list(request.names) or None
        if names:
            self._known(names, context)
        with self.cond:
            seen = self.version
            # Like the real master: a watch of every job starts with counts only.
            first = self._event(names, names or [], request.counts_only)
        yield first
        while context.is_active():
            with self.cond:
                self.cond.wait(timeout=0.1)
                if self.version == seen:
                    continue
                changed = [n for n, v in self.changed_at.items() if v > seen and (names is None or n in names)]
                seen = self.version
                ev = self._event(names, changed, request.counts_only)
            if changed or ev.notices:
                yield ev

    def Resources(self, request: pj_pb2.ResourcesRequest, context: grpc.ServicerContext) -> pj_pb2.ResourcesReply:
        self._auth(context)
        return pj_pb2.ResourcesReply(nodes=self.nodes, nodes_expected=2, nodes_missing=self.nodes_missing)

    def Finish(self, request: pj_pb2.FinishRequest, context: grpc.ServicerContext) -> pj_pb2.FinishReply:
        self._auth(context)
        self.finishes.append(request.drain)
        with self.cond:
            self.finishing = True
            if not request.drain:
                for n, j in self.jobs.items():
                    if j.state not in FINAL:
                        self.set_state(n, S.JOB_STATE_CANCELED, "the master was told to stop")
            self.cond.notify_all()
        return pj_pb2.FinishReply()


class Running:
    """A FakeMaster served on 127.0.0.1:0, with master.json and token in ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.token = write_token(workdir)
        self.fake = FakeMaster(self.token)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pj_pb2_grpc.add_PilotJobServicer_to_server(self.fake, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"
        self.server.start()
        write_master_info(workdir, {"address": self.address, "pid": os.getpid()})

    def stop(self) -> None:
        self.server.stop(grace=None)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- a fake `python -m pj.master`


def _serve_campaign(workdir: Path, argv: list[str]) -> int:
    m = Running(workdir)
    fake = m.fake
    (workdir / "fake-master-argv.json").write_text(json.dumps(argv))

    def run_job(name: str) -> None:
        if name.startswith("notice"):
            fake.notice(f"node(s) n3 did not register within 1 s; going on with 1 of 2 nodes ({name})")
        if name.startswith("crash"):
            print("fake master: crashing", flush=True)
            threading.Timer(0.3, os._exit, (5,)).start()
            return
        if name.startswith("hang"):
            fake.set_later(0.1, name, S.JOB_STATE_EXECUTING)
            return
        fake.set_later(0.1, name, S.JOB_STATE_EXECUTING)
        if name.startswith("bad"):
            fake.set_later(0.3, name, S.JOB_STATE_FAILED, "exit code 3")
        else:
            fake.set_later(0.3, name, S.JOB_STATE_SUCCEED)

    fake.on_submit.append(run_job)
    while not (fake.finishing and fake._unfinished(None) == 0):
        time.sleep(0.05)
    with (workdir / "jobs.jsonl").open("w") as f:
        for j in fake.jobs.values():
            f.write(json.dumps({"name": j.name, "state": S.Name(j.state).removeprefix("JOB_STATE_")}) + "\n")
    (workdir / "fake-finished").write_text("")
    time.sleep(0.2)  # let the watch see the last events
    m.stop()
    (workdir / "master.json").unlink(missing_ok=True)
    print("fake master stopped", flush=True)
    return 0


FAKE_AGENT = (
    "import pathlib, sys, time\n"
    "wd = pathlib.Path(sys.argv[1]); t = time.monotonic()\n"
    "while not (wd / 'fake-finished').exists() and time.monotonic() - t < 60: time.sleep(0.05)\n"
)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--workdir", required=True)
    known, _ = p.parse_known_args()
    sys.exit(_serve_campaign(Path(known.workdir).absolute(), sys.argv[1:]))
