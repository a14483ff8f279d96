"""The one internal format: Anthropic Messages-shaped requests, responses and stream events.

Every wire format is parsed into these shapes and rendered out of them (DESIGN.md §2).
They are plain dicts (JSON as it travels), typed here so readers and mypy know the fields.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

# ---------------------------------------------------------------------------- content blocks


class TextBlock(TypedDict):
    type: Literal["text"]
    text: str
    cache_control: NotRequired[dict[str, Any]]


class ImageSource(TypedDict):
    type: Literal["base64", "url"]
    media_type: NotRequired[str]
    data: NotRequired[str]
    url: NotRequired[str]


class ImageBlock(TypedDict):
    type: Literal["image"]
    source: ImageSource


class ToolUseBlock(TypedDict):
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(TypedDict):
    type: Literal["tool_result"]
    tool_use_id: str
    content: NotRequired[str | list[TextBlock | ImageBlock]]
    is_error: NotRequired[bool]


class ThinkingBlock(TypedDict):
    type: Literal["thinking"]
    thinking: str
    # Absent when the thinking came from a model that does not sign (OpenAI-format upstream).
    signature: NotRequired[str]


class RedactedThinkingBlock(TypedDict):
    type: Literal["redacted_thinking"]
    data: str


ContentBlock = (
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock
)


class Message(TypedDict):
    role: Literal["user", "assistant"]
    content: list[ContentBlock]


class Tool(TypedDict):
    name: str
    description: NotRequired[str]
    input_schema: dict[str, Any]


class ToolChoice(TypedDict):
    type: Literal["auto", "any", "tool", "none"]
    name: NotRequired[str]
    disable_parallel_tool_use: NotRequired[bool]


# ---------------------------------------------------------------------------- request


class Request(TypedDict):
    """A canonical request: the Anthropic Messages body with content always as block lists."""

    model: str
    messages: list[Message]
    max_tokens: int
    system: NotRequired[list[TextBlock]]
    stream: NotRequired[bool]
    temperature: NotRequired[float]
    top_p: NotRequired[float]
    top_k: NotRequired[int]
    stop_sequences: NotRequired[list[str]]
    tools: NotRequired[list[Tool]]
    tool_choice: NotRequired[ToolChoice]
    thinking: NotRequired[dict[str, Any]]
    metadata: NotRequired[dict[str, Any]]


# ---------------------------------------------------------------------------- response

StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: NotRequired[int]
    cache_creation_input_tokens: NotRequired[int]


class Response(TypedDict):
    id: str
    type: Literal["message"]
    role: Literal["assistant"]
    model: str
    content: list[ContentBlock]
    stop_reason: StopReason | None
    stop_sequence: str | None
    usage: Usage


# ---------------------------------------------------------------------------- stream events


class MessageStartEvent(TypedDict):
    type: Literal["message_start"]
    message: Response


class ContentBlockStartEvent(TypedDict):
    type: Literal["content_block_start"]
    index: int
    content_block: ContentBlock


class ContentBlockDeltaEvent(TypedDict):
    """delta is one of text_delta, thinking_delta, signature_delta, input_json_delta."""

    type: Literal["content_block_delta"]
    index: int
    delta: dict[str, Any]


class ContentBlockStopEvent(TypedDict):
    type: Literal["content_block_stop"]
    index: int


class MessageDeltaEvent(TypedDict):
    type: Literal["message_delta"]
    delta: dict[str, Any]
    usage: dict[str, Any]
    context_info: NotRequired[dict[str, Any]]  # the proxy's own report, added on the way out


class MessageStopEvent(TypedDict):
    type: Literal["message_stop"]


class ErrorEvent(TypedDict):
    type: Literal["error"]
    error: dict[str, str]


class PingEvent(TypedDict):
    type: Literal["ping"]


StreamEvent = (
    MessageStartEvent
    | ContentBlockStartEvent
    | ContentBlockDeltaEvent
    | ContentBlockStopEvent
    | MessageDeltaEvent
    | MessageStopEvent
    | ErrorEvent
    | PingEvent
)


def text_of(blocks: list[ContentBlock]) -> str:
    """Concatenate the text blocks of a content list."""
    return "".join(b["text"] for b in blocks if b["type"] == "text")


def has_image(message: Message) -> bool:
    """True if the message carries an image, directly or inside a tool result."""
    for block in message["content"]:
        if block["type"] == "image":
            return True
        content = block.get("content") if block["type"] == "tool_result" else None
        if isinstance(content, list) and any(part["type"] == "image" for part in content):
            return True
    return False


def error_event(message: str, kind: str = "api_error") -> ErrorEvent:
    """A stream error event."""
    return {"type": "error", "error": {"type": kind, "message": message}}


def error_message(error: object) -> str:
    """The message of an upstream error payload: its `message`, else the payload itself."""
    if isinstance(error, dict):
        return str(error.get("message") or json.dumps(error)[:500])
    return str(error)[:500]


def upstream_error_event(error: object) -> ErrorEvent:
    """A stream error event from an upstream's error payload (an object or a bare message)."""
    kind = error.get("type") if isinstance(error, dict) else None
    return error_event(error_message(error), str(kind or "api_error"))
