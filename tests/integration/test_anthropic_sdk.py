"""The official anthropic SDK against the proxy under gunicorn, with the strict fake z.ai behind."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
import requests

from tests.conftest import PNG
from tests.fake_upstream import FakeUpstream
from tests.integration.servers import Gunicorn
from upstream.sse import iter_sse

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
REPLY = {
    "thinking": "The user wants the weather in two cities; call the tool twice.",
    "text": "Let me check both cities for you.",
    "tool_calls": [
        {"name": "get_weather", "input": {"city": "Oslo"}},
        {"name": "get_weather", "input": {"city": "Rome", "days": [1, 2]}},
    ],
    "interleave": True,
}
# Routes: the Anthropic-format upstream by default, the OpenAI-format one by model suffix.
MODELS = ["glm-4.6", "glm-4.6-openai"]


@pytest.fixture
def sdk(server: Gunicorn) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=server.url, api_key="sk-test", max_retries=0, timeout=20
    ) as client:
        yield client


def ask(model: str, **extra: object) -> dict[str, object]:
    return {
        "model": model,
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": "Weather in Oslo and Rome?"}],
        "tools": [WEATHER_TOOL],
        **extra,
    }


def check_reply(message: anthropic.types.Message, model: str, signed: bool) -> None:
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text", "tool_use", "tool_use"]
    thinking, text, first, second = message.content
    assert thinking.thinking == REPLY["thinking"]
    assert bool(thinking.signature) is signed
    assert text.text == REPLY["text"]
    assert (first.name, first.input) == ("get_weather", {"city": "Oslo"})
    assert (second.name, second.input) == ("get_weather", {"city": "Rome", "days": [1, 2]})
    assert first.id != second.id
    assert message.stop_reason == "tool_use" and message.model == model
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0


@pytest.mark.parametrize("model", MODELS)
def test_create(sdk: anthropic.Anthropic, fake: FakeUpstream, model: str) -> None:
    fake.script(REPLY)
    message = sdk.messages.create(**ask(model, thinking={"type": "enabled", "budget_tokens": 1024}))
    check_reply(message, model, signed=not model.endswith("-openai"))
    assert fake.last.endpoint == ("openai" if model.endswith("-openai") else "anthropic")


@pytest.mark.parametrize("model", MODELS)
def test_stream_accumulates_in_the_sdk(
    sdk: anthropic.Anthropic, fake: FakeUpstream, model: str
) -> None:
    fake.script(REPLY)
    with sdk.messages.stream(
        **ask(model, thinking={"type": "enabled", "budget_tokens": 1024})
    ) as stream:
        events = [event.type for event in stream]
        message = stream.get_final_message()
    check_reply(message, model, signed=not model.endswith("-openai"))
    assert events[0] == "message_start" and events[-1] == "message_stop"


def test_openai_route_stream_has_contiguous_indices_and_an_estimate(
    server: Gunicorn, fake: FakeUpstream
) -> None:
    fake.script(REPLY)
    body = ask("glm-4.6-openai", stream=True)  # type: ignore[arg-type]
    with requests.post(
        server.url + "/v1/messages", json=body, headers={"x-api-key": "k"}, timeout=10, stream=True
    ) as reply:
        events = [(e.event, e.json()) for e in iter_sse(reply.iter_content(chunk_size=None))]
    start = events[0][1]
    assert events[0][0] == "message_start" and start["message"]["usage"]["input_tokens"] > 0
    starts = [e["index"] for name, e in events if name == "content_block_start"]
    stops = [e["index"] for name, e in events if name == "content_block_stop"]
    assert starts == stops == [0, 1, 2, 3]
    for name, event in events:
        assert name == event["type"]
    delta = next(e for name, e in events if name == "message_delta")
    assert delta["delta"]["stop_reason"] == "tool_use"


def test_tool_loop_round_trip_with_signed_thinking(
    sdk: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    fake.check_signatures = True
    try:
        fake.script(REPLY, "Oslo is cold; Rome is warm.")
        first = sdk.messages.create(
            **ask("glm-4.6", thinking={"type": "enabled", "budget_tokens": 1024})
        )
        results = [
            {"type": "tool_result", "tool_use_id": b.id, "content": f"result {i}"}
            for i, b in enumerate(b for b in first.content if b.type == "tool_use")
        ]
        second = sdk.messages.create(
            model="glm-4.6",
            max_tokens=2048,
            tools=[WEATHER_TOOL],
            thinking={"type": "enabled", "budget_tokens": 1024},
            messages=[
                {"role": "user", "content": "Weather in Oslo and Rome?"},
                {"role": "assistant", "content": first.content},
                {"role": "user", "content": results},
            ],
        )
        assert second.content[0].text == "Oslo is cold; Rome is warm."
        sent = fake.last.body["messages"][1]["content"][0]
        assert sent["type"] == "thinking" and sent["signature"] == first.content[0].signature
        assert "thinking_signature_mismatch" not in fake.last.notes
    finally:
        fake.check_signatures = False


def test_vision_turn_reasoning_goes_back_as_plain_text(
    sdk: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    fake.check_signatures = True
    try:
        fake.script({"thinking": "A tiny red pixel.", "text": "It is a pixel."})
        image = {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
        }
        question = {"role": "user", "content": [image, {"type": "text", "text": "What is this?"}]}
        first = sdk.messages.create(model="glm-4.6", max_tokens=2048, messages=[question])
        assert (fake.last.endpoint, fake.last.body["model"]) == ("openai", "glm-4.6v")
        assert first.content[0].type == "thinking" and first.content[0].signature == ""
        # Three human turns later the image is old (IMAGE_AGE_THRESHOLD=3): the text model
        # takes the session, with the image described and the vision turn's reasoning as text.
        follow = [
            question,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "Anything else?"},
            {"role": "user", "content": "Yes, two things."},
            {"role": "assistant", "content": "Go on."},
            {"role": "user", "content": "First, what colour was it?"},
        ]
        second = sdk.messages.create(model="glm-4.6", max_tokens=2048, messages=follow)
        assert second.content[0].text.startswith("echo: First, what colour")
        assert fake.last.endpoint == "anthropic"
        sent = fake.last.body["messages"]
        assert sent[0]["content"][0]["text"].startswith("[Image: A 1x1 PNG image (fake vision")
        assistant = sent[1]["content"]
        assert all(b["type"] != "thinking" for b in assistant)
        assert any("A tiny red pixel." in b.get("text", "") for b in assistant)
    finally:
        fake.check_signatures = False


def test_count_tokens(sdk: anthropic.Anthropic, fake: FakeUpstream) -> None:
    counted = sdk.messages.count_tokens(
        model="glm-4.6",
        system="You are terse.",
        messages=[{"role": "user", "content": "Hello there, how are you today?"}],
        tools=[WEATHER_TOOL],
    )
    assert counted.input_tokens > 10
    bigger = sdk.messages.count_tokens(
        model="glm-4.6",
        system="You are terse.",
        messages=[{"role": "user", "content": "Hello there, how are you today? " * 50}],
        tools=[WEATHER_TOOL],
    )
    assert bigger.input_tokens > counted.input_tokens
    assert fake.requests == [], "count_tokens is answered locally"


CLAUDE_CODE_TOOLS = [
    {
        "name": f"Tool{i}",
        "description": f"Tool number {i} does a thing with files and shells.",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["path"],
            "additionalProperties": False,
            "$schema": "http://json-schema.org/draft-07/schema#",
        },
    }
    for i in range(24)
]


def test_claude_code_shaped_request(server: Gunicorn, fake: FakeUpstream) -> None:
    fake.script(
        {
            "thinking": "Plan the edit.",
            "text": "Done.",
            "tool_calls": [{"name": "Tool3", "input": {"path": "a.py"}}],
        }
    )
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {
                "type": "text",
                "text": "Environment: linux. Be careful.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Fix the bug in a.py"},
                    {"type": "text", "text": ""},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Looking."}]},
            {"role": "system", "content": "<system-reminder>Todo list is empty.</system-reminder>"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}}
                ],
            },
        ],
        "tools": CLAUDE_CODE_TOOLS,
        "thinking": {"type": "adaptive"},
        "metadata": {"user_id": "user_abc_account__session_123"},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "output_config": {"effort": "high"},
        "temperature": 1,
    }
    headers = {
        "x-api-key": "sk-ant-test",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14",
    }
    reply = requests.post(
        server.url + "/v1/messages?beta=true", json=body, headers=headers, timeout=10
    )
    assert reply.status_code == 200, reply.text
    assert "event: message_stop" in reply.text and '"name":"Tool3"' in reply.text
    sent = fake.last
    assert sent.status == 200 and sent.path.endswith("/v1/messages")
    assert sent.headers["anthropic-beta"] == headers["anthropic-beta"]
    assert sent.body["model"] == "glm-4.6" and len(sent.body["tools"]) == 24
    assert sent.body["thinking"]["type"] == "enabled"
    assert "context_management" not in sent.body and "output_config" not in sent.body
    assert [m["role"] for m in sent.body["messages"]] == ["user", "assistant", "user"]
    assert "Todo list is empty." in sent.body["messages"][2]["content"][0]["text"]
    assert sent.body["system"][1]["cache_control"] == {"type": "ephemeral"}
    assert '"model":"claude-sonnet-4-5-20250929"' in reply.text


@pytest.mark.parametrize(
    ("fault", "options", "error", "status"),
    [
        ("rate_limit", {"retry_after": 3}, anthropic.RateLimitError, 429),
        ("http_error", {"status": 500}, anthropic.APIStatusError, 502),
        ("overflow", {}, anthropic.BadRequestError, 400),
        ("timeout", {"seconds": 4}, anthropic.APIStatusError, 504),
    ],
)
def test_errors_in_anthropic_format(sdk, fake, fault, options, error, status) -> None:
    fake.fail_next(fault, **options)
    with pytest.raises(error) as info:
        sdk.messages.create(
            model="glm-4.6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
    assert info.value.status_code == status
    assert info.value.body["type"] == "error" and info.value.body["error"]["message"]


def test_bad_requests_in_anthropic_format(sdk: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(
            model="glm-4.6", max_tokens=64, messages=[{"role": "assistant", "content": "hi"}]
        )
    assert "first message" in info.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        sdk.messages.create(model="glm-4.6", max_tokens=64, messages=[])


def test_stream_dropped_midway_is_an_error_event(
    sdk: anthropic.Anthropic, fake: FakeUpstream
) -> None:
    fake.script("This reply is cut off by the fake upstream before the stream can finish.")
    fake.fail_next("stream_drop", after=4)
    with (
        pytest.raises(anthropic.APIStatusError),
        sdk.messages.stream(
            model="glm-4.6", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream,
    ):
        for _ in stream:
            pass
