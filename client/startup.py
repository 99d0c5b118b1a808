"""Starting a run's processes: what `pj run` (``run.Campaign``) and ``pj.client.LocalCluster`` share.

- the layout: local mode (K agents of N cores on this machine) or Slurm mode (one ``srun`` starting
  an agent on every node of the allocation, see ``slurm.py``), chosen from the environment;
- the workdir (a fresh ``pj-runs/<date-time>`` by default; a dead master's files are cleared);
- the master's command line: the layout's options plus keyword options turned into pj-master
  flags (``heartbeat_timeout=5`` -> ``--heartbeat-timeout 5s``, ``prefetch=False`` -> ``--no-prefetch``);
- starting the master and the agents as children (``procs.py``) and waiting for DIR/master.json.

The agents start together with the master: they wait for DIR/master.json, so their start-up
overlaps the master's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pj.common import perms
from pj.common.workdir import MASTER_FILE, TOKEN_FILE, MasterAddress, WorkdirError, find_master, poll_interval

from . import slurm
from .formats import plural
from .procs import CampaignError, Child, pid_alive, spawn

MasterCmd = Callable[[Path, Sequence[str]], list[str]]  # workdir, options -> argv
AgentCmd = Callable[[Path, int, int, int | None], list[str]]  # workdir, index, cores, gpus -> argv
SrunCmd = Callable[[Path, slurm.Allocation, Mapping[str, str]], list[str]]  # workdir, allocation, env

# Agents wait this long for DIR/master.json; a resumed master replays its journal first, so they
# wait longer than the agent's default. The starter gives up on the master after its own timeout.
AGENT_WAIT_MASTER = "600"

# The pj-master options a caller may set by keyword (see `python -m pj.master --help`) and how
# each is written: --workdir, --expect-nodes and --slurm/--no-slurm follow from the layout.
#   duration: seconds (5 -> "5s") or a duration string ("2m"); count: a whole number; text: a string;
#   flag: True adds --name; switch: True --name, False --no-name; a tuple: one of those choices.
MASTER_OPTIONS: dict[str, str | tuple[str, ...]] = {
    "listen": "text",
    "node_timeout": "duration",
    "missing_nodes": ("continue", "fail"),
    "heartbeat_timeout": "duration",
    "crash_limit": "count",
    "resume": "flag",
    "tls": "flag",
    "prefetch": "switch",
    "log_level": ("debug", "info", "warning", "error"),
    "log_format": ("console", "json"),
    "share_group": "flag",
}


def master_argv(workdir: Path, options: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "pj.master", "--workdir", str(workdir), *options]


def agent_argv(workdir: Path, index: int, cores: int, gpus: int | None) -> list[str]:
    argv = [sys.executable, "-m", "pj.agent", "--workdir", str(workdir), "--name", f"node{index}"]
    argv += ["--cores", str(cores), "--wait-master", AGENT_WAIT_MASTER]
    if gpus is not None:  # fake ids 0..G-1 (--gpus 0: none, not the machine's)
        argv += ["--gpus", ",".join(str(g) for g in range(gpus))]
    elif index > 0:  # the machine's own GPUs (found by the agent) go to the first local agent only
        argv += ["--gpus", ""]
    return argv


def default_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_workdir(base: Path, suffix: str = "") -> Path:
    """``base/pj-runs/YYYYmmdd-HHMMSS<suffix>`` (with -2, -3... added if that exists already)."""
    stamp = time.strftime("%Y%m%d-%H%M%S") + suffix
    root = base / "pj-runs"
    path = root / stamp
    n = 2
    while path.exists():
        path = root / f"{stamp}-{n}"
        n += 1
    return path


def fmt_seconds(seconds: float) -> str:
    """A duration for the master's command line, in a form no reader can take for minutes."""
    return f"{seconds:g}s"


