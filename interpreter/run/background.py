"""Delivery of a run's side records that its caller need not wait for. Main entry: `deliver_later`.

A run's summary artifact does not change its outcome, so — like Prefect's own logs and events,
which Prefect sends from background workers in batches and flushes at exit — it is handed to one
daemon thread with its own event loop, and sent `DELAY_SECONDS` later: by then the run's final
state has been recorded, so the two do not compete for the server. The caller of a run gets its
result without waiting for that API call; `drain()` delivers everything handed over at once and
waits for it.

At exit, `flush()` runs before Prefect stops its workers: it drains the artifacts first (each
one emits a `prefect.artifact.created` event), then waits, within `EXIT_FLUSH_SECONDS`, until
Prefect's events worker has sent every event it holds. Without that wait Prefect's own exit hook
stops the events worker while events are still queued — in a short process they all are: the
worker's websocket connection takes longer to open (~0.3 s) than a small run takes — and the
worker then logs `WARNING | EventsWorker - Still processing items: N items remaining...` while it
sends them. Flushed first, the worker is idle when Prefect stops it, and stops silently.

Prefect registers each worker's exit hook with `threading._register_atexit` when the worker
starts, and those hooks run in reverse order; `register_exit_flush()` registers `flush` the same
way after the workers started (on every delivery, and whenever Prefect started new workers since)
so that it runs first. Prefect's log worker sends batches and stops silently: it needs no wait.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import queue
import sys
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

Work = Callable[[], Coroutine[Any, Any, None]]

DELAY_SECONDS = 1.0
EXIT_FLUSH_SECONDS = 20.0

_registration_lock = threading.Lock()
_registered = False
_flushed_services: weakref.WeakSet[Any] = weakref.WeakSet()
"""Prefect's services that were running when `flush` was last registered as an exit hook."""


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


_courier = _Courier()


def deliver_later(work: Work) -> None:
    """Run `work()` on the delivery thread; the caller does not wait for it."""
    _courier.submit(work)
    register_exit_flush()


def drain(timeout: float = 30.0) -> bool:
    """Wait for every delivery handed over so far (tests and shutdown)."""
    return _courier.drain(timeout)


def flush(timeout: float = EXIT_FLUSH_SECONDS) -> bool:
    """Deliver what this process's runs left behind, within `timeout` seconds in all: the
    records handed to `deliver_later`, then every event Prefect's events worker still holds.
    False on time-out. Prefect's workers keep running (a later run may use them)."""
    deadline = time.monotonic() + timeout
    delivered = _courier.drain(timeout)
    return _wait_for_prefect_services(deadline) and delivered


def register_exit_flush() -> None:
    """Make `flush` run at exit before Prefect stops the workers running now.

    Call it after a run (the workers start during the first one); cheap when nothing changed.
    """
    global _registered
    services = _prefect_services()
    with _registration_lock:
        if _registered and all(service in _flushed_services for service in services):
            return
        register = getattr(threading, "_register_atexit", None)
        try:
            if register is None:
                raise RuntimeError("no threading exit hooks")
            register(_flush_at_exit)
        except RuntimeError:  # threading is shutting down, or not CPython: the best we can
            atexit.register(_flush_at_exit)
        _registered = True
        _flushed_services.update(services)


def _flush_at_exit() -> None:
    if not flush(EXIT_FLUSH_SECONDS):
        logger.warning("some run records were not delivered within %gs", EXIT_FLUSH_SECONDS)


def _prefect_services() -> list[Any]:
    """Prefect's running queue services (events worker, log worker, ...), if Prefect is loaded."""
    if "prefect._internal.concurrency.services" not in sys.modules:
        return []
    from prefect._internal.concurrency.services import _QueueServiceBase

    instances: dict[int, Any] = vars(_QueueServiceBase)["_instances"]  # shared by subclasses
    with _QueueServiceBase._instance_cache_lock:
        return list(instances.values())


def _wait_for_prefect_services(deadline: float) -> bool:
    """Wait until every running Prefect queue service has handled all it was given.

    Batched services (the log worker) are skipped: they never mark items done, and they drain
    silently when stopped. False when `deadline` (a `time.monotonic()` value) passes first.
    """
    services = _prefect_services()
    if not services:
        return True
    from prefect._internal.concurrency.services import BatchedQueueService

    for service in services:
        if isinstance(service, BatchedQueueService):
            continue
        items = service._queue
        with items.all_tasks_done:
            while items.unfinished_tasks and not service._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                items.all_tasks_done.wait(min(remaining, 0.1))
    return True
