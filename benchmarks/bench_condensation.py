"""A long agent session through AI condensation: summary calls, reuse, prefix, facts, latency.

    .venv/bin/python benchmarks/bench_condensation.py [--quick] [--turns N] [--summary-delay S]

Replays a Claude-Code-like session of 120 turns (`--quick`: 30): every turn resends the whole
conversation plus one new assistant tool call and its result. About 20 distinctive facts (paths,
identifiers, numbers, a URL, commands, error messages) are planted in the first user message and
in the first tool results. The session grows to about twice the window, so the proxy condenses
again and again. Everything is real but the model: `create_app(settings)` (ContextManager,
Condenser, Summarizer, the embedded DiskStore in a temporary directory, the upstream client over
HTTP) driven through Flask's test client, against the fake z.ai (tests/fake_upstream.py) started
in-process. The fake counts with GLM's tokenizer (when ../shared/tokenizers holds it), rejects
anything over its window (prompt + max_tokens) and answers summary requests like an ideal
summariser that keeps every fact it finds. Both windows are REAL_TEXT_MODEL_TOKENS (60,000; 24,000
with --quick), so a session crosses the WARNING band within a few dozen turns.

`--summary-delay S` makes every summary call take S seconds more (default 0.2): the fake's
`timeout` fault (a pause before a non-stream reply) put on summary requests only. `fail_next`
cannot aim at them (it takes the next valid request, whatever it is) and `event_delay` only
paces stream events (summary calls are not streamed), so the fake is subclassed here to attach
that fault to every summary request it answers.

Printed: summary calls; summary-cache hit ratio after the first condensation (per-turn
context_info.cache_hit, and the condenser's own figures from /health); tokens forwarded per turn;
prefix stability (turn N+1's forwarded messages start with turn N's, its last message aside);
planted facts found in the last forwarded request; the time condensing turns add, next to one
summary call timed alone; whether every forwarded request fitted the window (the fake's count).
Each target is printed met / NOT MET with its figure.
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import create_app  # noqa: E402
from config import Settings  # noqa: E402
from tests.fake.plans import Fault  # noqa: E402
from tests.fake.summarizer import NOTE as SUMMARY_NOTE  # noqa: E402
from tests.fake_upstream import FakeUpstream, RecordedRequest  # noqa: E402

Json = dict[str, Any]

FULL_TURNS, QUICK_TURNS = 120, 30
FULL_WINDOW, QUICK_WINDOW = 60_000, 24_000
MAX_TOKENS = 32_000  # what Claude Code asks for; the proxy lowers it when input + output don't fit
KEY = {"x-api-key": "sk-bench-client", "anthropic-version": "2023-06-01"}
MODEL = "glm-4.6"
SUMMARY_TIMINGS = 5  # one summary call, timed alone: median of this many

HIT_TARGET = 0.95
PREFIX_TARGET = 0.90
FACTS_TARGET = 0.95
LATENCY_TARGET = 1.5  # x one summary call
SPARK = "▁▂▃▄▅▆▇█"

# ---------------------------------------------------------------------------- the session

TASK = (
    "Task: invoices in EUR come out one cent off. Fix the rounding in "
    "src/billing/invoice_total.py without changing the signature of compute_total_v2, "
    "and keep INVOICE_ROUNDING_MODE configurable. Ticket 4821."
)
# (turn, text) planted at the head of that turn's tool result; each fact below is in one.
PLANTED = {
    1: "Opened src/billing/invoice_total.py (212 lines). TaxRateResolver is built once per "
    "request and calls calculate_vat_breakdown(lines, rates) before rounding.",
    2: "KeyError: 'tenant_id' missing from the billing context\n"
    "The worker log /var/log/billing/worker-7.log shows it 37429 times since Monday.",
    3: "Upstream https://billing.internal.example.com/api/v3/invoices answered in 250ms.\n"
    "$ psql -c 'select count(*) from invoices where total_cents < 0'",
    4: "settings.BILLING_CURRENCY_PRECISION is read at import; the VAT rate for DE is 12.5% "
    "in the fixture, and the pinned client is stripe-python 7.12.0.",
    5: "Run `pytest -q tests/billing/test_rounding.py` to reproduce; the flag "
    "--dry-run-invoices skips the write.",
    6: "ValueError: invalid literal for int() with base 10: 'EUR'\n"
    "The migration migrations/0042_add_rounding_column.py added the column; checksum 0x7f3a9c2e.",
    7: "ConnectionRefusedError: [Errno 111] ECONNREFUSED from the ledger on port 5433",
}
FACTS = (
    "src/billing/invoice_total.py", "compute_total_v2", "INVOICE_ROUNDING_MODE", "4821",
    "TaxRateResolver", "calculate_vat_breakdown", "KeyError: 'tenant_id'",
    "/var/log/billing/worker-7.log", "37429",
    "psql -c 'select count(*) from invoices where total_cents < 0'",
    "https://billing.internal.example.com/api/v3/invoices", "250ms",
    "settings.BILLING_CURRENCY_PRECISION", "12.5%", "7.12.0",
    "pytest -q tests/billing/test_rounding.py", "--dry-run-invoices",
    "ValueError: invalid literal for int() with base 10: 'EUR'",
    "migrations/0042_add_rounding_column.py", "0x7f3a9c2e", "ECONNREFUSED",
)  # fmt: skip
WORDS = (
    "the worker reads each record and writes a row when the batch is full then it waits for "
    "the next message from the queue and retries once after a short pause if the store is busy "
    "tests check that totals match the ledger and that every line keeps its tax rate"
).split()
CODE = (
    "def total(lines):",
    "    return sum(line.amount for line in lines)",
    "for line in lines:",
    "    if line.amount < 0: raise ValueError('negative amount')",
    "class Invoice:",
    "    def __init__(self, lines): self.lines = list(lines)",
    "    rate = rates.get(line.country, DEFAULT_RATE)",
    "assert invoice.total == expected",
)
TOOLS = ("read_file", "grep", "run_tests", "edit_file")
RESULT_TOKENS = (150, 400, 700, 1000, 1500, 2400)  # about; ~1,000 a turn on average


def tool_definitions() -> list[Json]:
    return [
        {
            "name": name,
            "description": f"{name.replace('_', ' ')} in the repository the user works in",
            "input_schema": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["path"],
            },
        }
        for name in TOOLS
    ]


def system_prompt() -> str:
    rng = random.Random(0)
    rules = [" ".join(rng.choice(WORDS) for _ in range(30)) + "." for _ in range(25)]
    return "You are a careful coding agent working in the user's repository.\n" + "\n".join(rules)


def filler(rng: random.Random, tokens: int) -> str:
    """Code or prose of about `tokens` tokens, with no fact the planted ones could be mixed with."""
    if rng.random() < 0.5:
        lines = [rng.choice(CODE) for _ in range(max(1, tokens // 9))]
        return "\n".join(lines)
    return " ".join(rng.choice(WORDS) for _ in range(max(1, int(tokens * 0.8))))


def turn_messages(turn: int) -> list[Json]:
    """Turn `turn`'s assistant tool call and the user message holding its result."""
    rng = random.Random(1000 + turn)
    call_id = f"toolu_bench_{turn:04d}"
    name = TOOLS[turn % len(TOOLS)]
    path = f"src/billing/part_{turn:03d}.py"
    assistant = {
        "role": "assistant",
        "content": [
            {"type": "text", "text": f"Step {turn}: {name.replace('_', ' ')} next."},
            {"type": "tool_use", "id": call_id, "name": name, "input": {"path": path}},
        ],
    }
    text = filler(rng, rng.choice(RESULT_TOKENS))
    if turn in PLANTED:
        text = PLANTED[turn] + "\n" + text
    result = {"type": "tool_result", "tool_use_id": call_id, "content": text}
    return [assistant, {"role": "user", "content": [result]}]


