"""The gRPC servicers: they translate protobuf <-> core calls and nothing more.

``PilotJobService`` answers users (submit, query, cancel, watch, finish); agents are served by
agentlink.py (one stream per agent) and relaylink.py (one stream per relay, many agents), both
through agentsession.py. All work on the one ``Dispatcher`` (runtime.py), all in the event
loop's thread: no locks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import structlog

from pj.common import peercheck as pc
from pj.common.peercheck import PeerError
from pj.common.speccheck import JobRef, SpecError, check_specs
from pj.v1 import pj_pb2 as pb
from pj.v1 import pj_pb2_grpc as rpc

from . import convert, why
from . import writefault as wf
from .admission import SubmitError
from .agentlink import AgentLinkService
from .agentsession import Sessions
from .allocshell import AllocShell
from .model import State
from .registry import Job
from .relaylink import RelayLinkService
from .runtime import Dispatcher
from .watchhub import Watcher, WatchHub
from .writefault import WRITE_ERRORS

log = structlog.get_logger("pj.master")

DEFAULT_PAGE = 1000
MAX_PAGE = 10000


def _ref(job: Job | None) -> JobRef | None:
    if job is None:
        return None
    it = job.tmpl.iterations
    return JobRef() if it is None else JobRef(it.start, it.stop)


class PilotJobService(rpc.PilotJobServicer):
    def __init__(self, master: Dispatcher, allocs: AllocShell | None = None) -> None:
        self.m = master
        self.allocs = allocs  # None: no `pj alloc` here (tests of the shell alone)
        self.lines = why.Lines()  # the queue's lines as last seen, for reasons (kept while it does not move)

    async def Submit(self, request: pb.SubmitRequest, context: grpc.aio.ServicerContext) -> pb.SubmitReply:
        core = self.m.core
        if core.finishing:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the master is finishing: no new jobs")
        try:
            pc.check_base_dir(request.base_dir)
            batch = convert.submit_batch(request)
            check_specs(batch.specs, known=lambda n: _ref(core.registry.get(n)), renamed=batch.renamed,
                        names=batch.names)
            specs = convert.batch_specs(batch, request.base_dir)
            now = self.m.now()
            core.check_submit(specs, batch.names)
        except (PeerError, SpecError, SubmitError) as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        jour = self.m.journal
        if jour is not None:  # journaled (durable) before the core takes it: a refusal keeps nothing
            try:
                jour.submit(request.SerializeToString(), now)
            except WRITE_ERRORS as e:
                log.warning("submission refused: the journal cannot be written", path=str(jour.path),
                            error=wf.cause(e), jobs=len(specs))
                await context.abort(getattr(grpc.StatusCode, wf.status_name(e)), wf.refusal(jour.path, e))
        names = core.submit(specs, now, checked=True, names=batch.names)  # nothing ran since the check
        self.m.submitted(len(names), request.parts_after)
        log.info("submitted", jobs=len(names))
        return pb.SubmitReply(names=names)

    async def Status(self, request: pb.StatusRequest, context: grpc.aio.ServicerContext) -> pb.StatusReply:
        await self.m.settled()  # what it reads is journaled
        core = self.m.core
        return pb.StatusReply(
            jobs=convert.counts_to_pb(core.job_counts),
            tasks=convert.counts_to_pb(core.task_counts),
            jobs_total=len(core.registry),
            jobs_unfinished=core.unfinished,
            nodes=sum(1 for _ in core.pool.online()),
            cores_total=core.pool.total_cores,
            cores_used=core.pool.total_cores - core.pool.free_cores,
            started_at=self.m.started_at,
            finishing=core.finishing,
            address=self.m.address,
            notices=self.m.notices,
            waiting=convert.reasons_to_pb(why.counts(core, self.m.now(), self.lines)),
            alloc_problems=self.allocs.manager.problems(self.m.now()) if self.allocs is not None else [],
        )

    async def _jobs(self, names: list[str], context: grpc.aio.ServicerContext) -> list[Job]:
        reg = self.m.core.registry
        jobs = []
        for n in names:
            job = reg.get(n)
            if job is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no job named {pc.show(n)}")
            jobs.append(job)
        return jobs

    async def Info(self, request: pb.InfoRequest, context: grpc.aio.ServicerContext) -> pb.InfoReply:
        await self.m.settled()
        jobs = await self._jobs(list(request.names), context)
        whys = why.Why(self.m.core, self.m.now(), self.lines)
        return pb.InfoReply(jobs=[convert.info_to_pb(j, request.with_tasks, whys.reason(j)) for j in jobs])

    async def List(self, request: pb.ListRequest, context: grpc.aio.ServicerContext) -> pb.ListReply:
        size = min(request.page_size or DEFAULT_PAGE, MAX_PAGE)
        try:
            start = pc.parse_page_token(request.page_token)
            pc.check_states(request.states)
        except PeerError as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        states = {State(s) for s in request.states if s}
        await self.m.settled()
        out: list[pb.JobSummary] = []
        jobs = list(self.m.core.registry.jobs.values())
        i = start
        whys = why.Why(self.m.core, self.m.now(), self.lines)  # one pass per shape serves the page
        while i < len(jobs) and len(out) < size:
            job = jobs[i]
            if not states or job.state in states:
                out.append(convert.summary_to_pb(job, whys.reason(job)))
            i += 1
        return pb.ListReply(jobs=out, next_page_token=str(i) if i < len(jobs) else "")

    async def Cancel(self, request: pb.CancelRequest, context: grpc.aio.ServicerContext) -> pb.CancelReply:
        try:
            canceled, finished = self.m.core.cancel(list(request.names), self.m.now())
        except KeyError as e:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no job named {pc.show(e.args[0])}")
        if canceled:
            self._request("cancel", canceled, False)
        self.m.poke()
        return pb.CancelReply(canceled=canceled, already_finished=finished)

    def _request(self, kind: str, names: list[str], drain: bool) -> None:
        """Journal a cancel or finish request. One that cannot be written still holds in memory, and
        the ends it brings are journaled by the passes (held while the journal cannot be written)."""
        jour = self.m.journal
        if jour is None:
            return
        try:
            jour.request(kind, names, drain, self.m.now())
        except WRITE_ERRORS as e:
            log.warning(f"{kind} request not journaled: cannot write {jour.path}: {wf.cause(e)}; "
                        "it holds until the master stops", path=str(jour.path))

    async def Watch(self, request: pb.WatchRequest, context: grpc.aio.ServicerContext) -> None:
        """The present, then what changes (watchhub.py). Messages go out as bytes (``add_services``
        registers Watch with a serializer that passes them through): a shared watcher's are the
        hub's, the same bytes for all."""
        names: set[str] | None = None
        if request.names:
            await self._jobs(list(request.names), context)
            names = set(request.names)
        w = Watcher(names, counts_only=request.counts_only)
        m = self.m
        hub = m.hub
        hub.add(w)
        try:
            first = [m.core.registry.jobs[n] for n in names] if names and not w.counts_only else []
            # the present, with every notice so far
            if await _send(w, context, m.event(names, w.counts_only, first, list(m.notices)).SerializeToString()):
                if w.kind is None:
                    await self._named(w, context)
                else:
                    await _shared(hub, w, context)
        finally:
            hub.discard(w)
        if w.dropped:
            context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
            context.set_details(w.dropped)

    async def _named(self, w: Watcher, context: grpc.aio.ServicerContext) -> None:
        """A watch of named jobs: its own message after each pass that changed one of them."""
        while not w.closed:
            await w.ready.wait()
            w.ready.clear()
            changed, w.changed = w.changed, {}
            notices, w.notices = w.notices, []
            ev = self.m.event(w.names, w.counts_only, list(changed.values()), notices)
            await context.write(ev.SerializeToString())

    async def Resources(
        self, request: pb.ResourcesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResourcesReply:
        core = self.m.core
        return pb.ResourcesReply(
            nodes=[convert.node_to_pb(n) for n in core.pool.nodes],
            nodes_expected=core.expect.count if core.expect is not None else 0,
            nodes_missing=core.nodes_missing(),
        )

    async def _shell(self, context: grpc.aio.ServicerContext) -> AllocShell:
        if self.allocs is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this master does not manage allocations")
        assert self.allocs is not None
        return self.allocs

    async def AllocAdd(self, request: pb.AllocAddRequest, context: grpc.aio.ServicerContext) -> pb.AllocAddReply:
        shell = await self._shell(context)
        if self.m.core.finishing:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the master is finishing: no new allocations")
        queues = [convert.queue_from_pb(q) for q in request.queues]
        for q in queues:  # all or nothing
            try:
                q.check()
            except ValueError as e:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        return pb.AllocAddReply(ids=[shell.add(q).id for q in queues])

    async def AllocList(self, request: pb.AllocListRequest, context: grpc.aio.ServicerContext) -> pb.AllocListReply:
        shell = await self._shell(context)
        mgr = shell.manager
        return pb.AllocListReply(
            queues=[convert.queue_to_pb(q, str(shell.workdir / "allocs")) for q in mgr.queues.values()],
            allocations=[convert.alloc_to_pb(a) for a in mgr.allocs.values()],
        )

    async def AllocRemove(self, request: pb.AllocRemoveRequest,
                          context: grpc.aio.ServicerContext) -> pb.AllocRemoveReply:
        shell = await self._shell(context)
        mgr = shell.manager
        for i in request.ids:  # all or nothing
            if i not in mgr.queues or mgr.queues[i].removed:
                known = ", ".join(str(q.id) for q in mgr.queues.values() if not q.removed) or "none"
                await context.abort(grpc.StatusCode.NOT_FOUND,
                                    f"no alloc queue {i} (live ones: {known}); see `pj alloc list`")
        for i in dict.fromkeys(request.ids):
            shell.remove(i)
        return pb.AllocRemoveReply(removed=list(dict.fromkeys(request.ids)))

    async def Finish(self, request: pb.FinishRequest, context: grpc.aio.ServicerContext) -> pb.FinishReply:
        log.info("finish requested", drain=request.drain)
        self.m.core.finish(request.drain, self.m.now())
        self._request("finish", [], request.drain)
        self.m.poke()
        return pb.FinishReply()


async def _shared(hub: WatchHub, w: Watcher, context: grpc.aio.ServicerContext) -> None:
    """A watch of every job: the hub's ticks, in order, until the close or a drop."""
    while not w.dropped:
        tick = hub.next_tick(w)
        if tick is None:
            if w.closed:
                return
            w.ready.clear()
            await w.ready.wait()
            continue
        data = tick.data[w.kind]  # type: ignore[index]
        if data is not None and not await _send(w, context, data):
            return
        hub.sent(w, tick)


async def _send(w: Watcher, context: grpc.aio.ServicerContext, data: bytes) -> bool:
    """Write one message; False when the hub dropped the watcher meanwhile (the write is abandoned)."""
    try:
        async with asyncio.timeout(None) as writing:
            w.writing = writing
            await context.write(data)
    except TimeoutError:
        if not w.dropped:
            raise
    finally:
        w.writing = None
    return not w.dropped


def _raw(message: bytes | Any) -> bytes:
    """Watch's response serializer: its messages are serialized already (once for all watchers)."""
    return message if isinstance(message, bytes) else message.SerializeToString()  # type: ignore[no-any-return]


class _RawWatch:
    """Stands in for the server while the generated code registers PilotJob, so that Watch's
    handler is registered with ``_raw`` as its response serializer (everything else unchanged)."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self.server = server
        self.done = False

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # made again below from the changed table

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.done = True
        handlers = dict(handlers)
        handlers["Watch"] = handlers["Watch"]._replace(response_serializer=_raw)
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        self.server.add_registered_method_handlers(service, handlers)  # type: ignore[attr-defined]


def add_services(master: Dispatcher, server: grpc.aio.Server, allocs: AllocShell | None = None) -> None:
    """Serve PilotJob (Watch's messages go out as the bytes the servicer gives) and AgentLink."""
    proxy = _RawWatch(server)
    rpc.add_PilotJobServicer_to_server(PilotJobService(master, allocs), proxy)
    if not proxy.done:  # generated by a grpcio-tools that registers otherwise: see scripts/gen-proto
        raise RuntimeError("pj_pb2_grpc did not register PilotJob's method table: Watch cannot be served")
    sessions = Sessions(master, allocs)
    rpc.add_AgentLinkServicer_to_server(AgentLinkService(sessions), server)
    rpc.add_RelayLinkServicer_to_server(RelayLinkService(sessions), server)
