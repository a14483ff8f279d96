"""How long does ContextManager.prepare take? Prints figures against raw tiktoken, same run.

    .venv/bin/python benchmarks/bench_context.py [--quick]

(a) a ~150k-token (GLM count), ~400-message agent session graded SAFE. SAFE means under
    CONDENSATION_CAUTION_THRESHOLD of the input budget, which 150k is not in the 200k window
    (0.70 x 191,808 = ~134k), so this part runs with REAL_TEXT_MODEL_TOKENS=400000:
      cold  a fresh counter and manager, first sight of the session (median of several runs);
      warm  the same session resent plus one new turn (the assistant's tool call and its
            result, different every time), the previous turn's pieces cached: p50 and p95;
(b) OVERFLOW: a ~260k-token session fitted into the default 200k window by emergency
    truncation, with a warm counter (the session's pieces seen before) but a fresh analysis
    cache, and cold (fresh counter and manager).
Baseline, measured in the same run and taking turns with the work: raw `encode_ordinary` of
the session's text pieces (system, tools JSON, every text, tool_use input JSON and tool_result
content) with cl100k_base from `tokens.load_encoding()`. Requests are parsed from fresh JSON
outside the clock, as each arrives as new JSON. Targets: warm p50 <= 5 ms, cold <= 1.3x raw,
truncation <= 1.5x raw. `--quick` runs smaller sessions and fewer repetitions (a smoke run).
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import Settings  # noqa: E402
from context.manager import ContextManager, Prepared  # noqa: E402
from context.validation import validate_conversation  # noqa: E402
from tests.sessions import agent_session  # noqa: E402
from tokens import TokenCounter, build_counter, load_encoding  # noqa: E402
from upstream.anthropic_format import parse_request  # noqa: E402

Json = dict[str, Any]


@dataclass(frozen=True)
class Sizes:
    """What one run measures: session sizes, windows and repetitions."""

    safe_tokens: int
    safe_messages: int
    safe_window: int
    overflow_tokens: int
    overflow_window: int
    cold_runs: int
    warm_runs: int


FULL = Sizes(150_000, 401, 400_000, 260_000, 200_000, cold_runs=9, warm_runs=30)
QUICK = Sizes(40_000, 101, 100_000, 70_000, 50_000, cold_runs=5, warm_runs=10)
WARM_TARGET_MS = 5.0
COLD_TARGET = 1.3
TRUNCATION_TARGET = 1.5
SIZE_TOLERANCE = 0.01  # the measured session lands within 1% of the size asked for
MIN_KEPT_CHARS = 20


# ---------------------------------------------------------------------------- sessions


def sized_session(settings: Settings, tokens: int, messages: int | None, seed: int) -> Json:
    """An agent session of `tokens` (as the counter counts them) and, if given, `messages`.

    tests/sessions.py writes ~1.4k tokens a message; a session is built at least that big (and
    long enough for the message count, then cut there), and its tool results are shortened to
    the size: the session grows about linearly with the share of each result kept.
    """
    count = _session_count(settings)
    target = tokens if messages is None else messages * 1000
    while True:
        body = agent_session(target, seed)
        if messages is not None and len(body["messages"]) < messages:
            target = int(target * 1.3)
            continue
        body["messages"] = body["messages"][:messages]
        if count(body) >= tokens:
            break
        if messages is not None:
            raise ValueError(f"{messages} messages of tests/sessions.py hold under {tokens} tokens")
        target = int(target * 1.3)
    low, high = (0.0, count(_shortened(body, 0.0))), (1.0, count(body))
    best = body
    for _ in range(6):  # regula falsi on the share kept
        share = low[0] + (tokens - low[1]) / max(1, high[1] - low[1]) * (high[0] - low[0])
        best = _shortened(body, share)
        size = count(best)
        if abs(size - tokens) <= SIZE_TOLERANCE * tokens:
            break
        low, high = ((share, size), high) if size < tokens else (low, (share, size))
    return best


def _session_count(settings: Settings) -> Callable[[Json], int]:
    counter = build_counter(settings)
    return lambda body: counter.count_request(parse_request(body))


def _shortened(body: Json, share: float) -> Json:
    """`body` with every tool result's text cut to `share` of its characters (at a space)."""
    out = copy.deepcopy(body)
    for message in out["messages"]:
        for block in message["content"] if isinstance(message["content"], list) else []:
            if block["type"] != "tool_result":
                continue
            if isinstance(block.get("content"), str):
                block["content"] = _cut(block["content"], share)
            for part in block.get("content") or []:
                if isinstance(part, dict) and part["type"] == "text":
                    part["text"] = _cut(part["text"], share)
    return out


def _cut(text: str, share: float) -> str:
    if share >= 1.0:
        return text
    keep = max(MIN_KEPT_CHARS, int(len(text) * share))
    cut = text[:keep]
    space = cut.rfind(" ", MIN_KEPT_CHARS)
    return cut[:space] if space > 0 else cut


