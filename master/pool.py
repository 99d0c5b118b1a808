"""The nodes the master can place tasks on, their free cores, GPUs and memory, and how a request is placed.

Pure bookkeeping: no I/O. ``allocate`` gives a task the most resources within its
min..max that fit now, or None; ``can_ever_fit`` judges a request against the whole
capacity, as if every node were idle.

A node may have an end (its allocation's, ``NodeInfo.ends_at``): a task goes there only if it
would end by then (``holds``). A task without a walltime has no known end: it may go anywhere
(it is cut short if the allocation ends first, and queued again free: nodeloss.py).

Memory: a node offers what its agent registered (``NodeInfo.memory_bytes``); a task holds its
request's memory on each of its nodes (``NodeShare.memory``). A task asking for none fits on
memory anywhere, so campaigns that never name memory place as before; a node that registered
none (0) takes only such tasks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice

from pj.common.sizes import format_size

from .model import Allocation, NodeInfo, NodeShare, Request


def until(now: float, walltime_s: float) -> float:
    """When a task placed at ``now`` must end at the latest; 0: it has no walltime (no end)."""
    return now + walltime_s if walltime_s > 0 else 0.0


def holds(ends_at: float, until: float) -> bool:
    """Whether a node whose allocation ends at ``ends_at`` (0: never) can hold a task that runs
    until ``until`` (0: no walltime, placed anywhere). The one test of an allocation's end."""
    return not until or not ends_at or until <= ends_at


class Node:
    __slots__ = (
        "ends_at", "free_cores", "free_gpus", "free_memory", "gpus", "index", "info", "name", "online", "paused",
        "total_cores",
    )  # fmt: skip

    def __init__(self, info: NodeInfo, index: int) -> None:
        self.info = info
        self.name = info.name
        self.index = index
        self.total_cores = info.cores
        self.gpus = info.gpus
        self.ends_at = info.ends_at
        # Free ids are kept as stacks, lowest id on top: the next task takes the lowest ids.
        self.free_cores: list[int] = list(range(info.cores - 1, -1, -1))
        self.free_gpus: list[str] = list(reversed(info.gpus))
        self.free_memory = info.memory_bytes
        self.online = True
        self.paused = False  # its agent's stream broke: nothing new goes there until it is back

    def take(self, cores: int, gpus: int, memory: int = 0) -> NodeShare:
        fc, fg = self.free_cores, self.free_gpus
        c = tuple(fc[-cores:][::-1]) if cores else ()
        del fc[len(fc) - cores :]
        g: tuple[str, ...] = ()
        if gpus:
            g = tuple(fg[-gpus:][::-1])
            del fg[len(fg) - gpus :]
        if memory:
            self.free_memory -= memory
            return NodeShare(self.name, c, g, memory)
        return NodeShare(self.name, c, g)

    def give_back(self, share: NodeShare) -> None:
        self.free_cores.extend(share.cores)
        self.free_cores.sort(reverse=True)
        self.free_memory += share.memory
        if share.gpus:
            order = {g: i for i, g in enumerate(self.gpus)}
            self.free_gpus.extend(share.gpus)
            self.free_gpus.sort(key=order.__getitem__, reverse=True)


def _best_multi(request: Request, frees: Sequence[tuple[int, int, int]]) -> tuple[list[int], int] | None:
    """Pick nodes for a multi-node request from (free cores, free gpus, free memory) per node.

    Returns (node indexes, cores per node) giving the most cores in total, or None.
    """
    cmin, gpus, memory = request.cores.min, request.gpus, request.memory
    cand = [i for i, (c, g, m) in enumerate(frees) if c >= cmin and g >= gpus and m >= memory]
    nmin = request.nodes.min
    if len(cand) < nmin:
        return None
    cand.sort(key=lambda i: -frees[i][0])
    nmax = len(cand) if request.nodes.max is None else min(request.nodes.max, len(cand))
    best_k, best_total = nmin, -1
    for k in range(nmin, nmax + 1):
        per = request.cores.cap(frees[cand[k - 1]][0])
        if k * per > best_total:
            best_k, best_total = k, k * per
    chosen = sorted(cand[:best_k])
    return chosen, request.cores.cap(frees[cand[best_k - 1]][0])


