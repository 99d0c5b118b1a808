"""Memory as a resource in the pure core: the pool packs by cores, GPUs and memory; a job asking
for more memory than any node offers fails naming memory; waiting reasons say memory is short;
what a task holds is kept through the journal, a --resume and an agent's return."""

from __future__ import annotations

from pj.master import journal
from pj.master.core import Core
from pj.master.model import State
from pj.master.restore import Batch, Placement, restore
from pj.master.why import Why

from .coreharness import Run, node, spec

G = 2**30
CAMPAIGN = "c0ffee"


def _running(r: Run) -> set[str]:
    return {f"{t.job.name}:{t.iteration}" for t in r.core.running.values()}


def test_memory_packs_tasks_one_after_another_and_without_memory_as_before() -> None:
    r = Run(cores=4, memory=4 * G)
    r.submit(spec("big", it=2, memory=3 * G), spec("small", it=3, memory=1 * G), spec("free", it=2))
    r.step()
    # big:0 takes 3 of 4 GiB, small:0 the last; big:1 and the other small ones wait; "free" asks no memory
    assert _running(r) == {"big:0", "small:0", "free:0", "free:1"}
    node0 = r.core.pool.by_name["n0"]
    assert node0.free_memory == 0 and r.core.pool.free_cores == 0
    r.finish_all()
    r.step()
    assert len(r.core.running) >= 1 and node0.free_memory >= 0
    r.run_to_end()
    assert {j.state for j in r.core.registry.jobs.values()} == {State.SUCCEED}
    assert node0.free_memory == 4 * G


def test_a_job_needing_more_memory_than_any_node_fails_naming_memory() -> None:
    r = Run(nodes=2, cores=8, memory=4 * G)
    r.submit(spec("huge", memory=5 * G), spec("fits", memory=4 * G))
    job = r.core.registry.get("huge")
    assert job is not None and job.state == State.FAILED
    assert "can never fit" in job.reason and "5 GiB memory" in job.reason
    assert "at most 4 GiB memory per node" in job.reason
    assert r.state("fits") == State.QUEUED
    r.run_to_end()
    assert r.state("fits") == State.SUCCEED


def test_a_node_without_registered_memory_takes_only_tasks_asking_for_none() -> None:
    r = Run(cores=4)  # an agent that registered no memory (0)
    r.submit(spec("mem", memory=G), spec("plain"))
    assert r.state("mem") == State.FAILED and "no node registered its memory" in r.core.registry.jobs["mem"].reason
    r.run_to_end()
    assert r.state("plain") == State.SUCCEED


def test_multi_node_tasks_hold_memory_on_each_node() -> None:
    r = Run(nodes=2, cores=4, memory=4 * G)
    r.submit(spec("mpi", nodes=2, cores=1, memory=3 * G), spec("one", memory=2 * G))
    r.step()
    assert _running(r) == {"mpi:None"}
    assert [s.memory for s in r.core.running[next(iter(r.core.running))].allocation] == [3 * G, 3 * G]
    assert "waiting for free memory" in Why(r.core, r.t).reason(r.core.registry.jobs["one"])
    assert "at most 1 GiB memory on a node" in Why(r.core, r.t).reason(r.core.registry.jobs["one"])
    r.run_to_end()
    assert r.state("one") == State.SUCCEED


def test_the_journal_keeps_the_memory_a_task_holds() -> None:
    r = Run(cores=4, memory=4 * G)
    r.submit(spec("a", memory=3 * G), spec("b"))
    r.step()
    for t in r.core.running.values():
        assert journal._allocation(journal._alloc(t)) == t.allocation


def test_memory_is_held_again_after_resume_and_the_agents_return() -> None:
    t = 100.0
    first = Core(now=t, campaign=CAMPAIGN)
    first.node_joined(node(cores=4, memory=4 * G), t)
    specs = [spec("a", memory=3 * G), spec("b", memory=3 * G)]
    batch = Batch(specs, t)
    first.submit(specs, t)
    out = first.step(t)
    placements = [Placement(x.id, x.job.name, x.iteration, x.allocation) for x in out.placed]
    assert [p.allocation[0].memory for p in placements] == [3 * G]  # b waits: 1 GiB left
    t += 10
    core = Core(now=t, campaign=CAMPAIGN)
    core.recon.grace = 5.0
    restore(core, [batch], [], [], [], t, placements, 60.0)
    core.node_joined(node(cores=4, memory=4 * G), t, CAMPAIGN, running=[placements[0].task_id])
    assert core.pool.by_name["n0"].free_memory == G  # a's 3 GiB held again
    assert [x.job.name for x in core.step(t + 1).placed] == []  # b still does not fit
    core.task_exited(placements[0].task_id, 0, "", t + 2)
    assert core.pool.by_name["n0"].free_memory == 4 * G
    assert [x.job.name for x in core.step(t + 3).placed] == ["b"]


def test_resources_report_free_memory() -> None:
    from pj.master.convert import node_to_pb

    r = Run(cores=4, memory=4 * G)
    r.submit(spec("a", memory=3 * G))
    r.step()
    msg = node_to_pb(r.core.pool.by_name["n0"])
    assert (msg.memory_bytes, msg.memory_free_bytes) == (4 * G, G)


def test_service_mode_waits_for_an_agent_with_enough_memory_and_names_the_option() -> None:
    from .test_why import Run as WhyRun

    r = WhyRun()  # pj-master without --expect-nodes: never failed, it waits
    r.submit(spec("big", memory=6 * G))
    assert r.why("big") == "no agent has joined yet; start one with pj-agent --workdir DIR --cores 1 or more and --memory 6G or more"
    r.core.node_joined(node("n0", 4, memory=4 * G), r.t)
    r.step()
    assert r.core.registry.jobs["big"].state == State.QUEUED
    assert r.why("big") == (
        "no agent that has joined has 1 core and 6 GiB memory (largest: 4 cores, most memory: 4 GiB); "
        "start an agent with --memory 6G or more, or cancel the job")
    r.core.node_joined(node("n1", 2, memory=8 * G), r.t)
    r.step()
    assert r.core.registry.jobs["big"].state == State.EXECUTING


def test_iteration_sizing_counts_what_memory_holds() -> None:
    from pj.master.itersize import resolve
    from pj.master.model import Range, Request, Sizing

    sizing = Sizing("cores", "maximum-iters", 0)
    node4 = [(4, 0, 4 * G)]
    plain = Request(cores=Range(1, None), sizing=sizing)
    assert resolve(plain, 4, node4) == Request(cores=Range(1, 1))  # 4 at once, 1 core each
    mem = Request(cores=Range(1, None), sizing=sizing, memory=2 * G)
    assert resolve(mem, 4, node4) == Request(cores=Range(2, 2), memory=2 * G)  # 2 at once: 2 rounds of 2 cores
    why = resolve(mem, 4, [(4, 0, G)])  # no node holds 2 GiB
    assert why == ("maximum-iters: no node of the run holds its min of 1 core(s) with 2 GiB memory per node; "
                   "the run has 4 core(s) on 1 node(s), at most 1 GiB memory per node")
