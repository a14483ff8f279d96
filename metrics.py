"""Prometheus metrics: one Metrics per app, aggregated over gunicorn workers when they share a dir.

prometheus_client picks its storage when it is imported: with PROMETHEUS_MULTIPROC_DIR set (as
gunicorn.conf.py does before the workers start) every process writes its values to files in that
directory, and a scrape sums the files of all workers, whichever worker serves it. Without it the
values live in this process and a scrape shows them alone (`flask run`, tests).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from config import ConfigError

if TYPE_CHECKING:
    from context.info import ContextInfo

logger = logging.getLogger(__name__)

PREFIX = "anthropic_proxy_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Seconds until a response starts: a non-stream completion waits for the whole answer, and GLM
# can think for minutes, so the buckets reach REQUEST_TIMEOUT's default of 300 s.
QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class Metrics:
    """The proxy's counters and histogram, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = shared_dir()
        if self.shared_dir is not None:
            _prepare(self.shared_dir)
        self._cache_lookups = Counter(
            PREFIX + "token_cache_lookups",
            "Token counter cache lookups, one per content piece counted, by result.",
            ["result"],
            registry=self.registry,
        )
        self._hits = self._cache_lookups.labels(result="hit")
        self._misses = self._cache_lookups.labels(result="miss")
        self._requests = Counter(
            PREFIX + "requests",
            "HTTP requests answered, by route (`other` for unknown paths) and status code.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self._risk = Counter(
            PREFIX + "context_requests",
            "Completion requests by the risk level of their effective conversation.",
            ["risk_level"],
            registry=self.registry,
        )
        self._count_sources = Counter(
            PREFIX + "token_count_source",
            "Forwarded sizes by where they came from: calibrated (by usage), estimate or exact.",
            ["source"],
            registry=self.registry,
        )
        self._truncations = Counter(
            PREFIX + "context_truncations",
            "Requests truncated to fit the window (after condensation, or without it).",
            registry=self.registry,
        )
        self._messages_removed = Counter(
            PREFIX + "context_messages_removed",
            "Messages dropped by truncation.",
            registry=self.registry,
        )
        self._overflow_retries = Counter(
            PREFIX + "context_overflow_retries",
            "Smaller retries after the upstream answered that the prompt is too long.",
            registry=self.registry,
        )
        self._max_tokens_lowered = Counter(
            PREFIX + "context_max_tokens_lowered",
            "Requests whose max_tokens was lowered so input and output fit the window.",
            registry=self.registry,
        )
        self._condensations = Counter(
            PREFIX + "condensations",
            "Condensation attempts by strategy and result (success, fallback, failure).",
            ["strategy", "result"],
            registry=self.registry,
        )
        self._summary_calls = Counter(
            PREFIX + "summary_calls",
            "Upstream summary calls made (reused summaries make none).",
            registry=self.registry,
        )
        self._condensation_seconds = Histogram(
            PREFIX + "condensation_seconds",
            "Seconds a condensation that made summary calls added to its request.",
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self._tokens_saved = Counter(
            PREFIX + "context_tokens_saved",
            "Input tokens the forwarded requests left out (condensation and truncation).",
            registry=self.registry,
        )
        self._condensation_hits = Counter(
            PREFIX + "condensation_reused",
            "Requests forwarded with a condensation found in the shared store.",
            registry=self.registry,
        )
        self._descriptions = Counter(
            PREFIX + "image_descriptions",
            "Image descriptions needed, by result: made (a vision call), cache_hit (found in the"
            " shared store), failed (the call failed or timed out: placeholder or vision route).",
            ["result"],
            registry=self.registry,
        )
        self._retries = Counter(
            PREFIX + "upstream_retries",
            "Upstream calls tried again before any content went out, by reason (the status,"
            " or `connection` for a failed connection).",
            ["reason"],
            registry=self.registry,
        )
        self._analysis_lookups = Counter(
            PREFIX + "analysis_cache_lookups",
            "Context-analysis cache lookups (over-budget requests only), by result.",
            ["result"],
            registry=self.registry,
        )
        self._streams = Gauge(
            PREFIX + "streams_in_flight",
            "Streaming responses being sent now, summed over the workers.",
            multiprocess_mode="livesum",
            registry=self.registry,
        )
        self._queue_wait = Histogram(
            PREFIX + "upstream_queue_wait_seconds",
            "Seconds upstream calls waited for a slot (UPSTREAM_MAX_CONCURRENCY), by outcome.",
            ["outcome"],
            buckets=QUEUE_BUCKETS,
            registry=self.registry,
        )
        self._duration = Histogram(
            PREFIX + "request_duration_seconds",
            "Seconds until the response starts: the whole answer for JSON, headers for streams.",
            ["endpoint"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )

    def record_context(self, info: ContextInfo) -> None:
        """Count one context decision: its risk level and what it had to do."""
        self._risk.labels(risk_level=info.risk_level.value).inc()
        self._count_sources.labels(source=info.count_source).inc()
        if info.truncated:
            self._truncations.inc()
            self._messages_removed.inc(info.messages_removed)
        if info.overflow_retry:
            self._overflow_retries.inc()
        if info.max_tokens_lowered:
            self._max_tokens_lowered.inc()
        if info.tokens_saved > 0:
            self._tokens_saved.inc(info.tokens_saved)
        if info.condensation_applied and info.summary_calls == 0:
            self._condensation_hits.inc()

    def record_condensation(
        self, strategy: str, result: str, summary_calls: int, seconds: float
    ) -> None:
        """Count one condensation attempt by strategy and result, its calls and its time."""
        self._condensations.labels(strategy=strategy, result=result).inc()
        if summary_calls:
            self._summary_calls.inc(summary_calls)
            self._condensation_seconds.observe(seconds)

    def record_retry(self, reason: str) -> None:
        """Count one upstream call tried again ("429", "503", "529" or "connection")."""
        self._retries.labels(reason=reason).inc()

    def record_analysis_cache(self, hit: bool) -> None:
        """Count one context-analysis cache lookup."""
        self._analysis_lookups.labels(result="hit" if hit else "miss").inc()

    def stream_opened(self) -> None:
        self._streams.inc()

    def stream_closed(self) -> None:
        self._streams.dec()

    def record_image_description(self, result: str) -> None:
        """Count one image description: "made", "cache_hit" or "failed"."""
        self._descriptions.labels(result=result).inc()

    def record_token_cache(self, hits: int, misses: int) -> None:
        """Count one request's token-cache hits and misses."""
        if hits:
            self._hits.inc(hits)
        if misses:
            self._misses.inc(misses)

    def record_queue_wait(self, seconds: float, outcome: str) -> None:
        """Count one upstream call's wait for a gate slot: "entered" or "timeout"."""
        self._queue_wait.labels(outcome=outcome).observe(seconds)

    def record_request(self, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and how long its response took to start."""
        self._requests.labels(endpoint=endpoint, status=str(status)).inc()
        self._duration.labels(endpoint=endpoint).observe(seconds)

    def render(self) -> bytes:
        """The text exposition: every worker's values in multiprocess mode, else this process's."""
        if self.shared_dir is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.shared_dir)
        return generate_latest(registry)


def shared_dir() -> str | None:
    """The directory this process's metric values are written to, or None for in-memory values.

    Asks prometheus_client which storage it chose at import, so a PROMETHEUS_MULTIPROC_DIR that
    appeared later (from `.env`, say) cannot make a scrape read files nobody writes.
    """
    path = os.environ.get(MULTIPROC_ENV) or None
    writes_files = bool(getattr(values.ValueClass, "_multiprocess", False))
    if path is not None and not writes_files:
        logger.warning(
            "%s was set after prometheus_client was imported (in .env?); "
            "metrics stay per process: set it in the environment gunicorn starts with",
            MULTIPROC_ENV,
        )
        return None
    return path if writes_files else None


def _prepare(path: str) -> None:
    """Make the shared directory if missing (gunicorn.conf.py does; `flask run` does not).

    Raises ConfigError naming PROMETHEUS_MULTIPROC_DIR when it cannot hold the value files.
    """
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{MULTIPROC_ENV}={path!r} cannot be created: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{MULTIPROC_ENV}={path!r} is not writable by this process")
