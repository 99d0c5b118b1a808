"""What this node offers: usable CPUs, logical cores, GPUs, memory.

Logical cores are what the master schedules (0..cores-1). ``--cores N`` may
exceed the machine's CPUs to emulate big nodes: logical core i is bound to the
real CPU ``usable[i % len(usable)]``.

Inside a Slurm step (slurm.py) without ``--cores``, the node offers as many
logical cores as Slurm grants on it, bound onto the agent's own affinity: the
first N CPUs of it when it holds more, shared when it holds fewer. ``plan`` is
the pure part (affinity and environment in, decisions and notes out).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from . import slurm

GPU_ENV = "CUDA_VISIBLE_DEVICES"
# What Slurm (and some launchers) put in CUDA_VISIBLE_DEVICES when no GPU was granted.
_NO_GPU_MARKERS = frozenset({"", "NoDevFiles", "none", "None"})


class ResourceError(ValueError):
    """A resource option that cannot be honoured (the message says which)."""


@dataclass(frozen=True)
class NodeResources:
    cpus: tuple[int, ...]  # usable real CPUs, sorted (the agent's own affinity)
    cores: int  # logical cores offered to the master
    gpus: tuple[str, ...]  # GPU ids as CUDA_VISIBLE_DEVICES spells them
    memory_bytes: int
    # What the agent should say at start about how these were chosen: (level, message).
    notes: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    _cache: dict[tuple[int, ...], frozenset[int]] = field(
        default_factory=dict, compare=False, repr=False, hash=False
    )

    def real_cpus(self, logical: Iterable[int]) -> frozenset[int]:
        """The real CPUs behind these logical cores (cached per core list).

        Raises ResourceError for a core outside 0..cores-1.
        """
        key = tuple(logical)
        got = self._cache.get(key)
        if got is None:
            n = len(self.cpus)
            for c in key:
                if c >= self.cores:
                    raise ResourceError(f"core {c} does not exist (this node has {self.cores} cores)")
            got = frozenset(self.cpus[c % n] for c in key) if key else frozenset(self.cpus)
            if len(self._cache) < 4096:
                self._cache[key] = got
        return got


def usable_cpus() -> tuple[int, ...]:
    return tuple(sorted(os.sched_getaffinity(0)))


def parse_gpus(text: str) -> tuple[str, ...]:
    """'0,1, 3' -> ('0', '1', '3'); '' or a Slurm 'NoDevFiles' -> ()."""
    if text.strip() in _NO_GPU_MARKERS:
        return ()
    return tuple(g.strip() for g in text.split(",") if g.strip())


@dataclass(frozen=True)
class Plan:
    cpus: tuple[int, ...]
    cores: int
    gpus: tuple[str, ...]
    notes: tuple[tuple[str, str], ...] = ()


def plan(
    affinity: tuple[int, ...],
    cores: int | None,
    gpus: str | None,
    env: Mapping[str, str],
) -> Plan:
    """Decide the real CPUs, logical cores and GPUs of this node (pure).

    ``affinity``: the CPUs this process may run on, sorted. ``cores``/``gpus``: the options
    (None: not given). Raises ResourceError naming the option or variable and the fix.
    """
    cpus = affinity
    notes: list[tuple[str, str]] = []
    if cores is None and slurm.in_step(env):
        try:
            share = slurm.share(env)
        except slurm.SlurmEnvError as e:
            raise ResourceError(str(e)) from None
        if share.cpus is not None:
            cores = share.cpus
            cpus, note = _fit(affinity, share.cpus, share.node or "this node")
            if note:
                notes.append(note)
    if cores is None:
        cores = len(cpus)
    if cores < 1:
        raise ResourceError(f"--cores must be at least 1, not {cores}")
    text = gpus if gpus is not None else slurm.gpus_text(env)
    gpu_ids = parse_gpus(text) if text is not None else ()
    if len(set(gpu_ids)) != len(gpu_ids):
        raise ResourceError(f"GPU list {','.join(gpu_ids)} names a GPU twice")
    return Plan(cpus, cores, gpu_ids, tuple(notes))


def _fit(affinity: tuple[int, ...], granted: int, node: str) -> tuple[tuple[int, ...], tuple[str, str] | None]:
    """The real CPUs for ``granted`` Slurm CPUs, and what to say about it."""
    have = len(affinity)
    if granted > have:
        return affinity, (
            "warning",
            f"Slurm grants {granted} CPUs on {node} but this agent may run on {have} "
            f"({cpu_list(affinity)}): logical cores share real CPUs "
            "(if the node has more, start the agent with srun --cpu-bind=none or --cpus-per-task)",
        )
    if granted < have:
        used = affinity[:granted]
        return used, (
            "info",
            f"Slurm grants {granted} CPUs on {node}; this agent may run on {have} "
            f"({cpu_list(affinity)}): tasks use the first {granted} ({cpu_list(used)})",
        )
    return affinity, None


def cpu_list(cpus: Iterable[int]) -> str:
    """(0, 1, 2, 5, 7, 8) -> '0-2,5,7-8', as taskset and /proc spell CPU lists."""
    out: list[str] = []
    run: list[int] = []
    for c in sorted(cpus):
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
        run = [c]
    if run:
        out.append(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}")
    return ",".join(out)


def detect(
    cores: int | None = None,
    gpus: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeResources:
    """Resources of this node (see ``plan``): cores default to what Slurm grants inside a step,
    else to the usable CPU count; GPUs come from ``gpus`` (a comma-separated list), else
    $CUDA_VISIBLE_DEVICES, $SLURM_STEP_GPUS, $SLURM_JOB_GPUS, else none."""
    env = os.environ if environ is None else environ
    p = plan(usable_cpus(), cores, gpus, env)
    return NodeResources(
        cpus=p.cpus,
        cores=p.cores,
        gpus=p.gpus,
        memory_bytes=_total_memory(),
        notes=p.notes,
    )


def _total_memory() -> int:
    """The node's physical memory in bytes (what /proc/meminfo's MemTotal says; no psutil import
    at start: four agents of a Slurm run import at once, on the CPUs the master starts on)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0
