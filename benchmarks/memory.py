"""Memory under load, and how well the caches hold up with many long sessions.

Part 1 (`--part server`): the proxy under gunicorn (the shipped gunicorn.conf.py) against the
fake z.ai in its own process (benchmarks/fake_process.py). It prints the summed VmRSS of the
gunicorn master and workers after a warm-up and then after each of:
  - 10,000 small non-streaming requests in a row (32 clients, keep-alive), sampled every 1,000;
  - three 30 MB bodies (one user message of 30 MB of text: under MAX_REQUEST_BYTES, so the
    proxy reads, parses and counts it, then cuts the message to the window and forwards it);
  - 200 concurrent streams for 10 s (peak during, level after).
What it looks for: no growth that the caches' configured bounds do not explain (the level after
the first 1,000 requests holds within a few MB to the 10,000th; the 30 MB bodies and the 200
streams leave the level where it was, give or take the allocator keeping freed arenas).

Part 2 (`--part sessions`): the token counter's and the context manager's analysis cache hit
ratios with 20 concurrent 150k-token agent sessions, in one process (one worker's view: a worker
sees every session routed to it, so this is the heavier case). Each session sends, per turn,
count_tokens then the non-streaming request (as Claude Code does), then grows by one exchange.
Run at the default sizes (TIKTOKEN_CACHE_SIZE 1000, CONTEXT_CACHE_SIZE 100) and with larger
ones; prints hit ratios, the median time per request and the process's RSS growth.

    .venv/bin/python benchmarks/memory.py [--part server|sessions|all] [--turns 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.fake_process import start_fake, upstream_env  # noqa: E402
from benchmarks.load import (  # noqa: E402
    EVENT_DELAY,
    FIRST_EVENT_SECONDS,
    RssSampler,
    run_clients,
    shipped,
)
from tests.integration.servers import Gunicorn, _rss_kb  # noqa: E402

KEY = "sk-memory"
SMALL = {
    "model": "glm-4.6",
    "max_tokens": 64,
    "messages": [{"role": "user", "content": "Say something short about memory."}],
}
BIG_BODY_MB = 30
SESSIONS = 20
SESSION_TOKENS = 150_000
LARGER = {"TIKTOKEN_CACHE_SIZE": "50000", "CONTEXT_CACHE_SIZE": "1000"}


def mb(kb: int) -> str:
    return f"{kb / 1024:7.1f} MB"


# ---------------------------------------------------------------------------- part 1: server


def post_many(url: str, body: bytes, count: int, clients: int = 32) -> dict[int, int]:
    """POST `body` `count` times from `clients` keep-alive connections; statuses by code."""
    parts = urlsplit(url)
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    left = [count]

    def one_client() -> None:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=120)
        headers = {"Content-Type": "application/json", "x-api-key": KEY}
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            try:
                conn.request("POST", parts.path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80)
                status = 0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def part_server() -> None:
    fake, base = start_fake(event_delay=EVENT_DELAY, hold_seconds=FIRST_EVENT_SECONDS)
    workers, threads = shipped("WEB_CONCURRENCY"), shipped("GUNICORN_THREADS")
    try:
        with Gunicorn(upstream_env(base), workers=workers, threads=threads) as server:
            url = server.url + "/v1/messages"
            print(f"server: gunicorn {len(server.pids()) - 1} workers, shipped settings")
            post_many(url, json.dumps(SMALL).encode(), 100)
            start = server.rss_kb()
            print(f"  after warm-up (100 requests)        {mb(start)}")
            levels = []
            for thousand in range(1, 11):
                statuses = post_many(url, json.dumps(SMALL).encode(), 1000)
                levels.append(server.rss_kb())
                if thousand in (1, 2, 5, 10):
                    print(
                        f"  after {thousand * 1000:>6,} requests in a row     {mb(levels[-1])}"
                        f"   statuses {statuses}"
                    )
            print(f"  growth from 1,000 to 10,000 requests: {mb(levels[-1] - levels[0])}")
            big = json.dumps(
                {
                    "model": "glm-4.6",
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": "word " * (BIG_BODY_MB * 1024 * 205)}],
                }
            ).encode()
            before_big = server.rss_kb()
            with RssSampler(server, interval=0.1) as rss:
                for n in range(3):
                    statuses = post_many(url, big, 1, clients=1)
                    time.sleep(0.5)  # the worker trims after the response has gone out
                    print(
                        f"  after 30 MB body #{n + 1} ({len(big) / 2**20:.1f} MiB)"
                        f"       {mb(server.rss_kb())}   statuses {statuses}"
                    )
            print(
                f"  30 MB bodies: peak {mb(rss.peak_kb)}, level moved"
                f" {mb(server.rss_kb() - before_big)}"
            )
            before_streams = server.rss_kb()
            with RssSampler(server) as rss:
                tally = run_clients(url, 200, 10.0)[0]["small"]
            time.sleep(1.0)
            print(
                f"  200 concurrent streams x 10 s: {tally.completed} completed,"
                f" {tally.error_count} errors; peak {mb(rss.peak_kb)}, level moved"
                f" {mb(server.rss_kb() - before_streams)}"
            )
            print(f"  end level {mb(server.rss_kb())} (warm-up level {mb(start)})")
    finally:
        fake.terminate()
        fake.wait(timeout=10)


# ---------------------------------------------------------------------------- part 2: sessions


def part_sessions(turns: int, tokens: int = SESSION_TOKENS) -> None:
    from tests.sessions import agent_session

    sessions = [agent_session(tokens, seed=100 + i) for i in range(SESSIONS)]
    print(
        f"sessions: {SESSIONS} concurrent agent sessions of ~{tokens // 1000}k tokens,"
        f" {turns} turns each (count_tokens + a request per turn), one process"
    )
    for label, extra in (("defaults", {}), ("larger", LARGER)):
        figures = run_sessions(sessions, turns, extra)
        sizes = extra or {"TIKTOKEN_CACHE_SIZE": "1000", "CONTEXT_CACHE_SIZE": "100"}
        print(
            f"  {label:<8} TIKTOKEN_CACHE_SIZE={sizes['TIKTOKEN_CACHE_SIZE']:>5}"
            f" CONTEXT_CACHE_SIZE={sizes['CONTEXT_CACHE_SIZE']:>4}:"
            f" token cache hit ratio {figures['token_hit_ratio']:.3f}"
            f" of {figures['token_lookups']} lookups,"
            f" analysis cache hit ratio {figures['analysis_hit_ratio']:.3f}"
            f" of {figures['analysis_lookups']} lookups,"
            f" median {figures['median_ms']:.0f} ms per call,"
            f" statuses {figures['statuses']}, RSS of this process after {figures['rss_mb']:.0f} MB"
        )


def run_sessions(sessions: list[dict[str, Any]], turns: int, extra: dict[str, str]) -> dict:
    """Drive every session for `turns` turns at once through one app; cache figures after."""
    from app import create_app
    from config import Settings
    from tests.fake_upstream import FakeUpstream

    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as store:
        env = {
            **upstream_env(fake.base_url),
            "CACHE_DIR": store,
            "LOG_LEVEL": "CRITICAL",
            **extra,
        }
        app = create_app(Settings.from_env(env))
        timings: list[float] = []
        statuses: dict[int, int] = {}
        lock = threading.Lock()

        def drive(session: dict[str, Any]) -> None:
            client = app.test_client()
            body = json.loads(json.dumps(session))
            for turn in range(turns):
                for path in ("/v1/messages/count_tokens", "/v1/messages"):
                    began = time.perf_counter()
                    reply = client.post(path, json=body, headers={"x-api-key": KEY})
                    with lock:
                        timings.append((time.perf_counter() - began) * 1000)
                        statuses[reply.status_code] = statuses.get(reply.status_code, 0) + 1
                answer = reply.get_json() or {}
                said = " ".join(b.get("text", "") for b in answer.get("content", []) if b)
                body["messages"] += [
                    {"role": "assistant", "content": said.strip() or "Done."},
                    {"role": "user", "content": f"Good. Next step {turn + 1}, please."},
                ]

        run_all(drive, sessions)
        fake.reset()
        with app.test_client() as client:
            health = client.get("/health").get_json()
    return {
        "token_hit_ratio": health["token_counter"]["hit_ratio"],
        "analysis_hit_ratio": health["context"]["analysis_cache"]["hit_ratio"],
        "analysis_lookups": health["context"]["analysis_cache"]["hits"]
        + health["context"]["analysis_cache"]["misses"],
        "token_lookups": health["token_counter"]["hits"] + health["token_counter"]["misses"],
        "median_ms": statistics.median(timings),
        "statuses": statuses,
        "rss_mb": _rss_kb(os.getpid()) / 1024,
    }


def run_all(target: Callable[[dict[str, Any]], None], items: list[dict[str, Any]]) -> None:
    threads = [threading.Thread(target=target, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("server", "sessions", "all"), default="all")
    parser.add_argument("--turns", type=int, default=4, help="turns per session (part 2)")
    parser.add_argument(
        "--session-tokens",
        type=int,
        default=SESSION_TOKENS,
        help="part 2; above the 200k window the analysis cache (cuts) takes part",
    )
    args = parser.parse_args()
    if args.part in ("server", "all"):
        part_server()
    if args.part in ("sessions", "all"):
        part_sessions(args.turns, args.session_tokens)


if __name__ == "__main__":
    main()
