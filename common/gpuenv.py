"""The variables that narrow a task to its GPUs, for every vendor's runtime (pure: no I/O).

A task's GPU ids are those its agent offers, spelled as the agent's own selector spells them
(`CUDA_VISIBLE_DEVICES`, else `ROCR_VISIBLE_DEVICES`, ...: agent/slurm.py ``gpus_text``). The task's
variables *replace* the agent's (never narrow them again), so each gets what its runtime expects:

- ``CUDA_VISIBLE_DEVICES`` (NVIDIA): the ids, read against the devices the process can see.
- ``ROCR_VISIBLE_DEVICES`` (AMD, the ROCm runtime, applied first): the ids.
- ``HIP_VISIBLE_DEVICES`` (AMD, HIP, applied on top of ROCR's selection): ``0..k-1``, the positions in
  what ROCR_VISIBLE_DEVICES left; HIP reads it before CUDA_VISIBLE_DEVICES (its alias on AMD), so
  the ids in CUDA_VISIBLE_DEVICES never index ROCR's list twice.
- ``ZE_AFFINITY_MASK`` (Intel, Level Zero): the ids.

A task with no GPU gets every one of them empty (CUDA and ROCm then show no device).
"""

from __future__ import annotations

from collections.abc import Sequence

#: Every variable ``gpu_env`` sets, in the order a task's environment lists them.
GPU_VARS = ("CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ZE_AFFINITY_MASK")

_POSITIONS = [",".join(map(str, range(k))) for k in range(65)]


def gpu_env(gpus: Sequence[str]) -> dict[str, str]:
    """The GPU variables of a task given ``gpus`` (ids as the agent offers them)."""
    ids = ",".join(gpus)
    k = len(gpus)
    positions = _POSITIONS[k] if k < len(_POSITIONS) else ",".join(map(str, range(k)))
    return {"CUDA_VISIBLE_DEVICES": ids, "ROCR_VISIBLE_DEVICES": ids, "HIP_VISIBLE_DEVICES": positions,
            "ZE_AFFINITY_MASK": ids}