def new_turn(body: Json, index: int) -> Json:
    """`body` plus one new round: an assistant tool call and its result, unique to `index`."""
    rng = random.Random(index)
    words = "cache lock worker retry parser config module request budget window".split()
    call_id = f"toolu_new_{index:04d}"
    output = " ".join(rng.choice(words) for _ in range(rng.randint(150, 600)))
    call = {
        "type": "tool_use",
        "id": call_id,
        "name": "run_tests",
        "input": {"path": f"tests/test_new_{index}.py", "limit": 200},
    }
    result = {"type": "tool_result", "tool_use_id": call_id, "content": f"run {index}: {output}"}
    turn = [
        {"role": "assistant", "content": [{"type": "text", "text": f"Step {index}."}, call]},
        {"role": "user", "content": [result]},
    ]
    return body | {"messages": body["messages"] + turn}


def text_pieces(body: Json) -> list[str]:
    """The session's text as a client wrote it: what the raw baseline encodes."""
    system = body.get("system") or []
    pieces = [system] if isinstance(system, str) else [b["text"] for b in system]
    pieces += [json.dumps(tool, ensure_ascii=False) for tool in body.get("tools", [])]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            pieces.append(content)
            continue
        for block in content:
            if block["type"] == "text":
                pieces.append(block["text"])
            elif block["type"] == "tool_use":
                pieces.append(json.dumps(block["input"], ensure_ascii=False))
            elif block["type"] == "tool_result":
                inner = block.get("content") or ""
                if isinstance(inner, str):
                    pieces.append(inner)
                else:
                    pieces += [part["text"] for part in inner if part["type"] == "text"]
    return [piece for piece in pieces if piece]


# ---------------------------------------------------------------------------- timing


@dataclass
class Row:
    """One printed figure: milliseconds, its baseline, and the target it is held to."""

    name: str
    ms: float
    raw_ms: float | None = None
    target: str = ""
    met: bool | None = None


def fresh(wire: str) -> Any:
    """A request parsed from new JSON, so no string hash is reused from an earlier run."""
    return parse_request(json.loads(wire))


def timed_prepare(manager: ContextManager, request: Any) -> tuple[float, Prepared]:
    route = manager.route(request)
    gc.collect()
    start = time.perf_counter()
    prepared = manager.prepare(request, route, 1.0)
    return (time.perf_counter() - start) * 1000, prepared


def timed_raw(pieces: list[str], encoding: Any) -> float:
    encode = encoding.encode_ordinary
    gc.collect()
    start = time.perf_counter()
    for piece in pieces:
        encode(piece)
    return (time.perf_counter() - start) * 1000


def cold(
    settings: Settings, body: Json, encoding: Any, runs: int, warm_counter: bool = False
) -> tuple[float, float, Prepared]:
    """Median prepare ms (new manager each run) and median raw ms, taking turns; last result.

    The counter is new every run, unless `warm_counter`: then it has counted the session once.
    """
    wire, pieces = json.dumps(body), text_pieces(body)
    timed_raw(pieces, encoding)  # warm-up
    times, raws = [], []
    prepared = None
    for _ in range(runs):
        counter = build_counter(settings)
        if warm_counter:
            counter.count_messages(fresh(wire))
        request = fresh(wire)
        ms, prepared = timed_prepare(ContextManager(settings, counter), request)
        times.append(ms)
        raws.append(timed_raw(pieces, encoding))
    assert prepared is not None
    return statistics.median(times), statistics.median(raws), prepared


def warm(
    settings: Settings, body: Json, encoding: Any, runs: int
) -> tuple[list[float], float, TokenCounter, Prepared]:
    """prepare ms of each resend-plus-one-turn, median raw ms of those requests, the counter.

    The previous turn (the session as it is) is prepared first, so its pieces are cached.
    """
    counter = build_counter(settings)
    manager = ContextManager(settings, counter)
    previous = fresh(json.dumps(body))
    manager.prepare(previous, manager.route(previous), 1.0)
    followers = [new_turn(body, index) for index in range(runs)]
    timed_raw(text_pieces(followers[0]), encoding)  # warm-up
    times, raws = [], []
    prepared = None
    for follower in followers:
        ms, prepared = timed_prepare(manager, fresh(json.dumps(follower)))
        times.append(ms)
        raws.append(timed_raw(text_pieces(follower), encoding))
    assert prepared is not None
    return times, statistics.median(raws), counter, prepared


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


# ---------------------------------------------------------------------------- report


def describe(label: str, body: Json, settings: Settings, encoding: Any) -> None:
    request = parse_request(body)
    counter = build_counter(settings)
    counts = counter.count_messages(request)
    raw_tokens = sum(len(encoding.encode_ordinary(p)) for p in text_pieces(body))
    manager = ContextManager(settings, counter)
    prepared = manager.prepare(request, manager.route(request), 1.0)
    print(
        f"{label}: {counts.total:,} tokens counted ({counter.mode} mode), "
        f"{len(body['messages'])} messages, {len(text_pieces(body))} text pieces, "
        f"{raw_tokens:,} raw cl100k tokens; window {settings.real_text_model_tokens:,}, "
        f"input budget {prepared.info.input_budget:,}, utilization "
        f"{prepared.info.utilization:.3f} -> {prepared.info.risk_level.value}"
    )


