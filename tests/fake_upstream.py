"""A strict local stand-in for z.ai's two upstream formats, for tests and benchmarks.

In process::

    with FakeUpstream() as fake:
        fake.script({"text": "hi", "usage": {"input_tokens": 7, "output_tokens": 2}})
        fake.fail_next("rate_limit", retry_after=3)
        requests.post(fake.anthropic_base + "/v1/messages", ...)
        assert fake.last.body["model"] == "glm-4.6"

As a process (integration tests, benchmarks)::

    python tests/fake_upstream.py --port 0      # prints its base URL as the first stdout line

and then script it over HTTP: ``POST /_fake/script``, ``POST /_fake/fault``, ``POST /_fake/config``,
``GET /_fake/requests``, ``POST /_fake/release``, ``POST /_fake/reset``.

It validates requests the way z.ai does (auth, known model, allowed fields, a valid conversation
per `context.validation`, the context window) and answers with deterministic replies: the next
scripted one, else ``"echo: <last user text>"``, rendered in the request's own format, streamed as
real SSE with one write per event. Faults can be injected for the next N valid requests; a
``hold`` fault parks a stream mid-way until ``release()``, and a stream whose writes fail because
the client went away is recorded as ``aborted`` (``wait_aborted()`` waits for one).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import logging
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from socketserver import TCPServer
from typing import Any, Self

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from context.validation import validate_conversation, validate_openai_messages  # noqa: E402

logger = logging.getLogger(__name__)

ANTHROPIC_PREFIX = "/api/anthropic"
OPENAI_PREFIX = "/api/coding/paas/v4"
ROUTES = {
    ANTHROPIC_PREFIX + "/v1/messages": "anthropic",
    OPENAI_PREFIX + "/chat/completions": "openai",
}
DEFAULT_MODELS = frozenset({"glm-4.6", "glm-4.6v", "glm-4.5-air", "glm-4.5v"})
VISION_MODELS = frozenset({"glm-4.6v", "glm-4.5v"})
DEFAULT_WINDOWS = {
    "glm-4.6": 200_000,
    "glm-4.6v": 65_536,
    "glm-4.5-air": 128_000,
    "glm-4.5v": 65_536,
}
DEFAULT_WINDOW = 200_000
CHARS_PER_TOKEN = 3  # the brief's crude estimate; tests size their overflows with it
IMAGE_TOKENS = 1000  # an image costs this much, whatever its base64 length
ECHO_LIMIT = 2000  # characters of the echoed prompt, so huge prompts don't make huge replies
CHUNK_CHARS = 8  # characters per text/argument delta in streams
SIGNING_KEY = b"fake-zai-thinking:"
POLL_SECONDS = 0.01  # how often the accept loop checks for stop(): bounds teardown time

ANTHROPIC_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "tools", "tool_choice", "thinking", "metadata",
    }
)  # fmt: skip
OPENAI_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "temperature", "top_p", "stream", "stream_options",
        "stop", "tools", "tool_choice", "thinking", "user", "do_sample", "request_id",
        "response_format", "tool_stream",
    }
)  # fmt: skip
OPENAI_TOOL_TYPES = ("function", "web_search", "retrieval")  # z.ai's built-in tools are typed too
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
# Faults that replace the reply; the others delay or cut the transport of a normal reply.
REPLACING_FAULTS = frozenset({"http_error", "rate_limit", "overflow", "disconnect"})
FAULT_KINDS = REPLACING_FAULTS | {"timeout", "stream_drop", "slow_stream", "hold"}
# One encoder, built once: json.dumps(separators=...) builds a new one per call, which dominated
# the cost of rendering a stream. Non-ASCII goes out as UTF-8, as the real APIs send it.
_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
PIECE = "\x00piece\x00"  # placeholder for a delta's text in a frame template
TRIGGER = re.compile(r"\[\[(tool:[\w.-]+|think|max_tokens)\]\]")

Json = dict[str, Any]


# ---------------------------------------------------------------------------- reply specs


@dataclass(frozen=True)
class ToolCall:
    """One tool call of a scripted reply; `id` is generated when not given."""

    name: str
    input: Json = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """What the model "says", independent of the wire format it is rendered in.

    Spec dict keys: text, thinking, tool_calls ([{"name", "input", "id"?}]), stop_reason
    (end_turn/max_tokens/tool_use/stop_sequence; default tool_use when there are tool calls),
    stop_sequence, usage ({"input_tokens", "output_tokens", ...}; missing ones are estimated),
    interleave (OpenAI streams: interleave the argument deltas of parallel calls).
    """

    text: str | None = None
    thinking: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    stop_reason: str | None = None
    stop_sequence: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    interleave: bool = False

    @classmethod
    def from_spec(cls, spec: str | Json | Reply) -> Reply:
        """Build a Reply from a string (just text), a spec dict, or a Reply; ValueError if bad."""
        if isinstance(spec, Reply):
            return spec
        if isinstance(spec, str):
            return cls(text=spec)
        if not isinstance(spec, dict):
            raise ValueError(f"a reply spec is a str or dict, not {type(spec).__name__}")
        unknown = set(spec) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown reply spec keys: {sorted(unknown)}")
        calls = tuple(
            call if isinstance(call, ToolCall) else ToolCall(**call)
            for call in spec.get("tool_calls", ())
        )
        reply = cls(**{**spec, "tool_calls": calls})
        if reply.stop_reason not in (None, *FINISH_REASONS):
            raise ValueError(f"unknown stop_reason {reply.stop_reason!r}")
        return reply

    @property
    def final_stop_reason(self) -> str:
        """The stop reason to report: explicit, else tool_use when calling tools, else end_turn."""
        return self.stop_reason or ("tool_use" if self.tool_calls else "end_turn")


def default_reply(prompt: str, thinking: bool) -> Reply:
    """The unscripted reply: "echo: <prompt>", plus whatever the prompt's [[triggers]] ask for.

    Triggers: [[tool:NAME]] (a call to NAME, repeatable for parallel calls), [[think]] (a
    thinking block), [[max_tokens]] (stop_reason max_tokens).
    """
    clean = TRIGGER.sub("", prompt).strip()
    triggers = TRIGGER.findall(prompt)
    calls = tuple(ToolCall(t[5:], {"text": clean[:200]}) for t in triggers if t.startswith("tool:"))
    return Reply(
        text=("echo: " + (clean or "(no text)"))[:ECHO_LIMIT],
        thinking=f"Thinking about: {clean[:200]}" if thinking or "think" in triggers else None,
        tool_calls=calls,
        stop_reason="max_tokens" if "max_tokens" in triggers else None,
    )


def sign_thinking(thinking: str) -> str:
    """The signature this fake gives a thinking text (and expects back byte for byte)."""
    return base64.b64encode(hashlib.sha256(SIGNING_KEY + thinking.encode()).digest()).decode()


# ---------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """A fault for the next `count` valid requests (of `endpoint`, or of either when None).

    Kinds and their options: http_error (status, message), rate_limit (retry_after),
    overflow, disconnect (close before answering), timeout (seconds before the reply),
    stream_drop (after: events sent before the connection closes; non-stream: half the body),
    slow_stream (delay between events), hold (after: events sent before the stream waits until
    release() or `seconds` pass, always before the final event; non-stream: before the body).
    """

    kind: str
    count: int = 1
    endpoint: str | None = None
    status: int = 500
    message: str | None = None
    retry_after: int = 1
    seconds: float = 5.0
    after: int = 3
    delay: float = 0.05
    gate: threading.Event = field(
        default_factory=threading.Event, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}")
        if self.endpoint not in (None, "anthropic", "openai"):
            raise ValueError(f"endpoint must be 'anthropic', 'openai' or None: {self.endpoint!r}")
        if self.count < 1:
            raise ValueError("count must be >= 1")


# ---------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    """One request as the fake received it, and how it answered."""

    endpoint: str  # "anthropic" or "openai"
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lowercased names
    body: Any = None  # parsed JSON, None if it did not parse
    status: int = 0  # 0 when the connection was dropped instead
    fault: str | None = None
    estimated_tokens: int = 0
    notes: list[str] = field(default_factory=list)  # e.g. "image_on_anthropic_endpoint"
    aborted: bool = False  # a stream write failed: the client closed the connection mid-stream

    def to_dict(self) -> Json:
        """The record as JSON-ready data (for GET /_fake/requests)."""
        return asdict(self)


# ---------------------------------------------------------------------------- request checks


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unit(value: object) -> bool:
    return _is_number(value) and 0 <= value <= 1  # type: ignore[operator]


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _anthropic_tools(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, dict)
        and bool(t.get("name"))
        and isinstance(t.get("name"), str)
        and isinstance(t.get("input_schema"), dict)
        for t in value
    )


def _anthropic_tool_choice(value: object) -> bool:
    if not isinstance(value, dict) or value.get("type") not in ("auto", "any", "tool", "none"):
        return False
    return value["type"] != "tool" or isinstance(value.get("name"), str)


def _anthropic_thinking(value: object) -> bool:
    if value == {"type": "disabled"}:
        return True
    return (
        isinstance(value, dict)
        and set(value) == {"type", "budget_tokens"}
        and value["type"] == "enabled"
        and _is_int(value["budget_tokens"])
        and value["budget_tokens"] >= 1
    )


def _openai_tools(value: object) -> bool:
    def ok(tool: object) -> bool:
        if not isinstance(tool, dict) or tool.get("type") not in OPENAI_TOOL_TYPES:
            return False
        function = tool.get("function")
        named = isinstance(function, dict) and isinstance(function.get("name"), str)
        return tool["type"] != "function" or named

    return isinstance(value, list) and all(ok(t) for t in value)


Check = tuple[Callable[[Any], bool], str]

ANTHROPIC_CHECKS: dict[str, Check] = {
    "model": (lambda v: isinstance(v, str), "must be a string"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    "stream": (lambda v: isinstance(v, bool), "must be a boolean"),
    "temperature": (_unit, "must be a number between 0 and 1"),
    "top_p": (_unit, "must be a number between 0 and 1"),
    "top_k": (lambda v: _is_int(v) and v >= 0, "must be a non-negative integer"),
    "stop_sequences": (_str_list, "must be a list of strings"),
    "tools": (_anthropic_tools, "each tool needs a name and an input_schema object"),
    "tool_choice": (_anthropic_tool_choice, "must be {type: auto|any|tool|none} (tool needs name)"),
    "thinking": (_anthropic_thinking, 'must be {"type":"enabled","budget_tokens":int} or disabled'),
    "metadata": (lambda v: isinstance(v, dict), "must be an object"),
}
OPENAI_CHECKS: dict[str, Check] = {
    "model": (lambda v: isinstance(v, str), "must be a string"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    "temperature": (_unit, "must be a number between 0 and 1"),
    "top_p": (_unit, "must be a number between 0 and 1"),
    "stream": (lambda v: isinstance(v, bool), "must be a boolean"),
    "stream_options": (
        lambda v: isinstance(v, dict) and isinstance(v.get("include_usage", False), bool),
        "must be an object with a boolean include_usage",
    ),
    "stop": (lambda v: isinstance(v, str) or _str_list(v), "must be a string or list of strings"),
    "tools": (_openai_tools, "each tool needs a type and, for functions, function.name"),
    "tool_choice": (
        lambda v: v in ("auto", "none", "required") or isinstance(v, dict),
        "must be auto, none, required or an object",
    ),
    "thinking": (
        lambda v: isinstance(v, dict) and v.get("type") in ("enabled", "disabled"),
        'must be {"type": "enabled"|"disabled"}',
    ),
    "user": (lambda v: isinstance(v, str), "must be a string"),
    "do_sample": (lambda v: isinstance(v, bool), "must be a boolean"),
    "request_id": (lambda v: isinstance(v, str), "must be a string"),
    "response_format": (
        lambda v: isinstance(v, dict) and isinstance(v.get("type"), str),
        "must be an object with a type",
    ),
    "tool_stream": (lambda v: isinstance(v, bool), "must be a boolean"),
}


def _field_problems(body: Json, allowed: frozenset[str], checks: dict[str, Check]) -> list[str]:
    problems = [f"{name}: unknown parameter" for name in body if name not in allowed]
    for name, (ok, message) in checks.items():
        if name in body and not ok(body[name]):
            problems.append(f"{name}: {message}")
    return problems


def anthropic_problems(body: Json) -> list[str]:
    """What z.ai's Anthropic endpoint would reject in this body (model checked elsewhere)."""
    problems = [
        f"{name}: field required" for name in ("messages", "max_tokens") if name not in body
    ]
    problems += _field_problems(body, ANTHROPIC_FIELDS, ANTHROPIC_CHECKS)
    if "messages" in body:
        problems += validate_conversation(body["messages"], body.get("system"))
    return problems


