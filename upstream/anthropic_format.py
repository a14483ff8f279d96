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

from errors import BadRequest
from upstream import canonical as c
from upstream.blocks import (
    DEFAULT_THINKING_BUDGET,
    fold_system_message,
    merge_roles,
    parse_thinking,
    sampling_for_zai,
)
from upstream.fields import (
    get_bool,
    get_int,
    get_number,
    get_stop_list,
    get_str,
    require_list,
    require_object,
)
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


# Fields a Messages client may send that we read; others (context_management, output_config,
# service_tier, container, mcp_servers, …) mean nothing to z.ai and are left out.
CLIENT_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "tools", "tool_choice", "thinking", "metadata",
    }
)  # fmt: skip
PASSTHROUGH_BLOCKS = frozenset(
    {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}
)
UNSIGNED_REASONING_PREFIX = "[earlier reasoning]\n"


# ============================================================================ client → canonical


def parse_request(body: Any, *, require_max_tokens: bool = True) -> c.Request:
    """Read a Messages body into a canonical request, normalising what z.ai does not take."""
    body = require_object(body, "body")
    model = get_str(body, "model", "", required=True) or ""
    max_tokens = get_int(body, "max_tokens", minimum=1)
    if max_tokens is None:
        if require_max_tokens:
            raise BadRequest("max_tokens is required", param="max_tokens")
        max_tokens = 1
    system = _parse_system(body.get("system"))
    raw = require_list(body.get("messages"), "messages", non_empty=True)
    messages = merge_roles(_parse_messages(raw, system))
    if not messages:
        raise BadRequest(
            "messages must hold a user or assistant message with content", param="messages"
        )
    request: c.Request = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if system:
        request["system"] = system
    _copy_options(body, request)
    if ignored := sorted(set(body) - CLIENT_FIELDS):
        logger.debug("normalised: left out fields z.ai does not take: %s", ", ".join(ignored))
    return request


def _copy_options(body: dict[str, Any], request: c.Request) -> None:
    if get_bool(body, "stream"):
        request["stream"] = True
    if (temperature := get_number(body, "temperature", low=0, high=1)) is not None:
        request["temperature"] = temperature
    if (top_p := get_number(body, "top_p", low=0, high=1)) is not None:
        request["top_p"] = top_p
    if (top_k := get_int(body, "top_k", minimum=0)) is not None:
        request["top_k"] = top_k
    if stop := get_stop_list(body.get("stop_sequences"), "stop_sequences"):
        request["stop_sequences"] = stop
    if body.get("tools") is not None:
        tools = [
            _parse_tool(t, f"tools[{i}]")
            for i, t in enumerate(require_list(body["tools"], "tools"))
        ]
        if tools := [t for t in tools if t is not None]:
            request["tools"] = tools
    if body.get("tool_choice") is not None:
        choice = _parse_tool_choice(body["tool_choice"])
        names = {t["name"] for t in request.get("tools", [])}
        if choice["type"] != "tool" or choice.get("name") in names:
            request["tool_choice"] = choice
        else:
            logger.debug("normalised: left out tool_choice naming a tool z.ai does not have")
    if body.get("thinking") is not None:
        request["thinking"] = parse_thinking(
            body["thinking"], request["max_tokens"], DEFAULT_THINKING_BUDGET
        )
    if body.get("metadata") is not None:
        request["metadata"] = require_object(body["metadata"], "metadata")


def _parse_system(system: Any) -> list[c.TextBlock]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"type": "text", "text": system}] if system.strip() else []
    blocks = _parse_blocks(system, "system")
    if any(b["type"] != "text" for b in blocks):
        raise BadRequest("system may only hold text blocks", param="system")
    return blocks  # type: ignore[return-value]


