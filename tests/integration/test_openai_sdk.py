"""The official openai SDK against the proxy under gunicorn, with the strict fake z.ai behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest
import requests

from tests.conftest import PNG
from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import proxy_env
from tests.integration.servers import Gunicorn

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TWO_CALLS = {
    "text": "Checking both cities.",
    "tool_calls": [
        {"name": "get_weather", "input": {"city": "Oslo", "unit": "c"}},
        {"name": "get_weather", "input": {"city": "Rome", "days": [1, 2, 3]}},
    ],
    "interleave": True,
}


@pytest.fixture
def sdk(server: Gunicorn) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=server.url + "/v1", api_key="sk-test", max_retries=0, timeout=20
    ) as client:
        yield client


def ask(sdk: openai.OpenAI, text: str = "Say hello", **extra: object) -> object:
    return sdk.chat.completions.create(
        model=extra.pop("model", "glm-4.6"), messages=[{"role": "user", "content": text}], **extra
    )


def collect(
    stream: Iterator[object],
) -> tuple[str, str, dict[int, dict[str, str]], str | None, object]:
    """Fold a chat-completions stream by hand: text, reasoning, tool calls, finish, usage."""
    text, reasoning, calls, finish, usage = "", "", {}, None, None
    with stream:  # type: ignore[attr-defined]
        chunks = list(stream)
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            reasoning += (
                getattr(delta, "reasoning_content", None)
                or (delta.model_extra or {}).get("reasoning_content")
                or ""
            )
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] = entry["id"] or call.id or ""
                entry["name"] = entry["name"] or (call.function.name or "")
                entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return text, reasoning, calls, finish, usage


# ---------------------------------------------------------------------------- replies


def test_plain_reply_and_stream_accumulate_to_the_same_text(
    sdk: openai.OpenAI, fake: FakeUpstream
) -> None:
    reply_text = (
        "Hello! This reply is long enough to be split into several stream deltas by the fake."
    )
    fake.script(reply_text, reply_text)
    plain = ask(sdk)
    assert plain.choices[0].message.content == reply_text
    assert plain.choices[0].finish_reason == "stop"
    assert (
        plain.usage.prompt_tokens > 0
        and plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    )
    text, _, _, finish, usage = collect(
        ask(sdk, stream=True, stream_options={"include_usage": True})
    )
    assert text == plain.choices[0].message.content
    assert finish == "stop" and usage is not None and usage.completion_tokens > 0
    assert [r.endpoint for r in fake.requests] == ["anthropic", "anthropic"]


def test_sdk_stream_helper_accumulates(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(
        {"text": "Accumulated by the SDK's own stream helper.", "thinking": "short thought"}
    )
    with sdk.chat.completions.stream(
        model="glm-4.6", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.content == "Accumulated by the SDK's own stream helper."


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["glm-4.6", "glm-4.6-openai"])
def test_parallel_tool_calls(
    sdk: openai.OpenAI, fake: FakeUpstream, stream: bool, model: str
) -> None:
    fake.script(TWO_CALLS)
    result = ask(sdk, "weather in Oslo and Rome?", model=model, tools=[WEATHER_TOOL], stream=stream)
    if stream:
        _, _, calls, finish, _ = collect(result)
        parsed = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
        ids = [c["id"] for _, c in sorted(calls.items())]
    else:
        message = result.choices[0].message
        finish = result.choices[0].finish_reason
        parsed = [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]
        ids = [c.id for c in message.tool_calls]
    assert finish == "tool_calls"
    assert parsed == [
        ("get_weather", {"city": "Oslo", "unit": "c"}),
        ("get_weather", {"city": "Rome", "days": [1, 2, 3]}),
    ]
    assert len(set(ids)) == 2 and all(ids)
    assert fake.last.endpoint == ("openai" if model.endswith("-openai") else "anthropic")


def test_tool_results_go_back_as_a_valid_conversation(
    sdk: openai.OpenAI, fake: FakeUpstream
) -> None:
    fake.script(TWO_CALLS, "Oslo is cold and Rome is warm.")
    first = ask(sdk, "weather?", tools=[WEATHER_TOOL])
    calls = first.choices[0].message.tool_calls
    messages = [
        {"role": "user", "content": "weather?"},
        first.choices[0].message.model_dump(exclude_none=True),
        *(
            {"role": "tool", "tool_call_id": c.id, "content": f"result {i}"}
            for i, c in enumerate(calls)
        ),
    ]
    second = sdk.chat.completions.create(model="glm-4.6", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == "Oslo is cold and Rome is warm."
    sent = fake.last.body["messages"]
    assert [b["type"] for b in sent[-1]["content"]] == ["tool_result", "tool_result"]
    assert [b["tool_use_id"] for b in sent[-1]["content"]] == [c.id for c in calls]


@pytest.mark.parametrize("model", ["glm-4.6", "glm-4.6-openai"])
def test_reasoning_content(sdk: openai.OpenAI, fake: FakeUpstream, model: str) -> None:
    fake.script(
        {"thinking": "Let me think about greetings.", "text": "Hi!"},
        {"thinking": "Let me think about greetings.", "text": "Hi!"},
    )
    plain = ask(sdk, model=model, extra_body={"thinking": {"type": "enabled"}})
    assert (
        plain.choices[0].message.model_extra["reasoning_content"] == "Let me think about greetings."
    )
    _, reasoning, _, _, _ = collect(
        ask(sdk, model=model, stream=True, extra_body={"thinking": {"type": "enabled"}})
    )
    assert reasoning == "Let me think about greetings."


def test_image_lands_on_the_vision_model_intact(sdk: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script("A one-pixel image.")
    url = f"data:image/png;base64,{PNG}"
    content = [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": url}},
    ]
    reply = sdk.chat.completions.create(
        model="glm-4.6", messages=[{"role": "user", "content": content}]
    )
    assert reply.choices[0].message.content == "A one-pixel image."
    assert reply.model == "glm-4.6"
    sent = fake.last
    assert (sent.endpoint, sent.body["model"]) == ("openai", "glm-4.6v")
    assert sent.body["messages"][0]["content"][1]["image_url"]["url"] == url


@pytest.mark.parametrize(
    ("model", "endpoint"), [("glm-4.6-openai", "openai"), ("glm-4.6-anthropic", "anthropic")]
)
def test_suffix_picks_the_upstream_format(
    sdk: openai.OpenAI, fake: FakeUpstream, model: str, endpoint: str
) -> None:
    fake.script("routed")
    reply = ask(sdk, model=model)
    assert reply.model == model and reply.choices[0].message.content == "routed"
    assert (fake.last.endpoint, fake.last.body["model"]) == (endpoint, "glm-4.6")


def test_models_and_health(server: Gunicorn, sdk: openai.OpenAI) -> None:
    assert [m.id for m in sdk.models.list()] == [
        "glm-4.6",
        "glm-4.6v",
        "glm-4.6-openai",
        "glm-4.6-anthropic",
    ]
    assert sdk.models.retrieve("glm-4.6v").id == "glm-4.6v"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-4o")
    health = requests.get(server.url + "/health", timeout=5).json()
    assert health["status"] == "ok" and health["routing"]["autotext_model"] == "glm-4.6"


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fault", "options", "error", "status"),
    [
        ("http_error", {"status": 500}, openai.APIStatusError, 502),
        # "later" answers and dropped connections are retried twice before they pass through
        ("http_error", {"status": 503, "count": 3}, openai.APIStatusError, 502),
        ("rate_limit", {"retry_after": 7}, openai.RateLimitError, 429),  # past the time budget
        ("overflow", {}, openai.BadRequestError, 400),
        ("disconnect", {"count": 3}, openai.APIStatusError, 502),
        ("timeout", {"seconds": 4}, openai.APIStatusError, 504),
    ],
)
def test_upstream_faults_become_meaningful_statuses(
    sdk, fake, fault, options, error, status
) -> None:
    fake.fail_next(fault, **options)
    with pytest.raises(error) as info:
        ask(sdk)
    assert info.value.status_code == status
    if fault == "rate_limit":
        assert info.value.response.headers["retry-after"] == "7"
    if fault == "overflow":
        assert "Prompt exceeds max length" in info.value.message
    fake.script("still serving")
    assert ask(sdk).choices[0].message.content == "still serving"


@pytest.mark.parametrize("model", ["glm-4.6", "glm-4.6-openai"])
def test_stream_dropped_midway_ends_with_an_error_chunk(sdk, fake, model: str) -> None:
    fake.script("This stream will be cut off by the fake upstream before it finishes properly.")
    fake.fail_next("stream_drop", after=3)
    with pytest.raises(openai.APIError):
        collect(ask(sdk, model=model, stream=True))
    fake.script("fine again")
    assert ask(sdk).choices[0].message.content == "fine again"


def test_client_errors_in_openai_format(server: Gunicorn, sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        ask(sdk, model="gpt-4o")
    assert info.value.body["param"] == "model"
    bare = requests.post(
        server.url + "/v1/chat/completions",
        data=b"{oops",
        headers={"Authorization": "Bearer k"},
        timeout=5,
    )
    assert bare.status_code == 400 and "not valid JSON" in bare.json()["error"]["message"]
    anonymous = requests.post(
        server.url + "/v1/chat/completions", json={"model": "glm-4.6", "messages": []}, timeout=5
    )
    assert anonymous.status_code == 401


def test_oversized_body_is_413(fake: FakeUpstream) -> None:
    with Gunicorn(proxy_env(fake, MAX_REQUEST_BYTES="5000"), workers=1, threads=2) as small:
        body = {"model": "glm-4.6", "messages": [{"role": "user", "content": "x" * 10000}]}
        reply = requests.post(
            small.url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": "Bearer k"},
            timeout=5,
        )
        assert reply.status_code == 413 and reply.json()["error"]["message"]
        assert fake.requests == []


def test_proxy_keys_and_server_key(fake: FakeUpstream) -> None:
    env = proxy_env(fake, PROXY_API_KEYS="team-key", SERVER_API_KEY="zai-server-key")
    hello = [{"role": "user", "content": "hi"}]
    with Gunicorn(env, workers=1, threads=2) as gated:
        base = gated.url + "/v1"
        with openai.OpenAI(base_url=base, api_key="team-key", max_retries=0) as good:
            fake.script("authorised")
            reply = good.chat.completions.create(model="glm-4.6", messages=hello)
        assert reply.choices[0].message.content == "authorised"
        assert fake.last.headers["x-api-key"] == "zai-server-key"
        with (
            openai.OpenAI(base_url=base, api_key="guess", max_retries=0) as bad,
            pytest.raises(openai.AuthenticationError),
        ):
            bad.chat.completions.create(model="glm-4.6", messages=hello)
        assert "zai-server-key" not in gated.log_text()
