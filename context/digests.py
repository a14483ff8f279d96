"""Stable digests of conversations at message boundaries, the same on every worker and host.

`chain(head, messages)[i]` covers `head` and messages 0..i, so a request that resends an earlier
one and adds messages shares its digests up to the boundary where it grew: what the condenser
records and calibration learns for a prefix is found again by the longer request. Keys are
blake2b over canonical JSON (never Python's salted `hash()`); `cache_control` markers, which
Claude Code moves from turn to turn, are left out.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from upstream import canonical as c

_local = threading.local()


@contextmanager
def one_serialisation() -> Iterator[None]:
    """Within the block (one request's decision), each message is serialised once, however many
    chains read it: the client's conversation, its condensed and its forwarded forms share
    their message objects, and the condenser and calibration each walk them."""
    outer = getattr(_local, "memo", None)
    if outer is None:
        _local.memo = {}
    try:
        yield
    finally:
        if outer is None:
            _local.memo = None


def canonical_message(message: c.Message) -> str:
    """A message as compact JSON, without the cache markers that say nothing about content."""
    memo: dict[int, tuple[c.Message, str]] | None = getattr(_local, "memo", None)
    if memo is None:
        return _serialised(message)
    found = memo.get(id(message))
    if found is None or found[0] is not message:  # the memo keeps it alive: ids stay unique
        found = (message, _serialised(message))
        memo[id(message)] = found
    return found[1]


def _serialised(message: c.Message) -> str:
    blocks = [
        {k: v for k, v in b.items() if k != "cache_control"} if "cache_control" in b else b
        for b in message["content"]
    ]
    return json.dumps([message["role"], blocks], separators=(",", ":"), ensure_ascii=False)


def chain(head: Sequence[Any], messages: Sequence[c.Message]) -> tuple[str, ...]:
    """A running digest per message: entry i covers `head` and messages[0..i].

    >>> a = {"role": "user", "content": [{"type": "text", "text": "hi"}]}
    >>> b = {"role": "assistant", "content": [{"type": "text", "text": "hello"}]}
    >>> chain(("glm-4.6",), [a, b])[0] == chain(("glm-4.6",), [a])[0]
    True
    """
    running = hashlib.blake2b(digest_size=16)
    running.update(json.dumps(list(head), separators=(",", ":"), ensure_ascii=False).encode())
    out = []
    for message in messages:
        running.update(canonical_message(message).encode())
        out.append(running.copy().hexdigest())
    return tuple(out)
