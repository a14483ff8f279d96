"""Check AI condensation as this deployment configures it: the migration guide's validation step.

    python test_message_condensation.py            # summary calls go to your upstream (z.ai)
    python test_message_condensation.py --fake     # ... to a local fake z.ai, started here

Builds what a worker builds from the environment plus `.env` (Settings, token counter, upstream
client, Condenser, ContextManager), with a private in-memory summary store so the summary is
really asked for, then condenses a sample coding-agent session sized into the WARNING band of
this deployment's input budget (about 0.85 of it). The session plants facts (file paths,
identifiers, numbers, an error message, a command, a URL) in its early tool results, which are
the turns condensation summarises. Prints the summary the model wrote, each planted fact and
whether it survived, tokens before and after, the strategy and the summary calls made.

Against your upstream the summary calls use SERVER_API_KEY and cost about a quarter of the
input budget in tokens (roughly 50k input tokens with a 200k window); `--window N` sizes the
sample for a smaller window instead. With `--fake` nothing leaves the machine: the fake
(tests/fake_upstream.py, a strict stand-in for z.ai that answers summary requests like an ideal
summariser) serves both upstream endpoints, and every other setting stays as configured.

Exit status: 0 when every check passes; 1 when one fails (no AI summary produced, the summary
rejected by the quality gate, the condensed conversation invalid for z.ai or over the
condensation target) or a setting is invalid; 2 when there is no key for the summary calls.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from condensation import build_condenser
from condensation.condenser import HYSTERESIS, SUMMARY_HEADER
from condensation.prompts import transcript
from condensation.quality import judge
from condensation.store import MemoryStore
from config import Settings, Strategy
from context.manager import ContextManager
from context.risk import budget_for
from context.validation import validate_conversation
from test_intelligent_context_management import Report, agent_body, tool_round
from test_intelligent_context_management import filler as shared_filler
from tokens import build_counter
from upstream.anthropic_format import parse_request
from upstream.client import build_upstream

Json = dict[str, Any]
MAX_TOKENS = 8192
SHARE = 0.85  # of the input budget: inside the WARNING band with the default thresholds
SUMMARY_PREVIEW = 4000  # characters of the summary printed (--full prints it all)
NO_KEY = (
    "SERVER_API_KEY is not set: the summary calls need a z.ai key. Set SERVER_API_KEY (in the "
    "environment or .env), or pass --fake to check against a local fake z.ai instead."
)

# ---------------------------------------------------------------------------- the sample

TASK = (
    "Task: payments to the gateway fail under load. Make the retry policy bounded and keep the "
    "public API of the payments package unchanged."
)
# Planted at the head of early tool results (turn -> text); FACTS are what must survive.
PLANTED = {
    1: "Opened src/payments/retry_policy.py (184 lines). PaymentGatewayClient.send() calls "
    "compute_backoff_delay(attempt) and retries while attempt < MAX_RETRY_ATTEMPTS.",
    2: "Traceback (most recent call last):\n"
    "TimeoutError: gateway did not answer within 30s\n"
    "It happened 8643 times yesterday according to /var/log/payments/gateway.log.",
    3: "Upstream https://status.example-payments.com/api/v2/health reports 99.2% success; "
    "RETRY_JITTER_RATIO is 0.35 in settings.",
    4: "Reproduce with:\n$ pytest -q tests/payments/test_retry_policy.py --max-attempts 7",
}
FACTS = (
    "src/payments/retry_policy.py", "PaymentGatewayClient", "compute_backoff_delay",
    "MAX_RETRY_ATTEMPTS", "TimeoutError", "8643", "/var/log/payments/gateway.log",
    "https://status.example-payments.com/api/v2/health", "RETRY_JITTER_RATIO", "0.35",
    "tests/payments/test_retry_policy.py", "--max-attempts",
)  # fmt: skip
WORDS = (
    "the client sends each request and waits for the answer then it records the outcome and "
    "moves to the next item in the queue while the worker keeps a count of what went through"
).split()
CODE = (
    "def send(self, request):",
    "    response = self.session.post(self.url, json=request, timeout=self.timeout)",
    "    return response.json()",
    "for attempt in range(limit):",
    "    delay = min(cap, base * 2 ** attempt)",
    "class Gateway:",
    "    def __init__(self, url): self.url = url",
)
TOOLS = ("read_file", "grep", "run_tests")


def filler(rng: random.Random, tokens: int) -> str:
    return shared_filler(rng, tokens, WORDS, CODE)


def sample_session(model: str, tokens: int, count: Any) -> Json:
    """A coding-agent session of at least `tokens` (as `count` counts it), ending in tool
    results, with the facts planted in its first tool results."""
    rng = random.Random(4821)
    messages: list[Json] = [{"role": "user", "content": TASK}]
    body = agent_body(model, MAX_TOKENS, messages, TOOLS)
    turn = 0
    while turn < 2 * max(PLANTED) or count(body) < tokens:
        turn += 1
        call_id = f"toolu_sample_{turn:04d}"
        name = TOOLS[turn % len(TOOLS)]
        text = filler(rng, rng.choice((300, 800, 1500, 2500)))
        if turn in PLANTED:
            text = PLANTED[turn] + "\n" + text
        messages += tool_round(turn, name, call_id, f"src/payments/part_{turn}.py", text)
    return body


# ---------------------------------------------------------------------------- running it


class Captured(logging.Handler):
    """The condensation log lines of the run (why a summary failed or was rejected)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.getMessage()}")


