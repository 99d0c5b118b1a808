"""One Watch stream of every job, followed on a thread: the jobs' last known states and the
finishes seen since the stream opened (for ``wait4_any_job_finish`` and ``QCGPJFuture.done``).

The stream is opened, and its first message received, before the constructor returns, so no job
submitted afterwards can finish unseen. ``close()`` cancels the stream and joins the thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING

from pj.client.convert import FINAL_STATES
from pj.client.errors import PJError

from .errors import ConnectionError, TimeoutElapsed

if TYPE_CHECKING:
    from pj.client.api import Client

__all__ = ["FinishEvents"]


class FinishEvents:
    def __init__(self, client: Client, timeout: float = 30.0) -> None:
        self._stream = client.watch()  # every job, those submitted later included
        self._cond = threading.Condition()
        self._states: dict[str, str] = {}
        self._finished: deque[tuple[str, str]] = deque()
        self._error: PJError | None = None
        self._open = True
        self._heard = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="pj-qcg-events", daemon=True)
        self._thread.start()
        if not self._heard.wait(timeout):
            self.close()
            raise ConnectionError(f"the master at {client.address} did not answer a Watch within {timeout:g} s")

    def _follow(self) -> None:
        first = True
        try:
            for ev in self._stream:
                with self._cond:
                    for j in ev.changed:
                        before = self._states.get(j.name)
                        self._states[j.name] = j.state
                        if not first and j.state in FINAL_STATES and before not in FINAL_STATES:
                            self._finished.append((j.name, j.state))
                    self._cond.notify_all()
                first = False
                self._heard.set()
        except PJError as e:
            self._error = e
        finally:
            with self._cond:
                self._open = False
                self._cond.notify_all()
            self._heard.set()

    def state(self, name: str) -> str | None:
        """The last state the stream gave for ``name`` (None: none since it opened)."""
        with self._cond:
            return self._states.get(name)

    def next_finished(self, timeout: float | None) -> tuple[str, str]:
        """The next job to finish (name, state), in the order they finished; TimeoutElapsed past
        ``timeout`` seconds (None: no limit); ConnectionError once the stream has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._finished:
                if not self._open:
                    why = f": {self._error}" if self._error else ""
                    raise ConnectionError(f"the master's event stream ended{why}")
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutElapsed(f"no job finished within {timeout:g} s")
                self._cond.wait(left)
            return self._finished.popleft()

    def close(self) -> None:
        self._stream.cancel()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