def check_result(prepared: Prepared, counter: TokenCounter) -> str:
    """One line on whether the forwarded request is valid and fits (a benchmark, not a test)."""
    request = prepared.request
    messages: Any = request["messages"]
    problems = validate_conversation(messages, request.get("system"))
    recount = counter.count_messages(request, prepared.route.endpoint.value).total
    fits = recount <= prepared.info.input_budget
    return (
        f"forwarded: {len(request['messages'])} messages, {recount:,} tokens recounted "
        f"({'fits' if fits else 'DOES NOT FIT'} the {prepared.info.input_budget:,} budget), "
        f"{'valid' if not problems else f'INVALID: {problems[:3]}'}"
    )


def print_table(rows: list[Row]) -> None:
    print(f"  {'figure':46} {'ms':>9} {'raw ms':>9} {'x raw':>7}  {'target':14} result")
    for row in rows:
        raw = f"{row.raw_ms:9.2f}" if row.raw_ms is not None else f"{'':9}"
        ratio = f"{row.ms / row.raw_ms:6.2f}x" if row.raw_ms else f"{'':7}"
        met = "" if row.met is None else ("met" if row.met else "NOT MET")
        print(f"  {row.name:46} {row.ms:9.2f} {raw} {ratio}  {row.target:14} {met}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sessions, fewer runs")
    sizes = QUICK if parser.parse_args().quick else FULL
    started = time.perf_counter()
    encoding = load_encoding()
    # Explicit settings (not this machine's environment) so runs compare with each other.
    safe_settings = Settings.from_env({"REAL_TEXT_MODEL_TOKENS": str(sizes.safe_window)})
    overflow_settings = Settings.from_env({"REAL_TEXT_MODEL_TOKENS": str(sizes.overflow_window)})
    safe_body = sized_session(safe_settings, sizes.safe_tokens, sizes.safe_messages, seed=11)
    overflow_body = sized_session(overflow_settings, sizes.overflow_tokens, None, seed=12)
    print(
        f"settings: (a) REAL_TEXT_MODEL_TOKENS={sizes.safe_window} so that a "
        f"{sizes.safe_tokens // 1000}k session is SAFE; (b) REAL_TEXT_MODEL_TOKENS="
        f"{sizes.overflow_window}; other variables at their defaults, no condenser "
        f"(counting, grading and truncation alone; bench_condensation.py measures condensation)"
    )
    describe("(a) session", safe_body, safe_settings, encoding)
    describe("(b) session", overflow_body, overflow_settings, encoding)

    cold_ms, cold_raw, _ = cold(safe_settings, safe_body, encoding, sizes.cold_runs)
    warm_times, warm_raw, warm_counter, warm_prepared = warm(
        safe_settings, safe_body, encoding, sizes.warm_runs
    )
    p50, p95 = percentile(warm_times, 0.5), percentile(warm_times, 0.95)
    trunc_warm_ms, trunc_raw, _ = cold(
        overflow_settings, overflow_body, encoding, sizes.cold_runs, warm_counter=True
    )
    trunc_cold_ms, trunc_cold_raw, truncated = cold(
        overflow_settings, overflow_body, encoding, sizes.cold_runs
    )
    rows = [
        Row("(a) SAFE cold (fresh counter), median", cold_ms, cold_raw, "<= 1.3x raw",
            cold_ms <= COLD_TARGET * cold_raw),
        Row(f"(a) SAFE warm resend + 1 turn, p50 of {len(warm_times)}", p50, warm_raw,
            "<= 5 ms", p50 <= WARM_TARGET_MS),
        Row(f"(a) SAFE warm resend + 1 turn, p95 of {len(warm_times)}", p95, warm_raw),
        Row("(b) OVERFLOW truncation, warm counter, median", trunc_warm_ms, trunc_raw,
            "<= 1.5x raw", trunc_warm_ms <= TRUNCATION_TARGET * trunc_raw),
        Row("(b) OVERFLOW truncation, cold, median", trunc_cold_ms, trunc_cold_raw,
            "<= 1.5x raw", trunc_cold_ms <= TRUNCATION_TARGET * trunc_cold_raw),
    ]  # fmt: skip
    print(
        f"prepare time (cold: median of {sizes.cold_runs} runs, new counter and manager each; "
        f"raw = encode_ordinary of the same text, taking turns)"
    )
    print_table(rows)
    stats = warm_counter.stats()
    print(
        f"(a) warm counter: LRU {stats['size']}/{stats['maxsize']} entries, hit ratio "
        f"{stats['hit_ratio']:.3f}; last warm {warm_prepared.info.risk_level.value}, "
        f"{warm_prepared.info.estimated_input_tokens:,} tokens"
    )
    print(f"(b) {check_result(truncated, build_counter(overflow_settings))}")
    print("(b) context_info of the truncation:")
    print(json.dumps(truncated.info.to_dict(), indent=2))
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
