"""How to answer one kind of client: its renderers and the window it expects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from upstream import canonical as c


@dataclass(frozen=True)
class ClientFormat:
    """How to answer one kind of client: its renderers and the window it expects."""

    render_response: Callable[[c.Response, str], dict[str, Any]]
    render_stream: Callable[[Iterable[c.StreamEvent], str], Iterator[bytes]]
    expected_window: int
