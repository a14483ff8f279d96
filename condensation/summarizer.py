"""Summary calls: bounded, chunked, concurrent, cached in the shared store, made once.

A span is summarised in chunks of at most CONDENSATION_MAX_MESSAGES messages, the chunks at the
same time; each chunk's summary is cached under a stable digest of what it was asked (strategy,
model, prompt version, the summary it builds on, the transcript), and concurrent requests for
the same chunk make one upstream call (single flight through the store). A call under way
finishes and is cached even when the request that asked for it is gone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from condensation.prompts import PROMPT_VERSION, summary_request, transcript
from condensation.quality import judge
from condensation.store import Store, single_flight, stable_key
from config import Settings, Strategy
from logs import in_context
from upstream import canonical as c
from upstream.routing import Route

logger = logging.getLogger(__name__)

MIN_SUMMARY_TOKENS = 256
# A call's transcript is elided in the middle beyond one character per token of the window left
# after the answer and the prompt: no text has more tokens than characters (random CJK comes
# close), so the call always fits, in any language.
PROMPT_OVERHEAD_TOKENS = 1000
# Chunk calls of all requests of a worker run on this many threads (one round covers a span
# of CHUNK_WORKERS x CONDENSATION_MAX_MESSAGES messages).
CHUNK_WORKERS = 8
# A summary longer than this many characters per token of its bound is not within it.
MAX_CHARS_PER_TOKEN = 6

Call = Callable[[Route, c.Request, str, float], c.Response]


class SummaryFailed(Exception):
    """A summary call failed, timed out or answered nothing usable."""

    def __init__(self, message: str, calls: int = 0) -> None:
        super().__init__(message)
        self.calls = calls  # upstream calls made before the failure (they cost all the same)


@dataclass(frozen=True)
class Summary:
    """A summary and what it cost: upstream calls made, cached summaries reused, seconds."""

    text: str
    calls: int
    cache_hits: int
    seconds: float


class Summarizer:
    """Asks the summary model, through the proxy's own upstream client."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        call: Call,
        route_for: Callable[[str], Route],
    ) -> None:
        self._settings = settings
        self._store = store
        self._call = call
        self._route = route_for(settings.condensation_model or settings.autotext_model)
        # Shared by every request of the worker: chunk calls run here, so one that is under
        # way finishes (and is cached) even if its request has gone.
        self._pool = ThreadPoolExecutor(CHUNK_WORKERS, thread_name_prefix="summary")

    def summarize(
        self,
        strategy: Strategy,
        span: list[c.Message],
        previous: str | None,
        max_tokens: int,
        api_key: str,
    ) -> Summary:
        """One summary of `previous` plus `span`, at most `max_tokens`; raises SummaryFailed.

        The span's chunks are summarised side by side in one round of calls: the first chunk's
        call also rewrites the previous summary (the rolling part), the others summarise their
        chunk alone, and their bounds share `max_tokens`, so the parts joined stay within it
        and no extra call is needed to fold them together.
        """
        started = time.perf_counter()
        size = self._settings.condensation_max_messages
        chunks = [span[i : i + size] for i in range(0, len(span), size)]
        bounds = _shares(max_tokens, len(chunks), rolling=previous is not None)
        made: list[bool] = []  # one entry per upstream call, failed ones included
        call = in_context(self._cached_call)  # its log lines carry the request's id
        futures = [
            self._pool.submit(
                call, strategy, transcript(chunk), previous if i == 0 else None,
                bound, api_key, made,
            )
            for i, (chunk, bound) in enumerate(zip(chunks, bounds, strict=True))
        ]  # fmt: skip
        try:
            parts = [future.result() for future in futures]  # a failed chunk fails the summary
        except SummaryFailed as exc:
            raise SummaryFailed(str(exc), calls=len(made)) from None
        calls = len(made)
        return Summary(
            "\n\n".join(parts), calls, len(chunks) - calls, time.perf_counter() - started
        )

    def _cached_call(
        self,
        strategy: Strategy,
        text: str,
        previous: str | None,
        max_tokens: int,
        api_key: str,
        made: list[bool],
    ) -> str:
        """The summary for exactly this input, from the store or one upstream call (noted in
        `made`)."""
        text = self._bounded(text, max_tokens, previous)
        model = self._route.model
        key = stable_key(
            "summary", PROMPT_VERSION, strategy.value, model, previous or "", max_tokens, text
        )

        def compute() -> str:
            made.append(True)
            return self._ask(strategy, text, previous, max_tokens, api_key)

        ttl = self._settings.condensation_cache_ttl
        value, _ = single_flight(
            self._store, key, compute, ttl=ttl, wait=self._settings.condensation_timeout
        )
        return str(value)

    def _ask(
        self, strategy: Strategy, text: str, previous: str | None, max_tokens: int, api_key: str
    ) -> str:
        started = time.perf_counter()
        request = summary_request(strategy, text, previous, self._route.model, max_tokens)
        try:
            response = self._call(
                self._route, request, api_key, self._settings.condensation_timeout
            )
        except Exception as exc:  # the caller falls back; the user's request never fails here
            raise SummaryFailed(f"summary call failed: {type(exc).__name__}: {exc}") from None
        summary = c.text_of(response["content"]).strip()
        if not summary:
            raise SummaryFailed("summary call answered no text")
        # Judged before it is stored: a summary that lost the facts must not be served again.
        quality = judge(text + ("\n" + previous if previous else ""), summary,
                        max_chars=max_tokens * MAX_CHARS_PER_TOKEN)  # fmt: skip
        if quality.score < self._settings.condensation_quality_threshold:
            raise SummaryFailed(
                f"summary rejected: quality {quality.score:.2f} < "
                f"{self._settings.condensation_quality_threshold:.2f} "
                f"(kept {quality.kept} of {quality.total} facts)"
            )
        logger.info(
            "CONDENSATION summary_call strategy=%s chars=%d quality=%.2f seconds=%.2f",
            strategy.value, len(summary), quality.score, time.perf_counter() - started,
        )  # fmt: skip
        return summary

    def _bounded(self, text: str, max_tokens: int, previous: str | None) -> str:
        limit = self._route.window - max_tokens - PROMPT_OVERHEAD_TOKENS - len(previous or "")
        limit = max(limit, 1000)
        if len(text) <= limit:
            return text
        half = limit // 2
        return f"{text[:half]}\n[… {len(text) - 2 * half} characters elided …]\n{text[-half:]}"

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _shares(total: int, parts: int, rolling: bool) -> list[int]:
    """Token bounds of `parts` side-by-side calls that together stay within `total`.

    With a previous summary to carry (`rolling`), the first call gets half, as it rewrites
    everything summarised so far; the others share the rest.

    >>> _shares(2000, 1, True), _shares(2000, 4, True), _shares(2000, 4, False)
    ([2000], [1000, 333, 333, 333], [500, 500, 500, 500])
    """
    if parts == 1:
        return [total]
    if not rolling:
        return [max(MIN_SUMMARY_TOKENS, total // parts)] * parts
    rest = max(MIN_SUMMARY_TOKENS, (total - total // 2) // (parts - 1))
    return [total // 2] + [rest] * (parts - 1)


def summary_budget(span_tokens: int, limit: int) -> int:
    """A summary's size bound: at most `limit` and never more than half of what it replaces."""
    return max(MIN_SUMMARY_TOKENS, min(limit, span_tokens // 2))
