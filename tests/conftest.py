"""Shared fixtures: real master and agent processes in a temporary workdir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With PJ_REQUIRE_SLURM=1 (CI sets it after starting the cluster), a `slurm` test that skips
    fails instead: CI must prove the real Slurm path, never pass by skipping it."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("PJ_REQUIRE_SLURM") == "1" and item.get_closest_marker("slurm"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"PJ_REQUIRE_SLURM=1 but this Slurm test skipped: {reason}"


class Cluster:
    """A real pj-master and N real pj-agent processes on this machine, talking gRPC over sockets."""

    def __init__(
        self, workdir: Path, nodes: int, cores: int, expect: bool = True, expect_nodes: int | None = None,
        master_args: Sequence[str] = (),
    ) -> None:
        self.workdir = workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        args = [sys.executable, "-m", "pj.master", "--workdir", str(workdir), *master_args]
        if expect_nodes is not None:  # agents to come later, through add_agent
            args += ["--expect-nodes", str(expect_nodes)]
        elif expect:
            args += ["--expect-nodes", str(nodes)]
        self.master = self._spawn(args, "master.log")
        deadline = time.monotonic() + 20
        while not (workdir / "master.json").exists():
            if self.master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("master did not start:\n" + (workdir / "master.log").read_text())
            time.sleep(0.02)
        self.agents = [self.add_agent(f"node{i}", cores) for i in range(nodes)]

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.workdir / log, "wb")
        p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy())
        self.procs.append(p)
        return p

    def add_agent(self, name: str, cores: int, *extra: str) -> subprocess.Popen[bytes]:
        return self._spawn(
            [sys.executable, "-m", "pj.agent", "--workdir", str(self.workdir), "--name", name,
             "--cores", str(cores), *extra],
            f"agent-{name}.log",
        )

    def kill_master(self) -> None:
        """SIGKILL the master (no report, no goodbye to its agents) and forget where it was."""
        self.master.kill()
        self.master.wait()
        (self.workdir / "master.json").unlink()

    def resume_master(self, log: str = "master-resumed.log") -> None:
        """Start ``pj-master --resume`` on the workdir and wait until it is listening."""
        self.master = self._spawn([sys.executable, "-m", "pj.master", "--workdir", str(self.workdir), "--resume"], log)
        deadline = time.monotonic() + 20
        while not (self.workdir / "master.json").exists():
            if self.master.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the resumed master did not start:\n" + (self.workdir / log).read_text())
            time.sleep(0.02)

    def client(self):  # type: ignore[no-untyped-def]
        from pj.client import Client

        return Client(self.workdir)

    def wait_exit(self, timeout: float = 30) -> int:
        rc = self.master.wait(timeout)
        for p in self.procs:
            p.wait(timeout)
        return rc

    def stop(self) -> None:
        # SIGTERM first: an agent then kills its tasks' process groups before it exits.
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def cluster_factory(tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    made: list[Cluster] = []

    def make(nodes: int = 1, cores: int = 2, expect: bool = True, expect_nodes: int | None = None,
             master_args: Sequence[str] = ()) -> Cluster:
        wd = tmp_path / f"run{len(made)}"
        wd.mkdir()
        c = Cluster(wd, nodes, cores, expect, expect_nodes, master_args)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()
