"""OpenAI chat.completion responses: parse the upstream's, render the client's, usage both ways."""

from __future__ import annotations

import time
import uuid
from typing import Any

from errors import UpstreamUnavailable
from upstream import canonical as c
from upstream.blocks import parse_tool_arguments
from upstream.openai_format.terms import (
    FINISH_TO_STOP,
    NETWORK_ERROR,
    STOP_TO_FINISH,
    completion_id,
    int_or_zero,
    new_tool_id,
    render_tool_call,
)

# ============================================================================ upstream → canonical


def parse_response(body: dict[str, Any]) -> c.Response:
    """Read a chat.completion body from the upstream into a canonical response.

    Raises ValueError for a body without a usable choice, UpstreamUnavailable when z.ai reports
    that its side of the generation failed.
    """
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("chat.completion without a choice")
    choice = choices[0]
    if choice.get("finish_reason") == NETWORK_ERROR:
        raise UpstreamUnavailable("upstream reported a network error mid-generation")
    message = choice.get("message") or {}
    content: list[c.ContentBlock] = []
    if reasoning := _text_content(message.get("reasoning_content")):
        content.append({"type": "thinking", "thinking": reasoning})
    if text := _text_content(message.get("content")):
        content.append({"type": "text", "text": text})
    content.extend(_parse_upstream_call(call) for call in message.get("tool_calls") or [])
    return {
        "id": str(body.get("id") or uuid.uuid4().hex),
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model", "")),
        "content": content,
        "stop_reason": FINISH_TO_STOP.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": parse_usage(body.get("usage")),
    }


def _text_content(value: Any) -> str:
    """Message text that may arrive as a string or as a list of text parts."""
    if isinstance(value, list):
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return value if isinstance(value, str) else ""


def _parse_upstream_call(call: dict[str, Any]) -> c.ToolUseBlock:
    function = call.get("function") or {}
    arguments = function.get("arguments") or ""
    return {
        "type": "tool_use",
        "id": call.get("id") or new_tool_id(),
        "name": str(function.get("name") or ""),
        "input": arguments if isinstance(arguments, dict) else parse_tool_arguments(str(arguments)),
    }


def parse_usage(usage: Any) -> c.Usage:
    """OpenAI usage as canonical usage (missing figures are 0).

    OpenAI's prompt_tokens include cached tokens; Anthropic's input_tokens do not.
    """
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = int_or_zero(details.get("cached_tokens")) if isinstance(details, dict) else 0
    parsed: c.Usage = {
        "input_tokens": max(0, int_or_zero(usage.get("prompt_tokens")) - cached),
        "output_tokens": int_or_zero(usage.get("completion_tokens")),
    }
    if cached:
        parsed["cache_read_input_tokens"] = cached
    return parsed


# ============================================================================ canonical → client


def render_response(
    response: c.Response, model: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write a canonical response as a chat.completion body for the client."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    text = c.text_of(response["content"])
    reasoning = "".join(b["thinking"] for b in response["content"] if b["type"] == "thinking")
    calls = [render_tool_call(b) for b in response["content"] if b["type"] == "tool_use"]
    message["content"] = text if text or not calls else None
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    body = {
        "id": completion_id(response["id"]),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": STOP_TO_FINISH.get(response["stop_reason"] or "end_turn", "stop"),
                "logprobs": None,
            }
        ],
        "usage": render_usage(response["usage"]),
    }
    return body | (extra or {})


def render_usage(usage: c.Usage | dict[str, int]) -> dict[str, Any]:
    """Canonical usage as OpenAI usage, whose prompt_tokens include cached tokens."""
    cached = usage.get("cache_read_input_tokens", 0)
    prompt = usage.get("input_tokens", 0) + cached + usage.get("cache_creation_input_tokens", 0)
    completion = usage.get("output_tokens", 0)
    rendered: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached:
        rendered["prompt_tokens_details"] = {"cached_tokens": cached}
    return rendered
