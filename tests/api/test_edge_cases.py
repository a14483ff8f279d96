"""What real clients and a quirky upstream send that the happy paths do not: each must end in
a meaningful answer, never a 500 or a silently cut stream."""

from __future__ import annotations

import json

import pytest
import responses

from app import create_app
from config import ConfigError, Settings
from tests.api.test_chat_completions import (
    ANTHROPIC_REPLY,
    CHAT_URL,
    MESSAGES_URL,
    OPENAI_REPLY,
    frames,
    sent_json,
)

REASONING_HISTORY = [
    {"role": "user", "content": "first"},
    {"role": "assistant", "reasoning_content": "I considered it.", "content": "answer"},
    {"role": "user", "content": "second"},
]


@responses.activate
def test_chat_clients_resending_reasoning_reach_the_anthropic_upstream_as_text(proxy) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    reply = proxy.chat({"model": "glm-4.6", "messages": REASONING_HISTORY})
    assert reply.status_code == 200
    assistant = sent_json()["messages"][1]["content"]
    assert assistant[0] == {"type": "text", "text": "[earlier reasoning]\nI considered it."}
    assert all(block["type"] != "thinking" for block in assistant)


@responses.activate
def test_chat_clients_resending_reasoning_reach_the_openai_upstream_as_reasoning(proxy) -> None:
    responses.post(CHAT_URL, json=OPENAI_REPLY)
    assert proxy.chat({"model": "glm-4.6-openai", "messages": REASONING_HISTORY}).status_code == 200
    assert sent_json()["messages"][1]["reasoning_content"] == "I considered it."


@responses.activate
def test_a_conversation_opening_with_the_assistant_gets_a_user_turn_first(proxy) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    messages = [
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "hello"},
    ]
    assert proxy.chat({"model": "glm-4.6", "messages": messages}).status_code == 200
    assert [m["role"] for m in sent_json()["messages"]] == ["user", "assistant", "user"]


@responses.activate
@pytest.mark.parametrize("usage", [None, {}, {"input_tokens": 0, "output_tokens": 2}])
def test_missing_upstream_input_usage_is_replaced_by_the_estimate(proxy, usage) -> None:
    reply = dict(ANTHROPIC_REPLY)
    if usage is None:
        del reply["usage"]
    else:
        reply["usage"] = usage
    responses.post(MESSAGES_URL, json=reply)
    assert (
        proxy.chat(
            {"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]}
        ).get_json()["usage"]["prompt_tokens"]
        > 0
    )


@responses.activate
@pytest.mark.parametrize(
    ("url", "model", "body"),
    [
        (CHAT_URL, "glm-4.6-openai", {"choices": []}),
        (CHAT_URL, "glm-4.6-openai", {"choices": [None]}),
        (
            CHAT_URL,
            "glm-4.6-openai",
            {"choices": [{"finish_reason": "network_error", "message": {"content": "par"}}]},
        ),
        (MESSAGES_URL, "glm-4.6", {"content": [{"type": "text"}]}),
        (MESSAGES_URL, "glm-4.6", {"content": [{"type": "tool_use", "id": "t", "name": "n"}]}),
        (MESSAGES_URL, "glm-4.6", {"content": [{"type": "mystery"}]}),
    ],
)
def test_malformed_upstream_answers_are_502(proxy, url, model, body) -> None:
    responses.post(url, json=body)
    reply = proxy.chat({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert reply.status_code == 502 and reply.get_json()["error"]["message"]


@responses.activate
def test_upstream_message_content_as_parts_and_arguments_as_object_are_read(proxy) -> None:
    message = {
        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}
        ],
    }
    responses.post(
        CHAT_URL,
        json=OPENAI_REPLY | {"choices": [{"finish_reason": "tool_calls", "message": message}]},
    )
    body = proxy.chat(
        {"model": "glm-4.6-openai", "messages": [{"role": "user", "content": "hi"}]}
    ).get_json()
    assert body["choices"][0]["message"]["content"] == "ab"
    assert json.loads(body["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "x": 1
    }


@responses.activate
def test_stream_answered_with_a_json_error_keeps_its_message(proxy) -> None:
    responses.post(
        MESSAGES_URL, json={"error": {"code": "1113", "message": "insufficient balance"}}
    )
    reply = proxy.chat(
        {"model": "glm-4.6", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert (
        reply.status_code == 502 and "insufficient balance" in reply.get_json()["error"]["message"]
    )


@responses.activate
def test_stream_with_an_unexpected_event_shape_ends_with_an_error_frame(proxy) -> None:
    events = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0},
    ]
    body = b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)
    responses.post(MESSAGES_URL, body=body, content_type="text/event-stream")
    out = frames(
        proxy.chat(
            {"model": "glm-4.6", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        )
    )
    assert out[-2]["error"]["message"] and out[-1] == "[DONE]"


@responses.activate
def test_openai_network_error_finish_in_a_stream_is_an_error(proxy) -> None:
    chunks = [
        {"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "par"}}]},
        {"id": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "network_error"}]},
    ]
    body = (
        b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    )
    responses.post(CHAT_URL, body=body, content_type="text/event-stream")
    out = frames(
        proxy.chat(
            {
                "model": "glm-4.6-openai",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
        )
    )
    assert "network error" in out[-2]["error"]["message"] and out[-1] == "[DONE]"


@responses.activate
def test_upstream_refusing_the_server_key_is_a_502_not_the_clients_401(settings_env) -> None:
    settings_env.update({"PROXY_API_KEYS": "team", "SERVER_API_KEY": "zai"})
    client = create_app(Settings.from_env(settings_env)).test_client()
    responses.post(MESSAGES_URL, status=401, json={"error": {"message": "invalid api key"}})
    reply = client.post(
        "/v1/chat/completions",
        json={"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": "Bearer team"},
    )
    assert reply.status_code == 502


DEEP = "[" * 950 + "]" * 950
IMAGE_WITH_LIST_MEDIA_TYPE = {
    "model": "glm-4.6",
    "max_tokens": 5,
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "image", "source": {"type": "base64", "media_type": [], "data": "A"}}
            ],
        }
    ],
}
DEEP_TOOL_SCHEMA = (
    '{"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": '
    '"function", "function": {"name": "f", "parameters": {"a": ' + DEEP + "}}}]}"
)


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/messages", json.dumps(IMAGE_WITH_LIST_MEDIA_TYPE)),
        ("/v1/chat/completions", DEEP_TOOL_SCHEMA),
    ],
)
def test_odd_client_bodies_are_400(client, path: str, raw: str) -> None:
    reply = client.post(path, data=raw, content_type="application/json", headers={"x-api-key": "k"})
    assert reply.status_code == 400


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_stop_startup(value: str) -> None:
    with pytest.raises(ConfigError, match="REQUEST_TIMEOUT"):
        Settings.from_env({"REQUEST_TIMEOUT": value})