@contextmanager
def captured_logs() -> Iterator[Captured]:
    handler = Captured()
    loggers = [logging.getLogger(name) for name in ("condensation", "context", "upstream")]
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield handler
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


@contextmanager
def local_fake(settings: Settings, quality: float) -> Iterator[Settings]:
    """The fake z.ai, in this process, as both upstreams; only imported here (--fake)."""
    from tests.fake_upstream import FakeUpstream

    fake = FakeUpstream(
        windows={settings.autotext_model: settings.real_text_model_tokens},
        summary_quality=quality,
    )
    fake.models.add(settings.autotext_model)
    if settings.condensation_model:
        fake.models.add(settings.condensation_model)
    with fake:
        print(
            f"UPSTREAM: a LOCAL FAKE z.ai (tests/fake_upstream.py) at {fake.base_url}, started "
            "by --fake: nothing is sent to your upstream, the summaries are the fake's"
        )
        yield dataclasses.replace(
            settings, upstream_base=fake.anthropic_base, openai_upstream_base=fake.openai_base
        )


def condense(settings: Settings, api_key: str, report: Report, full: bool) -> None:
    counter = build_counter(settings)
    upstream = build_upstream(settings)
    condenser = build_condenser(settings, upstream, MemoryStore())
    manager = ContextManager(settings, counter, condenser)
    probe = parse_request(sample_session(settings.autotext_model, 0, lambda _: 0))
    route = manager.route(probe)
    budget = budget_for(route.window, MAX_TOKENS, settings.output_reserve_tokens)
    wire: Any = route.endpoint.value

    def count(body: Json) -> int:
        return counter.count_request(parse_request(body), wire)

    body = sample_session(settings.autotext_model, int(SHARE * budget.input), count)
    request = parse_request(body)
    target_share = min(settings.condensation_light_target,
                       settings.condensation_warning_threshold * HYSTERESIS)  # fmt: skip
    target = int(budget.input * target_share)
    print(
        f"sample: {len(body['messages'])} messages, {count(body):,} tokens ({counter.mode} "
        f"counting) for {route.model} via {route.endpoint.value}: window {route.window:,}, input "
        f"budget {budget.input:,}, condensation target {target:,} ({target_share:.2f} of it)"
    )
    print(
        f"condenser: strategy {settings.condensation_default_strategy.value}, quality threshold "
        f"{settings.condensation_quality_threshold}, timeout {settings.condensation_timeout:g} s, "
        f"chunks of {settings.condensation_max_messages} messages, summary model "
        f"{settings.condensation_model or settings.autotext_model}"
    )
    with captured_logs() as logs:
        prepared = manager.prepare(request, route, 1.0)
        print(
            f"graded {prepared.info.risk_level.value} (utilization "
            f"{prepared.info.utilization:.3f}) -> {prepared.info.strategy_used.value}; "
            f"condensing (summary calls to {settings.upstream_base}) ..."
        )
        done = manager.finish(prepared, api_key)
    info = done.info
    view = done.view
    record = getattr(view, "record", None)
    summary = record.summary if record is not None else ""
    stats = condenser.stats()
    print(
        f"result: strategy {info.condensation_strategy}, {info.messages_condensed} messages "
        f"condensed, {info.summary_calls} summary calls, tokens {info.original_input_tokens:,} "
        f"-> {info.estimated_input_tokens:,} (saved {info.tokens_saved:,}), truncated "
        f"{info.truncated}, {info.processing_time_ms / 1000:.1f} s"
    )
    for line in logs.lines:
        print(f"  log: {line}")

    if record is not None and summary:
        shown = summary if full or len(summary) <= SUMMARY_PREVIEW else summary[:SUMMARY_PREVIEW]
        print(f"summary ({len(summary):,} characters, {counter.count_text(summary):,} tokens):")
        print(f"  | {SUMMARY_HEADER.format(n=record.condensed)}")
        for line in shown.splitlines():
            print(f"  | {line}")
        if len(shown) < len(summary):
            print(f"  | … ({len(summary) - len(shown):,} more characters; --full prints them)")
    messages: Any = done.request["messages"]
    forwarded = "\n".join(_strings(messages))
    kept = [fact for fact in FACTS if fact in forwarded]
    print(f"planted facts (turns 1-{max(PLANTED)}, all condensed): {len(kept)}/{len(FACTS)} kept")
    for fact in FACTS:
        print(f"  {'kept' if fact in kept else 'LOST'}  {fact}")

    print("checks")
    ai = settings.condensation_default_strategy is not Strategy.SMART_TRUNCATION
    produced = bool(summary.strip()) and info.summary_calls > 0
    report.check(
        produced or not ai,
        "an AI summary was produced"
        if produced
        else "no AI summary was produced (see the log lines above)"
        if ai
        else "strategy smart_truncation needs no AI summary",
    )
    if ai:
        strategy = settings.condensation_default_strategy.value
        accepted = (
            stats["fallbacks"] == 0
            and stats["failures"] == 0
            and info.condensation_strategy == strategy
        )
        report.check(
            accepted,
            f"the {strategy} summary {'passed' if accepted else 'did NOT pass'} the quality gate "
            f"(fallbacks {stats['fallbacks']}, failures {stats['failures']}; strategy in force "
            f"{info.condensation_strategy})",
        )
    problems = validate_conversation(messages, done.request.get("system"))
    report.check(not problems, f"z.ai would accept the result: {problems[:3] or 'no problems'}")
    report.check(
        info.estimated_input_tokens <= target and not info.truncated,
        f"within the condensation target: {info.estimated_input_tokens:,} <= {target:,} tokens, "
        f"no truncation needed",
    )
    if record is not None and summary:
        span = [m for i, m in enumerate(request["messages"][: record.end]) if i not in record.kept]
        quality = judge(transcript(span), summary)
        print(
            f"  [info] the summary against the whole condensed span: quality {quality.score:.2f} "
            f"({quality.kept} of {quality.total} facts; the gate judged each call on its own "
            f"input, threshold {settings.condensation_quality_threshold})"
        )


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fake", action="store_true", help="summarise with a local fake z.ai started here"
    )
    parser.add_argument(
        "--fake-quality",
        type=float,
        default=1.0,
        help="share of the facts the fake's summaries keep (1.0; lower to see the gate reject)",
    )
    parser.add_argument("--window", type=int, help="size the sample for this window instead")
    parser.add_argument("--full", action="store_true", help="print the whole summary")
    args = parser.parse_args(argv)
    report = Report()
    try:
        settings = Settings.from_env(dotenv=True)
        if args.window:
            settings = dataclasses.replace(settings, real_text_model_tokens=args.window)
    except ValueError as exc:  # ConfigError names the variable
        report.check(False, f"settings: {exc}")
        print("1 check(s) FAILED")
        return 1
    if not settings.enable_ai_condensation:
        report.check(False, "ENABLE_AI_CONDENSATION=false: AI condensation is switched off")
        print("1 check(s) FAILED")
        return 1
    if not args.fake and not settings.server_api_key:
        print(NO_KEY, file=sys.stderr)
        return 2
    try:
        if args.fake:
            with local_fake(settings, args.fake_quality) as faked:
                condense(faked, "sk-local-fake", report, args.full)
        else:
            print(f"UPSTREAM: {settings.upstream_base} (configured), key SERVER_API_KEY")
            condense(settings, settings.server_api_key or "", report, args.full)
    except Exception as exc:  # the report names what broke instead of a traceback
        report.check(False, f"condensation check: {type(exc).__name__}: {exc}")
    print("all checks passed" if not report.failures else f"{report.failures} check(s) FAILED")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
