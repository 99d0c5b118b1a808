"""The agent finds when its allocation ends (issue 17): --ends-at, else $SLURM_JOB_END_TIME, else
squeue's end of $SLURM_JOB_ID (faked here: no Slurm is asked), and sends it at registration."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pj.agent import convert, slurm
from pj.agent.options import UsageError, configure
from pj.agent.resources import NodeResources, allocation_end


def test_parse_end_epoch_iso_and_none() -> None:
    assert slurm.parse_end("1790000000") == 1790000000.0
    assert slurm.parse_end(" 1790000000.5 ") == 1790000000.5
    assert slurm.parse_end("2026-12-05T10:00:00") == datetime(2026, 12, 5, 10, 0, 0).timestamp()  # local
    assert slurm.parse_end("2026-12-05T10:00:00+00:00") == datetime(2026, 12, 5, 10, tzinfo=UTC).timestamp()
    for none in ("N/A", "Unknown", "UNLIMITED", "", "0"):
        assert slurm.parse_end(none) == 0.0
    for bad in ("soon", "-5", "nan", "1e30", "2026-13-40T99:00"):
        with pytest.raises(ValueError):
            slurm.parse_end(bad)


def _never(job: str) -> str:
    raise AssertionError(f"squeue asked for {job}")


def test_allocation_end_order() -> None:
    env = {"SLURM_JOB_ID": "42", "SLURM_JOB_END_TIME": "1790000000"}
    assert allocation_end(1800000000.0, env, _never) == (1800000000.0, None)  # --ends-at wins
    end, note = allocation_end(None, env, _never)
    assert end == 1790000000.0 and note is not None and note[0] == "info" and "SLURM_JOB_END_TIME" in note[1]
    assert allocation_end(None, {}, _never) == (0.0, None)  # not in a Slurm job: no end, nothing asked
    asked: list[str] = []

    def squeue(job: str) -> str:
        asked.append(job)
        return "2026-12-05T10:00:00"

    end, note = allocation_end(None, {"SLURM_JOB_ID": "42"}, squeue)
    assert asked == ["42"] and end == datetime(2026, 12, 5, 10).timestamp()
    assert note is not None and "squeue -j 42" in note[1]


def test_allocation_end_failures_give_zero_and_a_warning() -> None:
    def fails(job: str) -> str:
        raise subprocess.CalledProcessError(1, ["squeue"])

    for ask in (fails, lambda job: "garbage"):
        end, note = allocation_end(None, {"SLURM_JOB_ID": "7"}, ask)
        assert end == 0.0 and note is not None and note[0] == "warning" and "unknown" in note[1]
    end, note = allocation_end(None, {"SLURM_JOB_ID": "7"}, lambda job: "UNLIMITED")
    assert end == 0.0 and note is not None and note[0] == "info"


def test_registration_carries_the_end() -> None:
    res = NodeResources(cpus=(0,), cores=1, gpus=(), memory_bytes=0, ends_at=1790000000.0)
    assert convert.register_pb("n0", res, "h", 1, "v").register.ends_at == 1790000000.0


def test_ends_at_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.delenv("SLURM_JOB_END_TIME", raising=False)
    (tmp_path / "master.json").write_text(json.dumps({"address": "127.0.0.1:1"}))
    (tmp_path / "token").write_text("t\n")
    base = ["--workdir", str(tmp_path), "--wait-master", "0"]
    cfg = configure([*base, "--ends-at", "2026-12-05T10:00:00"])
    assert cfg.resources.ends_at == datetime(2026, 12, 5, 10).timestamp()  # type: ignore[union-attr]
    assert configure(base).resources.ends_at == 0.0  # type: ignore[union-attr]
    with pytest.raises((UsageError, SystemExit)):
        configure([*base, "--ends-at", "tomorrow"])
