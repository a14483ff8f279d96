"""The upstream concurrency gate under gunicorn against a fake z.ai that refuses (429 code 1302)
more requests in flight per key than its limit, as z.ai's coding plan does.

In-flight counts are the fake's own: it sees every call the proxy makes, summaries included.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.integration.condensing import WINDOW, condensing_env, session
from tests.integration.conftest import proxy_env
from tests.integration.servers import NO_REDIS, REDIS_SERVER, Gunicorn, RedisServer

LIMIT = 2
ANTHROPIC_KEY = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
OPENAI_KEY = {"Authorization": "Bearer sk-client"}


@pytest.fixture(autouse=True)
def _limited_fake(fake: FakeUpstream) -> Iterator[None]:
    """The fake refuses a third call in flight per key; its streams last about half a second."""
    fake.concurrency_limit, fake.event_delay = LIMIT, 0.05
    yield
    fake.concurrency_limit, fake.event_delay = None, 0.0


def ask(url: str, index: int) -> str:
    """One request of a mix (both APIs, streamed and not); the answer's text."""
    text = f"question {index}"
    if index % 2:
        body = {"model": "glm-4.6", "messages": [{"role": "user", "content": text}]}
        stream = index % 4 == 1
        reply = requests.post(
            url + "/v1/chat/completions",
            json=body | {"stream": stream},
            headers=OPENAI_KEY,
            timeout=60,
        )
        assert reply.status_code == 200, reply.text
        if not stream:
            return reply.json()["choices"][0]["message"]["content"]
        return "".join(
            chunk["choices"][0]["delta"].get("content") or ""
            for chunk in _sse_data(reply.text)
            if chunk["choices"]
        )
    body = {"model": "glm-4.6", "max_tokens": 100, "messages": [{"role": "user", "content": text}]}
    stream = index % 4 == 2
    reply = requests.post(
        url + "/v1/messages", json=body | {"stream": stream}, headers=ANTHROPIC_KEY, timeout=60
    )
    assert reply.status_code == 200, reply.text
    if not stream:
        return reply.json()["content"][0]["text"]
    return "".join(
        event["delta"].get("text", "")
        for event in _sse_data(reply.text)
        if event.get("type") == "content_block_delta"
    )


def _sse_data(text: str) -> list[Any]:
    lines = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    return [json.loads(line) for line in lines if line != "[DONE]"]


