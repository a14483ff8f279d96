"""Tables of valid and invalid conversations for both wire formats' validators."""

from __future__ import annotations

from typing import Any

import pytest

from context.validation import validate_conversation, validate_openai_messages

# ---------------------------------------------------------------------------- Anthropic helpers


def user(*content: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(content) if len(content) != 1 else _one(content[0])}


def assistant(*content: Any) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": list(content) if len(content) != 1 else _one(content[0]),
    }


def _one(item: Any) -> Any:
    return item if isinstance(item, str) else [item]


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(tool_id: str, name: str = "lookup", input_: Any = None) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": input_ or {}}


def tool_result(tool_id: str, content: Any = "ok") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content}


def image(source: dict[str, Any]) -> dict[str, Any]:
    return {"type": "image", "source": source}


PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
THINKING = {"type": "thinking", "thinking": "let me see", "signature": "c2ln"}


# ---------------------------------------------------------------------------- Anthropic: valid

VALID_CONVERSATIONS = {
    "plain string": [user("hi")],
    "block list": [user(text("hi"), image(PNG))],
    "url image": [user(image({"type": "url", "url": "https://example.com/a.png"}))],
    "multi turn": [user("hi"), assistant("hello"), user("bye")],
    "prefill": [user("hi"), assistant("hel")],
    "tool round trip": [
        user("weather?"),
        assistant(text("checking"), tool_use("toolu_1", input_={"city": "Oslo"})),
        user(tool_result("toolu_1", "rain"), text("thanks")),
    ],
    "parallel tools": [
        user("two things"),
        assistant(tool_use("toolu_1"), tool_use("toolu_2")),
        user(tool_result("toolu_2"), tool_result("toolu_1", [text("done"), image(PNG)])),
        assistant("both done"),
    ],
    "tool_result without content": [
        user("go"),
        assistant(tool_use("toolu_1")),
        user({"type": "tool_result", "tool_use_id": "toolu_1", "is_error": True}),
    ],
    "thinking and redacted": [
        user("think"),
        assistant(THINKING, {"type": "redacted_thinking", "data": "EmwK"}, text("answer")),
        user("ok"),
    ],
    "document": [user({"type": "document", "source": {"type": "text", "data": "x"}}, text("sum"))],
}


@pytest.mark.parametrize("messages", VALID_CONVERSATIONS.values(), ids=VALID_CONVERSATIONS.keys())
def test_valid_conversations_have_no_problems(messages: list[dict[str, Any]]) -> None:
    assert validate_conversation(messages) == []


@pytest.mark.parametrize("system", ["", "be brief", [text("be brief"), text("and kind")]])
def test_valid_system_prompts(system: object) -> None:
    assert validate_conversation([user("hi")], system) == []


# ---------------------------------------------------------------------------- Anthropic: invalid

