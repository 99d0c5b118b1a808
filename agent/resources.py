"""What this node offers: usable CPUs, logical cores, GPUs, memory.

Logical cores are what the master schedules (0..cores-1). ``--cores N`` may
exceed the machine's CPUs to emulate big nodes: logical core i is bound to the
real CPU ``usable[i % len(usable)]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import psutil

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


def detect(
    cores: int | None = None,
    gpus: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeResources:
    """Resources of this node: ``cores`` defaults to the usable CPU count; GPUs come from
    ``gpus`` (a comma-separated list), else $CUDA_VISIBLE_DEVICES, else none."""
    env = os.environ if environ is None else environ
    cpus = usable_cpus()
    if cores is None:
        cores = len(cpus)
    if cores < 1:
        raise ResourceError(f"--cores must be at least 1, not {cores}")
    if gpus is not None:
        gpu_ids = parse_gpus(gpus)
    elif GPU_ENV in env:
        gpu_ids = parse_gpus(env[GPU_ENV])
    else:
        gpu_ids = ()
    if len(set(gpu_ids)) != len(gpu_ids):
        raise ResourceError(f"GPU list {','.join(gpu_ids)} names a GPU twice")
    return NodeResources(
        cpus=cpus,
        cores=cores,
        gpus=gpu_ids,
        memory_bytes=int(psutil.virtual_memory().total),
    )