def _parse_messages(raw: list[Any], system: list[c.TextBlock]) -> list[c.Message]:
    messages: list[c.Message] = []
    for i, message in enumerate(raw):
        path = f"messages[{i}]"
        message = require_object(message, path)
        role = message.get("role")
        content = _parse_content(message.get("content"), f"{path}.content")
        if role == "system":
            # Claude Code sends reminders as mid-conversation system messages; z.ai refuses them.
            fold_system_message(c.text_of(content), system, messages)
        elif role in ("user", "assistant"):
            messages.append({"role": role, "content": content})
        else:
            raise BadRequest(f"{path}.role must be 'user' or 'assistant'", param=f"{path}.role")
    return messages


def _parse_content(content: Any, path: str) -> list[c.ContentBlock]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return _parse_blocks(content, path)


def _parse_blocks(blocks: Any, path: str) -> list[c.ContentBlock]:
    parsed: list[c.ContentBlock] = []
    for j, block in enumerate(require_list(blocks, path)):
        where = f"{path}[{j}]"
        block = require_object(block, where)
        kind = get_str(block, "type", where, required=True)
        if kind in PASSTHROUGH_BLOCKS:
            _check_block(block, kind or "", where)
            parsed.append(block)  # type: ignore[arg-type]
        elif (
            kind == "document"
            and isinstance(block.get("source"), dict)
            and block["source"].get("type") == "text"
        ):
            parsed.append({"type": "text", "text": str(block["source"].get("data", ""))})
        else:
            raise BadRequest(
                f"{where}.type {kind!r} is not supported by GLM upstreams", param=f"{where}.type"
            )
    return parsed


def _check_block(block: dict[str, Any], kind: str, where: str) -> None:
    """The fields each block type needs, typed; deeper rules are context.validation's."""
    required = {
        "text": ("text",),
        "tool_use": ("id", "name"),
        "tool_result": ("tool_use_id",),
        "thinking": ("thinking",),
        "redacted_thinking": ("data",),
        "image": (),
    }[kind]
    for key in required:
        get_str(block, key, where, required=True)
    if kind == "image":
        require_object(block.get("source"), f"{where}.source")
    if kind == "tool_use":
        require_object(block.get("input"), f"{where}.input")
    if kind == "tool_result" and not isinstance(block.get("content", ""), str):
        block["content"] = _parse_blocks(block["content"], f"{where}.content")


def _parse_tool(tool: Any, path: str) -> c.Tool | None:
    tool = require_object(tool, path)
    name = get_str(tool, "name", path, required=True)
    if "input_schema" not in tool:
        # Server tools (web_search_…, bash_…) run on Anthropic's side; z.ai has none of them.
        logger.debug("normalised: left out server tool %r", name)
        return None
    parsed: c.Tool = {
        "name": name or "",
        "input_schema": require_object(tool["input_schema"], f"{path}.input_schema"),
    }
    if description := get_str(tool, "description", path):
        parsed["description"] = description
    return parsed


def _parse_tool_choice(choice: Any) -> c.ToolChoice:
    choice = require_object(choice, "tool_choice")
    kind = get_str(choice, "type", "tool_choice", required=True)
    if kind not in ("auto", "any", "tool", "none"):
        raise BadRequest(
            "tool_choice.type must be auto, any, tool or none", param="tool_choice.type"
        )
    parsed: c.ToolChoice = {"type": kind}  # type: ignore[typeddict-item]
    if kind == "tool":
        parsed["name"] = get_str(choice, "name", "tool_choice", required=True) or ""
    if get_bool(choice, "disable_parallel_tool_use", "tool_choice"):
        parsed["disable_parallel_tool_use"] = True
    return parsed


# ============================================================================ canonical → upstream


def render_request(request: c.Request, model: str) -> dict[str, Any]:
    """Write a canonical request as a z.ai Anthropic-format body for `model`."""
    messages = merge_roles([_unsigned_thinking_as_text(m) for m in request["messages"]])
    body: dict[str, Any] = {"model": model, "messages": messages}
    for key in UPSTREAM_FIELDS:
        if key in request:
            body[key] = request[key]  # type: ignore[literal-required]
    body.update(sampling_for_zai(request))
    if request.get("stream"):
        body["stream"] = True
    return body


