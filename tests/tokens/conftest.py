"""Fixtures for the tokens/ tests: encodings loaded once, fresh counters per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tiktoken

from tokens.counter import TokenCounter
from tokens.encoding import load_encoding

REPO_ROOT = Path(__file__).resolve().parents[2]
# GLM-4.6's real tokenizer lives beside the repository and is never copied into it.
GLM_FILE = REPO_ROOT.parent / "shared" / "tokenizers" / "glm-4.6.tiktoken"


@pytest.fixture(scope="session")
def cl100k() -> tiktoken.Encoding:
    return load_encoding()


@pytest.fixture(scope="session")
def glm_encoding() -> tiktoken.Encoding:
    if not GLM_FILE.is_file():
        pytest.skip(f"GLM tokenizer file not found at {GLM_FILE}")
    return load_encoding(file=str(GLM_FILE))


@pytest.fixture(scope="session")
def estimator_counter(cl100k: tiktoken.Encoding) -> TokenCounter:
    """A shared default counter, for tests that only read counts (not cache figures)."""
    return TokenCounter(cl100k)


@pytest.fixture(scope="session")
def exact_counter(glm_encoding: tiktoken.Encoding) -> TokenCounter:
    return TokenCounter(glm_encoding, exact=True)


@pytest.fixture
def make_counter(cl100k: tiktoken.Encoding) -> Callable[..., TokenCounter]:
    """A fresh default counter (own cache and figures), options as keyword arguments."""

    def make(**options: Any) -> TokenCounter:
        return TokenCounter(cl100k, **options)

    return make
