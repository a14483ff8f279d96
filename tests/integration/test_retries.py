"""Retries under gunicorn against the fake z.ai: only before any byte reached the client."""

from __future__ import annotations

import json

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.integration.servers import Gunicorn

KEY = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
ASK = {"model": "glm-4.6", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


def statuses(fake: FakeUpstream) -> list[int]:
    return [r.status for r in fake.requests]


@pytest.mark.parametrize("stream", [False, True])
def test_a_rate_limit_then_success_is_one_answer_from_two_calls(
    server: Gunicorn, fake: FakeUpstream, stream: bool
) -> None:
    fake.fail_next("rate_limit", retry_after=0)
    fake.script("after the wait")
    reply = requests.post(server.url + "/v1/messages", json=ASK | {"stream": stream},
                          headers=KEY, timeout=10)  # fmt: skip
    assert reply.status_code == 200
    if stream:
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith(b"data: ")]
        text = "".join(
            e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta"
        )
        assert events[-1]["type"] == "message_stop"
    else:
        text = reply.json()["content"][0]["text"]
    assert text == "after the wait"
    assert statuses(fake) == [429, 200]


def test_a_stream_that_failed_after_content_is_not_retried(
    server: Gunicorn, fake: FakeUpstream
) -> None:
    fake.fail_next("stream_drop", after=4)
    fake.script("a long answer that will be cut in the middle of its stream")
    reply = requests.post(server.url + "/v1/messages", json=ASK | {"stream": True},
                          headers=KEY, timeout=10)  # fmt: skip
    events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith(b"data: ")]
    assert events[-1]["type"] == "error"  # the client hears it; nothing is repeated
    assert len(fake.requests) == 1


def test_a_close_delimited_upstream_stream_reaches_the_client_event_by_event(
    server: Gunicorn, fake: FakeUpstream
) -> None:
    """Lockstep, not timing: the upstream holds its stream open before the last event; the
    client must already have the earlier events while it waits."""
    fake.close_delimited = True
    try:
        fake.fail_next("hold", after=3, seconds=10)
        fake.script("an answer held before its end")
        with requests.post(server.url + "/v1/messages", json=ASK | {"stream": True},
                           headers=KEY, timeout=10, stream=True) as reply:  # fmt: skip
            lines = reply.iter_lines()
            first = [next(lines) for _ in range(6)]  # three events: event line, data line each
            assert b"message_start" in b"".join(first)
            assert fake.held == 1  # the upstream has not finished: these came as they arrived
            fake.release()
            rest = list(lines)
        assert b"message_stop" in b"".join(rest)
    finally:
        fake.close_delimited = False