def openai_problems(body: Json) -> list[str]:
    """What z.ai's OpenAI-format endpoint would reject in this body (model checked elsewhere)."""
    problems = [] if "messages" in body else ["messages: field required"]
    if "max_completion_tokens" in body:
        body = {k: v for k, v in body.items() if k != "max_completion_tokens"}
        problems.append("max_completion_tokens: not supported, use max_tokens")
    problems += _field_problems(body, OPENAI_FIELDS, OPENAI_CHECKS)
    if "messages" in body:
        problems += validate_openai_messages(body["messages"])
    return problems


def _blocks(messages: object) -> Iterable[tuple[int, int, Json]]:
    """(message index, block index, block) for every dict block, tool_result contents included."""
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(block, dict):
                continue
            yield i, j, block
            inner = block.get("content")
            for part in inner if isinstance(inner, list) else ():
                if isinstance(part, dict):
                    yield i, j, part


def _media_chars(messages: object) -> tuple[int, int]:
    """(number of images, characters of their inline data) in either format's messages."""
    count = chars = 0
    for _, _, block in _blocks(messages):
        if block.get("type") == "image":
            count += 1
            source = block.get("source")
            chars += len(str(source.get("data", ""))) if isinstance(source, dict) else 0
        elif block.get("type") in ("image_url", "video_url"):
            count += 1
            chars += len(str(block.get(block["type"])))
    return count, chars


