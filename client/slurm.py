"""Slurm mode of `pj run`: a whole campaign inside ONE Slurm allocation.

Inside an allocation (``SLURM_JOB_ID`` is set; ``--slurm`` insists on it, ``--local`` declines it)
`pj run` starts the master here (the batch node under sbatch; where salloc runs its command under
salloc), listening on every interface and told to expect the allocation's nodes by name; then ONE
job step starts one agent per node::

    srun --overlap --nodes=N --ntasks=N --ntasks-per-node=1 --kill-on-bad-exit=0 --wait=0
         --cpu-bind=none --job-name=pj-agents  PYTHON -m pj.agent --workdir DIR  (> DIR/agent-NODE.log)

- ``--overlap``: later steps (a task's own ``srun``, mpirun's daemons) may share the agents' CPUs;
  without it Slurm 22.05 holds every further step until the agents end.
- ``--kill-on-bad-exit=0 --wait=0``: one agent that fails does not take the others down.
- ``--cpu-bind=none``: an agent must see every CPU Slurm gave the job on its node (it binds each
  task itself). A cluster without a binding plugin writes "cluster configuration lacks support for
  cpu binding" to DIR/srun.log: harmless.
- each agent learns its name (SLURMD_NODENAME), cores and GPUs from its step; it finds the master
  through DIR/master.json, so DIR must be on a file system every node sees.
- each agent logs to DIR/agent-$SLURMD_NODENAME.log, through a small ``sh -c`` redirection: srun's
  own ``--output=agent-%N.log`` names files by host name, which several Slurm nodes may share.
- ``$PJ_SRUN_ARGS`` adds options to that srun (e.g. ``--mem=1G`` where memory is tracked per step).

Relays (issue 16): from ``RELAY_MIN_NODES`` nodes on (or as ``pj run --relays K`` says), a second
step starts one ``pj-relay`` per group of nodes (on the group's first node) before the agents::

    srun --overlap --nodes=K --ntasks=K --ntasks-per-node=1 --nodelist=n1,n257,... --job-name=pj-relays
         PYTHON -m pj.agent.relay --workdir DIR --listen 0.0.0.0:0 --address-file DIR/relays/relay-$SLURM_PROCID.addr

and each agent gets ``--relay-group G``: the agent of node $SLURM_NODEID dials relay
$SLURM_NODEID // G (agent/relayroute.py), the master directly while that relay does not answer.
The master then holds K streams instead of one per node.

Everything here is pure (an environment mapping in, argument lists out) except ``log_tails``.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pj.common import hostlist

from .formats import plural

JOB_ID_ENV = "SLURM_JOB_ID"
NODELIST_ENV = "SLURM_JOB_NODELIST"
CPUS_ENV = "SLURM_JOB_CPUS_PER_NODE"
SRUN_ARGS_ENV = "PJ_SRUN_ARGS"
SRUN_LOG = "srun.log"
# Run by srun on every node: the agent, with its output in a log named after its Slurm node.
# The log is made 0600 (0640 under PJ_SHARE=group, perms.py) before the redirection opens it, whatever
# the umask (which the agent and its tasks keep).
AGENT_SHELL = (
    'f="$1/agent-$SLURMD_NODENAME.log"; m=600; [ "$PJ_SHARE" = group ] && m=640; (umask 077; : >>"$f"); '
    'chmod "$m" "$f"; d="$1"; shift; exec "$0" -m pj.agent --workdir "$d" --wait-master 600 "$@" >"$f" 2>&1'
)
HARMLESS = ("lacks support for cpu binding",)
# Relays: from this many nodes on by default, one per group of RELAY_GROUP nodes (8,192 simulated
# nodes through 16 relays: the master's peak 89 MB idle instead of 478 MB, 1M jobs at ~10,000
# tasks/s instead of 4,700-6,600; at 16 x 4 a relay's extra hop cost 0.62x: none below).
RELAY_MIN_NODES = 512
RELAY_GROUP = 256
RELAYS_DIR = "relays"
RELAY_SHELL = (
    'f="$1/relay-$SLURMD_NODENAME.log"; m=600; [ "$PJ_SHARE" = group ] && m=640; (umask 077; : >>"$f"); '
    'chmod "$m" "$f"; exec "$0" -m pj.agent.relay --workdir "$1" --wait-master 600 --listen 0.0.0.0:0 '
    '--address-file "$1/relays/relay-$SLURM_PROCID.addr" >"$f" 2>&1'
)


class SlurmModeError(Exception):
    """Slurm mode cannot be used as asked (bad usage: exit 2); the message says what to change."""


@dataclass(frozen=True)
class Allocation:
    """The facts of the Slurm job `pj run` runs in."""

    job_id: str
    nodelist: str  # as Slurm writes it: n[1-4]
    nodes: tuple[str, ...]
    cpus: int = 0  # of the whole job; 0: not known

    def describe(self) -> str:
        """``Slurm job 12: 4 nodes n[1-4], 16 CPUs``."""
        cpus = f", {self.cpus} CPUs" if self.cpus else ""
        return f"Slurm job {self.job_id}: {plural(len(self.nodes), 'node')} {self.nodelist}{cpus}"


def wants_slurm(env: Mapping[str, str], choice: bool | None) -> bool:
    """Slurm mode or not: ``choice`` is --slurm (True), --local (False) or neither (None: Slurm mode
    when SLURM_JOB_ID is set). --slurm outside an allocation raises SlurmModeError."""
    inside = bool(env.get(JOB_ID_ENV, "").strip())
    if choice is None:
        return inside
    if choice and not inside:
        raise SlurmModeError(
            f"--slurm: not inside a Slurm allocation (${JOB_ID_ENV} is not set); "
            "run it from a batch script (sbatch scripts/pj.sbatch FILE) or under salloc, or drop --slurm"
        )
    return choice


def allocation(env: Mapping[str, str]) -> Allocation:
    """The allocation described by the environment; SlurmModeError if it cannot be read."""
    job_id = env.get(JOB_ID_ENV, "").strip()
    nodelist = (env.get(NODELIST_ENV) or env.get("SLURM_NODELIST") or "").strip()
    if not job_id or not nodelist:
        missing = JOB_ID_ENV if not job_id else NODELIST_ENV
        raise SlurmModeError(
            f"Slurm mode: ${missing} is not set, so the allocation's nodes are unknown; "
            "run `pj run` in the batch script or under salloc itself (not in a bare shell), or add --local"
        )
    try:
        nodes = tuple(hostlist.expand(nodelist))
    except hostlist.HostlistError as e:
        raise SlurmModeError(f"Slurm mode: ${NODELIST_ENV}: {e}; add --local to run without Slurm") from None
    if not nodes:
        raise SlurmModeError(f"Slurm mode: ${NODELIST_ENV} is empty; add --local to run without Slurm")
    cpus = 0
    with_counts = env.get(CPUS_ENV, "").strip()
    if with_counts:
        try:
            cpus = sum(hostlist.expand_counts(with_counts))
        except hostlist.HostlistError:
            cpus = 0  # only shown to the user: not worth refusing the run
    return Allocation(job_id=job_id, nodelist=nodelist, nodes=nodes, cpus=cpus)


def refuse_local_options(alloc: Allocation, nodes: int | None, cores: int | None, gpus: int | None) -> None:
    """--nodes/--cores/--gpus shape emulated nodes; in Slurm mode the allocation decides them."""
    given = [f"--{name} {value}" for name, value in (("nodes", nodes), ("cores", cores), ("gpus", gpus))
             if value is not None]
    if given:
        raise SlurmModeError(
            f"{', '.join(given)}: only for local mode; in Slurm mode every node of the allocation "
            f"({alloc.nodelist}) runs one agent with the CPUs and GPUs Slurm gave the job there. "
            "Change the allocation instead (sbatch -N 4 --exclusive, --gres=gpu:2...), "
            "or add --local to emulate nodes on this machine"
        )


def master_options(alloc: Allocation) -> list[str]:
    """What the master needs in Slurm mode: every interface (agents connect from other nodes; it
    advertises its host name) and the nodes to expect, by name."""
    return ["--slurm", "--listen", "0.0.0.0:0", "--expect-nodes", alloc.nodelist]


def relay_group(nodes: int, relays: str, tls: bool = False) -> int:
    """How many nodes share a relay (0: none) for ``pj run --relays`` (``auto``, or a count K: K
    relays, 0 for none) over ``nodes`` nodes. SlurmModeError for a bad value, or relays with TLS."""
    if relays == "auto":
        return RELAY_GROUP if nodes >= RELAY_MIN_NODES and not tls else 0
    try:
        k = int(relays)
    except ValueError:
        k = -1
    if k < 0:
        raise SlurmModeError(f"--relays {relays!r}: give auto, or how many relays (0: none)")
    if k and tls:
        raise SlurmModeError(f"--relays {relays}: relays do not carry TLS yet; drop --tls, or use --relays 0")
    if k == 0:
        return 0
    return -(-nodes // min(k, nodes))


def _extra(env: Mapping[str, str]) -> list[str]:
    try:
        return shlex.split(env.get(SRUN_ARGS_ENV, ""))
    except ValueError as e:
        raise SlurmModeError(f"${SRUN_ARGS_ENV}: {e}; write it as shell words, e.g. '--mem=1G'") from None


def relay_srun_argv(
    workdir: Path,
    alloc: Allocation,
    env: Mapping[str, str],
    group: int,
    python: str = sys.executable,
    srun: str = "srun",
) -> list[str]:
    """The srun of the relays: one on the first node of each group of ``group`` nodes."""
    hosts = alloc.nodes[::group]
    k = len(hosts)
    return [
        srun,
        "--overlap",
        f"--nodes={k}",
        f"--ntasks={k}",
        "--ntasks-per-node=1",
        f"--nodelist={','.join(hosts)}",
        "--kill-on-bad-exit=0",
        "--wait=0",
        "--cpu-bind=none",
        "--job-name=pj-relays",
        *_extra(env),
        "/bin/sh",
        "-c",
        RELAY_SHELL,
        python,
        str(workdir),
    ]


def srun_argv(
    workdir: Path,
    alloc: Allocation,
    env: Mapping[str, str],
    python: str = sys.executable,
    srun: str = "srun",
) -> list[str]:
    """The ONE srun that starts an agent on every node of the allocation (see the module doc)."""
    n = len(alloc.nodes)
    extra = _extra(env)
    return [
        srun,
        "--overlap",
        f"--nodes={n}",
        f"--ntasks={n}",
        "--ntasks-per-node=1",
        "--kill-on-bad-exit=0",
        "--wait=0",
        "--cpu-bind=none",
        "--job-name=pj-agents",
        *extra,
        "/bin/sh",
        "-c",
        AGENT_SHELL,
        python,
        str(workdir),
    ]


def log_tails(paths: Sequence[Path], lines: int) -> list[str]:
    """The last lines of each log (harmless Slurm remarks left out), indented under its path."""
    out: list[str] = []
    for path in paths:
        try:
            text = path.read_bytes()[-16384:].decode("utf-8", "replace")
        except OSError:
            continue
        kept = [line for line in text.splitlines() if not any(h in line for h in HARMLESS)][-lines:]
        if kept:
            out.append(f"  {path}:")
            out += ["    " + line for line in kept]
    return out
