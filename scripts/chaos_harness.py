"""A chaos campaign on real processes (issue 13, item 10): used by scripts/chaos and
tests/integration/test_chaos.py.

A master (journaling, so that ``--resume`` works) and a few agents run a campaign of short jobs
with dependencies and iterations (chains, fan-out/fan-in with ``after``, iterations with
``after: sim:${it}``, a few jobs that fail once and succeed on their retry, some longer ones),
while the master is killed -9 and restarted with ``pj-master --resume --workdir DIR`` (the agents
find it again by themselves through the workdir) and an agent is killed -9 and restarted under the
same name. When to kill (a fraction of the tasks ended), what, and how long to wait before the
restart are drawn from ``random.Random(seed)``: a failure reproduces with the same seed.

Every task runs ``task.sh KEY SLEEP MODE``, which

- takes an exclusive ``flock`` on ``locks/KEY`` (held by the task and its children until they are
  all gone, even after a SIGKILL): a second copy running at the same time cannot take it and logs
  ``dup`` and exits 3 (loudly: the job fails too);
- appends ``start KEY PID T``, then ``end KEY PID T RC`` (or ``term KEY PID T`` when stopped by
  SIGTERM) to ``log`` (O_APPEND, one write per line).

Afterwards :func:`check` reads the log, the final List and ``jobs.jsonl``: every job final (and
SUCCEED: nothing in the plan may fail for good), none lost, no ``dup``, no two runs of a task
overlapping in time, no task started before the tasks it depends on ended, every task ended 0 once;
and with ``exact_runs`` (master kills only) every task started exactly as often as it must (1, or 2
for a job that fails once).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

FINAL = {"SUCCEED", "FAILED", "CANCELED", "OMITTED"}

TASK_SH = r"""# task.sh KEY SLEEP MODE: one run of one chaos task (see scripts/chaos_harness.py)
k=$1; d=$2; mode=$3; L=$CHAOS_DIR
exec 9>>"$L/locks/$k"
if ! flock -n 9; then echo "dup $k $$ $EPOCHREALTIME" >> "$L/log"; exit 3; fi
echo "start $k $$ $EPOCHREALTIME" >> "$L/log"
trap 'echo "term $k $$ $EPOCHREALTIME" >> "$L/log"; exit 143' TERM
[ "$d" = 0 ] || sleep "$d"
if [ "$mode" = failonce ] && [ ! -e "$L/flags/$k" ]; then
  : > "$L/flags/$k"; echo "end $k $$ $EPOCHREALTIME 1" >> "$L/log"; exit 1
fi
echo "end $k $$ $EPOCHREALTIME 0" >> "$L/log"
"""


# ----------------------------------------------------------------------------- the campaign


@dataclass
class Workload:
    """The jobs (native format) and, per task key (``job`` or ``job.IT``), what it waits for."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    deps: dict[str, list[str]] = field(default_factory=dict)  # task key -> task keys it runs after
    runs: dict[str, int] = field(default_factory=dict)  # task key -> starts it needs (1, or 2: fails once)

    @property
    def names(self) -> list[str]:
        return [str(j["name"]) for j in self.jobs]

    @property
    def tasks(self) -> int:
        return len(self.runs)


