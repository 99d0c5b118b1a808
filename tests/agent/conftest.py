"""Every AgentState a test drives checks its invariants after each event (AgentState.check)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest

from pj.agent.state import AgentState

_handle = AgentState.handle


@functools.wraps(_handle)
def _checked(self: AgentState, *args: Any, **kwargs: Any) -> Any:
    out = _handle(self, *args, **kwargs)
    self.check()
    return out


@pytest.fixture(autouse=True)
def agent_invariants() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setattr(AgentState, "handle", _checked)
    try:
        yield
    finally:
        mp.undo()
