"""`pj top`: a live view of a running campaign, from the master's Watch stream.

``topview.py`` holds the pure half (rates, ETA, the view, the frame). Here, ``Top``: a thread
pumps the Watch stream (counts only: jobs per state, and the jobs that ended FAILED, CANCELED or
OMITTED) into a queue, another lists the jobs once for their sizes (the ETA counts tasks, i.e.
iterations; listed again only when more than half of the jobs came after the last List), and each
refresh asks ``Resources`` for the nodes and ``Info`` for the reason of a failure that came
without one. Nothing polls job states.

On a terminal: a full-screen redraw (alternate screen, ANSI codes) every ``--interval`` (default
1 s) and at once when the window is resized; `q` or Ctrl-C quits (exit 0). When every job has
ended it leaves the final frame on the normal screen with a last line and exits 0 if every job
succeeded, 1 otherwise; when the master goes away before, 1. Elsewhere (a pipe): plain text, one
frame per interval, the same exits (Ctrl-C: 130, like every `pj` command). ``--once``: one frame,
exit 0.
"""

from __future__ import annotations

import argparse
import os
import queue
import select
import shutil
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TextIO

from .convert import BAD_STATES, JobSummary, WatchEvent
from .errors import PJError, one_line
from .topview import FAILURES_KEPT, Sized, View, ended_line, render

if TYPE_CHECKING:  # importing api pulls in grpc: done when the command runs
    from .api import Client

# ---------------------------------------------------------------- I/O


_END = object()


class Top:
    """Follows one master: the Watch pump, the List of sizes, the per-refresh Resources and Info."""

    def __init__(self, client: Client, out: TextIO, interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.client = client
        self.out = out
        self.interval = interval
        self.clock = clock
        self.items: queue.Queue[Any] = queue.Queue()
        self.view = View()
        self.stream: Any = None
        self.ended = ""  # why the view stops ("" while it runs)
        self.rc = 0
        self._resize = False
        self._list_wanted = threading.Event()
        self._listing = False

    # ------------------------------------------------------------ the feeds

    def start(self, lister: bool = True) -> None:
        st = self.client.status()  # fails fast (one line) when no master answers
        self.view.address, self.view.started_at = st.address or self.client.address, st.started_at or None
        self.stream = self.client.watch(counts_only=True)
        threading.Thread(target=self._pump, name="pj-top-watch", daemon=True).start()
        if lister:
            self._listing = True
            self._list_wanted.set()
            threading.Thread(target=self._lister, name="pj-top-list", daemon=True).start()

    def _pump(self) -> None:
        try:
            for ev in self.stream:
                self.items.put(ev)
            self.items.put(_END)
        except Exception as e:  # PJError: the master went away
            self.items.put(e if isinstance(e, PJError) else PJError(f"the watch stream failed: {e!r}"))

    def list_sizes(self) -> Sized:
        jobs = tasks = 0
        bad: deque[JobSummary] = deque(maxlen=FAILURES_KEPT)
        for j in self.client.list(page_size=10000):
            jobs += 1
            tasks += max(j.iterations, 1)
            if j.state in BAD_STATES:
                bad.append(j)
        return Sized(jobs, tasks, list(bad))

    def _lister(self) -> None:
        while self._list_wanted.wait():
            self._list_wanted.clear()
            try:
                self.items.put(self.list_sizes())
            except PJError:
                pass  # no sizes, no ETA; the watch says when the master is gone
            finally:
                self._listing = False

    def _take(self, item: Any) -> Any:
        """Apply one item of the queue; returns the end of the stream (_END or an error) or None."""
        if isinstance(item, WatchEvent):
            self.view.apply(item)
        elif isinstance(item, Sized):
            self.view.sizes(item)
        else:
            return item
        return None

    def refresh(self) -> None:
        """Take what the feeds brought; ask for the nodes (and missing reasons); decide whether to stop."""
        v = self.view
        gone: Any = None
        while True:
            try:
                gone = self._take(self.items.get_nowait()) or gone
            except queue.Empty:
                break
        if v.needs_sizing() and not self._listing:
            self._listing = True
            self._list_wanted.set()
        try:
            res = self.client.resources()
            v.nodes, v.nodes_missing = res.nodes, res.nodes_missing
            ask = v.missing_reasons()
            if ask:
                v.reasons({i.name: i.reason for i in self.client.info(ask)})
        except PJError:
            pass  # the watch tells whether the master is gone
        if v.all_ended:
            self.ended, self.rc = ended_line(v), (0 if set(v.jobs) <= {"SUCCEED"} else 1)
        elif gone is not None:
            why = "it closed the stream" if gone is _END else str(gone)
            self.ended, self.rc = f"the master went away before every job had ended: {one_line(why)}", 1

    def frame(self, width: int, height: int | None, keys: str = "") -> list[str]:
        return render(self.view.snapshot(self.clock(), time.time(), self.ended, keys), width, height)

    def close(self) -> None:
        if self.stream is not None:
            self.stream.cancel()

    # ------------------------------------------------------------ the two displays

    def wait_first(self, timeout: float = 10.0) -> None:
        """Until the Watch stream's first message (the present) has come; a one-line error if it does not."""
        deadline = self.clock() + timeout
        while not self.view.heard:
            try:
                item = self.items.get(timeout=max(deadline - self.clock(), 0.0))
            except queue.Empty:
                raise PJError(f"no word from the master's watch stream within {timeout:g} s") from None
            gone = self._take(item)
            if gone is not None:
                raise gone if isinstance(gone, PJError) else PJError("the master closed the watch stream")

    def once(self) -> int:
        """One frame: the sizes listed, the stream's first message, the nodes."""
        self.view.sizes(self.list_sizes())
        self.wait_first()
        self.refresh()
        _write(self.out, self.frame(shutil.get_terminal_size((100, 40)).columns, None))
        return 0

    def plain(self) -> int:
        """One frame per interval, no escape codes, until every job has ended or the master is gone."""
        width = shutil.get_terminal_size((100, 40)).columns
        self.wait_first()
        while True:
            self.refresh()
            _write(self.out, [*self.frame(width, None), ""])
            if self.ended:
                return self.rc
            time.sleep(self.interval)

    def terminal(self, fd_in: int | None) -> int:
        """Full screen until `q`, Ctrl-C, the campaign's end or the master's; restores the terminal."""
        import termios
        import tty

        saved = termios.tcgetattr(fd_in) if fd_in is not None else None
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)

        def on_winch(signum: int, frame: Any) -> None:
            self._resize = True
            try:
                os.write(wake_w, b"w")
            except OSError:
                pass

        def on_term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        old_winch = signal.signal(signal.SIGWINCH, on_winch)
        old_term = signal.signal(signal.SIGTERM, on_term)
        quit_ = False
        try:
            if fd_in is not None:
                tty.setcbreak(fd_in, termios.TCSANOW)  # keys one at a time, no echo; Ctrl-C stays SIGINT
            self.out.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, no cursor
            next_at = self.clock()
            while not quit_:
                now = self.clock()
                if now >= next_at or self._resize:
                    if now >= next_at:
                        self.refresh()
                        next_at = now + self.interval
                    self._resize = False
                    self._draw()
                    if self.ended:
                        break
                ready, _, _ = select.select([f for f in (fd_in, wake_r) if f is not None], [], [],
                                            max(next_at - self.clock(), 0.0))  # fmt: skip
                if wake_r in ready:
                    os.read(wake_r, 512)
                if fd_in is not None and fd_in in ready:
                    quit_ = any(c in b"qQ" for c in os.read(fd_in, 64))
        except KeyboardInterrupt:
            quit_ = True
        finally:
            self.out.write("\x1b[?25h\x1b[?1049l")  # the cursor and the normal screen back
            self.out.flush()
            if saved is not None and fd_in is not None:
                termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
            signal.signal(signal.SIGWINCH, old_winch)
            signal.signal(signal.SIGTERM, old_term)
            os.close(wake_r)
            os.close(wake_w)
        if quit_:
            return 0
        _write(self.out, self.frame(_size()[0], None))  # the final frame stays on the normal screen
        return self.rc

    def _draw(self) -> None:
        cols, rows = _size()
        lines = self.frame(cols - 1, rows, keys="" if self.ended else "q quits")
        self.out.write("\x1b[H" + "".join(line + "\x1b[K\r\n" for line in lines[:-1]))
        self.out.write((lines[-1] if lines else "") + "\x1b[K\x1b[J")
        self.out.flush()


