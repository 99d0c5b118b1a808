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
