"""Shared fixtures: settings from a dict, the app from the factory, a client, request helpers."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from config import Settings
from upstream import canonical as c
from upstream.routing import Route

# The suite draws the same examples on every run (CI must not turn red by luck);
# HYPOTHESIS_PROFILE=explore draws new ones each time, to go looking for bugs.
hypothesis.settings.register_profile("ci", derandomize=True, deadline=None)
hypothesis.settings.register_profile("explore", deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = REPO_ROOT / "tests" / "fixtures"
ANTHROPIC_BASE = "http://upstream.test/api/anthropic"
OPENAI_BASE = "http://upstream.test/api/coding/paas/v4"
# Retries wait a hundredth of a second here, so tests of failing upstreams stay quick.
TEST_ENV = {
    "UPSTREAM_BASE": ANTHROPIC_BASE,
    "OPENAI_UPSTREAM_BASE": OPENAI_BASE,
    "UPSTREAM_RETRY_BACKOFF": "0.01",
}
# A real 1×1 PNG, base64: the image the conversion and vision-routing tests send.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


class VisionModel:
    """Stands in for the upstream call: records what it was asked, answers or fails."""

    def __init__(self, answer: str = "A grey rectangle.", delay: float = 0.0) -> None:
        self.answer, self.delay = answer, delay
        self.calls: list[tuple[Route, c.Request, str, float]] = []
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def __call__(self, route: Route, request: c.Request, key: str, timeout: float) -> c.Response:
        with self._lock:
            self.calls.append((route, request, key, timeout))
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return {"content": [{"type": "text", "text": self.answer}]}  # type: ignore[typeddict-item]


@pytest.fixture
def collect_garbage() -> Iterator[None]:
    """Collect after the test, so a leaked socket's ResourceWarning fails the test that leaked
    it rather than whichever test runs when the garbage collector happens to."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _restore_environ() -> Iterator[None]:
    """Tests may set variables; every test starts from the environment it found."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def settings_env(tmp_path: Path) -> dict[str, str]:
    """The variables a test's Settings are read from; override by updating this dict.

    Each test has a shared store of its own, so no summary made by one is found by another.
    """
    return dict(TEST_ENV) | {"CACHE_DIR": str(tmp_path / "store")}


@pytest.fixture
def settings(settings_env: dict[str, str]) -> Settings:
    return Settings.from_env(settings_env)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class ProxyActions:
    """Posts chat-completions and messages requests the way clients do."""

    def __init__(self, client: FlaskClient) -> None:
        self._client = client

    def chat(self, body: Any, key: str | None = "sk-client", **headers: str) -> TestResponse:
        return self._post("/v1/chat/completions", body, key, headers)

    def messages(self, body: Any, key: str | None = "sk-client", **headers: str) -> TestResponse:
        return self._post("/v1/messages", body, key, headers)

    def _post(self, path: str, body: Any, key: str | None, headers: dict[str, str]) -> TestResponse:
        if key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")
        if isinstance(body, (bytes, str)):
            return self._client.post(
                path, data=body, headers=headers, content_type="application/json"
            )
        return self._client.post(path, json=body, headers=headers)


@pytest.fixture
def proxy(client: FlaskClient) -> ProxyActions:
    return ProxyActions(client)
