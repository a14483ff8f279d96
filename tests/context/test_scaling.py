"""Usage reporting: one check and one factor, alike for responses and every streamed figure."""

from __future__ import annotations

import pytest

from context.scaling import UsageReport, sanitize_usage, scale_count, scale_factor


@pytest.mark.parametrize(
    ("expected", "real", "tokens", "reported"),
    [
        (200000, 200000, 1234, 1234),
        (200000, 65536, 1000, 3052),
        (100000, 200000, 1001, 500),
        (128000, 200000, 0, 0),
    ],
)
def test_scale_count(expected: int, real: int, tokens: int, reported: int) -> None:
    assert scale_count(tokens, scale_factor(expected, real)) == reported


def test_stream_and_response_are_reported_identically() -> None:
    report = UsageReport(estimate=10, window=200000, factor=scale_factor(100000, 200000))
    usage = {"input_tokens": 801, "output_tokens": 33, "cache_read_input_tokens": 400}
    response = report.response({"usage": usage})  # type: ignore[arg-type]
    events = list(
        report.events(
            [
                {"type": "message_start", "message": {"usage": dict(usage)}},
                {"type": "message_delta", "delta": {}, "usage": dict(usage)},
                {"type": "message_stop"},
            ]  # type: ignore[list-item]
        )
    )
    assert response["usage"] == events[0]["message"]["usage"] == events[1]["usage"]
    assert response["usage"] == {
        "input_tokens": 400,
        "output_tokens": 16,
        "cache_read_input_tokens": 200,
    }
    assert events[2] == {"type": "message_stop"}


@pytest.mark.parametrize(
    ("usage", "fixed"),
    [
        ({"input_tokens": -5, "output_tokens": 3}, {"input_tokens": 77, "output_tokens": 3}),
        ({"input_tokens": 10**9, "output_tokens": 3}, {"input_tokens": 77, "output_tokens": 3}),
        ({"input_tokens": None, "output_tokens": 3}, {"input_tokens": 77, "output_tokens": 3}),
        ({"input_tokens": 0, "output_tokens": 3}, {"input_tokens": 77, "output_tokens": 3}),
        ({"input_tokens": 5000, "output_tokens": -1}, {"input_tokens": 5000, "output_tokens": 0}),
        ({"output_tokens": 9}, {"output_tokens": 9}),
    ],
)
def test_impossible_usage_is_replaced(usage: dict, fixed: dict) -> None:
    assert sanitize_usage(usage, estimate=77, window=200000) == fixed
