"""Delivery of a run's side records that its caller need not wait for. Main entry: `deliver_later`.

A run's summary artifact does not change its outcome, so — like Prefect's own logs and events,
which Prefect sends from background workers in batches and flushes at exit — it is handed to one
daemon thread with its own event loop, and sent `DELAY_SECONDS` later: by then the run's final
state has been recorded, so the two do not compete for the server. The caller of a run gets its
result without waiting for that API call; `drain()` delivers everything handed over at once and
waits for it; it runs when the process exits, so a short-lived process (the CLI, a deployment
run) loses nothing.

The exit-time drain must run *before* Prefect's own log and event workers flush and stop, or the
artifact's event and log lines find them gone (and Prefect cannot start new ones once threading
has begun shutting down). Prefect registers those workers' exit hooks with
`threading._register_atexit`, which calls hooks in reverse order; the drain is registered the
same way on the first delivery — after the run started Prefect's workers — so it runs first.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Work = Callable[[], Coroutine[Any, Any, None]]

DELAY_SECONDS = 1.0


class _Courier:
    """One thread, one event loop, a queue of work; counts what is not delivered yet."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[float, contextvars.Context, Work]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._pending = 0
        self._changed = threading.Condition()
        self._hurry = threading.Event()

    def submit(self, work: Work) -> None:
        # The caller's context travels with the work: it holds Prefect's settings (API URL).
        with self._changed:
            self._pending += 1
            if self._thread is None:
                _drain_before_prefect_workers_stop(self.drain)
                self._thread = threading.Thread(
                    target=self._serve, name="altlas-delivery", daemon=True
                )
                self._thread.start()
        due = time.monotonic() + DELAY_SECONDS
        self._queue.put((due, contextvars.copy_context(), work))

    def drain(self, timeout: float = 30.0) -> bool:
        """Deliver everything submitted so far without delay, and wait; False on time-out."""
        self._hurry.set()
        try:
            with self._changed:
                return self._changed.wait_for(lambda: self._pending == 0, timeout=timeout)
        finally:
            self._hurry.clear()

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        while True:
            due, context, work = self._queue.get()
            self._hurry.wait(timeout=max(0.0, due - time.monotonic()))
            try:
                context.run(loop.run_until_complete, work())
            except Exception:  # one failed delivery must not stop the others
                logger.warning("background delivery failed", exc_info=True)
            finally:
                with self._changed:
                    self._pending -= 1
                    self._changed.notify_all()


def _drain_before_prefect_workers_stop(drain: Callable[[], bool]) -> None:
    register = getattr(threading, "_register_atexit", None)
    if register is not None:
        try:
            register(drain)
            return
        except RuntimeError:  # threading is already shutting down
            pass
    atexit.register(drain)  # not CPython, or too late: at least drain at interpreter exit


_courier = _Courier()


def deliver_later(work: Work) -> None:
    """Run `work()` on the delivery thread; the caller does not wait for it."""
    _courier.submit(work)


def drain(timeout: float = 30.0) -> bool:
    """Wait for every delivery handed over so far (tests and shutdown)."""
    return _courier.drain(timeout)