class Pool:
    """Every node that has joined, with what is free on each."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.by_name: dict[str, Node] = {}
        self.free_cores = 0
        self.total_cores = 0
        # No node before this index has a free core: a one-node placement's search starts here, so
        # a full campaign on thousands of nodes does not scan the full ones first (issue 16's profile).
        self.first_open = 0

    def add(self, info: NodeInfo) -> Node:
        old = self.by_name.get(info.name)
        if old is not None and old.online:
            raise ValueError(f"node {info.name!r} is already registered")
        node = Node(info, len(self.nodes))
        if old is not None:
            node.index = old.index
            self.nodes[old.index] = node  # a node coming back (remove() already took out its cores)
        else:
            self.nodes.append(node)
        self.by_name[info.name] = node
        self.first_open = min(self.first_open, node.index)
        self.free_cores += node.total_cores
        self.total_cores += node.total_cores
        return node

    def remove(self, name: str) -> None:
        """Take a node out of service (its agent is gone)."""
        node = self.by_name[name]
        if node.online:
            node.online = False
            if not node.paused:
                self.free_cores -= len(node.free_cores)
            node.paused = False
            self.total_cores -= node.total_cores
            node.free_cores.clear()
            node.free_gpus.clear()
            node.free_memory = 0

    def pause(self, name: str) -> None:
        """No new placement on the node (its agent is cut off); what it holds stays held."""
        node = self.by_name[name]
        if node.online and not node.paused:
            node.paused = True
            self.free_cores -= len(node.free_cores)

    def unpause(self, name: str) -> None:
        node = self.by_name[name]
        if node.online and node.paused:
            node.paused = False
            self.free_cores += len(node.free_cores)

    def claim(self, share: NodeShare) -> bool:
        """Take exactly the share's cores and GPUs (a task that already runs there); False if any
        of them is not free on that node (nothing is taken then)."""
        node = self.by_name.get(share.node)
        if node is None or not node.online:
            return False
        cores, gpus = set(share.cores), set(share.gpus)
        if not cores <= set(node.free_cores) or not gpus <= set(node.free_gpus) or share.memory > node.free_memory:
            return False
        node.free_memory -= share.memory
        node.free_cores = [c for c in node.free_cores if c not in cores]
        node.free_gpus = [g for g in node.free_gpus if g not in gpus]
        if not node.paused:
            self.free_cores -= len(cores)
        return True

    def online(self) -> Iterable[Node]:
        return (n for n in self.nodes if n.online)

    # ------------------------------------------------------------ placing

    def allocate(self, request: Request, until: float = 0.0) -> Allocation | None:
        """``until``: when the task must end at the latest (``until()``; 0: no walltime): only nodes
        whose allocation ``holds`` it."""
        if self.free_cores < request.cores.min * request.nodes.min:
            return None
        if request.nodes.max == 1:
            return self._allocate_single(request, until)
        frees = [
            (len(n.free_cores), len(n.free_gpus), n.free_memory)
            if n.online and not n.paused and holds(n.ends_at, until) else (0, 0, 0)
            for n in self.nodes
        ]
        pick = _best_multi(request, frees)
        if pick is None:
            return None
        indexes, per = pick
        shares = tuple(self.nodes[i].take(per, request.gpus, request.memory) for i in indexes)
        self.free_cores -= per * len(indexes)
        return shares

    def _open_nodes(self) -> Iterable[Node]:
        """The nodes from the first that has a free core on (``first_open`` moved up to it)."""
        nodes, i = self.nodes, self.first_open
        while i < len(nodes) and not nodes[i].free_cores:
            i += 1
        self.first_open = i
        return islice(nodes, i, None)

    def _allocate_single(self, request: Request, until: float) -> Allocation | None:
        cmin, gpus, cores, memory = request.cores.min, request.gpus, request.cores, request.memory
        if cores.exact:
            for node in self._open_nodes():  # first fit: packs nodes, keeps others whole
                if (
                    len(node.free_cores) >= cmin
                    and len(node.free_gpus) >= gpus
                    and not node.paused
                    and node.free_memory >= memory
                    and (not until or holds(node.ends_at, until))
                ):
                    self.free_cores -= cmin
                    return (node.take(cmin, gpus, memory),)
            return None
        best: Node | None = None
        for node in self._open_nodes():  # a range: the node with the most free cores
            if (
                len(node.free_gpus) >= gpus
                and len(node.free_cores) >= cmin
                and not node.paused
                and node.free_memory >= memory
                and (not until or holds(node.ends_at, until))
            ):
                if best is None or len(node.free_cores) > len(best.free_cores):
                    best = node
        if best is None:
            return None
        n = cores.cap(len(best.free_cores))
        self.free_cores -= n
        return (best.take(n, gpus, memory),)

    def release(self, allocation: Allocation) -> None:
        for share in allocation:
            node = self.by_name.get(share.node)
            if node is None or not node.online:
                continue
            node.give_back(share)
            if share.cores and node.index < self.first_open:
                self.first_open = node.index
            if not node.paused:
                self.free_cores += len(share.cores)

    # ------------------------------------------------------------ judging

    def can_ever_fit(self, request: Request) -> bool:
        """Would the request fit if every online node were idle?"""
        frees = [(n.total_cores, len(n.gpus), n.info.memory_bytes) for n in self.nodes if n.online]
        return _best_multi(request, frees) is not None

    def can_hold(self, request: Request, until: float) -> bool:
        """Would the request fit, every online node idle, on the nodes whose allocation ``holds``
        a task that runs until ``until``? (``can_ever_fit`` ignores the ends: more nodes may come.)"""
        frees = [
            (n.total_cores, len(n.gpus), n.info.memory_bytes) for n in self.nodes if n.online and holds(n.ends_at, until)
        ]
        return _best_multi(request, frees) is not None

    def latest_end(self) -> float:
        """The latest allocation end among online nodes; 0: some node has none (or no node is online)."""
        ends = [n.ends_at for n in self.nodes if n.online]
        return 0.0 if not ends or not all(ends) else max(ends)

    def largest(self, memory: bool = False) -> str:
        """The run's capacity in words (``memory``: say the most memory a node offers too)."""
        nodes = [n for n in self.nodes if n.online]
        if not nodes:
            return "no node has joined"
        big = max(nodes, key=lambda n: n.total_cores)
        gpus = max(len(n.gpus) for n in nodes)
        most = max(n.info.memory_bytes for n in nodes)
        mem = (f", at most {format_size(most)} memory per node" if most else ", no node registered its memory") if memory else ""
        return (
            f"{len(nodes)} node(s), the largest with {big.total_cores} core(s), at most {gpus} GPU(s) per node{mem}"
        )
