"""A long agent session end to end through a running proxy: the migration guide's integration check.

    python test_integration_intelligent_context.py [--url http://localhost:5000] [--key KEY]
    python test_integration_intelligent_context.py --fake      # starts its own proxy and z.ai

Sends `--turns` (30) turns of a growing coding-agent session to /v1/messages, the way Claude
Code does: each turn resends the whole conversation plus one more assistant tool call and its
result. Each turn adds about `--turn-tokens` tokens; by default the size is taken from the
proxy's own /health (its window and output reserve) so that the session reaches the WARNING band
about halfway and the proxy starts condensing, then keeps growing. Prints a row per turn from
the answer's context_info (risk, utilization, the client's and the forwarded tokens, messages
condensed, truncation, summary calls, cache hit) and checks:

  - every answer is 200 and carries context_info;
  - the forwarded conversation stays within the input budget on every turn;
  - once condensation has started, the later turns reuse it (cache_hit on at least 80% of them)
    instead of summarising again.

Against a real proxy every turn reaches z.ai: with a 200k window the default sizing sends about
3 million input tokens in all (the script prints its estimate first); `--turns` and
`--turn-tokens` make it smaller. The key comes from --key or the first of PROXY_TEST_KEY,
ZAI_API_KEY, ANTHROPIC_AUTH_TOKEN that is set; it is never printed.

`--fake` needs no key and no network: it starts the fake z.ai (tests/fake_upstream.py) in this
process and the proxy under gunicorn with the repository's gunicorn.conf.py, both with a
40,000-token window, and also checks that the fake accepted every forwarded request (its own
GLM count plus max_tokens within its window). Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import requests

from test_intelligent_context_management import Report, agent_body, tool_round
from test_intelligent_context_management import filler as shared_filler

Json = dict[str, Any]
KEY_VARIABLES = ("PROXY_TEST_KEY", "ZAI_API_KEY", "ANTHROPIC_AUTH_TOKEN")
TIMEOUT = 300
MAX_TOKENS = 8192
FAKE_WINDOW = 40_000
REUSE_SHARE = 0.8  # of the turns after the first condensation: "mostly"
WARNING_AT = 0.5  # the share of the turns after which the session reaches the WARNING band
INFO_FIELDS = ("risk_level", "utilization", "estimated_input_tokens", "original_input_tokens",
               "input_budget", "condensation_applied", "messages_condensed", "summary_calls",
               "truncated", "cache_hit")  # fmt: skip
WORDS = (
    "the handler reads the request then checks the session and writes the answer to the log "
    "while the pool keeps a count of open connections and retries after a short backoff"
).split()
CODE = (
    "def handle(self, request):",
    "    session = self.sessions.get(request.user) or self.open(request.user)",
    "    return self.render(session.answer(request.body))",
    "for worker in self.pool:",
    "    if worker.busy: continue",
    "class Pool:",
    "    def __init__(self, size): self.size = size",
)
TOOLS = ("read_file", "grep", "run_tests", "edit_file")


# ---------------------------------------------------------------------------- the session


def filler(rng: random.Random, tokens: int) -> str:
    return shared_filler(rng, tokens, WORDS, CODE)


def session_at(turn: int, turn_tokens: int, model: str) -> Json:
    """The request of turn `turn`: the task and `turn` rounds of tool call and result."""
    messages: list[Json] = [
        {
            "role": "user",
            "content": "Task: requests time out under load in src/server/pool.py. Find out why "
            "and fix it without changing the public API.",
        }
    ]
    for k in range(1, turn + 1):
        rng = random.Random(k)
        call_id = f"toolu_check_{k:04d}"
        name = TOOLS[k % len(TOOLS)]
        size = int(turn_tokens * rng.uniform(0.6, 1.4))
        messages += tool_round(k, name, call_id, f"src/server/part_{k}.py", filler(rng, size))
    return agent_body(model, MAX_TOKENS, messages, TOOLS)


# ---------------------------------------------------------------------------- running it


@dataclass
class Turn:
    number: int
    status: int
    ms: float
    info: Json | None
    error: str = ""


@dataclass(frozen=True)
class Proxy:
    url: str
    key: str
    fake: Any = None  # the in-process FakeUpstream with --fake


@contextmanager
def local_proxy() -> Iterator[Proxy]:
    """--fake: the fake z.ai in this process and the proxy under gunicorn, both small windows."""
    from tests.fake_upstream import FakeUpstream
    from tests.integration.servers import Gunicorn

    with (
        FakeUpstream(windows={"glm-4.6": FAKE_WINDOW}) as fake,
        tempfile.TemporaryDirectory(prefix="proxy-store-") as store,
    ):
        env = {
            "UPSTREAM_BASE": fake.anthropic_base,
            "OPENAI_UPSTREAM_BASE": fake.openai_base,
            "REAL_TEXT_MODEL_TOKENS": str(FAKE_WINDOW),
            "CACHE_DIR": store,
            "LOG_LEVEL": "WARNING",
        }
        with Gunicorn(env, workers=2, threads=4) as server:
            print(
                f"--fake: a LOCAL FAKE z.ai at {fake.base_url} (tests/fake_upstream.py) and the "
                f"proxy under gunicorn (gunicorn.conf.py, 2 workers) at {server.url}, both with a "
                f"{FAKE_WINDOW:,}-token window"
            )
            yield Proxy(server.url, "sk-local-fake", fake)


def send_turns(proxy: Proxy, turns: int, turn_tokens: int, model: str) -> Iterator[Turn]:
    headers = {"x-api-key": proxy.key, "anthropic-version": "2023-06-01"}
    with requests.Session() as session:
        for number in range(1, turns + 1):
            body = session_at(number, turn_tokens, model)
            started = time.perf_counter()
            try:
                reply = session.post(
                    proxy.url + "/v1/messages", json=body, headers=headers, timeout=TIMEOUT
                )
            except requests.RequestException as exc:
                yield Turn(number, 0, 0.0, None, f"{type(exc).__name__}: {exc}")
                continue
            ms = (time.perf_counter() - started) * 1000
            try:
                info = reply.json().get("context_info")
            except ValueError:
                info = None
            error = "" if reply.status_code == 200 else reply.text[:200]
            yield Turn(number, reply.status_code, ms, info, error)


def row(turn: Turn) -> str:
    info = turn.info or {}
    if turn.status != 200 or not info:
        return f"  {turn.number:>4}  HTTP {turn.status}: {turn.error or 'no context_info'}"
    return (
        f"  {turn.number:>4}  {info['risk_level']:9} {info['utilization']:5.2f} "
        f"{info['original_input_tokens']:>9,} {info['estimated_input_tokens']:>9,} "
        f"{info['messages_condensed']:>9} {'yes' if info['truncated'] else 'no':>5} "
        f"{info['summary_calls']:>5} {'yes' if info['cache_hit'] else 'no':>5} {turn.ms:>7.0f}"
    )


HEADER = (
    f"  {'turn':>4}  {'risk':9} {'util':>5} {'client':>9} {'forwarded':>9} {'condensed':>9} "
    f"{'trunc':>5} {'calls':>5} {'cache':>5} {'ms':>7}"
)


def check(turns: list[Turn], condensing: bool, proxy: Proxy, report: Report) -> None:
    print("checks")
    ok = [t for t in turns if t.status == 200]
    report.check(len(ok) == len(turns), f"every answer 200 ({len(ok)}/{len(turns)})")
    infos = {t.number: t.info for t in ok if t.info and all(k in t.info for k in INFO_FIELDS)}
    report.check(
        len(infos) == len(turns),
        f"context_info on every answer ({len(infos)}/{len(turns)}, each with "
        f"{len(INFO_FIELDS)} fields: risk_level, utilization, …)",
    )
    over = [n for n, i in infos.items() if i["estimated_input_tokens"] > i["input_budget"]]
    largest = max((i["estimated_input_tokens"] / i["input_budget"] for i in infos.values()),
                  default=0.0)  # fmt: skip
    report.check(
        bool(infos) and not over,
        f"forwarded tokens within the input budget on every turn (at most {largest:.0%} of it)"
        + (f"; over at turns {over}" if over else ""),
    )
    if condensing:
        check_reuse(infos, report)
    else:
        print("  [info] AI condensation is off on this proxy: no reuse to check")
    if proxy.fake is not None:
        check_fake(proxy.fake, report)


def check_reuse(infos: dict[int, Json], report: Report) -> None:
    """Once condensation has started, the later turns find it (cache_hit) and reuse it."""
    first = next((n for n, i in infos.items() if i["condensation_applied"]), None)
    if first is None:
        peak = max((i["utilization"] for i in infos.values()), default=0.0)
        report.check(
            False,
            f"condensation never started (utilization peaked at {peak:.2f}; more --turns or "
            f"--turn-tokens reach the WARNING band)",
        )
        return
    later = [i for n, i in infos.items() if n > first]
    hits = sum(bool(i["cache_hit"]) for i in later)
    calls = sum(i["summary_calls"] for i in later)
    share = hits / len(later) if later else 1.0
    report.check(
        share >= REUSE_SHARE,
        f"condensation started at turn {first}; the {len(later)} later turns reuse it: "
        f"cache_hit on {hits} ({share:.0%}, at least {REUSE_SHARE:.0%}), {calls} new "
        f"summary calls among them",
    )


def check_fake(fake: Any, report: Report) -> None:
    """--fake: the fake z.ai's own verdict on every forwarded (non-summary) request."""
    sent = [r for r in fake.requests if "summary_request" not in r.notes]
    rejected = [r for r in sent if r.status != 200]
    largest = max((r.input_tokens + r.body["max_tokens"] for r in sent), default=0)
    report.check(
        bool(sent) and not rejected,
        f"the fake z.ai accepted every forwarded request ({len(sent) - len(rejected)}/{len(sent)};"
        f" its largest GLM count + max_tokens {largest:,} <= {FAKE_WINDOW:,})",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("PROXY_URL", "http://localhost:5000"))
    parser.add_argument("--key", help="a z.ai key, or one of PROXY_API_KEYS")
    parser.add_argument("--model", default="glm-4.6")
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--turn-tokens", type=int, help="tokens each turn adds (default: sized "
                        "from the proxy's window to reach the WARNING band halfway)")  # fmt: skip
    parser.add_argument("--fake", action="store_true", help="start a fake z.ai and a proxy here")
    args = parser.parse_args(argv)
    if args.turns < 2:
        parser.error("--turns must be at least 2")
    key = args.key or next((os.environ[v] for v in KEY_VARIABLES if os.environ.get(v)), None)
    if not key and not args.fake:
        parser.error(f"no key: pass --key, set one of {', '.join(KEY_VARIABLES)}, or use --fake")
    try:
        with local_proxy() if args.fake else _running(args.url, key or "") as proxy:
            return run(proxy, args)
    except (requests.RequestException, RuntimeError, KeyError, ValueError) as exc:
        print(f"  [FAIL] the proxy cannot be used: {type(exc).__name__}: {exc}")
        print("1 check(s) FAILED")
        return 1


