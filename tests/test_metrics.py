"""GET /metrics in one process: token-cache and request counters, labels, switches, format."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CONTENT_TYPE_LATEST, values

from app import create_app
from config import Settings
from metrics import MULTIPROC_ENV, Metrics
from tests.prometheus_text import Samples, parse_samples, total, value

REPO_ROOT = Path(__file__).resolve().parents[1]

LOOKUPS = "anthropic_proxy_token_cache_lookups_total"
REQUESTS = "anthropic_proxy_requests_total"
DURATION_COUNT = "anthropic_proxy_request_duration_seconds_count"
COUNT_TOKENS = "/v1/messages/count_tokens"
KEY = {"x-api-key": "sk-client"}
LONG = "A sentence long enough for the token counter to cache it by its hash. "
BODY = {
    "model": "glm-4.6",
    "system": LONG * 2,
    "messages": [
        {"role": "user", "content": LONG + "first question"},
        {"role": "assistant", "content": LONG + "first answer"},
        {"role": "user", "content": LONG + "second question"},
    ],
}


def scrape(client: FlaskClient) -> Samples:
    reply = client.get("/metrics")
    assert reply.status_code == 200
    return parse_samples(reply.get_data(as_text=True))


def test_repeated_count_tokens_moves_from_misses_to_hits(client: FlaskClient, app: Flask) -> None:
    first = client.post(COUNT_TOKENS, json=BODY, headers=KEY)
    assert first.status_code == 200
    after_first = scrape(client)
    misses = value(after_first, LOOKUPS, result="miss")
    hits = value(after_first, LOOKUPS, result="hit")
    assert misses > hits, "a new conversation is mostly misses"

    second = client.post(COUNT_TOKENS, json=BODY, headers=KEY)
    assert second.get_json() == first.get_json()
    after_second = scrape(client)
    assert value(after_second, LOOKUPS, result="miss") == misses, "nothing new to encode"
    assert value(after_second, LOOKUPS, result="hit") == hits + hits + misses
    stats = app.extensions["anthropic_proxy"].counter.stats()
    assert (stats["hits"], stats["misses"]) == (hits + hits + misses, misses), "same as /health"


def test_requests_are_counted_by_route_and_status(client: FlaskClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/models/glm-4.6").status_code == 200
    assert client.post(COUNT_TOKENS, json=BODY).status_code == 401
    assert client.post(COUNT_TOKENS, data="{not json", headers=KEY).status_code == 400
    assert client.get("/no/such/path").status_code == 404
    assert client.get("/another-unknown-one").status_code == 404
    assert client.get("/v1/messages").status_code == 405
    samples = scrape(client)
    assert value(samples, REQUESTS, endpoint="/health", status="200") == 1
    assert value(samples, REQUESTS, endpoint="/v1/models", status="200") == 1
    assert value(samples, REQUESTS, endpoint="/v1/models/<path:model_id>", status="200") == 1
    assert value(samples, REQUESTS, endpoint=COUNT_TOKENS, status="401") == 1
    assert value(samples, REQUESTS, endpoint=COUNT_TOKENS, status="400") == 1
    assert value(samples, REQUESTS, endpoint="other", status="404") == 2
    assert value(samples, REQUESTS, endpoint="other", status="405") == 1
    assert total(samples, REQUESTS) == 8, "raw paths never become labels; scrapes not counted"
    assert value(samples, DURATION_COUNT, endpoint=COUNT_TOKENS) == 2
    assert total(samples, DURATION_COUNT) == 8


def test_scrapes_are_not_counted(client: FlaskClient) -> None:
    scrape(client)
    samples = scrape(client)
    assert total(samples, REQUESTS, endpoint="/metrics") == 0
    assert total(samples, REQUESTS) == 0


def test_exposition_format_and_help(client: FlaskClient) -> None:
    client.get("/health")
    reply = client.get("/metrics")
    assert reply.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = reply.get_data(as_text=True)
    samples = parse_samples(text)
    for result in ("hit", "miss"):
        assert (LOOKUPS, frozenset({("result", result)})) in samples, "series exist from the start"
        assert value(samples, LOOKUPS, result=result) == 0
    assert "# TYPE anthropic_proxy_request_duration_seconds histogram" in text
    assert "headers for streams" in text


def test_metrics_need_no_key_even_with_proxy_keys(settings_env: dict[str, str]) -> None:
    settings_env.update({"PROXY_API_KEYS": "proxy-key", "SERVER_API_KEY": "server-key"})
    client = create_app(Settings.from_env(settings_env)).test_client()
    assert client.get("/v1/models").status_code == 401
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert b"proxy-key" not in reply.data and b"server-key" not in reply.data
    samples = parse_samples(reply.get_data(as_text=True))
    assert value(samples, REQUESTS, endpoint="/v1/models", status="401") == 1


def test_disabled_metrics_are_a_404_and_count_nothing(settings_env: dict[str, str]) -> None:
    settings_env["ENABLE_METRICS"] = "false"
    app = create_app(Settings.from_env(settings_env))
    client = app.test_client()
    assert client.post(COUNT_TOKENS, json=BODY, headers=KEY).status_code == 200
    reply = client.get("/metrics")
    assert reply.status_code == 404 and reply.get_json()["error"]["type"] == "not_found_error"
    assert app.extensions["anthropic_proxy"].metrics is None
    assert app.extensions["anthropic_proxy"].counter.stats()["misses"] > 0, "/health still counts"


def test_each_app_has_its_own_registry(settings: Settings) -> None:
    busy, quiet = create_app(settings).test_client(), create_app(settings).test_client()
    busy.get("/health")
    assert value(scrape(busy), REQUESTS, endpoint="/health", status="200") == 1
    assert value(scrape(quiet), REQUESTS, endpoint="/health", status="200") == 0


def test_a_dir_set_after_import_keeps_metrics_in_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    # As when PROMETHEUS_MULTIPROC_DIR comes from .env, read after prometheus_client chose.
    monkeypatch.setenv(MULTIPROC_ENV, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="metrics"):
        metrics = Metrics()
    assert metrics.shared_dir is None and MULTIPROC_ENV in caplog.text
    metrics.record_token_cache(3, 1)
    assert value(parse_samples(metrics.render().decode()), LOOKUPS, result="hit") == 3


def test_a_failing_recorder_never_fails_the_request(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    # e.g. the multiprocess directory vanished: the request is answered, the failure logged.
    def broken(endpoint: str, status: int, seconds: float) -> None:
        raise FileNotFoundError(f"no metrics file for {endpoint} {status} {seconds}")

    metrics = app.extensions["anthropic_proxy"].metrics
    assert metrics is not None
    metrics.record_request = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="api.metrics"):
        reply = client.post(COUNT_TOKENS, json=BODY, headers=KEY)
        assert reply.status_code == 200 and reply.get_json()["input_tokens"] > 0
        assert client.get("/no/such/path").status_code == 404
    assert caplog.text.count("request metrics failed") == 2


def test_the_tests_ignore_a_multiproc_dir_left_in_the_environment(tmp_path: Path) -> None:
    # A shell that ran gunicorn by hand may still export it. prometheus_client would then write
    # every test's figures to files there and sum them over all apps (or fail to create an app
    # if the directory is gone); the tests keep their metrics in process, one registry per app.
    assert not getattr(values.ValueClass, "_multiprocess", False)
    tests = [f"{__file__}::{name}" for name in ("test_each_app_has_its_own_registry",)]
    for directory in (tmp_path, tmp_path / "gone"):
        env = {**os.environ, MULTIPROC_ENV: str(directory)}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout[-3000:]
    assert list(tmp_path.iterdir()) == [], "nothing written to the directory"


def run_app_in_multiprocess_mode(directory: Path) -> subprocess.CompletedProcess[str]:
    """create_app and a request, in a process started with PROMETHEUS_MULTIPROC_DIR set."""
    code = (
        "from app import create_app\n"
        "from config import Settings\n"
        "client = create_app(Settings.from_env({})).test_client()\n"
        "print(client.get('/health').status_code, client.get('/metrics').status_code)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env={**os.environ, MULTIPROC_ENV: str(directory)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_missing_multiproc_dir_is_made_outside_gunicorn(tmp_path: Path) -> None:
    # `flask run` reads .env before importing the app, so the dir .env names for gunicorn is
    # used there too, and nothing else creates it.
    directory = tmp_path / "not" / "there"
    run = run_app_in_multiprocess_mode(directory)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["200", "200"]
    assert list(directory.glob("counter_*.db"))


def test_an_unusable_multiproc_dir_is_named(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    run = run_app_in_multiprocess_mode(tmp_path / "file" / "metrics")
    assert run.returncode != 0
    assert f"ConfigError: {MULTIPROC_ENV}=" in run.stderr, run.stderr[-3000:]
