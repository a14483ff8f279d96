"""The heap is trimmed after a large request's response has closed, and only then."""

from __future__ import annotations

import pytest
from flask import Flask

from api import memory


@pytest.fixture
def trims(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(memory, "find_trim", lambda: lambda: calls.append("trim"))
    return calls


def small_app(threshold: int) -> Flask:
    app = Flask(__name__)
    app.post("/echo")(lambda: "ok")
    assert memory.register_memory_trim(app, threshold)
    return app


@pytest.mark.parametrize(("size", "expected"), [(9, []), (10, ["trim"]), (5000, ["trim"])])
def test_a_trim_follows_bodies_from_the_threshold_on(
    trims: list[str], size: int, expected: list[str]
) -> None:
    reply = small_app(threshold=10).test_client().post("/echo", data=b"x" * size)
    assert reply.status_code == 200
    reply.close()  # the trim waits for the response to close (a stream's end)
    assert trims == expected


def test_no_trim_where_the_c_library_has_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "find_trim", lambda: None)
    assert not memory.register_memory_trim(Flask(__name__))


def test_glibc_trim_is_found_and_runs() -> None:
    trim = memory.find_trim()
    if trim is None:
        pytest.skip("this C library has no malloc_trim")
    assert trim() is None
