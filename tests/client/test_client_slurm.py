"""Slurm mode of `pj run` without Slurm: the decision, the commands built, and a campaign whose
master is the fake one and whose "srun" is a fake started in its place."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from pj.client import slurm
from pj.client.cli import pj_main
from pj.client.run import Campaign

sys.path.insert(0, str(Path(__file__).parent))  # the fakes module beside this file
from test_client_fakes import FAKE_AGENT

FAKES = Path(__file__).with_name("test_client_fakes.py")
ALLOC_ENV = {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "n[1-2,4]", "SLURM_JOB_CPUS_PER_NODE": "4(x2),2"}


# ---------------------------------------------------------------- pure: the decision and the commands


def test_mode_follows_slurm_job_id_unless_told() -> None:
    assert slurm.wants_slurm(ALLOC_ENV, None) is True
    assert slurm.wants_slurm({}, None) is False
    assert slurm.wants_slurm({"SLURM_JOB_ID": " "}, None) is False
    assert slurm.wants_slurm(ALLOC_ENV, False) is False  # --local
    assert slurm.wants_slurm(ALLOC_ENV, True) is True
    with pytest.raises(slurm.SlurmModeError, match=r"--slurm: not inside a Slurm allocation .*drop --slurm"):
        slurm.wants_slurm({}, True)


def test_allocation_from_the_environment() -> None:
    a = slurm.allocation(ALLOC_ENV)
    assert a == slurm.Allocation(job_id="77", nodelist="n[1-2,4]", nodes=("n1", "n2", "n4"), cpus=10)
    assert a.describe() == "Slurm job 77: 3 nodes n[1-2,4], 10 CPUs"
    salloc_shell = {"SLURM_JOB_ID": "5", "SLURM_NODELIST": "n3"}  # only the old name
    assert slurm.allocation(salloc_shell).nodes == ("n3",)
    assert slurm.allocation(salloc_shell).describe() == "Slurm job 5: 1 node n3"
    with pytest.raises(slurm.SlurmModeError, match=r"SLURM_JOB_NODELIST is not set.*--local"):
        slurm.allocation({"SLURM_JOB_ID": "5"})
    with pytest.raises(slurm.SlurmModeError, match=r"SLURM_JOB_NODELIST.*never closed"):
        slurm.allocation({"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "n[1-2"})


def test_local_options_are_refused_in_slurm_mode() -> None:
    a = slurm.allocation(ALLOC_ENV)
    slurm.refuse_local_options(a, None, None, None)
    with pytest.raises(slurm.SlurmModeError) as e:
        slurm.refuse_local_options(a, 4, None, 2)
    msg = str(e.value)
    assert msg.startswith("--nodes 4, --gpus 2: only for local mode")
    assert "n[1-2,4]" in msg and "sbatch -N 4" in msg and "--local" in msg


def test_master_options_and_the_one_srun(tmp_path: Path) -> None:
    a = slurm.allocation(ALLOC_ENV)
    assert slurm.master_options(a) == ["--slurm", "--listen", "0.0.0.0:0", "--expect-nodes", "n[1-2,4]"]
    argv = slurm.srun_argv(Path("/shared/wd"), a, {}, python="/venv/bin/python")
    assert argv[:9] == [
        "srun", "--overlap", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1", "--kill-on-bad-exit=0",
        "--wait=0", "--cpu-bind=none", "--job-name=pj-agents",
    ]
    assert argv[9:11] == ["/bin/sh", "-c"] and argv[12:] == ["/venv/bin/python", "/shared/wd"]
    # What each node runs: the agent, logging to a file named after its Slurm node ("python" = echo).
    on_node = slurm.srun_argv(tmp_path, a, {}, python="/bin/echo")[9:]
    subprocess.run(on_node, env={"SLURMD_NODENAME": "n2"}, check=True)
    assert (tmp_path / "agent-n2.log").read_text() == f"-m pj.agent --workdir {tmp_path} --wait-master 600\n"
    extra = slurm.srun_argv(Path("/wd"), a, {"PJ_SRUN_ARGS": "--mem=1G --gres='gpu:1'"}, python="py")
    assert extra[9:11] == ["--mem=1G", "--gres=gpu:1"]
    with pytest.raises(slurm.SlurmModeError, match=r"\$PJ_SRUN_ARGS: No closing quotation"):
        slurm.srun_argv(Path("/wd"), a, {"PJ_SRUN_ARGS": "--mem='1G"})


def test_relays_by_default_from_512_nodes_or_as_many_as_asked() -> None:
    assert slurm.relay_group(511, "auto") == 0
    assert slurm.relay_group(512, "auto") == slurm.RELAY_GROUP == 256
    assert slurm.relay_group(8192, "auto", tls=True) == 0  # relays do not carry TLS: direct streams
    assert slurm.relay_group(4, "2") == 2 and slurm.relay_group(5, "2") == 3 and slurm.relay_group(3, "9") == 1
    assert slurm.relay_group(8192, "0") == 0
    with pytest.raises(slurm.SlurmModeError, match=r"^--relays 'many': give auto, or how many relays"):
        slurm.relay_group(4, "many")
    with pytest.raises(slurm.SlurmModeError, match=r"^--relays 2: relays do not carry TLS yet; drop --tls"):
        slurm.relay_group(4, "2", tls=True)


def test_the_relays_srun_puts_one_on_the_first_node_of_each_group(tmp_path: Path) -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": "n[1-5]"}
    a = slurm.allocation(env)
    argv = slurm.relay_srun_argv(Path("/wd"), a, {}, 2, python="py")
    assert argv[:10] == ["srun", "--overlap", "--nodes=3", "--ntasks=3", "--ntasks-per-node=1",
                         "--nodelist=n1,n3,n5", "--kill-on-bad-exit=0", "--wait=0", "--cpu-bind=none",
                         "--job-name=pj-relays"]
    on_node = slurm.relay_srun_argv(tmp_path, a, {}, 2, python="/bin/echo")[10:]
    subprocess.run(on_node, env={"SLURMD_NODENAME": "n3", "SLURM_PROCID": "1"}, check=True)
    assert (tmp_path / "relay-n3.log").read_text() == (
        f"-m pj.agent.relay --workdir {tmp_path} --wait-master 600 --listen 0.0.0.0:0 "
        f"--address-file {tmp_path}/relays/relay-1.addr\n")
    # The agents' srun passes what follows the workdir to every agent.
    agents = [*slurm.srun_argv(tmp_path, a, {}, python="/bin/echo")[9:], "--relay-group=2"]
    subprocess.run(agents, env={"SLURMD_NODENAME": "n2"}, check=True)
    assert (tmp_path / "agent-n2.log").read_text() == (
        f"-m pj.agent --workdir {tmp_path} --wait-master 600 --relay-group=2\n")


def test_log_tails_leave_out_harmless_slurm_remarks(tmp_path: Path) -> None:
    (tmp_path / "agent-n1.log").write_text("started\nboom: cannot reach the master\n")
    (tmp_path / "srun.log").write_text("srun: cluster configuration lacks support for cpu binding\n")
    lines = slurm.log_tails([tmp_path / "agent-n1.log", tmp_path / "srun.log", tmp_path / "none.log"], 1)
    assert lines == [f"  {tmp_path / 'agent-n1.log'}:", "    boom: cannot reach the master"]


# ---------------------------------------------------------------- the CLI refuses what cannot work


def test_cli_refuses_slurm_outside_an_allocation_and_local_options_inside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.json").write_text('{"jobs": [{"name": "a", "exec": "/bin/true"}]}')
    for k in ("SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        monkeypatch.delenv(k, raising=False)
    assert pj_main(["run", "c.json", "--slurm"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("pj: --slurm: not inside a Slurm allocation") and err.count("\n") == 1
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "n[1-2]")
    assert pj_main(["run", "c.json", "--cores", "8"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("pj: --cores 8: only for local mode") and "--local" in err
    assert pj_main(["run", "c.json", "--slurm", "--local"]) == 2
    _, err = capsys.readouterr()
    assert "not allowed with argument" in err
    assert pj_main(["run", "c.json", "--node-timeout", "soon"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("pj: --node-timeout") and err.count("\n") == 1
    assert not (tmp_path / "pj-runs").exists()  # nothing started


# ---------------------------------------------------------------- a campaign in Slurm mode, with fakes


def fake_master_cmd(workdir: Path, options: Sequence[str]) -> list[str]:
    return [sys.executable, str(FAKES), "--workdir", str(workdir), *options]


def fake_srun(script: str) -> object:
    """An "srun" that records what the real one would have been given, then runs ``script``."""

    def cmd(workdir: Path, alloc: slurm.Allocation, env: Mapping[str, str]) -> list[str]:
        (workdir / "srun-argv.json").write_text(json.dumps(slurm.srun_argv(workdir, alloc, env)))
        return [sys.executable, "-c", script, str(workdir)]

    return cmd


def slurm_campaign(tmp_path: Path, jobs: list[dict[str, object]], srun_script: str = FAKE_AGENT,
                   **kw: object) -> Campaign:
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"jobs": jobs}))
    opts: dict[str, object] = dict(master_cmd=fake_master_cmd, srun_cmd=fake_srun(srun_script), env=ALLOC_ENV,
                                   exit_timeout=20.0)
    opts.update(kw)
    return Campaign(f, **opts)  # type: ignore[arg-type]


def test_slurm_campaign_starts_one_srun_and_prints_notices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    c = slurm_campaign(tmp_path, [{"name": "a", "exec": "/bin/true"}, {"name": "notice-me", "exec": "/bin/true"}],
                       node_timeout=90.0, missing_nodes="fail")
    assert c.run() == 0
    out, err = capsys.readouterr()
    wd = next((tmp_path / "pj-runs").iterdir())
    assert wd.name.endswith("-job77")  # the default workdir names the Slurm job
    assert "2 jobs submitted; Slurm job 77: 3 nodes n[1-2,4], 10 CPUs, one agent per node" in err
    assert "pj: warning: node(s) n3 did not register within 1 s; going on with 1 of 2 nodes (notice-me)" in err
    assert "pj run finished: 2 jobs: SUCCEED 2" in out
    assert f"logs:   {wd / 'master.log'}, {wd / 'agent-*.log'}, {wd / 'srun.log'}" in out
    master_argv = json.loads((wd / "fake-master-argv.json").read_text())
    assert master_argv == ["--workdir", str(wd), "--slurm", "--listen", "0.0.0.0:0", "--expect-nodes", "n[1-2,4]",
                           "--node-timeout", "90s", "--missing-nodes", "fail"]
    srun = json.loads((wd / "srun-argv.json").read_text())
    assert srun[:4] == ["srun", "--overlap", "--nodes=3", "--ntasks=3"]
    assert srun[-2:] == [sys.executable, str(wd)]
    assert [a.name for a in c.agents] == ["srun"] and c.agents[0].proc.returncode == 0


def test_slurm_campaign_ends_when_the_agents_srun_ends_early(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    dying = ("import pathlib, sys; wd = pathlib.Path(sys.argv[1])\n"
             "(wd / 'agent-n1.log').write_text('agent n1: cannot reach the master at vm:1\\n')\n"
             "print('srun: error: n1: task 0: Exited with exit code 1'); sys.exit(1)\n")
    c = slurm_campaign(tmp_path, [{"name": "hang", "exec": "/bin/sleep"}], srun_script=dying,
                       workdir=tmp_path / "wd", quiet=True)
    assert c.run() == 1
    out, err = capsys.readouterr()
    assert ("pj: the agents' srun (a step of Slurm job 77) exited with code 1 before the campaign ended: "
            "no agent is left") in err
    assert "agent n1: cannot reach the master at vm:1" in err and "task 0: Exited with exit code 1" in err
    assert out.startswith("pj run failed: 1 job:")
    assert c.master is not None and c.master.proc.returncode == 0  # told to cancel and stop


def test_local_mode_inside_an_allocation_tells_the_master(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from test_client_cli import campaign  # local mode with the fake master and fake agents

    c = campaign(tmp_path, [{"name": "a", "exec": "/bin/true"}], env=ALLOC_ENV, slurm_mode=False, nodes=2,
                 node_timeout=0.5)
    assert c.run() == 0
    argv = json.loads((tmp_path / "wd" / "fake-master-argv.json").read_text())
    assert argv[2:] == ["--expect-nodes", "2", "--no-slurm", "--node-timeout", "0.5s"]
    assert [a.name for a in c.agents] == ["node0", "node1"]


def test_pj_run_passes_heartbeat_timeout_crash_limit_and_resume(tmp_path: Path) -> None:
    from pj.client.cli import pj_parser

    args = pj_parser().parse_args(["run", "f.json", "--heartbeat-timeout", "2m", "--crash-limit", "0", "--resume"])
    assert (args.heartbeat_timeout, args.crash_limit, args.resume) == (120.0, 0, True)
    c = Campaign(tmp_path / "f.json", workdir=tmp_path / "wd", nodes=2, cores=1, env={},
                 heartbeat_timeout=args.heartbeat_timeout, crash_limit=args.crash_limit, resume=True)
    c._choose_mode()
    assert c._master_options() == ["--expect-nodes", "2", "--heartbeat-timeout", "120s", "--crash-limit", "0",
                                   "--resume"]


def test_a_resumed_run_keeps_the_token(tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "master.json").write_text(json.dumps({"pid": 0, "address": "127.0.0.1:1"}))
    (wd / "token").write_text("t\n")
    Campaign(tmp_path / "f.json", workdir=wd, resume=True, env={})._prepare_workdir()
    assert not (wd / "master.json").exists() and (wd / "token").exists()
    Campaign(tmp_path / "f.json", workdir=wd, env={})._prepare_workdir()
    assert (wd / "token").exists()  # no master.json: nothing is taken for stale