@dataclass(frozen=True)
class Layout:
    """Where the agents run: every node of a Slurm allocation, or ``nodes`` x ``cores`` here."""

    alloc: slurm.Allocation | None = None
    nodes: int | None = None  # local mode only, like cores and gpus
    cores: int | None = None  # every node's; None when node_cores differ
    gpus: int | None = None
    node_cores: tuple[int, ...] = ()  # cores per node, when given per node
    names: tuple[str, ...] = ()  # the agents' names, when given (default node0, node1...)

    def agent(self, index: int) -> tuple[str, int]:
        """The name and cores of local agent ``index``."""
        name = self.names[index] if self.names else f"node{index}"
        cores = self.node_cores[index] if self.node_cores else self.cores
        assert cores is not None
        return name, cores

    @property
    def expected(self) -> int:
        """How many agents should register."""
        return len(self.alloc.nodes) if self.alloc is not None else self.nodes or 0

    def describe(self) -> str:
        if self.alloc is not None:
            return f"{self.alloc.describe()}, one agent per node"
        if self.cores is None:
            return f"{plural(self.nodes or 0, 'agent')} of {'+'.join(map(str, self.node_cores))} cores"
        return f"{plural(self.nodes or 0, 'agent')} x {plural(self.cores or 0, 'core')}"


def choose_layout(
    env: Mapping[str, str], slurm_mode: bool | None, nodes: int | None, cores: int | Sequence[int] | None,
    gpus: int | None, names: Sequence[str] | None = None,
) -> Layout:
    """Slurm mode (``slurm_mode`` None: when $SLURM_JOB_ID is set) or local mode, each with its
    checks; raises slurm.SlurmModeError for bad usage, before anything starts. ``cores`` may be a
    list (one entry per node) and ``names`` name the local agents; ValueError when they disagree."""
    per_node = tuple(cores) if cores is not None and not isinstance(cores, int) else ()
    if slurm.wants_slurm(env, slurm_mode):
        alloc = slurm.allocation(env)
        given = per_node[0] if per_node else cores if isinstance(cores, int) else None
        slurm.refuse_local_options(alloc, nodes, given, gpus)
        if names:
            raise slurm.SlurmModeError("names: only for local mode; in Slurm mode the agents take their nodes' names")
        slurm.srun_argv(Path("."), alloc, env)  # a bad $PJ_SRUN_ARGS: before anything starts
        return Layout(alloc=alloc)
    if per_node:
        if nodes is not None and nodes != len(per_node):
            raise ValueError(f"cores: {len(per_node)} entries (one per node) for nodes={nodes}")
        if any(not isinstance(c, int) or isinstance(c, bool) or c < 1 for c in per_node):
            raise ValueError(f"cores: whole numbers of at least 1 per node, not {list(per_node)}")
        nodes = len(per_node)
    count = nodes if nodes is not None else len(names) if names else 1
    if names is not None:
        if len(names) != count or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"names: {count} distinct node names, one per node, not {list(names)}")
    if per_node:
        uniform = per_node[0] if len(set(per_node)) == 1 else None
    else:
        uniform = cores if isinstance(cores, int) else default_cores()
    return Layout(nodes=count, cores=uniform, gpus=gpus, node_cores=per_node if uniform is None else (),
                  names=tuple(names or ()))


def master_flags(options: Mapping[str, object]) -> list[str]:
    """Keyword options -> pj-master flags, in the given order; None values are left out. TypeError
    names an unknown keyword (and the known ones) or a value of the wrong type; ValueError a bad choice."""
    flags: list[str] = []
    for key, value in options.items():
        kind = MASTER_OPTIONS.get(key)
        if kind is None:
            raise TypeError(f"{key!r} is not a pj-master option; the known ones: {', '.join(MASTER_OPTIONS)}")
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if kind in ("flag", "switch"):
            if not isinstance(value, bool):
                raise TypeError(f"{key}: True or False, not {value!r}")
            flags += [flag] if value else ["--no-" + flag[2:]] if kind == "switch" else []
        elif isinstance(kind, tuple):
            if value not in kind:
                raise ValueError(f"{key}: one of {', '.join(map(repr, kind))}, not {value!r}")
            flags += [flag, str(value)]
        elif kind == "duration" and isinstance(value, (int, float, str)) and not isinstance(value, bool):
            flags += [flag, value if isinstance(value, str) else fmt_seconds(value)]
        elif (kind == "count" and isinstance(value, int) and not isinstance(value, bool)) or (
            kind == "text" and isinstance(value, str)
        ):
            flags += [flag, str(value)]
        else:
            want = {"duration": "seconds or a duration string ('90s', '2m')", "count": "a whole number"}
            raise TypeError(f"{key}: {want.get(kind, 'a string')}, not {value!r}")
    return flags