def estimate_tokens(raw_length: int, body: Json, chars_per_token: int = CHARS_PER_TOKEN) -> int:
    """Input tokens as the fake counts them: body characters / 3, images at a flat rate."""
    images, image_chars = _media_chars(body.get("messages"))
    return max(0, raw_length - image_chars) // chars_per_token + images * IMAGE_TOKENS


def last_prompt_text(messages: object) -> str:
    """Text of the latest user (or tool) turn in either format: what the echo reply repeats."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return _text_of(message.get("content"))
    return ""


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    texts = (
        [b.get("text") for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    )
    if not any(isinstance(t, str) for t in texts) and isinstance(content, list):
        # a turn of tool results only: echo what the tools returned
        texts = [_text_of(b.get("content")) for b in content if isinstance(b, dict)]
    return "\n".join(t for t in texts if isinstance(t, str) and t)


# ---------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Exchange:
    """A validated request, as far as rendering its reply needs to know."""

    endpoint: str
    model: str
    seq: int
    stream: bool
    include_usage: bool
    input_tokens: int


def _pieces(text: str, size: int) -> list[str]:
    """Split text into deltas of `size` characters, at least two when it has two characters."""
    if len(text) <= size:
        size = max(1, (len(text) + 1) // 2)
    return [text[k : k + size] for k in range(0, len(text), size)]


def _sse(data: Json | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else _to_json(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _filled(template: Json, pieces: list[str], event: str | None = None) -> list[bytes]:
    """One frame per piece, `template`'s PIECE value replaced by it: encodes the dict only once."""
    head, _, tail = _sse(template, event).partition(_to_json(PIECE).encode())
    return [head + _to_json(piece).encode() + tail for piece in pieces]