def _unsigned_thinking_as_text(message: c.Message) -> c.Message:
    # Thinking without a signature came from a model that does not sign (the vision model on the
    # OpenAI-format upstream). It is carried as plain text, never passed off as a signed block.
    if message["role"] != "assistant":
        return message
    content: list[c.ContentBlock] = []
    for block in message["content"]:
        if block["type"] == "thinking" and not block.get("signature"):
            if block["thinking"].strip():
                content.append(
                    {"type": "text", "text": UNSIGNED_REASONING_PREFIX + block["thinking"]}
                )
        else:
            content.append(block)
    return {"role": "assistant", "content": content}


# ============================================================================ upstream → canonical


def parse_response(body: dict[str, Any]) -> c.Response:
    """Read a Messages response from the upstream into a canonical response.

    Raises ValueError when a content block lacks what its type needs.
    """
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    return {
        "id": str(body.get("id") or f"msg_{uuid.uuid4().hex}"),
        "type": "message",
        "role": "assistant",
        "model": str(body.get("model", "")),
        "content": [_checked_block(b) for b in body.get("content") or []],
        "stop_reason": _checked_str(body.get("stop_reason")) or "end_turn",  # type: ignore[typeddict-item]
        "stop_sequence": _checked_str(body.get("stop_sequence")),
        "usage": _usage(usage or {}),
    }


# What each block type of a response must carry, and the type it must have.
RESPONSE_BLOCK_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "text": (("text", str),),
    "thinking": (("thinking", str),),
    "redacted_thinking": (("data", str),),
    "tool_use": (("id", str), ("name", str), ("input", dict)),
}


def _checked_str(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value


def _checked_block(block: Any) -> c.ContentBlock:
    fields = RESPONSE_BLOCK_FIELDS.get(str(block.get("type"))) if isinstance(block, dict) else None
    if fields is None or not all(isinstance(block.get(k), kind) for k, kind in fields):
        raise ValueError(f"malformed upstream content block: {str(block)[:200]}")
    return block


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
            usage[key] = value
    return usage


def parse_stream(events: Iterable[SSEEvent], input_estimate: int) -> Iterator[c.StreamEvent]:
    """Pass Messages stream events through as canonical events; a cut stream ends in an error."""
    finished = False
    for sse in events:
        payload = json.loads(sse.data)
        kind = payload.get("type") if isinstance(payload, dict) else None
        if kind == "error":
            yield c.upstream_error_event(payload.get("error"))
            return
        if kind not in STREAM_EVENT_TYPES:
            logger.debug("skipping unknown upstream stream event %r", kind)
            continue
        if kind == "message_start":
            _fill_start_usage(payload, input_estimate)
        finished = kind == "message_stop"
        yield payload
    if not finished:
        yield c.error_event("upstream stream ended early")


def _fill_start_usage(payload: dict[str, Any], input_estimate: int) -> None:
    # Clients show message_start's input_tokens as the context size; z.ai sometimes sends 0.
    usage = payload.setdefault("message", {}).setdefault("usage", {})
    if not usage.get("input_tokens"):
        usage["input_tokens"] = input_estimate
    usage.setdefault("output_tokens", 0)


# ============================================================================ canonical → client


def render_response(
    response: c.Response, model: str, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write a canonical response as a Messages body, under the model name the client asked for."""
    content = [_client_block(b) for b in response["content"]]
    body = dict(response) | {"model": model, "id": _message_id(response["id"]), "content": content}
    return body | (extra or {})


def _client_block(block: c.ContentBlock) -> c.ContentBlock:
    # Messages clients (and the SDK's types) expect every thinking block to carry a signature;
    # an unsigned one gets an empty signature, which marks it as ours to carry as text later.
    if block["type"] == "thinking" and "signature" not in block:
        return block | {"signature": ""}
    return block


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
        elif event["type"] == "content_block_start":
            block = _client_block(event["content_block"])
            event = {"type": "content_block_start", "index": event["index"], "content_block": block}
        yield encode_sse(event, event=event["type"])
        if event["type"] in ("message_stop", "error"):
            return
