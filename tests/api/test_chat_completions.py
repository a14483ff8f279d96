"""POST /v1/chat/completions through the Flask app, with the upstream mocked by `responses`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses

from app import create_app
from config import Settings
from tests.conftest import ANTHROPIC_BASE, FIXTURES, OPENAI_BASE, PNG, ProxyActions
from upstream.sse import iter_sse

MESSAGES_URL = f"{ANTHROPIC_BASE}/v1/messages"
CHAT_URL = f"{OPENAI_BASE}/chat/completions"

ANTHROPIC_REPLY = {
    "id": "msg_1",
    "type": "message",
    "role": "assistant",
    "model": "glm-4.6",
    "content": [
        {"type": "thinking", "thinking": "hm", "signature": "sig"},
        {"type": "text", "text": "Hi there"},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 12, "output_tokens": 3},
}
OPENAI_REPLY = {
    "id": "c1",
    "object": "chat.completion",
    "model": "glm-4.6",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hi from openai"},
        }
    ],
    "usage": {"prompt_tokens": 8, "completion_tokens": 4, "total_tokens": 12},
}


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "glm-4.6", "messages": [{"role": "user", "content": "Hello"}], **extra}


def sent_json(call_index: int = -1) -> dict[str, Any]:
    return json.loads(responses.calls[call_index].request.body)


def frames(response: Any) -> list[Any]:
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in iter_sse([response.data])]


# ---------------------------------------------------------------------------- routing


@responses.activate
def test_text_goes_to_anthropic_upstream_and_back_in_openai_format(proxy) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    reply = proxy.chat(chat_body(max_tokens=64, stop="X", temperature=0.3))
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["object"] == "chat.completion" and body["model"] == "glm-4.6"
    assert body["choices"][0]["message"]["content"] == "Hi there"
    assert body["choices"][0]["message"]["reasoning_content"] == "hm"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    sent = sent_json()
    assert sent == {
        "model": "glm-4.6",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}],
        "max_tokens": 64,
        "temperature": 0.3,
        "stop_sequences": ["X"],
    }
    assert responses.calls[0].request.headers["x-api-key"] == "sk-client"


@pytest.mark.parametrize(
    ("env", "model", "url", "upstream_model"),
    [
        ({}, "glm-4.6-openai", CHAT_URL, "glm-4.6"),
        ({"TEXT_ENDPOINT_PREFERENCE": "openai"}, "glm-4.6", CHAT_URL, "glm-4.6"),
        ({"TEXT_ENDPOINT_PREFERENCE": "openai"}, "glm-4.6-anthropic", MESSAGES_URL, "glm-4.6"),
        ({}, "claude-sonnet-4-5", MESSAGES_URL, "glm-4.6"),
        (
            {"MODEL_MAP": "claude-haiku-*=glm-4.5-air"},
            "claude-haiku-4-5",
            MESSAGES_URL,
            "glm-4.5-air",
        ),
    ],
)
def test_routing_by_suffix_preference_and_model_map(
    settings_env, env, model, url, upstream_model
) -> None:
    settings_env.update(env)

    proxy = ProxyActions(create_app(Settings.from_env(settings_env)).test_client())
    with responses.RequestsMock() as mock:
        mock.post(url, json=ANTHROPIC_REPLY if url == MESSAGES_URL else OPENAI_REPLY)
        reply = proxy.chat(chat_body(model=model))
        assert reply.status_code == 200
        assert json.loads(mock.calls[0].request.body)["model"] == upstream_model
        assert reply.get_json()["model"] == model


@responses.activate
def test_image_goes_to_vision_model_on_openai_upstream_intact(proxy) -> None:
    responses.post(CHAT_URL, json=OPENAI_REPLY | {"model": "glm-4.6v"})
    content = [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    reply = proxy.chat(chat_body(messages=[{"role": "user", "content": content}]))
    assert reply.status_code == 200
    sent = sent_json()
    assert sent["model"] == "glm-4.6v"
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    assert responses.calls[0].request.headers["Authorization"] == "Bearer sk-client"
    # The vision window (65536) is scaled to the 200000 a chat-completions client expects.
    assert reply.get_json()["usage"]["prompt_tokens"] == round(8 * 200000 / 65536)


@responses.activate
def test_usage_scaling_uses_openai_expected_tokens(settings_env) -> None:
    settings_env["OPENAI_EXPECTED_TOKENS"] = "100000"

    client = create_app(Settings.from_env(settings_env)).test_client()
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    reply = client.post("/v1/chat/completions", json=chat_body(), headers={"x-api-key": "k"})
    assert reply.get_json()["usage"] == {
        "prompt_tokens": 6,
        "completion_tokens": 2,
        "total_tokens": 8,
    }


# ---------------------------------------------------------------------------- streaming


@responses.activate
def test_stream_from_anthropic_upstream_converts_event_by_event(proxy) -> None:
    transcript = (FIXTURES / "sse" / "anthropic_parallel_tools.txt").read_bytes()
    responses.post(MESSAGES_URL, body=transcript, content_type="text/event-stream")
    reply = proxy.chat(chat_body(stream=True, stream_options={"include_usage": True}))
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    assert (
        reply.headers["Cache-Control"] == "no-cache" and reply.headers["X-Accel-Buffering"] == "no"
    )
    out = frames(reply)
    assert out[0]["choices"][0]["delta"]["role"] == "assistant"
    assert out[-1] == "[DONE]"
    usage_chunk = out[-2]
    assert usage_chunk["choices"] == [] and usage_chunk["usage"]["completion_tokens"] == 40
    assert usage_chunk["usage"]["prompt_tokens"] == 120
    assert out[-3]["choices"][0]["finish_reason"] == "tool_calls"
    calls: dict[int, dict[str, str]] = {}
    for chunk in out[1:-3]:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []):
            entry = calls.setdefault(call["index"], {"id": call.get("id", ""), "args": ""})
            entry["args"] += call["function"]["arguments"]
    assert {i: (c["id"], json.loads(c["args"])) for i, c in calls.items()} == {
        0: ("toolu_a", {"city": "Oslo"}),
        1: ("toolu_b", {"city": "Rome"}),
    }
    assert sent_json()["stream"] is True


@responses.activate
def test_stream_from_openai_upstream_keeps_reasoning_and_tool_call(proxy) -> None:
    transcript = (FIXTURES / "sse" / "openai_reasoning_tools.txt").read_bytes()
    responses.post(CHAT_URL, body=transcript, content_type="text/event-stream")
    reply = proxy.chat(chat_body(model="glm-4.6-openai", stream=True))
    out = frames(reply)
    deltas = [c["choices"][0]["delta"] for c in out[:-1] if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "A red square."
    assert "".join(d.get("content") or "" for d in deltas) == "It is a red square."
    assert not any("usage" in c for c in out[:-1]), "no usage chunk unless asked"
    sent = sent_json()
    assert sent["stream_options"] == {"include_usage": True}, "usage is always requested upstream"


@responses.activate
def test_stream_cut_by_upstream_ends_with_error_chunk(proxy) -> None:
    transcript = (FIXTURES / "sse" / "anthropic_thinking_text.txt").read_bytes()
    cut = transcript[
        : transcript.index(
            b'event: content_block_stop\ndata: {"type":"content_block_stop","index":1}'
        )
    ]
    responses.post(MESSAGES_URL, body=cut, content_type="text/event-stream")
    out = frames(proxy.chat(chat_body(stream=True)))
    assert out[-2]["error"]["message"] == "upstream stream ended early"
    assert out[-1] == "[DONE]"
    assert "".join(
        c["choices"][0]["delta"].get("content") or "" for c in out[:-2] if c.get("choices")
    ) == ("Hello — nice to meet you. 你好！")


# ---------------------------------------------------------------------------- errors


@responses.activate
@pytest.mark.parametrize(
    ("upstream", "status", "check"),
    [
        (
            {
                "status": 400,
                "json": {"error": {"code": "1261", "message": "Prompt exceeds max length"}},
            },
            400,
            # nothing left to cut: the client reads the phrase it acts on, and z.ai's own words
            lambda e: (
                e["message"].startswith("prompt is too long")
                and "Prompt exceeds max length" in e["message"]
                and e["code"] == "1261"
            ),
        ),
        (
            {"status": 401, "json": {"error": {"message": "bad key"}}},
            401,
            lambda e: e["message"] == "bad key",
        ),
        ({"status": 500, "body": "oops"}, 502, lambda e: "500" in e["message"]),
        (
            {
                "status": 503,
                "json": {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}},
            },
            502,
            lambda e: "busy" in e["message"],
        ),
        (
            {"body": requests.ConnectionError("refused")},
            502,
            lambda e: "unreachable" in e["message"],
        ),
        ({"body": requests.ReadTimeout("slow")}, 504, lambda e: e["type"] == "timeout"),
        ({"status": 200, "body": "not json"}, 502, lambda e: "not JSON" in e["message"]),
        (
            {"status": 200, "json": {"error": {"message": "quota gone"}}},
            502,
            lambda e: "quota gone" in e["message"],
        ),
    ],
)
def test_upstream_failures_become_meaningful_statuses(proxy, upstream, status, check) -> None:
    responses.post(MESSAGES_URL, **upstream)
    reply = proxy.chat(chat_body())
    assert reply.status_code == status
    assert check(reply.get_json()["error"])


@responses.activate
def test_429_keeps_retry_after(proxy) -> None:
    responses.post(
        MESSAGES_URL,
        status=429,
        json={"error": {"code": "1302", "message": "slow down"}},
        headers={"Retry-After": "17"},
    )
    reply = proxy.chat(chat_body())
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "17"
    assert reply.get_json()["error"]["message"] == "slow down"


@responses.activate
def test_429_without_retry_after_gets_a_default(proxy) -> None:
    responses.post(MESSAGES_URL, status=429, json={"error": {"message": "slow down"}})
    assert proxy.chat(chat_body()).headers["Retry-After"].isdigit()


@responses.activate
def test_stream_request_upstream_error_is_an_http_status_not_a_stream(proxy) -> None:
    responses.post(
        MESSAGES_URL,
        status=400,
        json={"error": {"code": "1261", "message": "Prompt exceeds max length"}},
    )
    reply = proxy.chat(chat_body(stream=True))
    assert reply.status_code == 400
    assert "Prompt exceeds max length" in reply.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "JSON object"),
        (b"\xff\xfe", 400, "UTF-8"),
        (json.dumps(chat_body(model="gpt-4o")).encode(), 400, "gpt-4o"),
    ],
)
def test_bad_input_gets_openai_format_4xx(proxy, raw, status, fragment) -> None:
    reply = proxy.chat(raw)
    assert reply.status_code == status
    assert fragment in reply.get_json()["error"]["message"]


def test_oversized_body_is_413(settings_env) -> None:
    settings_env["MAX_REQUEST_BYTES"] = "1000"

    client = create_app(Settings.from_env(settings_env)).test_client()
    reply = client.post(
        "/v1/chat/completions",
        json=chat_body(messages=[{"role": "user", "content": "x" * 2000}]),
        headers={"x-api-key": "k"},
    )
    assert reply.status_code == 413
    assert reply.get_json()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------- auth


def test_no_key_at_all_is_401_and_nothing_is_sent(proxy) -> None:
    with responses.RequestsMock() as mock:
        reply = proxy.chat(chat_body(), key=None)
        assert reply.status_code == 401 and len(mock.calls) == 0
    assert "API key" in reply.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("presented", "status"), [("proxy-key-2", 200), ("wrong", 401), (None, 401)]
)
def test_proxy_keys_gate_and_server_key_goes_upstream(settings_env, presented, status) -> None:
    settings_env.update(
        {"PROXY_API_KEYS": "proxy-key-1,proxy-key-2", "SERVER_API_KEY": "server-secret"}
    )

    proxy = ProxyActions(create_app(Settings.from_env(settings_env)).test_client())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
        reply = proxy.chat(chat_body(), key=presented)
        assert reply.status_code == status
        if status == 200:
            assert mock.calls[0].request.headers["x-api-key"] == "server-secret"
        assert b"server-secret" not in reply.data


# ---------------------------------------------------------------------------- retries


@responses.activate
@pytest.mark.parametrize("status", [429, 503, 529])
def test_a_later_answer_is_retried_before_anything_reaches_the_client(proxy, status) -> None:
    responses.post(MESSAGES_URL, status=status, json={"error": {"message": "busy"}})
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    reply = proxy.chat(chat_body())
    assert reply.status_code == 200 and len(responses.calls) == 2


@responses.activate
def test_retries_stop_after_the_limit_and_the_error_passes_through(proxy) -> None:
    for _ in range(3):
        responses.post(MESSAGES_URL, status=503, json={"error": {"message": "overloaded"}})
    reply = proxy.chat(chat_body())
    assert reply.status_code == 502 and "overloaded" in reply.get_json()["error"]["message"]
    assert len(responses.calls) == 3  # the call and UPSTREAM_MAX_RETRIES=2 retries


@responses.activate
def test_a_retry_after_beyond_the_wait_limit_passes_through(proxy) -> None:
    responses.post(MESSAGES_URL, status=429, json={"error": {"message": "slow"}},
                   headers={"Retry-After": "60"})  # fmt: skip
    reply = proxy.chat(chat_body())
    assert reply.status_code == 429 and reply.headers["Retry-After"] == "60"
    assert len(responses.calls) == 1


@responses.activate
def test_a_refused_connection_is_retried(proxy) -> None:
    responses.post(MESSAGES_URL, body=requests.ConnectionError("reset"))
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    assert proxy.chat(chat_body()).status_code == 200 and len(responses.calls) == 2


@responses.activate
@pytest.mark.parametrize("status", [400, 401, 500])
def test_other_errors_are_never_repeated(proxy, status) -> None:
    responses.post(MESSAGES_URL, status=status, json={"error": {"message": "no"}})
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    assert proxy.chat(chat_body()).status_code != 200 and len(responses.calls) == 1


@responses.activate
def test_no_retries_when_switched_off(settings_env) -> None:
    responses.post(MESSAGES_URL, status=503, json={"error": {"message": "busy"}})
    client = create_app(
        Settings.from_env(settings_env | {"UPSTREAM_MAX_RETRIES": "0"})
    ).test_client()
    reply = client.post("/v1/chat/completions", json=chat_body(),
                        headers={"Authorization": "Bearer k"})  # fmt: skip
    assert reply.status_code == 502 and len(responses.calls) == 1
