"""Slow work behind a stream's headers: run it in a thread, send SSE comments while it runs.

A stream's headers go out before work that may take seconds (a summary call, a queue wait);
clients and proxies that see no byte for a while give up, so the stream sends `: keepalive`
comment lines every interval until the work is done. Comments are not content: whatever the
work ends in (a retry included) can still be decided after them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from logs import in_context

T = TypeVar("T")

KEEPALIVE = b": keepalive\n\n"


class Background(Generic[T]):
    """One job running in a daemon thread; its result, or its exception, once it ends.

    If the stream is abandoned (the client left) the job still runs to its end, so work under
    way (a summary) is finished and cached, and `cleanup` releases what it opened.
    """

    def __init__(self, job: Callable[[], T], cleanup: Callable[[T], None]) -> None:
        self._job = job
        self._cleanup = cleanup
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._abandoned = False
        self._taken = False
        self._result: T | None = None
        self._error: BaseException | None = None
        # in the request's context: the job's log lines carry its request id
        threading.Thread(target=in_context(self._run), name="stream-prepare", daemon=True).start()

    def keepalives(self, interval: float) -> Iterator[bytes]:
        """Yield a comment every `interval` seconds until the job has ended."""
        while not self._done.wait(interval):
            yield KEEPALIVE

    def result(self) -> T:
        """The job's result (raises its exception); call after `keepalives` is exhausted."""
        self._done.wait()
        with self._lock:
            self._taken = True
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]

    def abandon(self) -> None:
        """The stream is gone: release the result now if it is there, else when it comes."""
        with self._lock:
            self._abandoned = True
            release = self._done.is_set() and not self._taken and self._error is None
            self._taken = self._taken or release
        if release:
            self._cleanup(self._result)  # type: ignore[arg-type]

    def _run(self) -> None:
        try:
            self._result = self._job()
        except BaseException as exc:  # handed to the stream, which reports it as an SSE error
            self._error = exc
        with self._lock:
            self._done.set()
            release = self._abandoned and not self._taken and self._error is None
            self._taken = self._taken or release
        if release:
            self._cleanup(self._result)  # type: ignore[arg-type]
