"""``pj.client.LocalCluster``: a master and its agents for the length of a ``with`` block.

    from pj.client import LocalCluster

    with LocalCluster(nodes=2, cores=4) as cluster, cluster.client() as pj:
        pj.submit([{"name": "hello", "exec": "/bin/echo", "args": ["hi"], "stdout": "hello.out"}])
        print(pj.wait())                       # {'hello': 'SUCCEED'}

Like `pj run` it starts ``python -m pj.master`` and the agents as processes of their own
(``startup.py``; inside a Slurm allocation one ``srun`` of agents over every node), and returns
once every agent has joined. On leaving the block, an exception or Ctrl-C included, on
``close()``, or when the object is garbage-collected or the interpreter exits unclosed, the master is
asked to Finish(drain=False) (what runs is canceled; the agents kill their tasks and exit), every
process is waited for, and whatever is left is killed (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from pj.common.workdir import poll_interval

from . import slurm, startup
from .errors import MasterUnreachable, PJError
from .procs import CampaignError, Child, kill_all, wait_all, wait_exit

if TYPE_CHECKING:  # api pulls in grpc: imported once the master and agents are starting
    from .api import Client
    from .convert import Resources

# After the master has exited, agents it told to stop are gone within tenths of a second; one that
# never reached it waits for it (--wait-master) and is stopped with SIGTERM after this long.
AGENT_GRACE_S = 2.0


class ClusterError(PJError):
    """The cluster could not start (the master or an agent exited, or did not join in time); the
    message is one line naming the log to read."""


def _one_line(e: CampaignError) -> str:
    """``the agent node0 exited with code 2; the end of DIR/agent-node0.log: <its last line>``."""
    last = next((line.strip() for line in reversed(e.detail) if line.strip()), "")
    text = str(e)
    return f"{text} {last}" if last else text.rstrip(":")


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """A Ctrl-C while the children are being spawned is raised once they are all recorded (a child
    spawned but not yet recorded would be left behind)."""
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got:
        raise KeyboardInterrupt


@dataclass
class _Processes:
    """What the finalizer needs (never the LocalCluster itself, so that it can be collected)."""

    master: Child | None = None
    agents: list[Child] = field(default_factory=list)
    client: Client | None = None  # set once the master answers: it is then asked to finish
    exit_timeout: float = 30.0

    def stop(self) -> None:
        """Finish(drain=False) if the master answers, else SIGTERM to all; wait; kill what is left."""
        asked = False
        if self.client is not None:
            if self.master is not None and self.master.proc.poll() is None:
                try:
                    self.client.finish(drain=False)
                    asked = True
                except Exception:  # PJError; or grpc itself going away at interpreter exit
                    # Perhaps finishing already (a finish() of the user's): it exits by itself then.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        wait_exit(self.master.proc, 5.0)
                    asked = self.master.proc.returncode is not None
            self.client.close()
            self.client = None
        if not asked:
            for c in ([self.master] if self.master else []) + self.agents:
                c.signal(signal.SIGTERM)  # the master and the agents cancel their tasks and exit
        deadline = time.monotonic() + self.exit_timeout
        try:
            if self.master is not None:
                wait_all([self.master], self.exit_timeout)
            for a in self.agents:  # told to stop by the master; one that never joined is still waiting
                try:
                    wait_exit(a.proc, min(max(deadline - time.monotonic(), 0.1), AGENT_GRACE_S))
                except subprocess.TimeoutExpired:
                    a.signal(signal.SIGTERM)
            wait_all(self.agents, max(deadline - time.monotonic(), 3.0))
        except KeyboardInterrupt:  # Ctrl-C again: kill at once
            kill_all(([self.master] if self.master else []) + self.agents)
            raise


class LocalCluster:
    """A PJ master and its agents as processes of this machine (or of this Slurm allocation).

    ``nodes`` agents (default 1) of ``cores`` cores each (default: every usable core; more emulates
    bigger nodes) and ``gpus`` GPUs, like ``pj run --nodes/--cores/--gpus``; ``cores`` may also be
    a list, one entry per node (``[2, 3]``), and ``names`` name the agents (default node0, node1...). ``workdir``: where the
    master and the agents keep their files and logs (default: a fresh ``pj-runs/<date-time>`` under
    the current directory); it is kept afterwards. Inside a Slurm allocation ($SLURM_JOB_ID set) it
    runs one agent on every node of the allocation, as `pj run` does (``slurm=False``: local mode
    anyway; ``slurm=True``: insist, an error outside an allocation); nodes/cores/gpus are then
    refused (slurm.SlurmModeError). ``start_timeout``: seconds to wait for the master and for every
    agent to join (ClusterError after that). Other keywords are pj-master options
    (``heartbeat_timeout=5`` -> ``--heartbeat-timeout 5s``, ``prefetch=False``, ``tls=True``...; see
    ``startup.MASTER_OPTIONS``); an unknown one is a TypeError.
    """

    exit_timeout: float = 30.0  # close(): how long the master and the agents get to exit

    def __init__(
        self,
        nodes: int | None = None,
        cores: int | Sequence[int] | None = None,
        gpus: int | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        names: Sequence[str] | None = None,
        slurm: bool | None = None,
        start_timeout: float = 60.0,
        **master_options: object,
    ) -> None:
        if nodes is not None and nodes < 1:
            raise ValueError(f"nodes: at least 1, not {nodes}")
        env = os.environ
        self.layout = startup.choose_layout(env, slurm, nodes, cores, gpus, names)  # SlurmModeError, ValueError
        options = startup.master_options(self.layout, env, master_options)  # TypeError, ValueError
        self.start_timeout = start_timeout
        self._procs = _Processes(exit_timeout=self.exit_timeout)
        self._finalizer = weakref.finalize(self, self._procs.stop)
        self.workdir = Path(workdir).absolute() if workdir is not None else Path()
        self.address = ""
        self._joined: Resources | None = None  # what the master listed once every agent had joined
        try:
            resume = bool(master_options.get("resume"))
            self.workdir = startup.prepare_workdir(
                Path(workdir).absolute() if workdir is not None else None, Path.cwd(), self.layout, resume,
                True if master_options.get("share_group") else None)
            with _interrupts_held():
                self._procs.master = startup.start_master(self.workdir, options)
                self._procs.agents = startup.start_agents(self.workdir, self.layout, env)
            from .api import Client  # grpc's import overlaps the master's start-up

            self.address = startup.wait_ready(self._procs.master, self.workdir, start_timeout).address
            self._procs.client = Client(self.workdir, timeout=10.0)
            self._joined = self._wait_joined(self._procs.client)
        except CampaignError as e:
            self.close()
            raise ClusterError(_one_line(e)) from None
        except BaseException:  # KeyboardInterrupt while starting, too: leave nothing behind
            self.close()
            raise

    # ------------------------------------------------------------ what a user sees

    @property
    def nodes(self) -> int:
        """How many nodes (agents) the cluster has."""
        return self.layout.expected

    @property
    def cores(self) -> int | None:
        """Cores of each node; in Slurm mode those the nodes offer (None if they differ)."""
        if self.layout.cores is not None or self._joined is None:
            return self.layout.cores
        counts = {n.cores for n in self._joined.nodes}
        return counts.pop() if len(counts) == 1 else None

    @property
    def gpus(self) -> int | None:
        return self.layout.gpus

    @property
    def slurm(self) -> bool:
        """Whether the agents run on the nodes of a Slurm allocation."""
        return self.layout.alloc is not None

    @property
    def exit_codes(self) -> dict[str, int | None]:
        """Each process's exit code by name (``master``, ``node0``..., or ``srun`` for the agents'
        srun in Slurm mode); None while it runs."""
        p = self._procs
        return {c.name: c.proc.poll() for c in ([p.master] if p.master else []) + p.agents}

    def client(self, timeout: float | None = 30.0) -> Client:
        """A new ``pj.client.Client`` connected to this cluster's master; close it (or use ``with``)."""
        from .api import Client

        return Client(self.workdir, timeout=timeout)

    def close(self) -> None:
        """Cancel what runs and stop the master and the agents (waits for them). Idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else self.address
        return f"LocalCluster({self.layout.describe()}, workdir={str(self.workdir)!r}, {state})"

    # ------------------------------------------------------------ start-up

    def _wait_joined(self, client: Client) -> Resources:
        """Until every expected agent has registered; CampaignError if the master or an agent (the
        agents' srun) exits first, or after start_timeout."""
        want, start = self.layout.expected, time.monotonic()
        while True:
            self._check_children()
            try:
                res = client.resources()
                if len(res.nodes) >= want:
                    return res
            except MasterUnreachable:  # not answering yet: the master's exit is seen above
                res = None
            waited = time.monotonic() - start
            if waited > self.start_timeout:
                have = sorted(n.name for n in res.nodes) if res is not None else []
                logs = "agent-*.log, srun.log" if self.slurm else "agent-*.log"
                raise CampaignError(f"{len(have)} of {want} agents joined within {self.start_timeout:g} s "
                                    f"({', '.join(have) or 'none'}); see {self.workdir}/{{{logs}}}")
            time.sleep(poll_interval(waited))

    def _check_children(self) -> None:
        p = self._procs
        assert p.master is not None
        if p.master.proc.poll() is not None:
            raise p.master.died()
        for a in p.agents:
            if a.proc.poll() is not None:
                if self.slurm:
                    tails = slurm.log_tails([*sorted(self.workdir.glob("agent-*.log")), a.log], 1)
                    raise CampaignError(f"the agents' srun exited with code {a.proc.returncode} while "
                                        f"starting; the end of its logs:", tails)
                raise a.died()
