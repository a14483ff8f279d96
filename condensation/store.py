"""The shared store: values, first-writer-wins adds and lease locks that agree across workers.

DESIGN.md §6. Summaries, calibration corrections, image descriptions, single-flight locks and
the upstream concurrency gate live here. Three backends: `memory` (one process), `disk`
(diskcache's SQLite, shared by every gunicorn worker of a host; the default) and `redis`
(CACHE_URL, shared by every host). Disk and Redis sit behind a small in-process LRU for hot
reads, and while unreachable they fall back to process memory with one warning: the store
never fails a request. Values are stored as JSON text, the same on every backend.
"""

from __future__ import annotations

import contextlib
import enum
import getpass
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import cachetools
import diskcache

from config import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

KEY_PREFIX = "ap1:"  # bump the version to orphan every stored value when the key format changes
MEMORY_ENTRIES = 10_000
FRONT_ENTRIES = 1_000
# A worker may serve a value another worker replaced or deleted for at most this long.
FRONT_TTL = 60.0
RETRY_AFTER = 30.0  # seconds an unreachable backend is left alone before it is tried again
DISK_TIMEOUT = 2.0  # SQLite busy timeout; diskcache's default of 60 s would hang requests
POLL_FIRST, POLL_MAX = 0.005, 0.05  # lock polling backoff, seconds
WAIT_SLICE = 0.05  # single_flight looks for the other worker's value this often while waiting
MIN_LEASE = 30.0


@dataclass(frozen=True)
class Lease:
    """A key held by one caller until released or its ttl passes (renewable while held)."""

    key: str
    token: str
    holder: Backend  # the backend that granted it: process memory while the shared one failed


class Store(Protocol):
    """What every backend offers; values are JSON-serialisable, ttl and wait are seconds."""

    name: str

    def get(self, key: str, fresh: bool = False) -> Any | None: ...
    def set(self, key: str, value: Any, ttl: float) -> None: ...
    def add(self, key: str, value: Any, ttl: float) -> bool: ...
    def delete(self, key: str) -> None: ...
    def lock(self, key: str, ttl: float, wait: float) -> AbstractContextManager[bool]: ...
    def lease(self, key: str, ttl: float) -> Lease | None: ...
    def renew(self, lease: Lease, ttl: float) -> bool: ...
    def release(self, lease: Lease) -> None: ...
    def stats(self) -> dict[str, Any]: ...


class Backend(Protocol):
    """Raw JSON text under keys; may raise anything (the store catches it)."""

    def get(self, key: str) -> tuple[str | None, float | None]: ...  # (text, seconds left)
    def set(self, key: str, raw: str, ttl: float) -> None: ...
    def add(self, key: str, raw: str, ttl: float) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_if(self, key: str, raw: str) -> None: ...  # atomically, only if it holds `raw`
    def renew_if(self, key: str, raw: str, ttl: float) -> bool: ...  # likewise, a new ttl
    def close(self) -> None: ...


# ---------------------------------------------------------------------------- keys and flights


def stable_key(*parts: Any) -> str:
    """A digest of `parts` that is the same on every worker and host (never the salted hash()).

    >>> stable_key("summary", {"b": 1, "a": [1, 2]}) == stable_key("summary", {"a": [1, 2], "b": 1})
    True
    >>> stable_key("x")[:4], len(stable_key("x"))
    ('ap1:', 44)
    """
    text = json.dumps(
        parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_canonical
    )
    return KEY_PREFIX + hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, bytes | bytearray):
        return {"bytes": hashlib.blake2b(value).hexdigest()}
    raise TypeError(f"stable_key cannot digest a {type(value).__name__}")


def single_flight(
    store: Store,
    key: str,
    compute: Callable[[], T],
    ttl: float,
    wait: float,
    *,
    lock_ttl: float | None = None,
) -> tuple[T, bool]:
    """(value, was_cached): the stored value, or one computed by one worker while others wait.

    Waits at most `wait` seconds for a worker already computing, then computes anyway. The lock
    lease (`lock_ttl`, default max(2 × wait, 30 s)) must outlast compute(); its exceptions
    propagate and release the lock. A None result is returned but not stored.
    """
    cached = store.get(key)
    if cached is not None:
        return cached, True
    lease = lock_ttl if lock_ttl is not None else max(2 * wait, MIN_LEASE)
    deadline = time.monotonic() + wait
    while True:
        left = max(deadline - time.monotonic(), 0.0)
        with store.lock(key + ":lock", lease, min(left, WAIT_SLICE)) as held:
            if held or left <= 0:
                return _fill(store, key, compute, ttl)
        # Someone else holds the lock: their value may be stored by now.
        cached = store.get(key)
        if cached is not None:
            return cached, True


def _fill(store: Store, key: str, compute: Callable[[], T], ttl: float) -> tuple[T, bool]:
    cached = store.get(key)  # computed by another worker while this one waited
    if cached is not None:
        return cached, True
    value = compute()
    if value is None or store.add(key, value, ttl):
        return value, False
    # Another worker stored first: keep theirs, so no two workers hold different values.
    stored = store.get(key)
    return (stored, True) if stored is not None else (value, False)