def _tool_ids(reply: Reply, prefix: str, seq: int) -> list[str]:
    return [call.id or f"{prefix}_{seq:06d}_{i}" for i, call in enumerate(reply.tool_calls)]


def _usage(reply: Reply, exchange: Exchange) -> dict[str, int]:
    chars = len(reply.text or "") + len(reply.thinking or "")
    chars += sum(len(json.dumps(call.input)) for call in reply.tool_calls)
    estimated = {"input_tokens": exchange.input_tokens, "output_tokens": max(1, chars // 4)}
    return {**estimated, **reply.usage}


def render_anthropic_message(reply: Reply, exchange: Exchange) -> Json:
    """The non-stream Anthropic Messages response for `reply`."""
    content: list[Json] = []
    if reply.thinking is not None:
        signature = sign_thinking(reply.thinking)
        content.append({"type": "thinking", "thinking": reply.thinking, "signature": signature})
    if reply.text:
        content.append({"type": "text", "text": reply.text})
    for call, tool_id in zip(
        reply.tool_calls, _tool_ids(reply, "toolu", exchange.seq), strict=True
    ):
        content.append({"type": "tool_use", "id": tool_id, "name": call.name, "input": call.input})
    return {
        "id": f"msg_{exchange.seq:06d}",
        "type": "message",
        "role": "assistant",
        "model": exchange.model,
        "content": content,
        "stop_reason": reply.final_stop_reason,
        "stop_sequence": reply.stop_sequence,
        "usage": _usage(reply, exchange),
    }


def render_anthropic_stream(
    reply: Reply, exchange: Exchange, chunk: int = CHUNK_CHARS
) -> list[bytes]:
    """The SSE frames of the Anthropic stream for `reply`, one bytes object per event."""
    message = render_anthropic_message(reply, exchange)
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    start["usage"] = {**usage, "output_tokens": 1}
    frames = [_sse({"type": "message_start", "message": start}, "message_start")]
    for index, block in enumerate(message["content"]):
        frames += _anthropic_block_frames(index, block, chunk)
    # Like the real API: a ping right after the first content_block_start.
    frames.insert(2 if message["content"] else 1, _sse({"type": "ping"}, "ping"))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    final_usage = {"output_tokens": usage["output_tokens"]}
    frames.append(
        _sse({"type": "message_delta", "delta": delta, "usage": final_usage}, "message_delta")
    )
    frames.append(_sse({"type": "message_stop"}, "message_stop"))
    return frames


def _anthropic_block_frames(index: int, block: Json, chunk: int) -> list[bytes]:
    def deltas(kind: str, key: str, pieces: list[str]) -> list[bytes]:
        template = {
            "type": "content_block_delta",
            "index": index,
            "delta": {"type": kind, key: PIECE},
        }
        return _filled(template, pieces, "content_block_delta")

    if block["type"] == "thinking":
        opening: Json = {"type": "thinking", "thinking": ""}
        frames = deltas("thinking_delta", "thinking", _pieces(block["thinking"], chunk))
        frames += deltas("signature_delta", "signature", [block["signature"]])
    elif block["type"] == "text":
        opening = {"type": "text", "text": ""}
        frames = deltas("text_delta", "text", _pieces(block["text"], chunk))
    else:
        opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        arguments = _pieces(json.dumps(block["input"]), chunk)
        frames = deltas("input_json_delta", "partial_json", ["", *arguments])
    start = {"type": "content_block_start", "index": index, "content_block": opening}
    stop = {"type": "content_block_stop", "index": index}
    return [_sse(start, "content_block_start"), *frames, _sse(stop, "content_block_stop")]


def _openai_usage(reply: Reply, exchange: Exchange) -> dict[str, int]:
    usage = _usage(reply, exchange)
    prompt, completion = usage["input_tokens"], usage["output_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def render_openai_completion(reply: Reply, exchange: Exchange) -> Json:
    """The non-stream chat.completion for `reply`."""
    message: Json = {"role": "assistant", "content": reply.text or None}
    if reply.thinking is not None:
        message["reasoning_content"] = reply.thinking
    ids = _tool_ids(reply, "call", exchange.seq)
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": i,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.input)},
            }
            for c, i in zip(reply.tool_calls, ids, strict=True)
        ]
    return {
        "id": f"chatcmpl-{exchange.seq:06d}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": exchange.model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": FINISH_REASONS[reply.final_stop_reason],
            }
        ],
        "usage": _openai_usage(reply, exchange),
    }


