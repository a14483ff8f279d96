"""Is an answer what a client of its API can read? Checks written from the public formats.

`answer_problems(path, status, content_type, data)` lists what is wrong with one answer, empty
when it is a well-formed 2xx or 4xx of the client's own format: an OpenAI chat.completion (or
chunk stream ending in [DONE]) and `{"error": {...}}` for /v1/chat/completions; an Anthropic
message (or Messages event stream) and `{"type": "error", "error": {...}}` for /v1/messages;
`{"input_tokens": N}` for count_tokens. The SSE reading here is our own, not the proxy's, so a
framing bug in the proxy cannot pass its own parser.
"""

from __future__ import annotations

import json
from typing import Any

FINISH_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}
RESPONSE_BLOCKS = {"text", "thinking", "redacted_thinking", "tool_use"}


def answer_problems(path: str, status: int, content_type: str, data: bytes) -> list[str]:
    """What makes this answer unreadable for a client of `path` (empty when none)."""
    if not (200 <= status < 300 or 400 <= status < 500):
        return [f"status {status} is neither 2xx nor 4xx"]
    anthropic = path.startswith("/v1/messages")
    if status >= 400:
        return _error_problems(anthropic, content_type, data)
    if content_type.startswith("text/event-stream"):
        if path != "/v1/messages" and anthropic:
            return ["count_tokens answered with a stream"]
        return _anthropic_stream_problems(data) if anthropic else _openai_stream_problems(data)
    body, problems = _json_of(content_type, data)
    if problems:
        return problems
    if path.endswith("/count_tokens"):
        return _count_problems(body)
    return _message_problems(body) if anthropic else _completion_problems(body)


def _json_of(content_type: str, data: bytes) -> tuple[Any, list[str]]:
    if not content_type.startswith("application/json"):
        return None, [f"content type {content_type!r} is not application/json"]
    try:
        return json.loads(data), []
    except ValueError as exc:
        return None, [f"body is not JSON ({exc}): {data[:200]!r}"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


# ============================================================================ errors


def _error_problems(anthropic: bool, content_type: str, data: bytes) -> list[str]:
    body, problems = _json_of(content_type, data)
    if problems:
        return problems
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not _text(error.get("message")):
        return [f"error body without error.message: {body!r:.300}"]
    if not _text(error.get("type")):
        return [f"error without a type: {body!r:.300}"]
    if anthropic and (body.get("type") != "error" or set(body) != {"type", "error"}):
        return [f"not an Anthropic error body: {body!r:.300}"]
    if not anthropic and set(body) != {"error"}:
        return [f"not an OpenAI error body: {body!r:.300}"]
    return []


# ============================================================================ JSON answers


def _count_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or not _is_int(body.get("input_tokens")):
        return [f"count_tokens answer without input_tokens: {body!r:.300}"]
    return []


def _completion_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or body.get("object") != "chat.completion":
        return [f"not a chat.completion: {body!r:.300}"]
    choices = body.get("choices")
    if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0], dict):
        return [f"chat.completion without one choice: {body!r:.300}"]
    choice = choices[0]
    message = choice.get("message")
    problems = []
    if not isinstance(message, dict) or message.get("role") != "assistant":
        problems.append(f"choice without an assistant message: {choice!r:.300}")
    elif not isinstance(message.get("content"), str | None):
        problems.append(f"message content is not a string: {message!r:.300}")
    else:
        problems += [p for call in message.get("tool_calls") or [] for p in _call_problems(call)]
    if choice.get("finish_reason") not in FINISH_REASONS:
        problems.append(f"finish_reason {choice.get('finish_reason')!r}")
    return problems + _usage_problems(body.get("usage"), "prompt_tokens", "completion_tokens")


def _call_problems(call: Any) -> list[str]:
    function = call.get("function") if isinstance(call, dict) else None
    if (
        not isinstance(function, dict)
        or not _text(call.get("id"))
        or not _text(function.get("name"))
    ):
        return [f"malformed tool call: {call!r:.300}"]
    try:
        json.loads(function.get("arguments"))
    except (TypeError, ValueError):
        return [f"tool call arguments are not JSON: {call!r:.300}"]
    return []


def _usage_problems(usage: Any, *keys: str) -> list[str]:
    if not isinstance(usage, dict) or not all(_is_int(usage.get(k)) for k in keys):
        return [f"usage without {', '.join(keys)}: {usage!r:.300}"]
    return []


