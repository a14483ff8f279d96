"""Condenser: older turns become one summary, reused turn after turn (DESIGN.md §6).

A condensation is recorded against the client's own conversation: "of its first `end` messages,
keep these few verbatim (the task, the user's last words) and put this summary in place of the
rest". The record is stored under a digest of those `end` messages, so the next turn, which
resends them and adds its own, finds it on any worker or host and is forwarded with the same
condensed prefix (`effective`): summaries stay cache hits and z.ai's prompt cache stays warm.
When the conversation grows past the trigger again, the next span is folded into the summary
(`condense`) and a longer record is written.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Protocol

from condensation.store import Store, stable_key
from condensation.summarizer import Summarizer, SummaryFailed, summary_budget
from config import Settings, Strategy
from context.digests import canonical_message, chain
from context.risk import Action, Budget
from context.truncation import can_start, protected_pins, protected_tail
from tokens import MessageCounts
from upstream import canonical as c
from upstream.blocks import merge_roles

logger = logging.getLogger(__name__)

SUMMARY_HEADER = "[Summary of {n} earlier messages, written by the proxy's context management]"
# Planning assumes the summary takes this much of its bound, plus the header's tokens.
SUMMARY_OVERHEAD_TOKENS = 40
# A condensation ends at most at this share of the WARNING threshold, whatever the targets say.
HYSTERESIS = 0.8
RECORDS_PER_CONVERSATION = 32
# After the configured strategy, these are tried in turn; smart truncation needs no AI call.
FALLBACKS = {
    Strategy.CONVERSATION_SUMMARY: (Strategy.KEY_POINT_EXTRACTION, Strategy.SMART_TRUNCATION),
    Strategy.KEY_POINT_EXTRACTION: (Strategy.CONVERSATION_SUMMARY, Strategy.SMART_TRUNCATION),
    Strategy.PROGRESSIVE_SUMMARIZATION: (
        Strategy.CONVERSATION_SUMMARY,
        Strategy.SMART_TRUNCATION,
    ),
    Strategy.SMART_TRUNCATION: (),
}
PLACEHOLDER = "[{kind} omitted by context management: about {tokens} tokens]"
BULKY_TEXT_CHARS = 2000

Count = Callable[[c.Request], MessageCounts]


class Observer(Protocol):
    """Who hears each condensation (metrics)."""

    def record_condensation(
        self, strategy: str, result: str, summary_calls: int, seconds: float
    ) -> None: ...


@dataclass(frozen=True)
class Record:
    """One condensation of a conversation's first `end` messages."""

    end: int
    kept: tuple[int, ...]  # indexes below `end` kept verbatim (the task, the user's last words)
    summary: str
    strategy: Strategy

    @property
    def condensed(self) -> int:
        return self.end - len(self.kept)

    def to_json(self) -> dict[str, Any]:
        return {"end": self.end, "kept": list(self.kept), "summary": self.summary,
                "strategy": self.strategy.value}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(data["end"], tuple(data["kept"]), data["summary"], Strategy(data["strategy"]))


@dataclass(frozen=True)
class View:
    """The effective conversation: the client's, with its recorded condensation put back."""

    request: c.Request  # what the context manager grades and forwards
    original: c.Request  # the client's conversation
    record: Record | None
    messages_condensed: int
    cache_hit: bool = False  # the record came from the store
    summary_calls: int = 0
    strategy: Strategy | None = None
    digests: tuple[str, ...] = field(default=(), repr=False)  # per message, for new records