def render_openai_stream(reply: Reply, exchange: Exchange, chunk: int = CHUNK_CHARS) -> list[bytes]:
    """The SSE frames of the chat.completion.chunk stream for `reply`, ending with [DONE]."""
    base = {
        "id": f"chatcmpl-{exchange.seq:06d}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": exchange.model,
    }

    def frame(delta: Json, finish: str | None = None) -> Json:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    frames = [_sse(frame({"role": "assistant", "content": ""}))]
    frames += _filled(frame({"reasoning_content": PIECE}), _pieces(reply.thinking or "", chunk))
    frames += _filled(frame({"content": PIECE}), _pieces(reply.text or "", chunk))
    frames += _tool_call_frames(reply, exchange.seq, chunk, frame)
    frames.append(_sse(frame({}, FINISH_REASONS[reply.final_stop_reason])))
    if exchange.include_usage:
        frames.append(_sse({**base, "choices": [], "usage": _openai_usage(reply, exchange)}))
    frames.append(_sse("[DONE]"))
    return frames


def _tool_call_frames(
    reply: Reply, seq: int, chunk: int, frame: Callable[[Json], Json]
) -> list[bytes]:
    """Per call: a first delta with index, id, type, name and "" arguments, then argument pieces."""
    per_call = []
    for index, (call, tool_id) in enumerate(
        zip(reply.tool_calls, _tool_ids(reply, "call", seq), strict=True)
    ):
        function = {"name": call.name, "arguments": ""}
        first = {"index": index, "id": tool_id, "type": "function", "function": function}
        piece = {"index": index, "function": {"arguments": PIECE}}
        arguments = _pieces(json.dumps(call.input), chunk)
        per_call.append(
            [
                _sse(frame({"tool_calls": [first]})),
                *_filled(frame({"tool_calls": [piece]}), arguments),
            ]
        )
    if not reply.interleave:
        return [f for frames in per_call for f in frames]
    longest = max((len(frames) for frames in per_call), default=0)
    return [frames[k] for k in range(longest) for frames in per_call if k < len(frames)]


# ---------------------------------------------------------------------------- error bodies

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
OVERFLOW_BODY = {"error": {"code": "1261", "message": "Prompt exceeds max length"}}


def error_body(endpoint: str, status: int, message: str, code: str | None = None) -> Json:
    """An error in the endpoint's format: Anthropic's typed error or z.ai's coded one."""
    if endpoint == "anthropic":
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"code": code or str(status), "message": message}}


# ---------------------------------------------------------------------------- plans


@dataclass
class Plan:
    """What to send back: a JSON/plain body or a list of SSE frames, plus a transport fault."""

    status: int
    body: bytes = b""
    frames: list[bytes] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    fault: Fault | None = None
    record: RecordedRequest | None = None


