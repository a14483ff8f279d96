"""The fake's own conversation rules, written from z.ai's and Anthropic's documented behaviour.

Deliberately independent of the proxy (it imports nothing from the project), so a wrong rule in
the proxy's validation shows up as a 400 here. Each problem is one readable line naming the
place (`messages[2].content[0]: ...`); an empty list means the conversation is accepted.

Anthropic Messages:
- messages is a non-empty list; roles are user/assistant only; the first message is a user one;
- content is a non-empty string or a non-empty list of blocks; text blocks hold non-whitespace
  text (also inside tool_result contents and system blocks);
- tool_use/thinking/redacted_thinking only in assistant messages, tool_result only in user ones,
  and in a user message every tool_result comes before any other block;
- tool_use ids are unique, input is an object, and each is answered by a tool_result in the
  immediately next message (a user one); each tool_result answers a tool_use of the immediately
  preceding assistant message, once;
- an image has a base64 source with data and an allowed media_type, or a url source.

OpenAI chat completions (z.ai's coding endpoint):
- roles are system/user/assistant/tool; the first non-system message is a user one;
- user content is never empty; an assistant message has content or tool_calls;
- a tool call has an id, type "function", a function name and arguments that are a JSON string
  of an object; ids are unique;
- a tool message answers (by tool_call_id) a call of the nearest preceding assistant message with
  only tool messages in between, once; every call is answered before the next non-tool message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

ANTHROPIC_BLOCKS = {
    "user": frozenset({"text", "image", "document", "tool_result"}),
    "assistant": frozenset({"text", "tool_use", "thinking", "redacted_thinking"}),
}
IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
OPENAI_ROLES = ("system", "user", "assistant", "tool")
OPENAI_PARTS = frozenset({"text", "image_url", "video_url"})


def _blank(text: object) -> bool:
    """True unless `text` is a string with something other than whitespace in it."""
    return not isinstance(text, str) or not text.strip()


def _named(value: object) -> bool:
    return isinstance(value, str) and bool(value)


# ---------------------------------------------------------------------------- Anthropic


def anthropic_system_problems(system: object) -> list[str]:
    """Problems of an Anthropic `system`: absent, a string, or a list of non-empty text blocks."""
    if system is None or isinstance(system, str):
        return []
    if not isinstance(system, list):
        return ["system: must be a string or a list of text blocks"]
    problems = []
    for j, block in enumerate(system):
        if not isinstance(block, dict) or block.get("type") != "text":
            problems.append(f"system[{j}]: must be a text block")
        elif _blank(block.get("text")):
            problems.append(f"system[{j}]: text block must not be empty")
    return problems


def anthropic_problems_of(messages: object, system: object = None) -> list[str]:
    """Every rule the Anthropic endpoint checks on `system` and `messages`."""
    problems = anthropic_system_problems(system)
    if not isinstance(messages, list):
        return [*problems, "messages: must be a list"]
    if not messages:
        return [*problems, "messages: at least one message is required"]
    for i, message in enumerate(messages):
        problems += _anthropic_message_problems(i, message)
    if problems:
        return problems  # pairing rules read well-formed messages only
    return _anthropic_pairing_problems(messages)


def _anthropic_message_problems(i: int, message: object) -> list[str]:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        return [f"{where}: must be an object"]
    role = message.get("role")
    if role not in ANTHROPIC_BLOCKS:
        return [f"{where}.role: must be 'user' or 'assistant', got {role!r}"]
    if i == 0 and role != "user":
        return [f"{where}.role: the first message must be a user message"]
    content = message.get("content")
    if isinstance(content, str):
        return [] if content else [f"{where}.content: must not be empty"]
    if not isinstance(content, list):
        return [f"{where}.content: must be a string or a list of content blocks"]
    if not content:
        return [f"{where}.content: must not be empty"]
    problems = []
    for j, block in enumerate(content):
        problems += _anthropic_block_problems(f"{where}.content[{j}]", role, block)
    return problems + _tool_results_first(where, content)


def _anthropic_block_problems(where: str, role: str, block: object) -> list[str]:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        return [f"{where}: must be a content block object with a type"]
    kind = block["type"]
    if kind not in ANTHROPIC_BLOCKS["user"] | ANTHROPIC_BLOCKS["assistant"]:
        return [f"{where}: unknown content block type {kind!r}"]
    if kind not in ANTHROPIC_BLOCKS[role]:
        return [f"{where}: {kind} blocks are not allowed in {role} messages"]
    return BLOCK_CHECKS[kind](where, block)


def _text_problems(where: str, block: dict[str, Any]) -> list[str]:
    return [f"{where}: text block must not be empty"] if _blank(block.get("text")) else []


def _image_problems(where: str, block: dict[str, Any]) -> list[str]:
    source = block.get("source")
    if not isinstance(source, dict) or source.get("type") not in ("base64", "url"):
        return [f"{where}.source: must be a base64 or url image source"]
    if source["type"] == "url":
        return [] if _named(source.get("url")) else [f"{where}.source.url: must not be empty"]
    problems = []
    if source.get("media_type") not in IMAGE_MEDIA_TYPES:
        allowed = ", ".join(sorted(IMAGE_MEDIA_TYPES))
        problems.append(f"{where}.source.media_type: must be one of {allowed}")
    if not _named(source.get("data")):
        problems.append(f"{where}.source.data: must be non-empty base64 data")
    return problems


def _document_problems(where: str, block: dict[str, Any]) -> list[str]:
    return [] if isinstance(block.get("source"), dict) else [f"{where}.source: must be an object"]


def _tool_use_problems(where: str, block: dict[str, Any]) -> list[str]:
    problems = [
        f"{where}.{key}: must be a non-empty string"
        for key in ("id", "name")
        if not _named(block.get(key))
    ]
    if not isinstance(block.get("input"), dict):
        problems.append(f"{where}.input: must be an object")
    return problems


def _thinking_problems(where: str, block: dict[str, Any]) -> list[str]:
    return [
        f"{where}.{key}: must be a string"
        for key in ("thinking", "signature")
        if not isinstance(block.get(key), str)
    ]


def _redacted_problems(where: str, block: dict[str, Any]) -> list[str]:
    return [] if _named(block.get("data")) else [f"{where}.data: must be a non-empty string"]


def _tool_result_problems(where: str, block: dict[str, Any]) -> list[str]:
    problems = [] if _named(block.get("tool_use_id")) else [f"{where}.tool_use_id: required"]
    if "is_error" in block and not isinstance(block["is_error"], bool):
        problems.append(f"{where}.is_error: must be a boolean")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return problems
    if not isinstance(content, list):
        return [*problems, f"{where}.content: must be a string or a list of content blocks"]
    for k, part in enumerate(content):
        inner = f"{where}.content[{k}]"
        if isinstance(part, dict) and part.get("type") in ("text", "image", "document"):
            problems += BLOCK_CHECKS[part["type"]](inner, part)
        else:
            problems.append(f"{inner}: must be a text, image or document block")
    return problems


BLOCK_CHECKS = {
    "text": _text_problems,
    "image": _image_problems,
    "document": _document_problems,
    "tool_use": _tool_use_problems,
    "thinking": _thinking_problems,
    "redacted_thinking": _redacted_problems,
    "tool_result": _tool_result_problems,
}


def _tool_results_first(where: str, content: list[Any]) -> list[str]:
    kinds = [block.get("type") if isinstance(block, dict) else None for block in content]
    seen_other = False
    for j, kind in enumerate(kinds):
        if kind != "tool_result":
            seen_other = True
        elif seen_other:
            return [f"{where}.content[{j}]: tool_result blocks must come before any other content"]
    return []


def _blocks_of(message: dict[str, Any], kind: str) -> Iterator[tuple[int, dict[str, Any]]]:
    content = message["content"]
    for j, block in enumerate(content if isinstance(content, list) else ()):
        if block["type"] == kind:
            yield j, block


def _anthropic_pairing_problems(messages: list[dict[str, Any]]) -> list[str]:
    """tool_use ids unique and answered in the next message; tool_results answer the previous."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, message in enumerate(messages):
        uses = dict((b["id"], j) for j, b in _blocks_of(message, "tool_use"))
        for j, block in _blocks_of(message, "tool_use"):
            if block["id"] in seen:
                problems.append(
                    f"messages[{i}].content[{j}]: tool_use id {block['id']!r} is "
                    "used more than once"
                )
            seen.add(block["id"])
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered = _answered_ids(following) if following and following["role"] == "user" else []
        for tool_id, j in uses.items():
            if tool_id not in answered:
                problems.append(
                    f"messages[{i}].content[{j}]: tool_use {tool_id!r} has no "
                    "tool_result in the next message"
                )
        problems += _result_problems(i, message, messages[i - 1] if i else None)
    return problems


