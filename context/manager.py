"""ContextManager: every completion request passes here before it is forwarded (DESIGN.md §4).

It counts the conversation as the routed wire will send it, grades the risk against the input
budget, decides the action, and makes sure what is forwarded fits the real window: condensation
through a `Condenser` when one is plugged in (issue 6), structure-safe truncation as the last
resort, max_tokens lowered when input and output would not both fit. It reports what it did as
`ContextInfo`, predicts the managed size for count_tokens, and sizes the one retry after an
upstream overflow answer.

One manager per worker, built in create_app; it owns the TokenCounter and the Condenser.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import cachetools

from config import Settings, Strategy, UsageReporting, VisionRouting
from context.calibration import Calibration, Counted
from context.digests import one_serialisation
from context.info import ContextInfo
from context.overflow import is_overflow, overflow_tokens
from context.risk import (
    Action,
    Budget,
    RiskLevel,
    Thresholds,
    action_for,
    budget_for,
    fitted_max_tokens,
    grade,
)
from context.truncation import PromptTooLong, Truncation, replay, truncate
from errors import BadRequest
from tokens import MessageCounts, TokenCounter
from upstream import canonical as c
from upstream.blocks import thinking_budget
from upstream.routing import Route, asks_for_vision, choose_route, text_route, vision_route
from vision.images import ImageSite, Place, has_recent_image, image_sites, with_descriptions

logger = logging.getLogger(__name__)

# Without a stated count, a retry after an overflow answer aims this much lower.
RETRY_SHRINK = 0.85
# With one, it aims this far below the budget the stated count implies.
RETRY_MARGIN = 0.98
# auto routing: a request with a recent image goes to the vision model if it takes at most this
# share of the vision window (the rest is the answer's, and room for counting's error).
VISION_FIT_SHARE = 0.8
CONDENSING_ACTIONS = frozenset(
    {Action.CONDENSATION_LIGHT, Action.CONDENSATION_AGGRESSIVE, Action.EMERGENCY_TRUNCATION}
)


class PromptTooLongError(BadRequest):
    """400: the request cannot fit even after truncation ("prompt is too long", as Claude Code
    expects to read)."""


class CondensedView(Protocol):
    """A conversation as condensation left it (condensation.condenser.View)."""

    @property
    def request(self) -> c.Request: ...  # what is graded and forwarded

    @property
    def messages_condensed(self) -> int: ...

    @property
    def cache_hit(self) -> bool: ...  # the condensation was found, not made

    @property
    def summary_calls(self) -> int: ...

    @property
    def strategy(self) -> Strategy | None: ...


class Condenser(Protocol):
    """What the manager needs from condensation (the `condensation/` package)."""

    def stats(self) -> dict[str, Any]:
        """Figures for /health (success rate, reuse of condensations, the store's state)."""
        ...

    def effective(self, request: c.Request) -> CondensedView:
        """The request with the condensation recorded for its prefix put back (fast)."""
        ...

    def condense(
        self,
        view: Any,  # the view `effective` returned (each condenser knows its own)
        count: Callable[[c.Request], MessageCounts],
        budget: Budget,
        action: Action,
        api_key: str,
    ) -> CondensedView | None:
        """The view condensed for `action`, or None; may block for seconds."""
        ...


class ImageDescriber(Protocol):
    """What the manager needs to put descriptions where images were (vision.Describer)."""

    def stored(self, sites: list[ImageSite], tally: bool = False) -> dict[Place, str]:
        """The descriptions already made, by place (fast)."""
        ...

    def describe(self, sites: list[ImageSite], api_key: str) -> dict[Place, str | None]:
        """A description for every site, None where its call failed; may block for seconds."""
        ...

    def stats(self) -> dict[str, Any]: ...


class Observer(Protocol):
    """Who hears each decision and each analysis-cache lookup (metrics)."""

    def record_context(self, info: ContextInfo) -> None: ...

    def record_analysis_cache(self, hit: bool) -> None: ...


@dataclass(frozen=True)
class Prepared:
    """One request's decision: what to forward, why, and what is needed to retry it smaller."""

    route: Route
    request: c.Request  # to forward
    effective: c.Request  # the client's conversation with cached condensations put back
    effective_counts: MessageCounts
    view: CondensedView | None  # the condenser's view of the conversation, when there is one
    budget: Budget
    info: ContextInfo
    pending_condensation: bool  # slow work still to run (after headers, for streams)
    raw_estimate: int = 0  # the forwarded request's estimate before calibration
    # How much bigger than the estimate calibration found the conversation (>= 1), kept for
    # what is cut or condensed from it.
    short: float = 1.0
    # Images whose descriptions are still to make (slow work, like condensation), the client's
    # request they belong to and the descriptions already found for its other images.
    images_pending: tuple[ImageSite, ...] = ()
    original: c.Request | None = None
    descriptions: dict[Place, str | None] = field(default_factory=dict)

    @property
    def pending(self) -> bool:
        """Slow work still to run (`finish`): condensation or image descriptions."""
        return self.pending_condensation or bool(self.images_pending)


@dataclass(frozen=True)
class _Measured:
    """What `prepare` and `predict_input_tokens` both start from."""

    client_size: Counted  # the client's conversation
    view: CondensedView | None
    effective: c.Request  # with recorded condensations put back
    counts: MessageCounts  # of `effective`
    size: Counted  # of `effective`, calibrated
    budget: Budget


@dataclass(frozen=True)
class _Analysis:
    """A cached decision: a digest of the request it was made for and the cut it made.

    The cut is kept as message indexes, not as the request, so the cache holds no conversation.
    """

    digest: bytes
    kept: tuple[int, ...]
    counts: MessageCounts


class ContextManager:
    """Grades, fits and reports every completion request of a worker."""

    def __init__(
        self,
        settings: Settings,
        counter: TokenCounter,
        condenser: Condenser | None = None,
        observer: Observer | None = None,
        calibration: Calibration | None = None,
        describer: ImageDescriber | None = None,
    ) -> None:
        self.settings = settings
        self.counter = counter
        self.describer = describer
        self.calibration = calibration if settings.enable_usage_calibration else None
        self.condenser = condenser if settings.enable_ai_condensation else None
        self._observer = observer
        self._bands = Thresholds(
            settings.condensation_caution_threshold,
            settings.condensation_warning_threshold,
            settings.condensation_critical_threshold,
        )
        self._cache: cachetools.TTLCache[tuple[Any, ...], _Analysis] = cachetools.TTLCache(
            settings.context_cache_size, settings.context_analysis_cache_ttl
        )
        self._lock = threading.Lock()
        self._stats = {"hits": 0, "misses": 0, "prepared": 0, "prepare_seconds": 0.0}

    # ------------------------------------------------------------------------ public

    def route(self, request: c.Request) -> Route:
        """Where a request goes: VISION_ROUTING decides for requests that hold images.

        vision (or no describer): the vision model when the latest user turn has an image.
        auto: the vision model when an image sits in the last IMAGE_AGE_THRESHOLD human turns
        and the whole request fits VISION_FIT_SHARE of its window; else the text model with
        descriptions. describe: always the text model with descriptions. A client that names
        the vision model gets it in every mode.
        """
        settings = self.settings
        requested = request["model"]
        mode = settings.vision_routing
        if self.describer is None or mode is VisionRouting.VISION:
            return choose_route(request, settings)
        if asks_for_vision(requested, settings):
            return vision_route(requested, settings)
        messages = request["messages"]
        if not any(c.has_image(m) for m in messages):
            return text_route(requested, settings)
        recent = has_recent_image(messages, settings.image_age_threshold)
        if mode is VisionRouting.AUTO and recent and self._fits_vision(request):
            return vision_route(requested, settings)
        return text_route(requested, settings, describe_images=True)

    def prepare(self, request: c.Request, route: Route, scale: float) -> Prepared:
        """Decide what to forward for `request` on `route`; raises PromptTooLongError.

        Fast (counting and truncation); condensation and descriptions not made yet, when due,
        are left pending for `finish`. On a describing route every image with a description
        made already is replaced by it now.
        """
        with one_serialisation():
            if not route.describe_images:
                return self._prepare(request, route, scale)
            sites = image_sites(request["messages"])
            found = self._stored_descriptions(sites, tally=True)
            pending = tuple(site for site in sites if site.place not in found)
            described = with_descriptions(request, found)
            if not pending:
                return self._prepare(described, route, scale, len(found))
            prepared = self._prepare(described, route, scale, images_pending=True)
            return replace(
                prepared, images_pending=pending, original=request, descriptions=dict(found)
            )

    def _prepare(
        self,
        request: c.Request,
        route: Route,
        scale: float,
        described: int = 0,
        images_pending: bool = False,
    ) -> Prepared:
        """The decision for `request` (`described`: images it had replaced by descriptions).

        With `images_pending` (descriptions still to make) it is provisional, as with
        condensation due: nothing is cut and nothing is accounted until `finish` decides again.
        """
        started = time.perf_counter()
        count = self._count_for(route)
        m = self._measure(request, route, count)
        view, effective, counts, size, budget = m.view, m.effective, m.counts, m.size, m.budget
        client_size = m.client_size
        level = grade(budget.utilization(size.tokens), self._bands)
        action = action_for(level)
        pending = self.condenser is not None and action in CONDENSING_ACTIONS
        fitted, cache_hit = (
            (None, False)
            if pending or images_pending
            else self._fit(effective, counts, _calibrated_budget(budget, size, counts), count)
        )
        forwarded, forwarded_counts = _chosen(effective, counts, fitted)
        short = _shortfall(size, counts)
        sent = (
            size
            if forwarded is effective
            else self._sized(forwarded, forwarded_counts, route, short)
        )
        forwarded, max_tokens = self._fit_output(forwarded, sent.tokens, route.window)
        info = ContextInfo(
            risk_level=level,
            utilization=budget.utilization(size.tokens),
            estimated_input_tokens=sent.tokens,
            original_input_tokens=client_size.tokens,
            count_source=sent.source,
            context_limit=route.window,
            input_budget=budget.input,
            endpoint=route.endpoint.value,
            model=route.model,
            strategy_used=action,
            condensation_applied=bool(view and view.messages_condensed),
            condensation_strategy=view.strategy.value if view and view.strategy else None,
            messages_condensed=view.messages_condensed if view else 0,
            summary_calls=0,
            tokens_saved=client_size.tokens - sent.tokens,
            truncated=fitted is not None,
            messages_removed=fitted.messages_removed if fitted else 0,
            blocks_shrunk=fitted.blocks_shrunk if fitted else 0,
            max_tokens=max_tokens,
            max_tokens_lowered=max_tokens < request["max_tokens"],
            overflow_retry=False,
            processing_time_ms=(time.perf_counter() - started) * 1000,
            cache_hit=cache_hit or bool(view and view.cache_hit),
            scale_factor=scale,
            images_described=described,
            images_forwarded=_images_in(forwarded),
            vision_routing=self.settings.vision_routing.value,
        )
        prepared = Prepared(
            route, forwarded, effective, counts, view, budget, info, pending,
            forwarded_counts.total, short,
        )  # fmt: skip
        if not pending and not images_pending:
            self._done(prepared)
        return prepared

    def finish(self, prepared: Prepared, api_key: str) -> Prepared:
        """Run pending condensation (may block), then fit what is left; a no-op otherwise.

        Descriptions come first: the conversation they complete is what is graded and condensed.
        A failed condensation never fails the request: truncation takes over; a failed
        description leaves a placeholder, or (auto) the vision model takes a request it fits.
        `api_key` is the key summary and description calls are made with.
        """
        if prepared.images_pending:
            prepared = self._finish_images(prepared, api_key)
        if not prepared.pending_condensation or self.condenser is None:
            return prepared
        with one_serialisation():
            return self._finish(prepared, api_key)

    def _finish_images(self, prepared: Prepared, api_key: str) -> Prepared:
        """Make the descriptions still missing and decide again with every one in place."""
        assert self.describer is not None and prepared.original is not None  # prepare() set
        made = self.describer.describe(list(prepared.images_pending), api_key)
        original, route = prepared.original, prepared.route
        with one_serialisation():
            if None in made.values() and self._vision_fallback(original):
                vision = vision_route(route.requested_model, self.settings)
                scale = prepared.info.scale_factor * route.window / vision.window
                return self._prepare(original, vision, scale)
            descriptions = prepared.descriptions | made
            request = with_descriptions(original, descriptions)
            return self._prepare(request, route, prepared.info.scale_factor, len(descriptions))

    def _vision_fallback(self, request: c.Request) -> bool:
        """auto: a request whose description failed goes to the vision model if it fits."""
        return self.settings.vision_routing is VisionRouting.AUTO and self._fits_vision(request)

    def _fits_vision(self, request: c.Request) -> bool:
        """True when the whole request, images by their pixels, fits VISION_FIT_SHARE of the
        vision model's window."""
        tokens = self.counter.count_messages(request, "openai").total
        return tokens <= VISION_FIT_SHARE * self.settings.real_vision_model_tokens

    def _stored_descriptions(self, sites: list[ImageSite], tally: bool) -> dict[Place, str]:
        if not sites or self.describer is None:
            return {}
        try:
            return self.describer.stored(sites, tally)
        except Exception:  # a broken store: the descriptions are made again
            logger.exception("IMAGE stored descriptions could not be read")
            return {}

    def _finish(self, prepared: Prepared, api_key: str) -> Prepared:
        assert self.condenser is not None  # finish() checked
        started = time.perf_counter()
        count = self._count_for(prepared.route)
        view = prepared.view
        try:
            condensed = self.condenser.condense(
                view if view is not None else self.condenser.effective(prepared.effective),
                count,
                prepared.budget,
                prepared.info.strategy_used,
                api_key,
            )
        except Exception:  # condensation is an improvement, never a reason to fail
            logger.exception("CONDENSATION failed; truncation takes over")
            condensed = None
        if condensed is not None:
            view = condensed
        request = view.request if view is not None else prepared.effective
        counts = count(request) if condensed is not None else prepared.effective_counts
        size = self._sized(request, counts, prepared.route, prepared.short)
        fitted, _ = self._fit(
            request, counts, _calibrated_budget(prepared.budget, size, counts), count
        )
        forwarded, forwarded_counts = _chosen(request, counts, fitted)
        return self._refit(
            # what was condensed is what a retry after an overflow answer cuts from
            replace(prepared, view=view, effective=request, effective_counts=counts),
            forwarded,
            forwarded_counts,
            fitted,
            started,
        )

    def after_overflow(
        self, prepared: Prepared, status: int, code: str | None, message: str
    ) -> Prepared | None:
        """The one smaller retry after an upstream overflow answer, or None when there is none.

        Where the answer states the real count, the budget shrinks by the real/estimate ratio;
        otherwise by a fixed step. A retry that would forward the same thing is no retry.
        """
        if prepared.info.overflow_retry or not is_overflow(status, code, message):
            return None
        started = time.perf_counter()
        estimate = prepared.info.estimated_input_tokens
        stated = overflow_tokens(status, code, message)
        if stated:  # the upstream said how big the request really was: a calibration point
            self.learn(prepared, stated)
        ratio = stated / estimate if stated and stated > estimate else 1 / RETRY_SHRINK
        # truncation measures with the estimate: a calibrated shortfall shrinks the target too
        target = math.floor(
            min(prepared.budget.input, estimate) / ratio * RETRY_MARGIN / prepared.short
        )
        count = self._count_for(prepared.route)
        try:
            fitted = truncate(
                prepared.effective,
                prepared.effective_counts,
                target,
                count,
                simple=self.settings.simple_truncation,
            )
        except PromptTooLong:
            return self._less_output(prepared, ratio, started)
        if fitted.counts.total >= prepared.raw_estimate:
            return self._less_output(prepared, ratio, started)
        return self._refit(prepared, fitted.request, fitted.counts, fitted, started, ratio)

    def predict_input_tokens(self, request: c.Request, route: Route) -> int:
        """What count_tokens reports: the managed size (forwarded mode) or the conversation's."""
        with one_serialisation():
            return self._predict(request, route)

    def _predict(self, request: c.Request, route: Route) -> int:
        if route.describe_images:  # made descriptions count as themselves, the rest estimated
            found = self._stored_descriptions(image_sites(request["messages"]), tally=False)
            request = with_descriptions(request, found)
        count = self._count_for(route)
        m = self._measure(request, route, count)
        if self.settings.usage_reporting is UsageReporting.CONVERSATION:
            return m.client_size.tokens
        try:
            fitted, _ = self._fit(
                m.effective, m.counts, _calibrated_budget(m.budget, m.size, m.counts), count
            )
        except PromptTooLongError:
            return m.size.tokens
        if fitted is None:
            return m.size.tokens
        short = _shortfall(m.size, m.counts)
        return self._sized(fitted.request, fitted.counts, route, short).tokens

    def learn(self, prepared: Prepared, true_tokens: int) -> bool:
        """Remember the true input size of what `prepared` forwarded (the upstream's usage)."""
        if self.calibration is None:
            return False
        try:
            return self.calibration.learn(
                prepared.request, _head(prepared.request, prepared.route), prepared.raw_estimate,
                true_tokens,
            )  # fmt: skip
        except Exception:  # learning is an improvement, never a reason to fail the answer
            logger.exception("TOKEN calibration could not learn")
            return False

    def stats(self) -> dict[str, Any]:
        """Analysis-cache figures, average prepare time and the switches in force, for /health."""
        with self._lock:
            stats = dict(self._stats)
            size = len(self._cache)
        looked_up = stats["hits"] + stats["misses"]
        prepared = stats["prepared"]
        return {
            "analysis_cache": {
                "hits": stats["hits"],
                "misses": stats["misses"],
                "size": size,
                "maxsize": self._cache.maxsize,
                "ttl_seconds": self._cache.ttl,
                "hit_ratio": round(stats["hits"] / looked_up, 3) if looked_up else 0.0,
            },
            "requests_prepared": prepared,
            "average_prepare_ms": round(stats["prepare_seconds"] * 1000 / prepared, 3)
            if prepared
            else 0.0,
            "condensation": self.condenser.stats() if self.condenser is not None else None,
            "calibration": self.calibration.stats() if self.calibration is not None else None,
            "image_descriptions": self.describer.stats() if self.describer is not None else None,
            "switches": {
                "ai_condensation": self.settings.enable_ai_condensation,
                "condenser_present": self.condenser is not None,
                "simple_truncation": self.settings.simple_truncation,
                "usage_reporting": self.settings.usage_reporting.value,
                "token_counting": self.counter.mode,
                "usage_calibration": self.calibration is not None,
                "vision_routing": self.settings.vision_routing.value,
                "image_age_threshold": self.settings.image_age_threshold,
                "thresholds": {
                    "caution": self._bands.caution,
                    "warning": self._bands.warning,
                    "critical": self._bands.critical,
                },
                "output_reserve_tokens": self.settings.output_reserve_tokens,
            },
        }

    # ------------------------------------------------------------------------ internals

    def _count_for(self, route: Route) -> Callable[[c.Request], MessageCounts]:
        wire = route.endpoint.value
        described = route.describe_images  # images left are descriptions not made yet

        def count(request: c.Request) -> MessageCounts:
            return self.counter.count_messages(request, wire, described)  # type: ignore[arg-type]

        return count

    def _measure(
        self, request: c.Request, route: Route, count: Callable[[c.Request], MessageCounts]
    ) -> _Measured:
        """The client's conversation and the effective one, counted and sized, and the budget."""
        original = count(request)
        client_size = self._sized(request, original, route)
        view = self._effective(request)
        effective = view.request if view is not None else request
        counts = original if effective is request else count(effective)
        size = client_size if effective is request else self._sized(effective, counts, route)
        budget = budget_for(
            route.window, request["max_tokens"], self.settings.output_reserve_tokens
        )
        return _Measured(client_size, view, effective, counts, size, budget)

    def _sized(
        self, request: c.Request, counts: MessageCounts, route: Route, short: float = 1.0
    ) -> Counted:
        """The request's size: the estimate, corrected by what the upstream said of its prefix.

        A request cut or condensed from a calibrated one matches no known prefix (its marker or
        summary is new); `short`, how much bigger calibration found its source, still applies.
        """
        plain = Counted(counts.total, "exact" if self.counter.mode == "exact" else "estimate")
        if short > 1.0:
            plain = Counted(math.ceil(counts.total * short), "calibrated")
        if self.calibration is None:
            return plain
        try:
            found = self.calibration.count(request, _head(request, route), counts.total)
        except Exception:  # a broken store must not fail the request: use the estimate
            logger.exception("TOKEN calibration lookup failed")
            return plain
        return found if found.source == "calibrated" else plain

    def _effective(self, request: c.Request) -> CondensedView | None:
        if self.condenser is None:
            return None
        try:
            return self.condenser.effective(request)
        except Exception:  # a broken cache must not fail the request: use the conversation
            logger.exception("CONDENSATION cached summaries could not be applied")
            return None

    def _fit(
        self,
        request: c.Request,
        counts: MessageCounts,
        budget: Budget,
        count: Callable[[c.Request], MessageCounts],
    ) -> tuple[Truncation | None, bool]:
        """Truncate when over budget (cached by content); (None, hit) when it already fits."""
        if counts.total <= budget.input:
            return None, False
        key = (budget.window, budget.reserve, counts.fixed, counts.messages)
        with self._lock:
            cached = self._cache.get(key)
        # Equal counts are a cheap key; an equal digest of the content makes the reuse correct
        # (hashed only when the counts match, or when a new cut is stored).
        if cached is not None and cached.digest == content_digest(request):
            self._tally(hit=True)
            return replay(request, cached.kept, cached.counts), True
        self._tally(hit=False)
        try:
            fitted = truncate(
                request, counts, budget.input, count, simple=self.settings.simple_truncation
            )
        except PromptTooLong as exc:
            raise PromptTooLongError(str(exc), param="messages") from None
        if fitted.kept is not None:  # a cut that shrank texts is not worth keeping
            analysis = _Analysis(content_digest(request), fitted.kept, fitted.counts)
            with self._lock:
                self._cache[key] = analysis
        return fitted, False

    def _fit_output(
        self, request: c.Request, input_tokens: int, window: int
    ) -> tuple[c.Request, int]:
        """Lower max_tokens (and a thinking budget with it) so input + output fit the window."""
        wanted = request["max_tokens"]
        fitted = fitted_max_tokens(
            wanted, input_tokens, window, self.settings.output_reserve_tokens
        )
        if fitted == wanted:
            return request, wanted
        lowered = request | {"max_tokens": fitted}
        thinking = request.get("thinking") or {}
        if thinking.get("type") == "enabled" and thinking.get("budget_tokens", 0) >= fitted:
            lowered["thinking"] = thinking_budget(thinking["budget_tokens"], fitted)
        return lowered, fitted

    def _less_output(self, prepared: Prepared, ratio: float, started: float) -> Prepared | None:
        """The retry when no input can go: the same conversation asking for less output.

        An overflow answer means input + max_tokens passed the window; when max_tokens filled
        the room the estimate left, a smaller max_tokens is the retry (see `_retry_window`).
        """
        inflated = math.ceil(prepared.info.estimated_input_tokens * ratio)
        window = _retry_window(prepared.route.window)
        request, max_tokens = self._fit_output(prepared.request, inflated, window)
        if max_tokens >= prepared.request["max_tokens"]:
            return None
        info = replace(
            prepared.info,
            max_tokens=max_tokens,
            max_tokens_lowered=True,
            overflow_retry=True,
            processing_time_ms=prepared.info.processing_time_ms
            + (time.perf_counter() - started) * 1000,
        )
        done = replace(prepared, request=request, info=info, pending_condensation=False)
        self._done(done)
        return done

    def _refit(
        self,
        prepared: Prepared,
        forwarded: c.Request,
        counts: MessageCounts,
        fitted: Truncation | None,
        started: float,
        inflate: float | None = None,
    ) -> Prepared:
        """A new decision for the same request after condensation or, with `inflate` (the
        real/estimate ratio it implies), after an overflow answer."""
        window = prepared.route.window
        view = prepared.view
        sent = self._sized(forwarded, counts, prepared.route, prepared.short)
        forwarded = forwarded | {"max_tokens": prepared.effective["max_tokens"]}
        forwarded, max_tokens = self._fit_output(
            forwarded,
            math.ceil(sent.tokens * (inflate or 1.0)),
            window if inflate is None else _retry_window(window),
        )
        info = replace(
            prepared.info,
            estimated_input_tokens=sent.tokens,
            count_source=sent.source,
            condensation_applied=bool(view and view.messages_condensed),
            condensation_strategy=view.strategy.value if view and view.strategy else None,
            messages_condensed=view.messages_condensed if view else 0,
            summary_calls=view.summary_calls if view else 0,
            cache_hit=prepared.info.cache_hit or bool(view and view.cache_hit),
            tokens_saved=prepared.info.original_input_tokens - sent.tokens,
            truncated=fitted is not None,
            messages_removed=fitted.messages_removed if fitted else 0,
            blocks_shrunk=fitted.blocks_shrunk if fitted else 0,
            max_tokens=max_tokens,
            max_tokens_lowered=max_tokens < prepared.effective["max_tokens"],
            overflow_retry=inflate is not None,
            processing_time_ms=prepared.info.processing_time_ms
            + (time.perf_counter() - started) * 1000,
        )
        done = replace(
            prepared,
            request=forwarded,
            info=info,
            pending_condensation=False,
            raw_estimate=counts.total,
        )
        self._done(done)
        return done

    def _tally(self, hit: bool) -> None:
        with self._lock:
            self._stats["hits" if hit else "misses"] += 1
        self._tell(lambda observer: observer.record_analysis_cache(hit))

    def _tell(self, news: Callable[[Observer], None]) -> None:
        """Pass something on to the observer, if there is one; it can never fail the request."""
        if self._observer is None:
            return
        try:
            news(self._observer)
        except Exception:  # an observer must never fail the request
            logger.exception("context observer failed")

    def _done(self, prepared: Prepared) -> None:
        """Account for a final decision: stats, the CONTEXT log line, the observer."""
        info = prepared.info
        with self._lock:
            self._stats["prepared"] += 1
            self._stats["prepare_seconds"] += info.processing_time_ms / 1000
        if self.settings.enable_context_performance_logging:
            logger.info(
                "CONTEXT endpoint=%s model=%s risk=%s utilization=%.4f original=%d forwarded=%d "
                "budget=%d strategy=%s truncated=%s removed=%d shrunk=%d condensed=%d "
                "max_tokens=%d retry=%s cache_hit=%s ms=%.2f",
                info.endpoint,
                info.model,
                info.risk_level.value,
                info.utilization,
                info.original_input_tokens,
                info.estimated_input_tokens,
                info.input_budget,
                info.strategy_used.value,
                info.truncated,
                info.messages_removed,
                info.blocks_shrunk,
                info.messages_condensed,
                info.max_tokens,
                info.overflow_retry,
                info.cache_hit,
                info.processing_time_ms,
            )
        self._tell(lambda observer: observer.record_context(info))


def _retry_window(window: int) -> int:
    """The window a retry after an overflow answer fits input and output into.

    An estimate can fall short by a fixed amount (an image no header sizes is a guess), which
    scaling the input cannot make up for when max_tokens fills the rest of the window; the retry
    leaves the share of the window it would have cut from the input free.
    """
    return math.floor(window * RETRY_SHRINK * RETRY_MARGIN)


def content_digest(request: c.Request) -> bytes:
    """A stable digest of what a request says (system, tools, messages)."""
    digest = hashlib.blake2b(digest_size=16)
    for key in ("system", "tools", "messages"):
        digest.update(json.dumps(request.get(key), separators=(",", ":")).encode())
    return digest.digest()


def _head(request: c.Request, route: Route) -> tuple[Any, ...]:
    """What a request's true size depends on besides its messages."""
    return (route.endpoint.value, route.model, request.get("system"), request.get("tools"))


def _shortfall(size: Counted, counts: MessageCounts) -> float:
    """How much bigger than its estimate calibration found a conversation (1.0 if not)."""
    return max(1.0, size.tokens / counts.total) if counts.total > 0 else 1.0


def _calibrated_budget(budget: Budget, size: Counted, counts: MessageCounts) -> Budget:
    """The budget truncation works to, in estimated tokens: smaller where the estimate is short.

    Truncation measures with the estimate; a conversation calibration found 10% bigger must be
    cut to a tenth less of it.
    """
    short = _shortfall(size, counts)
    if short <= 1.0:
        return budget
    estimated_input = math.floor(budget.input / short)
    return Budget(budget.window, budget.window - max(1, estimated_input))


def _images_in(request: c.Request) -> int:
    """Image blocks a request forwards (directly and inside tool results)."""
    return len(image_sites(request["messages"]))


def _chosen(
    request: c.Request, counts: MessageCounts, fitted: Truncation | None
) -> tuple[c.Request, MessageCounts]:
    return (fitted.request, fitted.counts) if fitted is not None else (request, counts)


__all__ = [
    "Action",
    "Condenser",
    "ContextInfo",
    "ContextManager",
    "Prepared",
    "PromptTooLongError",
    "RiskLevel",
]
