"""Calibration under gunicorn: the fake reports GLM-4.6's true count as usage; the next turn,
wherever it lands, is counted as estimate + the correction learned from the previous one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake.glm import glm_encoding
from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import proxy_env
from tests.integration.servers import REDIS_SERVER, Gunicorn, RedisServer
from tests.sessions import agent_session

KEY = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
CHINESE = "上下文管理会在对话过长时压缩较早的消息，并保留任务说明与最近的工具调用结果。" * 12


def session(seed: int) -> dict[str, Any]:
    """A session whose tool results are Chinese: the estimate's hardest case."""
    body = agent_session(12_000, seed, thinking=False)
    for message in body["messages"][2::2]:
        for block in message["content"]:
            if block.get("type") == "tool_result":
                block["content"] = CHINESE
    return body


def next_turn(body: dict[str, Any]) -> dict[str, Any]:
    """The client's next request: one more exchange, in English."""
    call = {"type": "tool_use", "id": "toolu_next", "name": "read_file", "input": {"path": "a.py"}}
    result = {"type": "tool_result", "tool_use_id": "toolu_next", "content": "def main(): pass"}
    more = [{"role": "assistant", "content": [call]}, {"role": "user", "content": [result]}]
    return body | {"messages": body["messages"] + more}


def ask(proxy: Gunicorn, body: dict[str, Any]) -> dict[str, Any]:
    reply = requests.post(proxy.url + "/v1/messages", json=body, headers=KEY, timeout=30)
    assert reply.status_code == 200, reply.text
    return reply.json()["context_info"]


# The estimate errs on Chinese only against GLM's own tokenizer; the fake's fallback (cl100k)
# counts much as the estimate does, which would leave nothing to correct.
needs_glm = pytest.mark.skipif(
    glm_encoding() is None, reason="GLM tokenizer files not found in ../shared/tokenizers"
)


def check_next_turn_is_exact(
    first: Gunicorn, second: Gunicorn, fake: FakeUpstream, seed: int
) -> None:
    body = session(seed)
    info = ask(first, body)
    truth = fake.last.input_tokens
    assert info["count_source"] == "estimate" and fake.last.tokenizer
    off_before = abs(info["estimated_input_tokens"] - truth)
    info = ask(second, next_turn(body))
    truth = fake.last.input_tokens
    off_after = abs(info["estimated_input_tokens"] - truth)
    print(f"estimate off by {off_before} tokens, calibrated next turn off by {off_after}")  # noqa: T201
    assert info["count_source"] == "calibrated"
    assert off_after <= 3 < off_before


@pytest.fixture
def store_dir(tmp_path: Path) -> str:
    return str(tmp_path / "store")


@needs_glm
def test_the_next_turn_is_counted_exactly_on_another_master(
    fake: FakeUpstream, store_dir: str
) -> None:
    env = proxy_env(fake, CACHE_DIR=store_dir, ENABLE_AI_CONDENSATION="false")
    with (
        Gunicorn(env, workers=2, threads=2) as first,
        Gunicorn(env, workers=1, threads=2) as second,
    ):
        check_next_turn_is_exact(first, second, fake, seed=1)


@needs_glm
@pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")
def test_the_next_turn_is_counted_exactly_on_another_host_through_redis(fake: FakeUpstream) -> None:
    with RedisServer() as redis:
        env = proxy_env(fake, CACHE_URL=redis.url, ENABLE_AI_CONDENSATION="false")
        with (
            Gunicorn(env, workers=1, threads=2) as first,
            Gunicorn(env, workers=1, threads=2) as second,
        ):
            check_next_turn_is_exact(first, second, fake, seed=2)
