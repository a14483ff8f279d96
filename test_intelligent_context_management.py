"""Check context management as this deployment configures it: the migration guide's validation step.

    python test_intelligent_context_management.py

Builds the ContextManager as a worker does (environment plus `.env`, the token counter from the
same settings, no condenser as the proxy runs today) with the network shut off, then:
  risk levels  five conversations sized against this deployment's input budget, one inside each
               band (SAFE, CAUTION, WARNING, CRITICAL, OVERFLOW): the level and the action the
               proxy reports, and that only the OVERFLOW one is changed before forwarding;
  truncation   an agent session of about 1.3x the budget (tool calls, parallel calls, signed
               thinking, the user's own words now and then): the forwarded conversation is one
               z.ai accepts (tool_use/tool_result pairs, starts with the user), fits the budget
               and the window with the answer, and keeps the system prompt, the latest user
               message with the assistant turn it answers, the task and the user's last words;
  cache        the same session resent is decided from the analysis cache;
  earlier      the same session at every earlier length that already overflowed: each result
               valid and fitting (the cut falls somewhere else every time);
  shrinking    one message bigger than the whole budget is shrunk to fit, head and tail kept.
Prints a line per check and the context_info of the truncation. Exit status 0 when every check
passes, 1 otherwise (also when a setting is invalid: the message names the variable).
"""

from __future__ import annotations

import json
import math
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any, cast

from config import Settings
from context.manager import ContextManager, Prepared, PromptTooLongError
from context.risk import Action, Budget, RiskLevel, budget_for
from context.validation import validate_conversation
from test_accurate_token_counter import network_refused
from tokens import build_counter
from tokens.framing import Wire
from upstream.anthropic_format import parse_request
from upstream.canonical import text_of
from upstream.routing import Route

Json = dict[str, Any]
Count = Callable[[Any], int]
CHAT_MAX_TOKENS = 8192
AGENT_MAX_TOKENS = 64000  # what Claude Code asks for
SESSION_SIZE = 1.3  # the agent session, as a share of the input budget
PARAGRAPH_TOKENS = 1000
SHORTER_LENGTHS = 400  # lengths spread over the session; about a quarter overflow
# DESIGN.md §4's table, written out so that the proxy is not graded against its own copy.
ACTIONS = {
    RiskLevel.SAFE: Action.MONITOR_ONLY,
    RiskLevel.CAUTION: Action.MONITOR_ONLY,
    RiskLevel.WARNING: Action.CONDENSATION_LIGHT,
    RiskLevel.CRITICAL: Action.CONDENSATION_AGGRESSIVE,
    RiskLevel.OVERFLOW: Action.EMERGENCY_TRUNCATION,
}
WORDS = (
    "request timeout worker pool retry upstream latency queue socket handler cache lock parser "
    "config module budget window session client stream answer error refresh token limit"
).split()
TOOLS = ("read_file", "run_tests", "grep")


class Report:
    """Collects check results and prints them as they come."""

    def __init__(self) -> None:
        self.failures = 0

    def check(self, ok: bool, what: str) -> bool:
        self.failures += not ok
        print(f"  [{'PASS' if ok else 'FAIL'}] {what}")
        return ok


# ---------------------------------------------------------------------------- conversations


