"""A client leaving mid-stream makes the proxy (real gunicorn) close its upstream stream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import events_paced
from tests.integration.servers import Gunicorn
from tests.integration.streams import chat, iter_sse_data, text_of

# Long and paced, so the upstream is still writing well after the client has gone: gunicorn only
# notices a departed client on its next write, and the fake only on one of its own.
LONG_REPLY = "This reply keeps streaming long after the client has stopped listening. " * 8
EVENT_DELAY = 0.02
HOLD_SECONDS = 10.0
ABORT_WAIT_SECONDS = 10.0


@pytest.fixture
def paced(fake: FakeUpstream) -> Iterator[FakeUpstream]:
    """The shared fake with a pause between stream events, restored afterwards."""
    with events_paced(fake, EVENT_DELAY) as slowed:
        yield slowed


@pytest.mark.parametrize(
    ("model", "after"),
    [
        ("glm-4.6", 4),  # Anthropic upstream: held right after the first text_delta
        ("glm-4.6-openai", 2),  # OpenAI upstream: held right after the first content chunk
    ],
)
def test_client_leaving_mid_stream_closes_the_upstream_stream(
    server: Gunicorn, paced: FakeUpstream, model: str, after: int
) -> None:
    fake = paced
    fake.script(LONG_REPLY)
    fake.fail_next("hold", after=after, seconds=HOLD_SECONDS)
    log_start = len(server.log_text())
    with chat(server.url, stream=True, model=model) as response:
        assert response.status_code == 200, response.text
        first = next(text_of(c) for c in iter_sse_data(response) if c != "[DONE]" and text_of(c))
        assert LONG_REPLY.startswith(first)
        assert fake.held == 1  # the upstream stream is open, parked mid-way
        response.close()  # the client goes away without reading further
    fake.release()  # the upstream goes on writing; the proxy's next write to the client fails

    assert fake.wait_aborted(timeout=ABORT_WAIT_SECONDS), (
        "the proxy did not close its upstream stream after its client left"
    )
    assert fake.aborted == [fake.last] and fake.last.fault == "hold"
    assert "Traceback" not in server.log_text()[log_start:]


def test_proxy_serves_normally_after_a_client_left(server: Gunicorn, paced: FakeUpstream) -> None:
    fake = paced
    fake.script(LONG_REPLY)
    fake.fail_next("hold", after=4, seconds=HOLD_SECONDS)
    with chat(server.url, stream=True) as response:
        next(c for c in iter_sse_data(response) if c != "[DONE]" and text_of(c))
    fake.release()
    assert fake.wait_aborted(timeout=ABORT_WAIT_SECONDS)

    fake.script("Still serving.", "Still streaming.")
    plain = chat(server.url, stream=False)
    assert plain.status_code == 200
    assert plain.json()["choices"][0]["message"]["content"] == "Still serving."
    with chat(server.url, stream=True) as response:
        chunks = list(iter_sse_data(response))
    assert chunks[-1] == "[DONE]"
    assert "".join(text_of(c) for c in chunks[:-1]) == "Still streaming."
    assert [r.aborted for r in fake.requests] == [True, False, False]