class Condenser:
    """Finds recorded condensations (`effective`) and makes new ones (`condense`)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        summarizer: Summarizer,
        observer: Observer | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._summarizer = summarizer
        self._observer = observer
        self._lock = threading.Lock()
        self._stats = dict.fromkeys(
            ("lookups", "record_hits", "attempts", "successes", "fallbacks", "failures",
             "summary_calls"), 0)  # fmt: skip

    def stats(self) -> dict[str, Any]:
        """Condensations tried and made, records reused, for /health."""
        with self._lock:
            stats: dict[str, Any] = dict(self._stats)
        attempts, lookups = stats["attempts"], stats["lookups"]
        stats["success_rate"] = round(stats["successes"] / attempts, 3) if attempts else None
        stats["record_hit_ratio"] = round(stats["record_hits"] / lookups, 3) if lookups else None
        stats["strategy"] = self._settings.condensation_default_strategy.value
        stats["store"] = self._store.stats()
        return stats

    def _tally(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                self._stats[name] += value

    # ------------------------------------------------------------------------ effective

    def effective(self, request: c.Request) -> View:
        """The request with the longest recorded condensation of its prefix put back."""
        messages = request["messages"]
        index = self._store.get(_index_key(request), fresh=True) or []
        ends = sorted({e for e in index if isinstance(e, int) and 0 < e < len(messages)})
        if not ends:
            return View(request, request, None, 0)
        digests = message_digests(messages)
        self._tally(lookups=1)
        for end in reversed(ends):
            data = self._store.get(_record_key(digests, end))
            if data:
                record = Record.from_json(data)
                self._tally(record_hits=1)
                return View(apply(request, record), request, record, record.condensed, True,
                            strategy=record.strategy, digests=digests)  # fmt: skip
        return View(request, request, None, 0, digests=digests)

    # ------------------------------------------------------------------------ condense

    def condense(
        self, view: View, count: Count, budget: Budget, action: Action, api_key: str
    ) -> View | None:
        """A view condensed down to the action's target, recorded for later turns; or None."""
        settings = self._settings
        share = (
            settings.condensation_light_target
            if action is Action.CONDENSATION_LIGHT
            else settings.condensation_aggressive_target
        )
        # Always end well below the trigger, so the following turns reuse this condensation.
        share = min(share, settings.condensation_warning_threshold * HYSTERESIS)
        original = view.original
        counts = count(original)
        plan = _plan(original["messages"], counts, budget, int(budget.input * share), view.record,
                     self._settings)  # fmt: skip
        if plan is None:
            return None
        strategy = self._settings.condensation_default_strategy
        self._tally(attempts=1)
        started = time.perf_counter()
        made = 0
        attempts = (strategy, *FALLBACKS[strategy])
        if view.record is not None and view.record.summary:
            # Placeholders would replace the summary in force, and what it kept would be lost:
            # better to let truncation cut from the summarised conversation.
            attempts = tuple(a for a in attempts if a is not Strategy.SMART_TRUNCATION) or attempts
        for attempt in attempts:
            record, calls = self._attempt(attempt, plan, view, counts, api_key)
            made += calls
            if record is not None:
                self._tally(successes=1, fallbacks=int(attempt is not strategy), summary_calls=made)
                result = "fallback" if attempt is not strategy else "success"
                self._observe(attempt, result, made, time.perf_counter() - started)
                return self._recorded(view, record, made)
        self._tally(failures=1, summary_calls=made)
        self._observe(strategy, "failure", made, time.perf_counter() - started)
        return None

    def _observe(self, strategy: Strategy, result: str, calls: int, seconds: float) -> None:
        if self._observer is None:
            return
        try:
            self._observer.record_condensation(strategy.value, result, calls, seconds)
        except Exception:  # an observer must never fail the request
            logger.exception("condensation observer failed")

    def _attempt(
        self, strategy: Strategy, plan: _SpanPlan, view: View, counts: MessageCounts, api_key: str
    ) -> tuple[Record | None, int]:
        """One strategy's record for the plan, or None when it failed or fell short."""
        if strategy is Strategy.SMART_TRUNCATION:
            logger.info("CONDENSATION strategy=smart_truncation messages=%d", len(plan.span))
            return Record(plan.end, plan.kept, "", strategy), 0
        messages = view.original["messages"]
        span = [messages[i] for i in plan.span]
        previous = view.record.summary if view.record and view.record.summary else None
        span_tokens = sum(counts.messages[i] for i in plan.span)
        bound = summary_budget(span_tokens, self._settings.condensation_max_summary_tokens)
        try:
            summary = self._summarizer.summarize(strategy, span, previous, bound, api_key)
        except SummaryFailed as exc:
            logger.warning("CONDENSATION strategy=%s failed: %s", strategy.value, exc)
            return None, exc.calls
        # (each call's summary was judged by the quality gate before it was stored)
        logger.info(
            "CONDENSATION strategy=%s messages=%d span_tokens=%d summary_calls=%d "
            "cache_hits=%d seconds=%.2f",
            strategy.value, len(plan.span), span_tokens, summary.calls, summary.cache_hits,
            summary.seconds,
        )  # fmt: skip
        return Record(plan.end, plan.kept, summary.text, strategy), summary.calls

    def _recorded(self, view: View, record: Record, calls: int) -> View:
        """Store the record for later turns (first writer wins) and build its view."""
        original = view.original
        digests = view.digests or message_digests(original["messages"])
        ttl = self._settings.condensation_cache_ttl
        if not self._store.add(_record_key(digests, record.end), record.to_json(), ttl):
            stored = self._store.get(_record_key(digests, record.end))
            record = Record.from_json(stored) if stored else record  # another worker's, same span
        index_key = _index_key(original)
        ends = [e for e in (self._store.get(index_key, fresh=True) or []) if isinstance(e, int)]
        self._store.set(index_key, sorted({*ends, record.end})[-RECORDS_PER_CONVERSATION:], ttl)
        return View(apply(original, record), original, record, record.condensed, False, calls,
                    record.strategy, digests)  # fmt: skip


# ---------------------------------------------------------------------------- records


def apply(request: c.Request, record: Record) -> c.Request:
    """The request with its first `record.end` messages replaced by the kept ones and the summary.

    The task (message 0, when kept) comes first, then the summary, then the other kept messages
    and the rest of the conversation; roles are merged so they alternate.
    """
    messages = request["messages"]
    if record.strategy is Strategy.SMART_TRUNCATION:
        head = [
            m if i in record.kept else _placeholders(m)
            for i, m in enumerate(messages[: record.end])
        ]
        return request | {"messages": [*head, *messages[record.end :]]}
    summary: c.Message = {"role": "user", "content": [summary_block(record)]}
    kept = [messages[i] for i in record.kept]
    head = kept[:1] if record.kept[:1] == (0,) else []
    rest = kept[len(head) :]
    return request | {"messages": merge_roles([*head, summary, *rest, *messages[record.end :]])}


