"""Logs under gunicorn: LOG_FORMAT=json lines that parse, the request id on every line of a
request (its summary and description calls included, and gunicorn's access line), no key and no
message text anywhere, and the migration guide's grep working on the output, in both formats."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.integration.condensing import condensing_env, session
from tests.integration.servers import Gunicorn
from tests.sessions import image_block, old_image_session

CLIENT_KEY = "client-secret-key-0002"
SERVER_KEY = "sk-server-secret-0001"
GREP = 'docker compose logs anthropic-proxy | grep -E "(CONTEXT|CONDENSATION|TOKEN)"'
IMAGE_TEXT = "Here is the dialog from the billing screen."
Json = dict[str, Any]


def logging_env(fake: FakeUpstream, log_format: str) -> dict[str, str]:
    return condensing_env(
        fake,
        LOG_FORMAT=log_format,
        GUNICORN_ACCESS_LOG="-",
        ENABLE_TOKEN_COUNTING_LOGGING="true",
        SERVER_API_KEY=SERVER_KEY,
        PROXY_API_KEYS=CLIENT_KEY,
    )


def post(server: Gunicorn, body: Json, request_id: str, **headers: str) -> requests.Response:
    headers = {"X-Request-Id": request_id, "anthropic-version": "2023-06-01", **headers}
    return requests.post(server.url + "/v1/messages", json=body, headers=headers, timeout=120)


@pytest.fixture(scope="module")
def json_log(fake: FakeUpstream) -> Iterator[tuple[str, Json]]:
    """The whole output of a server that answered a condensed session (x-api-key), an old image
    (Authorization: Bearer) and a bad request; and the condensed session's body."""
    body = session(0.85, seed=77)
    with Gunicorn(logging_env(fake, "json"), workers=2, threads=4) as server:
        condensed = post(server, body, "req-condensed-1", **{"x-api-key": CLIENT_KEY})
        assert condensed.status_code == 200, condensed.text
        assert condensed.json()["context_info"]["condensation_applied"] is True
        assert condensed.headers["X-Request-Id"] == "req-condensed-1"
        image = post(server, old_image_session(image_block(300, 200), IMAGE_TEXT), "req-image-1",
                     Authorization=f"Bearer {CLIENT_KEY}")  # fmt: skip
        assert image.status_code == 200 and image.json()["context_info"]["images_described"] == 1
        bad = post(server, {"model": "glm-4.6", "messages": []}, "req-bad-1",
                   **{"x-api-key": CLIENT_KEY})  # fmt: skip
        assert bad.status_code == 400
        text = settled_log(server, "req-bad-1")
    yield text, body


def settled_log(server: Gunicorn, last_request: str) -> str:
    """The server's output once the access line of its last request is written."""
    deadline = time.monotonic() + 10
    while last_request not in (text := server.log_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return text


def lines_of(text: str) -> list[Json]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_line_is_one_json_object_with_the_fields(json_log: tuple[str, Json]) -> None:
    lines = lines_of(json_log[0])  # raises on any line that is not JSON
    assert len(lines) > 10
    for line in lines:
        assert {"time", "level", "logger", "request_id", "event", "message"} <= set(line)


def test_the_request_id_is_on_every_line_of_its_request(json_log: tuple[str, Json]) -> None:
    lines = lines_of(json_log[0])

    def events(request_id: str) -> set[str]:
        return {line["event"] for line in lines if line["request_id"] == request_id}

    assert {"CONTEXT", "CONDENSATION", "TOKEN", "ACCESS"} <= events("req-condensed-1")
    summary_calls = [line for line in lines if "summary_call" in line["message"]]
    assert summary_calls and {line["request_id"] for line in summary_calls} == {"req-condensed-1"}
    described = [line for line in lines if line["message"].startswith("IMAGE described")]
    assert [line["request_id"] for line in described] == ["req-image-1"]
    assert "ACCESS" in events("req-bad-1")
    access = [line for line in lines if line["event"] == "ACCESS"]
    assert {a["fields"]["path"] for a in access} >= {"/v1/messages"}
    assert all(a["request_id"] != "-" for a in access)


def test_no_key_and_no_message_text_is_ever_written(json_log: tuple[str, Json]) -> None:
    text, body = json_log
    for secret in (CLIENT_KEY, SERVER_KEY):
        assert secret not in text
    assert IMAGE_TEXT not in text
    task = body["messages"][0]["content"]
    assert isinstance(task, str) and task[:40] not in text


def test_the_guides_grep_shows_the_prefixed_lines(
    json_log: tuple[str, Json], tmp_path: Path
) -> None:
    log = tmp_path / "proxy.log"
    log.write_text(json_log[0])
    grepped = grep(log)
    for prefix in ("CONTEXT", "CONDENSATION", "TOKEN"):
        assert any(f'"event": "{prefix}"' in line for line in grepped), prefix


def grep(log: Path) -> list[str]:
    """The guide's command, reading the log file where `docker compose logs` would print."""
    command = GREP.replace("docker compose logs anthropic-proxy", f"cat {log}")
    found = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30)
    assert found.returncode == 0, found.stderr
    return found.stdout.splitlines()


def test_text_lines_carry_the_request_id_and_stay_greppable(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    with Gunicorn(logging_env(fake, "text"), workers=1, threads=2) as server:
        ask = {"model": "glm-4.6", "max_tokens": 64,
               "messages": [{"role": "user", "content": "hello there"}]}  # fmt: skip
        assert post(server, ask, "req-text-1", **{"x-api-key": CLIENT_KEY}).status_code == 200
        text = settled_log(server, "[req-text-1] ACCESS")
    log = tmp_path / "proxy.log"
    log.write_text(text)
    grepped = grep(log)
    assert any(" [req-text-1] CONTEXT " in line for line in grepped)
    assert any(" [req-text-1] TOKEN " in line for line in grepped)
    assert " [req-text-1] ACCESS method=POST path=/v1/messages status=200" in log.read_text()
    assert CLIENT_KEY not in log.read_text()