def master_options(layout: Layout, env: Mapping[str, str], options: Mapping[str, object]) -> list[str]:
    """The master's options: the layout's (what to expect, Slurm or not), then ``master_flags``."""
    if layout.alloc is not None:
        opts = slurm.master_options(layout.alloc)
    else:
        opts = ["--expect-nodes", str(layout.nodes)]
        if env.get(slurm.JOB_ID_ENV):  # local mode inside an allocation
            opts.append("--no-slurm")
    return opts + master_flags(options)


def prepare_workdir(
    workdir: Path | None, start_dir: Path, layout: Layout, resume: bool = False, group: bool | None = None,
) -> Path:
    """Create the workdir (default: a fresh one under ``start_dir``) with mode 0700, or 0750 shared
    with its group (``group``; None: as ``$PJ_SHARE`` says, perms.py); CampaignError if a master
    still runs there. A dead master's master.json goes (and its token, unless resuming)."""
    if workdir is None:
        suffix = f"-job{layout.alloc.job_id}" if layout.alloc is not None else ""
        workdir = default_workdir(start_dir, suffix)
    try:
        mode = perms.modes(group).dir
    except perms.ShareError as e:
        raise CampaignError(str(e)) from None
    try:
        perms.make_dir(workdir, mode)
    except OSError as e:
        raise CampaignError(f"cannot create the workdir {workdir}: {e.strerror or e}") from None
    info = workdir / MASTER_FILE
    if info.exists():
        try:
            pid = int(json.loads(info.read_text()).get("pid") or 0)
        except (OSError, ValueError, AttributeError, TypeError):
            pid = 0
        if pid and pid_alive(pid):
            raise CampaignError(f"a master (pid {pid}) already runs in {workdir}; give another workdir")
        # A dead master's files: a new one writes its own. A resumed master may keep the token
        # (agents that outlived the old master come back with it), so leave it then.
        for stale in (info,) if resume else (info, workdir / TOKEN_FILE):
            stale.unlink(missing_ok=True)
    return workdir


def start_master(workdir: Path, options: Sequence[str], master_cmd: MasterCmd = master_argv) -> Child:
    return spawn("master", "the master", master_cmd(workdir, options), workdir / "master.log")


def start_agents(
    workdir: Path,
    layout: Layout,
    env: Mapping[str, str],
    agent_cmd: AgentCmd = agent_argv,
    srun_cmd: SrunCmd = slurm.srun_argv,
    relay_group: int = 0,
) -> list[Child]:
    """Local mode: one child per agent. Slurm mode: ONE srun, one agent per node, each logging to
    DIR/agent-<node>.log; with ``relay_group`` G, first a second srun of one pj-relay per G nodes
    (DIR/relay-<node>.log), which the agents dial (the agents' srun stays the first child)."""
    if layout.alloc is not None:
        argv = srun_cmd(workdir, layout.alloc, env)
        if not relay_group:
            return [spawn("srun", "the agents' srun", argv, workdir / slurm.SRUN_LOG)]
        relays_dir = workdir / slurm.RELAYS_DIR
        shutil.rmtree(relays_dir, ignore_errors=True)  # addresses of an earlier allocation's relays
        perms.make_dir(relays_dir, perms.modes(env=env).dir)
        relays = spawn("relays", "the relays' srun", slurm.relay_srun_argv(workdir, layout.alloc, env, relay_group),
                       workdir / "srun-relays.log")
        agents = spawn("srun", "the agents' srun", [*argv, f"--relay-group={relay_group}"], workdir / slurm.SRUN_LOG)
        return [agents, relays]
    assert layout.nodes is not None
    children = []
    for i in range(layout.nodes):
        name, cores = layout.agent(i)
        argv = agent_cmd(workdir, i, cores, layout.gpus)
        if layout.names:  # the agent's own name in place of node<i>
            argv[argv.index("--name") + 1] = name
        children.append(spawn(name, f"the agent {name}", argv, workdir / f"agent-{name}.log"))
    return children


def wait_ready(master: Child, workdir: Path, timeout: float) -> MasterAddress:
    """The master's address once it has written DIR/master.json; CampaignError if it exits first
    (with the end of its log) or takes longer than ``timeout``."""
    start = time.monotonic()
    while True:
        if master.proc.poll() is not None:
            raise master.died()
        try:
            return find_master(workdir)
        except WorkdirError as e:
            waited = time.monotonic() - start
            if waited > timeout:
                raise CampaignError(
                    f"the master did not start within {timeout:g} s ({e}); see {master.log}"
                ) from None
            time.sleep(poll_interval(waited))  # often at first: it is usually there within tenths of a second
