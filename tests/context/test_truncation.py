"""Structure-safe truncation: what is kept, what may go, and that the result is always valid.

"Valid" is judged by the fake z.ai's own rules (tests/fake), never by the proxy's validation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from context.truncation import PromptTooLong, Truncation, omitted_marker, truncate
from tests.context.conftest import canonical
from tests.fake.checks import anthropic_problems, openai_problems
from tests.sessions import agent_session
from tokens import MessageCounts, TokenCounter
from upstream import canonical as c
from upstream.client import WIRE_FORMATS
from upstream.routing import Endpoint

MARKER_START = "[context management:"


@pytest.fixture
def count(
    estimator_counter_fresh: Callable[[], TokenCounter],
) -> Callable[[c.Request], MessageCounts]:
    counter = estimator_counter_fresh()
    return lambda request: counter.count_messages(request)


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def use(call_id: str) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": "read_file", "input": {"path": call_id}}


def result(call_id: str, body: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": call_id, "content": body}


def chat(rounds: int, words: int = 200) -> c.Request:
    """A plain chat: user and assistant take turns, each message `words` words long."""
    messages = []
    for i in range(rounds):
        messages.append({"role": "user", "content": f"question {i} " + "word " * words})
        messages.append({"role": "assistant", "content": f"answer {i} " + "word " * words})
    messages.append({"role": "user", "content": "the latest question"})
    return canonical(
        {"model": "glm-4.6", "max_tokens": 100, "system": "Be brief.", "messages": messages}
    )


def agent_loop(
    rounds: int, result_words: int = 300, task: str = "Fix the failing test"
) -> c.Request:
    """Claude Code's shape: one task, then rounds of tool calls and their results."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": task}]
    for i in range(rounds):
        messages.append({"role": "assistant", "content": [text(f"step {i}"), use(f"t{i}")]})
        messages.append({"role": "user", "content": [result(f"t{i}", "line " * result_words)]})
    return canonical(
        {"model": "glm-4.6", "max_tokens": 100, "system": "You are an agent.", "messages": messages}
    )


def fits_and_is_valid(
    request: c.Request, budget: int, count: Callable[[c.Request], MessageCounts]
) -> None:
    assert count(request).total <= budget
    for endpoint, problems in (
        (Endpoint.ANTHROPIC, anthropic_problems),
        (Endpoint.OPENAI, openai_problems),
    ):
        body = WIRE_FORMATS[endpoint].render_request(request, "glm-4.6")
        assert problems(body) == [], endpoint


def cut_to(
    request: c.Request,
    share: float,
    count: Callable[[c.Request], MessageCounts],
    simple: bool = False,
) -> Truncation:
    """Truncate to `share` of the request's own size; the result must fit and be valid."""
    counts = count(request)
    budget = int(counts.total * share)
    cut = truncate(request, counts, budget, count, simple=simple)
    fits_and_is_valid(cut.request, budget, count)
    return cut


def marker_texts(request: c.Request) -> list[str]:
    return [
        b["text"]
        for m in request["messages"]
        for b in m["content"]
        if b["type"] == "text" and b["text"].startswith(MARKER_START)
    ]


# ---------------------------------------------------------------------------- what is kept


def test_a_plain_chat_drops_its_oldest_turns(count: Callable[[c.Request], MessageCounts]) -> None:
    request = chat(20)
    cut = cut_to(request, 0.5, count)
    messages = cut.request["messages"]
    assert messages[-1] == request["messages"][-1]
    assert cut.request["system"] == request["system"]
    assert cut.messages_removed > 0
    assert marker_texts(cut.request) == [omitted_marker(cut.messages_removed)["text"]]
    # what is kept is the newest part, in order
    kept_tail = [m for m in messages if not any(t.startswith(MARKER_START) for t in _texts(m))]
    assert request["messages"][-len(kept_tail[1:]) :] == kept_tail[1:]


def test_an_agent_loop_keeps_the_task_and_the_last_tool_round(
    count: Callable[[c.Request], MessageCounts],
) -> None:
    request = agent_loop(30)
    cut = cut_to(request, 0.33, count)
    messages = cut.request["messages"]
    assert messages[0]["content"][0] == request["messages"][0]["content"][0]  # the task
    assert messages[-2:] == request["messages"][-2:]  # the last call and its result
    assert 0 < cut.messages_removed < len(request["messages"])


def test_the_last_human_message_is_kept_even_when_old(
    count: Callable[[c.Request], MessageCounts],
) -> None:
    request = agent_loop(30)
    human = {"role": "user", "content": [result("t9", "ok"), text("Please also update the docs")]}
    request["messages"][20] = human  # messages[19] called t9; the user speaks with its result
    counts = count(request)
    budget = counts.fixed + sum(counts.messages[-4:]) + 400
    cut = truncate(request, counts, budget, count)
    fits_and_is_valid(cut.request, budget, count)
    kept = cut.request["messages"]
    assert any(m == human for m in kept) or any(human["content"][1] in m["content"] for m in kept)
    # its results answer a call: that assistant turn is kept too
    assert request["messages"][19] in kept


def test_a_large_task_is_not_pinned(count: Callable[[c.Request], MessageCounts]) -> None:
    request = agent_loop(30, task="Fix it. " + "context " * 2000)
    # a later human message: the task is no longer the last thing the user wrote
    request["messages"][-11]["content"].append(text("Keep going"))  # type: ignore[arg-type]
    cut = cut_to(request, 0.5, count)  # the task is over 10% of the budget
    assert all("context context" not in t for m in cut.request["messages"] for t in _texts(m))


