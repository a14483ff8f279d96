"""A table of malformed chat-completions bodies, built from one valid body by targeted breakage."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

VALID = {
    "model": "glm-4.6",
    "messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
    ],
    "max_tokens": 32,
}

BAD_SCALARS: list[Any] = [None, True, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}]
RAW_BODIES: list[bytes] = [
    b"",
    b" ",
    b"{",
    b"}",
    b"{'model': 'glm-4.6'}",
    b'{"model": "glm-4.6",}',
    b"null",
    b"true",
    b"42",
    b'"a string"',
    b"[]",
    b'[{"model": "glm-4.6"}]',
    b"\xff\xfe\x00{",
    b"\x00\x01\x02",
    b'{"model": "glm-4.6", "messages": [' + b"[" * 50000 + b"]" * 50000 + b"]}",
    b"[" * 100000,
    b'{"a": ' * 5000 + b"1" + b"}" * 5000,
    b'{"model": "glm-4.6", "messages": NaN}',
    b'{"model": "glm-4.6", "max_tokens": Infinity, "messages": []}',
    b'{"model": "\xc3\x28"}',
]


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return body


def _without(key: str) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    del body[key]
    return body


def _field_breakage() -> Iterator[dict[str, Any]]:
    for value in BAD_SCALARS:
        if not isinstance(value, str) or value == "":
            yield _with(["model"], value)
        yield _with(["messages"], value)
        yield _with(["messages", 0], value)
        yield _with(["messages", 1], value)
        if not isinstance(value, str | type(None)):
            yield _with(["messages", 1, "content"], value)
        yield _with(["messages", 1, "content", 0], value)
        yield _with(["messages", 1, "role"], value)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and value > 0
        ):
            yield _with(["max_tokens"], value)
            yield _with(["max_completion_tokens"], value)
        if value is not None and not isinstance(value, int | float) or isinstance(value, bool):
            yield _with(["temperature"], value)
            yield _with(["top_p"], value)
        if value is not None and not isinstance(value, bool):
            yield _with(["stream"], value)
        if value not in (None, "") and not (isinstance(value, list) and value == []):
            yield (
                _with(["stop"], value)
                if not isinstance(value, str)
                else _with(["stop"], [1, value])
            )
        if value is not None and value != []:
            yield _with(["tools"], value if not isinstance(value, list) else [value])
        if value not in ("x",):
            yield _with(["messages", 1, "content", 0, "type"], value)
        if not isinstance(value, str):
            yield _with(["messages", 1, "content", 0, "text"], value)


def _message_breakage() -> Iterator[dict[str, Any]]:
    bad_messages: list[list[Any]] = [
        [{"role": "user"}],
        [{"role": "robot", "content": "x"}],
        [{"content": "x"}],
        [{"role": "user", "content": [{"type": "audio", "data": "x"}]}],
        [{"role": "user", "content": [{"type": "text"}]}],
        [{"role": "user", "content": [{"type": "text", "text": 5}]}],
        [{"role": "user", "content": [{"type": "image_url"}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
        [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:text/plain;base64,aGk="}}
                ],
            }
        ],
        [
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}],
            }
        ],
        [{"role": "tool", "content": "orphan result"}],
        [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [{"id": "c"}]}],
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]},
        ],
        [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": "f"}],
        [{"role": "user", "content": "x"}, {"role": "assistant", "reasoning_content": 5}],
        [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": [{"type": "image_url"}]},
        ],
        [
            {
                "role": "system",
                "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}],
            }
        ],
        [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": 5, "content": "r"}],
        [{"role": "user", "content": "x"}, {"role": "tool", "tool_call_id": "c", "content": 5}],
    ]
    for messages in bad_messages:
        yield _with(["messages"], messages)


def _option_breakage() -> Iterator[dict[str, Any]]:
    options: list[dict[str, Any]] = [
        {"n": 3},
        {"n": "1"},
        {"tool_choice": "sometimes"},
        {"tool_choice": {"type": "function"}},
        {"tool_choice": {"type": "function", "function": {}}},
        {"tools": [{"type": "retrieval"}]},
        {"tools": [{"type": "function", "function": {"description": "no name"}}]},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "none"}}]},
        {"stream_options": "yes"},
        {"stream_options": {"include_usage": "yes"}},
        {"reasoning_effort": "extreme"},
        {"reasoning_effort": 3},
        {"thinking": "on"},
        {"thinking": {"type": "maybe"}},
        {"thinking": {"type": "enabled", "budget_tokens": "lots"}},
        {"temperature": 2.5},
        {"top_p": 1.5},
        {"max_tokens": 0},
        {"max_completion_tokens": -5},
        {"stop": {"a": 1}},
    ]
    for option in options:
        yield copy.deepcopy(VALID) | option
    for key in ("model", "messages"):
        yield _without(key)


def malformed_bodies() -> list[bytes]:
    """Every malformed body as raw bytes, each distinct."""
    encoded = [
        json.dumps(b).encode()
        for b in (*_field_breakage(), *_message_breakage(), *_option_breakage())
    ]
    unique = list(dict.fromkeys(RAW_BODIES + encoded))
    return unique