INVALID_CONVERSATIONS = [
    ("no messages", [], "at least one message"),
    ("not a list", "hi", "at least one message"),
    ("message not object", ["hi"], "messages[0]: must be an object"),
    ("system role", [{"role": "system", "content": "x"}, user("hi")], "messages[0].role"),
    ("first is assistant", [assistant("hi"), user("x")], "first message must be 'user'"),
    ("empty string", [user("")], "messages[0].content: text must not be empty"),
    ("whitespace string", [user("  \n")], "whitespace-only"),
    ("empty list", [{"role": "user", "content": []}], "must not be an empty list"),
    ("content null", [{"role": "user", "content": None}], "must be a string or a list"),
    ("empty text block", [user(text(""), text("x"))], "messages[0].content[0]: text block"),
    ("blank text block", [user(text(" "), text("x"))], "whitespace-only"),
    ("text not str", [user({"type": "text", "text": 3})], "content[0].text: must be a string"),
    ("unknown block", [user({"type": "audio"})], "unknown block type 'audio'"),
    ("block not object", [user("a", "b")], "messages[0].content[0]: must be an object"),
    (
        "bad media type",
        [user(image({"type": "base64", "media_type": "image/bmp", "data": "x"}))],
        "unsupported image type 'image/bmp'",
    ),
    (
        "missing data",
        [user(image({"type": "base64", "media_type": "image/png"}))],
        "source.data",
    ),
    ("url without url", [user(image({"type": "url"}))], "source.url: required"),
    ("bad source type", [user(image({"type": "file"}))], "must be 'base64' or 'url'"),
    ("source not object", [user({"type": "image"})], "source: must be an object"),
    (
        "tool_result answers nothing",
        [user("x"), assistant("y"), user(tool_result("toolu_9"))],
        "messages[2].content[0]: tool_result tool_use_id 'toolu_9' answers no tool_use "
        "in messages[1]",
    ),
    (
        "tool_result answers older turn",
        [
            user("x"),
            assistant(tool_use("toolu_1")),
            user(tool_result("toolu_1")),
            assistant("done"),
            user(tool_result("toolu_1")),
        ],
        "messages[4].content[0]: tool_result tool_use_id 'toolu_1' answers no tool_use",
    ),
    (
        "tool_result first message",
        [user(tool_result("toolu_1"))],
        "answers no tool_use in any earlier message",
    ),
    (
        "tool_result after text",
        [user("x"), assistant(tool_use("toolu_1")), user(text("here"), tool_result("toolu_1"))],
        "messages[2].content[1]: tool_result blocks must come before",
    ),
    (
        "tool_use unanswered",
        [
            user("x"),
            assistant(tool_use("toolu_1"), tool_use("toolu_2")),
            user(tool_result("toolu_1")),
        ],
        "messages[1].content[1]: tool_use 'toolu_2' is not answered by a tool_result "
        "in messages[2]",
    ),
    (
        "tool_use at the end",
        [user("x"), assistant(tool_use("toolu_1"))],
        "tool_use 'toolu_1' is not answered",
    ),
    (
        "tool_use answered too late",
        [user("x"), assistant(tool_use("toolu_1")), user("wait"), user(tool_result("toolu_1"))],
        "tool_use 'toolu_1' is not answered by a tool_result in messages[2]",
    ),
    (
        "duplicate tool_use id",
        [
            user("x"),
            assistant(tool_use("toolu_1")),
            user(tool_result("toolu_1")),
            assistant(tool_use("toolu_1")),
            user(tool_result("toolu_1")),
        ],
        "messages[3].content[0]: tool_use id 'toolu_1' repeats an id of messages[1]",
    ),
    (
        "tool_result twice",
        [
            user("x"),
            assistant(tool_use("toolu_1")),
            user(tool_result("toolu_1"), tool_result("toolu_1")),
        ],
        "answers tool_use 'toolu_1' a second time",
    ),
    (
        "tool_use in user",
        [user(tool_use("toolu_1"))],
        "belongs in the assistant's message, not user's",
    ),
    (
        "tool_result in assistant",
        [user("x"), assistant(tool_result("toolu_1"))],
        "a tool_result block belongs in the user's message",
    ),
    (
        "tool_use input not dict",
        [
            user("x"),
            assistant({**tool_use("toolu_1"), "input": "[]"}),
            user(tool_result("toolu_1")),
        ],
        "content[0].input: must be an object",
    ),
    (
        "tool_use without name",
        [user("x"), assistant({**tool_use("toolu_1"), "name": ""}), user(tool_result("toolu_1"))],
        "content[0].name: must be a non-empty string",
    ),
    (
        "tool_result bad content part",
        [user("x"), assistant(tool_use("t")), user(tool_result("t", [{"type": "tool_use"}]))],
        "content[0].content[0]: must be a text or image block",
    ),
    (
        "tool_result empty text part",
        [user("x"), assistant(tool_use("t")), user(tool_result("t", [text("")]))],
        "content[0].content[0]: text block must not be empty",
    ),
    (
        "tool_result is_error not bool",
        [user("x"), assistant(tool_use("t")), user({**tool_result("t"), "is_error": "yes"})],
        "is_error: must be a boolean",
    ),
    (
        "thinking without signature",
        [user("x"), assistant({"type": "thinking", "thinking": "hm"}, text("y"))],
        "messages[1].content[0].signature",
    ),
    (
        "thinking signature not str",
        [user("x"), assistant({**THINKING, "signature": None}, text("y"))],
        "signature",
    ),
    ("thinking in user", [user(THINKING)], "belongs in the assistant's message, not user's"),
    (
        "redacted without data",
        [user("x"), assistant({"type": "redacted_thinking"})],
        "data: must be a non-empty string",
    ),
    ("document without source", [user({"type": "document"})], "source: must be an object"),
]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [case[1:] for case in INVALID_CONVERSATIONS],
    ids=[case[0] for case in INVALID_CONVERSATIONS],
)
def test_invalid_conversations_name_the_problem(messages: Any, expected: str) -> None:
    problems = validate_conversation(messages)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("system", "expected"),
    [
        (3, "system: must be a string or a list"),
        ([text("")], "system[0]: text block must not be empty"),
        (["be brief"], "system[0]: must be a text block"),
        ([image(PNG)], "system[0]: must be a text block"),
    ],
)
def test_invalid_system_prompts(system: object, expected: str) -> None:
    problems = validate_conversation([user("hi")], system)
    assert any(expected in problem for problem in problems), problems


def test_every_problem_is_reported_not_just_the_first() -> None:
    problems = validate_conversation([assistant(text("")), user(tool_result("x"))], 5)
    assert len(problems) >= 4, problems


# ---------------------------------------------------------------------------- OpenAI helpers


def call(call_id: str, name: str = "lookup", arguments: Any = '{"q": 1}') -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def calls(*tool_calls: dict[str, Any], content: Any = None) -> dict[str, Any]:
    return {"role": "assistant", "content": content, "tool_calls": list(tool_calls)}


def tool(call_id: str, content: Any = "ok") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def msg(role: str, content: Any) -> dict[str, Any]:
    return {"role": role, "content": content}


IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBO"}}

# ---------------------------------------------------------------------------- OpenAI: valid