def session_at(turn: int) -> Json:
    """The request of turn `turn`: the task and `turn` rounds of tool call and result."""
    messages: list[Json] = [{"role": "user", "content": TASK}]
    for k in range(1, turn + 1):
        messages += turn_messages(k)
    return {
        "model": MODEL,
        "max_tokens": MAX_TOKENS,
        "system": system_prompt(),
        "tools": tool_definitions(),
        "messages": messages,
    }


# ---------------------------------------------------------------------------- the fake


class SlowSummaries(FakeUpstream):
    """The fake, with `summary_delay` seconds of its `timeout` fault on every summary reply."""

    summary_delay = 0.0

    def _reply(self, record: RecordedRequest) -> Any:
        plan = super()._reply(record)
        if self.summary_delay and SUMMARY_NOTE in record.notes and plan.fault is None:
            plan.fault = Fault("timeout", seconds=self.summary_delay)
        return plan


# ---------------------------------------------------------------------------- the run


@dataclass
class Turn:
    """What one turn cost and what was forwarded."""

    number: int
    status: int
    seconds: float
    info: Json
    summary_calls: int  # summary requests the fake received during the turn
    forwarded: list[RecordedRequest] = field(default_factory=list)  # non-summary requests

    @property
    def final(self) -> RecordedRequest | None:
        return self.forwarded[-1] if self.forwarded else None