def json_plan(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Plan:
    """A plan answering `payload` as JSON."""
    body = _to_json(payload).encode()
    return Plan(status, body, headers=(("Content-Type", "application/json"), *headers))


def _fault_plan(endpoint: str, fault: Fault) -> Plan:
    """The answer of a fault that replaces the reply."""
    if fault.kind == "http_error":
        message = fault.message or HTTPStatus(fault.status).phrase
        return json_plan(fault.status, error_body(endpoint, fault.status, message))
    if fault.kind == "rate_limit":
        body = error_body(endpoint, 429, fault.message or "Rate limit reached for requests", "1302")
        return json_plan(429, body, (("Retry-After", str(fault.retry_after)),))
    if fault.kind == "overflow":
        return json_plan(400, OVERFLOW_BODY)
    return Plan(0, fault=fault)  # disconnect: nothing is sent


# ---------------------------------------------------------------------------- the fake


class FakeUpstream:
    """A threaded local HTTP server speaking both of z.ai's formats; a context manager.

    Settable attributes: models, vision_models, windows (tokens per model), chars_per_token,
    api_keys (None: any non-empty key), chunk_chars, event_delay (seconds between stream
    events), check_signatures (reject thinking blocks whose signature this fake did not give).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: Iterable[str] = DEFAULT_MODELS,
        vision_models: Iterable[str] = VISION_MODELS,
        windows: dict[str, int] | None = None,
        api_keys: Iterable[str] | None = None,
        chunk_chars: int = CHUNK_CHARS,
        event_delay: float = 0.0,
        check_signatures: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.models = set(models)
        self.vision_models = set(vision_models)
        self.windows = {**DEFAULT_WINDOWS, **(windows or {})}
        self.chars_per_token = CHARS_PER_TOKEN
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.chunk_chars = chunk_chars
        self.event_delay = event_delay
        self.check_signatures = check_signatures
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a stream is aborted
        self._records: list[RecordedRequest] = []
        self._script: list[Reply] = []
        self._faults: list[Fault] = []
        self._gates: list[threading.Event] = []  # of hold faults not yet released
        self._held = 0
        self._seq = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """http://host:port of the running server."""
        return f"http://{self.host}:{self.port}"

    @property
    def anthropic_base(self) -> str:
        """Base URL of the Anthropic-format endpoint (requests go to <this>/v1/messages)."""
        return self.base_url + ANTHROPIC_PREFIX

    @property
    def openai_base(self) -> str:
        """Base URL of the OpenAI-format endpoint (requests go to <this>/chat/completions)."""
        return self.base_url + OPENAI_PREFIX

    def start(self) -> Self:
        """Bind and serve in a background thread."""
        self._bind()
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Bind and serve in this thread until interrupted."""
        self._bind()
        assert self._server is not None
        self._server.serve_forever(poll_interval=POLL_SECONDS)

    def stop(self) -> None:
        """Stop serving, wake sleeping faults and close open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        self.release()  # wake held streams; they see `stopping` and drop their connection
        if self._thread is not None:  # shutdown() would wait forever for a loop never started
            server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        server.close_connections()
        server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _bind(self) -> None:
        if self._server is None:
            self._server = _Server((self.host, self.port), self)
        self.port = self._server.server_address[1]

    # ------------------------------------------------------------------------ test API

    def script(self, *specs: str | Json | Reply) -> None:
        """Queue replies for the next valid requests, in order (see `Reply` for spec keys)."""
        replies = [Reply.from_spec(spec) for spec in specs]
        with self._lock:
            self._script += replies

    def fail_next(self, kind: str, count: int = 1, **options: Any) -> None:
        """Inject a fault into the next `count` valid requests (see `Fault` for kinds/options)."""
        fault = Fault(kind, count, **options)
        with self._lock:
            self._faults.append(fault)
            if fault.kind == "hold":
                self._gates.append(fault.gate)

    def release(self) -> int:
        """Let every stream held by a `hold` fault injected so far go on; the number of gates."""
        with self._lock:
            gates, self._gates = self._gates, []
        for gate in gates:
            gate.set()
        return len(gates)

    @property
    def held(self) -> int:
        """How many streams are held: started under a `hold` fault and not yet past its gate."""
        with self._lock:
            return self._held

    @property
    def aborted(self) -> list[RecordedRequest]:
        """The recorded requests whose stream broke off because the client went away."""
        with self._lock:
            return [r for r in self._records if r.aborted]

    def wait_aborted(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until `count` streams have been aborted by their client; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: sum(r.aborted for r in self._records) >= count, timeout
            )

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received on the two endpoints, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def last(self) -> RecordedRequest:
        """The latest request received (IndexError if none)."""
        with self._lock:
            return self._records[-1]

    def reset(self) -> None:
        """Forget recorded requests, pending scripted replies and pending faults; release holds."""
        with self._lock:
            self._records.clear()
            self._script.clear()
            self._faults.clear()
        self.release()

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """Count a stream as held for the duration of the block."""
        with self._lock:
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1

    def _note_aborted(self, record: RecordedRequest | None) -> None:
        with self._changed:
            if record is not None:
                record.aborted = True
            self._changed.notify_all()

    # ------------------------------------------------------------------------ serving

    def plan(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Plan:
        """Decide the answer to one HTTP request (no I/O; the handler sends the plan)."""
        route = path.partition("?")[0]
        if route.startswith("/_fake/"):
            return self._control(method, route, raw)
        endpoint = ROUTES.get(route)
        if endpoint is None:
            return json_plan(404, {"error": {"code": "404", "message": f"no route {route}"}})
        if method != "POST":
            return json_plan(405, error_body(endpoint, 405, f"{method} is not allowed"))
        record = RecordedRequest(endpoint, method, path, headers)
        plan = self._answer(record, raw)
        record.status = plan.status
        plan.record = record
        with self._lock:
            self._records.append(record)
        return plan

    def _answer(self, record: RecordedRequest, raw: bytes) -> Plan:
        endpoint = record.endpoint
        if not self._authorized(endpoint, record.headers):
            return self._auth_failure(endpoint, record.headers)
        try:
            record.body = json.loads(raw)
        except ValueError:
            return json_plan(
                400, error_body(endpoint, 400, "request body is not valid JSON", "1214")
            )
        if not isinstance(record.body, dict):
            return json_plan(
                400, error_body(endpoint, 400, "request body must be a JSON object", "1214")
            )
        rejection = self._rejection(record)
        if rejection is not None:
            return rejection
        record.estimated_tokens = estimate_tokens(len(raw), record.body, self.chars_per_token)
        if record.estimated_tokens > self.windows.get(record.body["model"], DEFAULT_WINDOW):
            return json_plan(400, OVERFLOW_BODY)
        return self._reply(record)

    def _authorized(self, endpoint: str, headers: dict[str, str]) -> bool:
        key = _bearer(headers.get("authorization", ""))
        if endpoint == "anthropic":
            key = key or headers.get("x-api-key", "").strip()
        return bool(key) and (self.api_keys is None or key in self.api_keys)

    def _auth_failure(self, endpoint: str, headers: dict[str, str]) -> Plan:
        presented = "authorization" in headers or "x-api-key" in headers
        code, message = (
            ("1002", "Invalid API key") if presented else ("1001", "Authentication header missing")
        )
        return json_plan(401, error_body(endpoint, 401, message, code))

    def _rejection(self, record: RecordedRequest) -> Plan | None:
        """A 400 plan when the body breaks the endpoint's rules, else None (notes recorded)."""
        body, endpoint = record.body, record.endpoint
        model = body.get("model")
        if "model" not in body:
            return json_plan(400, error_body(endpoint, 400, "model: field required", "1214"))
        if model not in self.models:
            message = f"model: unknown model {model!r}"
            return json_plan(400, error_body(endpoint, 400, message, "1211"))
        if endpoint == "anthropic":
            problems = anthropic_problems(body) + self._signature_problems(record)
            if _media_chars(body.get("messages"))[0]:
                record.notes.append("image_on_anthropic_endpoint")
        else:
            problems = openai_problems(body)
            if model not in self.vision_models and _media_chars(body.get("messages"))[0]:
                problems.append(f"model: {model!r} does not accept images; use a vision model")
        if not problems:
            return None
        return json_plan(400, error_body(endpoint, 400, "; ".join(problems), "1214"))

    def _signature_problems(self, record: RecordedRequest) -> list[str]:
        problems = []
        for i, j, block in _blocks(record.body.get("messages")):
            if block.get("type") == "thinking" and isinstance(block.get("thinking"), str):
                if block.get("signature") != sign_thinking(block["thinking"]):
                    problems.append(
                        f"messages[{i}].content[{j}]: invalid signature in thinking block"
                    )
        if problems:
            record.notes.append("thinking_signature_mismatch")
        return problems if self.check_signatures else []

    def _reply(self, record: RecordedRequest) -> Plan:
        fault, reply, seq = self._take(record.endpoint)
        record.fault = fault.kind if fault is not None else None
        if fault is not None and fault.kind in REPLACING_FAULTS:
            return _fault_plan(record.endpoint, fault)
        body = record.body
        stream_options = body.get("stream_options") or {}
        exchange = Exchange(
            record.endpoint,
            body["model"],
            seq,
            stream=body.get("stream") is True,
            include_usage=stream_options.get("include_usage") is True,
            input_tokens=record.estimated_tokens,
        )
        if reply is None:
            thinking = (body.get("thinking") or {}).get("type") == "enabled"
            reply = default_reply(last_prompt_text(body["messages"]), thinking)
        plan = self._render(reply, exchange)
        plan.fault = fault
        return plan

    def _take(self, endpoint: str) -> tuple[Fault | None, Reply | None, int]:
        """Consume the next matching fault, the next scripted reply (unless the fault replaces
        the reply) and a sequence number, atomically."""
        with self._lock:
            self._seq += 1
            fault = next((f for f in self._faults if f.endpoint in (None, endpoint)), None)
            if fault is not None:
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
            replaced = fault is not None and fault.kind in REPLACING_FAULTS
            reply = self._script.pop(0) if self._script and not replaced else None
            return fault, reply, self._seq

    def _render(self, reply: Reply, exchange: Exchange) -> Plan:
        anthropic = exchange.endpoint == "anthropic"
        if not exchange.stream:
            render = render_anthropic_message if anthropic else render_openai_completion
            return json_plan(200, render(reply, exchange))
        stream = render_anthropic_stream if anthropic else render_openai_stream
        headers = (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"))
        return Plan(200, frames=stream(reply, exchange, self.chunk_chars), headers=headers)

    # ------------------------------------------------------------------------ control over HTTP

    def _control(self, method: str, route: str, raw: bytes) -> Plan:
        action = route.removeprefix("/_fake/")
        if method == "GET" and action == "requests":
            return json_plan(200, {"requests": [r.to_dict() for r in self.requests]})
        if method != "POST" or action not in ("script", "fault", "config", "reset", "release"):
            return json_plan(404, {"error": f"no control endpoint {method} {route}"})
        try:
            payload = json.loads(raw) if raw.strip() else {}
            return json_plan(200, self._apply_control(action, payload))
        except (ValueError, TypeError) as exc:
            return json_plan(400, {"error": str(exc)})

    def _apply_control(self, action: str, payload: Any) -> Json:
        if action == "script":
            specs = payload if isinstance(payload, list) else [payload]
            self.script(*specs)
            return {"queued": len(self._script)}
        if action == "fault":
            if not isinstance(payload, dict):
                raise ValueError("a fault is an object with a kind")
            self.fail_next(**payload)
            return {"faults": len(self._faults)}
        if action == "config":
            return self._configure(payload)
        if action == "release":
            return {"released": self.release()}
        self.reset()
        return {"reset": True}

    def _configure(self, payload: Json) -> Json:
        if not isinstance(payload, dict):
            raise ValueError("config is an object")
        unknown = set(payload) - {"windows", "event_delay", "chunk_chars", "check_signatures"}
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        self.windows.update(payload.get("windows", {}))
        self.event_delay = float(payload.get("event_delay", self.event_delay))
        self.chunk_chars = int(payload.get("chunk_chars", self.chunk_chars))
        self.check_signatures = bool(payload.get("check_signatures", self.check_signatures))
        return {
            "windows": self.windows,
            "event_delay": self.event_delay,
            "chunk_chars": self.chunk_chars,
        }


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


# ---------------------------------------------------------------------------- HTTP transport


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stop() can close them."""

    daemon_threads = True
    # socketserver's default backlog of 5 drops SYNs under concurrency (1 s retransmit stalls).
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], fake: FakeUpstream) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), a reverse DNS lookup that can stall for seconds.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already gone

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.exception("fake upstream failed on a request from %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, asks the fake for a plan, and sends it (faults included)."""

    protocol_version = "HTTP/1.1"  # keep-alive, and chunked streams
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Each SSE event is its own small write; Nagle would hold them back.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def _serve(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(json_plan(400, {"error": "unreadable request body"}))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        self._send(self.server.fake.plan(self.command, self.path, headers, raw))

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    # ------------------------------------------------------------------------ sending

    def _send(self, plan: Plan) -> None:
        fault = plan.fault
        if (
            fault is not None
            and fault.kind == "timeout"
            and self.server.stopping.wait(fault.seconds)
        ):
            fault = Fault("disconnect")  # the server is stopping: don't answer
        if fault is not None and fault.kind == "disconnect":
            self.close_connection = True
            return
        if plan.frames is None:
            self._send_body(plan, fault)
        else:
            self._send_frames(plan, fault)

    def _head(self, plan: Plan, framing: tuple[str, str]) -> bytes:
        lines = [f"HTTP/1.1 {plan.status} {HTTPStatus(plan.status).phrase}", "Server: fake-zai"]
        lines += [f"{name}: {value}" for name, value in (*plan.headers, framing)]
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _send_body(self, plan: Plan, fault: Fault | None) -> None:
        head = self._head(plan, ("Content-Length", str(len(plan.body))))
        if fault is not None and fault.kind == "slow_stream":
            self._pause(fault.delay)
        if fault is not None and fault.kind == "hold":
            with self.server.fake._holding():
                self._wait_for_release(fault)
        if fault is not None and fault.kind == "stream_drop":
            self.wfile.write(head + plan.body[: len(plan.body) // 2])
            self.close_connection = True
            return
        self.wfile.write(head + plan.body)

    def _send_frames(self, plan: Plan, fault: Fault | None) -> None:
        try:
            self._write_stream(plan, fault)
        except (BrokenPipeError, ConnectionResetError):
            # The client closed its end mid-stream (not us stopping: that is ConnectionAborted).
            self.server.fake._note_aborted(plan.record)
            self.close_connection = True

    def _write_stream(self, plan: Plan, fault: Fault | None) -> None:
        frames = plan.frames or []
        kind = fault.kind if fault is not None else None
        delay = fault.delay if fault is not None and kind == "slow_stream" else None
        delay = self.server.fake.event_delay if delay is None else delay
        # A drop always leaves out the final events (message_stop / finish chunk and [DONE]).
        end = min(fault.after, len(frames) - 2) if fault and kind == "stream_drop" else len(frames)
        self.wfile.write(self._head(plan, ("Transfer-Encoding", "chunked")))
        start = 0
        if fault is not None and kind == "hold":
            # Held before the final event at the latest, so a held stream is visibly unfinished.
            start = max(0, min(fault.after, len(frames) - 1))
            with self.server.fake._holding():
                self._write_frames(frames[:start], 0, delay)
                self._wait_for_release(fault)
        self._write_frames(frames[start:end], start, delay)
        if end < len(frames):
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")

    def _write_frames(self, frames: list[bytes], first: int, delay: float) -> None:
        """Write frames as chunks, `delay` apart (none before the stream's very first frame)."""
        for index, frame in enumerate(frames, start=first):
            if delay and index:
                self._pause(delay)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))

    def _wait_for_release(self, fault: Fault) -> None:
        fault.gate.wait(fault.seconds)
        if self.server.stopping.is_set():
            raise ConnectionAbortedError("fake upstream is stopping")

    def _pause(self, seconds: float) -> None:
        if self.server.stopping.wait(seconds):
            raise ConnectionAbortedError("fake upstream is stopping")


# ---------------------------------------------------------------------------- script entry


def _window(text: str) -> tuple[str, int]:
    model, _, tokens = text.partition("=")
    if not model or not tokens.isdigit():
        raise argparse.ArgumentTypeError(f"expected MODEL=TOKENS, got {text!r}")
    return model, int(tokens)


def main(argv: list[str] | None = None) -> None:
    """Serve the fake until interrupted; print its base URL first so a parent can read it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--window", type=_window, action="append", default=[], metavar="MODEL=TOKENS"
    )
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="accept only these keys"
    )
    parser.add_argument("--chunk-chars", type=int, default=CHUNK_CHARS)
    parser.add_argument("--event-delay", type=float, default=0.0, help="seconds between SSE events")
    parser.add_argument("--check-signatures", action="store_true")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s"
    )
    fake = FakeUpstream(
        args.host,
        args.port,
        windows=dict(args.window),
        api_keys=args.api_keys,
        chunk_chars=args.chunk_chars,
        event_delay=args.event_delay,
        check_signatures=args.check_signatures,
    )
    fake._bind()
    print(fake.base_url, flush=True)  # noqa: T201 - the parent process reads this line
    try:
        fake.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
