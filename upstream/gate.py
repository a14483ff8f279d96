"""The upstream concurrency gate: at most UPSTREAM_MAX_CONCURRENCY calls in flight per key.

z.ai's coding plan answers more than a few requests in flight per key with 429 (code 1302), and
agent clients fan out. The gate queues calls instead: each upstream call (a user's request, a
summary call, an image description) holds a slot only around its own call, so a request waiting
for its summary holds none and a limit of 1 cannot deadlock.

Slots are leases in the shared store (DESIGN.md §6), so the limit holds across the workers of a
host (embedded store) or every host (Redis). A lease expires by itself if its worker dies and is
renewed by one thread per worker while its call runs, however long the stream. Within a worker,
waiters first queue on a local semaphore, so at most `limit` of them poll the store at a time.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from condensation.store import Lease, Store, stable_key
from errors import ErrorKind, ProxyError

logger = logging.getLogger(__name__)

LEASE_SECONDS = 20.0  # a dead worker's slot is free again after at most this long
RENEW_EVERY = LEASE_SECONDS / 4
POLL_FIRST, POLL_MAX = 0.01, 0.2  # backoff while every shared slot is taken, seconds
RETRY_AFTER_SECONDS = 5

# observe(seconds waited, outcome): outcome is "entered" or "timeout"
Observer = Callable[[float, str], None]


class QueueTimeout(ProxyError):
    """The gate stayed full for UPSTREAM_QUEUE_TIMEOUT: "try later", like z.ai's own 429."""

    status = 429
    kind = ErrorKind.RATE_LIMIT


class Slot:
    """One upstream call's place in the gate; `release` may be called any number of times."""

    def __init__(self, on_release: Callable[[Slot], None] | None = None) -> None:
        self._on_release = on_release
        self._released = threading.Event()
        self.lease: Lease | None = None

    @property
    def held(self) -> bool:
        return not self._released.is_set()

    def release(self) -> None:
        if self._released.is_set():
            return
        self._released.set()
        if self._on_release is not None:
            self._on_release(self)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class OpenGate:
    """No limit (UPSTREAM_MAX_CONCURRENCY unset): every call enters at once."""

    limit: int | None = None

    def enter(self, api_key: str, wait: float | None = None) -> Slot:  # noqa: ARG002
        return Slot()

    def try_enter(self, api_key: str) -> Slot | None:  # noqa: ARG002
        return Slot()

    def stats(self) -> dict[str, Any]:
        return {"limit": None}


@dataclass
class _Local:
    """This worker's callers for one key, waiting or holding a slot, and their semaphore."""

    semaphore: threading.Semaphore
    users: int = 0


