"""POST /v1/messages and /v1/messages/count_tokens through the Flask app, upstream mocked."""

from __future__ import annotations

import json

import pytest
import responses

from app import create_app
from config import Settings
from tests.api.test_chat_completions import ANTHROPIC_REPLY, CHAT_URL, MESSAGES_URL, OPENAI_REPLY
from tests.conftest import PNG

HELLO = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 100,
    "messages": [{"role": "user", "content": "Hello"}],
}
IMAGE_TURN = {
    "role": "user",
    "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is this?"},
    ],
}


def client_for(settings_env: dict[str, str], **env: str):
    return create_app(Settings.from_env(settings_env | env)).test_client()


@responses.activate
def test_messages_keep_the_requested_model_and_forward_beta_headers(proxy) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    reply = proxy.messages(HELLO, **{"anthropic-beta": "x-2025", "anthropic-version": "2023-06-01"})
    body = reply.get_json()
    assert reply.status_code == 200 and body["model"] == "claude-sonnet-4-5"
    assert body["content"][0] == {"type": "thinking", "thinking": "hm", "signature": "sig"}
    sent = responses.calls[0].request
    assert json.loads(sent.body)["model"] == "glm-4.6"
    assert sent.headers["anthropic-beta"] == "x-2025"


@responses.activate
def test_messages_from_the_openai_upstream_come_back_as_a_message(proxy) -> None:
    responses.post(CHAT_URL, json=OPENAI_REPLY)
    body = proxy.messages(HELLO | {"model": "glm-4.6-openai"}).get_json()
    assert body["type"] == "message" and body["id"].startswith("msg_")
    assert body["content"] == [{"type": "text", "text": "Hi from openai"}]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"] == {"input_tokens": 8, "output_tokens": 4}


@pytest.mark.parametrize(
    ("upstream", "status", "kind"),
    [
        (
            {
                "status": 429,
                "json": {"error": {"message": "slow"}},
                "headers": {"Retry-After": "9"},
            },
            429,
            "rate_limit_error",
        ),
        ({"status": 500, "body": "boom"}, 502, "api_error"),
        ({"status": 401, "json": {"error": {"message": "bad key"}}}, 401, "authentication_error"),
    ],
)
@responses.activate
def test_upstream_errors_in_anthropic_format(proxy, upstream, status, kind) -> None:
    responses.post(MESSAGES_URL, **upstream)
    reply = proxy.messages(HELLO)
    assert reply.status_code == status
    assert reply.get_json()["type"] == "error" and reply.get_json()["error"]["type"] == kind


def test_count_tokens_is_scaled_like_usage(settings_env) -> None:
    full = client_for(settings_env).post(
        "/v1/messages/count_tokens", json=HELLO, headers={"x-api-key": "k"}
    )
    half = client_for(settings_env, ANTHROPIC_EXPECTED_TOKENS="100000").post(
        "/v1/messages/count_tokens", json=HELLO, headers={"x-api-key": "k"}
    )
    tokens = full.get_json()["input_tokens"]
    assert tokens > 3 and half.get_json()["input_tokens"] == round(tokens / 2)


def test_count_tokens_with_an_image_scales_from_the_vision_window(settings_env) -> None:
    client = client_for(settings_env)
    body = {"model": "glm-4.6", "messages": [IMAGE_TURN]}
    counted = client.post(
        "/v1/messages/count_tokens", json=body, headers={"x-api-key": "k"}
    ).get_json()
    raw = client.application.extensions["anthropic_proxy"].counter.count_request(
        {"model": "glm-4.6", "max_tokens": 1, "messages": [IMAGE_TURN]}
    )
    assert counted["input_tokens"] == round(raw * 200000 / 65536)


def test_count_tokens_needs_a_key_and_a_valid_body(client) -> None:
    assert client.post("/v1/messages/count_tokens", json=HELLO).status_code == 401
    bad = client.post(
        "/v1/messages/count_tokens", json={"model": "glm-4.6"}, headers={"x-api-key": "k"}
    )
    assert bad.status_code == 400 and bad.get_json()["error"]["type"] == "invalid_request_error"
