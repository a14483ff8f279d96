"""ContextManager: grading, fitting, reporting, the overflow retry and count_tokens' prediction."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Strategy
from context.info import ContextInfo
from context.manager import RETRY_MARGIN, RETRY_SHRINK, ContextManager, PromptTooLongError
from context.risk import Action, Budget, RiskLevel
from tests.context.conftest import canonical
from tests.fake.checks import anthropic_problems, openai_problems
from tests.sessions import agent_session, more_rounds, openai_body
from tokens import MessageCounts
from upstream import canonical as c
from upstream import openai_format
from upstream.client import WIRE_FORMATS
from upstream.routing import Endpoint

WINDOW = 20_000  # a small text window keeps the sessions small
Make = Callable[..., ContextManager]


def sized(manager: ContextManager, utilization: float, **extra: Any) -> c.Request:
    """A chat whose count lands at `utilization` of the manager's input budget (±0.5%)."""
    route_window = manager.settings.real_text_model_tokens
    budget = route_window - min(1000, manager.settings.output_reserve_tokens)
    base = canonical(
        {"model": "glm-4.6", "max_tokens": 1000, "messages": [{"role": "user", "content": "go"}]}
    )
    fixed = manager.counter.count_request(base)
    words = max(0, int((utilization * budget - fixed) / 1.0))
    body = {
        "model": "glm-4.6",
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "go" + " go" * words}],
    }
    return canonical(body | extra)


@pytest.mark.parametrize(
    ("utilization", "level", "action"),
    [
        (0.50, RiskLevel.SAFE, Action.MONITOR_ONLY),
        (0.75, RiskLevel.CAUTION, Action.MONITOR_ONLY),
        (0.85, RiskLevel.WARNING, Action.CONDENSATION_LIGHT),
        (0.95, RiskLevel.CRITICAL, Action.CONDENSATION_AGGRESSIVE),
    ],
)
def test_each_level_is_graded_and_forwarded_whole(
    make_manager: Make, utilization: float, level: RiskLevel, action: Action
) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW))
    request = sized(manager, utilization)
    prepared = manager.prepare(request, manager.route(request), 1.0)
    info = prepared.info
    assert info.risk_level is level and info.strategy_used is action
    assert abs(info.utilization - utilization) < 0.01
    assert prepared.request == request and not info.truncated and info.tokens_saved == 0
    assert info.estimated_input_tokens == info.original_input_tokens


def test_overflow_is_truncated_to_the_budget(make_manager: Make) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW))
    request = canonical(agent_session(40_000, seed=3))
    prepared = manager.prepare(request, manager.route(request), 0.5)
    info = prepared.info
    assert (
        info.risk_level is RiskLevel.OVERFLOW and info.strategy_used is Action.EMERGENCY_TRUNCATION
    )
    assert info.truncated and info.messages_removed > 0
    assert info.estimated_input_tokens <= info.input_budget == WINDOW - 8192
    assert info.tokens_saved == info.original_input_tokens - info.estimated_input_tokens > 0
    assert manager.counter.count_request(prepared.request) == info.estimated_input_tokens
    assert info.scale_factor == 0.5 and info.context_limit == WINDOW


def test_nothing_that_fits_means_prompt_too_long(make_manager: Make) -> None:
    manager = make_manager(real_text_model_tokens="2000")
    request = canonical(
        {
            "model": "glm-4.6",
            "max_tokens": 100,
            "system": "rule " * 5000,
            "messages": [{"role": "user", "content": "hi"}],
        }
    )
    with pytest.raises(PromptTooLongError, match="prompt is too long") as caught:
        manager.prepare(request, manager.route(request), 1.0)
    assert caught.value.status == 400


def test_max_tokens_is_lowered_so_input_and_output_fit(make_manager: Make) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW))
    request = sized(manager, 0.6) | {
        "max_tokens": 16_000,
        "thinking": {"type": "enabled", "budget_tokens": 12_000},
    }
    prepared = manager.prepare(request, manager.route(request), 1.0)
    sent = prepared.request
    estimate = prepared.info.estimated_input_tokens
    assert sent["max_tokens"] == WINDOW - estimate < 16_000
    assert prepared.info.max_tokens_lowered and prepared.info.max_tokens == sent["max_tokens"]
    assert sent["thinking"]["budget_tokens"] < sent["max_tokens"]
    assert request["max_tokens"] == 16_000  # the client's request is not touched