class Gate:
    """At most `limit` slots per upstream key, as leases in `store`."""

    def __init__(
        self,
        store: Store,
        limit: int,
        queue_timeout: float,
        *,
        lease: float = LEASE_SECONDS,
        observe: Observer | None = None,
    ) -> None:
        self.limit = limit
        self._store = store
        self._queue_timeout = queue_timeout
        self._lease = lease
        self._observe = observe
        self._lock = threading.Lock()
        self._locals: dict[str, _Local] = {}
        self._held: set[Slot] = set()
        self._renewer_pid = 0  # the process whose renewer thread runs (none after a fork)

    def enter(self, api_key: str, wait: float | None = None) -> Slot:
        """A slot, after waiting up to `wait` seconds (at most UPSTREAM_QUEUE_TIMEOUT);
        QueueTimeout when none came."""
        started = time.monotonic()
        wait = self._queue_timeout if wait is None else min(wait, self._queue_timeout)
        slot = self._acquire(api_key, wait)
        waited = time.monotonic() - started
        self._report(waited, "entered" if slot else "timeout")
        if slot is None:
            logger.warning(
                "upstream queue: no slot of %d in %.1f s; answering 429", self.limit, waited
            )
            raise QueueTimeout(
                f"the upstream concurrency limit (UPSTREAM_MAX_CONCURRENCY={self.limit}) stayed "
                f"full for {waited:.0f} s (UPSTREAM_QUEUE_TIMEOUT={self._queue_timeout:g}); "
                "retry later",
                retry_after=str(RETRY_AFTER_SECONDS),
            )
        if waited >= 1:
            logger.info("upstream queue: waited %.1f s for a slot", waited)
        return slot

    def try_enter(self, api_key: str) -> Slot | None:
        """A slot if one is free right now, else None (the caller queues another way)."""
        slot = self._acquire(api_key, 0.0)
        if slot is not None:
            self._report(0.0, "entered")
        return slot

    def stats(self) -> dict[str, Any]:
        """The limit, the queue timeout, and this worker's calls holding or awaiting a slot."""
        with self._lock:
            held = len(self._held)
            waiting = sum(local.users for local in self._locals.values()) - held
        return {
            "limit": self.limit,
            "queue_timeout": self._queue_timeout,
            "held_by_this_worker": held,
            "waiting_in_this_worker": waiting,
        }

    # ------------------------------------------------------------------------ internals

    def _acquire(self, api_key: str, wait: float) -> Slot | None:
        deadline = time.monotonic() + wait
        name = stable_key("upstream-gate", api_key)  # the key itself never reaches the store
        local = self._join(name)
        lease = None
        if local.semaphore.acquire(timeout=max(wait, 0.0)):
            lease = self._lease_one(name, deadline)
            if lease is None:
                local.semaphore.release()
        if lease is None:
            self._leave(name, local)
            return None
        slot = Slot(lambda s: self._release(s, name, local))
        slot.lease = lease
        with self._lock:
            self._held.add(slot)
        self._ensure_renewer()
        return slot

    def _lease_one(self, name: str, deadline: float) -> Lease | None:
        """One of the key's `limit` shared slots, polling until `deadline`."""
        delay = POLL_FIRST
        while True:
            for i in random.sample(range(self.limit), self.limit):
                lease = self._store.lease(f"{name}:slot:{i}", self._lease)
                if lease is not None:
                    return lease
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(delay * random.uniform(0.5, 1.0), left))
            delay = min(delay * 2, POLL_MAX)

    def _release(self, slot: Slot, name: str, local: _Local) -> None:
        with self._lock:
            self._held.discard(slot)
        if slot.lease is not None:
            self._store.release(slot.lease)
        local.semaphore.release()
        self._leave(name, local)

    def _join(self, name: str) -> _Local:
        with self._lock:
            local = self._locals.get(name)
            if local is None:
                local = self._locals[name] = _Local(threading.Semaphore(self.limit))
            local.users += 1
            return local

    def _leave(self, name: str, local: _Local) -> None:
        """Forget a key's semaphore once nobody waits on it or holds a slot of it."""
        with self._lock:
            local.users -= 1
            if local.users == 0:
                del self._locals[name]

    def _report(self, waited: float, outcome: str) -> None:
        if self._observe is not None:
            self._observe(waited, outcome)

    # ------------------------------------------------------------------------ renewal

    def _ensure_renewer(self) -> None:
        with self._lock:
            if self._renewer_pid == os.getpid():
                return
            self._renewer_pid = os.getpid()
        threading.Thread(target=self._renew_forever, name="gate-renewer", daemon=True).start()

    def _renew_forever(self) -> None:
        interval = max(self._lease / 4, 0.01)
        while True:
            time.sleep(interval)
            self.renew_held()

    def renew_held(self) -> int:
        """Renew every slot this worker holds; how many had already expired (logged)."""
        with self._lock:
            held = [s for s in self._held if s.lease is not None]
        lost = 0
        for slot in held:
            assert slot.lease is not None
            if slot.held and not self._store.renew(slot.lease, self._lease):
                lost += 1
        if lost:
            logger.warning("upstream queue: %d slot lease(s) expired before renewal", lost)
        return lost


def build_gate(
    store: Store, limit: int | None, queue_timeout: float, observe: Observer | None = None
) -> Gate | OpenGate:
    """The gate UPSTREAM_MAX_CONCURRENCY asks for: none when unset."""
    if limit is None:
        return OpenGate()
    return Gate(store, limit, queue_timeout, observe=observe)