def _answered_ids(message: dict[str, Any]) -> list[str]:
    return [block["tool_use_id"] for _, block in _blocks_of(message, "tool_result")]


def _result_problems(i: int, message: dict[str, Any], previous: dict[str, Any] | None) -> list[str]:
    offered = set()
    if previous is not None and previous["role"] == "assistant":
        offered = {block["id"] for _, block in _blocks_of(previous, "tool_use")}
    problems, answered = [], set()
    for j, block in _blocks_of(message, "tool_result"):
        tool_id = block["tool_use_id"]
        if tool_id not in offered:
            problems.append(
                f"messages[{i}].content[{j}]: tool_result tool_use_id {tool_id!r} "
                "answers no tool_use of the previous message"
            )
        elif tool_id in answered:
            problems.append(f"messages[{i}].content[{j}]: tool_use {tool_id!r} is answered twice")
        answered.add(tool_id)
    return problems


# ---------------------------------------------------------------------------- OpenAI


def openai_problems_of(messages: object) -> list[str]:
    """Every rule z.ai's OpenAI-format endpoint checks on `messages`."""
    if not isinstance(messages, list):
        return ["messages: must be a list"]
    if not messages:
        return ["messages: at least one message is required"]
    problems = []
    for i, message in enumerate(messages):
        problems += _openai_message_problems(i, message)
    if problems:
        return problems  # ordering and pairing rules read well-formed messages only
    return _openai_order_problems(messages) + _openai_pairing_problems(messages)