def test_max_tokens_never_falls_below_the_reserve(make_manager: Make) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW), output_reserve_tokens="4000")
    request = canonical(agent_session(40_000, seed=5)) | {"max_tokens": 64_000}
    prepared = manager.prepare(request, manager.route(request), 1.0)
    assert prepared.request["max_tokens"] >= 4000
    assert prepared.info.estimated_input_tokens + prepared.request["max_tokens"] <= WINDOW


@pytest.mark.parametrize("code", ["1261", "1210"])
def test_one_smaller_retry_after_an_overflow_answer(make_manager: Make, code: str) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW))
    request = canonical(agent_session(40_000, seed=7))
    first = manager.prepare(request, manager.route(request), 1.0)
    stated = int(first.info.estimated_input_tokens * 1.3)
    message = {
        "1261": "Prompt exceeds max length",
        "1210": f"Request {stated} input tokens exceeds the model's maximum context length 1",
    }[code]
    retry = manager.after_overflow(first, 400, code, message)
    assert retry is not None and retry.info.overflow_retry
    assert retry.info.estimated_input_tokens < first.info.estimated_input_tokens
    if code == "1210":  # the stated count sizes the retry: 1.3x our estimate, so 1/1.3 of it
        assert retry.info.estimated_input_tokens <= first.info.estimated_input_tokens / 1.3
        assert retry.info.estimated_input_tokens * 1.3 + retry.request["max_tokens"] <= WINDOW
    assert manager.after_overflow(retry, 400, code, message) is None  # exactly one retry


def test_a_retry_asks_for_less_output_when_no_input_can_go(make_manager: Make) -> None:
    # max_tokens filled the room the estimate left, and the estimate fell short (an image whose
    # size no header gives is a guess): the same conversation is retried asking for less.
    manager = make_manager(real_text_model_tokens=str(WINDOW))
    request = canonical(
        {"model": "glm-4.6", "max_tokens": WINDOW, "messages": [{"role": "user", "content": "hi"}]}
    )
    first = manager.prepare(request, manager.route(request), 1.0)
    assert first.request["max_tokens"] == WINDOW - first.info.estimated_input_tokens
    retry = manager.after_overflow(first, 400, "1261", "Prompt exceeds max length")
    assert retry is not None and retry.info.overflow_retry and retry.info.max_tokens_lowered
    assert retry.request["messages"] == first.request["messages"]
    assert retry.request["max_tokens"] == retry.info.max_tokens <= WINDOW * RETRY_SHRINK
    assert manager.after_overflow(retry, 400, "1261", "Prompt exceeds max length") is None


def test_a_retry_that_cuts_input_leaves_output_room_for_a_short_estimate(
    make_manager: Make,
) -> None:
    window = 3 * WINDOW  # room for output above the reserve after the cut
    manager = make_manager(real_text_model_tokens=str(window))
    request = canonical(agent_session(WINDOW, seed=13)) | {"max_tokens": window}
    first = manager.prepare(request, manager.route(request), 1.0)
    retry = manager.after_overflow(first, 400, "1261", "Prompt exceeds max length")
    assert retry is not None and retry.info.truncated
    inflated = retry.info.estimated_input_tokens / RETRY_SHRINK
    assert inflated + retry.request["max_tokens"] <= window * RETRY_SHRINK * RETRY_MARGIN + 1


def test_no_retry_for_other_errors_or_when_nothing_can_go(make_manager: Make) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW))
    request = canonical(
        {"model": "glm-4.6", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    )
    prepared = manager.prepare(request, manager.route(request), 1.0)
    assert manager.after_overflow(prepared, 400, "1214", "messages: bad field") is None
    assert manager.after_overflow(prepared, 400, "1261", "Prompt exceeds max length") is None


def test_identical_requests_reuse_the_analysis(make_manager: Make) -> None:
    recorder = Recorder()
    manager = make_manager(observer=recorder, real_text_model_tokens=str(WINDOW))
    body = agent_session(40_000, seed=9)
    first = manager.prepare(canonical(body), manager.route(canonical(body)), 1.0)
    again = manager.prepare(canonical(body), manager.route(canonical(body)), 1.0)
    assert not first.info.cache_hit and again.info.cache_hit
    assert again.request == first.request
    other = canonical(body)
    other["messages"][-1]["content"][0]["tool_use_id"] = other["messages"][-1]["content"][0][
        "tool_use_id"
    ]
    other["messages"][0]["content"][0]["text"] += " (and the README)"
    third = manager.prepare(other, manager.route(other), 1.0)
    assert not third.info.cache_hit  # same sizes, different content: analysed anew
    stats = manager.stats()["analysis_cache"]
    assert (stats["hits"], stats["misses"], stats["size"]) == (1, 2, 2)
    assert recorder.lookups == [False, True, False]  # the metrics hear each lookup


@pytest.mark.parametrize(("mode", "expect_managed"), [("forwarded", True), ("conversation", False)])
def test_count_tokens_predicts_what_usage_will_describe(
    make_manager: Make, mode: str, expect_managed: bool
) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW), usage_reporting=mode)
    request = canonical(agent_session(40_000, seed=11))
    route = manager.route(request)
    predicted = manager.predict_input_tokens(request, route)
    prepared = manager.prepare(request, route, 1.0)
    expected = (
        prepared.info.estimated_input_tokens
        if expect_managed
        else prepared.info.original_input_tokens
    )
    assert predicted == expected