def burst(urls: list[str], count: int = 12) -> list[str]:
    """`count` concurrent requests spread over `urls`; their answers' texts, in order."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda i: ask(urls[i % len(urls)], i), range(count)))


def answered_all(answers: list[str]) -> bool:
    return answers == [f"echo: question {i}" for i in range(len(answers))]


def test_without_the_gate_the_burst_trips_the_upstream_limit(
    fake: FakeUpstream, server: Gunicorn
) -> None:
    """The control: the fake's limit bites (the proxy's retries hide some of it, not all)."""
    with ThreadPoolExecutor(12) as pool:
        list(pool.map(lambda i: _try(lambda: ask(server.url, i)), range(12)))
    stats = fake.flight_stats()
    assert stats["peak_in_flight"] > LIMIT
    assert stats["concurrency_rejections"] > 0


def _try(call: Callable[[], str]) -> str | None:
    try:
        return call()
    except AssertionError:  # a 429 that outlasted the retries: expected without the gate
        return None


def test_two_workers_share_the_limit_and_every_queued_request_completes(
    fake: FakeUpstream,
) -> None:
    env = proxy_env(
        fake,
        UPSTREAM_MAX_CONCURRENCY=str(LIMIT),
        UPSTREAM_MAX_RETRIES="0",
        # A worker takes at most 4 connections at once, so the burst is spread over both: with
        # a gate per worker (a store that is not shared) the fake would see 4 in flight.
        GUNICORN_CMD_ARGS="--worker-connections 4",
    )
    with Gunicorn(env, workers=2, threads=16) as proxy:
        answers = burst([proxy.url])
    assert answered_all(answers)
    stats = fake.flight_stats()
    assert stats["peak_in_flight"] == LIMIT  # full, never over
    assert stats["concurrency_rejections"] == 0


def test_two_masters_share_the_limit_through_redis(fake: FakeUpstream) -> None:
    if not REDIS_SERVER:
        pytest.skip(NO_REDIS)
    with RedisServer() as redis_server:
        env = proxy_env(
            fake,
            UPSTREAM_MAX_CONCURRENCY=str(LIMIT),
            UPSTREAM_MAX_RETRIES="0",
            CACHE_URL=redis_server.url,
        )
        with (
            Gunicorn(env, workers=1, threads=16) as one,
            Gunicorn(env, workers=1, threads=16) as two,
        ):
            answers = burst([one.url, two.url])
    assert answered_all(answers)
    stats = fake.flight_stats()
    assert stats["peak_in_flight"] == LIMIT
    assert stats["concurrency_rejections"] == 0


def test_a_request_waiting_for_its_summary_holds_no_slot(fake: FakeUpstream) -> None:
    """At a limit of 1 the summary calls and the request itself take turns: no deadlock."""
    saved = dict(fake.windows)
    fake.windows["glm-4.6"] = WINDOW
    fake.concurrency_limit = 1
    env = condensing_env(fake, UPSTREAM_MAX_CONCURRENCY="1", UPSTREAM_MAX_RETRIES="0")
    try:
        with Gunicorn(env, workers=1, threads=4) as proxy:
            reply = requests.post(
                proxy.url + "/v1/messages",
                json=session(1.1) | {"stream": True},
                headers=ANTHROPIC_KEY,
                timeout=120,
            )
    finally:
        fake.windows.clear()
        fake.windows.update(saved)
    assert reply.status_code == 200
    events = _sse_data(reply.text)
    assert events[-1]["type"] == "message_stop"
    info = next(e for e in events if e["type"] == "message_delta")["context_info"]
    assert info["condensation_applied"] and info["summary_calls"] >= 1
    assert len(fake.summary_requests) == info["summary_calls"]
    stats = fake.flight_stats()
    assert stats["peak_in_flight"] == 1 and stats["concurrency_rejections"] == 0


def test_a_full_queue_answers_429_in_the_clients_format(fake: FakeUpstream) -> None:
    env = proxy_env(
        fake,
        UPSTREAM_MAX_CONCURRENCY="1",
        UPSTREAM_QUEUE_TIMEOUT="0.5",
        KEEPALIVE_INTERVAL="0.1",
    )
    fake.fail_next("hold", after=1)
    with Gunicorn(env, workers=2, threads=4) as proxy:
        holder = threading.Thread(target=ask, args=(proxy.url, 2))  # a stream, held mid-way
        holder.start()
        try:
            _wait_for(lambda: fake.held == 1)
            chat = requests.post(
                proxy.url + "/v1/chat/completions",
                json={"model": "glm-4.6", "messages": [{"role": "user", "content": "hi"}]},
                headers=OPENAI_KEY,
                timeout=30,
            )
            streamed = requests.post(
                proxy.url + "/v1/messages",
                json={
                    "model": "glm-4.6",
                    "max_tokens": 50,
                    "stream": True,
                    "messages": [{"role": "user", "content": "hi"}],
                },
                headers=ANTHROPIC_KEY,
                timeout=30,
            )
        finally:
            fake.release()
            holder.join(30)
        after = ask(proxy.url, 0)
    assert chat.status_code == 429
    assert int(chat.headers["Retry-After"]) >= 1
    error = chat.json()["error"]
    assert error["type"] == "rate_limit_error" and "UPSTREAM_MAX_CONCURRENCY" in error["message"]
    # The stream's headers went out while it queued: keepalives, then an error event.
    assert streamed.status_code == 200
    assert streamed.text.startswith(": keepalive")
    events = _sse_data(streamed.text)
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["error"]["type"] == "rate_limit_error"
    assert after == "echo: question 0"  # the slot came back when the held stream ended


def _wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    done = threading.Event()
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        done.wait(0.02)
    raise AssertionError("condition not met in time")