def _message_problems(body: Any) -> list[str]:
    if not isinstance(body, dict) or body.get("type") != "message":
        return [f"not a message: {body!r:.300}"]
    problems = []
    if body.get("role") != "assistant" or not str(body.get("id", "")).startswith("msg_"):
        problems.append(f"message without role assistant and a msg_ id: {body!r:.300}")
    content = body.get("content")
    if not isinstance(content, list):
        return [*problems, f"message content is not a list: {body!r:.300}"]
    problems += [p for block in content for p in _block_problems(block)]
    if body.get("stop_reason") not in STOP_REASONS:
        problems.append(f"stop_reason {body.get('stop_reason')!r}")
    return problems + _usage_problems(body.get("usage"), "input_tokens", "output_tokens")


def _block_problems(block: Any) -> list[str]:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind not in RESPONSE_BLOCKS:
        return [f"unknown response block: {block!r:.300}"]
    if kind == "tool_use" and not (
        _text(block.get("id")) and _text(block.get("name")) and isinstance(block.get("input"), dict)
    ):
        return [f"malformed tool_use block: {block!r:.300}"]
    if kind == "text" and not isinstance(block.get("text"), str):
        return [f"text block without text: {block!r:.300}"]
    return []


# ============================================================================ streams


def sse_events(data: bytes) -> list[tuple[str | None, str]]:
    """(event name, data) of every event in an SSE body; comment-only frames are skipped."""
    events = []
    for frame in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, lines = None, []
        for line in frame.decode("utf-8").split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                lines.append(line[5:].removeprefix(" "))
        if lines:
            events.append((name, "\n".join(lines)))
    return events


def _stream_events(data: bytes) -> tuple[list[tuple[str | None, Any]], list[str]]:
    try:
        raw = sse_events(data)
    except UnicodeDecodeError:
        return [], ["stream is not UTF-8"]
    events = []
    for name, payload in raw:
        try:
            events.append((name, payload if payload == "[DONE]" else json.loads(payload)))
        except ValueError:
            return [], [f"stream event data is not JSON: {payload[:200]!r}"]
    return events, []


def _openai_stream_problems(data: bytes) -> list[str]:
    events, problems = _stream_events(data)
    if problems:
        return problems
    payloads = [payload for _, payload in events]
    if not payloads or payloads[-1] != "[DONE]" or "[DONE]" in payloads[:-1]:
        return [f"stream does not end with one [DONE]: {data[-300:]!r}"]
    for chunk in payloads[:-1]:
        if not isinstance(chunk, dict) or chunk.get("object") != "chat.completion.chunk":
            return [f"not a chat.completion.chunk: {chunk!r:.300}"]
        if not isinstance(chunk.get("choices"), list):
            return [f"chunk without choices: {chunk!r:.300}"]
    finishes = [c["finish_reason"] for p in payloads[:-1] for c in p["choices"]]
    if not any(f in FINISH_REASONS for f in finishes):
        return ["stream has no finish_reason"]
    return []


def _anthropic_stream_problems(data: bytes) -> list[str]:
    events, problems = _stream_events(data)
    if problems:
        return problems
    for name, payload in events:
        if not isinstance(payload, dict) or payload.get("type") != name:
            return [f"event {name!r} carries {payload!r:.300}"]
    kinds = [name for name, _ in events]
    if not kinds or kinds[0] != "message_start" or kinds[-1] != "message_stop":
        return [f"stream is not message_start … message_stop: {kinds}"]
    return _block_order_problems([payload for _, payload in events])


def _block_order_problems(events: list[dict[str, Any]]) -> list[str]:
    """Each content block is started, given deltas and stopped, in index order."""
    open_index, next_index = None, 0
    for event in events:
        kind, index = event["type"], event.get("index")
        if kind == "content_block_start":
            if open_index is not None or index != next_index:
                return [f"block {index} started out of order"]
            open_index, next_index = index, next_index + 1
        elif kind in ("content_block_delta", "content_block_stop") and index != open_index:
            return [f"{kind} for block {index}, but the open block is {open_index}"]
        if kind == "content_block_stop":
            open_index = None
    return [] if open_index is None else [f"block {open_index} never stopped"]