def test_unsigned_reasoning_is_counted_on_the_anthropic_wire(make_manager: Make) -> None:
    manager = make_manager()
    reasoning = "step " * 700
    request = canonical(
        {
            "model": "glm-4.6",
            "max_tokens": 100,
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": reasoning, "signature": ""},
                        {"type": "text", "text": "hello"},
                    ],
                },
                {"role": "user", "content": "and?"},
            ],
        }
    )
    anthropic = manager.prepare(request, manager.route(request), 1.0).info.estimated_input_tokens
    openai_route = manager.route(request | {"model": "glm-4.6-openai"})
    openai = manager.prepare(request, openai_route, 1.0).info.estimated_input_tokens
    assert anthropic - openai >= 700  # sent as text there, dropped by the template here


# ---------------------------------------------------------------------------- condenser hook


@dataclass(frozen=True)
class StandInView:
    request: c.Request
    messages_condensed: int = 0
    cache_hit: bool = False
    summary_calls: int = 0
    strategy: Strategy | None = None


class SlowCondenser:
    """A condenser stand-in: cached summaries shrink the view, condense() replaces a span."""

    def __init__(self, cached: int = 0, fail: bool = False) -> None:
        self.cached = cached
        self.fail = fail
        self.calls: list[tuple[Action, str]] = []

    def stats(self) -> dict[str, Any]:
        return {"calls": len(self.calls)}

    def effective(self, request: c.Request) -> StandInView:
        if not self.cached:
            return StandInView(request)
        summary = {
            "role": "user",
            "content": [{"type": "text", "text": "[summary of earlier work]"}],
        }
        messages = [summary, *request["messages"][self.cached + 1 :]]
        condensed = request | {"messages": messages}
        return StandInView(condensed, self.cached, True, 0, Strategy.CONVERSATION_SUMMARY)  # type: ignore[arg-type]

    def condense(
        self,
        view: StandInView,
        count: Callable[[c.Request], MessageCounts],
        budget: Budget,
        action: Action,
        api_key: str,
    ) -> StandInView | None:
        del count, budget  # a stand-in: it always keeps the last two messages
        self.calls.append((action, api_key))
        if self.fail:
            raise RuntimeError("summary call timed out")
        request = view.request
        keep = request["messages"][-2:]
        summary = {"role": "user", "content": [{"type": "text", "text": "[condensed]"}]}
        condensed = request | {"messages": [summary, *keep]}
        return StandInView(
            condensed, len(request["messages"]) - 2, False, 1, Strategy.CONVERSATION_SUMMARY
        )  # type: ignore[arg-type]


def test_risk_is_graded_on_the_effective_conversation(make_manager: Make) -> None:
    manager = make_manager(SlowCondenser(cached=41), real_text_model_tokens=str(WINDOW))
    request = canonical(agent_session(40_000, seed=13))
    prepared = manager.prepare(request, manager.route(request), 1.0)
    info = prepared.info
    assert info.original_input_tokens > WINDOW  # the client's conversation overflows…
    assert info.risk_level in (RiskLevel.SAFE, RiskLevel.CAUTION)  # …the carried one does not
    assert info.condensation_applied and info.messages_condensed == 41
    assert not prepared.pending_condensation


