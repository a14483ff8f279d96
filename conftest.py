"""Names the docstring examples in the rooms use (run as doctests by `make test`)."""

from __future__ import annotations

from typing import Any

import pytest

from config import Settings
from tokens.counter import TokenCounter
from tokens.encoding import load_encoding


@pytest.fixture(autouse=True, scope="session")
def _doctest_names(doctest_namespace: dict[str, Any]) -> None:
    doctest_namespace.update(
        Settings=Settings,
        TokenCounter=TokenCounter,
        load_encoding=load_encoding,
        counter=TokenCounter(load_encoding()),
    )
