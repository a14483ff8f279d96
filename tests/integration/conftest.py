"""Integration fixtures: the strict fake z.ai in-process, the app under real gunicorn (gthread)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.fake_upstream import FakeUpstream
from tests.integration.servers import Gunicorn

# A short read timeout so the upstream-timeout test answers 504 in seconds, not minutes.
READ_TIMEOUT = "2"


@pytest.fixture(scope="session")
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture(autouse=True)
def _fresh_fake(fake: FakeUpstream) -> None:
    fake.reset()


@pytest.fixture(autouse=True)
def _sockets_checked(collect_garbage: None) -> None:
    """Every integration test opens sockets; leaks fail the test that made them."""


@contextmanager
def events_paced(fake: FakeUpstream, delay: float) -> Iterator[FakeUpstream]:
    """The shared fake with `delay` seconds between stream events; its holds released and
    its pace restored afterwards."""
    previous = fake.event_delay
    fake.event_delay = delay
    try:
        yield fake
    finally:
        fake.release()
        fake.event_delay = previous


def proxy_env(fake: FakeUpstream, **extra: str) -> dict[str, str]:
    """Environment pointing a gunicorn-served proxy at the fake upstream.

    Each server gets a shared store of its own (CACHE_DIR) unless the test names one.
    """
    return {
        "UPSTREAM_BASE": fake.anthropic_base,
        "OPENAI_UPSTREAM_BASE": fake.openai_base,
        "REQUEST_TIMEOUT": READ_TIMEOUT,
        "CONNECT_TIMEOUT": "2",
        "CACHE_DIR": tempfile.mkdtemp(prefix="proxy-store-"),
        "UPSTREAM_RETRY_BACKOFF": "0.01",
        **extra,
    }


@pytest.fixture(scope="session")
def server(fake: FakeUpstream) -> Iterator[Gunicorn]:
    with Gunicorn(proxy_env(fake)) as running:
        yield running
