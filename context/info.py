"""context_info: what the context manager did to one request, as clients see it (DESIGN.md §4)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from context.risk import Action, RiskLevel


@dataclass(frozen=True)
class ContextInfo:
    """The report carried by every completion response (real token figures plus the factor)."""

    risk_level: RiskLevel
    utilization: float
    estimated_input_tokens: int  # the request as forwarded
    original_input_tokens: int  # the client's conversation as received
    count_source: str  # calibrated (by the upstream's usage), estimate or exact
    context_limit: int  # the routed model's real window
    input_budget: int
    endpoint: str
    model: str
    strategy_used: Action
    condensation_applied: bool
    condensation_strategy: str | None  # the strategy of the condensation in force, if any
    messages_condensed: int
    summary_calls: int  # upstream summary calls this request made (0 when all were reused)
    tokens_saved: int
    truncated: bool
    messages_removed: int
    blocks_shrunk: int
    max_tokens: int  # as forwarded (lowered when input + output would not fit)
    max_tokens_lowered: bool
    overflow_retry: bool
    processing_time_ms: float
    cache_hit: bool
    scale_factor: float
    # Images (issue 12): replaced by descriptions for the text model / sent as images, and the
    # VISION_ROUTING mode that chose.
    images_described: int = 0
    images_forwarded: int = 0
    vision_routing: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (enums as their names, figures rounded)."""
        data = asdict(self)
        data["risk_level"] = self.risk_level.value
        data["strategy_used"] = self.strategy_used.value
        data["utilization"] = round(self.utilization, 4)
        data["processing_time_ms"] = round(self.processing_time_ms, 2)
        data["scale_factor"] = round(self.scale_factor, 6)
        return data

    def headers(self) -> dict[str, str]:
        """The X-Context-* response headers."""
        return {
            "X-Context-Risk-Level": self.risk_level.value,
            "X-Context-Utilization": f"{self.utilization:.4f}",
            "X-Context-Tokens": str(self.estimated_input_tokens),
        }
