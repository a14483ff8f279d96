"""Small pure helpers over canonical content blocks, shared by both wire formats."""

from __future__ import annotations

import json
import logging
from typing import Any

from errors import BadRequest
from upstream import canonical as c
from upstream.fields import get_int, get_str, require_object

logger = logging.getLogger(__name__)


def merge_roles(messages: list[c.Message]) -> list[c.Message]:
    """Drop empty text and empty turns; merge consecutive turns of one role (results first)."""
    merged: list[c.Message] = []
    for message in messages:
        message = {"role": message["role"], "content": _without_empty_text(message["content"])}
        if not message["content"]:
            continue
        if merged and merged[-1]["role"] == message["role"]:
            combined = merged[-1]["content"] + message["content"]
            merged[-1] = {"role": message["role"], "content": _results_first(combined)}
        else:
            merged.append({"role": message["role"], "content": list(message["content"])})
    return merged


def _without_empty_text(blocks: list[c.ContentBlock]) -> list[c.ContentBlock]:
    # z.ai, like Anthropic, rejects empty or whitespace-only text blocks anywhere.
    kept: list[c.ContentBlock] = []
    for block in blocks:
        if block["type"] == "text" and not block["text"].strip():
            continue
        content = block.get("content") if block["type"] == "tool_result" else None
        if isinstance(content, list):
            parts = [p for p in content if p["type"] != "text" or p["text"].strip()]
            block = block | {"content": parts}  # type: ignore[assignment]
        kept.append(block)
    return kept


def fold_system_message(text: str, system: list[c.TextBlock], messages: list[c.Message]) -> None:
    """Place a system message z.ai would refuse inside the conversation.

    Before any turn it extends the system prompt; later it keeps its place (and so its meaning
    in the order of events) as a marked user note.
    """
    if not text.strip():
        return
    if not messages:
        system.append({"type": "text", "text": text})
    else:
        note: c.TextBlock = {
            "type": "text",
            "text": f"<system-reminder>\n{text}\n</system-reminder>",
        }
        messages.append({"role": "user", "content": [note]})
    logger.debug(
        "normalised: folded a system message into the %s", "notes" if messages else "system"
    )


def _results_first(blocks: list[c.ContentBlock]) -> list[c.ContentBlock]:
    # Both the Anthropic API and z.ai require tool_result blocks before any other user content.
    results = [b for b in blocks if b["type"] == "tool_result"]
    return results + [b for b in blocks if b["type"] != "tool_result"]


def parse_tool_arguments(arguments: str) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as a dict; unparsable text is kept, not lost."""
    if not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        logger.debug("tool-call arguments are not JSON; keeping them as raw text")
        return {"raw_arguments": arguments}
    return value if isinstance(value, dict) else {"value": value}


def tool_result_text(block: c.ToolResultBlock) -> str:
    """The text of a tool result (string content, or its text blocks joined)."""
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    else:
        text = "\n".join(b["text"] for b in content if b["type"] == "text")
    if block.get("is_error"):
        return f"Error: {text}" if text else "Error"
    return text


# z.ai takes temperature and top_p in [0, 1]; OpenAI clients may send temperature up to 2.
ZAI_SAMPLING_MAX = 1.0


def sampling_for_zai(request: c.Request) -> dict[str, float]:
    """temperature/top_p of a request, clamped to the range z.ai accepts."""
    return {
        key: min(float(request[key]), ZAI_SAMPLING_MAX)
        for key in ("temperature", "top_p")
        if key in request
    }


# Thinking: z.ai takes {"type": "enabled", "budget_tokens": N} with N below max_tokens.
DEFAULT_THINKING_BUDGET = 16000
MIN_THINKING_BUDGET = 1024
DISABLED_THINKING = {"type": "disabled"}


def parse_thinking(thinking: Any, max_tokens: int, default_budget: int) -> dict[str, Any]:
    """A client's thinking object (enabled, adaptive or disabled) in the form z.ai accepts."""
    thinking = require_object(thinking, "thinking")
    kind = get_str(thinking, "type", "thinking", required=True)
    if kind == "disabled":
        return dict(DISABLED_THINKING)
    if kind == "adaptive":
        logger.debug("normalised: adaptive thinking became an explicit budget")
        return thinking_budget(default_budget, max_tokens)
    if kind == "enabled":
        budget = get_int(thinking, "budget_tokens", "thinking", minimum=1)
        return thinking_budget(budget or default_budget, max_tokens)
    raise BadRequest("thinking.type must be enabled, adaptive or disabled", param="thinking.type")


def thinking_budget(budget: int, max_tokens: int) -> dict[str, Any]:
    """Thinking with `budget` kept below max_tokens; off when too little room is left."""
    budget = min(budget, max_tokens - 1)
    if budget < MIN_THINKING_BUDGET:
        return dict(DISABLED_THINKING)
    return {"type": "enabled", "budget_tokens": budget}
