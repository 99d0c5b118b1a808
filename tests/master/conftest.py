"""Every master core a unit test drives checks its invariants after each event (Core.check)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pj.master.core import Core

EVENTS = ("submit", "node_joined", "node_disconnected", "node_left", "task_started", "task_exited",
          "task_withdrawn", "cancel", "finish", "step")


def _checked(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: Core, *args: Any, **kwargs: Any) -> Any:
        result = method(self, *args, **kwargs)
        self.check()
        return result
    return run


@pytest.fixture(autouse=True)
def core_invariants(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("no_invariants"):
        yield
        return
    mp = pytest.MonkeyPatch()
    for name in EVENTS:
        mp.setattr(Core, name, _checked(getattr(Core, name)))
    try:
        yield
    finally:
        mp.undo()