# ---------------------------------------------------------------------------- backends


class MemoryBackend:
    """Process memory, bounded, with per-entry expiry."""

    def __init__(self, maxsize: int = MEMORY_ENTRIES) -> None:
        # Entries are (deadline, raw); the ttu makes each expire at its own deadline.
        self._cache: cachetools.TLRUCache[str, tuple[float, str]] = cachetools.TLRUCache(
            maxsize, ttu=lambda _key, entry, _now: entry[0]
        )
        self._lock = threading.Lock()  # cachetools caches are not thread-safe

    def get(self, key: str) -> tuple[str | None, float | None]:
        with self._lock:
            entry = self._cache.get(key)
        if entry is None:
            return None, None
        return entry[1], entry[0] - time.monotonic()

    def set(self, key: str, raw: str, ttl: float) -> None:
        with self._lock:
            self._cache[key] = (time.monotonic() + ttl, raw)

    def add(self, key: str, raw: str, ttl: float) -> bool:
        with self._lock:
            if key in self._cache:
                return False
            self._cache[key] = (time.monotonic() + ttl, raw)
            return True

    def delete(self, key: str) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def delete_if(self, key: str, raw: str) -> None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry[1] == raw:
                del self._cache[key]

    def renew_if(self, key: str, raw: str, ttl: float) -> bool:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None or entry[1] != raw:
                return False
            self._cache[key] = (time.monotonic() + ttl, raw)
            return True

    def size(self) -> int:
        with self._lock:
            return len(self._cache)

    def close(self) -> None:
        with self._lock:
            self._cache.clear()


class DiskBackend:
    """diskcache (SQLite) in a directory: process-safe, shared by every worker of a host."""

    def __init__(self, directory: str | None, timeout: float = DISK_TIMEOUT) -> None:
        self.directory = directory or default_cache_dir()
        self._private = directory is None
        self._timeout = timeout
        self._cache: diskcache.Cache | None = None
        self._open_lock = threading.Lock()

    def _db(self) -> diskcache.Cache:
        # Opened on first use, inside the store's guard, so a bad directory only degrades.
        with self._open_lock:
            if self._cache is None:
                if self._private:
                    _make_private_dir(self.directory)
                self._cache = diskcache.Cache(self.directory, timeout=self._timeout)
            return self._cache

    def get(self, key: str) -> tuple[str | None, float | None]:
        raw, expires = self._db().get(key, default=None, expire_time=True)
        return raw, None if expires is None else expires - time.time()

    def set(self, key: str, raw: str, ttl: float) -> None:
        self._db().set(key, raw, expire=ttl)

    def add(self, key: str, raw: str, ttl: float) -> bool:
        return bool(self._db().add(key, raw, expire=ttl))

    def delete(self, key: str) -> None:
        self._db().delete(key)

    def delete_if(self, key: str, raw: str) -> None:
        db = self._db()
        with db.transact():  # SQLite write lock: no other process changes the key in between
            if db.get(key) == raw:
                db.delete(key)

    def renew_if(self, key: str, raw: str, ttl: float) -> bool:
        db = self._db()
        with db.transact():
            return db.get(key) == raw and bool(db.touch(key, expire=ttl))

    def close(self) -> None:
        with self._open_lock:
            if self._cache is not None:
                self._cache.close()
                self._cache = None


def default_cache_dir() -> str:
    """Where the embedded store lives when CACHE_DIR is empty: per user, under the temp dir."""
    user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return os.path.join(tempfile.gettempdir(), f"anthropic-proxy-store-{user}")