@pytest.mark.parametrize("fail", [False, True])
def test_condensation_runs_in_finish_and_truncation_backs_it_up(
    make_manager: Make, fail: bool
) -> None:
    condenser = SlowCondenser(fail=fail)
    manager = make_manager(condenser, real_text_model_tokens=str(WINDOW))
    request = canonical(agent_session(40_000, seed=17))
    prepared = manager.prepare(request, manager.route(request), 1.0)
    assert prepared.pending_condensation and condenser.calls == []
    done = manager.finish(prepared, "sk-summary")
    assert condenser.calls == [(Action.EMERGENCY_TRUNCATION, "sk-summary")]
    assert not done.pending_condensation
    assert done.info.estimated_input_tokens <= done.info.input_budget
    assert done.info.condensation_applied is (not fail)
    assert done.info.truncated is fail  # a failed summary never fails the request


def test_condensation_switch_off_means_no_condenser(make_manager: Make) -> None:
    manager = make_manager(SlowCondenser(), enable_ai_condensation="false")
    assert manager.condenser is None
    assert manager.stats()["switches"]["ai_condensation"] is False


# ---------------------------------------------------------------------------- reporting


class Recorder:
    def __init__(self) -> None:
        self.seen: list[ContextInfo] = []
        self.lookups: list[bool] = []

    def record_context(self, info: ContextInfo) -> None:
        self.seen.append(info)

    def record_analysis_cache(self, hit: bool) -> None:
        self.lookups.append(hit)


def test_each_decision_is_observed_logged_and_timed(
    make_manager: Make, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    manager = make_manager(
        observer=recorder,
        real_text_model_tokens=str(WINDOW),
        enable_context_performance_logging="true",
    )
    secret = "the user's private words"
    request = canonical(
        {"model": "glm-4.6", "max_tokens": 100, "messages": [{"role": "user", "content": secret}]}
    )
    with caplog.at_level(logging.INFO, logger="context.manager"):
        prepared = manager.prepare(request, manager.route(request), 1.0)
    assert recorder.seen == [prepared.info]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("CONTEXT ")]
    assert len(lines) == 1 and "risk=SAFE" in lines[0] and secret not in lines[0]
    stats = manager.stats()
    assert stats["requests_prepared"] == 1 and stats["average_prepare_ms"] > 0


def test_context_info_fields_and_headers(make_manager: Make) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW))
    request = canonical(agent_session(40_000, seed=19))
    info = manager.prepare(request, manager.route(request), 1.0).info
    data = info.to_dict()
    for field in (
        "risk_level", "utilization", "estimated_input_tokens", "original_input_tokens",
        "context_limit", "endpoint", "model", "strategy_used", "condensation_applied",
        "messages_condensed", "tokens_saved", "truncated", "messages_removed",
        "processing_time_ms", "cache_hit", "scale_factor",
    ):  # fmt: skip
        assert field in data
    assert data["risk_level"] == "OVERFLOW" and data["strategy_used"] == "EMERGENCY_TRUNCATION"
    assert info.headers() == {
        "X-Context-Risk-Level": "OVERFLOW",
        "X-Context-Utilization": f"{info.utilization:.4f}",
        "X-Context-Tokens": str(info.estimated_input_tokens),
    }


# ---------------------------------------------------------------------------- properties


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(5_000, 50_000),
    shape=st.sampled_from(["anthropic", "openai"]),
    model=st.sampled_from(["glm-4.6", "glm-4.6-openai"]),
    images=st.booleans(),
    max_tokens=st.sampled_from([1024, 8192, 64_000]),
)
def test_whatever_prepare_forwards_fits_and_passes_the_fakes_rules(
    make_manager: Make, seed: int, size: int, shape: str, model: str, images: bool, max_tokens: int
) -> None:
    manager = make_manager(real_text_model_tokens=str(WINDOW), real_vision_model_tokens="16000")
    body = agent_session(size, seed, images=images, model=model, max_tokens=max_tokens)
    if shape == "openai":
        request = openai_format.parse_request(openai_body(body), 8192)
    else:
        request = canonical(body)
    route = manager.route(request)
    try:
        prepared = manager.prepare(request, route, 1.0)
    except PromptTooLongError:
        return  # only when system and tools alone cannot fit: not in these sessions
    sent = prepared.request
    counted = manager.counter.count_request(sent, route.endpoint.value)  # type: ignore[arg-type]
    assert counted == prepared.info.estimated_input_tokens <= prepared.budget.input
    assert counted + sent["max_tokens"] <= route.window
    wire = WIRE_FORMATS[route.endpoint].render_request(sent, route.model)
    problems = anthropic_problems if route.endpoint is Endpoint.ANTHROPIC else openai_problems
    assert problems(wire) == []
    assert sent["messages"][-1] == request["messages"][-1] or prepared.info.blocks_shrunk


