"""/metrics under real gunicorn with two workers: every scrape adds up all workers' figures."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client.multiprocess import MultiProcessCollector

from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import proxy_env
from tests.integration.servers import Gunicorn
from tests.prometheus_text import Samples, parse_samples, total, value

REQUESTS = "anthropic_proxy_requests_total"
LOOKUPS = "anthropic_proxy_token_cache_lookups_total"
COUNT_TOKENS = "/v1/messages/count_tokens"
KEY = {"Authorization": "Bearer sk-test"}
LONG = "This sentence is long enough for the token counter to cache it by its hash. "
CHAT = {"model": "glm-4.6", "messages": [{"role": "user", "content": "Hi"}]}
STREAM = {
    "model": "glm-4.6",
    "max_tokens": 50,
    "stream": True,
    "messages": [{"role": "user", "content": "Hi"}],
}
ROUNDS = 20  # the kernel spreads connections unevenly; a few rounds reach both workers
# (endpoint label, status) -> how to send one such request, each on a fresh connection.
KINDS: dict[tuple[str, str], Callable[[str], requests.Response]] = {
    ("/v1/models", "200"): lambda url: requests.get(url + "/v1/models", timeout=10),
    (COUNT_TOKENS, "200"): lambda url: requests.post(
        url + COUNT_TOKENS, json=count_body(), headers=KEY, timeout=10
    ),
    (COUNT_TOKENS, "401"): lambda url: requests.post(url + COUNT_TOKENS, json={}, timeout=10),
    ("other", "404"): lambda url: requests.get(f"{url}/random/{uuid.uuid4()}", timeout=10),
    ("/v1/chat/completions", "200"): lambda url: requests.post(
        url + "/v1/chat/completions", json=CHAT, headers=KEY, timeout=10
    ),
    ("/v1/messages", "200"): lambda url: requests.post(
        url + "/v1/messages", json=STREAM, headers=KEY, timeout=10
    ),
}


def count_body(text: str | None = None) -> dict[str, object]:
    content = text or f"{LONG} {uuid.uuid4()}"
    return {"model": "glm-4.6", "messages": [{"role": "user", "content": content}]}


def scrape(url: str) -> Samples:
    reply = requests.get(url + "/metrics", timeout=10)  # a fresh connection: any worker
    assert reply.status_code == 200
    return parse_samples(reply.text)


def send_round(url: str) -> Counter[tuple[str, str]]:
    """One request of every kind, eight at a time, each on its own connection."""
    jobs = [kind for kind in KINDS for _ in range(4)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        replies = list(pool.map(lambda kind: (kind, KINDS[kind](url)), jobs))
    for (_, status), reply in replies:
        reply.close()
        assert str(reply.status_code) == status, reply.text[:300]
    return Counter(kind for kind, _ in replies)


def per_worker_requests(metrics_dir: Path) -> dict[str, float]:
    """Requests (other than /health) each worker process wrote to its own counter file."""
    served = {}
    for path in metrics_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)])
        samples = [s for m in merged if m.name == "anthropic_proxy_requests" for s in m.samples]
        served[path.stem] = sum(
            s.value for s in samples if s.name == REQUESTS and s.labels["endpoint"] != "/health"
        )
    return served


def test_every_scrape_counts_the_requests_of_all_workers(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_99999.db"
    stale.write_bytes(b"left over from an earlier server")
    env = proxy_env(fake, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    with Gunicorn(env, workers=2, threads=4) as server:
        assert not stale.exists(), "on_starting drops an earlier server's files"
        sent: Counter[tuple[str, str]] = Counter()
        for _ in range(ROUNDS):
            sent += send_round(server.url)
            busy = [pid for pid, count in per_worker_requests(metrics_dir).items() if count]
            if len(busy) >= 2:
                break
        assert len(busy) == 2, f"both workers must serve some requests: {busy}"
        assert sum(per_worker_requests(metrics_dir).values()) == sum(sent.values())
        for _ in range(6):
            samples = scrape(server.url)
            for (endpoint, status), count in sent.items():
                got = value(samples, REQUESTS, endpoint=endpoint, status=status)
                assert got == count, (endpoint, status)
            not_health = total(samples, REQUESTS) - total(samples, REQUESTS, endpoint="/health")
            assert not_health == sum(sent.values()), "no other requests, /metrics not counted"
            assert value(samples, LOOKUPS, result="miss") >= sent[(COUNT_TOKENS, "200")]
        assert "Traceback" not in server.log_text()


def test_repeated_count_tokens_hits_the_cache_and_the_metrics_dir_is_temporary(
    fake: FakeUpstream,
) -> None:
    with Gunicorn(proxy_env(fake), workers=2, threads=4) as server:
        found = re.search(r"metrics dir (\S+) ", server.log_text())
        assert found, "gunicorn.conf.py logs the directory it made"
        metrics_dir = Path(found.group(1))
        assert metrics_dir.name.startswith("anthropic-proxy-metrics-")
        body = count_body()
        with requests.Session() as session:  # one kept-alive connection: one worker's cache
            counts = [
                session.post(server.url + COUNT_TOKENS, json=body, headers=KEY, timeout=10)
                for _ in range(2)
            ]
        assert [r.json() for r in counts] == [counts[0].json()] * 2
        samples = scrape(server.url)
        assert value(samples, LOOKUPS, result="hit") > 0
        assert value(samples, LOOKUPS, result="miss") > 0
        assert list(metrics_dir.glob("counter_*.db")), "workers write their values there"
    assert not metrics_dir.exists(), "the directory gunicorn.conf.py made is removed at exit"