def _size() -> tuple[int, int]:
    try:
        s = os.get_terminal_size(sys.stdout.fileno())
        return max(s.columns, 20), max(s.lines, 5)
    except OSError:
        return 100, 40


def _write(out: TextIO, lines: Iterable[str]) -> None:
    out.write("".join(line + "\n" for line in lines))
    out.flush()


# ---------------------------------------------------------------- the command


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0.05 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"must be between 0.05 and 3600 seconds, got {text!r}")
    return value


def add_parser(sub: Any, add_connection: Callable[[argparse.ArgumentParser], None]) -> None:
    """`pj top`'s parser, under ``sub`` (the `pj` subcommands)."""
    t = sub.add_parser(
        "top", help="a live view of a running campaign (counts, rates, ETA, nodes, failures)",
        description="A live view of a running campaign from the master's Watch stream: jobs and tasks per "
        "state, tasks/s and an ETA, each node's busy cores and GPUs, recent failures, notices. On a terminal: "
        "full screen, q or Ctrl-C quits; it exits by itself when every job has ended (0 if all succeeded, "
        "1 otherwise) or the master goes away (1). Elsewhere: plain text, one frame per interval.",
    )  # fmt: skip
    add_connection(t)
    t.add_argument("--once", action="store_true", help="print one frame as plain text and exit")
    t.add_argument("--interval", metavar="S", type=_interval, default=1.0,
                   help="seconds between refreshes (default 1)")
    t.set_defaults(func=cmd_top)


def cmd_top(args: argparse.Namespace) -> int:
    from .commands import _connect

    out = sys.stdout
    if args.json:  # a snapshot of what top shows, as data: `pj status --json` and `pj resources --json` in one
        import dataclasses

        from .commands import _json

        with _connect(args) as client:
            _json({"status": dataclasses.asdict(client.status()),
                   "resources": dataclasses.asdict(client.resources())})
        return 0
    with _connect(args) as client:
        client.timeout = min(client.timeout or 5.0, 5.0)  # a refresh never hangs for long
        top = Top(client, out, args.interval)
        try:
            if args.once:
                top.start(lister=False)  # once() lists the sizes itself
                return top.once()
            top.start()
            if not out.isatty():
                return top.plain()
            return top.terminal(sys.stdin.fileno() if sys.stdin.isatty() else None)
        finally:
            top.close()