@responses.activate
def test_lone_surrogates_from_client_and_upstream_do_not_break_json(proxy) -> None:
    responses.post(
        MESSAGES_URL, json=ANTHROPIC_REPLY | {"content": [{"type": "text", "text": "x\ud800"}]}
    )
    raw = '{"model": "glm-4.6", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    reply = proxy.chat(raw)
    assert reply.status_code == 200
    assert reply.get_json()["choices"][0]["message"]["content"] == "x\ud800"
    assert (
        json.loads(responses.calls[0].request.body)["messages"][0]["content"][0]["text"]
        == "hi \ud800"
    )


def test_integer_past_the_digit_limit_is_400(proxy) -> None:
    raw = '{"model": "glm-4.6", "messages": [], "n": ' + "1" * 5000 + "}"
    assert proxy.chat(raw).status_code == 400


@responses.activate
def test_upstream_stop_reason_of_the_wrong_type_is_502(proxy) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY | {"stop_reason": ["end_turn"]})
    assert (
        proxy.chat(
            {"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]}
        ).status_code
        == 502
    )


# ---------------------------------------------------------------------------- request limits


def _nested(depth: int) -> object:
    value: object = "deep"
    for _ in range(depth):
        value = {"x": value}
    return value


LIMIT_ENV = {"MAX_MESSAGES": "5", "MAX_CONTENT_BLOCKS": "3", "MAX_JSON_DEPTH": "12",
             "MAX_IMAGE_BYTES": "1000"}  # fmt: skip
BIG_PNG = "A" * 2000  # 1,500 bytes once decoded


@pytest.mark.parametrize(
    ("body", "status", "named"),
    [
        ({"messages": [{"role": "user", "content": "hi"}] * 7}, 400, "MAX_MESSAGES"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}] * 4}]},
            400,
            "MAX_CONTENT_BLOCKS",
        ),
        (
            {"messages": [{"role": "user", "content": "hi"}], "metadata": _nested(20)},
            400,
            "MAX_JSON_DEPTH",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image",
                                "source": {
                                    "type": "base64",
                                    "media_type": "image/png",
                                    "data": BIG_PNG,
                                },
                            }
                        ],
                    }
                ]
            },
            413,
            "MAX_IMAGE_BYTES",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64," + BIG_PNG},
                            }
                        ],
                    }
                ]
            },
            413,
            "MAX_IMAGE_BYTES",
        ),
    ],
    ids=["messages", "blocks", "depth", "image", "image_url"],
)
@pytest.mark.parametrize("path", ["/v1/messages", "/v1/chat/completions"])
def test_each_request_limit_is_a_4xx_naming_it(
    settings_env: dict[str, str], body: dict, status: int, named: str, path: str
) -> None:
    from app import create_app
    from config import Settings

    client = create_app(Settings.from_env(settings_env | LIMIT_ENV)).test_client()
    body = {"model": "glm-4.6", "max_tokens": 10} | body
    reply = client.post(path, json=body, headers={"Authorization": "Bearer k"})
    assert reply.status_code == status
    error = reply.get_json()["error"]
    assert named in error["message"]
    assert ("type" in reply.get_json()) is (path == "/v1/messages")  # each client's own format
    assert client.get("/health").status_code == 200  # the worker keeps serving
