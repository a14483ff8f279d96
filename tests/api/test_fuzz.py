"""Fuzz both client APIs through the real app against the strict fake z.ai.

Every generated body (valid, mutated, other JSON, broken bytes; see tests/fuzz_bodies.py) must
get a well-formed 2xx or 4xx in the client's own format, never a 5xx or an escaped exception,
and nothing the proxy forwards may be rejected by the fake. The CI profile sends 1,000 bodies to
each API (and each Messages body to count_tokens as well); `benchmarks/fuzz.py` runs more with
fresh randomness and prints the status histograms.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings

from tests.fake_upstream import FakeUpstream
from tests.fuzz_bodies import CHAT, COUNT_TOKENS, MESSAGES, Case, cases
from tests.fuzz_runs import FuzzRun

BODIES_PER_API = 1000
FUZZ_SETTINGS = settings(
    max_examples=BODIES_PER_API,
    # One app and one fake serve all examples (fake.reset() isolates them); bodies are big.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
def settings_env(settings_env: dict[str, str], fake: FakeUpstream) -> dict[str, str]:
    return settings_env | {
        "UPSTREAM_BASE": fake.anthropic_base,
        "OPENAI_UPSTREAM_BASE": fake.openai_base,
    }


@pytest.fixture
def run(client: FlaskClient, fake: FakeUpstream) -> FuzzRun:
    return FuzzRun(client, fake)


@FUZZ_SETTINGS
@given(case=cases(CHAT))
def test_chat_completions_answers_every_body_in_openai_format(run: FuzzRun, case: Case) -> None:
    assert run.send(case) == []


@FUZZ_SETTINGS
@given(case=cases(MESSAGES))
def test_messages_answer_every_body_in_anthropic_format(run: FuzzRun, case: Case) -> None:
    assert run.send(case) == []
    assert run.send(case, COUNT_TOKENS) == []
