"""The Anthropic Messages wire format ⇄ the canonical format.

The canonical format is this format with content always as block lists, so the conversions are
mostly shape checks; the interesting part is what z.ai does not accept and what a client must see.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from upstream import canonical as c
from upstream.blocks import merge_roles, sampling_for_zai
from upstream.sse import SSEEvent, encode_sse

logger = logging.getLogger(__name__)

# Request fields z.ai's Anthropic endpoint takes; anything else is left out of the upstream body.
UPSTREAM_FIELDS = (
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
)
STREAM_EVENT_TYPES = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
)


# ============================================================================ canonical → upstream


def render_request(request: c.Request, model: str) -> dict[str, Any]:
    """Write a canonical request as a z.ai Anthropic-format body for `model`."""
    messages = merge_roles([_without_unsigned_thinking(m) for m in request["messages"]])
    body: dict[str, Any] = {"model": model, "messages": messages}
    for key in UPSTREAM_FIELDS:
        if key in request:
            body[key] = request[key]  # type: ignore[literal-required]
    body.update(sampling_for_zai(request))
    if request.get("stream"):
        body["stream"] = True
    return body


def _without_unsigned_thinking(message: c.Message) -> c.Message:
    # Thinking without a signature came from a model that does not sign; z.ai would reject it as a
    # forged block, so it is left out rather than re-signed.
    if message["role"] != "assistant":
        return message
    content = [b for b in message["content"] if b["type"] != "thinking" or b.get("signature")]
    return {"role": "assistant", "content": content}


# ============================================================================ upstream → canonical


def parse_response(body: dict[str, Any]) -> c.Response:
    """Read a Messages response from the upstream into a canonical response."""
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return {
        "id": str(body.get("id") or f"msg_{uuid.uuid4().hex}"),
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model", "")),
        "content": [b for b in body.get("content") or [] if isinstance(b, dict)],
        "stop_reason": body.get("stop_reason") or "end_turn",
        "stop_sequence": body.get("stop_sequence"),
        "usage": _usage(usage),
    }


def _usage(raw: dict[str, Any]) -> c.Usage:
    usage: c.Usage = {"input_tokens": 0, "output_tokens": 0}
    for key in (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            usage[key] = value  # type: ignore[literal-required]
    return usage


def parse_stream(events: Iterable[SSEEvent], input_estimate: int) -> Iterator[c.StreamEvent]:
    """Pass Messages stream events through as canonical events; a cut stream ends in an error."""
    finished = False
    for sse in events:
        payload = json.loads(sse.data)
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "error":
            yield {"type": "error", "error": _error_body(payload.get("error"))}
            return
        if kind not in STREAM_EVENT_TYPES:
            logger.debug("skipping unknown upstream stream event %r", kind)
            continue
        if kind == "message_start":
            _fill_start_usage(payload, input_estimate)
        finished = kind == "message_stop"
        yield payload
    if not finished:
        yield {
            "type": "error",
            "error": {"type": "api_error", "message": "upstream stream ended early"},
        }


def _fill_start_usage(payload: dict[str, Any], input_estimate: int) -> None:
    # Clients show message_start's input_tokens as the context size; z.ai sometimes sends 0.
    usage = payload.setdefault("message", {}).setdefault("usage", {})
    if not usage.get("input_tokens"):
        usage["input_tokens"] = input_estimate
    usage.setdefault("output_tokens", 0)


def _error_body(error: Any) -> dict[str, str]:
    if isinstance(error, dict):
        return {
            "type": str(error.get("type") or "api_error"),
            "message": str(error.get("message") or error),
        }
    return {"type": "api_error", "message": str(error)}


# ============================================================================ canonical → client


def render_response(
    response: c.Response, model: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write a canonical response as a Messages body, under the model name the client asked for."""
    body = dict(response) | {"model": model, "id": _message_id(response["id"])}
    return body | (extra or {})


def _message_id(raw: str) -> str:
    return raw if raw.startswith("msg_") else f"msg_{raw}"


def render_stream(events: Iterable[c.StreamEvent], model: str) -> Iterator[bytes]:
    """Write canonical stream events as Messages SSE frames."""
    for event in events:
        if event["type"] == "message_start":
            message = dict(event["message"]) | {
                "model": model,
                "id": _message_id(event["message"]["id"]),
            }
            event = {"type": "message_start", "message": message}  # type: ignore[typeddict-item]
        yield encode_sse(event, event=event["type"])
        if event["type"] in ("message_stop", "error"):
            return
