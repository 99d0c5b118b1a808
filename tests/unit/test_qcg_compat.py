"""QCG-PilotJob compatibility: module/venv prefix rule, model_opts, iteration schedulers (pure parts)."""

from __future__ import annotations

import subprocess

from pj.master.launch import MODULE_INIT, Context, build
from pj.master.model import Allocation, JobSpec, NodeShare

LOCAL = Context(master="h:1", workdir="/w")
ONE: Allocation = (NodeShare("n1", (0,)),)


def _spec(**kw: object) -> JobSpec:
    return JobSpec(name="j", base_dir="/b", **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- item: one prefix rule, QCG's


def test_exec_and_script_jobs_get_the_same_prefix_steps_modules_first() -> None:
    e = build(_spec(exec="/bin/prog", args=("a b",), modules=("m1", "m 2"), venv="env"), 1, None, ONE, LOCAL)
    s = build(_spec(script="echo hi", modules=("m1", "m 2"), venv="env"), 2, None, ONE, LOCAL)
    steps = [MODULE_INIT + "module load m1 'm 2'", "source /b/env/bin/activate"]
    assert e.argv == ("bash", "-c", "\n".join([*steps, 'exec "$@"']), "j", "/bin/prog", "a b")
    assert s.argv == ("bash", "-c", "\n".join([*steps, "echo hi"]))
    assert "&&" not in e.argv[2].replace(MODULE_INIT, "")


def test_a_failing_prefix_step_does_not_stop_the_command_whose_exit_code_decides(tmp_path: object) -> None:
    # The argv PJ builds, run by bash: no such venv, no such module (and here no `module` command).
    for kw in ({"venv": "/nonexistent/venv"}, {"modules": ("no-such-module",)}):
        t = build(_spec(exec="/bin/sh", args=("-c", "echo ran; exit 3"), **kw), 1, None, ONE, LOCAL)
        r = subprocess.run(t.argv, capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (3, "ran\n"), (kw, r.stderr)
        t = build(_spec(script="echo ran", **kw), 1, None, ONE, LOCAL)
        r = subprocess.run(t.argv, capture_output=True, text=True, timeout=30)
        assert (r.returncode, r.stdout) == (0, "ran\n"), (kw, r.stderr)
