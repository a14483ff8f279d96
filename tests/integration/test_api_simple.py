"""The migration guide's `python test_api_simple.py`, run against the proxy under gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fake_upstream import FakeUpstream
from tests.integration.servers import Gunicorn

SCRIPT = Path(__file__).resolve().parents[2] / "test_api_simple.py"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("ZAI_API_KEY", "PROXY_TEST_KEY")}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_check_passes_against_a_working_proxy(server: Gunicorn, fake: FakeUpstream) -> None:
    result = run("--url", server.url, "--key", "sk-simple-test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("[ok]") == 7
    assert "sk-simple-test" not in result.stdout  # the key is never printed
    answered = [r for r in fake.requests if r.endpoint == "anthropic" and r.status == 200]
    assert len(answered) == 4  # two chat completions and two Messages calls reached z.ai


def test_failures_are_reported_and_exit_non_zero(server: Gunicorn, fake: FakeUpstream) -> None:
    fake.fail_next("http_error", status=500)
    result = run("--url", server.url, "--key", "sk-simple-test")
    assert result.returncode == 1
    assert "[FAIL] POST /v1/chat/completions:" in result.stdout
    assert "1 check(s) FAILED" in result.stdout


def test_no_key_is_a_usage_error() -> None:
    result = run("--url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert "no key" in result.stderr
