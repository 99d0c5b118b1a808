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
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pj.common.ranges import id_ranges
from pj.common.sizes import SizeError, parse_size

from . import slurm

GPU_ENV = "CUDA_VISIBLE_DEVICES"  # a task's every GPU variable: common/gpuenv.py
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
    ends_at: float = 0.0  # when the node's allocation ends (epoch s); 0: unknown or never
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
class FoundGpus:
    """GPUs the machine itself shows, with no variable naming them."""

    ids: tuple[str, ...]
    vendor: str  # "NVIDIA" or "AMD"
    source: str  # where they were seen, for the agent's start notice

    def describe(self) -> str:
        n = len(self.ids)
        return f"{n} {self.vendor} GPU{'s' if n != 1 else ''} ({','.join(self.ids)})"


def find_gpus(root: str = "/") -> FoundGpus | None:
    """The GPUs of this machine, in the order CUDA_VISIBLE_DEVICES / ROCR_VISIBLE_DEVICES number them.

    NVIDIA: one folder per GPU under /proc/driver/nvidia/gpus (the driver's PCI order, which
    is nvidia-smi's), else ``nvidia-smi --query-gpu=index`` (sandboxes without that /proc tree).
    AMD: the KFD topology nodes with SIMDs (what ROCm enumerates). None when there are none.
    """
    nv = os.path.join(root, "proc/driver/nvidia/gpus")
    try:
        count = len([d for d in os.listdir(nv) if not d.startswith(".")])
    except OSError:
        count = 0
    if count:
        return FoundGpus(tuple(str(i) for i in range(count)), "NVIDIA", nv)
    if root == "/":
        smi = shutil.which("nvidia-smi")
        if smi:
            try:
                out = subprocess.run(
                    [smi, "--query-gpu=index", "--format=csv,noheader"],
                    capture_output=True, text=True, timeout=20, check=False,
                )
            except (OSError, subprocess.SubprocessError):
                out = None
            if out is not None and out.returncode == 0:
                ids = tuple(x.strip() for x in out.stdout.split() if x.strip().isdigit())
                if ids:
                    return FoundGpus(ids, "NVIDIA", "nvidia-smi")
    kfd = os.path.join(root, "sys/class/kfd/kfd/topology/nodes")
    amd = 0
    try:
        for node in sorted(os.listdir(kfd), key=lambda x: int(x) if x.isdigit() else -1):
            try:
                with open(os.path.join(kfd, node, "properties")) as f:
                    props = dict(line.split(None, 1) for line in f if line.strip())
            except (OSError, ValueError):
                continue
            if int(props.get("simd_count", "0").strip() or 0) > 0:
                amd += 1
    except OSError:
        pass
    if amd:
        return FoundGpus(tuple(str(i) for i in range(amd)), "AMD", kfd)
    return None


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
    found: FoundGpus | None = None,
) -> Plan:
    """Decide the real CPUs, logical cores and GPUs of this node (pure).

    ``affinity``: the CPUs this process may run on, sorted. ``cores``/``gpus``: the options
    (None: not given). ``found``: the GPUs the machine shows (``find_gpus``), used when neither
    an option nor the environment names any, and never inside a Slurm job (what Slurm did not
    grant is not ours). Raises ResourceError naming the option or variable and the fix.
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
    if text is None and found is not None and found.ids:
        if env.get("SLURM_JOB_ID"):
            notes.append(("info", f"this node has {found.describe()}, but Slurm granted none to this job: "
                                  "ask for them with --gpus or --gres=gpu:N, or name them with pj-agent --gpus"))
        else:
            gpu_ids = found.ids
            notes.append(("info", f"using {found.describe()}, found by {found.source} "
                                  "(pj-agent --gpus LIST, CUDA_VISIBLE_DEVICES or ROCR_VISIBLE_DEVICES chooses others)"))
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
            f"({id_ranges(affinity)}): logical cores share real CPUs "
            "(if the node has more, start the agent with srun --cpu-bind=none or --cpus-per-task)",
        )
    if granted < have:
        used = affinity[:granted]
        return used, (
            "info",
            f"Slurm grants {granted} CPUs on {node}; this agent may run on {have} "
            f"({id_ranges(affinity)}): tasks use the first {granted} ({id_ranges(used)})",
        )
    return affinity, None


def detect(
    cores: int | None = None,
    gpus: str | None = None,
    environ: Mapping[str, str] | None = None,
    memory: int | None = None,
) -> NodeResources:
    """Resources of this node (see ``plan``): cores default to what Slurm grants inside a step,
    else to the usable CPU count; GPUs come from ``gpus`` (a comma-separated list), else
    $CUDA_VISIBLE_DEVICES, $ROCR_VISIBLE_DEVICES, $HIP_VISIBLE_DEVICES, $SLURM_STEP_GPUS,
    $SLURM_JOB_GPUS (``slurm.gpus_text``), else (outside Slurm) the GPUs
    the machine shows (``find_gpus``)."""
    env = os.environ if environ is None else environ
    found = find_gpus() if gpus is None and slurm.gpus_text(env) is None else None
    p = plan(usable_cpus(), cores, gpus, env, found)
    return NodeResources(
        cpus=p.cpus,
        cores=p.cores,
        gpus=p.gpus,
        memory_bytes=usable_memory(memory, env, p.cores, _total_memory),
        notes=p.notes,
    )


def usable_memory(option: int | None, env: Mapping[str, str], cores: int, total: Callable[[], int]) -> int:
    """The memory tasks may ask for on this node, in bytes: ``--memory`` (``option``), else Slurm's
    grant ($SLURM_MEM_PER_NODE, else $SLURM_MEM_PER_CPU times the node's cores; MiB, as Slurm
    writes them), else the node's physical memory (``total``). Raises ResourceError naming the
    variable when Slurm's value cannot be read."""
    if option is not None:
        return option
    for var, times in (("SLURM_MEM_PER_NODE", 1), ("SLURM_MEM_PER_CPU", cores)):
        text = env.get(var, "").strip()
        if text and text != "0":  # 0: Slurm's "all the node's memory"
            try:
                return parse_size(text) * times
            except SizeError as e:
                raise ResourceError(f"${var}={text!r}: {e.reason} (pj-agent --memory sets it instead)") from None
    return total()


