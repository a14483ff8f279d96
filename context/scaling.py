"""Usage reporting: sanity-check upstream figures, then scale them to the client's window.

DESIGN.md §4: reported = real × expected ÷ real_window, applied the same way to non-stream usage,
every streamed usage figure and count_tokens. context_info keeps the real numbers and the factor.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
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
    return {
        k: scale_count(v, factor) if k in USAGE_KEYS and isinstance(v, int) else v
        for k, v in usage.items()
    }


def sanitize_usage(usage: dict[str, Any], estimate: int, window: int) -> dict[str, Any]:
    """Upstream usage with impossible figures replaced: input by our estimate, output by 0.

    Impossible: not an integer, negative, far beyond the window, or an input of 0 (every real
    request has input; z.ai sends 0 when it sends no usage at all).
    """
    fixed = dict(usage)
    for key, replacement in (("input_tokens", estimate), ("output_tokens", 0)):
        if key not in fixed:
            continue
        value = fixed[key]
        absurd = not isinstance(value, int) or value < 0 or value > window * ABSURD_WINDOWS
        if absurd or (key == "input_tokens" and value == 0):
            if absurd:
                logger.warning("absurd upstream usage %s=%r replaced", key, value)
            fixed[key] = replacement
    return fixed


@dataclass(frozen=True)
class UsageReport:
    """How one request's upstream usage becomes what its client sees: checked, then scaled."""

    estimate: int
    window: int
    factor: float
    # Input tokens the forwarded request left out, added back when usage describes the client's
    # whole conversation (USAGE_REPORTING=conversation); 0 when it describes what was sent.
    added: int = 0

    def usage(self, usage: dict[str, Any]) -> dict[str, Any]:
        checked = sanitize_usage(usage, self.estimate, self.window)
        if self.added and isinstance(checked.get("input_tokens"), int):
            checked["input_tokens"] += self.added
        return scale_usage(checked, self.factor)

    def response(self, response: c.Response) -> c.Response:
        """A canonical response with its usage reported."""
        return response | {"usage": self.usage(dict(response["usage"]))}  # type: ignore[return-value]

    def events(self, events: Iterable[c.StreamEvent]) -> Iterator[c.StreamEvent]:
        """Canonical stream events with every usage figure reported, as they pass."""
        for event in events:
            if event["type"] == "message_start":
                message = event["message"] | {"usage": self.usage(dict(event["message"]["usage"]))}
                yield {"type": "message_start", "message": message}  # type: ignore[typeddict-item]
            elif event["type"] == "message_delta" and event.get("usage"):
                yield event | {"usage": self.usage(event["usage"])}
            else:
                yield event
