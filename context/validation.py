"""Checks that a conversation is one the upstream accepts, in either wire format.

DESIGN.md §4: whatever the proxy forwards must pass the upstream's own validation. Truncation,
condensation, the tests and `tests/fake_upstream.py` all call these two functions, so "valid"
means one thing everywhere. Both are pure and return human-readable problems, empty when valid:

    >>> validate_conversation([{"role": "user", "content": "hi"}])
    []
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
OPENAI_ROLES = frozenset({"system", "user", "assistant", "tool"})
OPENAI_PART_TYPES = frozenset({"text", "image_url", "video_url", "file_url"})

# Blocks the Anthropic API accepts in one role only.
_BLOCK_ROLE = {
    "tool_use": "assistant",
    "thinking": "assistant",
    "redacted_thinking": "assistant",
    "tool_result": "user",
}

Problems = list[str]


# ---------------------------------------------------------------------------- Anthropic format


def validate_conversation(messages: list[dict[str, Any]], system: object = None) -> Problems:
    """Return the problems the Anthropic Messages API would report for `system` + `messages`."""
    problems = _system_problems(system)
    if not isinstance(messages, list) or not messages:
        return [*problems, "messages: at least one message is required"]
    for i, message in enumerate(messages):
        problems += _message_problems(i, message)
    if _role(messages[0]) != "user":
        problems.append(
            f"messages[0].role: the first message must be 'user', got {_role(messages[0])!r}"
        )
    problems += _tool_use_problems(messages)
    for i in range(len(messages)):
        if _role(messages[i]) == "user":
            problems += _tool_result_problems(messages, i)
    return problems


def _system_problems(system: object) -> Problems:
    if system is None or isinstance(system, str):
        return []
    if not isinstance(system, list):
        return ["system: must be a string or a list of text blocks"]
    problems: Problems = []
    for j, block in enumerate(system):
        where = f"system[{j}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            problems.append(f"{where}: must be a text block")
        else:
            problems += _text_problems(where, block)
    return problems


def _message_problems(i: int, message: object) -> Problems:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        return [f"{where}: must be an object"]
    role = message.get("role")
    problems: Problems = []
    if role not in ("user", "assistant"):
        problems.append(f"{where}.role: must be 'user' or 'assistant', got {role!r}")
    content = message.get("content")
    if isinstance(content, str):
        if not content.strip():
            problems.append(f"{where}.content: text must not be empty or whitespace-only")
    elif isinstance(content, list):
        if not content:
            problems.append(f"{where}.content: must not be an empty list")
        for j, block in enumerate(content):
            problems += _block_problems(f"{where}.content[{j}]", block, role)
    else:
        problems.append(f"{where}.content: must be a string or a list of content blocks")
    return problems


def _block_problems(where: str, block: object, role: object) -> Problems:
    if not isinstance(block, dict):
        return [f"{where}: must be an object"]
    kind = block.get("type")
    check = _BLOCK_CHECKS.get(kind) if isinstance(kind, str) else None
    if check is None:
        return [f"{where}: unknown block type {kind!r}"]
    problems = check(where, block)
    wanted_role = _BLOCK_ROLE.get(str(kind))
    if wanted_role and role in ("user", "assistant") and role != wanted_role:
        problems.append(
            f"{where}: a {kind} block belongs in the {wanted_role}'s message, not {role}'s"
        )
    return problems


def _text_problems(where: str, block: dict[str, Any]) -> Problems:
    text = block.get("text")
    if not isinstance(text, str):
        return [f"{where}.text: must be a string"]
    if not text.strip():
        return [f"{where}: text block must not be empty or whitespace-only"]
    return []


def _image_problems(where: str, block: dict[str, Any]) -> Problems:
    source = block.get("source")
    if not isinstance(source, dict):
        return [f"{where}.source: must be an object"]
    if source.get("type") == "base64":
        problems = []
        media_type = source.get("media_type")
        if not isinstance(media_type, str) or media_type not in IMAGE_MEDIA_TYPES:
            media = source.get("media_type")
            problems.append(f"{where}.source.media_type: unsupported image type {media!r}")
        if not _nonempty_str(source.get("data")):
            problems.append(f"{where}.source.data: must be a non-empty base64 string")
        return problems
    if source.get("type") == "url":
        return [] if _nonempty_str(source.get("url")) else [f"{where}.source.url: required"]
    return [f"{where}.source.type: must be 'base64' or 'url', got {source.get('type')!r}"]


def _tool_use_block_problems(where: str, block: dict[str, Any]) -> Problems:
    problems = [
        f"{where}.{key}: must be a non-empty string"
        for key in ("id", "name")
        if not _nonempty_str(block.get(key))
    ]
    if not isinstance(block.get("input"), dict):
        problems.append(f"{where}.input: must be an object")
    return problems


def _tool_result_block_problems(where: str, block: dict[str, Any]) -> Problems:
    problems: Problems = []
    if not _nonempty_str(block.get("tool_use_id")):
        problems.append(f"{where}.tool_use_id: must be a non-empty string")
    if "is_error" in block and not isinstance(block["is_error"], bool):
        problems.append(f"{where}.is_error: must be a boolean")
    content = block.get("content")
    if content is None or isinstance(content, str):
        return problems
    if not isinstance(content, list):
        return [*problems, f"{where}.content: must be a string or a list of text/image blocks"]
    for k, part in enumerate(content):
        part_where = f"{where}.content[{k}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            problems += _text_problems(part_where, part)
        elif kind == "image":
            problems += _image_problems(part_where, part)
        else:
            problems.append(f"{part_where}: must be a text or image block")
    return problems


def _thinking_problems(where: str, block: dict[str, Any]) -> Problems:
    problems: Problems = []
    if not isinstance(block.get("thinking"), str):
        problems.append(f"{where}.thinking: must be a string")
    if not isinstance(block.get("signature"), str):
        problems.append(f"{where}.signature: a thinking block needs its string signature")
    return problems


def _redacted_thinking_problems(where: str, block: dict[str, Any]) -> Problems:
    return [] if _nonempty_str(block.get("data")) else [f"{where}.data: must be a non-empty string"]


def _document_problems(where: str, block: dict[str, Any]) -> Problems:
    return [] if isinstance(block.get("source"), dict) else [f"{where}.source: must be an object"]


_BLOCK_CHECKS: dict[str, Callable[[str, dict[str, Any]], Problems]] = {
    "text": _text_problems,
    "image": _image_problems,
    "tool_use": _tool_use_block_problems,
    "tool_result": _tool_result_block_problems,
    "thinking": _thinking_problems,
    "redacted_thinking": _redacted_thinking_problems,
    "document": _document_problems,
}


def _tool_use_problems(messages: list[Any]) -> Problems:
    """Every tool_use id is unique and answered by a tool_result in the very next message."""
    problems: Problems = []
    first_seen: dict[str, int] = {}
    for i, message in enumerate(messages):
        if _role(message) != "assistant":
            continue
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered = _result_ids(following) if _role(following) == "user" else set()
        for j, block in _blocks_of(message, "tool_use"):
            tool_id = block.get("id")
            if isinstance(tool_id, str):
                where = f"messages[{i}].content[{j}]"
                problems += _repeated_id_problems(where, tool_id, first_seen.get(tool_id))
                first_seen.setdefault(tool_id, i)
                if tool_id not in answered:
                    problems.append(
                        f"{where}: tool_use {tool_id!r} is not answered by a tool_result "
                        f"in messages[{i + 1}]"
                    )
    return problems


def _repeated_id_problems(where: str, tool_id: str, seen_in: int | None) -> Problems:
    if seen_in is None:
        return []
    return [f"{where}: tool_use id {tool_id!r} repeats an id of messages[{seen_in}]"]


def _tool_result_problems(messages: list[Any], i: int) -> Problems:
    """Tool results answer the assistant message right before, once each, ahead of other blocks."""
    previous = messages[i - 1] if i > 0 and _role(messages[i - 1]) == "assistant" else None
    offered = {b.get("id") for _, b in _blocks_of(previous, "tool_use")}
    answerable = f"messages[{i - 1}]" if i > 0 else "any earlier message (there is none)"
    problems: Problems = []
    answered: set[object] = set()
    other_block_seen = False
    for j, block in enumerate(_content_list(messages[i])):
        where = f"messages[{i}].content[{j}]"
        if block.get("type") != "tool_result":
            other_block_seen = True
            continue
        tool_id = block.get("tool_use_id")
        if tool_id not in offered:
            problems.append(
                f"{where}: tool_result tool_use_id {tool_id!r} answers no tool_use in {answerable}"
            )
        elif tool_id in answered:
            problems.append(f"{where}: tool_result answers tool_use {tool_id!r} a second time")
        answered.add(tool_id)
        if other_block_seen:
            problems.append(f"{where}: tool_result blocks must come before any other block")
    return problems


def _role(message: object) -> object:
    return message.get("role") if isinstance(message, dict) else None


def _content_list(message: object) -> list[dict[str, Any]]:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [block for block in content if isinstance(block, dict)]


def _blocks_of(message: object, kind: str) -> list[tuple[int, dict[str, Any]]]:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return []
    return [(j, b) for j, b in enumerate(content) if isinstance(b, dict) and b.get("type") == kind]


def _result_ids(message: object) -> set[object]:
    return {b.get("tool_use_id") for _, b in _blocks_of(message, "tool_result")}


def _nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


# ---------------------------------------------------------------------------- OpenAI format


def validate_openai_messages(messages: list[dict[str, Any]]) -> Problems:
    """Return the problems an OpenAI-format chat-completions upstream would report."""
    if not isinstance(messages, list) or not messages:
        return ["messages: at least one message is required"]
    problems: Problems = []
    for i, message in enumerate(messages):
        problems += _openai_message_problems(i, message)
    return problems + _openai_tool_flow_problems(messages)


def _openai_message_problems(i: int, message: object) -> Problems:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        return [f"{where}: must be an object"]
    role = message.get("role")
    if role not in OPENAI_ROLES:
        return [f"{where}.role: must be one of system/user/assistant/tool, got {role!r}"]
    content = message.get("content")
    if role == "assistant":
        return _openai_assistant_problems(where, message)
    if role == "tool":
        problems = _parts_problems(where, content, text_only=True, allow_empty=True)
        if not _nonempty_str(message.get("tool_call_id")):
            problems.append(f"{where}.tool_call_id: a tool message needs the id it answers")
        return problems
    return _parts_problems(where, content, text_only=role == "system", allow_empty=False)


def _openai_assistant_problems(where: str, message: dict[str, Any]) -> Problems:
    content = message.get("content")
    tool_calls = message.get("tool_calls")
    problems: Problems = []
    if content is not None:
        problems += _parts_problems(where, content, text_only=True, allow_empty=True)
    if tool_calls is not None:
        if not isinstance(tool_calls, list) or not tool_calls:
            problems.append(f"{where}.tool_calls: must be a non-empty list when present")
        else:
            for k, call in enumerate(tool_calls):
                problems += _tool_call_problems(f"{where}.tool_calls[{k}]", call)
    elif not content:
        problems.append(f"{where}: an assistant message needs content or tool_calls")
    return problems


def _parts_problems(where: str, content: object, *, text_only: bool, allow_empty: bool) -> Problems:
    if isinstance(content, str):
        return [] if content or allow_empty else [f"{where}.content: must not be empty"]
    if not isinstance(content, list):
        return [f"{where}.content: must be a string or a list of content parts"]
    if not content and not allow_empty:
        return [f"{where}.content: must not be an empty list"]
    problems: Problems = []
    for k, part in enumerate(content):
        problems += _part_problems(f"{where}.content[{k}]", part, text_only=text_only)
    return problems


def _part_problems(where: str, part: object, *, text_only: bool) -> Problems:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind not in OPENAI_PART_TYPES or not isinstance(part, dict):
        return [f"{where}: unknown content part type {kind!r}"]
    if kind == "text":
        return [] if _nonempty_str(part.get("text")) else [f"{where}.text: must not be empty"]
    if text_only:
        return [f"{where}: only text parts are allowed in this message"]
    media = part.get(kind)
    if not isinstance(media, dict) or not _nonempty_str(media.get("url")):
        return [f"{where}.{kind}.url: required"]
    return []


def _tool_call_problems(where: str, call: object) -> Problems:
    if not isinstance(call, dict):
        return [f"{where}: must be an object"]
    problems: Problems = []
    if not _nonempty_str(call.get("id")):
        problems.append(f"{where}.id: must be a non-empty string")
    if call.get("type") != "function":
        problems.append(f"{where}.type: must be 'function', got {call.get('type')!r}")
    function = call.get("function")
    if not isinstance(function, dict):
        return [*problems, f"{where}.function: must be an object"]
    if not _nonempty_str(function.get("name")):
        problems.append(f"{where}.function.name: must be a non-empty string")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        problems.append(f"{where}.function.arguments: must be a JSON string")
    elif not _parses(arguments):
        problems.append(f"{where}.function.arguments: is not valid JSON: {arguments[:40]!r}")
    return problems


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _openai_tool_flow_problems(messages: list[Any]) -> Problems:
    """Tool messages answer the latest assistant's tool_calls, all of them, before the next turn."""
    problems: Problems = []
    owner: int | None = None  # index of the assistant message whose calls are open
    open_ids: list[str] = []
    answered: set[str] = set()
    for i, message in enumerate(messages):
        role = _role(message)
        if role in ("user", "assistant"):
            problems += _unanswered_calls(owner, open_ids, answered)
            owner, open_ids, answered = None, [], set()
        if role == "assistant":
            owner, open_ids = i, _call_ids(message)
            problems += _duplicate_call_problems(i, open_ids)
        elif role == "tool":
            problems += _tool_message_problems(i, message, owner, open_ids, answered)
    return problems + _unanswered_calls(owner, open_ids, answered)


