"""pj.client.AsyncClient end to end: a real pj-master, real pj-agents, real gRPC sockets, driven
from asyncio programs (``asyncio.run`` inside plain tests; `cluster_factory` is in tests/conftest.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from pj.client import (
    AsyncClient,
    AuthError,
    InvalidJobError,
    MasterNotFound,
    MasterUnreachable,
    PJError,
    PJTimeout,
    UnknownJobError,
)
from pj.client.convert import FINAL_STATES, JobInfo, Resources, Status, WatchEvent
from pj.master.tls import make_cert

pytestmark = pytest.mark.timeout(90)

T = TypeVar("T")


def run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(60):  # a hang fails the test instead of stalling it
            return await main()

    return asyncio.run(bounded())


async def online(pj: AsyncClient, n: int) -> None:
    while sum(node.online for node in (await pj.resources()).nodes) < n:
        await asyncio.sleep(0.05)


def test_submit_watch_wait_list_and_info(cluster_factory: Any, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    c = cluster_factory(nodes=2, cores=2)
    monkeypatch.chdir(tmp_path)

    async def main() -> None:
        async with AsyncClient(c.workdir) as pj:
            await online(pj, 2)
            names = await pj.submit([
                {"name": "hello", "exec": "/bin/echo", "args": ["hi"], "stdout": "hello.out"},
                {"name": "sweep", "script": "echo ${it} > it-${it}.out", "iterations": 3, "after": ["hello"]},
                *({"name": f"small{i}", "exec": "/bin/true"} for i in range(5)),
            ])
            assert names == ["hello", "sweep", *(f"small{i}" for i in range(5))]

            # watch: an async iterator whose events carry the job's final state
            seen: dict[str, str] = {}
            first: WatchEvent | None = None
            async with pj.watch(["sweep"]) as events:
                async for event in events:
                    first = first or event
                    seen.update((j.name, j.state) for j in event.changed)
                    if event.watched_unfinished == 0:
                        break
            assert first is not None and first.watched_total == 1
            assert seen["sweep"] == "SUCCEED"

            assert await pj.wait(names, timeout=30) == dict.fromkeys(names, "SUCCEED")
            assert await pj.wait(timeout=30) == dict.fromkeys(names, "SUCCEED")  # every job
            assert await pj.wait([]) == {}

            # list, page after page (2 a page), and filtered by state
            listed = [j async for j in pj.list(page_size=2)]
            assert sorted(j.name for j in listed) == sorted(names)
            assert all(j.finished for j in listed)
            assert [j async for j in pj.list(states=["FAILED"])] == []
            sweep = next(j for j in listed if j.name == "sweep")
            assert (sweep.iterations, sweep.iterations_done) == (3, 3)

            # info with tasks: one per iteration, each ran on a node's core, exited 0
            [info] = await pj.info("sweep", with_tasks=True)
            assert isinstance(info, JobInfo) and info.state == "SUCCEED"
            assert sorted(t.iteration for t in info.tasks if t.iteration is not None) == [0, 1, 2]
            for t in info.tasks:
                assert t.exit_code == 0 and t.state == "SUCCEED"
                assert t.shares and t.shares[0].node in ("node0", "node1") and len(t.shares[0].cores) == 1
            assert [h.state for h in info.history][-1] == "SUCCEED"

            status = await pj.status()
            assert isinstance(status, Status)
            assert status.jobs == {"SUCCEED": len(names)} and status.jobs_unfinished == 0
            resources = await pj.resources()
            assert isinstance(resources, Resources)
            assert sorted(n.name for n in resources.nodes) == ["node0", "node1"]

    run(main)
    assert (tmp_path / "hello.out").read_text() == "hi\n"  # relative paths: against the cwd
    assert sorted(p.name for p in tmp_path.glob("it-*.out")) == ["it-0.out", "it-1.out", "it-2.out"]


def test_errors_are_the_clients(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, cores=1)
    address = json.loads((c.workdir / "master.json").read_text())["address"]
    bad = tmp_path / "bad-token"
    bad.write_text("not-the-token\n")

    async def main() -> None:
        async with AsyncClient(c.workdir) as pj:
            with pytest.raises(UnknownJobError, match="nope"):
                await pj.info(["nope"])
            with pytest.raises(UnknownJobError):
                await pj.cancel("nope")
            with pytest.raises(KeyError):  # UnknownJobError is a KeyError too
                await pj.wait(["nope"], timeout=10)
            # refused by the parser here, and by the master (a dependency on a job it does not know)
            with pytest.raises(InvalidJobError, match="cores"):
                await pj.submit([{"name": "x", "exec": "/bin/true", "cores": "many"}])
            with pytest.raises(InvalidJobError, match="ghost"):
                await pj.submit([{"name": "y", "exec": "/bin/true", "after": ["ghost"]}])
            with pytest.raises(ValueError):  # an unknown state, before any call
                [j async for j in pj.list(states=["NAPPING"])]
            assert [j async for j in pj.list()] == []  # nothing of the refused submissions was kept

        async with AsyncClient(address=address, token_file=bad) as intruder:
            with pytest.raises(AuthError, match="refused the token"):
                await intruder.status()
            with pytest.raises(AuthError):
                await intruder.wait(timeout=10)
            with pytest.raises(AuthError):
                async for _ in intruder.watch():
                    pass

        closed = AsyncClient(c.workdir)
        await closed.close()
        with pytest.raises(PJError, match="closed"):
            await closed.status()

    run(main)
    with pytest.raises(MasterNotFound):
        AsyncClient(tmp_path / "no-master-here")


def test_concurrent_waits_cancel_timeout_and_watch_ends(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=4)

    async def main() -> None:
        async with AsyncClient(c.workdir) as pj:
            await online(pj, 1)
            await pj.submit([
                *({"name": f"job{i}", "script": f"sleep 0.{i}"} for i in range(1, 4)),
                {"name": "sleeper", "exec": "/bin/sleep", "args": ["300"]},
                {"name": "after-sleeper", "exec": "/bin/true", "after": ["sleeper"]},
            ])

            # several waits at once in one loop, each from its own Watch stream
            results = await asyncio.gather(*(pj.wait([f"job{i}"], timeout=30) for i in range(1, 4)))
            assert results == [{f"job{i}": "SUCCEED"} for i in range(1, 4)]

            with pytest.raises(PJTimeout, match=r"waited 0.5 s") as e:
                await pj.wait("sleeper", timeout=0.5)
            assert isinstance(e.value, TimeoutError)

            # a watch canceled from another task ends quietly, having seen the present
            stream = pj.watch(["sleeper"])
            got_first = asyncio.Event()
            seen: list[WatchEvent] = []

            async def follow() -> None:
                async for event in stream:
                    seen.append(event)
                    got_first.set()

            async with asyncio.TaskGroup() as tg:
                tg.create_task(follow())
                await got_first.wait()
                stream.cancel()
            assert seen and seen[0].changed[0].name == "sleeper" and seen[0].changed[0].state == "EXECUTING"

            # the reading task's own cancellation is not swallowed (asyncio.timeout sees it)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3), pj.watch(["sleeper"]) as events:
                    async for _ in events:
                        pass
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await pj.wait(["sleeper"])

            # cancel while a wait is under way: the wait returns the canceled states
            waiting = asyncio.Event()

            async def cancel_soon() -> None:
                await waiting.wait()
                result = await pj.cancel(["sleeper"])
                assert result.canceled == ("sleeper",)

            async def wait_all() -> dict[str, str]:
                waiting.set()
                return await pj.wait(["sleeper", "after-sleeper"], timeout=30)

            async with asyncio.TaskGroup() as tg:
                final = tg.create_task(wait_all())
                tg.create_task(cancel_soon())
            assert final.result() == {"sleeper": "CANCELED", "after-sleeper": "OMITTED"}
            assert (await pj.cancel("sleeper")).already_finished == ("sleeper",)

        # close() ends the watches of a client quietly, whoever reads them
        async with AsyncClient(c.workdir) as other:
            stream = other.watch()
            reading = asyncio.Event()

            async def drain() -> int:
                n = 0
                async for _ in stream:
                    n += 1
                    reading.set()
                return n

            async with asyncio.TaskGroup() as tg:
                count = tg.create_task(drain())
                await reading.wait()
                await other.close()
            assert count.result() >= 1

    run(main)


def test_a_master_that_goes_away(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=1)

    async def main() -> None:
        async with AsyncClient(c.workdir, reconnect_timeout=1) as pj:  # then the watch gives up
            await online(pj, 1)
            await pj.submit([{"name": "long", "exec": "/bin/sleep", "args": ["300"]}])
            events = pj.watch()
            first = await anext(events)
            assert first.watched_total == 1
            os.kill(c.master.pid, signal.SIGKILL)
            with pytest.raises(MasterUnreachable, match=r"; no master came back within 1s \(reconnect_timeout 1s\)$"):
                async for _ in events:
                    pass
            with pytest.raises(MasterUnreachable):
                await pj.status()

    run(main)


def test_finish_drains_and_stops_the_master(cluster_factory: Any) -> None:
    c = cluster_factory(nodes=1, cores=1)

    async def main() -> dict[str, str]:
        async with AsyncClient(c.workdir) as pj:
            await pj.submit([{"name": "last", "script": "sleep 0.2"}])
            await pj.finish(drain=True)
            final = await pj.wait(timeout=30)
            assert final["last"] in FINAL_STATES
            return final

    assert run(main) == {"last": "SUCCEED"}
    assert c.wait_exit(30) == 0


def test_tcp_with_a_pinned_tls_certificate(cluster_factory: Any, tmp_path: Path) -> None:
    c = cluster_factory(nodes=1, master_args=["--tls"])
    wd = c.workdir
    address, token = json.loads((wd / "master.json").read_text())["address"], wd / "token"
    other = tmp_path / "other.crt"
    other.write_bytes(make_cert(["127.0.0.1"])[0])

    async def main() -> None:
        async with AsyncClient(address=address, token_file=token, tls_cert=wd / "tls.crt") as pj:
            await pj.submit([{"name": "hello", "exec": "/bin/echo", "args": ["tls"]}])
            assert await pj.wait(timeout=30) == {"hello": "SUCCEED"}
        async with AsyncClient(address=address, token_file=token, tls_cert=other, timeout=10) as pj:
            with pytest.raises(MasterUnreachable, match=r"TLS handshake .* failed"):
                await pj.status()

    run(main)
