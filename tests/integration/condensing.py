"""Sessions and servers for condensation under gunicorn: a 40,000-token window (the proxy's and,
where a test sets it, the fake's), so sessions that cross the WARNING band stay small and quick."""

from __future__ import annotations

from typing import Any

from tests.fake.glm import count_input_tokens
from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import proxy_env
from tests.sessions import agent_session

WINDOW = 40_000
FACTS = ("src/billing/invoice_total.py", "compute_total_v2", "INVOICE_ROUNDING_MODE", "4821")


def condensing_env(fake: FakeUpstream, **extra: str) -> dict[str, str]:
    return proxy_env(
        fake,
        REAL_TEXT_MODEL_TOKENS=str(WINDOW),
        ENABLE_CONTEXT_PERFORMANCE_LOGGING="true",
        CONDENSATION_TIMEOUT="5",
        **extra,
    )


def session(share: float, seed: int = 5) -> dict[str, Any]:
    """An agent session at about `share` of the input budget (GLM's count), facts planted early."""
    budget = WINDOW - 8192
    target = int(share * budget)
    for tokens in range(int(target * 0.5), 4 * target, max(500, target // 40)):
        body = agent_session(tokens, seed)
        planted = "Found " + ", ".join(FACTS) + " while reading the billing module."
        body["messages"][2]["content"][0]["content"] = planted
        if count_input_tokens("anthropic", body)[0] >= target:
            return body
    raise AssertionError("no session of that size")
