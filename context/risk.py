"""Risk of overflowing the window, and the action each level calls for (DESIGN.md §4).

Pure functions over numbers: the budget a request may fill, how full it is, and what to do.

    >>> bands = Thresholds(0.70, 0.80, 0.90)
    >>> grade(0.85, bands), action_for(grade(0.85, bands))
    (<RiskLevel.WARNING: 'WARNING'>, <Action.CONDENSATION_LIGHT: 'CONDENSATION_LIGHT'>)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RiskLevel(enum.Enum):
    """How close the effective conversation is to the input budget."""

    SAFE = "SAFE"
    CAUTION = "CAUTION"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    OVERFLOW = "OVERFLOW"


class Action(enum.Enum):
    """What a risk level calls for."""

    MONITOR_ONLY = "MONITOR_ONLY"
    CONDENSATION_LIGHT = "CONDENSATION_LIGHT"
    CONDENSATION_AGGRESSIVE = "CONDENSATION_AGGRESSIVE"
    EMERGENCY_TRUNCATION = "EMERGENCY_TRUNCATION"


ACTIONS = {
    RiskLevel.SAFE: Action.MONITOR_ONLY,
    RiskLevel.CAUTION: Action.MONITOR_ONLY,
    RiskLevel.WARNING: Action.CONDENSATION_LIGHT,
    RiskLevel.CRITICAL: Action.CONDENSATION_AGGRESSIVE,
    RiskLevel.OVERFLOW: Action.EMERGENCY_TRUNCATION,
}


@dataclass(frozen=True)
class Thresholds:
    """Utilization at which CAUTION, WARNING and CRITICAL begin (ordered, in (0, 1])."""

    caution: float
    warning: float
    critical: float


@dataclass(frozen=True)
class Budget:
    """A routed model's window split into what the input may use and what the answer keeps."""

    window: int
    reserve: int

    @property
    def input(self) -> int:
        """Tokens the input may fill."""
        return self.window - self.reserve

    def utilization(self, tokens: int) -> float:
        """`tokens` as a share of the input budget."""
        return tokens / self.input


def budget_for(window: int, max_tokens: int, reserve_limit: int) -> Budget:
    """Input budget = window - min(max_tokens, OUTPUT_RESERVE_TOKENS), never below one token.

    >>> budget_for(200_000, 64_000, 8192).input
    191808
    """
    reserve = max(0, min(max_tokens, reserve_limit, window - 1))
    return Budget(window, reserve)


def grade(utilization: float, bands: Thresholds) -> RiskLevel:
    """The risk level of a utilization; exactly 1.0 still fits (OVERFLOW is beyond it).

    >>> [grade(u, Thresholds(0.7, 0.8, 0.9)).value for u in (0.69, 0.7, 0.8, 0.9, 1.0, 1.01)]
    ['SAFE', 'CAUTION', 'WARNING', 'CRITICAL', 'CRITICAL', 'OVERFLOW']
    """
    if utilization > 1.0:
        return RiskLevel.OVERFLOW
    if utilization >= bands.critical:
        return RiskLevel.CRITICAL
    if utilization >= bands.warning:
        return RiskLevel.WARNING
    if utilization >= bands.caution:
        return RiskLevel.CAUTION
    return RiskLevel.SAFE


def action_for(level: RiskLevel) -> Action:
    """The action a risk level calls for."""
    return ACTIONS[level]


def fitted_max_tokens(max_tokens: int, input_tokens: int, window: int, floor: int) -> int:
    """max_tokens lowered so input + output fit the window, never below `floor`.

    GLM's window covers input and output; the floor (OUTPUT_RESERVE_TOKENS, or the client's own
    smaller max_tokens) keeps an answer possible.

    >>> fitted_max_tokens(64_000, 150_000, 200_000, 8192)
    50000
    >>> fitted_max_tokens(64_000, 195_000, 200_000, 8192)
    8192
    >>> fitted_max_tokens(4096, 190_000, 200_000, 8192)
    4096
    """
    room = window - input_tokens
    return max(min(max_tokens, room), min(max_tokens, floor), 1)
