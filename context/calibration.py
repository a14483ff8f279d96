"""Calibration: the upstream's usage tells the true size of what was forwarded; later turns use it.

After every answer the proxy knows exactly how many input tokens its forwarded request had. It
keeps `correction = true − estimate` under the request's chain digest (model, system, tools,
messages…) in the shared store. A later request that begins with a request whose size is known
is counted as `estimate(whole) + correction(longest known prefix)`, the correction grown in
proportion to what was added since (a conversation's estimate errs the same way every turn).
Each conversation keeps an index of the prefix lengths it has corrections for, so a lookup
reads one index and hashes the conversation once; nothing is encoded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from context.digests import chain
from upstream import canonical as c

logger = logging.getLogger(__name__)

# True sizes outside this band around the estimate are not believed (a unit mix-up upstream,
# usage of another request, an empty answer); the estimate is never that far off.
SANE_RATIO = (0.5, 2.0)
LENGTHS_PER_CONVERSATION = 64


class Store(Protocol):
    """The shared store (condensation.store.Store) as calibration uses it."""

    def get(self, key: str, fresh: bool = False) -> Any | None: ...
    def set(self, key: str, value: Any, ttl: float) -> None: ...


@dataclass(frozen=True)
class Counted:
    """A request's input size and where it came from: calibrated, estimate or exact."""

    tokens: int
    source: str
    prefix: int = 0  # messages covered by the correction used


class Calibration:
    """Learns corrections from usage and applies the longest one that fits."""

    def __init__(self, store: Store, ttl: float, exact: bool = False) -> None:
        """`exact`: counts come from GLM's own tokenizer (they are still corrected by usage)."""
        self._store = store
        self._ttl = ttl
        self._plain = "exact" if exact else "estimate"
        self._warned = False
        self._lock = threading.Lock()
        self._stats = {"lookups": 0, "hits": 0, "learned": 0, "ignored": 0}

    def count(self, request: c.Request, head: Sequence[Any], estimate: int) -> Counted:
        """`estimate` corrected by the longest prefix of `request` whose true size is known.

        `head` says what the count depends on besides the messages (wire, model, system, tools).
        """
        messages = request["messages"]
        lengths = self._lengths(head, messages)
        self._tally("lookups")
        if not lengths:
            return Counted(estimate, self._plain)
        digests = chain(head, messages[: max(lengths)])
        for length in lengths:
            found = self._store.get(_record_key(digests[length - 1]))
            if isinstance(found, dict) and isinstance(found.get("correction"), int):
                self._tally("hits")
                return Counted(estimate + _scaled(found, estimate), "calibrated", length)
        return Counted(estimate, self._plain)

    def learn(self, request: c.Request, head: Sequence[Any], estimate: int, true: int) -> bool:
        """Remember the true size of a forwarded request; False when it is not believable."""
        low, high = SANE_RATIO
        if estimate <= 0 or true <= 0 or not low <= true / estimate <= high:
            self._ignored(estimate, true)
            return False
        messages = request["messages"]
        if not messages:
            return False
        digests = chain(head, messages)
        record = {"correction": true - estimate, "estimate": estimate}
        self._store.set(_record_key(digests[-1]), record, self._ttl)
        index = _index_key(head, messages)
        known = [n for n in (self._store.get(index, fresh=True) or []) if isinstance(n, int)]
        lengths = sorted({*known, len(messages)})[-LENGTHS_PER_CONVERSATION:]
        self._store.set(index, lengths, self._ttl)
        self._tally("learned")
        return True

    def stats(self) -> dict[str, Any]:
        """Lookups, hits, corrections learned and usage ignored, for /health."""
        with self._lock:
            return dict(self._stats)

    def _lengths(self, head: Sequence[Any], messages: Sequence[c.Message]) -> list[int]:
        """Prefix lengths of this conversation with a known size, longest first."""
        if not messages:
            return []
        known = self._store.get(_index_key(head, messages), fresh=True) or []
        return sorted((n for n in known if isinstance(n, int) and 0 < n <= len(messages)),
                      reverse=True)  # fmt: skip

    def _ignored(self, estimate: int, true: int) -> None:
        self._tally("ignored")
        if not self._warned:
            self._warned = True
            logger.warning(
                "TOKEN usage of %d input tokens for an estimate of %d is not believable; "
                "not learned (logged once)",
                true,
                estimate,
            )
        else:
            logger.debug("TOKEN usage %d for estimate %d ignored", true, estimate)

    def _tally(self, name: str) -> None:
        with self._lock:
            self._stats[name] += 1


def _scaled(record: dict[str, Any], estimate: int) -> int:
    """The prefix's correction, grown with the request: what was added since is off the same way.

    A conversation's estimate errs the same way turn after turn (its language, its code), so
    the prefix's relative error is applied to the whole; with the prefix alone it is exact.
    """
    known = record.get("estimate")
    if not isinstance(known, int) or known <= 0 or estimate <= known:
        return int(record["correction"])
    return round(record["correction"] * estimate / known)


def _index_key(head: Sequence[Any], messages: Sequence[c.Message]) -> str:
    # The conversation's root: what it depends on and its first message.
    return "calibration-index:" + chain(head, messages[:1])[0]


def _record_key(digest: str) -> str:
    return "calibration:" + digest
