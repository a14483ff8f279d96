"""The OpenAI format's names for canonical things, shared by its request, response and stream
conversions: stop reasons, ids and tool-call arguments."""

from __future__ import annotations

import json
import uuid
from typing import Any

from upstream import canonical as c

FINISH_TO_STOP: dict[str, c.StopReason] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
    "sensitive": "refusal",
}
STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
DONE = "[DONE]"
# z.ai's finish_reason when generation broke off on its side: the answer is incomplete.
NETWORK_ERROR = "network_error"


def tool_arguments(tool_input: dict[str, Any]) -> str:
    """Tool input as OpenAI arguments text; empty input is empty text."""
    return json.dumps(tool_input, ensure_ascii=False, separators=(",", ":")) if tool_input else ""


def render_tool_call(block: c.ToolUseBlock) -> dict[str, Any]:
    """A tool_use block as an OpenAI tool_calls entry."""
    arguments = tool_arguments(block["input"]) or "{}"
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


def int_or_zero(value: Any) -> int:
    """An integer figure, or 0 for anything else (bools included)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def new_tool_id() -> str:
    """A fresh OpenAI-style tool-call id."""
    return f"call_{uuid.uuid4().hex[:24]}"


def completion_id(raw: str) -> str:
    """A response id with the chatcmpl- prefix clients expect."""
    return raw if raw.startswith("chatcmpl-") else f"chatcmpl-{raw}"
