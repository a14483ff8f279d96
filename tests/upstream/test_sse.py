"""SSE decoding of recorded transcripts split at awkward places, and frame encoding."""

from __future__ import annotations

import json

import pytest

from tests.conftest import FIXTURES
from upstream.sse import SSEEvent, encode_sse, iter_sse

TRANSCRIPTS = sorted((FIXTURES / "sse").glob("*.txt"))


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[p.name for p in TRANSCRIPTS])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 10**6])
def test_split_points_do_not_change_events(path, size: int) -> None:
    data = path.read_bytes()
    whole = list(iter_sse([data]))
    assert whole, "transcript decodes to events"
    assert list(iter_sse(split_every(data, size))) == whole


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n", b"\r"])
def test_line_terminators(terminator: bytes) -> None:
    raw = terminator.join([b"event: a", b"data: 1", b"", b"data: 2", b"", b""])
    assert list(iter_sse(split_every(raw, 1))) == [SSEEvent("a", "1"), SSEEvent("", "2")]


def test_utf8_split_inside_a_character() -> None:
    raw = "data: 你好\n\n".encode()
    cut = raw.index("你".encode()) + 1
    assert list(iter_sse([raw[:cut], raw[cut:]])) == [SSEEvent("", "你好")]


def test_comments_skipped_and_multiline_data_joined() -> None:
    raw = b": keepalive\n\nevent: x\ndata: one\ndata:two\nid: 7\nretry: 5\n\n"
    assert list(iter_sse([raw])) == [SSEEvent("x", "one\ntwo")]


def test_cut_stream_delivers_completed_event_only_once() -> None:
    assert list(iter_sse([b"data: 1\n\ndata: 2"])) == [SSEEvent("", "1"), SSEEvent("", "2")]


def test_encode_round_trips() -> None:
    payload = {"type": "message_stop", "text": "ü\nline"}
    frame = encode_sse(payload, event="message_stop")
    assert frame.startswith(b"event: message_stop\ndata: ") and frame.endswith(b"\n\n")
    (event,) = iter_sse([frame])
    assert event.event == "message_stop" and json.loads(event.data) == payload
    assert encode_sse("[DONE]") == b"data: [DONE]\n\n"


def test_long_line_in_many_pieces() -> None:
    payload = "x" * 100_000
    raw = f"data: {payload}\n\n".encode()
    assert list(iter_sse(split_every(raw, 997))) == [SSEEvent("", payload)]


@pytest.mark.parametrize("char", ["\u2028", "\u2029", "\x85"])
def test_unicode_line_breaks_are_escaped_so_line_readers_do_not_split_events(char: str) -> None:
    frame = encode_sse({"text": f"a{char}b"})
    text = frame.decode()
    assert text.splitlines() == text.split("\n")[:-1]
    (event,) = iter_sse([frame])
    assert json.loads(event.data) == {"text": f"a{char}b"}