def _tool_message_problems(
    i: int, message: dict[str, Any], owner: int | None, open_ids: list[str], answered: set[str]
) -> Problems:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        return []  # already reported by the message check
    if call_id not in open_ids:
        answers = f"messages[{owner}]" if owner is not None else "any preceding assistant message"
        where = f"messages[{i}]"
        return [f"{where}: tool message tool_call_id {call_id!r} answers no tool_call of {answers}"]
    if call_id in answered:
        return [f"messages[{i}]: tool message answers tool_call {call_id!r} a second time"]
    answered.add(call_id)
    return []


def _unanswered_calls(owner: int | None, open_ids: list[str], answered: set[str]) -> Problems:
    return [
        f"messages[{owner}]: tool_call {call_id!r} is not answered by a following tool message"
        for call_id in open_ids
        if call_id not in answered
    ]


def _duplicate_call_problems(i: int, ids: list[str]) -> Problems:
    repeated = sorted({call_id for call_id in ids if ids.count(call_id) > 1})
    return [
        f"messages[{i}].tool_calls: id {call_id!r} appears more than once" for call_id in repeated
    ]


def _call_ids(message: dict[str, Any]) -> list[str]:
    calls = message.get("tool_calls")
    if not isinstance(calls, list):
        return []
    return [c["id"] for c in calls if isinstance(c, dict) and isinstance(c.get("id"), str)]
