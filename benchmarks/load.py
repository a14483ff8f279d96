"""Sustained streaming load: N concurrent clients through gunicorn, against a paced fake z.ai.

Starts tests/fake_upstream.py in its own process (benchmarks/fake_process.py) with realistic
pacing and the proxy under gunicorn (gthread, the project's gunicorn.conf.py), then runs the
same client load twice:
  direct: N clients POST /v1/messages (stream) straight to the fake's Anthropic endpoint;
  proxy:  the same N clients, same body, POSTed to the proxy's /v1/messages.
Each client is a thread in this process (not the server's) with one persistent connection; it
loops: send, read the whole stream, repeat until --seconds are up (the last stream finishes).

Arrivals: by default (spread) client i starts i/N of one stream's length after the first, so
200 streams are always in flight and requests arrive steadily, as from independent users. With
--arrivals together every client starts at once; as every stream lasts as long, they stay in
lockstep and each round is a burst of N simultaneous requests: that measures a burst (each
worker sets up N/workers requests at the same instant), not steady load.

Pacing: the fake's `event_delay=0.1` gives 10 events/s. The fake has no "first event delay",
so a `hold` fault (after=0, seconds=0.3, a huge count) stands in for it: the fake sends the
response head at once, then waits 0.3 s before the first SSE event. The echoed prompt is long
enough that a reply is about 55 events, i.e. a stream lasts about 5.7 s.

Reported: streams completed, errors (non-200, no message_stop, exceptions), time to first body
byte p50/p99 for both runs and what the proxy adds, proxy CPU seconds per stream (gunicorn
master + workers, /proc) and the peak summed VmRSS of the gunicorn processes (sampled every
0.5 s). Targets: 0 errors, added TTFB p99 <= 50 ms, peak RSS <= 400 MB.

With --mixed, SESSION_CLIENTS (20) of the N clients instead carry 150k-token agent sessions
(tests/sessions.py), each looping count_tokens, a non-streaming request and a streaming one,
growing by one exchange per round; the direct run sends the same sessions' requests (z.ai has
no count_tokens: the proxy answers it itself). Reported per kind as well: latency (time to the
whole answer; time to first byte for streams) p50/p99, direct and through the proxy.

    .venv/bin/python benchmarks/load.py [--streams 200] [--seconds 60] [--workers N]
                                        [--threads N] [--quick] [--mixed]
                                        [--arrivals spread|together]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.fake_process import start_fake, upstream_env  # noqa: E402
from tests.integration.servers import Gunicorn  # noqa: E402

KEY = "sk-load"
FIRST_EVENT_SECONDS = 0.3
EVENT_DELAY = 0.1
PROMPT = (
    "Please repeat this paragraph back to me so that the reply streams for a few seconds. "
    "The quick brown fox jumps over the lazy dog while the five boxing wizards jump quickly, "
    "and a wizard's job is to vex chumps quickly in fog. Pack my box with five dozen liquor "
    "jugs, then sphinx of black quartz, judge my vow, as the sun sets over the quiet harbour."
)
BODY = {
    "model": "glm-4.6",
    "max_tokens": 512,
    "stream": True,
    "messages": [{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
}
SESSION_CLIENTS = 20
SESSION_TOKENS = 150_000
SESSION_MAX_TOKENS = 128  # the fake echoes: a short answer keeps a session's stream ~7 s
STREAM_SECONDS = FIRST_EVENT_SECONDS + 55 * EVENT_DELAY  # one small stream, about 5.8 s
TARGET_ADDED_P99_MS = 50.0
TARGET_RSS_MB = 400.0


@dataclass
class Tally:
    """What one run of clients saw, merged across threads under a lock."""

    completed: int = 0
    ttfb_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, ttfb: float) -> None:
        with self.lock:
            self.completed += 1
            self.ttfb_ms.append(ttfb)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


HEADERS = {"Content-Type": "application/json", "x-api-key": KEY}


def connect(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=300)


def post(
    conn: http.client.HTTPConnection, path: str, data: bytes, tally: Tally, stream: bool
) -> bool | None:
    """POST `data`, read the whole answer and note it in `tally`: its time to first byte for a
    stream, to the whole answer otherwise; an error for an exception, a status other than 200
    or a stream without message_stop. True when `conn` can carry the next request, False when
    the server closes it, None when it broke."""
    try:
        began = time.perf_counter_ns()
        conn.request("POST", path, body=data, headers=HEADERS)
        response = conn.getresponse()
        first = response.read1(1)
        ttfb = (time.perf_counter_ns() - began) / 1e6
        answer = first + response.read()
        whole = (time.perf_counter_ns() - began) / 1e6
    except (OSError, http.client.HTTPException) as exc:
        tally.error(f"exception {type(exc).__name__}")
        return None
    if response.status != 200:
        tally.error(f"status {response.status}")
    elif stream and b"event: message_stop" not in answer:
        tally.error("no message_stop")
    else:
        tally.ok(ttfb if stream else whole)
    return not response.will_close


def client(
    url: str, when: dict[str, float], start: threading.Barrier, tally: Tally, delay: float = 0.0
) -> None:
    """One streaming client: after `delay` s, POST, read the whole stream, repeat until
    when["deadline"]."""
    path = urlsplit(url).path
    data = json.dumps(BODY).encode()
    conn: http.client.HTTPConnection | None = None
    start.wait()
    time.sleep(delay)
    deadline = when["deadline"]  # set before the barrier let this thread through
    while time.monotonic() < deadline:
        if conn is None:
            conn = connect(url)
        kept = post(conn, path, data, tally, stream=True)
        if not kept:
            conn.close()
            conn = None
            if kept is None:
                time.sleep(0.1)
    if conn is not None:
        conn.close()


def session_client(
    url: str,
    session: dict,
    when: dict[str, float],
    start: threading.Barrier,
    tallies: Kinds,
    delay: float = 0.0,
) -> None:
    """One 150k-token session, after `delay` s: count_tokens (proxy only), a request, a stream;
    then it grows."""
    path = urlsplit(url).path
    body = json.loads(json.dumps(session)) | {"max_tokens": SESSION_MAX_TOKENS}
    direct = "/api/anthropic/" in path
    conn = connect(url)
    start.wait()
    time.sleep(delay)
    rounds = 0
    while time.monotonic() < when["deadline"]:
        for kind in ("count_tokens", "message", "stream"):
            if kind == "count_tokens" and direct:
                continue
            stream = kind == "stream"
            data = json.dumps(body | {"stream": stream}).encode()
            where = path + ("/count_tokens" if kind == "count_tokens" else "")
            if post(conn, where, data, tallies[kind], stream) is None:
                conn.close()
                conn = connect(url)
        rounds += 1
        body["messages"] = body["messages"] + [
            {"role": "assistant", "content": [{"type": "text", "text": f"Step {rounds} done."}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": f"Go on with step {rounds + 1}."}],
            },
        ]
    conn.close()


Kinds = dict[str, Tally]


def run_clients(
    url: str,
    streams: int,
    seconds: float,
    sessions: list[dict] | None = None,
    spread: bool = False,
) -> tuple[Kinds, float]:
    """Run `streams` clients for `seconds` (the first len(sessions) carry those sessions);
    a tally per kind ("small" streams; "count_tokens", "message", "stream" of the sessions)
    and the wall time until the last client ended. Clients start together (lockstep: every
    stream lasts as long, so they stay in waves of N arrivals) or, with `spread`, evenly over
    one stream's length, as independent users arrive."""
    sessions = sessions or []
    delays = [i * STREAM_SECONDS / streams if spread else 0.0 for i in range(streams)]
    tallies: Kinds = {kind: Tally() for kind in ("small", "count_tokens", "message", "stream")}
    barrier = threading.Barrier(streams + 1)
    when: dict[str, float] = {}
    threads = [
        threading.Thread(
            target=session_client, args=(url, s, when, barrier, tallies, delay), daemon=True
        )
        for s, delay in zip(sessions, delays, strict=False)
    ] + [
        threading.Thread(
            target=client, args=(url, when, barrier, tallies["small"], delay), daemon=True
        )
        for delay in delays[len(sessions) :]
    ]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    when["deadline"] = began + seconds
    barrier.wait()  # every client starts together, after the deadline is set
    for thread in threads:
        thread.join()
    return tallies, time.monotonic() - began


