"""The proxy behind real nginx with deploy/nginx.conf: streams pass through unbuffered."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.integration.servers import Gunicorn, Nginx, find_nginx
from tests.integration.streams import chat, iter_sse_data, text_of

REPLY = "Streamed through nginx one delta at a time, while z.ai is still answering."
HOLD_SECONDS = 10.0  # the gate opens by itself only if the test never releases it


@pytest.fixture(scope="module")
def nginx(server: Gunicorn) -> Iterator[Nginx]:
    binary = find_nginx()
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx); cannot test deploy/nginx.conf")
    with Nginx(backend=f"127.0.0.1:{server.port}", binary=binary) as running:
        yield running


# Frames the fake sends before its gate: through the first text delta of each upstream format.
@pytest.mark.parametrize(
    ("model", "after"),
    [
        ("glm-4.6", 4),  # message_start, content_block_start, ping, first text_delta
        ("glm-4.6-openai", 2),  # role chunk, first content chunk
    ],
)
def test_first_delta_arrives_while_upstream_is_still_streaming(
    nginx: Nginx, fake: FakeUpstream, model: str, after: int
) -> None:
    fake.script(REPLY)
    fake.fail_next("hold", after=after, seconds=HOLD_SECONDS)
    with chat(nginx.url, stream=True, model=model) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/event-stream")
        assert response.headers["Cache-Control"] == "no-cache"
        assert response.headers["Server"].startswith("nginx")  # really went through nginx
        events = iter_sse_data(response)
        before = []
        for chunk in events:
            before.append(chunk)
            if chunk != "[DONE]" and text_of(chunk):
                break
        # The upstream is still parked mid-stream, so nothing on the way buffered this delta. (Had
        # nginx buffered, the proxy's read timeout would have broken the stream: see `errors`.)
        assert fake.held == 1, "the first delta arrived only after the upstream stream moved on"
        first = text_of(before[-1])
        assert "[DONE]" not in before and REPLY.startswith(first) and len(first) < len(REPLY)
        assert fake.release() == 1
        rest = list(events)
    chunks = [c for c in before + rest if c != "[DONE]"]
    assert rest[-1] == "[DONE]" and rest.count("[DONE]") == 1
    errors = [c for c in chunks if "error" in c]
    assert not errors, f"stream broke; was the first delta held back until a timeout? {errors}"
    assert "".join(text_of(c) for c in chunks) == REPLY
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert (fake.last.fault, fake.last.aborted, fake.held) == ("hold", False, 0)


def test_non_stream_and_health_through_nginx(nginx: Nginx, fake: FakeUpstream) -> None:
    fake.script("A whole reply at once.")
    with chat(nginx.url, stream=False) as response:
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["choices"][0]["message"]["content"] == "A whole reply at once."
    health = requests.get(nginx.url + "/health", timeout=5)
    assert health.status_code == 200 and health.headers["Server"].startswith("nginx")
    assert health.json()["status"] == "ok"


def test_client_errors_pass_through_nginx_as_json(nginx: Nginx) -> None:
    anonymous = requests.post(
        nginx.url + "/v1/chat/completions", json={"model": "glm-4.6", "messages": []}, timeout=5
    )
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["message"]


def test_metrics_are_not_served_to_the_internet(nginx: Nginx, server: Gunicorn) -> None:
    # /metrics asks for no key even with PROXY_API_KEYS set; the internet-facing nginx hides it.
    through_nginx = requests.get(nginx.url + "/metrics", timeout=10)
    assert through_nginx.status_code == 403 and "anthropic_proxy" not in through_nginx.text
    for disguised in ("/%6detrics", "/metrics?format=text", "//metrics"):
        assert requests.get(nginx.url + disguised, timeout=10).status_code == 403, disguised
    assert requests.get(server.url + "/metrics", timeout=10).status_code == 200, "app port scrapes"
    assert requests.get(nginx.url + "/health", timeout=10).status_code == 200


def test_one_request_id_follows_a_request_through_nginx(nginx: Nginx) -> None:
    kept = requests.get(nginx.url + "/health", headers={"X-Request-Id": "edge-7"}, timeout=5)
    assert kept.headers["X-Request-Id"] == "edge-7"
    made = requests.get(nginx.url + "/health", timeout=5).headers["X-Request-Id"]
    assert len(made) == 32 and int(made, 16) >= 0  # nginx's $request_id (or the proxy's own)
