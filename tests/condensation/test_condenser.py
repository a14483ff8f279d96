"""Condenser: spans, records, the stable prefix, fallbacks and the shared store.

Summary calls go to a stand-in of the upstream call that answers like the fake z.ai's ideal
summariser (tests/fake): the condenser's logic is what is tested here; the HTTP path is tested
under gunicorn in tests/integration/test_condensation.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from condensation import build_store
from condensation.condenser import Condenser, View, apply, message_digests
from condensation.store import Store
from condensation.summarizer import Summarizer
from config import Settings, Strategy
from context.risk import Action, Budget, budget_for
from tests.context.conftest import canonical
from tests.fake.checks import anthropic_problems, openai_problems
from tests.fake.summarizer import summarize, summary_parts
from tests.sessions import agent_session, more_rounds
from tokens import MessageCounts, TokenCounter, load_encoding
from upstream import canonical as c
from upstream.client import WIRE_FORMATS
from upstream.routing import Endpoint, Route, choose_route

WINDOW = 40_000
FACTS = ("src/billing/invoice_total.py", "compute_total_v2", "INVOICE_ROUNDING_MODE", "4821")


class Upstream:
    """Counts summary calls and answers them like an ideal summariser (or fails on request)."""

    def __init__(self) -> None:
        self.requests: list[c.Request] = []
        self.fail: Exception | None = None
        self.forgetful = False
        self.gate: threading.Event | None = None
        self.lock = threading.Lock()

    def __call__(
        self, route: Route, request: c.Request, api_key: str, timeout: float
    ) -> c.Response:
        assert api_key and timeout > 0
        with self.lock:
            self.requests.append(request)
        if self.gate is not None:
            self.gate.wait(5)
        if self.fail is not None:
            raise self.fail
        parts = summary_parts(request)
        assert parts is not None, "not a summary request"
        text = summarize(*parts, request["max_tokens"], 0.0 if self.forgetful else 1.0)
        usage = {"input_tokens": 1, "output_tokens": 1}
        return {"id": "s", "type": "message", "role": "assistant", "model": route.model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
                "stop_sequence": None, "usage": usage}  # fmt: skip


@pytest.fixture(scope="module")
def counter() -> TokenCounter:
    return TokenCounter(load_encoding(glm_digits=True), cache_size=5000)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"REAL_TEXT_MODEL_TOKENS": str(WINDOW), "CACHE_DIR": str(tmp_path)})


@pytest.fixture
def store(settings: Settings) -> Store:
    return build_store(settings)


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def make(settings: Settings, upstream: Upstream) -> Callable[..., Condenser]:
    def build(store: Store, **env: str) -> Condenser:
        local = (
            Settings.from_env({"REAL_TEXT_MODEL_TOKENS": str(WINDOW), **env}) if env else settings
        )

        def route_for(model: str) -> Route:
            return choose_route({"model": model, "messages": [], "max_tokens": 1}, local)

        summarizer = Summarizer(local, store, upstream, route_for)
        return Condenser(local, store, summarizer)

    return build


def session(tokens: int, seed: int = 1, **extra: Any) -> c.Request:
    """An agent session with facts planted in its early tool results."""
    body = agent_session(tokens, seed, **extra)
    planted = "Found " + ", ".join(FACTS) + " while reading the billing module."
    body["messages"][2]["content"][0]["content"] = planted
    return canonical(body)


def grow(request: c.Request, rounds: int, seed: int = 99) -> c.Request:
    """The same conversation with `rounds` more tool rounds appended (what the next turns send)."""
    extra = more_rounds(rounds * 1500, seed)
    body = {
        "model": "glm-4.6",
        "max_tokens": 1,
        "messages": [{"role": "user", "content": "x"}, *extra],
    }
    return request | {"messages": [*request["messages"], *canonical(body)["messages"][1:]]}  # type: ignore[return-value]


def count_for(counter: TokenCounter) -> Callable[[c.Request], MessageCounts]:
    return lambda request: counter.count_messages(request)


def budget() -> Budget:
    return budget_for(WINDOW, 8192, 8192)


def valid(request: c.Request) -> None:
    for endpoint, problems in (
        (Endpoint.ANTHROPIC, anthropic_problems),
        (Endpoint.OPENAI, openai_problems),
    ):
        assert problems(WIRE_FORMATS[endpoint].render_request(request, "glm-4.6")) == [], endpoint


def condensed(
    condenser: Condenser,
    request: c.Request,
    counter: TokenCounter,
    action: Action = Action.CONDENSATION_LIGHT,
) -> View:
    view = condenser.effective(request)
    result = condenser.condense(view, count_for(counter), budget(), action, "sk-test")
    assert result is not None
    return result


# ---------------------------------------------------------------------------- one condensation


def test_a_span_becomes_one_marked_summary_in_place(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    request = session(int(WINDOW * 0.85))
    condenser = make(store)
    assert condenser.effective(request).request is request  # nothing recorded yet
    view = condensed(condenser, request, counter)
    sent = view.request
    valid(sent)
    target = budget().input * 0.60
    assert counter.count_request(sent) <= target * 1.1
    first = sent["messages"][0]["content"]
    assert first[0] == request["messages"][0]["content"][0]  # the task, verbatim
    summary = next(b["text"] for b in first if b["text"].startswith("[Summary of"))
    assert all(fact in summary for fact in FACTS)  # what the summariser kept reaches upstream
    assert sent["messages"][-1] == request["messages"][-1]
    assert view.messages_condensed > 0 and view.summary_calls == len(upstream.requests) >= 1
    assert view.strategy is Strategy.CONVERSATION_SUMMARY


def test_the_next_turn_reuses_the_record_and_keeps_the_prefix(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    request = session(int(WINDOW * 0.85))
    first = condensed(make(store), request, counter)
    calls = len(upstream.requests)
    later = grow(request, 1)
    view = make(store).effective(later)  # another worker: same store, new Condenser
    assert view.cache_hit and view.messages_condensed == first.messages_condensed
    assert len(upstream.requests) == calls  # no new summary call
    n = len(first.request["messages"])
    assert view.request["messages"][:n] == first.request["messages"]  # the stable prefix


def test_cache_markers_moving_between_turns_do_not_break_the_prefix() -> None:
    request = session(8000)
    marked = canonical(agent_session(8000, 1))
    marked["messages"] = [dict(m) for m in request["messages"]]
    block = dict(marked["messages"][1]["content"][0]) | {"cache_control": {"type": "ephemeral"}}
    marked["messages"][1] = marked["messages"][1] | {
        "content": [block, *marked["messages"][1]["content"][1:]]
    }
    assert message_digests(marked["messages"]) == message_digests(request["messages"])


def test_growing_past_the_trigger_folds_the_next_span_progressively(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    request = session(int(WINDOW * 0.85))
    condenser = make(store)
    first = condensed(condenser, request, counter)
    later = grow(request, 8)
    view = condenser.effective(later)
    assert counter.count_request(view.request) > budget().input * 0.8  # past the trigger again
    second = condenser.condense(view, count_for(counter), budget(), Action.CONDENSATION_LIGHT, "sk")
    assert second is not None and second.messages_condensed > first.messages_condensed
    valid(second.request)
    last_prompt = c.text_of(upstream.requests[-1]["messages"][-1]["content"])
    assert "<previous-summary>" in last_prompt  # built on the first summary, not from scratch
    summary = c.text_of(second.request["messages"][0]["content"])
    assert all(fact in summary for fact in FACTS)  # facts of the first span survive the fold


# ---------------------------------------------------------------------------- fallbacks


def test_a_forgetful_summary_falls_back_to_placeholders(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    upstream.forgetful = True
    request = session(int(WINDOW * 0.85))
    view = condensed(make(store), request, counter)
    assert view.strategy is Strategy.SMART_TRUNCATION  # both AI strategies failed the gate
    valid(view.request)
    assert counter.count_request(view.request) < counter.count_request(request)
    results = [
        b for m in view.request["messages"] for b in m["content"] if b["type"] == "tool_result"
    ]
    assert any("omitted by context management" in str(b["content"]) for b in results)


@pytest.mark.parametrize("error", [TimeoutError("slow"), RuntimeError("500")])
def test_a_failing_summary_call_never_fails_the_condensation(
    make: Callable[..., Condenser],
    store: Store,
    counter: TokenCounter,
    upstream: Upstream,
    error: Exception,
) -> None:
    upstream.fail = error
    view = condensed(make(store), session(int(WINDOW * 0.85)), counter)
    assert view.strategy is Strategy.SMART_TRUNCATION
    valid(view.request)


def test_smart_truncation_as_the_strategy_makes_no_call(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    condenser = make(store, CONDENSATION_DEFAULT_STRATEGY="smart_truncation", CACHE_DIR="unused")
    view = condensed(condenser, session(int(WINDOW * 0.85)), counter)
    assert upstream.requests == [] and view.strategy is Strategy.SMART_TRUNCATION
    valid(view.request)


@pytest.mark.parametrize("strategy", ["key_point_extraction", "progressive_summarization"])
def test_each_ai_strategy_summarises(
    make: Callable[..., Condenser],
    store: Store,
    counter: TokenCounter,
    strategy: str,
) -> None:
    condenser = make(store, CONDENSATION_DEFAULT_STRATEGY=strategy)
    view = condensed(condenser, session(int(WINDOW * 0.85)), counter)
    assert view.strategy is Strategy(strategy)
    valid(view.request)


# ---------------------------------------------------------------------------- sharing


def test_concurrent_requests_make_one_call_per_chunk(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    request = session(int(WINDOW * 0.85))
    upstream.gate = threading.Event()
    condensers = [make(store) for _ in range(4)]  # four workers of one host
    views: list[View | None] = []

    def run(condenser: Condenser) -> None:
        views.append(condensed(condenser, request, counter))

    threads = [threading.Thread(target=run, args=(cd,)) for cd in condensers]
    for thread in threads:
        thread.start()
    threading.Timer(0.3, upstream.gate.set).start()
    for thread in threads:
        thread.join(10)
    assert len(views) == 4
    chunks = {c.text_of(r["messages"][-1]["content"]) for r in upstream.requests}
    assert len(upstream.requests) == len(chunks)  # never the same chunk twice
    texts = {c.text_of(v.request["messages"][0]["content"]) for v in views if v}
    assert len(texts) == 1  # every worker forwards the same summary


def test_the_condensed_result_is_reused_for_the_same_request_across_stores(
    make: Callable[..., Condenser], settings: Settings, counter: TokenCounter
) -> None:
    request = session(int(WINDOW * 0.85))
    condensed(make(build_store(settings)), request, counter)
    again = make(build_store(settings)).effective(request)  # a new process would open the same dir
    assert again.cache_hit and again.messages_condensed > 0


def test_apply_keeps_roles_valid_with_every_kind_of_pin() -> None:
    from condensation.condenser import Record

    request = session(20_000, seed=4)
    messages = request["messages"]
    # the user speaks beside a tool result halfway: that message and the call it answers are pins
    middle = next(
        i for i in range(len(messages) // 2, len(messages)) if messages[i]["role"] == "user"
    )
    messages[middle]["content"].append({"type": "text", "text": "Please keep the API stable."})  # type: ignore[arg-type]
    ends = [i for i in range(2, len(messages) - 2) if messages[i]["role"] == "assistant"]
    for end in ends:
        kept = (0, middle - 1, middle) if middle < end else (0,)
        for strategy in (Strategy.CONVERSATION_SUMMARY, Strategy.SMART_TRUNCATION):
            valid(apply(request, Record(end, kept, "summary text", strategy)))


def test_a_summary_after_placeholders_covers_what_they_replaced(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    upstream.forgetful = True
    request = session(int(WINDOW * 0.85))
    first = condensed(make(store), request, counter)
    assert first.strategy is Strategy.SMART_TRUNCATION
    upstream.forgetful = False
    later = grow(request, 8)
    condenser = make(store)
    view = condenser.effective(later)
    second = condenser.condense(view, count_for(counter), budget(), Action.CONDENSATION_LIGHT, "k")
    assert second is not None and second.strategy is Strategy.CONVERSATION_SUMMARY
    summary = c.text_of(second.request["messages"][0]["content"])
    assert all(fact in summary for fact in FACTS)  # planted before the placeholders, kept now


def test_a_summary_in_force_is_never_replaced_by_placeholders(
    make: Callable[..., Condenser], store: Store, counter: TokenCounter, upstream: Upstream
) -> None:
    request = session(int(WINDOW * 0.85))
    condenser = make(store)
    first = condensed(condenser, request, counter)
    assert first.strategy is Strategy.CONVERSATION_SUMMARY
    upstream.forgetful = True  # the next summaries all fail the gate
    later = grow(request, 8)
    view = condenser.effective(later)
    again = condenser.condense(view, count_for(counter), budget(), Action.CONDENSATION_LIGHT, "k")
    assert again is None  # truncation takes it from here, the summary still in place
    assert c.text_of(view.request["messages"][0]["content"]).count("[Summary of") == 1
