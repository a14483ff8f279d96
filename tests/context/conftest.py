"""Fixtures for the context/ tests: managers built from settings, canonical sessions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from config import Settings
from context.manager import ContextManager
from tokens import TokenCounter
from upstream import anthropic_format
from upstream import canonical as c


@pytest.fixture
def make_manager(
    estimator_counter_fresh: Callable[[], TokenCounter],
) -> Callable[..., ContextManager]:
    """A ContextManager from environment-style settings, with a fresh counter."""

    def make(condenser: Any = None, observer: Any = None, **env: str) -> ContextManager:
        settings = Settings.from_env({k.upper(): v for k, v in env.items()})
        return ContextManager(settings, estimator_counter_fresh(), condenser, observer)

    return make


@pytest.fixture(scope="session")
def _cl100k() -> Any:
    from tokens import load_encoding

    return load_encoding(glm_digits=True)


@pytest.fixture
def estimator_counter_fresh(_cl100k: Any) -> Callable[[], TokenCounter]:
    return lambda: TokenCounter(_cl100k, cache_size=4000)


def canonical(body: dict[str, Any]) -> c.Request:
    """A client's Anthropic body as the proxy reads it."""
    return anthropic_format.parse_request(body)
