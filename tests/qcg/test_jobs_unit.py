"""pj.qcg.Jobs: QCG-PilotJob's job group, its checks and its standard layout (pure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pj.qcg import FileError, InvalidJobDescriptionError, JobNotDefinedError, Jobs


def test_add_converts_the_simplified_attributes_to_the_standard_layout() -> None:
    jobs = Jobs().add(
        name="sim", exec="/bin/echo", args=["a", "b"], stdout="o.${it}", wd="w", modules="gcc", venv="/v",
        model="openmpi", model_opts={"mpirun_args": ["-x"]}, numCores=4, numNodes={"min": 1, "max": 2},
        wt="10m", iteration=3, after="prep",
    )
    assert jobs.ordered_jobs() == [{
        "name": "sim",
        "execution": {"exec": "/bin/echo", "args": ["a", "b"], "stdout": "o.${it}", "wd": "w", "modules": "gcc",
                      "venv": "/v", "model": "openmpi", "model_opts": {"mpirun_args": ["-x"]}},
        "resources": {"numCores": {"exact": 4}, "numNodes": {"min": 1, "max": 2}, "wt": "10m"},
        "iteration": {"start": 0, "stop": 3},
        "dependencies": {"after": ["prep"]},
    }]


def test_add_takes_a_dict_and_keywords_and_chains() -> None:
    jobs = Jobs().add({"name": "a", "exec": "/bin/true"}, name="b").add(script="echo x", iteration=["x", "y"])
    names = jobs.job_names()
    assert names[0] == "b" and len(names) == 2 and len(names[1]) == 36  # a UUID for the unnamed one
    assert jobs.ordered_jobs()[1]["iteration"] == {"values": ["x", "y"]}
    assert jobs.ordered_job_names() == names


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": "a"}, "No 'exec' nor 'script' defined"),
        ({"name": "a", "exec": "x", "script": "y"}, "Both 'exec' and 'script' defined"),
        ({"name": "a", "exec": "x", "cores": 2}, "Unknown attribute cores"),
        ({"name": "a", "exec": 5}, "Invalid attribute exec type"),
        ({"name": "a", "exec": "x", "numCores": {"least": 2}}, "Unknown numCores attribute least"),
        ({"name": "a", "exec": "x", "numCores": True}, "Invalid attribute numCores type"),
        ({"name": "a", "exec": "x", "iteration": {"start": 2}}, "Required attribute stop"),
        ({"name": "a", "exec": "x", "iteration": {"stop": 2, "values": [1]}}, "are excluding"),
        ({"name": "a", "exec": "x", "iteration": 70000}, "Wrong number of iterations"),
    ],
)
def test_add_refuses_what_qcg_refuses(attrs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidJobDescriptionError, match=message):
        Jobs().add(**attrs)


def test_names_are_unique_and_remove_clear() -> None:
    jobs = Jobs().add(name="a", exec="x")
    with pytest.raises(InvalidJobDescriptionError, match="Job a already in list"):
        jobs.add(name="a", exec="y")
    with pytest.raises(InvalidJobDescriptionError, match="already in list"):
        jobs.add_std(name="a", execution={"exec": "y"})
    jobs.remove("a")
    with pytest.raises(JobNotDefinedError):
        jobs.remove("a")
    jobs.add(name="a", exec="y").add(name="b", exec="z")
    assert jobs.clear() == 2 and jobs.jobs() == []


def test_add_std_needs_an_execution() -> None:
    with pytest.raises(InvalidJobDescriptionError, match="execution/exec"):
        Jobs().add_std(name="a", resources={"numCores": 2})
    jobs = Jobs().add_std({"name": "a", "execution": {"script": "date"}, "resources": {"numCores": 2}})
    assert jobs.jobs() == [{"name": "a", "execution": {"script": "date"}, "resources": {"numCores": 2}}]


def test_files_round_trip_and_errors(tmp_path: Path) -> None:
    jobs = Jobs().add(name="a", exec="/bin/date").add(name="b", script="echo", after="a")
    path = tmp_path / "jobs.json"
    jobs.save_to_file(path)
    again = Jobs()
    again.load_from_file(path)
    assert again.ordered_jobs() == jobs.ordered_jobs() == json.loads(path.read_text())
    with pytest.raises(InvalidJobDescriptionError, match=r"already defined|already in list"):
        again.load_from_file(path)
    with pytest.raises(FileError, match=r"missing\.json"):
        Jobs().load_from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FileError, match=r"bad\.json"):
        Jobs().load_from_file(tmp_path / "bad.json")
