"""Recognising an upstream's "the prompt is too long" answer, in either z.ai format.

z.ai says it with code 1261 ("Prompt exceeds max length") or 1210 ("Request N input tokens
exceeds the model's maximum context length M"); its Anthropic endpoint may say "prompt is too
long". Any of status 400/413 with such a code or message is an overflow; the stated count, when
there is one, sizes the retry.

    >>> message = "Request 212345 input tokens exceeds the model's maximum context length 200000"
    >>> overflow_tokens(400, "1210", message)
    212345
    >>> is_overflow(400, "1261", "Prompt exceeds max length"), is_overflow(400, None, "bad field")
    (True, False)
"""

from __future__ import annotations

import re

OVERFLOW_CODES = frozenset({"1210", "1261"})
OVERFLOW_PHRASES = (
    "prompt exceeds max length",
    "exceeds the model's maximum context length",
    "maximum context length",
    "prompt is too long",
    "context length exceeded",
)
OVERFLOW_STATUSES = frozenset({400, 413})
# "Request 212345 input tokens exceeds …", "prompt is too long: 212345 tokens > 200000 maximum"
_STATED_COUNT = re.compile(r"(\d[\d,]*)\s+(?:input\s+)?tokens?\b", re.IGNORECASE)


def is_overflow(status: int, code: str | None, message: str) -> bool:
    """True when an upstream error says the prompt does not fit the model's window."""
    if status not in OVERFLOW_STATUSES:
        return False
    if code in OVERFLOW_CODES:
        return True
    lowered = message.lower()
    return any(phrase in lowered for phrase in OVERFLOW_PHRASES)


def overflow_tokens(status: int, code: str | None, message: str) -> int | None:
    """The input size an overflow message states, or None (also when it is no overflow)."""
    if not is_overflow(status, code, message):
        return None
    match = _STATED_COUNT.search(message)
    return int(match.group(1).replace(",", "")) if match else None
