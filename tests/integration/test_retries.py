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