def log_text(rng: random.Random, tokens: int) -> str:
    """Service-log lines of about `tokens` tokens."""
    lines = []
    for _ in range(max(1, tokens // 14)):
        words = " ".join(rng.choice(WORDS) for _ in range(5))
        lines.append(f"12:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} WARN {words}")
    return "\n".join(lines)


def chat(model: str, pasted: list[str]) -> Json:
    """A support chat whose middle user turn pastes `pasted` log excerpts."""
    paste = [{"type": "text", "text": "Here are the logs:"}]
    paste += [{"type": "text", "text": text} for text in pasted]
    return {
        "model": model,
        "max_tokens": CHAT_MAX_TOKENS,
        "system": "You are an on-call engineer. Answer briefly.",
        "messages": [
            {"role": "user", "content": "Requests to our API time out. Can you help?"},
            {"role": "assistant", "content": "Yes. Please paste the service logs."},
            {"role": "user", "content": paste},
            {"role": "assistant", "content": "Thanks, I am reading them."},
            {"role": "user", "content": "What is the most likely cause?"},
        ],
    }


def sized_chat(model: str, tokens: int, count: Count, count_text: Count) -> Json | None:
    """A chat of `tokens` tokens (or a few under, as words allow); None if it cannot be."""
    rng = random.Random(tokens)
    need = tokens - count(parse_request(chat(model, [])))
    if need < 0:
        return None
    pasted = []
    while need > 2 * PARAGRAPH_TOKENS:
        pasted.append(log_text(rng, PARAGRAPH_TOKENS))
        need -= count_text(pasted[-1])
    words = log_text(rng, 2 * need + 20).split(" ")
    low, high = 0, len(words)  # the longest head of `words` that stays within `need`
    while low < high:
        middle = (low + high + 1) // 2
        if count_text(" ".join(words[:middle])) <= need:
            low = middle
        else:
            high = middle - 1
    if low:
        pasted.append(" ".join(words[:low]))
    return chat(model, pasted)


def tool_round(step: int, name: str, call_id: str, path: str, output: str) -> list[Json]:
    """An assistant turn calling `name` on `path`, and the user turn holding its result."""
    said = {"type": "text", "text": f"Step {step}: {name.replace('_', ' ')}."}
    call = {"type": "tool_use", "id": call_id, "name": name, "input": {"path": path}}
    result = {"type": "tool_result", "tool_use_id": call_id, "content": output}
    return [{"role": "assistant", "content": [said, call]}, {"role": "user", "content": [result]}]


def filler(rng: random.Random, tokens: int, words: Sequence[str], code: Sequence[str]) -> str:
    """About `tokens` tokens of prose from `words` or, half the time, lines from `code`."""
    if rng.random() < 0.5:
        return "\n".join(rng.choice(code) for _ in range(max(1, tokens // 9)))
    return " ".join(rng.choice(words) for _ in range(max(1, int(tokens * 0.8))))


def agent_body(model: str, max_tokens: int, messages: list[Json], tools: Sequence[str]) -> Json:
    """A Messages body of a coding agent: its system prompt, its tools, its `messages`."""
    schema = {"type": "object", "properties": {"path": {"type": "string"}}}
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": "You are a careful coding agent working in the user's repository.",
        "tools": [
            {
                "name": name,
                "description": f"{name.replace('_', ' ')} in the repository",
                "input_schema": schema,
            }
            for name in tools
        ],  # fmt: skip
        "messages": messages,
    }


def agent_session(model: str, tokens: int, count: Count) -> Json:
    """A coding-agent session of at least `tokens` tokens, ending in a turn of tool results."""
    rng = random.Random(7)
    task = "Task: make the upstream client retry on 429 and keep the public API unchanged."
    messages: list[Json] = [{"role": "user", "content": task}]
    body = agent_body(model, AGENT_MAX_TOKENS, messages, TOOLS)
    call = 0
    while call % 5 or count(parse_request(body)) < tokens:
        assistant: list[Json] = [{"type": "text", "text": f"Step {call}: checking the code."}]
        if call % 3 == 0:
            thought = "I should look at " + log_text(rng, 40)
            assistant.insert(0, {"type": "thinking", "thinking": thought, "signature": f"s{call}"})
        results: list[Json] = []
        for n in range(1 + (call % 4 == 1)):  # now and then two calls in parallel
            call_id = f"toolu_{call:04d}_{n}"
            path = f"src/module_{rng.randint(1, 40)}.py"
            name = rng.choice(TOOLS)
            assistant.append(
                {"type": "tool_use", "id": call_id, "name": name, "input": {"path": path}}
            )
            output = log_text(rng, rng.choice((200, 800, 2500)))
            results.append({"type": "tool_result", "tool_use_id": call_id, "content": output})
        if call % 7 == 3:
            results.append(
                {"type": "text", "text": f"Also (note {call}): keep the retries bounded."}
            )
        messages += [
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": results},
        ]
        call += 1
    return body


# ---------------------------------------------------------------------------- checks


def bands(settings: Settings, budget: int) -> list[tuple[RiskLevel, int, int]]:
    """Each risk level with the token range inside its band, from the thresholds themselves."""
    caution, warning, critical = (
        math.ceil(share * budget)
        for share in (
            settings.condensation_caution_threshold,
            settings.condensation_warning_threshold,
            settings.condensation_critical_threshold,
        )
    )
    return [
        (RiskLevel.SAFE, 1, caution - 1),
        (RiskLevel.CAUTION, caution, warning - 1),
        (RiskLevel.WARNING, warning, critical - 1),
        (RiskLevel.CRITICAL, critical, budget),
        (RiskLevel.OVERFLOW, budget + 1, budget + max(1000, budget // 5)),
    ]


def text_route(manager: ContextManager) -> Route:
    """Where this deployment sends a text conversation (every conversation here is one)."""
    return manager.route(parse_request(chat(manager.settings.autotext_model, [])))


def counting(manager: ContextManager, route: Route) -> Count:
    """Tokens of a canonical request as the route's wire sends it: what the manager counts."""
    wire = cast(Wire, route.endpoint.value)
    return lambda request: manager.counter.count_request(request, wire)


def check_levels(manager: ContextManager, report: Report) -> None:
    settings = manager.settings
    route = text_route(manager)
    budget = budget_for(route.window, CHAT_MAX_TOKENS, settings.output_reserve_tokens)
    print(
        f"risk levels ({route.model} via {route.endpoint.value}: window {route.window:,}, input "
        f"budget {budget.input:,} = window - min(max_tokens {CHAT_MAX_TOKENS}, "
        f"OUTPUT_RESERVE_TOKENS {settings.output_reserve_tokens}))"
    )
    count = counting(manager, route)
    for level, low, high in bands(settings, budget.input):
        body = sized_chat(
            route.requested_model, (low + high) // 2, count, manager.counter.count_text
        )
        if body is None or high < low:
            report.check(False, f"{level.value}: no conversation fits its band {low}..{high}")
            continue
        request = parse_request(body)
        prepared = manager.prepare(request, route, 1.0)
        info = prepared.info
        changed = prepared.request["messages"] != request["messages"]
        report.check(
            info.risk_level is level
            and info.strategy_used is ACTIONS[level]
            and low <= info.original_input_tokens <= high
            and changed == (level is RiskLevel.OVERFLOW),
            f"{level.value:8} {info.original_input_tokens:>9,} tokens, utilization "
            f"{info.utilization:.3f} -> {info.risk_level.value}, {info.strategy_used.value}, "
            f"{'truncated' if changed else 'forwarded as is'}",
        )


def check_truncation(manager: ContextManager, report: Report) -> tuple[Json, Prepared]:
    settings = manager.settings
    route = text_route(manager)
    budget = budget_for(route.window, AGENT_MAX_TOKENS, settings.output_reserve_tokens)
    count = counting(manager, route)
    session = agent_session(route.requested_model, int(SESSION_SIZE * budget.input), count)
    request = parse_request(session)
    prepared = manager.prepare(request, route, 1.0)
    info = prepared.info
    mode = "simple, oldest first" if settings.simple_truncation else "task and last words pinned"
    print(
        f"truncation ({mode}): an agent session of {len(request['messages'])} messages, "
        f"{info.original_input_tokens:,} tokens, into a {budget.input:,}-token budget"
    )
    report.check(
        info.risk_level is RiskLevel.OVERFLOW and info.truncated and info.messages_removed > 0,
        f"graded {info.risk_level.value} and truncated: {info.messages_removed} messages removed, "
        f"{len(prepared.request['messages'])} forwarded",
    )
    check_valid(prepared.request, report)
    check_fits(prepared, count(prepared.request), budget, report)
    check_protected(request, prepared.request, settings.simple_truncation, report)
    return session, prepared


def check_shorter(manager: ContextManager, session: Json, report: Report) -> None:
    """The session at earlier turns that already overflowed: cuts fall elsewhere each time."""
    route = text_route(manager)
    budget = budget_for(route.window, AGENT_MAX_TOKENS, manager.settings.output_reserve_tokens)
    count = counting(manager, route)
    total = len(session["messages"])
    step = 2 * max(1, total // SHORTER_LENGTHS)  # even: every length tried ends with a user turn
    print(f"truncation at earlier lengths of the session (every {step} messages)")
    failed, tried = [], 0
    for length in range(total - step, 0, -step):
        request = parse_request(session | {"messages": session["messages"][:length]})
        forwarded = manager.prepare(request, route, 1.0).request
        if count(request) <= budget.input:
            break
        tried += 1
        messages: Any = forwarded["messages"]
        if validate_conversation(messages, forwarded.get("system")) or (
            count(forwarded) > budget.input
        ):
            failed.append(length)
    report.check(
        tried > 0 and not failed,
        f"the same session at {tried} earlier overflowing lengths: every result valid and "
        f"fitting{f' except at lengths {failed[:5]}' if failed else ''}",
    )


def check_valid(forwarded: Any, report: Report) -> None:
    messages = forwarded["messages"]
    problems = validate_conversation(messages, forwarded.get("system"))
    report.check(
        not problems,
        f"z.ai would accept it (validate_conversation): {problems[:3] or 'no problems'}",
    )
    report.check(messages[0]["role"] == "user", "it starts with a user message")
    unanswered = [
        block["id"]
        for i, message in enumerate(messages)
        if message["role"] == "assistant"
        for block in message["content"]
        if block["type"] == "tool_use" and block["id"] not in _result_ids(messages, i + 1)
    ]
    orphans = [
        block["tool_use_id"]
        for i, message in enumerate(messages)
        for block in message["content"]
        if block["type"] == "tool_result" and block["tool_use_id"] not in _use_ids(messages, i - 1)
    ]
    report.check(
        not unanswered and not orphans,
        f"every tool_use answered in the next message, every tool_result answers the one before "
        f"(unanswered {unanswered[:3]}, orphans {orphans[:3]})",
    )


def _result_ids(messages: list[Any], i: int) -> set[str]:
    if i >= len(messages) or messages[i]["role"] != "user":
        return set()
    return {b["tool_use_id"] for b in messages[i]["content"] if b["type"] == "tool_result"}


def _use_ids(messages: list[Any], i: int) -> set[str]:
    if i < 0 or messages[i]["role"] != "assistant":
        return set()
    return {b["id"] for b in messages[i]["content"] if b["type"] == "tool_use"}


def check_fits(prepared: Prepared, recount: int, budget: Budget, report: Report) -> None:
    info = prepared.info
    report.check(
        recount <= budget.input and recount == info.estimated_input_tokens,
        f"it fits: {recount:,} tokens recounted <= {budget.input:,} budget "
        f"(context_info says {info.estimated_input_tokens:,})",
    )
    report.check(
        recount + info.max_tokens <= budget.window,
        f"input + max_tokens fit the {budget.window:,} window: {recount:,} + {info.max_tokens:,}"
        + (f" (lowered from {AGENT_MAX_TOKENS:,})" if info.max_tokens_lowered else ""),
    )


def check_protected(original: Any, forwarded: Any, simple: bool, report: Report) -> None:
    before, after = original["messages"], forwarded["messages"]
    report.check(forwarded.get("system") == original.get("system"), "the system prompt is kept")
    report.check(
        after[-1] == before[-1] and after[-2] == before[-2],
        "the latest user message and the assistant turn it answers are kept unchanged",
    )
    task = before[0]["content"]
    if simple:
        print("  [info] SIMPLE_TRUNCATION=true drops the oldest first: the task is not pinned")
    else:
        report.check(
            after[0]["content"][: len(task)] == task, "the task (first user message) is kept"
        )
        human = max(
            i
            for i, m in enumerate(before)
            if any(b["type"] == "text" for b in m["content"]) and m["role"] == "user"
        )
        report.check(
            before[human] in after and before[human - 1] in after,
            f"the user's last own words (message {human}) and the turn they answer are kept",
        )
    originals = [
        json.dumps(b, sort_keys=True)
        for m in before
        for b in m["content"]
        if b["type"] == "thinking"
    ]
    kept = [
        json.dumps(b, sort_keys=True)
        for m in after
        for b in m["content"]
        if b["type"] == "thinking"
    ]
    report.check(
        set(kept) <= set(originals), f"{len(kept)} signed thinking blocks forwarded unaltered"
    )


def check_cache(manager: ContextManager, session: Json, first: Prepared, report: Report) -> None:
    print("analysis cache (the same session resent)")
    again = manager.prepare(parse_request(json.loads(json.dumps(session))), first.route, 1.0)
    report.check(
        again.info.cache_hit and again.request == first.request,
        f"resent: cache_hit={again.info.cache_hit}, same forwarded request, "
        f"{again.info.processing_time_ms:.1f} ms (first {first.info.processing_time_ms:.1f} ms)",
    )


def check_shrinking(manager: ContextManager, report: Report) -> None:
    settings = manager.settings
    route = text_route(manager)
    budget = budget_for(route.window, CHAT_MAX_TOKENS, settings.output_reserve_tokens)
    print("shrinking (one message bigger than the whole budget)")
    text = log_text(random.Random(3), int(budget.input * 1.5))
    request = parse_request(
        {
            "model": route.requested_model,
            "max_tokens": CHAT_MAX_TOKENS,
            "messages": [{"role": "user", "content": text}],
        }
    )
    try:
        prepared = manager.prepare(request, route, 1.0)
    except PromptTooLongError as exc:
        report.check(False, f"refused instead of shrunk: {exc}")
        return
    kept = text_of(prepared.request["messages"][-1]["content"])
    recount = counting(manager, route)(prepared.request)
    report.check(
        prepared.info.blocks_shrunk > 0 and recount <= budget.input,
        f"{prepared.info.original_input_tokens:,} tokens shrunk to {recount:,} "
        f"({prepared.info.blocks_shrunk} block shrunk)",
    )
    report.check(
        kept[:200] == text[:200] and kept[-200:] == text[-200:], "its head and tail are kept"
    )


def run(name: str, check: Callable[[], object], report: Report) -> object:
    """Run one group of checks; an error inside it is a failed check, not a crash."""
    try:
        return check()
    except Exception as exc:  # the report must name what broke and go on with the others
        report.check(False, f"{name}: {type(exc).__name__}: {exc}")
        return None


def main() -> int:
    report = Report()
    try:
        settings = Settings.from_env(dotenv=True)
        with network_refused():
            counter = build_counter(settings)
    except ValueError as exc:  # ConfigError and a tokenizer that cannot load name the variable
        report.check(False, f"settings: {exc}")
        print("1 check(s) FAILED")
        return 1
    manager = ContextManager(settings, counter, condenser=None)
    print(
        f"context manager: counting mode={counter.mode}, thresholds "
        f"{settings.condensation_caution_threshold}/{settings.condensation_warning_threshold}/"
        f"{settings.condensation_critical_threshold}, "
        f"SIMPLE_TRUNCATION={settings.simple_truncation}, no condenser (truncation is the fallback)"
    )
    with network_refused():
        run("risk levels", lambda: check_levels(manager, report), report)
        result = run("truncation", lambda: check_truncation(manager, report), report)
        if isinstance(result, tuple):
            session, prepared = result
            run("cache", lambda: check_cache(manager, session, prepared, report), report)
            print("context_info of the truncation:")
            print(json.dumps(prepared.info.to_dict(), indent=2))
            run("earlier lengths", lambda: check_shorter(manager, session, report), report)
        run("shrinking", lambda: check_shrinking(manager, report), report)
    print("all checks passed" if not report.failures else f"{report.failures} check(s) FAILED")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
