"""The OpenAI chat-completions wire format ⇄ the canonical (Anthropic-shaped) format.

parse_* reads the wire into canonical shapes; render_* writes canonical shapes onto the wire.
Requests and responses go both ways because this format sits on both edges: chat-completions
clients, and z.ai's OpenAI-format upstream (used for vision and by preference).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from errors import BadRequest, UpstreamUnavailable
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
from upstream.sse import SSEEvent, encode_sse

logger = logging.getLogger(__name__)

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
# reasoning_effort has no z.ai equivalent; these budgets give the model room in proportion.
EFFORT_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384}
DONE = "[DONE]"
CONVERSATION_START = "(conversation start)"
# z.ai's finish_reason when generation broke off on its side: the answer is incomplete.
NETWORK_ERROR = "network_error"


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
    return [b for b in blocks if b["type"] != "text" or b["text"]]  # type: ignore[typeddict-item]


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


def _arguments(tool_input: dict[str, Any]) -> str:
    return json.dumps(tool_input, ensure_ascii=False, separators=(",", ":")) if tool_input else ""


def render_tool_call(block: c.ToolUseBlock) -> dict[str, Any]:
    """A tool_use block as an OpenAI tool_calls entry."""
    arguments = _arguments(block["input"]) or "{}"
    return {
        "id": block["id"],
        "type": "function",
        "function": {"name": block["name"], "arguments": arguments},
    }


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
            parts.append(_render_part(block))  # type: ignore[arg-type]
    if parts:
        only_text = all(p["type"] == "text" for p in parts)
        content: Any = "\n".join(p["text"] for p in parts) if only_text else parts
        out.append({"role": "user", "content": content})
    return out


def _result_images(block: c.ToolResultBlock) -> list[c.ImageBlock]:
    content = block.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if b["type"] == "image"]  # type: ignore[misc]


def _render_part(block: c.TextBlock | c.ImageBlock) -> dict[str, Any]:
    if block["type"] == "text":
        return {"type": "text", "text": block["text"]}
    source = block["source"]
    if source["type"] == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    else:
        url = source.get("url", "")
    return {"type": "image_url", "image_url": {"url": url}}


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
        "id": call.get("id") or _tool_id(),
        "name": str(function.get("name") or ""),
        "input": arguments if isinstance(arguments, dict) else parse_tool_arguments(str(arguments)),
    }


def parse_usage(usage: Any) -> c.Usage:
    """OpenAI usage as canonical usage (missing figures are 0).

    OpenAI's prompt_tokens include cached tokens; Anthropic's input_tokens do not.
    """
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = _int_or_zero(details.get("cached_tokens")) if isinstance(details, dict) else 0
    parsed: c.Usage = {
        "input_tokens": max(0, _int_or_zero(usage.get("prompt_tokens")) - cached),
        "output_tokens": _int_or_zero(usage.get("completion_tokens")),
    }
    if cached:
        parsed["cache_read_input_tokens"] = cached
    return parsed


def _int_or_zero(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _tool_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def parse_stream(events: Iterable[SSEEvent], input_estimate: int) -> Iterator[c.StreamEvent]:
    """Turn chat.completion.chunk events into canonical stream events, one by one."""
    state = _StreamState(input_estimate)
    for event in events:
        if event.data.strip() == DONE:
            break
        chunk = json.loads(event.data)
        if isinstance(chunk, dict) and chunk.get("error"):
            yield c.upstream_error_event(chunk["error"])
            return
        yield from state.feed(chunk)
        if state.failed:
            return
    yield from state.finish()


class _StreamState:
    """Folds chunks into open canonical blocks.

    Text and thinking stream live. The first tool call streams live; deltas of any other call are
    held until the open block closes, because canonical blocks are contiguous and z.ai may
    interleave parallel calls. Clients act on tool calls only at the end of the message anyway.
    """

    def __init__(self, input_estimate: int) -> None:
        self.input_estimate = input_estimate
        self.started = False
        self.next_index = 0
        self.open_kind: str | None = None  # "text", "thinking" or "tool"
        self.open_call: int | None = None
        self.calls: dict[int, dict[str, Any]] = {}  # OpenAI index → {"id","name","args","done"}
        self.stop_reason: c.StopReason | None = None
        self.usage: c.Usage = {"input_tokens": 0, "output_tokens": 0}
        self.failed = False

    def feed(self, chunk: dict[str, Any]) -> Iterator[c.StreamEvent]:
        if not self.started:
            self.started = True
            yield self._message_start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = parse_usage(chunk["usage"])
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if reasoning := delta.get("reasoning_content"):
                yield from self._stream_text("thinking", reasoning)
            if text := delta.get("content"):
                yield from self._stream_text("text", text)
            # An empty `tool_calls: []` is the same as none.
            for call in delta.get("tool_calls") or []:
                yield from self._stream_call(call)
            if reason := choice.get("finish_reason"):
                if reason == NETWORK_ERROR:
                    self.failed = True
                    yield from self._close()
                    yield c.error_event("upstream reported a network error mid-generation")
                    return
                self.stop_reason = FINISH_TO_STOP.get(reason, "end_turn")
                yield from self._close()

    def finish(self) -> Iterator[c.StreamEvent]:
        if not self.started:
            yield c.error_event("upstream stream ended before any data")
            return
        yield from self._close()
        if self.stop_reason is None:
            yield c.error_event("upstream stream ended early")
            return
        yield {
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
            "usage": dict(self.usage),  # type: ignore[dict-item]
        }
        yield {"type": "message_stop"}

    def _message_start(self, chunk: dict[str, Any]) -> c.MessageStartEvent:
        message: c.Response = {
            "id": str(chunk.get("id") or uuid.uuid4().hex),
            "type": "message",
            "role": "assistant",
            "model": str(chunk.get("model", "")),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
        }
        return {"type": "message_start", "message": message}

    def _start(self, kind: str, block: c.ContentBlock) -> c.ContentBlockStartEvent:
        self.open_kind = kind
        return {"type": "content_block_start", "index": self.next_index, "content_block": block}

    def _stream_text(self, kind: str, text: str) -> Iterator[c.StreamEvent]:
        if self.open_kind != kind:
            yield from self._close()
            empty: c.ContentBlock = (
                {"type": "text", "text": ""}
                if kind == "text"
                else {"type": "thinking", "thinking": ""}
            )
            yield self._start(kind, empty)
        delta = (
            {"type": "text_delta", "text": text}
            if kind == "text"
            else {"type": "thinking_delta", "thinking": text}
        )
        yield {"type": "content_block_delta", "index": self.next_index, "delta": delta}

    def _stream_call(self, raw: dict[str, Any]) -> Iterator[c.StreamEvent]:
        index = raw.get("index", len(self.calls))
        function = raw.get("function") or {}
        piece = function.get("arguments") or ""
        if index == self.open_call:
            if piece:
                yield self._args_delta(piece)
            return
        call = self.calls.get(index)
        if call is None:
            if self.open_kind != "tool":
                yield from self._close()
            call = self.calls[index] = {"id": None, "name": "", "args": "", "done": False}
        elif call["done"]:
            logger.debug("dropping arguments for tool call %s after its block closed", index)
            return
        call["id"] = call["id"] or raw.get("id")
        call["name"] = call["name"] or function.get("name") or ""
        call["args"] += piece
        if self.open_kind != "tool":
            yield from self._open_call(index)

    def _open_call(self, index: int) -> Iterator[c.StreamEvent]:
        call = self.calls[index]
        block: c.ToolUseBlock = {
            "type": "tool_use",
            "id": call["id"] or _tool_id(),
            "name": call["name"],
            "input": {},
        }
        self.open_call = index
        yield self._start("tool", block)
        if call["args"]:
            yield self._args_delta(call["args"])
            call["args"] = ""

    def _args_delta(self, piece: str) -> c.ContentBlockDeltaEvent:
        delta = {"type": "input_json_delta", "partial_json": piece}
        return {"type": "content_block_delta", "index": self.next_index, "delta": delta}

    def _close(self) -> Iterator[c.StreamEvent]:
        """Close the open block; then emit any held tool calls, each whole."""
        if self.open_kind is not None:
            yield self._stop()
        if self.open_call is not None:
            self.calls[self.open_call]["done"] = True
            self.open_call = None
        for index, call in self.calls.items():
            if not call["done"]:
                yield from self._open_call(index)
                call["done"] = True
                self.open_call = None
                yield self._stop()

    def _stop(self) -> c.ContentBlockStopEvent:
        event: c.ContentBlockStopEvent = {"type": "content_block_stop", "index": self.next_index}
        self.open_kind = None
        self.next_index += 1
        return event


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
        "id": _completion_id(response["id"]),
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


def _completion_id(raw: str) -> str:
    return raw if raw.startswith("chatcmpl-") else f"chatcmpl-{raw}"


def render_stream(
    events: Iterable[c.StreamEvent], model: str, include_usage: bool
) -> Iterator[bytes]:
    """Write canonical stream events as chat.completion.chunk SSE frames, then `[DONE]`."""
    renderer = _ChunkRenderer(model)
    for event in events:
        for chunk in renderer.chunks_for(event, include_usage):
            yield encode_sse(chunk)
        if event["type"] in ("message_stop", "error"):
            break
    yield encode_sse(DONE)


class _ChunkRenderer:
    """Remembers what a chat.completion.chunk needs across events: ids, tool indices, usage."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = _completion_id(uuid.uuid4().hex)
        self.created = int(time.time())
        self.tool_index = -1
        self.usage: dict[str, int] = {}

    def chunk(
        self, delta: dict[str, Any] | None, finish_reason: str | None = None
    ) -> dict[str, Any]:
        choices = (
            []
            if delta is None
            else [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}]
        )
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def chunks_for(self, event: c.StreamEvent, include_usage: bool) -> list[dict[str, Any]]:
        kind = event["type"]
        if kind == "message_start":
            self.id = _completion_id(event["message"]["id"])
            self.usage = dict(event["message"]["usage"])  # type: ignore[arg-type]
            return [self.chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            self.usage.update(event.get("usage") or {})
            reason = STOP_TO_FINISH.get(event["delta"].get("stop_reason") or "end_turn", "stop")
            return [self.chunk({}, reason)]
        if kind == "message_stop":
            if not include_usage:
                return []
            return [self.chunk(None) | {"usage": render_usage(self.usage)}]
        if kind == "error":
            return [
                {
                    "error": {
                        "message": event["error"].get("message", ""),
                        "type": event["error"].get("type", "api_error"),
                    }
                }
            ]
        return []  # content_block_stop and ping carry nothing for chat-completions clients

    def _block_start(self, event: c.ContentBlockStartEvent) -> list[dict[str, Any]]:
        block = event["content_block"]
        if block["type"] != "tool_use":
            return []
        self.tool_index += 1
        call = {
            "index": self.tool_index,
            "id": block["id"],
            "type": "function",
            # Arguments that came whole in the block's start (no deltas follow) go out here.
            "function": {"name": block["name"], "arguments": _arguments(block["input"])},
        }
        return [self.chunk({"tool_calls": [call]})]

    def _block_delta(self, event: c.ContentBlockDeltaEvent) -> list[dict[str, Any]]:
        delta = event["delta"]
        kind = delta.get("type")
        if kind == "text_delta":
            return [self.chunk({"content": delta["text"]})]
        if kind == "thinking_delta":
            return [self.chunk({"reasoning_content": delta["thinking"]})]
        if kind == "input_json_delta" and delta.get("partial_json"):
            call = {"index": self.tool_index, "function": {"arguments": delta["partial_json"]}}
            return [self.chunk({"tool_calls": [call]})]
        return []  # signature_delta has no OpenAI counterpart
