"""Request validation as z.ai does it: field checks, the fake's own conversation rules, errors."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tests.fake.constants import Json
from tests.fake.rules import anthropic_problems_of, openai_problems_of

ANTHROPIC_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "system", "stream", "temperature", "top_p", "top_k",
        "stop_sequences", "tools", "tool_choice", "thinking", "metadata",
    }
)  # fmt: skip
OPENAI_FIELDS = frozenset(
    {
        "model", "messages", "max_tokens", "temperature", "top_p", "stream", "stream_options",
        "stop", "tools", "tool_choice", "thinking", "user", "do_sample", "request_id",
        "response_format", "tool_stream",
    }
)  # fmt: skip
OPENAI_TOOL_TYPES = ("function", "web_search", "retrieval")  # z.ai's built-in tools are typed too

# ---------------------------------------------------------------------------- field checks


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _unit(value: object) -> bool:
    return _is_number(value) and 0 <= value <= 1  # type: ignore[operator]


def _str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _anthropic_tools(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, dict)
        and bool(t.get("name"))
        and isinstance(t.get("name"), str)
        and isinstance(t.get("input_schema"), dict)
        for t in value
    )


def _anthropic_tool_choice(value: object) -> bool:
    if not isinstance(value, dict) or value.get("type") not in ("auto", "any", "tool", "none"):
        return False
    return value["type"] != "tool" or isinstance(value.get("name"), str)


def _anthropic_thinking(value: object) -> bool:
    if value == {"type": "disabled"}:
        return True
    return (
        isinstance(value, dict)
        and set(value) == {"type", "budget_tokens"}
        and value["type"] == "enabled"
        and _is_int(value["budget_tokens"])
        and value["budget_tokens"] >= 1
    )


def _openai_tools(value: object) -> bool:
    def ok(tool: object) -> bool:
        if not isinstance(tool, dict) or tool.get("type") not in OPENAI_TOOL_TYPES:
            return False
        function = tool.get("function")
        named = isinstance(function, dict) and isinstance(function.get("name"), str)
        return tool["type"] != "function" or named

    return isinstance(value, list) and all(ok(t) for t in value)


Check = tuple[Callable[[Any], bool], str]

ANTHROPIC_CHECKS: dict[str, Check] = {
    "model": (lambda v: isinstance(v, str), "must be a string"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    "stream": (lambda v: isinstance(v, bool), "must be a boolean"),
    "temperature": (_unit, "must be a number between 0 and 1"),
    "top_p": (_unit, "must be a number between 0 and 1"),
    "top_k": (lambda v: _is_int(v) and v >= 0, "must be a non-negative integer"),
    "stop_sequences": (_str_list, "must be a list of strings"),
    "tools": (_anthropic_tools, "each tool needs a name and an input_schema object"),
    "tool_choice": (_anthropic_tool_choice, "must be {type: auto|any|tool|none} (tool needs name)"),
    "thinking": (_anthropic_thinking, 'must be {"type":"enabled","budget_tokens":int} or disabled'),
    "metadata": (lambda v: isinstance(v, dict), "must be an object"),
}
OPENAI_CHECKS: dict[str, Check] = {
    "model": (lambda v: isinstance(v, str), "must be a string"),
    "max_tokens": (lambda v: _is_int(v) and v >= 1, "must be an integer >= 1"),
    "temperature": (_unit, "must be a number between 0 and 1"),
    "top_p": (_unit, "must be a number between 0 and 1"),
    "stream": (lambda v: isinstance(v, bool), "must be a boolean"),
    "stream_options": (
        lambda v: isinstance(v, dict) and isinstance(v.get("include_usage", False), bool),
        "must be an object with a boolean include_usage",
    ),
    "stop": (lambda v: isinstance(v, str) or _str_list(v), "must be a string or list of strings"),
    "tools": (_openai_tools, "each tool needs a type and, for functions, function.name"),
    "tool_choice": (
        lambda v: v in ("auto", "none", "required") or isinstance(v, dict),
        "must be auto, none, required or an object",
    ),
    "thinking": (
        lambda v: isinstance(v, dict) and v.get("type") in ("enabled", "disabled"),
        'must be {"type": "enabled"|"disabled"}',
    ),
    "user": (lambda v: isinstance(v, str), "must be a string"),
    "do_sample": (lambda v: isinstance(v, bool), "must be a boolean"),
    "request_id": (lambda v: isinstance(v, str), "must be a string"),
    "response_format": (
        lambda v: isinstance(v, dict) and isinstance(v.get("type"), str),
        "must be an object with a type",
    ),
    "tool_stream": (lambda v: isinstance(v, bool), "must be a boolean"),
}


def _field_problems(body: Json, allowed: frozenset[str], checks: dict[str, Check]) -> list[str]:
    problems = [f"{name}: unknown parameter" for name in body if name not in allowed]
    for name, (ok, message) in checks.items():
        if name in body and not ok(body[name]):
            problems.append(f"{name}: {message}")
    return problems


def anthropic_problems(body: Json) -> list[str]:
    """What z.ai's Anthropic endpoint would reject in this body (model checked elsewhere)."""
    problems = [
        f"{name}: field required" for name in ("messages", "max_tokens") if name not in body
    ]
    problems += _field_problems(body, ANTHROPIC_FIELDS, ANTHROPIC_CHECKS)
    if "messages" in body:
        problems += anthropic_problems_of(body["messages"], body.get("system"))
    return problems


