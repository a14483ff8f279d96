"""deploy/grafana/anthropic-proxy.json: every metric and label its queries use is one the app
exports, and every panel says what it shows."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from metrics import Metrics
from tests.conftest import REPO_ROOT

BOARD = REPO_ROOT / "deploy" / "grafana" / "anthropic-proxy.json"
SAMPLE_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
}
SELECTOR = re.compile(r"(anthropic_proxy_[a-z_]+)(?:\{([^}]*)\})?")
BY = re.compile(r"\bby \(([^)]*)\)")


def queries() -> list[str]:
    board = json.loads(BOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p.get("targets", [])]


def exported() -> dict[str, frozenset[str]]:
    """Sample names the app's registry can expose, with the labels each carries."""
    samples: dict[str, frozenset[str]] = {}
    for collector in list(Metrics().registry._collector_to_names):  # noqa: SLF001 - what is registered
        labels = frozenset(getattr(collector, "_labelnames", ()))
        for family in collector.describe():
            for suffix in SAMPLE_SUFFIXES[family.type]:
                extra = {"le"} if suffix == "_bucket" else set()
                samples[family.name + suffix] = labels | extra
    return samples


def test_the_board_is_a_dashboard_whose_panels_say_what_they_show() -> None:
    board: dict[str, Any] = json.loads(BOARD.read_text())
    assert board["title"] == "anthropic-proxy" and board["uid"]
    graphs = [p for p in board["panels"] if p["type"] != "row"]
    assert len(graphs) >= 12
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in graphs:
        assert panel["title"] and panel["description"] and panel["targets"], panel["title"]


def test_every_metric_the_queries_use_is_exported() -> None:
    names = exported()
    used = {m.group(1) for q in queries() for m in SELECTOR.finditer(q)}
    assert used, "no query names a metric"
    assert used <= set(names), sorted(used - set(names))


@pytest.mark.parametrize("query", queries())
def test_every_label_a_query_uses_belongs_to_its_metrics(query: str) -> None:
    names = exported()
    metrics = [(m.group(1), m.group(2) or "") for m in SELECTOR.finditer(query)]
    known = set().union(*(names[name] for name, _ in metrics))
    for _, selector in metrics:
        for matcher in filter(None, (s.strip() for s in selector.split(","))):
            assert re.split(r"[=!~]", matcher)[0] in known, (matcher, query)
    for group in BY.findall(query):
        assert {g.strip() for g in group.split(",")} <= known, (group, query)


def test_the_board_covers_what_operators_watch() -> None:
    text = " ".join(queries())
    for metric in ("requests_total", "request_duration_seconds_bucket", "streams_in_flight",
                   "context_requests_total", "condensations_total", "context_tokens_saved_total",
                   "token_cache_lookups_total", "analysis_cache_lookups_total",
                   "condensation_reused_total", "token_count_source_total",
                   "image_descriptions_total", "upstream_queue_wait_seconds_bucket",
                   "upstream_retries_total"):  # fmt: skip
        assert "anthropic_proxy_" + metric in text, metric
