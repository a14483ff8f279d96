"""Latency the proxy adds over calling the (fake) upstream directly, measured in one run.

Starts tests/fake_upstream.py in its own process and the proxy under gunicorn (gthread, the
project's gunicorn.conf.py), then times the same conversation sent
  direct: the Anthropic-format body the proxy would send, POSTed to the fake's /v1/messages;
  proxy:  the OpenAI chat-completions body, POSTed to the proxy (converted both ways).
Each client keeps one persistent connection, as SDKs do. Concurrency 16 uses 16 processes so
the load generator's GIL does not add to either figure. Target: p50 added ≤ 2 ms, p99 ≤ 10 ms.

    .venv/bin/python benchmarks/bench_proxy.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.integration.servers import Gunicorn  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Summarise the plot of Hamlet in two sentences."},
    {"role": "assistant", "content": "A prince avenges his father. Almost everyone dies."},
    {"role": "user", "content": "Now do Macbeth, please, in the same style."},
]
OPENAI_BODY = {"model": "glm-4.6", "messages": MESSAGES, "max_tokens": 256}
ANTHROPIC_BODY = {
    "model": "glm-4.6",
    "system": [{"type": "text", "text": MESSAGES[0]["content"]}],
    "messages": [
        {"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
        for m in MESSAGES[1:]
    ],
    "max_tokens": 256,
}
KEY = "sk-bench"


class Target:
    """One endpoint to time: where to POST and what."""

    def __init__(self, url: str, body: dict, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "", parts.port or 80, parts.path
        self.body = body
        self.headers = {"Content-Type": "application/json", **headers}

    def payload(self, stream: bool) -> bytes:
        return json.dumps(self.body | ({"stream": True} if stream else {})).encode()


def time_requests(target: Target, count: int, stream: bool, barrier: object = None) -> list[float]:
    """Milliseconds per request (non-stream: whole response; stream: first body byte)."""
    conn = http.client.HTTPConnection(target.host, target.port)
    data = target.payload(stream)
    samples = []
    if barrier is not None:
        barrier.wait()  # type: ignore[attr-defined]
    for _ in range(count):
        start = time.perf_counter_ns()
        conn.request("POST", target.path, body=data, headers=target.headers)
        response = conn.getresponse()
        if stream:
            response.read1(1)
            samples.append((time.perf_counter_ns() - start) / 1e6)
            response.read()
        else:
            response.read()
            samples.append((time.perf_counter_ns() - start) / 1e6)
        if response.status != 200:
            raise RuntimeError(f"status {response.status} from {target.path}")
    conn.close()
    return samples


def _worker(args: tuple[Target, int, bool, object]) -> list[float]:
    return time_requests(*args)


def concurrent(target: Target, per_client: int, clients: int, stream: bool) -> list[float]:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Manager().Barrier(clients)
    with ctx.Pool(clients) as pool:
        results = pool.map(_worker, [(target, per_client, stream, barrier)] * clients)
    return [s for r in results for s in r]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(name: str, direct: list[float], proxied: list[float]) -> None:
    d50, d99 = percentile(direct, 50), percentile(direct, 99)
    p50, p99 = percentile(proxied, 50), percentile(proxied, 99)
    print(
        f"{name:<34} direct p50 {d50:7.2f} p99 {d99:7.2f} | proxy p50 {p50:7.2f} p99 {p99:7.2f}"
        f" | added p50 {p50 - d50:+6.2f} ms  p99 {p99 - d99:+6.2f} ms"
    )


def measure(
    name: str, run: Callable[[Target], list[float]], direct: Target, proxy: Target, server: Gunicorn
) -> None:
    # Interleave halves so drift on a shared machine hits both sides alike.
    a1 = run(direct)
    cpu_before = server.cpu_seconds()
    b1 = run(proxy)
    cpu = server.cpu_seconds() - cpu_before
    a2, b2 = run(direct), run(proxy)
    report(name, a1 + a2, b1 + b2)
    print(
        f"{'':<34} proxy CPU per request {cpu / len(b1) * 1000:.2f} ms (gunicorn master + workers)"
    )


def start_fake() -> tuple[subprocess.Popen[bytes], str]:
    command = [sys.executable, str(REPO_ROOT / "tests" / "fake_upstream.py"), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    base = process.stdout.readline().decode().strip()
    return process, base


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000, help="per scenario at concurrency 1")
    args = parser.parse_args()
    n = args.requests
    fake, base = start_fake()
    try:
        env = {
            "UPSTREAM_BASE": base + "/api/anthropic",
            "OPENAI_UPSTREAM_BASE": base + "/api/coding/paas/v4",
        }
        with Gunicorn(env, workers=2, threads=16) as proxy_server:
            direct = Target(base + "/api/anthropic/v1/messages", ANTHROPIC_BODY, {"x-api-key": KEY})
            proxy = Target(
                proxy_server.url + "/v1/chat/completions",
                OPENAI_BODY,
                {"Authorization": f"Bearer {KEY}"},
            )
            for target in (direct, proxy):  # warm-up: connections, imports, caches
                time_requests(target, 100, stream=False)
                time_requests(target, 50, stream=True)
            print(
                f"proxy overhead in ms: {n} requests per scenario at c=1,"
                f" {n // 4} per client x16 at c=16"
            )
            for name, run in (
                ("non-stream c=1", lambda t: time_requests(t, n // 2, False)),
                ("stream TTFB c=1", lambda t: time_requests(t, n // 2, True)),
                ("non-stream c=16", lambda t: concurrent(t, n // 8, 16, False)),
                ("stream TTFB c=16", lambda t: concurrent(t, n // 8, 16, True)),
            ):
                measure(name, run, direct, proxy, proxy_server)
            print("target: added p50 <= 2 ms, added p99 <= 10 ms")
            print(
                "at c=16 the 16 clients, the fake and the proxy share this machine's cores: added"
                " latency there is queueing behind proxy CPU, about 16 x CPU per request / cores"
            )
    finally:
        fake.terminate()
        fake.wait(timeout=10)


if __name__ == "__main__":
    main()
