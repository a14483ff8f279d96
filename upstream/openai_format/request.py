"""OpenAI chat-completions requests: parse a client's body, render one for z.ai's upstream."""

from __future__ import annotations

import json
import logging
from typing import Any

from errors import BadRequest
from upstream import canonical as c
from upstream.blocks import (
    DISABLED_THINKING,
    fold_system_message,
    merge_roles,
    parse_thinking,
    parse_tool_arguments,
    sampling_for_zai,
    thinking_budget,
    tool_result_text,
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
from upstream.openai_format.terms import render_tool_call

logger = logging.getLogger(__name__)

# reasoning_effort has no z.ai equivalent; these budgets give the model room in proportion.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
CONVERSATION_START = "(conversation start)"


# ============================================================================ client → canonical


def parse_request(body: Any, default_max_tokens: int) -> c.Request:
    """Read an OpenAI chat-completions body into a canonical request (400 names the bad field)."""
    body = require_object(body, "body")
    model = get_str(body, "model", "", required=True)
    assert model is not None
    if get_int(body, "n", minimum=1) not in (None, 1):
        raise BadRequest("n > 1 is not supported by GLM upstreams", param="n")
    system, messages = _parse_messages(
        require_list(body.get("messages"), "messages", non_empty=True)
    )
    if not messages:
        raise BadRequest(
            "messages must hold a user or assistant message with content", param="messages"
        )
    if messages[0]["role"] == "assistant":
        # Chat clients may open with the assistant's greeting; z.ai wants a user turn first.
        messages.insert(
            0, {"role": "user", "content": [{"type": "text", "text": CONVERSATION_START}]}
        )
    max_tokens = get_int(body, "max_completion_tokens", minimum=1) or get_int(
        body, "max_tokens", minimum=1
    )
    request: c.Request = {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens or default_max_tokens,
        "stream": get_bool(body, "stream"),
    }
    if system:
        request["system"] = system
    _copy_sampling(body, request)
    if (tools := body.get("tools")) is not None:
        request["tools"] = [
            _parse_tool(t, f"tools[{i}]") for i, t in enumerate(require_list(tools, "tools"))
        ]
    if (choice := _parse_tool_choice(body)) is not None:
        request["tool_choice"] = choice
    if (thinking := _parse_thinking(body, request["max_tokens"])) is not None:
        request["thinking"] = thinking
    if isinstance(body.get("user"), str):
        request["metadata"] = {"user_id": body["user"]}
    return request


def wants_usage_chunk(body: dict[str, Any]) -> bool:
    """True when the client asked for the trailing usage chunk (stream_options.include_usage)."""
    options = body.get("stream_options")
    if options is None:
        return False
    options = require_object(options, "stream_options")
    return get_bool(options, "include_usage", "stream_options")


def _copy_sampling(body: dict[str, Any], request: c.Request) -> None:
    if (temperature := get_number(body, "temperature", low=0, high=2)) is not None:
        request["temperature"] = temperature
    if (top_p := get_number(body, "top_p", low=0, high=1)) is not None:
        request["top_p"] = top_p
    if stop := get_stop_list(body.get("stop"), "stop"):
        request["stop_sequences"] = stop


def _parse_thinking(body: dict[str, Any], max_tokens: int) -> dict[str, Any] | None:
    # z.ai's own extension `thinking: {...}` is read as Messages clients send it; the OpenAI
    # `reasoning_effort` becomes a budget.
    if body.get("thinking") is not None:
        return parse_thinking(body["thinking"], max_tokens, EFFORT_BUDGETS["medium"])
    effort = get_str(body, "reasoning_effort", "")
    if effort is None:
        return None
    if effort == "none":
        return dict(DISABLED_THINKING)
    if effort not in EFFORT_BUDGETS:
        raise BadRequest(
            f"reasoning_effort must be one of none, {', '.join(EFFORT_BUDGETS)}",
            param="reasoning_effort",
        )
    return thinking_budget(EFFORT_BUDGETS[effort], max_tokens)


def _parse_tool(tool: Any, path: str) -> c.Tool:
    tool = require_object(tool, path)
    if tool.get("type", "function") != "function":
        raise BadRequest(f"{path}.type must be 'function'", param=f"{path}.type")
    function = require_object(tool.get("function"), f"{path}.function")
    name = get_str(function, "name", f"{path}.function", required=True)
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    parsed: c.Tool = {
        "name": name or "",
        "input_schema": require_object(parameters, f"{path}.function.parameters"),
    }
    if description := get_str(function, "description", f"{path}.function"):
        parsed["description"] = description
    return parsed


def _parse_tool_choice(body: dict[str, Any]) -> c.ToolChoice | None:
    choice = body.get("tool_choice")
    parsed: c.ToolChoice | None
    if choice is None:
        parsed = None
    elif choice in ("auto", "none"):
        parsed = {"type": choice}
    elif choice == "required":
        parsed = {"type": "any"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        name = get_str(choice["function"], "name", "tool_choice.function", required=True)
        parsed = {"type": "tool", "name": name or ""}
    else:
        raise BadRequest(
            "tool_choice must be 'auto', 'none', 'required' or a function object",
            param="tool_choice",
        )
    if body.get("parallel_tool_calls") is False and (parsed is None or parsed["type"] != "none"):
        parsed = parsed or {"type": "auto"}
        parsed["disable_parallel_tool_use"] = True
    return parsed


def _parse_messages(raw: list[Any]) -> tuple[list[c.TextBlock], list[c.Message]]:
    """Split OpenAI messages into the system prompt and canonical user/assistant turns."""
    system: list[c.TextBlock] = []
    messages: list[c.Message] = []
    for i, message in enumerate(raw):
        path = f"messages[{i}]"
        message = require_object(message, path)
        role = message.get("role")
        if role in ("system", "developer"):
            fold_system_message(
                _plain_text(message.get("content"), f"{path}.content"), system, messages
            )
        elif role == "user":
            messages.append({"role": "user", "content": _parse_user_content(message, path)})
        elif role == "assistant":
            messages.append({"role": "assistant", "content": _parse_assistant(message, path)})
        elif role in ("tool", "function"):
            messages.append({"role": "user", "content": [_parse_tool_message(message, path)]})
        else:
            raise BadRequest(
                f"{path}.role must be one of system, developer, user, assistant, tool",
                param=f"{path}.role",
            )
    return system, merge_roles(messages)


def _plain_text(content: Any, path: str) -> str:
    """Content that must be text: a string or an array of text parts."""
    if isinstance(content, str):
        return content
    parts = require_list(content, path)
    blocks = [_parse_part(p, f"{path}[{i}]") for i, p in enumerate(parts)]
    if any(b["type"] != "text" for b in blocks):
        raise BadRequest(f"{path} may only hold text parts", param=path)
    return "\n".join(b["text"] for b in blocks)  # type: ignore[typeddict-item]


def _parse_user_content(message: dict[str, Any], path: str) -> list[c.ContentBlock]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    parts = require_list(content, f"{path}.content")
    blocks = [_parse_part(p, f"{path}.content[{i}]") for i, p in enumerate(parts)]
    return [b for b in blocks if b["type"] != "text" or b["text"]]


def _parse_part(part: Any, path: str) -> c.TextBlock | c.ImageBlock:
    part = require_object(part, path)
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": get_str(part, "text", path, required=True) or ""}
    if kind == "image_url":
        image = part.get("image_url")
        url = (
            image
            if isinstance(image, str)
            else get_str(
                require_object(image, f"{path}.image_url"),
                "url",
                f"{path}.image_url",
                required=True,
            )
        )
        return {"type": "image", "source": parse_image_url(url or "", f"{path}.image_url.url")}
    raise BadRequest(
        f"{path}.type {kind!r} is not supported (text, image_url)", param=f"{path}.type"
    )


def parse_image_url(url: str, path: str) -> c.ImageSource:
    """A data: URL becomes a base64 source; an http(s) URL stays a URL source."""
    if url.startswith("data:"):
        header, sep, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        if not sep or encoding != "base64" or not media_type.startswith("image/") or not data:
            raise BadRequest(f"{path} must be a base64 image data URL", param=path)
        # Some clients write image/jpg; the media type z.ai and Anthropic know is image/jpeg.
        media_type = "image/jpeg" if media_type == "image/jpg" else media_type
        return {"type": "base64", "media_type": media_type, "data": data}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise BadRequest(f"{path} must be an http(s) URL or a data: URL", param=path)


def _parse_assistant(message: dict[str, Any], path: str) -> list[c.ContentBlock]:
    blocks: list[c.ContentBlock] = []
    if reasoning := get_str(message, "reasoning_content", path):
        # No model signed this; the empty signature marks it as reasoning to carry as text.
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    content = message.get("content")
    if content is not None:
        text = _plain_text(content, f"{path}.content")
        if text:
            blocks.append({"type": "text", "text": text})
    calls = message.get("tool_calls")
    for j, call in enumerate(require_list(calls, f"{path}.tool_calls") if calls else []):
        blocks.append(_parse_tool_call(call, f"{path}.tool_calls[{j}]"))
    return blocks


def _parse_tool_call(call: Any, path: str) -> c.ToolUseBlock:
    call = require_object(call, path)
    function = require_object(call.get("function"), f"{path}.function")
    name = get_str(function, "name", f"{path}.function", required=True) or ""
    arguments = function.get("arguments")
    if isinstance(arguments, dict):
        arguments = json.dumps(arguments)
    elif not isinstance(arguments, str | None):
        raise BadRequest(
            f"{path}.function.arguments must be a JSON string", param=f"{path}.function"
        )
    return {
        "type": "tool_use",
        "id": get_str(call, "id", path, required=True) or "",
        "name": name,
        "input": parse_tool_arguments(arguments or ""),
    }


def _parse_tool_message(message: dict[str, Any], path: str) -> c.ToolResultBlock:
    call_id = get_str(message, "tool_call_id", path) or get_str(message, "name", path)
    if not call_id:
        raise BadRequest(f"{path}.tool_call_id is required", param=f"{path}.tool_call_id")
    content = message.get("content")
    if isinstance(content, str) or content is None:
        return {"type": "tool_result", "tool_use_id": call_id, "content": content or ""}
    parts = require_list(content, f"{path}.content")
    blocks = [_parse_part(p, f"{path}.content[{i}]") for i, p in enumerate(parts)]
    return {"type": "tool_result", "tool_use_id": call_id, "content": blocks}


# ============================================================================ canonical → upstream


def render_request(request: c.Request, model: str) -> dict[str, Any]:
    """Write a canonical request as a z.ai OpenAI-format body for `model`."""
    messages: list[dict[str, Any]] = []
    if system := c.text_of(request.get("system", [])):  # type: ignore[arg-type]
        messages.append({"role": "system", "content": system})
    for message in request["messages"]:
        if message["role"] == "user":
            messages.extend(_render_user(message["content"]))
        elif (assistant := _render_assistant(message["content"]))[
            "content"
        ] or "tool_calls" in assistant:
            # A turn of only (redacted) reasoning says nothing the OpenAI format can carry.
            messages.append(assistant)
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": request["max_tokens"],
    }
    body.update(sampling_for_zai(request))
    if "stop_sequences" in request:
        body["stop"] = request["stop_sequences"]
    if "tools" in request:
        body["tools"] = [_render_tool(t) for t in request["tools"]]
    if "tool_choice" in request:
        body["tool_choice"] = _render_tool_choice(request["tool_choice"])
    if "thinking" in request:
        body["thinking"] = {"type": request["thinking"].get("type", "enabled")}
    if request.get("stream"):
        # Always ask for usage: it feeds usage scaling and the client's own include_usage.
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _render_tool(tool: c.Tool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool["name"], "parameters": tool["input_schema"]}
    if "description" in tool:
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _render_tool_choice(choice: c.ToolChoice) -> Any:
    if choice["type"] == "tool":
        return {"type": "function", "function": {"name": choice.get("name", "")}}
    return {"auto": "auto", "none": "none", "any": "required"}[choice["type"]]


def _render_assistant(blocks: list[c.ContentBlock]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": None}
    texts, reasoning, calls = [], [], []
    for block in blocks:
        if block["type"] == "text":
            texts.append(block["text"])
        elif block["type"] == "thinking":
            reasoning.append(block["thinking"])
        elif block["type"] == "tool_use":
            calls.append(render_tool_call(block))
        # redacted_thinking and images have no OpenAI-format counterpart in an assistant turn.
    if texts:
        message["content"] = "".join(texts)
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _render_user(blocks: list[c.ContentBlock]) -> list[dict[str, Any]]:
    """A canonical user turn: tool results become tool messages first, then the user's own parts."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        if block["type"] == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": block["tool_use_id"],
                    "content": tool_result_text(block),
                }
            )
            # Images inside a tool result ride along in the user message that follows.
            parts.extend(_render_part(b) for b in _result_images(block))
        elif block["type"] in ("text", "image"):
            parts.append(_render_part(block))
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content: Any = "\n".join(p["text"] for p in parts) if only_text else parts
        out.append({"role": "user", "content": content})
    return out


def _result_images(block: c.ToolResultBlock) -> list[c.ImageBlock]:
    content = block.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if b["type"] == "image"]


def _render_part(block: c.TextBlock | c.ImageBlock) -> dict[str, Any]:
    if block["type"] == "text":
        return {"type": "text", "text": block["text"]}
    source = block["source"]
    if source["type"] == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    else:
        url = source.get("url", "")
    return {"type": "image_url", "image_url": {"url": url}}