def run_session(fake: FakeUpstream, settings: Settings, turns: int) -> tuple[list[Turn], Json]:
    client = create_app(settings).test_client()
    out = []
    for number in range(1, turns + 1):
        body = session_at(number)
        seen = len(fake.requests)
        started = time.perf_counter()
        reply = client.post("/v1/messages", json=body, headers=KEY)
        seconds = time.perf_counter() - started
        new = fake.requests[seen:]
        data = reply.get_json(silent=True) or {}
        out.append(
            Turn(
                number,
                reply.status_code,
                seconds,
                data.get("context_info") or {},
                sum(SUMMARY_NOTE in r.notes for r in new),
                [r for r in new if SUMMARY_NOTE not in r.notes],
            )
        )
    health = client.get("/health").get_json()["context"]["condensation"]
    return out, health


def time_one_summary(fake: FakeUpstream) -> float:
    """Seconds one summary call takes, alone: the first recorded summary request, resent."""
    first = fake.summary_requests[0]
    times = []
    with requests.Session() as session:
        for _ in range(SUMMARY_TIMINGS):
            started = time.perf_counter()
            reply = session.post(
                fake.anthropic_base + "/v1/messages", json=first.body, headers=KEY, timeout=60
            )
            times.append(time.perf_counter() - started)
            reply.raise_for_status()
    return statistics.median(times)


# ---------------------------------------------------------------------------- figures


@dataclass(frozen=True)
class Row:
    """One target: its name, the measured figure, the goal, and whether it was met."""

    name: str
    figure: str
    goal: str
    met: bool