def openai_problems(body: Json) -> list[str]:
    """What z.ai's OpenAI-format endpoint would reject in this body (model checked elsewhere)."""
    problems = [] if "messages" in body else ["messages: field required"]
    if "max_completion_tokens" in body:
        body = {k: v for k, v in body.items() if k != "max_completion_tokens"}
        problems.append("max_completion_tokens: not supported, use max_tokens")
    problems += _field_problems(body, OPENAI_FIELDS, OPENAI_CHECKS)
    if "messages" in body:
        problems += openai_problems_of(body["messages"])
    return problems


# ---------------------------------------------------------------------------- content


def message_blocks(messages: object) -> Iterable[tuple[int, int, Json]]:
    """(message index, block index, block) for every dict block, tool_result contents included."""
    for i, message in enumerate(messages if isinstance(messages, list) else ()):
        content = message.get("content") if isinstance(message, dict) else None
        for j, block in enumerate(content if isinstance(content, list) else ()):
            if not isinstance(block, dict):
                continue
            yield i, j, block
            inner = block.get("content")
            for part in inner if isinstance(inner, list) else ():
                if isinstance(part, dict):
                    yield i, j, part


def media_count(messages: object) -> int:
    """How many images and videos the messages of either format carry."""
    kinds = ("image", "image_url", "video_url")
    return sum(block.get("type") in kinds for _, _, block in message_blocks(messages))


def requested_output(body: Json) -> int:
    """The max_tokens a request asks for (0 when absent): the window must hold it too."""
    value = body.get("max_tokens")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def last_prompt_text(messages: object) -> str:
    """Text of the latest user (or tool) turn in either format: what the echo reply repeats."""
    for message in reversed(messages if isinstance(messages, list) else []):
        if isinstance(message, dict) and message.get("role") in ("user", "tool"):
            return _text_of(message.get("content"))
    return ""


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    texts = (
        [b.get("text") for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    )
    if not any(isinstance(t, str) for t in texts) and isinstance(content, list):
        # a turn of tool results only: echo what the tools returned
        texts = [_text_of(b.get("content")) for b in content if isinstance(b, dict)]
    return "\n".join(t for t in texts if isinstance(t, str) and t)


# ---------------------------------------------------------------------------- error bodies

ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}
OVERFLOW_BODY = {"error": {"code": "1261", "message": "Prompt exceeds max length"}}


def error_body(endpoint: str, status: int, message: str, code: str | None = None) -> Json:
    """An error in the endpoint's format: Anthropic's typed error or z.ai's coded one."""
    if endpoint == "anthropic":
        kind = ANTHROPIC_ERROR_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"code": code or str(status), "message": message}}
