"""GPUs the machine shows are used when nothing names them, outside Slurm only."""

from __future__ import annotations

from pathlib import Path

from pj.agent.resources import FoundGpus, find_gpus, plan


def test_nvidia_gpus_are_found_in_the_drivers_proc_tree(tmp_path: Path) -> None:
    for bus in ("0000:3b:00.0", "0000:86:00.0"):
        (tmp_path / "proc/driver/nvidia/gpus" / bus).mkdir(parents=True)
    found = find_gpus(str(tmp_path))
    assert found is not None and found.ids == ("0", "1") and found.vendor == "NVIDIA"


def test_amd_gpus_are_the_kfd_nodes_with_simds(tmp_path: Path) -> None:
    nodes = tmp_path / "sys/class/kfd/kfd/topology/nodes"
    for i, simds in enumerate([0, 304, 304]):  # node 0 is the CPU
        (nodes / str(i)).mkdir(parents=True)
        (nodes / str(i) / "properties").write_text(f"cpu_cores_count 64\nsimd_count {simds}\n")
    found = find_gpus(str(tmp_path))
    assert found is not None and found.ids == ("0", "1") and found.vendor == "AMD"


def test_no_gpu_tree_finds_none(tmp_path: Path) -> None:
    assert find_gpus(str(tmp_path)) is None


def test_found_gpus_are_used_only_when_nothing_names_gpus_and_never_in_a_slurm_job() -> None:
    found = FoundGpus(("0", "1"), "NVIDIA", "/proc/driver/nvidia/gpus")
    p = plan((0, 1), None, None, {}, found)
    assert p.gpus == ("0", "1") and any("2 NVIDIA GPUs (0,1)" in m for _, m in p.notes)
    assert plan((0, 1), None, "1", {}, found).gpus == ("1",)  # --gpus wins
    assert plan((0, 1), None, None, {"CUDA_VISIBLE_DEVICES": ""}, found).gpus == ()  # the variable wins
    p = plan((0, 1), None, None, {"SLURM_JOB_ID": "7"}, found)
    assert p.gpus == () and any("Slurm granted none" in m for _, m in p.notes)


def test_a_tasks_gpus_are_narrowed_alike_for_every_vendor() -> None:
    from pj.common.gpuenv import GPU_VARS, gpu_env

    assert gpu_env(("2", "5")) == {"CUDA_VISIBLE_DEVICES": "2,5", "ROCR_VISIBLE_DEVICES": "2,5",
                                   "HIP_VISIBLE_DEVICES": "0,1", "ZE_AFFINITY_MASK": "2,5"}
    assert gpu_env(()) == dict.fromkeys(GPU_VARS, "")  # no GPU: none visible
    assert gpu_env(tuple(map(str, range(100))))["HIP_VISIBLE_DEVICES"] == ",".join(map(str, range(100)))


def test_amd_gpus_found_outside_slurm_reach_tasks_as_rocm_numbers_them() -> None:
    """An AMD node whose agent was given ROCR_VISIBLE_DEVICES=2,3: a task given GPU 3 sees ROCR 3 and
    HIP 0 (the first of what ROCR left), never HIP 3 (which would index ROCR's one GPU)."""
    from pj.common.gpuenv import gpu_env

    p = plan((0, 1), None, None, {"ROCR_VISIBLE_DEVICES": "2,3"})
    assert p.gpus == ("2", "3")
    env = gpu_env(p.gpus[1:])
    assert env["ROCR_VISIBLE_DEVICES"] == "3" and env["HIP_VISIBLE_DEVICES"] == "0"