def strings(value: Any) -> list[str]:
    """Every string in a JSON value (the text a model reads, keys aside)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    return []


def sparkline(values: list[int]) -> str:
    low, high = min(values), max(values)
    span = max(1, high - low)
    return "".join(SPARK[(v - low) * (len(SPARK) - 1) // span] for v in values)


def reuse_rows(turns: list[Turn], first: int, max_messages: int) -> list[Row]:
    """Records found on every turn after the first condensation; summary calls it took."""
    after = [t for t in turns if t.number > first]
    hits = sum(bool(t.info.get("cache_hit")) for t in after)
    ratio = hits / len(after) if after else 1.0
    calls = sum(t.summary_calls for t in after)
    added = 2 * len(after)  # each turn adds a tool call and its result
    allowed = added / max_messages
    return [
        Row(
            "summary-cache hit ratio after the 1st condensation",
            f"{ratio:.1%} ({hits}/{len(after)} turns)",
            f">= {HIT_TARGET:.0%}",
            ratio >= HIT_TARGET,
        ),
        Row(
            "summary calls after the 1st condensation",
            f"{calls} for {added} messages added ({10 * calls / max(1, added):.2f} per 10)",
            f"<= {allowed:.1f} (1 per {max_messages})",
            calls <= allowed,
        ),
    ]


def window_row(turns: list[Turn], window: int) -> Row:
    """Every turn answered, its forwarded request (as the fake counts it) within the window."""
    over = [
        t.number
        for t in turns
        if t.status != 200
        or t.final is None
        or t.final.status != 200
        or t.final.input_tokens + t.final.body["max_tokens"] > window
    ]
    rejected = sum(r.status == 400 for t in turns for r in t.forwarded)
    largest = max(t.final.input_tokens + t.final.body["max_tokens"] for t in turns if t.final)
    return Row(
        "forwarded context within the window, every turn",
        f"{len(turns) - len(over)}/{len(turns)} turns (largest input + max_tokens {largest:,}); "
        f"{rejected} upstream 400s" + (f"; over at turns {over}" if over else ""),
        f"all <= {window:,}",
        not over,
    )


def prefix_row(turns: list[Turn]) -> Row:
    """Turn N+1's forwarded request starts with turn N's (system, tools, messages but the last)."""
    stable, breaks = 0, []
    for previous, current in itertools.pairwise(turns):
        if previous.final is None or current.final is None:
            breaks.append(current.number)
            continue
        before, now = previous.final.body, current.final.body
        same_head = all(before.get(k) == now.get(k) for k in ("system", "tools"))
        head = before["messages"][:-1]
        if same_head and now["messages"][: len(head)] == head:
            stable += 1
        else:
            breaks.append(current.number)
    pairs = max(1, len(turns) - 1)
    return Row(
        "prefix stability (turn N+1 starts with turn N)",
        f"{stable / pairs:.1%} ({stable}/{pairs}; breaks at turns {breaks})",
        f">= {PREFIX_TARGET:.0%}",
        stable / pairs >= PREFIX_TARGET,
    )


def facts_row(turns: list[Turn]) -> Row:
    """The planted facts found, verbatim, in the text of the last forwarded request."""
    last = turns[-1].final
    text = "\n".join(strings(last.body)) if last is not None else ""
    lost = [fact for fact in FACTS if fact not in text]
    kept = len(FACTS) - len(lost)
    return Row(
        "planted facts in the final forwarded context",
        f"{kept / len(FACTS):.1%} ({kept}/{len(FACTS)})" + (f"; lost: {lost}" if lost else ""),
        f">= {FACTS_TARGET:.0%}",
        kept / len(FACTS) >= FACTS_TARGET,
    )


def latency_row(turns: list[Turn], one_call: float) -> tuple[Row, float]:
    """What each condensing turn took beyond the median quiet turn, against one summary call."""
    quiet = [t.seconds for t in turns if t.summary_calls == 0 and t.number > 1]
    base = statistics.median(quiet) if quiet else 0.0
    added = [t.seconds - base for t in turns if t.summary_calls > 0]
    within = sum(a <= LATENCY_TARGET * one_call for a in added)
    worst = max(added)
    return (
        Row(
            "latency each condensing turn adds",
            f"max {worst * 1000:.0f} ms = {worst / one_call:.2f}x, median "
            f"{statistics.median(added) * 1000:.0f} ms; {within}/{len(added)} turns within "
            f"(one summary call alone: {one_call * 1000:.0f} ms)",
            f"<= {LATENCY_TARGET}x one call",
            within == len(added),
        ),
        base,
    )


def print_turns(turns: list[Turn], window: int, base: float, delay: float) -> None:
    condensing = [t for t in turns if t.summary_calls > 0]
    last = turns[-1]
    print(
        f"turns: {len(turns)}, the last {2 * len(turns) + 1} messages and "
        f"{last.info.get('original_input_tokens', 0):,} tokens as the client sends it, in a "
        f"{window:,}-token window (input budget {last.info.get('input_budget', 0):,})"
    )
    forwarded = [t.final.input_tokens for t in turns if t.final is not None]
    estimates = [t.info.get("estimated_input_tokens", 0) for t in turns]
    tokenizer = next((t.final.tokenizer for t in turns if t.final is not None), "?")
    print(
        f"tokens forwarded per turn (the fake's count, {tokenizer}): min {min(forwarded):,}, "
        f"median {statistics.median(forwarded):,.0f}, max {max(forwarded):,}; the proxy's "
        f"estimate: min {min(estimates):,}, median {statistics.median(estimates):,.0f}, "
        f"max {max(estimates):,}"
    )
    print(f"  {sparkline(forwarded)}")
    tenth = [
        f"{t.number}:{t.final.input_tokens:,}"
        for t in turns
        if t.final is not None and (t.number % 10 == 0 or t.number == 1)
    ]
    print("  every 10th turn: " + ", ".join(tenth))
    print(f"summary calls in total: {sum(t.summary_calls for t in turns)}")
    print(
        f"condensing turns ({len(condensing)}; quiet turns take {base * 1000:.0f} ms, the median; "
        f"each summary call is held {delay:.2f} s):"
    )
    for t in condensing:
        print(
            f"  turn {t.number:3}: {t.summary_calls} summary calls, {t.seconds * 1000:5.0f} ms, "
            f"{t.info.get('condensation_strategy')}, {t.info.get('messages_condensed')} messages "
            f"condensed, {t.info.get('estimated_input_tokens', 0):,} tokens forwarded "
            f"(risk {t.info.get('risk_level')} before)"
        )


def print_health(health: Json) -> None:
    names = ("lookups", "record_hits", "record_hit_ratio", "attempts", "successes", "fallbacks",
             "failures", "summary_calls", "success_rate")  # fmt: skip
    print("condenser (/health context.condensation): " + ", ".join(
        f"{name}={health.get(name)}" for name in names
    ))  # fmt: skip


def print_table(rows: list[Row]) -> None:
    print(f"  {'target':50} {'result':8} figure (goal)")
    for row in rows:
        print(f"  {row.name:50} {'met' if row.met else 'NOT MET':8} {row.figure} ({row.goal})")


def settings_for(fake: FakeUpstream, window: int, store_dir: str) -> Settings:
    """The proxy's settings: the fake as both upstreams, its window, a private store."""
    return Settings.from_env(
        {
            "UPSTREAM_BASE": fake.anthropic_base,
            "OPENAI_UPSTREAM_BASE": fake.openai_base,
            "REAL_TEXT_MODEL_TOKENS": str(window),
            "CACHE_DIR": store_dir,
            "LOG_LEVEL": "WARNING",
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_TURNS} turns, smaller window")
    parser.add_argument("--turns", type=int, help="turns to replay (default 120, --quick 30)")
    parser.add_argument("--window", type=int, help="REAL_TEXT_MODEL_TOKENS and the fake's window")
    parser.add_argument(
        "--summary-delay", type=float, default=0.2, help="seconds added to every summary call"
    )
    args = parser.parse_args()
    turns = args.turns or (QUICK_TURNS if args.quick else FULL_TURNS)
    window = args.window or (QUICK_WINDOW if args.quick else FULL_WINDOW)
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="bench-condensation-") as store_dir,
        SlowSummaries(windows={MODEL: window}) as fake,
    ):
        fake.summary_delay = args.summary_delay
        settings = settings_for(fake, window, store_dir)
        print(
            f"settings: REAL_TEXT_MODEL_TOKENS={window:,} (the fake's window too), client "
            f"max_tokens {MAX_TOKENS:,}, {settings.condensation_default_strategy.value}, "
            f"CONDENSATION_MAX_MESSAGES={settings.condensation_max_messages}, DiskStore in a "
            f"temp dir, proxy counting {settings.tokenizer_file or settings.tokenizer_encoding}; "
            f"{len(FACTS)} facts planted in the task and turns 1-{max(PLANTED)}"
        )
        results, health = run_session(fake, settings, turns)
        condensing = [t.number for t in results if t.summary_calls > 0]
        if not condensing:
            print("no condensation happened: the session never reached the WARNING band")
            print_table([window_row(results, window), prefix_row(results), facts_row(results)])
            return
        latency, base = latency_row(results, time_one_summary(fake))
        print_turns(results, window, base, args.summary_delay)
        print_health(health)
        print_table(
            [
                *reuse_rows(results, condensing[0], settings.condensation_max_messages),
                window_row(results, window),
                prefix_row(results),
                facts_row(results),
                latency,
            ]
        )
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