def test_a_stated_overflow_count_calibrates_the_retry(make_manager: Make) -> None:
    from condensation.store import MemoryStore
    from context.calibration import Calibration

    settings = make_manager(real_text_model_tokens=str(WINDOW)).settings
    manager = ContextManager(
        settings, make_manager().counter, calibration=Calibration(MemoryStore(), 60)
    )
    request = canonical(agent_session(40_000, seed=23))
    first = manager.prepare(request, manager.route(request), 1.0)
    stated = int(first.raw_estimate * 1.2)
    message = f"Request {stated} input tokens exceeds the model's maximum context length {WINDOW}"
    retry = manager.after_overflow(first, 400, "1210", message)
    assert retry is not None
    again = manager.prepare(request, manager.route(request), 1.0)  # the same request, resent
    assert again.info.count_source == "calibrated"
    assert again.info.estimated_input_tokens == again.raw_estimate + (stated - first.raw_estimate)


# ---------------------------------------------------------------------------- calibrated fitting


def calibrated_manager(make_manager: Make, condenser: Any = None) -> ContextManager:
    from condensation.store import MemoryStore
    from context.calibration import Calibration

    base = make_manager(real_text_model_tokens=str(WINDOW))
    calibration = Calibration(MemoryStore(), 60)
    return ContextManager(base.settings, base.counter, condenser, calibration=calibration)


def learned_short(manager: ContextManager, seed: int) -> c.Request:
    """A session whose first turn the upstream said was 30% bigger than estimated."""
    request = canonical(agent_session(5_000, seed=seed))
    first = manager.prepare(request, manager.route(request), 1.0)
    assert not first.info.truncated
    assert manager.learn(first, int(first.raw_estimate * 1.3))
    body = {"model": "glm-4.6", "max_tokens": 1, "messages": [{"role": "user", "content": "x"}]}
    more = canonical(body | {"messages": body["messages"] + more_rounds(35_000, seed + 1)})
    return request | {"messages": request["messages"] + more["messages"][1:]}  # type: ignore[return-value]


def test_what_is_cut_from_a_calibrated_conversation_keeps_its_correction(
    make_manager: Make,
) -> None:
    manager = calibrated_manager(make_manager)
    grown = learned_short(manager, seed=31)
    prepared = manager.prepare(grown, manager.route(grown), 1.0)
    info = prepared.info
    assert info.truncated and info.count_source == "calibrated"
    assert info.estimated_input_tokens > prepared.raw_estimate  # the correction came along
    assert info.estimated_input_tokens + prepared.request["max_tokens"] <= WINDOW


def test_a_failed_condensation_truncates_to_the_calibrated_budget(make_manager: Make) -> None:
    manager = calibrated_manager(make_manager, SlowCondenser(fail=True))
    grown = learned_short(manager, seed=37)
    prepared = manager.prepare(grown, manager.route(grown), 1.0)
    done = manager.finish(prepared, "sk")
    assert done.info.truncated
    assert done.info.estimated_input_tokens + done.request["max_tokens"] <= WINDOW


def test_a_retry_after_condensation_cuts_the_condensed_conversation(make_manager: Make) -> None:
    class KeepMore(SlowCondenser):
        def condense(self, view: StandInView, *_: Any) -> StandInView | None:
            request = view.request
            summary = {"role": "user", "content": [{"type": "text", "text": "[condensed]"}]}
            keep = request["messages"][-20:]  # starts with an assistant turn
            condensed = request | {"messages": [summary, *keep]}
            return StandInView(condensed, len(request["messages"]) - 20, False, 1)  # type: ignore[arg-type]

    manager = make_manager(KeepMore(), real_text_model_tokens=str(WINDOW))
    request = canonical(agent_session(40_000, seed=41))
    done = manager.finish(manager.prepare(request, manager.route(request), 1.0), "sk")
    assert done.info.condensation_applied
    retry = manager.after_overflow(done, 400, "1261", "Prompt exceeds max length")
    assert (
        retry is not None and retry.info.estimated_input_tokens < done.info.estimated_input_tokens
    )
    first = retry.request["messages"][0]["content"]
    assert any(b.get("text") == "[condensed]" for b in first)  # the summary survives the cut
