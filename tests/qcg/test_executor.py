"""pj.qcg.QCGPJExecutor beyond QCG's own tests: templates, the job's environment, futures that
resolve from the event stream, cancel and timeouts, on real processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from pj.qcg import BasicTemplate, QCGPJExecutor, QCGPJFuture, TimeoutElapsed
from pj.qcg.executor import substitute

SHELL = lambda: ("""
    {
        'name': '${name}',
        'execution': {'exec': '/bin/sh', 'args': ['-c', '${cmd}'], 'stdout': '${name}.out'},
        'resources': {'numCores': {'exact': ${cores}}}
    }
""", {"cores": 1})  # fmt: skip  # noqa: E731


def test_substitution_order_and_errors() -> None:
    job = substitute(SHELL, ({"name": "a", "cmd": "x"}, {"name": "b", "cores": 2}, None), {"cmd": "y"})
    assert job["name"] == "b" and job["execution"]["args"] == ["-c", "y"]
    assert job["resources"]["numCores"]["exact"] == 2
    with pytest.raises(KeyError, match="cmd"):
        substitute(SHELL, ({"name": "a"},), {})
    with pytest.raises(ValueError, match="Python literal"):
        substitute(lambda: "{'name': ${n}", (), {"n": "x"})
    with pytest.raises(ValueError, match="'execution' dict"):
        substitute(lambda: "{'name': 'x'}", (), {})


def test_jobs_run_with_their_id_and_futures_resolve(tmp_path: Path) -> None:
    with QCGPJExecutor(wd=str(tmp_path), resources="2") as e:
        f = e.submit(SHELL, name="env", cmd="echo $QCG_PM_EXEC_API_JOB_ID")
        g = e.submit(BasicTemplate.template, name="fails", exec="/bin/false")
        assert isinstance(f, QCGPJFuture)
        assert f.result(timeout=60) == {"env": "SUCCEED"}
        assert f.done() and not f.running()
        assert g.result(timeout=60) == {"fails": "FAILED"}
        assert (tmp_path / "env.out").read_text().strip() == "env"
        assert (tmp_path / "executor_api.log").exists() and (tmp_path / "api.log").exists()
        info = e.qcgpj_manager.info("fails")["jobs"]["fails"]["data"]
        assert info["runtime"]["exit_code"] == "1" and "exit code 1" in info["messages"]


def test_cancel_and_timeout(tmp_path: Path) -> None:
    with QCGPJExecutor(wd=str(tmp_path), resources="1") as e:
        f = e.submit(SHELL, name="long", cmd="sleep 60")
        with pytest.raises(TimeoutElapsed):
            f.result(timeout=0.3)
        with pytest.raises(TimeoutError):  # TimeoutElapsed is a TimeoutError too
            f.result(timeout=0.1)
        assert f.running()
        assert f.cancel() and f.cancelled()
        assert f.result(timeout=30) == {"long": "CANCELED"}
        assert f.done()
