"""Usage scaling: report token figures against the window a client expects (DESIGN.md §4).

reported = real × expected ÷ real_window, applied the same way to non-stream usage, every streamed
usage figure and count_tokens. context_info keeps the real numbers and the factor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from upstream import canonical as c

logger = logging.getLogger(__name__)

USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)
# Upstream usage beyond this many windows is not a real figure (a bug or a unit mix-up upstream).
ABSURD_WINDOWS = 4


def scale_factor(expected_window: int, real_window: int) -> float:
    """The factor from the routed model's real window to the client's expected window."""
    return expected_window / real_window


def scale_count(tokens: int, factor: float) -> int:
    """One token figure, scaled and rounded."""
    return round(tokens * factor)


def scale_usage(usage: dict[str, Any], factor: float) -> dict[str, Any]:
    """A usage dict with every known token figure scaled."""
    if factor == 1.0:
        return dict(usage)
    return {
        k: scale_count(v, factor) if k in USAGE_KEYS and isinstance(v, int) else v
        for k, v in usage.items()
    }


def scale_response(response: c.Response, factor: float) -> c.Response:
    """A canonical response with its usage scaled."""
    return response | {"usage": scale_usage(response["usage"], factor)}  # type: ignore[return-value]


def scale_events(events: Iterable[c.StreamEvent], factor: float) -> Iterator[c.StreamEvent]:
    """Canonical stream events with every usage figure scaled, as they pass."""
    for event in events:
        if event["type"] == "message_start":
            message = event["message"] | {"usage": scale_usage(event["message"]["usage"], factor)}
            yield {"type": "message_start", "message": message}  # type: ignore[typeddict-item]
        elif event["type"] == "message_delta" and event.get("usage"):
            yield event | {"usage": scale_usage(event["usage"], factor)}  # type: ignore[misc]
        else:
            yield event


def sanitize_usage(usage: c.Usage, estimate: int, window: int) -> c.Usage:
    """Replace absurd upstream input figures (negative, far beyond the window) with our estimate."""
    fixed = dict(usage)
    for key in ("input_tokens", "output_tokens"):
        value = fixed.get(key, 0)
        if not isinstance(value, int) or value < 0 or value > window * ABSURD_WINDOWS:
            logger.warning("absurd upstream usage %s=%s replaced", key, value)
            fixed[key] = estimate if key == "input_tokens" else 0
    return fixed  # type: ignore[return-value]


def sanitize_events(
    events: Iterable[c.StreamEvent], estimate: int, window: int
) -> Iterator[c.StreamEvent]:
    """Stream events with absurd usage figures replaced, as sanitize_usage does for responses."""
    for event in events:
        if event["type"] == "message_delta" and event.get("usage"):
            fixed = sanitize_usage(event["usage"], estimate, window)  # type: ignore[arg-type]
            yield event | {"usage": fixed}  # type: ignore[misc]
        else:
            yield event