@contextmanager
def _running(url: str, key: str) -> Iterator[Proxy]:
    print(f"proxy {url.rstrip('/')} (running; every turn reaches its upstream)")
    yield Proxy(url.rstrip("/"), key)


def run(proxy: Proxy, args: Any) -> int:
    health = requests.get(proxy.url + "/health", timeout=30)
    health.raise_for_status()
    status = health.json()
    window = status["routing"]["real_text_model_tokens"]
    context = status["context"]
    reserve = context["switches"]["output_reserve_tokens"]
    condensing = bool(context["switches"].get("condenser_present"))
    budget = window - min(MAX_TOKENS, reserve)
    warning = context["switches"]["thresholds"]["warning"]
    turn_tokens = args.turn_tokens or max(200, int(warning * budget / (WARNING_AT * args.turns)))
    upstream_tokens = sum(min(k * turn_tokens, budget) for k in range(1, args.turns + 1))
    strategy = (context.get("condensation") or {}).get("strategy", "off")
    print(
        f"window {window:,}, input budget {budget:,} (max_tokens {MAX_TOKENS}), AI condensation "
        f"{'on (' + strategy + ')' if condensing else 'off'}; {args.turns} turns adding about "
        f"{turn_tokens:,} tokens each: at most ~{upstream_tokens / 1e6:.1f}M input tokens upstream"
    )
    print(HEADER)
    turns = []
    for turn in send_turns(proxy, args.turns, turn_tokens, args.model):
        print(row(turn), flush=True)
        turns.append(turn)
    report = Report()
    check(turns, condensing, proxy, report)
    print("all checks passed" if not report.failures else f"{report.failures} check(s) FAILED")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
