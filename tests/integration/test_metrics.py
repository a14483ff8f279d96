"""/metrics under real gunicorn with two workers: every scrape adds up all workers' figures."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
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


def wait_for(what: str, check: Callable[[], object], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return "gone"


# gunicorn's line as logs.py writes it: "<time> [<pid>] INFO gunicorn.error [-] Starting gunicorn"
STARTING = r"\[(\d+)\] INFO gunicorn\.error \[-\] Starting gunicorn"


def test_an_upgrade_after_a_reload_keeps_the_new_master_serving(fake: FakeUpstream) -> None:
    # HUP (reload) makes gunicorn hand the reloaded environment to a USR2 (upgrade) master.
    # The new master must not take over the metrics dir the old one made: the old master
    # removes it when it exits, and every worker booted after that could not write its file.
    if not Path(sys.executable).with_name("gunicorn").is_file():
        pytest.skip("no gunicorn console script beside this Python (a USR2 re-exec needs one)")
    with Gunicorn(proxy_env(fake), workers=1, threads=2, script=True) as server:
        log = server.log_text
        old = int(re.findall(STARTING, log())[0])
        assert requests.get(server.url + "/v1/models", timeout=10).status_code == 200
        os.kill(old, signal.SIGHUP)
        wait_for("the reloaded worker", lambda: log().count("Booting worker") >= 2)
        os.kill(old, signal.SIGUSR2)
        wait_for("the new master", lambda: len(re.findall(r"Starting gunicorn", log())) >= 2)
        new = int(re.findall(STARTING, log())[1])
        try:
            wait_for("the new master's worker", lambda: len(children(new)) == 1)
            os.kill(old, signal.SIGTERM)  # the upgrade's last step: the old master leaves
            wait_for("the old master to exit", lambda: not alive(old))
            dirs = re.findall(r"metrics dir (\S+) ", log())
            assert len(dirs) == 2 and dirs[0] != dirs[1], "each master has a dir of its own"
            assert not Path(dirs[0]).exists() and Path(dirs[1]).is_dir()
            for _ in range(3):
                assert requests.get(server.url + "/health", timeout=10).status_code == 200
            assert value(scrape(server.url), REQUESTS, endpoint="/health", status="200") >= 3
            (worker,) = children(new)
            os.kill(worker, signal.SIGKILL)
            wait_for("a replacement worker", lambda: children(new) not in ([], [worker]))
            wait_for("the replacement to serve", lambda: _serves(server.url))
            assert alive(new), log()[-2000:]
            assert scrape(server.url) is not None
        finally:
            if alive(new):
                os.kill(new, signal.SIGTERM)
                wait_for("the new master to exit", lambda: not alive(new))
        assert not Path(dirs[1]).exists(), "the new master removes its own dir at exit"


def _serves(url: str) -> bool:
    try:
        return requests.get(url + "/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def test_a_metrics_dir_holding_other_files_stops_gunicorn_and_keeps_them(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    # A directory shared with other files by mistake: deleting every *.db there would destroy
    # them, and keeping them would break every scrape (prometheus_client reads all *.db).
    foreign = tmp_path / "app.db"
    foreign.write_bytes(b"SQLite format 3\x00")
    stale = tmp_path / "counter_99999.db"
    stale.write_bytes(b"left over from an earlier server")
    server = Gunicorn(proxy_env(fake, PROMETHEUS_MULTIPROC_DIR=str(tmp_path)), workers=1)
    try:
        with pytest.raises(RuntimeError, match=r"PROMETHEUS_MULTIPROC_DIR=.*app\.db"):
            server.__enter__()
    finally:
        server.__exit__(None, None, None)
    assert foreign.read_bytes() == b"SQLite format 3\x00" and stale.exists()


def test_streams_in_flight_and_retries_are_counted_across_workers(
    server: Gunicorn, fake: FakeUpstream
) -> None:
    gauge, retries = "anthropic_proxy_streams_in_flight", "anthropic_proxy_upstream_retries_total"
    before = scrape(server.url)
    fake.fail_next("hold", after=1, seconds=30)  # the stream stops after its first event
    ask = {"model": "glm-4.6", "max_tokens": 64, "stream": True,
           "messages": [{"role": "user", "content": "hold on"}]}  # fmt: skip
    headers = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
    with requests.post(
        server.url + "/v1/messages", json=ask, headers=headers, stream=True, timeout=30
    ) as reply:
        lines = reply.iter_lines()
        next(lines)  # the stream is under way
        assert value(scrape(server.url), gauge) == value(before, gauge) + 1
        fake.release()
        assert b"message_stop" in b"".join(lines)
    assert value(scrape(server.url), gauge) == value(before, gauge)

    fake.fail_next("rate_limit", retry_after=0)
    plain = ask | {"stream": False}
    assert requests.post(server.url + "/v1/messages", json=plain, headers=headers,
                         timeout=10).status_code == 200  # fmt: skip
    after = scrape(server.url)
    assert value(after, retries, reason="429") == value(before, retries, reason="429") + 1