# ---------------------------------------------------------------------------- gunicorn memory


class RssSampler:
    """Samples the summed VmRSS of gunicorn's master and workers every `interval` seconds."""

    def __init__(self, server: Gunicorn, interval: float = 0.5) -> None:
        self.server, self.interval = server, interval
        self.peak_kb = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> int:
        total = self.server.rss_kb()
        self.peak_kb = max(self.peak_kb, total)
        self.processes = max(self.processes, len(self.server.pids()))
        return total

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def shipped(name: str) -> int:
    """The default gunicorn.conf.py gives `name` (WEB_CONCURRENCY, GUNICORN_THREADS)."""
    text = (REPO_ROOT / "gunicorn.conf.py").read_text()
    match = re.search(rf'"{name}",\s*"(\d+)"', text)
    if match is None:
        raise RuntimeError(f"gunicorn.conf.py has no default for {name}")
    return int(match.group(1))


# ---------------------------------------------------------------------------- report


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def describe(name: str, tally: Tally, wall: float) -> None:
    p50, p99 = percentile(tally.ttfb_ms, 50), percentile(tally.ttfb_ms, 99)
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(tally.errors.items())) or "none"
    print(
        f"{name:<7} streams completed {tally.completed:6d} in {wall:5.1f} s | errors"
        f" {tally.error_count} ({errors}) | TTFB p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
    )


