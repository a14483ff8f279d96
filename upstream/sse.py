"""Server-sent events: decode a byte stream into events, and encode events into frames.

Decoding follows the WHATWG event-stream rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end in CRLF, LF or CR; `:` starts a comment; `data` lines of one event join with "\\n";
a blank line dispatches the event. Lines are split on bytes before UTF-8 decoding so a multi-byte
character split across network chunks is never broken.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event: its `event` name (empty if none) and its joined `data`."""

    event: str
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def iter_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Regroup arbitrary byte chunks into lines (without terminators)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        if b"\n" not in chunk and b"\r" not in chunk:
            continue  # a long line arriving in pieces is split once, when it ends
        lines = pending.splitlines(keepends=True)
        pending = b""
        # The last piece is incomplete without a terminator, or when it ends in a CR that may be
        # the first half of a CRLF split across chunks.
        if lines and (lines[-1].endswith(b"\r") or not lines[-1].endswith(b"\n")):
            pending = lines.pop()
        for line in lines:
            yield line.rstrip(b"\r\n")
    if pending:
        yield pending.rstrip(b"\r\n")


class _Decoder:
    """The per-event state machine: feed lines, get events at blank lines."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, raw: bytes) -> SSEEvent | None:
        if not raw:
            return self._dispatch()
        line = raw.decode("utf-8")
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        # `id` and `retry` fields carry nothing the proxy needs.
        return None

    def _dispatch(self) -> SSEEvent | None:
        if not self._data:
            self._event = ""
            return None
        event = SSEEvent(self._event, "\n".join(self._data))
        self._event, self._data = "", []
        return event

    def flush(self) -> SSEEvent | None:
        return self._dispatch()


def iter_sse(chunks: Iterable[bytes]) -> Iterator[SSEEvent]:
    """Decode SSE events from byte chunks as they arrive."""
    decoder = _Decoder()
    for line in iter_lines(chunks):
        event = decoder.feed(line)
        if event is not None:
            yield event
    # A stream cut without the final blank line still delivers what it completed.
    event = decoder.flush()
    if event is not None:
        yield event


# Characters JSON leaves raw under ensure_ascii=False that str.splitlines() treats as line breaks;
# clients reading SSE with requests' iter_lines(decode_unicode=True) would split events on them.
_LINE_BREAK_ESCAPES = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029", "\x85": "\\u0085"})


def json_bytes(data: Any) -> bytes:
    """Compact UTF-8 JSON; text holding a lone surrogate (valid JSON, not UTF-8) goes escaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode()


def encode_sse(data: Any, event: str | None = None) -> bytes:
    """One SSE frame: optional `event:` line and a compact JSON (or literal string) `data:` line."""
    if isinstance(data, str):
        payload = data.encode()
    else:
        payload = json_bytes(data).decode().translate(_LINE_BREAK_ESCAPES).encode()
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + payload + b"\n\n"