def _total_memory() -> int:
    """The node's physical memory in bytes (what /proc/meminfo's MemTotal says; no psutil import
    at start: four agents of a Slurm run import at once, on the CPUs the master starts on)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _squeue_end(job: str) -> str:
    """What ``squeue -h -j JOB -o %e`` prints (the job's end, local ISO time); raises OSError or
    subprocess.SubprocessError when it cannot be asked."""
    done = subprocess.run(["squeue", "-h", "-j", job, "-o", "%e"], capture_output=True, text=True,
                          timeout=15, check=True)
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""


def allocation_end(
    given: float | None, environ: Mapping[str, str] | None = None,
    ask: Callable[[str], str] = _squeue_end,
) -> tuple[float, tuple[str, str] | None]:
    """When this node's allocation ends (epoch s; 0: unknown or none), and a note for the log:
    ``given`` (--ends-at), else $SLURM_JOB_END_TIME, else, inside a Slurm job, ``squeue``'s end
    of $SLURM_JOB_ID. A value that cannot be read or parsed gives 0 and a warning."""
    env = os.environ if environ is None else environ
    if given is not None:
        return given, None
    text = env.get(slurm.END_TIME_ENV, "").strip()
    where = f"${slurm.END_TIME_ENV}"
    job = slurm.job_id(env)
    if not text:
        if not job:
            return 0.0, None
        where = f"squeue -j {job} -o %e"
        try:
            text = ask(job)
        except (OSError, subprocess.SubprocessError, IndexError) as e:
            return 0.0, ("warning", f"the allocation's end is unknown ({where} failed: {e}); "
                                    "the master places tasks here whatever their walltime")
    try:
        end = slurm.parse_end(text)
    except ValueError as e:
        return 0.0, ("warning", f"the allocation's end is unknown ({where}: {e}); "
                                "the master places tasks here whatever their walltime")
    if not end:
        return 0.0, ("info", f"the allocation has no end ({where}: {text!r})")
    return end, ("info", f"the allocation ends at {datetime.fromtimestamp(end).isoformat(timespec='seconds')} "
                         f"(from {where}): the master places no task here that would outlast it")