def test_simple_truncation_pins_nothing_but_the_tail(
    count: Callable[[c.Request], MessageCounts],
) -> None:
    cut = cut_to(agent_loop(30), 0.33, count, simple=True)
    assert cut.request["messages"][0]["content"][0]["text"].startswith(MARKER_START)
    assert all("Fix the failing test" not in t for m in cut.request["messages"] for t in _texts(m))


def test_signed_thinking_goes_with_its_turn_or_stays_untouched(
    count: Callable[[c.Request], MessageCounts],
) -> None:
    request = agent_loop(20)
    for i, message in enumerate(request["messages"]):
        if message["role"] == "assistant":
            thought = {"type": "thinking", "thinking": f"plan {i}", "signature": f"sig{i}"}
            message["content"].insert(0, thought)  # type: ignore[arg-type]
    counts = count(request)
    cut = truncate(request, counts, counts.total // 2, count)
    original = {
        b["signature"]: b
        for m in request["messages"]
        for b in m["content"]
        if b["type"] == "thinking"
    }
    kept = [b for m in cut.request["messages"] for b in m["content"] if b["type"] == "thinking"]
    assert kept and all(original[b["signature"]] == b for b in kept)


def test_the_cut_comes_from_the_counts_not_from_counting_candidates(
    count: Callable[[c.Request], MessageCounts],
) -> None:
    request = agent_loop(200)
    counts = count(request)
    calls = []

    def counting(candidate: c.Request) -> MessageCounts:
        calls.append(len(candidate["messages"]))
        return count(candidate)

    truncate(request, counts, counts.total // 4, counting)
    assert len(calls) <= 2  # the result, confirmed (at most once more if merging cost more)


# ---------------------------------------------------------------------------- shrinking


def test_a_protected_part_too_big_shrinks_its_largest_block(
    count: Callable[[c.Request], MessageCounts],
) -> None:
    request = agent_loop(5, result_words=5000)
    counts = count(request)
    budget = counts.fixed + counts.messages[-1] // 2
    cut = truncate(request, counts, budget, count)
    fits_and_is_valid(cut.request, budget, count)
    assert cut.blocks_shrunk >= 1
    last = cut.request["messages"][-1]["content"][0]
    assert last["tool_use_id"] == "t4"
    assert "tokens cut here to fit the context window" in last["content"]
    assert last["content"].startswith("line line") and last["content"].endswith("line ")


def test_nothing_left_to_cut_is_prompt_too_long(
    count: Callable[[c.Request], MessageCounts],
) -> None:
    request = chat(3) | {"system": [text("rules " * 5000)]}
    counts = count(request)
    with pytest.raises(PromptTooLong, match="prompt is too long"):
        truncate(request, counts, 1000, count)


# ---------------------------------------------------------------------------- properties


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 10_000),
    size=st.integers(8_000, 60_000),
    images=st.booleans(),
    chinese=st.booleans(),
    end_with=st.sampled_from(["tool_result", "human"]),
    share=st.floats(0.15, 0.9),
    simple=st.booleans(),
)
def test_truncated_sessions_fit_are_valid_and_keep_what_is_protected(
    estimator_counter_fresh: Callable[[], TokenCounter],
    seed: int,
    size: int,
    images: bool,
    chinese: bool,
    end_with: str,
    share: float,
    simple: bool,
) -> None:
    counter = estimator_counter_fresh()
    count = counter.count_messages
    body = agent_session(size, seed, images=images, chinese=chinese, end_with=end_with)
    request = canonical(body)
    counts = count(request)
    tail_cost = counts.fixed + sum(counts.messages[-2:]) + 64
    budget = max(tail_cost, int(counts.total * share))
    cut = truncate(request, counts, budget, count, simple=simple)
    fits_and_is_valid(cut.request, budget, count)
    kept = cut.request["messages"]
    assert cut.request["system"] == request["system"] and cut.request["tools"] == request["tools"]
    assert len(marker_texts(cut.request)) == (1 if cut.messages_removed else 0)
    # the protected messages are kept whole, or, when they alone were too big, shrunk in place
    same = (lambda a, b: a == b) if cut.blocks_shrunk == 0 else _same_shape
    # (the marker may ride at the head of the kept message when nothing else comes before it)
    assert same(_unmarked(kept[-1]), request["messages"][-1])
    if any(b["type"] == "tool_result" for b in request["messages"][-1]["content"]):
        assert same(kept[-2], request["messages"][-2])
    task = request["messages"][0]
    protected = counts.fixed + counts.messages[0] + sum(counts.messages[-2:]) + 64
    if not simple and counts.messages[0] < 0.1 * budget and protected <= budget:
        assert any(same(task, {"role": "user", "content": [b]}) for b in kept[0]["content"])


def _unmarked(message: c.Message) -> c.Message:
    content = [
        b
        for b in message["content"]
        if b["type"] != "text" or not b["text"].startswith(MARKER_START)
    ]
    return {"role": message["role"], "content": content}


def _same_shape(a: c.Message, b: c.Message) -> bool:
    """Same role, block types and tool ids: a message whose texts may have been shrunk."""

    def shape(m: c.Message) -> list[tuple[str, Any]]:
        return [(x["type"], x.get("id") or x.get("tool_use_id")) for x in m["content"]]

    return a["role"] == b["role"] and shape(a) == shape(b)


def _texts(message: c.Message) -> list[str]:
    return [b["text"] for b in message["content"] if b["type"] == "text"]