def make_workload(target_tasks: int, rng: random.Random, chaos_dir: Path) -> Workload:
    """About ``target_tasks`` tasks: a quarter in chains, a third in fan-out/fan-in groups, the
    rest in iteration pairs (sim -> post per iteration -> gather), plus fail-once jobs (retries 2)
    and longer ones (so that kills find tasks running)."""
    w = Workload()
    env = {"CHAOS_DIR": str(chaos_dir)}
    script = str(chaos_dir / "task.sh")

    def keys_of(name: str, iterations: int) -> list[str]:
        return [f"{name}.{i}" for i in range(iterations)] if iterations else [name]

    def add(name: str, after: list[str] | None = None, iterations: int = 0, sleep: str = "0",
            mode: str = "ok", retries: int = 0, dep_keys: list[str] | None = None,
            per_it_dep: str | None = None) -> None:
        key = f"{name}.${{it}}" if iterations else name
        job: dict[str, Any] = {"name": name, "exec": "/bin/bash", "args": [script, key, sleep, mode],
                               "env": env}
        if iterations:
            job["iterations"] = iterations
        if after:
            job["after"] = after
        if retries:
            job["retries"] = retries
        w.jobs.append(job)
        for i, k in enumerate(keys_of(name, iterations)):
            deps = list(dep_keys or [])
            if per_it_dep is not None:
                deps.append(f"{per_it_dep}.{i}")
            w.deps[k] = deps
            w.runs[k] = 2 if mode == "failonce" else 1

    def short() -> str:
        return rng.choice(["0", "0", "0", "0.02", "0.05"])

    n = max(target_tasks, 40)
    # Chains: c{i}-{j} after c{i}-{j-1}.
    chain_tasks = n // 4
    length = 12
    for c in range(max(1, chain_tasks // length)):
        prev: str | None = None
        for j in range(length):
            name = f"c{c}-{j}"
            add(name, after=[prev] if prev else None, sleep=short(), dep_keys=[prev] if prev else None)
            prev = name
    # Fan-out/fan-in: f{g}-root, f{g}-{k} after root, f{g}-sink after every leaf.
    fan_tasks = n // 3
    width = 20
    for g in range(max(1, fan_tasks // (width + 2))):
        root = f"f{g}-root"
        add(root, sleep=short())
        leaves = [f"f{g}-{k}" for k in range(width)]
        for leaf in leaves:
            add(leaf, after=[root], sleep=short(), dep_keys=[root])
        add(f"f{g}-sink", after=leaves, dep_keys=leaves)
    # Iterations: s{g} (iterations), p{g} after s{g}:${it}, gather g{g} after p{g}.
    extra = max(4, n // 50)  # fail-once and long jobs
    done = len(w.runs)
    iter_tasks = max(0, n - done - 2 * extra)
    its = 40
    for g in range(max(1, iter_tasks // (2 * its))):
        sim, post = f"s{g}", f"p{g}"
        add(sim, iterations=its, sleep=short())
        add(post, after=[f"{sim}:${{it}}"], iterations=its, sleep=short(), per_it_dep=sim)
        add(f"g{g}", after=[post], dep_keys=keys_of(post, its))
    # Retries: fail on the first attempt, succeed on the second; and what depends on them.
    for r in range(extra // 2):
        add(f"r{r}", mode="failonce", retries=2, sleep=short())
        add(f"r{r}-next", after=[f"r{r}"], dep_keys=[f"r{r}"])
    # Longer tasks: running when a kill comes.
    for r in range(extra):
        add(f"long{r}", sleep=rng.choice(["0.5", "1", "1.5", "2"]))
    rng.shuffle(w.jobs)  # FIFO order: the long ones, the chains, the fans, the iterations mixed
    return w


# ----------------------------------------------------------------------------- the processes


@dataclass
class Plan:
    jobs: int = 1000  # tasks wanted, about
    master_kills: int = 2
    agent_kills: int = 1
    seed: int = 1
    agents: int = 3
    cores: int = 2
    duration: float = 55.0  # the most the campaign may take after the submit (seconds)
    settle: bool = True  # after a restart, wait for every agent to be back before the next kill


@dataclass
class Kill:
    what: str  # "master" or "agent"
    at: float  # fraction of the tasks ended
    agent: int  # which agent (what == "agent")
    pause: float  # seconds between the kill and the restart


def kill_schedule(plan: Plan, rng: random.Random) -> list[Kill]:
    whats = ["master"] * plan.master_kills + ["agent"] * plan.agent_kills
    rng.shuffle(whats)
    fractions = sorted(rng.uniform(0.1, 0.8) for _ in whats)
    return [Kill(w, round(f, 3), rng.randrange(plan.agents), round(rng.uniform(0.0, 0.5), 2))
            for w, f in zip(whats, fractions, strict=True)]


@dataclass
class Result:
    seed: int
    jobs: int
    tasks: int
    starts: int = 0
    kills: list[str] = field(default_factory=list)  # what@tasks ended/tasks running when killed
    restarts: int = 0
    duplicates: int = 0  # "dup" lines + overlapping runs
    reruns: int = 0  # starts beyond those a task needs
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    def figures(self) -> str:
        return (f"seed {self.seed}: jobs {self.jobs}, tasks {self.tasks}, starts {self.starts}, "
                f"kills {len(self.kills)} ({', '.join(self.kills) or 'none'}), restarts {self.restarts}, "
                f"duplicates {self.duplicates}, reruns {self.reruns}, time {self.seconds:.1f} s, "
                f"violations {len(self.violations)}")


class Procs:
    """The master and agents this campaign started (every Popen kept, so that all are reaped)."""

    def __init__(self, workdir: Path, plan: Plan) -> None:
        self.workdir = workdir
        self.plan = plan
        self.all: list[subprocess.Popen[bytes]] = []
        self.master: subprocess.Popen[bytes] | None = None
        self.agents: list[subprocess.Popen[bytes]] = []
        self._logs = 0

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        self._logs += 1
        with open(self.workdir / f"{log}.{self._logs}.log", "wb") as out:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self.all.append(p)
        return p

    def start_master(self, resume: bool) -> None:
        args = [sys.executable, "-m", "pj.master", "--workdir", str(self.workdir),
                "--expect-nodes", str(self.plan.agents), "--heartbeat-timeout", "10s"]
        self.master = self._spawn([*args, "--resume"] if resume else args, "master")
        self.wait_master(self.master)

    def wait_master(self, p: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """Until DIR/master.json names ``p`` (a killed master's file may still be there)."""
        deadline = time.monotonic() + timeout
        info = self.workdir / "master.json"
        while True:
            try:
                if json.loads(info.read_text())["pid"] == p.pid:
                    return
            except (OSError, ValueError, KeyError):
                pass
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"master {p.pid} did not start (exit {p.poll()}); see {self.workdir}")
            time.sleep(0.02)

    def start_agent(self, i: int) -> subprocess.Popen[bytes]:
        p = self._spawn([sys.executable, "-m", "pj.agent", "--workdir", str(self.workdir), "--name",
                         f"node{i}", "--cores", str(self.plan.cores), "--kill-grace", "1",
                         "--reconnect-timeout", "60"], f"agent-node{i}")
        if i < len(self.agents):
            self.agents[i] = p
        else:
            self.agents.append(p)
        return p

    def kill_all(self) -> None:
        for p in self.all:
            if p.poll() is None:
                p.kill()
        for p in self.all:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                pass


def leftovers(workdir: Path) -> list[psutil.Process]:
    """Live processes of this user that belong to the campaign in ``workdir``: its master and
    agents (their command line names it), the agents' watchdogs and the tasks (their environment)."""
    key = str(workdir)
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status", "uids"]):
        try:
            if p.pid == me or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if p.info["uids"] is None or p.info["uids"].real != os.getuid():
                continue
            if key in " ".join(p.info["cmdline"] or ()) or any(key in v for v in p.environ().values()):
                out.append(p)
        except psutil.Error:
            continue
    return out


def sweep(workdir: Path, wait: float = 5.0) -> list[str]:
    """After the campaign: give what is left ``wait`` seconds to end by itself (an agent's watchdog
    finishing its work), then kill it. Returns what had to be killed."""
    deadline = time.monotonic() + wait
    while (left := leftovers(workdir)) and time.monotonic() < deadline:
        time.sleep(0.1)
    killed = []
    for p in left:
        try:
            killed.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            p.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=5)
    return killed


# ----------------------------------------------------------------------------- running it


class LogTail:
    """Counts the ``end`` lines (and the runs under way) of the shared log as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.pos = 0
        self.ended = 0
        self.running = 0  # started, neither ended nor stopped by SIGTERM
        self._rest = b""

    def poll(self) -> int:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return self.ended
        self.pos += len(data)
        data = self._rest + data
        lines = data.split(b"\n")
        self._rest = lines.pop()
        for x in lines:
            if x.startswith(b"end "):
                self.ended += 1
                self.running -= 1
            elif x.startswith(b"start "):
                self.running += 1
            elif x.startswith(b"term "):
                self.running -= 1
        return self.ended


def run(plan: Plan, workdir: Path, say: Any = print) -> Result:
    """Run the campaign with its kills in ``workdir`` (created), check it, stop every process."""
    from pj.client import Client

    rng = random.Random(plan.seed)
    workdir.mkdir(parents=True, exist_ok=True)
    chaos = workdir / "chaos"
    for d in ("locks", "flags"):
        (chaos / d).mkdir(parents=True, exist_ok=True)
    (chaos / "task.sh").write_text(TASK_SH)
    w = make_workload(plan.jobs, rng, chaos)
    kills = kill_schedule(plan, rng)
    res = Result(plan.seed, len(w.jobs), w.tasks)
    say(f"chaos: seed {plan.seed}: {len(w.jobs)} jobs, {w.tasks} tasks, {plan.agents} agents x "
        f"{plan.cores} cores; kills " + ", ".join(f"{k.what}{'' if k.what == 'master' else k.agent}"
                                                  f"@{k.at:.0%}+{k.pause}s" for k in kills))
    pwd = workdir / "pj"
    pwd.mkdir(exist_ok=True)
    procs = Procs(pwd, plan)
    tail = LogTail(chaos / "log")
    t0 = time.monotonic()
    try:
        procs.start_master(resume=False)
        for i in range(plan.agents):
            procs.start_agent(i)
        with Client(pwd, reconnect_timeout=30) as c:
            deadline = time.monotonic() + 30
            while sum(n.online for n in c.resources().nodes) < plan.agents:
                if time.monotonic() > deadline:
                    raise RuntimeError("the agents did not join")
                time.sleep(0.05)
            t0 = time.monotonic()
            c.submit(w.jobs, base_dir=chaos)
        deadline = t0 + plan.duration
        for k in kills:
            while tail.poll() < k.at * w.tasks:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the campaign stalled at {tail.ended} of {w.tasks} tasks "
                                       f"before the kill at {k.at:.0%}")
                time.sleep(0.01)
            if k.what == "master":
                assert procs.master is not None
                procs.master.kill()
                procs.master.wait()
                res.kills.append(f"master@{tail.ended}/{tail.running}")
                time.sleep(k.pause)
                procs.start_master(resume=True)
            else:
                a = procs.agents[k.agent]
                a.kill()
                a.wait()
                res.kills.append(f"node{k.agent}@{tail.ended}/{tail.running}")
                time.sleep(k.pause)
                procs.start_agent(k.agent)
            res.restarts += 1
            say(f"chaos: {res.kills[-1]} killed at {time.monotonic() - t0:.1f} s, restarted")
            if not plan.settle:
                continue
            with Client(pwd) as c:  # wait for every agent to be back before the next kill
                while sum(n.online for n in c.resources().nodes) < plan.agents:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the agents did not come back after the restart")
                    time.sleep(0.05)
        with Client(pwd, reconnect_timeout=30) as c:
            states = c.wait(timeout=max(1.0, deadline - time.monotonic()))
            listed = {j.name: j.state for j in c.list()}
            c.finish()
        assert procs.master is not None
        rc = procs.master.wait(30)
        res.seconds = time.monotonic() - t0
        if rc != 0:
            res.violations.append(f"the master exited {rc}")
        for i, a in enumerate(procs.agents):
            try:
                arc = a.wait(15)
            except subprocess.TimeoutExpired:
                arc = None
            if arc != 0:
                res.violations.append(f"agent node{i} exited {arc}")
        check(w, states, listed, pwd / "jobs.jsonl", chaos / "log", exact_runs=plan.agent_kills == 0, res=res)
    except Exception as e:  # a stall, a master that does not come back: a finding, with the seed
        res.seconds = time.monotonic() - t0
        res.violations.append(f"{type(e).__name__}: {e}")
    finally:
        procs.kill_all()
        res.leftovers = sweep(workdir)
    if res.leftovers:
        res.violations.append(f"{len(res.leftovers)} process(es) left behind: {res.leftovers[:5]}")
    return res


# ----------------------------------------------------------------------------- the checks


@dataclass
class Run:
    pid: str
    start: float
    end: float | None = None  # None: never ended nor was stopped by SIGTERM (SIGKILL, or lost)
    rc: int | None = None  # None: stopped by SIGTERM, or no end


def read_log(path: Path) -> tuple[dict[str, list[Run]], list[str]]:
    runs: dict[str, list[Run]] = defaultdict(list)
    dups: list[str] = []
    open_runs: dict[tuple[str, str], Run] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        kind, key, pid, t = parts[0], parts[1], parts[2], float(parts[3])
        if kind == "dup":
            dups.append(line)
        elif kind == "start":
            r = Run(pid, t)
            runs[key].append(r)
            open_runs[(key, pid)] = r
        elif kind in ("end", "term"):
            r = open_runs.pop((key, pid))
            r.end = t
            r.rc = int(parts[4]) if kind == "end" else None
    return runs, dups


def _iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def check(w: Workload, states: dict[str, str], listed: dict[str, str], report: Path, log: Path,
          exact_runs: bool, res: Result) -> None:
    """Appends every violation to ``res.violations``; fills ``starts``, ``duplicates``, ``reruns``."""
    v = res.violations
    names = w.names
    not_final = [n for n in names if states.get(n) not in FINAL]
    if not_final:
        v.append(f"{len(not_final)} job(s) not final after the wait: {not_final[:5]}")
    missing = [n for n in names if n not in listed]
    if missing:
        v.append(f"{len(missing)} job(s) lost (not in the final List): {missing[:5]}")
    failed = {n: s for n, s in listed.items() if s != "SUCCEED"}
    if failed:
        v.append(f"{len(failed)} job(s) did not succeed: {dict(list(failed.items())[:5])}")
    lines = list(_iter_jsonl(report)) if report.exists() else []
    if not lines:
        v.append(f"no report {report}")
    job_lines = {x["name"]: x for x in lines if x.get("iteration") is None}
    missing = [n for n in names if n not in job_lines]
    if missing:
        v.append(f"{len(missing)} job(s) lost (not in jobs.jsonl): {missing[:5]}")
    bad = {n: x.get("state") for n, x in job_lines.items() if x.get("state") != "SUCCEED"}
    if bad:
        reasons = {n: job_lines[n].get("reason", "") for n in list(bad)[:3]}
        v.append(f"{len(bad)} job(s) not SUCCEED in jobs.jsonl: {dict(list(bad.items())[:5])} {reasons}")
    iter_lines = Counter(x.get("job") for x in lines if x.get("iteration") is not None)
    for j in w.jobs:
        if j.get("iterations") and iter_lines[j["name"]] != j["iterations"]:
            v.append(f"job {j['name']}: {iter_lines[j['name']]} iteration lines in jobs.jsonl, "
                     f"not {j['iterations']}")

    runs, dups = read_log(log)
    res.starts = sum(len(r) for r in runs.values())
    overlaps = []
    for key, rs in runs.items():
        # A run killed without a word (no end, no term) is left to the flock (dup) to judge.
        last: Run | None = None  # the earlier run that ended last
        for b in sorted(rs, key=lambda r: r.start):
            if last is not None and last.end is not None and b.start < last.end:
                overlaps.append(f"{key}: pid {last.pid} ran {last.start:.3f}-{last.end:.3f}, pid {b.pid} "
                                f"started {b.start:.3f}")
            if b.end is not None and (last is None or last.end is None or b.end > last.end):
                last = b
    res.duplicates = len(dups) + len(overlaps)
    if dups:
        v.append(f"{len(dups)} task(s) started while another copy ran (flock): {dups[:5]}")
    if overlaps:
        v.append(f"{len(overlaps)} overlapping run(s) of a task: {overlaps[:5]}")
    unknown = sorted(set(runs) - set(w.runs))
    if unknown:
        v.append(f"tasks ran that the plan does not have: {unknown[:5]}")
    never = [k for k in w.runs if not any(r.rc == 0 for r in runs.get(k, []))]
    if never:
        v.append(f"{len(never)} task(s) never ended with exit 0: {never[:5]}")
    res.reruns = sum(max(0, len(runs.get(k, [])) - n) for k, n in w.runs.items())
    if exact_runs:
        wrong = {k: len(runs.get(k, [])) for k, n in w.runs.items() if len(runs.get(k, [])) != n}
        if wrong:
            v.append(f"{len(wrong)} task(s) started a wrong number of times with master kills only "
                     f"(key: starts): {dict(list(wrong.items())[:8])}")
    # Dependencies: no task started before the tasks it runs after had ended well.
    early = []
    for key, deps in w.deps.items():
        for d in deps:
            ok_end = min((r.end for r in runs.get(d, []) if r.rc == 0 and r.end is not None), default=None)
            first = min((r.start for r in runs.get(key, [])), default=None)
            if first is not None and (ok_end is None or first < ok_end):
                early.append(f"{key} started at {first:.3f} before {d} ended well ({ok_end})")
    if early:
        v.append(f"{len(early)} task(s) started before their dependencies ended: {early[:5]}")


def main_signal_safe() -> None:
    """Let SIGTERM/SIGINT unwind through ``finally`` blocks (every process is then killed)."""

    def stop(sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(sig).name)

    signal.signal(signal.SIGTERM, stop)
