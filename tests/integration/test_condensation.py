"""AI condensation under gunicorn against the fake z.ai, which answers summary requests.

The proxy's window is 40,000 tokens here (and so is the fake's, counted with GLM's tokenizer),
so sessions that cross the WARNING band stay small and quick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.integration.condensing import FACTS, WINDOW, condensing_env, session
from tests.integration.servers import REDIS_SERVER, Gunicorn, RedisServer
from tests.sessions import more_rounds

KEY = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}


@pytest.fixture(autouse=True)
def _fake_window(fake: FakeUpstream) -> Iterator[None]:
    saved = dict(fake.windows)
    fake.windows["glm-4.6"] = WINDOW
    yield
    fake.windows.clear()
    fake.windows.update(saved)
    fake.summary_quality = 1.0


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("shared-store")


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, store_dir: Path) -> Iterator[Gunicorn]:
    with Gunicorn(condensing_env(fake, CACHE_DIR=str(store_dir)), workers=2, threads=4) as running:
        yield running


def grow(body: dict[str, Any], rounds: int, seed: int) -> dict[str, Any]:
    """The next turn: the same conversation plus `rounds` new tool rounds."""
    return body | {"messages": body["messages"] + more_rounds(rounds * 1500, seed)}


def send(proxy: Gunicorn, body: dict[str, Any], **extra: Any) -> requests.Response:
    return requests.post(proxy.url + "/v1/messages", json=body | extra, headers=KEY, timeout=60)


def tool_ids(message: dict[str, Any]) -> list[str | None]:
    return [block.get("tool_use_id") for block in message["content"]]


def forwarded(fake: FakeUpstream) -> Any:
    """The latest request the fake received that was not a summary request."""
    return next(r for r in reversed(fake.requests) if "summary_request" not in r.notes)


# ---------------------------------------------------------------------------- the main path


def test_a_session_in_the_warning_band_is_condensed_and_reused(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    body = session(0.85)
    reply = send(proxy, body)
    assert reply.status_code == 200, reply.text
    info = reply.json()["context_info"]
    assert info["condensation_applied"] is True and info["risk_level"] == "WARNING"
    assert info["condensation_strategy"] == "conversation_summary" and info["summary_calls"] >= 1
    assert len(fake.summary_requests) == info["summary_calls"]
    sent = forwarded(fake)
    assert sent.status == 200 and sent.input_tokens + sent.body["max_tokens"] <= WINDOW
    summary = sent.body["messages"][0]["content"][-1]["text"]
    assert summary.startswith("[Summary of") and all(fact in summary for fact in FACTS)
    assert tool_ids(sent.body["messages"][-1]) == tool_ids(body["messages"][-1])  # latest turn

    # the next turns, on any worker: no new summary call, the same condensed prefix
    calls = len(fake.summary_requests)
    previous = sent.body["messages"]
    for seed in range(3):
        turn = grow(body, 1, seed=100 + seed)
        again = send(proxy, turn)
        assert again.status_code == 200, again.text
        info = again.json()["context_info"]
        assert info["cache_hit"] is True and info["summary_calls"] == 0
        assert info["risk_level"] in ("SAFE", "CAUTION")  # carried: not OVERFLOW forever
        assert forwarded(fake).body["messages"][: len(previous) - 1] == previous[:-1]
    assert len(fake.summary_requests) == calls


def test_two_masters_share_the_embedded_store(
    proxy: Gunicorn, fake: FakeUpstream, store_dir: Path
) -> None:
    body = session(0.85, seed=6)
    assert send(proxy, body).status_code == 200
    calls = len(fake.summary_requests)
    with Gunicorn(condensing_env(fake, CACHE_DIR=str(store_dir)), workers=1, threads=2) as other:
        reply = send(other, grow(body, 1, seed=7))
    assert reply.status_code == 200 and reply.json()["context_info"]["cache_hit"] is True
    assert len(fake.summary_requests) == calls


# ---------------------------------------------------------------------------- failures


@pytest.mark.parametrize("fault", ["http_error", "timeout"])
def test_a_failing_summary_call_still_answers_the_user(
    proxy: Gunicorn, fake: FakeUpstream, fault: str
) -> None:
    options = {"status": 500} if fault == "http_error" else {"seconds": 8}
    fake.fail_next(fault, count=4, endpoint="anthropic", **options)
    body = session(0.95, seed=11 + len(fault))
    reply = send(proxy, body)
    assert reply.status_code == 200, reply.text
    info = reply.json()["context_info"]
    assert info["condensation_strategy"] in ("smart_truncation", None) or info["truncated"]
    sent = forwarded(fake)
    assert sent.status == 200 and sent.input_tokens + sent.body["max_tokens"] <= WINDOW
    fake.reset()


def test_a_forgetful_summary_is_rejected_by_the_quality_gate(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    fake.summary_quality = 0.0
    reply = send(proxy, session(0.85, seed=61))
    assert reply.status_code == 200, reply.text
    assert reply.json()["context_info"]["condensation_strategy"] == "smart_truncation"
    assert "quality" in proxy.log_text() and "rejected" in proxy.log_text()


# ---------------------------------------------------------------------------- streams


def test_a_stream_gets_keepalives_while_its_summary_is_made(fake: FakeUpstream) -> None:
    fake.fail_next("timeout", seconds=1.5, endpoint="anthropic")  # the summary call is slow
    env = condensing_env(fake, KEEPALIVE_INTERVAL="0.3")
    with Gunicorn(env, workers=1, threads=2) as proxy:
        started = time.monotonic()
        with requests.post(
            proxy.url + "/v1/messages",
            json=session(0.85, seed=31) | {"stream": True},
            headers=KEY,
            stream=True,
            timeout=30,
        ) as reply:
            assert reply.status_code == 200
            headers_after = time.monotonic() - started
            lines = [line for line in reply.iter_lines() if line]
    assert headers_after < 1.0  # the headers did not wait for the summary
    first_event = next(i for i, line in enumerate(lines) if line.startswith(b"event:"))
    assert lines[:first_event].count(b": keepalive") >= 3
    assert lines[-1].startswith(b"data:") and b"message_stop" in lines[-1]
    delta = next(json.loads(line[6:]) for line in lines if b'"message_delta"' in line)
    assert delta["context_info"]["condensation_applied"] is True


# ---------------------------------------------------------------------------- Redis


@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_two_masters_share_summaries_through_redis_and_survive_it_failing(
    fake: FakeUpstream,
) -> None:
    redis = RedisServer()
    redis.start()
    try:
        env = condensing_env(fake, CACHE_URL=redis.url)
        body = session(0.85, seed=41)
        with (
            Gunicorn(env, workers=1, threads=2) as first,
            Gunicorn(env, workers=1, threads=2) as second,
        ):
            assert send(first, body).status_code == 200
            calls = len(fake.summary_requests)
            reply = send(second, grow(body, 1, seed=42))
            assert reply.json()["context_info"]["cache_hit"] is True
            assert len(fake.summary_requests) == calls
            redis.stop()  # the store fails mid-run: requests still succeed
            fresh = session(0.85, seed=43)
            failed = send(second, fresh)
            assert failed.status_code == 200, failed.text
            assert failed.json()["context_info"]["condensation_applied"] is True
    finally:
        redis.stop()


# ---------------------------------------------------------------------------- client compaction


def test_claude_codes_own_compaction_over_the_window_is_fitted(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    """/compact: a streamed request with all tools and max_tokens 64000 whose last user message
    holds the last tool results and then the request for a summary (DESIGN.md §6)."""
    body = session(1.3, seed=71)
    body["messages"][-1]["content"].append(
        {"type": "text", "text": "Your task is to create a detailed summary of the conversation "
         "so far, with sections for the request, key concepts, files, errors and next steps."}
    )  # fmt: skip
    with requests.post(
        proxy.url + "/v1/messages",
        json=body | {"max_tokens": 64_000, "stream": True},
        headers=KEY,
        stream=True,
        timeout=60,
    ) as reply:
        assert reply.status_code == 200, reply.text
        data = [line[6:] for line in reply.iter_lines() if line.startswith(b"data: ")]
    events = [json.loads(line) for line in data]
    assert events[-1]["type"] == "message_stop"
    info = next(e for e in events if e["type"] == "message_delta")["context_info"]
    assert info["risk_level"] == "OVERFLOW" and info["max_tokens_lowered"] is True
    sent = forwarded(fake)
    assert sent.status == 200 and sent.input_tokens + sent.body["max_tokens"] <= WINDOW
    assert "create a detailed summary" in json.dumps(sent.body["messages"][-1])


def test_health_and_metrics_show_condensation(proxy: Gunicorn) -> None:
    health = requests.get(proxy.url + "/health", timeout=5).json()["context"]["condensation"]
    assert health["strategy"] == "conversation_summary" and "success_rate" in health
    assert health["store"]["name"] == "disk"
    metrics = requests.get(proxy.url + "/metrics", timeout=5).text
    assert (
        'anthropic_proxy_condensations_total{result="success",strategy="conversation_summary"}'
        in metrics
    )
    assert "anthropic_proxy_summary_calls_total" in metrics
    assert "anthropic_proxy_context_tokens_saved_total" in metrics
