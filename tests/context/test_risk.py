"""Risk levels, budgets and max_tokens fitting at each edge; the thresholds' startup checks."""

from __future__ import annotations

import pytest

from config import ConfigError, Settings
from context.risk import (
    Action,
    RiskLevel,
    Thresholds,
    action_for,
    budget_for,
    fitted_max_tokens,
    grade,
)

BANDS = Thresholds(0.70, 0.80, 0.90)


@pytest.mark.parametrize(
    ("utilization", "level"),
    [
        (0.0, RiskLevel.SAFE),
        (0.6999, RiskLevel.SAFE),
        (0.70, RiskLevel.CAUTION),
        (0.7999, RiskLevel.CAUTION),
        (0.80, RiskLevel.WARNING),
        (0.8999, RiskLevel.WARNING),
        (0.90, RiskLevel.CRITICAL),
        (1.0, RiskLevel.CRITICAL),  # exactly full still fits
        (1.0001, RiskLevel.OVERFLOW),
        (7.5, RiskLevel.OVERFLOW),
    ],
)
def test_grade_at_each_threshold_edge(utilization: float, level: RiskLevel) -> None:
    assert grade(utilization, BANDS) is level


@pytest.mark.parametrize(
    ("level", "action"),
    [
        (RiskLevel.SAFE, Action.MONITOR_ONLY),
        (RiskLevel.CAUTION, Action.MONITOR_ONLY),
        (RiskLevel.WARNING, Action.CONDENSATION_LIGHT),
        (RiskLevel.CRITICAL, Action.CONDENSATION_AGGRESSIVE),
        (RiskLevel.OVERFLOW, Action.EMERGENCY_TRUNCATION),
    ],
)
def test_action_for_each_level(level: RiskLevel, action: Action) -> None:
    assert action_for(level) is action


@pytest.mark.parametrize(
    ("window", "max_tokens", "limit", "reserve"),
    [
        (200_000, 64_000, 8192, 8192),  # Claude Code's 64k asks: the reserve caps it
        (200_000, 1_000, 8192, 1_000),  # a small answer reserves only what it asks
        (65_536, 8192, 8192, 8192),
        (100, 500, 8192, 99),  # never the whole window
    ],
)
def test_budget_reserves_the_smaller_of_max_tokens_and_the_limit(
    window: int, max_tokens: int, limit: int, reserve: int
) -> None:
    budget = budget_for(window, max_tokens, limit)
    assert budget.reserve == reserve
    assert budget.input == window - reserve
    assert budget.utilization(budget.input) == 1.0


@pytest.mark.parametrize(
    ("max_tokens", "input_tokens", "expected"),
    [
        (64_000, 100_000, 64_000),  # fits: untouched
        (64_000, 136_000, 64_000),  # exactly fits
        (64_000, 136_001, 63_999),  # lowered to the room left
        (64_000, 195_000, 8192),  # never below the reserve
        (4096, 199_000, 4096),  # a client's own smaller max_tokens stays
    ],
)
def test_fitted_max_tokens(max_tokens: int, input_tokens: int, expected: int) -> None:
    assert fitted_max_tokens(max_tokens, input_tokens, 200_000, 8192) == expected


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"CONDENSATION_CAUTION_THRESHOLD": "0"}, "CONDENSATION_CAUTION_THRESHOLD"),
        ({"CONDENSATION_CRITICAL_THRESHOLD": "1.2"}, "CONDENSATION_CRITICAL_THRESHOLD"),
        ({"CONDENSATION_WARNING_THRESHOLD": "0.95"}, "CONDENSATION_WARNING_THRESHOLD"),
        ({"CONDENSATION_CAUTION_THRESHOLD": "0.8"}, "CONDENSATION_CAUTION_THRESHOLD"),
        ({"CONDENSATION_WARNING_THRESHOLD": "x"}, "CONDENSATION_WARNING_THRESHOLD"),
        ({"USAGE_REPORTING": "everything"}, "USAGE_REPORTING"),
    ],
)
def test_thresholds_are_validated_at_startup(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_thresholds_may_reach_one() -> None:
    settings = Settings.from_env(
        {
            "CONDENSATION_CAUTION_THRESHOLD": "0.5",
            "CONDENSATION_WARNING_THRESHOLD": "0.9",
            "CONDENSATION_CRITICAL_THRESHOLD": "1",
        }
    )
    assert settings.condensation_critical_threshold == 1.0
