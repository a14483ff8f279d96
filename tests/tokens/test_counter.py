"""TokenCounter: cache behaviour, thread safety, legacy mode, bad input, logging, settings."""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable
from typing import Any

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings
from tokens import build_counter
from tokens.bias import ScriptRates
from tokens.counter import MIN_CACHED_CHARS, TokenCounter

from .conftest import GLM_FILE

LONG = "This sentence is long enough to be cached by the token counter. "


def conversation(turns: int) -> dict[str, Any]:
    messages = []
    for i in range(turns):
        messages.append(
            {"role": "user", "content": [{"type": "text", "text": f"{LONG} question {i}"}]}
        )
        messages.append(
            {"role": "assistant", "content": [{"type": "text", "text": f"{LONG} answer {i}"}]}
        )
    messages.append({"role": "user", "content": [{"type": "text", "text": f"{LONG} last"}]})
    return {"system": [{"type": "text", "text": LONG * 3}], "messages": messages}


def resent(request: dict[str, Any]) -> dict[str, Any]:
    """The request as a client sends it again: freshly parsed JSON, no shared string objects."""
    return json.loads(json.dumps(request))


class SpyEncoding:
    """Wraps an encoding and records every text it is asked to encode."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self.encoding = encoding
        self.encoded: list[str] = []
        self.lock = threading.Lock()

    def encode_ordinary(self, text: str) -> list[int]:
        with self.lock:
            self.encoded.append(text)
        return self.encoding.encode_ordinary(text)


# ---------------------------------------------------------------------------- cache


def test_resent_conversation_encodes_only_the_new_message(cl100k: tiktoken.Encoding) -> None:
    spy = SpyEncoding(cl100k)
    counter = TokenCounter(spy, exact=True)  # type: ignore[arg-type]
    first = conversation(5)
    counter.count_request(first)
    pieces = len(spy.encoded)
    assert counter.stats()["misses"] == pieces and counter.stats()["hits"] == 0

    spy.encoded.clear()
    follow_up = resent(first)
    follow_up["messages"].append({"role": "assistant", "content": "A brand new reply " + LONG})
    counter.count_request(follow_up)

    assert spy.encoded == ["A brand new reply " + LONG]
    stats = counter.stats()
    assert (stats["hits"], stats["misses"]) == (pieces, pieces + 1)


def test_cached_count_equals_fresh_count(make_counter: Callable[..., TokenCounter]) -> None:
    counter = make_counter()
    request = conversation(8)
    cold = counter.count_request(request)
    warm = counter.count_request(resent(request))
    assert warm == cold == make_counter().count_request(request)
    assert counter.stats()["hit_ratio"] == 0.5


@pytest.mark.parametrize(
    ("text", "cached_in_lru"),
    [("x" * (MIN_CACHED_CHARS - 1), False), ("x" * MIN_CACHED_CHARS, True)],
    ids=["small_piece_memo", "big_piece_lru"],
)
def test_small_pieces_stay_out_of_the_lru(
    make_counter: Callable[..., TokenCounter], text: str, cached_in_lru: bool
) -> None:
    counter = make_counter()
    counter.count_text(text)
    counter.count_text(text)
    stats = counter.stats()
    assert (stats["hits"], stats["misses"]) == (1, 1)
    assert stats["size"] == (1 if cached_in_lru else 0)


def test_request_larger_than_the_cache_does_not_thrash(
    make_counter: Callable[..., TokenCounter],
) -> None:
    counter = make_counter(cache_size=4)
    request = conversation(5)  # 12 big pieces, 4 fit
    counter.count_request(request)
    counter.count_request(resent(request))
    stats = counter.stats()
    assert stats["size"] == 4
    assert stats["hits"] == 4  # the first four pieces, kept rather than evicted by the rest


def test_clear_cache_resets_figures(make_counter: Callable[..., TokenCounter]) -> None:
    counter = make_counter()
    counter.count_request(conversation(2))
    counter.clear_cache()
    assert counter.stats() == {
        "mode": "estimate",
        "hits": 0,
        "misses": 0,
        "size": 0,
        "maxsize": 1000,
        "hit_ratio": 0.0,
    }


# ---------------------------------------------------------------------------- threads


def test_eight_threads_hammering_one_counter(make_counter: Callable[..., TokenCounter]) -> None:
    requests = [conversation(n) for n in range(1, 9)]
    for index, request in enumerate(requests):
        request["messages"][-1]["content"][0]["text"] += f" variant {index}"
    expected = [make_counter().count_request(r) for r in requests]
    counter = make_counter(cache_size=8)  # small: evictions race with lookups
    lookups_per_round = sum(len(_pieces(r)) for r in requests)
    rounds, threads = 25, 8
    results: list[list[int]] = []
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        mine = []
        for _ in range(rounds):
            mine.append([counter.count_request(resent(r)) for r in requests])
        results.append([x for batch in mine for x in batch])

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert all(result == expected * rounds for result in results)
    stats = counter.stats()
    assert stats["hits"] + stats["misses"] == lookups_per_round * rounds * threads
    assert stats["size"] <= 8


def _pieces(request: dict[str, Any]) -> list[str]:
    from tokens.framing import layout_anthropic

    return [t for texts in layout_anthropic(request).texts.values() for t in texts]


# ---------------------------------------------------------------------------- legacy


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", 0), ("abc", 1), ("abcd", 1), ("abcde", 2), ("你好世界很好", 2), ("x" * 4001, 1001)],
)
def test_legacy_counts_characters_over_four(text: str, expected: int) -> None:
    counter = TokenCounter(None, legacy=True)
    assert counter.count_text(text) == expected


def test_estimate_uses_the_given_rates(cl100k: tiktoken.Encoding) -> None:
    text = "这个接口在本地正常，部署到服务器上就超时"
    shipped = TokenCounter(cl100k).count_text(text)
    assert TokenCounter(cl100k, rates=ScriptRates(simplified=1.0)).count_text(text) > shipped
    # exact mode ignores the rates: they correct cl100k, not a real GLM file
    exact = TokenCounter(cl100k, exact=True)
    assert TokenCounter(cl100k, exact=True, rates=ScriptRates(simplified=9.0)).count_text(
        text
    ) == exact.count_text(text)


def test_legacy_request_keeps_framing_and_needs_no_encoding() -> None:
    counter = TokenCounter(None, legacy=True)
    request = {"messages": [{"role": "user", "content": "x" * 40}]}
    assert counter.count_request(request) == 3 + 2 + 10
    assert counter.stats()["mode"] == "legacy"


def test_counter_without_encoding_must_be_legacy() -> None:
    with pytest.raises(ValueError, match="legacy=True"):
        TokenCounter(None)


# ---------------------------------------------------------------------------- lookup observer


def test_observer_hears_each_requests_hits_and_misses_outside_the_lock(
    make_counter: Callable[..., TokenCounter],
) -> None:
    heard: list[tuple[int, int, bool]] = []
    counter = make_counter(on_lookup=lambda h, m: heard.append((h, m, counter._lock.locked())))
    first = conversation(3)
    counter.count_request(first)
    counter.count_request(resent(first))
    pieces = counter.stats()["misses"]
    assert pieces > 0
    assert heard == [(0, pieces, False), (pieces, 0, False)]
    assert sum(h for h, _, _ in heard) == counter.stats()["hits"]


def test_failing_observer_never_fails_the_count(
    make_counter: Callable[..., TokenCounter], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(hits: int, misses: int) -> None:
        raise RuntimeError(f"observer down after {hits}/{misses}")

    plain = make_counter().count_request(conversation(2))
    with caplog.at_level(logging.ERROR, logger="tokens.counter"):
        assert make_counter(on_lookup=broken).count_request(conversation(2)) == plain
    assert "observer failed" in caplog.text


def test_legacy_counting_reports_no_lookups() -> None:
    heard: list[tuple[int, int]] = []
    counter = TokenCounter(None, legacy=True, on_lookup=lambda h, m: heard.append((h, m)))
    counter.count_request(conversation(2))
    assert heard == [] and counter.stats()["misses"] == 0


# ---------------------------------------------------------------------------- bad input

CYCLE: list[Any] = []
CYCLE.append(CYCLE)
DEEP: list[Any] = []
_node = DEEP
for _ in range(100_000):
    _node.append([])
    _node = _node[0]

BAD_REQUESTS = {
    "none": None,
    "string": "just a string",
    "list": [1, 2, 3],
    "messages_none": {"messages": None},
    "messages_string": {"messages": "hello"},
    "odd_messages": {"messages": [None, 7, "loose", {"role": "user", "content": None}]},
    "odd_blocks": {
        "messages": [
            {"role": "user", "content": [None, 5, {"type": "hologram", "data": "x" * 400}]}
        ]
    },
    "odd_assistant": {
        "messages": [
            {"role": "assistant", "content": [{"type": "tool_use", "input": "not a dict"}]}
        ]
    },
    "odd_system_and_tools": {"system": 42, "tools": [None, "x", {"name": "t"}], "messages": []},
    "odd_text_types": {"messages": [{"role": "user", "content": [{"type": "text", "text": 12}]}]},
    "cycle": {"messages": [{"role": "user", "content": [{"type": "x", "data": CYCLE}]}]},
    "deep": {"messages": [{"role": "user", "content": [{"type": "x", "data": DEEP}]}]},
    "bad_image": {
        "messages": [{"role": "user", "content": [{"type": "image", "source": {"data": "%%%"}}]}]
    },
    "lone_surrogate": {"messages": [{"role": "user", "content": "bad \ud800 text 你好"}]},
}


@pytest.mark.parametrize("request_", BAD_REQUESTS.values(), ids=BAD_REQUESTS)
def test_bad_input_never_raises(estimator_counter: TokenCounter, request_: Any) -> None:
    assert estimator_counter.count_request(request_) >= 3
    assert estimator_counter.count_openai_request(request_) >= 3


def test_unknown_block_counts_by_its_json_length(estimator_counter: TokenCounter) -> None:
    block = {"type": "hologram", "data": "x" * 400}
    request = {"messages": [{"role": "user", "content": [block]}]}
    expected = math.ceil(len(json.dumps(block)) / 4)
    assert estimator_counter.breakdown(request).messages == expected


def test_huge_string_is_counted(estimator_counter: TokenCounter) -> None:
    text = "lorem ipsum dolor sit amet " * 200_000  # 5.4 MB
    assert 1_000_000 <= estimator_counter.count_text(text) <= 1_300_000


@pytest.mark.parametrize(("value", "expected"), [(None, 0), ("", 0), (12345, 2), (["ab"], 2)])
def test_count_text_of_non_strings(
    estimator_counter: TokenCounter, value: Any, expected: int
) -> None:
    assert estimator_counter.count_text(value) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["role", "content", "type", "text", "messages", "system", "tools",
                         "input", "tool_calls", "function", "arguments", "source", "data"]),
        children,
        max_size=5,
    ),
    max_leaves=25,
)  # fmt: skip


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_any_json_value_is_counted_without_raising(
    estimator_counter: TokenCounter, value: Any
) -> None:
    assert estimator_counter.count_request(value) >= 3
    assert estimator_counter.count_openai_request(value) >= 3


# ---------------------------------------------------------------------------- logging


def test_breakdown_log_has_prefix_and_no_text(
    make_counter: Callable[..., TokenCounter], caplog: pytest.LogCaptureFixture
) -> None:
    counter = make_counter(log_breakdown=True)
    request = {"system": "SECRET-SYSTEM", "messages": [{"role": "user", "content": "SECRET-USER"}]}
    with caplog.at_level(logging.INFO, logger="tokens.counter"):
        total = counter.count_request(request)
    [record] = caplog.records
    assert record.getMessage().startswith("TOKEN ")
    assert f"total={total}" in record.getMessage()
    assert "SECRET" not in record.getMessage()


def test_no_log_unless_asked(
    make_counter: Callable[..., TokenCounter], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="tokens.counter"):
        make_counter().count_request(conversation(1))
    assert caplog.records == []


def test_breakdown_sections_add_up(estimator_counter: TokenCounter) -> None:
    request = conversation(2) | {"tools": [{"name": "f", "input_schema": {"type": "object"}}]}
    parts = estimator_counter.breakdown(request)
    assert parts.system > 0 and parts.messages > 0 and parts.tools > 0 and parts.framing > 100
    assert parts.total == estimator_counter.count_request(request)
    assert parts.to_dict()["total"] == parts.total


# ---------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("environ", "mode"),
    [
        ({}, "estimate"),
        ({"LEGACY_TOKEN_ESTIMATION": "true"}, "legacy"),
        ({"ENABLE_ACCURATE_TOKEN_COUNTING": "false"}, "legacy"),
    ],
)
def test_build_counter_mode(environ: dict[str, str], mode: str) -> None:
    assert build_counter(Settings.from_env(environ)).stats()["mode"] == mode


def test_build_counter_with_tokenizer_file_is_exact() -> None:
    if not GLM_FILE.is_file():
        pytest.skip(f"GLM tokenizer file not found at {GLM_FILE}")
    counter = build_counter(Settings.from_env({"TOKENIZER_FILE": str(GLM_FILE)}))
    assert counter.stats()["mode"] == "exact"
    assert counter.count_text("1234567890") == 6  # GLM splits digits finer than cl100k (4)


def test_build_counter_reads_cache_and_image_settings() -> None:
    environ = {
        "TIKTOKEN_CACHE_SIZE": "7",
        "ENABLE_DYNAMIC_IMAGE_TOKENS": "false",
        "FIXED_IMAGE_TOKENS": "1234",
    }
    counter = build_counter(Settings.from_env(environ))
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    assert counter.stats()["maxsize"] == 7
    assert counter.breakdown({"messages": [{"role": "user", "content": [image]}]}).images == 1234


def test_build_counter_names_the_bad_variable() -> None:
    with pytest.raises(ValueError, match="TOKENIZER_ENCODING"):
        build_counter(Settings.from_env({"TOKENIZER_ENCODING": "r50k_base"}))


def test_build_counter_passes_the_observer_on() -> None:
    heard: list[tuple[int, int]] = []
    counter = build_counter(Settings.from_env({}), on_lookup=lambda h, m: heard.append((h, m)))
    counter.count_text(LONG)
    counter.count_text(LONG)
    assert heard == [(0, 1), (1, 0)]