def _make_private_dir(path: str) -> None:
    """Create the shared temp-dir store 0700; refuse one another user created first."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and os.stat(path).st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to another user")


# ---------------------------------------------------------------------------- stores


class GuardedStore:
    """A Store over a Backend: JSON values, counters and, for a shared backend, a front LRU
    and a fallback to process memory while the backend fails."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        *,
        shared: bool = True,
        where: str = "",
        retry_after: float = RETRY_AFTER,
    ) -> None:
        """`where` names the backend in log lines (never with a password)."""
        self.name = name
        self._backend = backend
        self._fallback = MemoryBackend() if shared else None
        self._front = MemoryBackend(FRONT_ENTRIES) if shared else None
        self.where = where or name
        self._retry_after = retry_after
        self._lock = threading.Lock()
        self._hits = self._misses = self._errors = 0
        self._degraded = False
        self._retry_at = 0.0
        self._secrets: tuple[str, ...] = ()  # scrubbed from logged errors

    def get(self, key: str, fresh: bool = False) -> Any | None:
        """The value under `key`; `fresh` reads past the in-process front (for keys that `set`
        rewrites, which another worker's front may hold for up to FRONT_TTL)."""
        raw = self._front.get(key)[0] if self._front and not fresh else None
        if raw is None:
            used, (raw, left) = self._run(lambda b: b.get(key))
            if raw is not None and used is self._backend:
                self._remember(key, raw, left)
        value = _decode(key, raw)
        with self._lock:
            if value is None:
                self._misses += 1
            else:
                self._hits += 1
        return value

    def set(self, key: str, value: Any, ttl: float) -> None:
        raw = _encode(value)
        used, _ = self._run(lambda b: b.set(key, raw, ttl))
        if used is self._backend:
            self._remember(key, raw, ttl)
        elif self._front:
            self._front.delete(key)

    def add(self, key: str, value: Any, ttl: float) -> bool:
        raw = _encode(value)
        used, added = self._run(lambda b: b.add(key, raw, ttl))
        if added and used is self._backend:
            self._remember(key, raw, ttl)
        return added

    def delete(self, key: str) -> None:
        if self._front:
            self._front.delete(key)
        self._run(lambda b: b.delete(key))

    @contextlib.contextmanager
    def lock(self, key: str, ttl: float, wait: float) -> Iterator[bool]:
        """A lease: held until released or `ttl` passes; yields whether it was won within `wait`."""
        deadline = time.monotonic() + wait
        delay = POLL_FIRST
        while (held := self.lease(key, ttl)) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(delay, left))
            delay = min(delay * 2, POLL_MAX)
        try:
            yield held is not None
        finally:
            if held is not None:
                self.release(held)

    def lease(self, key: str, ttl: float) -> Lease | None:
        """`key` held for `ttl` seconds if nobody holds it now; else None."""
        token = _encode(uuid.uuid4().hex)
        used, won = self._run(lambda b: b.add(key, token, ttl))
        return Lease(key, token, used) if won else None

    def renew(self, lease: Lease, ttl: float) -> bool:
        """Hold `lease` for `ttl` more seconds; False when it expired and may be someone else's."""
        try:
            return lease.holder.renew_if(lease.key, lease.token, ttl)
        except Exception as exc:  # the lease runs out by itself; the caller decides
            self._failed(exc)
            return False

    def release(self, lease: Lease) -> None:
        """Give `lease` up (a no-op once it expired and another caller holds the key)."""
        try:
            lease.holder.delete_if(lease.key, lease.token)
        except Exception as exc:  # the lease expires by itself
            self._failed(exc)

    def stats(self) -> dict[str, Any]:
        """name, hits, misses, errors, degraded and front_size, for /health."""
        with self._lock:
            figures = {"name": self.name, "hits": self._hits, "misses": self._misses}
            figures.update(errors=self._errors, degraded=self._degraded)
        figures["front_size"] = self._front.size() if self._front else 0
        return figures

    def close(self) -> None:
        """Close the backend's connections (tests; workers just exit)."""
        with contextlib.suppress(Exception):
            self._backend.close()

    # ------------------------------------------------------------------------ guard

    def _run(self, op: Callable[[Backend], R]) -> tuple[Backend, R]:
        """(backend used, result) of `op` on the backend, or on process memory while it fails."""
        if self._fallback is None:
            return self._backend, op(self._backend)
        if self._degraded and time.monotonic() < self._retry_at:
            return self._fallback, op(self._fallback)
        try:
            result = op(self._backend)
        except Exception as exc:  # the store never fails the caller: memory serves this call
            self._failed(exc)
            return self._fallback, op(self._fallback)
        if self._degraded:
            self._recovered()
        return self._backend, result

    def _remember(self, key: str, raw: str, left: float | None) -> None:
        if self._front is not None:
            self._front.set(key, raw, FRONT_TTL if left is None else min(left, FRONT_TTL))

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self._errors += 1
            first = not self._degraded
            self._degraded = True
            self._retry_at = time.monotonic() + self._retry_after
        reason = f"{type(exc).__name__}: {exc}"
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        if first:
            logger.warning(
                "STORE %s unavailable (%s); serving from process memory, retrying every %g s",
                self.where,
                reason,
                self._retry_after,
            )
        else:
            logger.debug("STORE %s still unavailable (%s)", self.where, reason)

    def _recovered(self) -> None:
        with self._lock:
            was, self._degraded = self._degraded, False
        if was:
            logger.info("STORE %s reachable again", self.where)


class MemoryStore(GuardedStore):
    """One process's store: for tests, and what the shared stores fall back to."""

    def __init__(self, maxsize: int = MEMORY_ENTRIES) -> None:
        super().__init__("memory", MemoryBackend(maxsize), shared=False)


class DiskStore(GuardedStore):
    """diskcache in `directory` (default: a per-user directory under the temp dir)."""

    def __init__(self, directory: str | None = None, *, retry_after: float = RETRY_AFTER) -> None:
        backend = DiskBackend(directory)
        super().__init__(
            "disk", backend, where=f"disk {backend.directory}", retry_after=retry_after
        )
        self.directory = backend.directory


def build_store(settings: Settings) -> Store:
    """Redis when CACHE_URL is set, else the embedded store in CACHE_DIR. Never connects here."""
    store: GuardedStore
    if settings.cache_url:
        from condensation.redis_store import RedisStore

        store = RedisStore(settings.cache_url)
    else:
        store = DiskStore(settings.cache_dir)
    logger.info("STORE using %s", store.where)
    return store


def _encode(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _decode(key: str, raw: str | None) -> Any | None:
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError:  # not written by this module; treat as absent
        logger.debug("STORE ignoring a value that is not JSON under %s", key)
        return None
