"""Reply specs (what the model says) and their rendering as Anthropic/OpenAI JSON and SSE."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.fake.constants import (
    CHUNK_CHARS,
    ECHO_LIMIT,
    FINISH_REASONS,
    SIGNING_KEY,
    Json,
    to_json,
)

PIECE = "\x00piece\x00"  # placeholder for a delta's text in a frame template
TRIGGER = re.compile(r"\[\[(tool:[\w.-]+|think|max_tokens)\]\]")


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
    payload = data if isinstance(data, str) else to_json(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _filled(template: Json, pieces: list[str], event: str | None = None) -> list[bytes]:
    """One frame per piece, `template`'s PIECE value replaced by it: encodes the dict only once."""
    head, _, tail = _sse(template, event).partition(to_json(PIECE).encode())
    return [head + to_json(piece).encode() + tail for piece in pieces]


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
