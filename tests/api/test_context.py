"""Context management seen from the client: context_info, headers, retries, streams' structure.

Through the Flask app with the upstream mocked by `responses`; the same behaviour under gunicorn
against the fake z.ai is in tests/integration/test_context_window.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from api.services import EXTENSION_KEY
from app import create_app
from config import Settings
from context.manager import ContextManager
from tests.api.test_chat_completions import ANTHROPIC_REPLY, MESSAGES_URL, frames
from tests.conftest import FIXTURES, ProxyActions
from tests.context.test_manager import SlowCondenser
from tests.sessions import agent_session, openai_body
from upstream.sse import iter_sse

WINDOW = "20000"
OVERFLOW_ANSWER = {"error": {"code": "1261", "message": "Prompt exceeds max length"}}


def small_window_proxy(
    settings_env: dict[str, str], condenser: Any = None, **env: str
) -> ProxyActions:
    """A proxy with a 20k-token text window (and, optionally, a condenser plugged in)."""
    # Without a stand-in condenser these tests are about truncation: the real one is switched off.
    defaults = {"REAL_TEXT_MODEL_TOKENS": WINDOW, "ENABLE_AI_CONDENSATION": str(bool(condenser))}
    settings = Settings.from_env(settings_env | defaults | env)
    app = create_app(settings)
    if condenser is not None:
        services = app.extensions[EXTENSION_KEY]
        manager = ContextManager(settings, services.counter, condenser)
        app.extensions[EXTENSION_KEY] = dataclasses.replace(services, context=manager)
    client: FlaskClient = app.test_client()
    return ProxyActions(client)


def big_session(**extra: Any) -> dict[str, Any]:
    return agent_session(40_000, seed=21) | extra


def anthropic_events(reply: Any) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in iter_sse([reply.data])]


# ---------------------------------------------------------------------------- JSON answers


@responses.activate
@pytest.mark.parametrize("api", ["messages", "chat"])
def test_context_info_in_the_body_and_headers(settings_env: dict[str, str], api: str) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    proxy = small_window_proxy(settings_env)
    body = big_session() if api == "messages" else openai_body(big_session())
    reply = getattr(proxy, api)(body)
    assert reply.status_code == 200
    info = reply.get_json()["context_info"]
    assert info["risk_level"] == "OVERFLOW" and info["truncated"] is True
    assert info["messages_removed"] > 0 and info["strategy_used"] == "EMERGENCY_TRUNCATION"
    assert info["estimated_input_tokens"] <= info["input_budget"] < info["original_input_tokens"]
    assert reply.headers["X-Context-Risk-Level"] == "OVERFLOW"
    assert reply.headers["X-Context-Tokens"] == str(info["estimated_input_tokens"])
    assert float(reply.headers["X-Context-Utilization"]) == pytest.approx(
        info["utilization"], abs=1e-4
    )
    sent = json.loads(responses.calls[0].request.body)
    assert len(sent["messages"]) == len(body["messages"]) - info["messages_removed"] + 1 - (
        1 if api == "chat" else 0
    ) or sent["messages"][0]["content"][-1]["text"].startswith("[context management:")


@responses.activate
def test_a_safe_request_says_so(proxy: ProxyActions) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    reply = proxy.messages(
        {"model": "glm-4.6", "max_tokens": 100, "messages": [{"role": "user", "content": "Hi"}]}
    )
    info = reply.get_json()["context_info"]
    assert info["risk_level"] == "SAFE" and info["truncated"] is False and info["tokens_saved"] == 0
    assert info["context_limit"] == 200_000 and info["model"] == "glm-4.6"
    assert json.loads(responses.calls[0].request.body)["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    ]


@responses.activate
def test_prompt_too_long_is_a_400_in_each_clients_format(settings_env: dict[str, str]) -> None:
    proxy = small_window_proxy(settings_env)
    huge = {
        "model": "glm-4.6",
        "max_tokens": 100,
        "system": "rule " * 30_000,
        "messages": [{"role": "user", "content": "hi"}],
    }
    reply = proxy.messages(huge | {"stream": True})
    assert reply.status_code == 400  # a real status, even for a stream
    assert reply.get_json()["type"] == "error"
    assert reply.get_json()["error"]["message"].startswith("prompt is too long")
    chat = proxy.chat(
        {
            "model": "glm-4.6",
            "messages": [
                {"role": "system", "content": "rule " * 30_000},
                {"role": "user", "content": "hi"},
            ],
        }
    )
    assert chat.status_code == 400 and chat.get_json()["error"]["message"].startswith(
        "prompt is too long"
    )
    assert len(responses.calls) == 0  # nothing was sent


# ---------------------------------------------------------------------------- overflow retry


@responses.activate
@pytest.mark.parametrize("stream", [False, True])
def test_an_overflow_answer_gets_one_smaller_retry(
    settings_env: dict[str, str], stream: bool
) -> None:
    transcript = (FIXTURES / "sse" / "anthropic_thinking_text.txt").read_bytes()
    ok = (
        {"body": transcript, "content_type": "text/event-stream"}
        if stream
        else {"json": ANTHROPIC_REPLY}
    )
    responses.post(MESSAGES_URL, status=400, json=OVERFLOW_ANSWER)
    responses.post(MESSAGES_URL, **ok)
    proxy = small_window_proxy(settings_env)
    reply = proxy.messages(big_session(stream=stream))
    assert reply.status_code == 200
    first, second = (call.request.body for call in responses.calls)
    assert len(second) < len(first)  # smaller, not a blind repeat
    if stream:
        delta = next(e for e in anthropic_events(reply) if e["type"] == "message_delta")
        info = delta["context_info"]
    else:
        info = reply.get_json()["context_info"]
    assert info["overflow_retry"] is True


@responses.activate
def test_a_second_overflow_answer_is_prompt_too_long(settings_env: dict[str, str]) -> None:
    responses.post(MESSAGES_URL, status=400, json=OVERFLOW_ANSWER)
    responses.post(MESSAGES_URL, status=400, json=OVERFLOW_ANSWER)
    reply = small_window_proxy(settings_env).messages(big_session())
    assert reply.status_code == 400 and len(responses.calls) == 2  # never a third try
    assert reply.get_json()["error"]["message"].startswith("prompt is too long")


# ---------------------------------------------------------------------------- streams


@responses.activate
def test_anthropic_stream_carries_context_info_on_message_delta(
    settings_env: dict[str, str],
) -> None:
    transcript = (FIXTURES / "sse" / "anthropic_thinking_text.txt").read_bytes()
    responses.post(MESSAGES_URL, body=transcript, content_type="text/event-stream")
    reply = small_window_proxy(settings_env).messages(big_session(stream=True))
    assert reply.headers["X-Context-Risk-Level"] == "OVERFLOW"
    events = anthropic_events(reply)
    deltas = [e for e in events if e["type"] == "message_delta"]
    assert len(deltas) == 1 and deltas[0]["context_info"]["truncated"] is True
    assert events[-1]["type"] == "message_stop"


@responses.activate
@pytest.mark.parametrize("include_usage", [False, True])
def test_openai_stream_carries_context_info_on_its_last_chunk(
    settings_env: dict[str, str], include_usage: bool
) -> None:
    transcript = (FIXTURES / "sse" / "anthropic_parallel_tools.txt").read_bytes()
    responses.post(MESSAGES_URL, body=transcript, content_type="text/event-stream")
    body = openai_body(big_session()) | {
        "stream": True,
        "stream_options": {"include_usage": include_usage},
    }
    out = frames(small_window_proxy(settings_env).chat(body))
    assert out[-1] == "[DONE]"
    last = out[-2]
    assert last["context_info"]["risk_level"] == "OVERFLOW"
    assert ("usage" in last) is include_usage
    assert all("context_info" not in chunk for chunk in out[:-2])


@responses.activate
def test_slow_work_runs_after_the_headers_with_keepalives(settings_env: dict[str, str]) -> None:
    transcript = (FIXTURES / "sse" / "anthropic_thinking_text.txt").read_bytes()
    responses.post(MESSAGES_URL, body=transcript, content_type="text/event-stream")

    class Sleepy(SlowCondenser):
        def condense(self, *args: Any) -> Any:
            time.sleep(0.35)
            return super().condense(*args)

    proxy = small_window_proxy(settings_env, Sleepy(), KEEPALIVE_INTERVAL="0.1")
    reply = proxy.messages(big_session(stream=True))
    assert reply.status_code == 200 and reply.headers["X-Context-Risk-Level"] == "OVERFLOW"
    raw = reply.data
    assert raw.startswith(b": keepalive\n\n")
    assert 2 <= raw.count(b": keepalive\n\n") <= 5
    events = anthropic_events(reply)
    info = next(e for e in events if e["type"] == "message_delta")["context_info"]
    assert info["condensation_applied"] is True and info["truncated"] is False
    assert events[-1]["type"] == "message_stop"
    sent = json.loads(responses.calls[0].request.body)
    assert sent["messages"][0]["content"][0]["text"] == "[condensed]"


@responses.activate
def test_a_json_answer_waits_for_condensation(settings_env: dict[str, str]) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    reply = small_window_proxy(settings_env, SlowCondenser()).messages(big_session())
    info = reply.get_json()["context_info"]
    assert info["condensation_applied"] is True and info["risk_level"] == "OVERFLOW"
    assert info["estimated_input_tokens"] <= info["input_budget"]
    sent = json.loads(responses.calls[0].request.body)
    assert sent["messages"][0]["content"][0]["text"] == "[condensed]"


@responses.activate
def test_a_failure_after_the_headers_is_an_sse_error_event(settings_env: dict[str, str]) -> None:
    responses.post(MESSAGES_URL, status=500, body="upstream broke")
    proxy = small_window_proxy(settings_env, SlowCondenser(), KEEPALIVE_INTERVAL="0.05")
    reply = proxy.messages(big_session(stream=True))
    assert reply.status_code == 200  # the headers went out before the failure
    events = anthropic_events(reply)
    assert events[-1]["type"] == "error" and "500" in events[-1]["error"]["message"]


def test_an_abandoned_slow_stream_releases_its_upstream() -> None:
    from api.keepalive import Background

    released = threading.Event()

    class Stream:
        def close(self) -> None:
            released.set()

    gate = threading.Event()
    background = Background(lambda: (gate.wait(5), Stream())[1], cleanup=lambda s: s.close())
    keepalives = background.keepalives(0.01)
    assert next(keepalives) == b": keepalive\n\n"
    background.abandon()  # the client left before the work ended
    gate.set()
    assert released.wait(2)


# ---------------------------------------------------------------------------- usage and counting


@responses.activate
@pytest.mark.parametrize("mode", ["forwarded", "conversation"])
def test_usage_describes_what_usage_reporting_says(settings_env: dict[str, str], mode: str) -> None:
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)  # upstream says input_tokens 12
    proxy = small_window_proxy(
        settings_env, USAGE_REPORTING=mode, ANTHROPIC_EXPECTED_TOKENS="40000"
    )
    body = proxy.messages(big_session()).get_json()
    saved = body["context_info"]["tokens_saved"]
    expected = 12 if mode == "forwarded" else 12 + saved
    assert body["usage"]["input_tokens"] == round(expected * 2)  # scaled 20k → 40k


@pytest.mark.parametrize("mode", ["forwarded", "conversation"])
def test_count_tokens_predicts_without_calling_the_upstream(
    settings_env: dict[str, str], mode: str
) -> None:
    proxy = small_window_proxy(settings_env, USAGE_REPORTING=mode)
    reply = proxy._client.post(  # noqa: SLF001 - count_tokens has no helper
        "/v1/messages/count_tokens", json=big_session(), headers={"x-api-key": "sk"}
    )
    counted = reply.get_json()["input_tokens"] / 10  # scaled from the 20k window to 200k
    if mode == "forwarded":
        assert counted <= int(WINDOW) - 8192
    else:
        assert counted > int(WINDOW)


# ---------------------------------------------------------------------------- observability


@responses.activate
def test_decisions_show_in_metrics_and_health(settings_env: dict[str, str]) -> None:
    from tests.prometheus_text import parse_samples, value

    responses.post(MESSAGES_URL, status=400, json=OVERFLOW_ANSWER)
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY)
    proxy = small_window_proxy(settings_env)
    info = proxy.messages(big_session()).get_json()["context_info"]  # truncated, then retried
    proxy.messages(
        {"model": "glm-4.6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    )
    client = proxy._client  # noqa: SLF001
    samples = parse_samples(client.get("/metrics").get_data(as_text=True))
    prefix = "anthropic_proxy_context_"
    assert value(samples, prefix + "requests_total", risk_level="OVERFLOW") == 2  # first try, retry
    assert value(samples, prefix + "requests_total", risk_level="SAFE") == 1
    assert value(samples, prefix + "overflow_retries_total") == 1
    assert value(samples, prefix + "truncations_total") == 2
    assert value(samples, prefix + "messages_removed_total") >= info["messages_removed"]
    health = client.get("/health").get_json()["context"]
    assert health["requests_prepared"] == 3 and health["average_prepare_ms"] > 0
    assert health["analysis_cache"]["misses"] >= 1
    assert health["switches"]["simple_truncation"] is False
    assert health["switches"]["usage_reporting"] == "forwarded"


# ---------------------------------------------------------------------------- calibration


@responses.activate
@pytest.mark.parametrize("shape", ["anthropic", "openai"])
def test_usage_is_learned_and_corrects_the_next_turn(
    settings_env: dict[str, str], shape: str
) -> None:
    from tests.api.test_chat_completions import CHAT_URL, OPENAI_REPLY
    from upstream import anthropic_format

    app = create_app(Settings.from_env(settings_env))
    client = app.test_client()
    context = app.extensions[EXTENSION_KEY].context
    model = "glm-4.6" + ("-openai" if shape == "openai" else "")
    ask = {"role": "user", "content": "Explain the retry policy " * 40}
    first = {"model": model, "max_tokens": 50, "messages": [ask]}
    estimate = context.counter.count_request(anthropic_format.parse_request(first), shape)
    true = estimate + 37
    if shape == "anthropic":  # Anthropic's input_tokens leave out what came from the cache
        usage = {"input_tokens": true - 100, "cache_read_input_tokens": 100, "output_tokens": 3}
        responses.post(MESSAGES_URL, json=ANTHROPIC_REPLY | {"usage": usage})
    else:  # OpenAI's prompt_tokens include the cached ones
        usage = {"prompt_tokens": true, "completion_tokens": 4,
                 "prompt_tokens_details": {"cached_tokens": 100}}  # fmt: skip
        responses.post(CHAT_URL, json=OPENAI_REPLY | {"usage": usage})
    reply = client.post("/v1/messages", json=first, headers={"x-api-key": "sk"})
    assert reply.get_json()["context_info"]["count_source"] == "estimate"
    more = [{"role": "assistant", "content": "It backs off."}, {"role": "user", "content": "And?"}]
    second = first | {"messages": [ask, *more]}
    raw = context.counter.count_request(anthropic_format.parse_request(second), shape)
    counted = client.post("/v1/messages/count_tokens", json=second, headers={"x-api-key": "sk"})
    expected = raw + round(37 * raw / estimate)  # the correction grows with the conversation
    assert counted.get_json()["input_tokens"] == expected  # count_tokens is calibrated too
    reply = client.post("/v1/messages", json=second, headers={"x-api-key": "sk"})
    info = reply.get_json()["context_info"]
    assert info["count_source"] == "calibrated" and info["estimated_input_tokens"] == expected
