"""The memory an agent registers (agent/resources.py usable_memory; pj-agent --memory)."""

from __future__ import annotations

import pytest

from pj.agent.options import UsageError, configure
from pj.agent.resources import ResourceError, usable_memory

G = 2**30


def _total() -> int:
    return 64 * G


@pytest.mark.parametrize(
    ("option", "env", "want"),
    [
        (4 * G, {"SLURM_MEM_PER_NODE": "1000"}, 4 * G),  # the option first
        (None, {"SLURM_MEM_PER_NODE": "2048", "SLURM_MEM_PER_CPU": "100"}, 2 * G),
        (None, {"SLURM_MEM_PER_CPU": "1024"}, 8 * G),  # x 8 cores
        (None, {"SLURM_MEM_PER_NODE": "0"}, 64 * G),  # 0: the whole node
        (None, {}, 64 * G),
    ],
)
def test_usable_memory(option: int | None, env: dict[str, str], want: int) -> None:
    assert usable_memory(option, env, 8, _total) == want


def test_bad_slurm_memory_names_the_variable() -> None:
    with pytest.raises(ResourceError, match=r"SLURM_MEM_PER_NODE.*--memory"):
        usable_memory(None, {"SLURM_MEM_PER_NODE": "lots"}, 8, _total)


def test_memory_option_reaches_the_registration() -> None:
    rep = configure(["--print-resources", "--name", "n1", "--cores", "2", "--memory", "4G"])
    assert rep.report["memory_bytes"] == 4 * G  # type: ignore[union-attr]


def test_bad_memory_option_refused() -> None:
    with pytest.raises(UsageError, match="--memory"):
        configure(["--print-resources", "--memory", "4X"])


def test_pj_agent_memory_in_the_environment_is_what_the_agent_offers(monkeypatch: pytest.MonkeyPatch) -> None:
    """$PJ_AGENT_MEMORY reaches the agents pj run and LocalCluster start on this machine; --memory wins."""
    from pj.agent.options import ResourcesReport

    base = ["--print-resources", "--cores", "2", "--gpus", ""]
    monkeypatch.setenv("PJ_AGENT_MEMORY", "4G")
    report = configure(base)
    assert isinstance(report, ResourcesReport) and report.report["memory_bytes"] == 4 << 30
    report = configure([*base, "--memory", "1G"])
    assert isinstance(report, ResourcesReport) and report.report["memory_bytes"] == 1 << 30
    monkeypatch.setenv("PJ_AGENT_MEMORY", "lots")
    with pytest.raises((UsageError, SystemExit)):
        configure(base)