def _placeholders(message: c.Message) -> c.Message:
    """Smart truncation: tool results, images and bulky texts become short notes, in place.

    The structure stays (every tool_use keeps its tool_result), so nothing else must change;
    signed thinking is left as it is (the template drops earlier turns' reasoning anyway).
    """
    content: list[c.ContentBlock] = []
    for block in message["content"]:
        if block["type"] == "tool_result":
            inner = block.get("content", "")
            size = len(inner) if isinstance(inner, str) else len(json.dumps(inner))
            note = PLACEHOLDER.format(kind="tool result", tokens=size // 4)
            content.append(block | {"content": note})
        elif block["type"] == "image":
            content.append({"type": "text", "text": "[image omitted by context management]"})
        elif block["type"] == "text" and len(block["text"]) > BULKY_TEXT_CHARS:
            note = PLACEHOLDER.format(kind="text", tokens=len(block["text"]) // 4)
            content.append({"type": "text", "text": block["text"][:400] + "\n" + note})
        else:
            content.append(block)
    return {"role": message["role"], "content": content}


def summary_block(record: Record) -> c.TextBlock:
    """The clearly marked text that stands in for the condensed messages."""
    header = SUMMARY_HEADER.format(n=record.condensed)
    return {"type": "text", "text": f"{header}\n{record.summary}"}


def message_digests(messages: Sequence[c.Message]) -> tuple[str, ...]:
    """A running digest per message: digests[i] covers messages[0..i] (cache markers ignored)."""
    return chain((), messages)


def _index_key(request: c.Request) -> str:
    messages = request["messages"]
    return stable_key("condensation-index", canonical_message(messages[0]) if messages else "")


def _record_key(digests: Sequence[str], end: int) -> str:
    return stable_key("condensation-record", end, digests[end - 1])


# ---------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _SpanPlan:
    end: int
    kept: tuple[int, ...]
    span: tuple[int, ...]  # indexes summarised now (not in the previous summary, not kept)


def _plan(
    messages: list[c.Message],
    counts: MessageCounts,
    budget: Budget,
    target: int,
    previous: Record | None,
    settings: Settings,
) -> _SpanPlan | None:
    """Where the condensed prefix should end to bring the conversation near `target` tokens."""
    tail = protected_tail(messages)
    pins = protected_pins(messages, counts, budget.input, tail)
    start = previous.end if previous else 0
    suffix = list(reversed(list(accumulate(reversed(counts.messages), initial=0))))
    summary_cost = settings.condensation_max_summary_tokens + SUMMARY_OVERHEAD_TOKENS
    best = None
    for end in range(start + 1, tail + 1):
        if not can_start(messages[end]) and end != tail:
            continue
        kept = _kept(pins, end)
        cost = counts.fixed + sum(counts.messages[i] for i in kept) + summary_cost + suffix[end]
        best = end, kept
        if cost <= target:
            break
    if best is None:
        return None
    end, kept = _aligned(messages, best[0], tail, pins, previous, settings)
    span = _span(end, kept, previous)
    if len(span) < settings.condensation_min_messages:
        return None
    return _SpanPlan(end, kept, span)


def _span(end: int, kept: tuple[int, ...], previous: Record | None) -> tuple[int, ...]:
    """What a summary ending at `end` must cover now: neither kept nor already summarised.

    After placeholders (smart truncation) nothing is summarised yet, so it is all covered now.
    """
    summarised = previous is not None and previous.strategy is not Strategy.SMART_TRUNCATION
    already = set(range(previous.end)) - set(previous.kept) if summarised and previous else set()
    return tuple(i for i in range(end) if i not in kept and i not in already)


def _aligned(
    messages: list[c.Message],
    end: int,
    tail: int,
    pins: tuple[int, ...],
    previous: Record | None,
    settings: Settings,
) -> tuple[int, tuple[int, ...]]:
    """The end moved on (never past the tail) until the span fills whole summary calls.

    Chunks hold CONDENSATION_MAX_MESSAGES messages; a span of 26 would pay three calls for what
    30 buys, so condensing a little further costs nothing and leaves more room before the next.
    """
    size = settings.condensation_max_messages
    first = len(_span(end, _kept(pins, end), previous))
    for later in range(end, tail + 1):
        if later != tail and not can_start(messages[later]):
            continue
        count = len(_span(later, _kept(pins, later), previous))
        if count % size == 0:
            return later, _kept(pins, later)
        if count > first + size:
            break
    return end, _kept(pins, end)


def _kept(pins: tuple[int, ...], end: int) -> tuple[int, ...]:
    return tuple(i for i in pins if i < end)
