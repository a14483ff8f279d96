"""Which upstream answers mean "the prompt is too long", and the count they state."""

from __future__ import annotations

import pytest

from context.overflow import is_overflow, overflow_tokens

LONG_1210 = "Request 212345 input tokens exceeds the model's maximum context length 202752"


@pytest.mark.parametrize(
    ("status", "code", "message", "overflow", "stated"),
    [
        (400, "1261", "Prompt exceeds max length", True, None),
        (400, "1210", LONG_1210, True, 212345),
        (400, None, "prompt is too long: 213,001 tokens > 200000 maximum", True, 213001),
        (400, None, "This model's maximum context length is 200000 tokens", True, 200000),
        (413, None, "Prompt exceeds max length", True, None),
        (400, "1214", "messages[3]: text must not be empty", False, None),
        (429, "1302", "Rate limit reached", False, None),
        (500, "1261", "Prompt exceeds max length", False, None),  # a 5xx is not a verdict
    ],
)
def test_overflow_answers(
    status: int, code: str | None, message: str, overflow: bool, stated: int | None
) -> None:
    assert is_overflow(status, code, message) is overflow
    assert overflow_tokens(status, code, message) == stated