def _openai_message_problems(i: int, message: object) -> list[str]:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        return [f"{where}: must be an object"]
    role = message.get("role")
    if role not in OPENAI_ROLES:
        return [f"{where}.role: must be one of {', '.join(OPENAI_ROLES)}, got {role!r}"]
    content = message.get("content")
    problems = _content_problems(where, content, allow_none=role == "assistant")
    if role == "user" and not problems and not content:
        problems.append(f"{where}.content: must not be empty")
    if role == "assistant":
        problems += _assistant_problems(where, message)
    if role == "tool" and not _named(message.get("tool_call_id")):
        problems.append(f"{where}.tool_call_id: must be a non-empty string")
    return problems


def _content_problems(where: str, content: object, allow_none: bool) -> list[str]:
    if isinstance(content, str) or (content is None and allow_none):
        return []
    if not isinstance(content, list):
        return [f"{where}.content: must be a string or a list of content parts"]
    problems = []
    for k, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in OPENAI_PARTS:
            problems.append(f"{where}.content[{k}]: must be a text, image_url or video_url part")
        elif part["type"] == "text" and _blank(part.get("text")):
            problems.append(f"{where}.content[{k}]: text must not be empty")
        elif part["type"] != "text" and not _url_of(part):
            problems.append(f"{where}.content[{k}].{part['type']}.url: must not be empty")
    return problems


def _url_of(part: dict[str, Any]) -> str:
    inner = part.get(part["type"])
    url = inner.get("url") if isinstance(inner, dict) else None
    return url if isinstance(url, str) else ""


def _assistant_problems(where: str, message: dict[str, Any]) -> list[str]:
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        return [f"{where}.tool_calls: must be a list"]
    if not calls and not message.get("content"):
        return [f"{where}: an assistant message needs content or tool_calls"]
    reasoning = message.get("reasoning_content")
    problems = (
        []
        if reasoning is None or isinstance(reasoning, str)
        else [f"{where}.reasoning_content: must be a string"]
    )
    for k, call in enumerate(calls or ()):
        problems += _tool_call_problems(f"{where}.tool_calls[{k}]", call)
    return problems


def _tool_call_problems(where: str, call: object) -> list[str]:
    if not isinstance(call, dict):
        return [f"{where}: must be an object"]
    problems = [] if _named(call.get("id")) else [f"{where}.id: must be a non-empty string"]
    if call.get("type") != "function":
        problems.append(f"{where}.type: must be 'function'")
    function = call.get("function")
    if not isinstance(function, dict):
        return [*problems, f"{where}.function: must be an object"]
    if not _named(function.get("name")):
        problems.append(f"{where}.function.name: must be a non-empty string")
    return problems + _arguments_problems(f"{where}.function.arguments", function.get("arguments"))


def _arguments_problems(where: str, arguments: object) -> list[str]:
    if not isinstance(arguments, str):
        return [f"{where}: must be a JSON string"]
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return [f"{where}: is not valid JSON"]
    return [] if isinstance(parsed, dict) else [f"{where}: must encode a JSON object"]


def _openai_order_problems(messages: list[dict[str, Any]]) -> list[str]:
    for i, message in enumerate(messages):
        if message["role"] == "user":
            return []
        if message["role"] != "system":
            return [
                f"messages[{i}].role: the first message after the system messages must be "
                f"a user message, got {message['role']!r}"
            ]
    return []


def _openai_pairing_problems(messages: list[dict[str, Any]]) -> list[str]:
    """Call ids unique; every tool message answers the nearest assistant's call, every call is
    answered before the next non-tool message."""
    problems: list[str] = []
    seen: set[str] = set()
    pending: dict[str, str] = {}  # call id -> where the call was made
    for i, message in enumerate(messages):
        role = message["role"]
        if role == "tool":
            tool_id = message["tool_call_id"]
            if pending.pop(tool_id, None) is None:
                problems.append(
                    f"messages[{i}]: tool_call_id {tool_id!r} answers no pending "
                    "tool_call of the preceding assistant message"
                )
            continue
        problems += _unanswered(pending)
        pending = {}
        for k, call in enumerate(message.get("tool_calls") or ()):
            where = f"messages[{i}].tool_calls[{k}]"
            if call["id"] in seen:
                problems.append(f"{where}: tool_call id {call['id']!r} is used more than once")
            seen.add(call["id"])
            pending[call["id"]] = where
    return problems + _unanswered(pending)


def _unanswered(pending: dict[str, str]) -> list[str]:
    return [
        f"{where}: tool_call {tool_id!r} is not answered by a tool message"
        for tool_id, where in pending.items()
    ]