VALID_OPENAI = {
    "plain": [msg("user", "hi")],
    "system first": [msg("system", "be brief"), msg("user", "hi")],
    "parts": [msg("user", [{"type": "text", "text": "what"}, IMAGE_PART])],
    "multi turn": [msg("user", "hi"), msg("assistant", "hello"), msg("user", "bye")],
    "tool round trip": [
        msg("user", "weather?"),
        calls(call("call_1")),
        tool("call_1", "rain"),
        msg("assistant", "it rains"),
    ],
    "parallel calls answered out of order": [
        msg("user", "two"),
        calls(call("call_1"), call("call_2"), content=""),
        tool("call_2"),
        tool("call_1", [{"type": "text", "text": "done"}]),
        msg("user", "thanks"),
    ],
    "system between tool messages": [
        msg("user", "x"),
        calls(call("call_1"), call("call_2")),
        tool("call_1"),
        msg("system", "note"),
        tool("call_2"),
    ],
    "empty tool output": [msg("user", "x"), calls(call("call_1")), tool("call_1", "")],
    "reasoning content": [
        msg("user", "x"),
        {"role": "assistant", "content": "y", "reasoning_content": "because"},
        msg("user", "z"),
    ],
}


@pytest.mark.parametrize("messages", VALID_OPENAI.values(), ids=VALID_OPENAI.keys())
def test_valid_openai_messages_have_no_problems(messages: list[dict[str, Any]]) -> None:
    assert validate_openai_messages(messages) == []


# ---------------------------------------------------------------------------- OpenAI: invalid

INVALID_OPENAI = [
    ("no messages", [], "at least one message"),
    ("not an object", [3], "messages[0]: must be an object"),
    ("unknown role", [msg("developer", "x")], "messages[0].role"),
    ("empty user", [msg("user", "")], "messages[0].content: must not be empty"),
    ("empty user list", [msg("user", [])], "must not be an empty list"),
    ("user content null", [msg("user", None)], "must be a string or a list"),
    ("empty text part", [msg("user", [{"type": "text", "text": ""}])], "content[0].text"),
    ("unknown part", [msg("user", [{"type": "audio"}])], "unknown content part type 'audio'"),
    ("image without url", [msg("user", [{"type": "image_url", "image_url": {}}])], "url: required"),
    ("image in system", [msg("system", [IMAGE_PART]), msg("user", "x")], "only text parts"),
    ("assistant empty", [msg("user", "x"), msg("assistant", None)], "needs content or tool_calls"),
    ("empty tool_calls", [msg("user", "x"), calls()], "tool_calls: must be a non-empty list"),
    (
        "call without id",
        [msg("user", "x"), calls({**call("c"), "id": ""}), tool("c")],
        "tool_calls[0].id",
    ),
    (
        "call wrong type",
        [msg("user", "x"), calls({**call("c"), "type": "tool"}), tool("c")],
        "tool_calls[0].type: must be 'function'",
    ),
    (
        "call without name",
        [msg("user", "x"), calls(call("c", name="")), tool("c")],
        "function.name",
    ),
    (
        "arguments not json",
        [msg("user", "x"), calls(call("c", arguments="{oops")), tool("c")],
        "function.arguments: is not valid JSON",
    ),
    (
        "arguments dict",
        [msg("user", "x"), calls(call("c", arguments={"q": 1})), tool("c")],
        "function.arguments: must be a JSON string",
    ),
    (
        "function missing",
        [msg("user", "x"), calls({"id": "c", "type": "function"}), tool("c")],
        "function: must be an object",
    ),
    ("tool without id", [msg("user", "x"), calls(call("c")), tool("c"), tool("")], "tool_call_id"),
    (
        "tool answers nothing",
        [msg("user", "x"), calls(call("c")), tool("c"), tool("zzz")],
        "messages[3]: tool message tool_call_id 'zzz' answers no tool_call of messages[1]",
    ),
    (
        "tool with no assistant",
        [msg("user", "x"), tool("c")],
        "answers no tool_call of any preceding assistant message",
    ),
    (
        "tool after user",
        [msg("user", "x"), calls(call("c")), msg("user", "y"), tool("c")],
        "messages[1]: tool_call 'c' is not answered",
    ),
    (
        "call unanswered at end",
        [msg("user", "x"), calls(call("c1"), call("c2")), tool("c1")],
        "messages[1]: tool_call 'c2' is not answered by a following tool message",
    ),
    (
        "answered twice",
        [msg("user", "x"), calls(call("c")), tool("c"), tool("c")],
        "answers tool_call 'c' a second time",
    ),
    (
        "duplicate call ids",
        [msg("user", "x"), calls(call("c"), call("c")), tool("c")],
        "tool_calls: id 'c' appears more than once",
    ),
    ("tool content dict", [msg("user", "x"), calls(call("c")), tool("c", {})], "content: must be"),
]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [case[1:] for case in INVALID_OPENAI],
    ids=[case[0] for case in INVALID_OPENAI],
)
def test_invalid_openai_messages_name_the_problem(messages: Any, expected: str) -> None:
    problems = validate_openai_messages(messages)
    assert any(expected in problem for problem in problems), problems
