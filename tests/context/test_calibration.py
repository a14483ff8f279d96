"""Calibration: corrections learned from usage, found again by the longest known prefix."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from condensation.store import MemoryStore
from context.calibration import Calibration
from tests.context.conftest import canonical
from upstream import canonical as c

HEAD = ("anthropic", "glm-4.6", [{"type": "text", "text": "Be brief."}], None)


def conversation(turns: int, marker: str = "") -> c.Request:
    messages: list[dict[str, Any]] = []
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i}{marker}"})
        messages.append({"role": "assistant", "content": f"answer {i}"})
    messages.append({"role": "user", "content": "the latest question"})
    return canonical({"model": "glm-4.6", "max_tokens": 10, "messages": messages})


@pytest.fixture
def calibration() -> Calibration:
    return Calibration(MemoryStore(), ttl=60)


def test_nothing_learned_means_the_estimate(calibration: Calibration) -> None:
    counted = calibration.count(conversation(3), HEAD, 500)
    assert (counted.tokens, counted.source, counted.prefix) == (500, "estimate", 0)


def test_a_learned_request_corrects_itself_and_what_grows_from_it(
    calibration: Calibration,
) -> None:
    first = conversation(3)
    assert calibration.learn(first, HEAD, estimate=500, true=540)
    again = calibration.count(first, HEAD, 500)
    assert (again.tokens, again.source, again.prefix) == (540, "calibrated", 7)
    later = first | {"messages": first["messages"] + conversation(1)["messages"][1:]}
    grown = calibration.count(later, HEAD, 620)  # the estimate of the whole, new part included
    # the prefix was 8% short; what was added since is taken to be short the same way
    assert (grown.tokens, grown.prefix) == (620 + round(40 * 620 / 500), 7)


def test_the_longest_known_prefix_wins(calibration: Calibration) -> None:
    full = conversation(5)
    short = full | {"messages": full["messages"][:3]}
    middle = full | {"messages": full["messages"][:7]}
    calibration.learn(short, HEAD, 100, 110)
    calibration.learn(middle, HEAD, 300, 290)
    counted = calibration.count(full, HEAD, 500)
    assert (counted.tokens, counted.prefix) == (500 + round(-10 * 500 / 300), 7)


@pytest.mark.parametrize(
    "change",
    ["earlier message", "system", "tools", "model", "wire"],
)
def test_a_changed_prefix_is_not_corrected(calibration: Calibration, change: str) -> None:
    first = conversation(3)
    calibration.learn(first, HEAD, 500, 540)
    head = list(HEAD)
    request = first
    if change == "earlier message":
        request = conversation(3, marker=" (edited)")
    elif change == "system":
        head[2] = [{"type": "text", "text": "Be verbose."}]
    elif change == "tools":
        head[3] = [{"name": "grep", "input_schema": {"type": "object"}}]
    elif change == "model":
        head[1] = "glm-4.5-air"
    else:
        head[0] = "openai"
    assert calibration.count(request, tuple(head), 500).source == "estimate"


def test_moving_cache_markers_keep_the_prefix(calibration: Calibration) -> None:
    first = conversation(3)
    calibration.learn(first, HEAD, 500, 540)
    marked = conversation(3)
    marked["messages"][2]["content"][0]["cache_control"] = {"type": "ephemeral"}  # type: ignore[typeddict-unknown-key]
    assert calibration.count(marked, HEAD, 500).tokens == 540


@pytest.mark.parametrize("true", [0, -5, 200, 1200])
def test_unbelievable_usage_is_ignored_and_logged_once(
    calibration: Calibration, caplog: pytest.LogCaptureFixture, true: int
) -> None:
    with caplog.at_level(logging.WARNING, logger="context.calibration"):
        assert not calibration.learn(conversation(3), HEAD, 500, true)
        assert not calibration.learn(conversation(4), HEAD, 500, true)
    assert calibration.count(conversation(3), HEAD, 500).source == "estimate"
    assert len([r for r in caplog.records if "not believable" in r.getMessage()]) == 1
    assert calibration.stats()["ignored"] == 2


def test_workers_sharing_a_disk_store_share_corrections(tmp_path: Path) -> None:
    from condensation.store import DiskStore

    first = Calibration(DiskStore(str(tmp_path)), ttl=60)
    second = Calibration(DiskStore(str(tmp_path)), ttl=60)  # another process opens the same dir
    first.learn(conversation(3), HEAD, 500, 540)
    assert second.count(conversation(3), HEAD, 500).tokens == 540


def test_within_one_decision_each_message_is_serialised_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from context import digests

    calls: list[int] = []
    real = digests._serialised
    monkeypatch.setattr(digests, "_serialised", lambda m: calls.append(1) or real(m))
    messages = conversation(3)["messages"]
    with digests.one_serialisation():
        first = digests.chain(("a",), messages)
        second = digests.chain(("b",), messages[:3])  # another chain over the same objects
    assert len(calls) == len(messages)
    assert first[2] != second[2] and digests.chain(("a",), messages) == first  # same digests