def describe_kind(kind: str, direct: Tally, proxy: Tally) -> None:
    what = "TTFB" if kind == "stream" else "latency"
    figures = []
    for name, tally in (("direct", direct), ("proxy", proxy)):
        if tally.completed or tally.error_count:
            p50, p99 = percentile(tally.ttfb_ms, 50), percentile(tally.ttfb_ms, 99)
            figures.append(
                f"{name} {tally.completed} done, {tally.error_count} errors,"
                f" p50 {p50:.0f} ms p99 {p99:.0f} ms"
            )
    print(f"  {kind:<12} {what}: " + " | ".join(figures))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200, help="concurrent streaming clients")
    parser.add_argument("--seconds", type=float, default=60.0, help="per run (direct, proxy)")
    parser.add_argument("--workers", type=int, help="default: what gunicorn.conf.py ships")
    parser.add_argument("--threads", type=int, help="default: what gunicorn.conf.py ships")
    parser.add_argument("--quick", action="store_true", help="20 streams x 10 s")
    parser.add_argument("--mixed", action="store_true", help="20 clients carry 150k sessions")
    parser.add_argument(
        "--arrivals",
        choices=("spread", "together"),
        default="spread",
        help="spread: clients start evenly over one stream's length, as independent users do;"
        " together: all at once, so every round is a burst of N simultaneous requests",
    )
    args = parser.parse_args()
    if args.quick:
        args.streams, args.seconds = 20, 10.0
    workers = args.workers if args.workers is not None else shipped("WEB_CONCURRENCY")
    threads = args.threads if args.threads is not None else shipped("GUNICORN_THREADS")
    sessions = []
    if args.mixed:
        from tests.sessions import agent_session

        sessions = [agent_session(SESSION_TOKENS, seed=i) for i in range(SESSION_CLIENTS)]
    # The fake keeps only its latest requests: 150k-token bodies would grow it by gigabytes.
    fake, base = start_fake(event_delay=EVENT_DELAY, hold_seconds=FIRST_EVENT_SECONDS)
    try:
        env = upstream_env(base)
        for name in ("UPSTREAM_POOL_SIZE",):  # the server's own knobs, passed through
            if name in os.environ:
                env[name] = os.environ[name]
        with Gunicorn(env, workers=workers, threads=threads) as server:
            print(
                f"load: {args.streams} concurrent streams x {args.seconds:g} s per run;"
                f" gunicorn gthread workers={workers} threads={threads}"
                f" UPSTREAM_POOL_SIZE={env.get('UPSTREAM_POOL_SIZE', 'default')};"
                f" fake: first event after {FIRST_EVENT_SECONDS * 1000:.0f} ms (hold fault),"
                f" then {1 / EVENT_DELAY:.0f} events/s; {os.cpu_count()} CPUs;"
                f" arrivals {args.arrivals}"
            )
            direct_url = base + "/api/anthropic/v1/messages"
            proxy_url = server.url + "/v1/messages"
            # Warm-up: one stream each, so imports and pools are not in the figures.
            run_clients(direct_url, 2, 0.1)
            run_clients(proxy_url, 2, 0.1)
            directs, direct_wall = run_clients(
                direct_url, args.streams, args.seconds, sessions, args.arrivals == "spread"
            )
            with RssSampler(server) as rss:
                cpu_before = server.cpu_seconds()
                proxies, proxy_wall = run_clients(
                    proxy_url, args.streams, args.seconds, sessions, args.arrivals == "spread"
                )
                cpu = server.cpu_seconds() - cpu_before
            direct, proxy = directs["small"], proxies["small"]
            describe("direct", direct, direct_wall)
            describe("proxy", proxy, proxy_wall)
            if sessions:
                print(f"{len(sessions)} clients on ~{SESSION_TOKENS // 1000}k-token sessions:")
                for kind in ("count_tokens", "message", "stream"):
                    describe_kind(kind, directs[kind], proxies[kind])
            added50 = percentile(proxy.ttfb_ms, 50) - percentile(direct.ttfb_ms, 50)
            added99 = percentile(proxy.ttfb_ms, 99) - percentile(direct.ttfb_ms, 99)
            done = sum(tally.completed for tally in proxies.values())
            per_stream = cpu / done if done else float("nan")
            rss_mb = rss.peak_kb / 1024
            print(f"added TTFB p50 {added50:+.1f} ms  p99 {added99:+.1f} ms")
            print(
                f"proxy CPU {cpu:.2f} s total, {per_stream * 1000:.1f} ms per request"
                " (gunicorn master + workers)"
            )
            print(f"peak RSS {rss_mb:.1f} MB over {rss.processes} gunicorn processes")
            proxy_errors = sum(tally.error_count for tally in proxies.values())
            errors = proxy_errors + sum(tally.error_count for tally in directs.values())
            print(f"target 0 errors: {verdict(proxy_errors == 0)} ({errors} in all)")
            print(
                f"target added TTFB p99 <= {TARGET_ADDED_P99_MS:.0f} ms:"
                f" {verdict(added99 <= TARGET_ADDED_P99_MS)}"
            )
            print(f"target RSS <= {TARGET_RSS_MB:.0f} MB: {verdict(rss_mb <= TARGET_RSS_MB)}")
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
