"""Context-window management end to end (DESIGN.md §4, §9).

The app runs under gunicorn (gthread) with AI condensation off, in front of the strict fake z.ai,
which counts what it receives with GLM-4.6's own tokenizer and refuses what does not fit its
window. The official anthropic and openai SDKs are the clients. Shown here:

- an agent session far over GLM-4.6's 200k window is truncated to fit and answered, through both
  client APIs, stream and not: the fake's GLM count of what it received fits the window;
- an image turn on the vision route (glm-4.6v, 65,536 tokens; VISION_ROUTING=vision, which sends
  it there whatever its size) is fitted the same way;
- an upstream overflow answer is retried once, smaller, and the client still gets its answer;
- an upstream that stalls after its final event does not keep the client's stream open;
- a SAFE request is forwarded whole, and the proxy's estimate agrees with GLM's count.

Each case prints the fake's count beside the proxy's estimate: run with -s to read the figures.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic
import openai
import pytest
import requests

from tests.fake.constants import ANTHROPIC_PREFIX
from tests.fake.glm import GLM_NAME, count_input_tokens
from tests.fake.plans import RecordedRequest
from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import proxy_env
from tests.integration.servers import Gunicorn
from tests.sessions import agent_session, image_block, openai_body
from upstream.sse import iter_sse

Json = dict[str, Any]

TEXT_WINDOW = 200_000  # glm-4.6: input + max_tokens
VISION_WINDOW = 65_536  # glm-4.6v
APIS = ["anthropic", "openai"]
REPLY = "Fitted and answered."
# The final image of the vision turn: a size no image of the session's history has.
FINAL_IMAGE = image_block(336, 224)
# An upstream stall the client must not wait for, and how soon the client's stream must end.
STALL_SECONDS = 10.0
PROMPT_SECONDS = 2.0
# The proxy's read timeout: longer than any stall here, so a stall is never mistaken for it.
READ_TIMEOUT = "15"
SHORT_ASK = {
    "model": "glm-4.6",
    "max_tokens": 256,
    "messages": [{"role": "user", "content": "Answer in one short line."}],
}


# ---------------------------------------------------------------------------- a stalling relay


class StallingRelay:
    """A TCP relay in front of the fake: transparent, except that once armed it passes the next
    answer up to and including its `message_stop` event and then withholds the rest (the end of
    the chunked body) until released, like an upstream that stalls after its final event. None
    of the fake's faults does that: `hold` always holds *before* the final event."""

    MARK = b"event: message_stop"
    FRAME_END = b"\n\n\r\n"  # an SSE frame's blank line, then the CRLF closing its HTTP chunk

    def __init__(self, target_port: int) -> None:
        self._target = ("127.0.0.1", target_port)
        self._listener = _listen()
        self.port = int(self._listener.getsockname()[1])
        self._armed = threading.Event()
        self.stalled = threading.Event()  # an answer is being withheld after its message_stop
        self.released = threading.Event()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._accepter = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> StallingRelay:
        self._accepter.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self.released.set()
        self._accepter.join(timeout=5)
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            _shutdown(sock)

    def stall_after_message_stop(self) -> None:
        """Withhold what follows the next answer's message_stop until `release()`."""
        self.released.clear()
        self.stalled.clear()
        self._armed.set()

    def release(self) -> None:
        self._armed.clear()
        self.released.set()

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = _connect(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink, answers in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pump, args=(source, sink, answers), daemon=True
                ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, answers: bool) -> None:
        """Copy `source` to `sink` until either side closes; each socket is closed by the one
        thread that reads it, after a shutdown of both wakes the other thread."""
        carry = b""  # the armed answer's tail already passed on, in case the mark spans reads
        try:
            while data := source.recv(65536):
                if answers and self._armed.is_set():
                    window = carry + data
                    cut = self._cut(window)
                    if cut is None:
                        carry = window[-64:]
                    else:  # the frame ends in this read, never in the tail already passed on
                        self._armed.clear()
                        head, carry = cut - len(carry), b""
                        sink.sendall(data[:head])
                        self.stalled.set()
                        self.released.wait(STALL_SECONDS)
                        data = data[head:]
                if data:
                    sink.sendall(data)
        except OSError:
            pass  # either side went away: so does the other
        finally:
            _shutdown(source)
            _shutdown(sink)
            with self._lock:
                self._sockets.discard(source)
            source.close()

    def _cut(self, window: bytes) -> int | None:
        at = window.find(self.MARK)
        end = window.find(self.FRAME_END, at) if at >= 0 else -1
        return end + len(self.FRAME_END) if end >= 0 else None


def _listen() -> socket.socket:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)  # so the accept loop notices the relay closing
    return listener


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=5)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def relay(fake: FakeUpstream) -> Iterator[StallingRelay]:
    with StallingRelay(fake.port) as running:
        yield running


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, relay: StallingRelay) -> Iterator[Gunicorn]:
    """The proxy with condensation off and images routed to the vision model; its
    Anthropic-format upstream is the fake via the relay."""
    env = proxy_env(
        fake,
        UPSTREAM_BASE=f"http://127.0.0.1:{relay.port}{ANTHROPIC_PREFIX}",
        ENABLE_AI_CONDENSATION="false",
        ENABLE_CONTEXT_PERFORMANCE_LOGGING="true",
        REQUEST_TIMEOUT=READ_TIMEOUT,
        # The vision route's own fitting (auto would describe the images for the text model).
        VISION_ROUTING="vision",
    )
    with Gunicorn(env, workers=2, threads=4) as running:
        yield running


@dataclass(frozen=True)
class Clients:
    anthropic: anthropic.Anthropic
    openai: openai.OpenAI


@pytest.fixture(scope="module")
def clients(proxy: Gunicorn) -> Iterator[Clients]:
    with (
        anthropic.Anthropic(
            base_url=proxy.url, api_key="sk-test", max_retries=0, timeout=30
        ) as messages,
        openai.OpenAI(
            base_url=proxy.url + "/v1", api_key="sk-test", max_retries=0, timeout=30
        ) as chat,
    ):
        yield Clients(messages, chat)


@pytest.fixture(autouse=True)
def _proxy_log(proxy: Gunicorn, relay: StallingRelay) -> Iterator[None]:
    """Print the proxy's log lines of each test (shown with -s, and for a failing test)."""
    start = len(proxy.log_text())
    yield
    relay.release()
    print(proxy.log_text()[start:].rstrip())  # noqa: T201 - the figures are the point


@dataclass(frozen=True)
class Session:
    """An agent session's Anthropic body, and the fake's count of it in each client format."""

    body: Json
    tokens: dict[str, tuple[int, str]]  # api -> (GLM input tokens, tokenizer)

    def for_api(self, api: str) -> Json:
        return self.body if api == "anthropic" else openai_body(self.body)


def measured(body: Json) -> Session:
    tokens = {
        "anthropic": count_input_tokens("anthropic", body),
        "openai": count_input_tokens("openai", openai_body(body)),
    }
    return Session(body, tokens)


@pytest.fixture(scope="module")
def long_session() -> Session:
    """~260k GLM tokens: over glm-4.6's whole window in both formats."""
    session = measured(agent_session(200_000, seed=1))
    for api, (tokens, tokenizer) in session.tokens.items():
        figure(f"long session as {api}", f"{tokens} tokens ({tokenizer}) unmanaged")
        assert tokens > TEXT_WINDOW
    return session


@pytest.fixture(scope="module")
def vision_session() -> Session:
    """~100k tokens of agent session, some images in its history, and an image in its last turn."""
    body = agent_session(80_000, seed=2, images=True)
    body["messages"][-1]["content"].append(FINAL_IMAGE)
    session = measured(body)
    for api, (tokens, tokenizer) in session.tokens.items():
        figure(f"vision session as {api}", f"{tokens} tokens ({tokenizer}) unmanaged")
        assert tokens > VISION_WINDOW
    return session


@pytest.fixture(scope="module")
def mid_session() -> Session:
    """~150k GLM tokens: fits glm-4.6's input budget by the proxy's estimate."""
    session = measured(agent_session(120_000, seed=3))
    for api, (tokens, tokenizer) in session.tokens.items():
        figure(f"mid session as {api}", f"{tokens} tokens ({tokenizer}) unmanaged")
        assert 130_000 < tokens < TEXT_WINDOW - 20_000
    return session


@pytest.fixture(scope="module")
def safe_session() -> Session:
    """~8k tokens: SAFE."""
    return measured(agent_session(6_000, seed=4))


# ---------------------------------------------------------------------------- asking


@dataclass
class Answer:
    """What a client got: the reply text, context_info and the response headers."""

    text: str
    info: Json
    headers: Mapping[str, str]


def ask(
    clients: Clients, api: str, stream: bool, session: Session, usage_chunk: bool = True
) -> Answer:
    """Send the session through one client API; context_info as that client reads it.

    `usage_chunk`: a chat-completions stream asks for the trailing usage chunk (include_usage).
    """
    body = session.for_api(api)
    if api == "anthropic":
        return _ask_messages(clients.anthropic, body, stream)
    return _ask_chat(clients.openai, body, stream, usage_chunk)


def _ask_messages(client: anthropic.Anthropic, body: Json, stream: bool) -> Answer:
    if not stream:
        raw = client.messages.with_raw_response.create(**body)
        message = raw.parse()
        text = "".join(b.text for b in message.content if b.type == "text")
        return Answer(text, (message.model_extra or {})["context_info"], raw.headers)
    with client.messages.stream(**body) as events:
        seen = list(events)
        headers = events.response.headers
        text = events.get_final_text()
    assert seen[-1].type == "message_stop"
    deltas = [e for e in seen if e.type == "message_delta"]
    assert len(deltas) == 1, [e.type for e in seen]
    # The SDK keeps fields it does not know on the event model.
    return Answer(text, (deltas[0].model_extra or {})["context_info"], headers)


def _ask_chat(client: openai.OpenAI, body: Json, stream: bool, usage_chunk: bool) -> Answer:
    if not stream:
        raw = client.chat.completions.with_raw_response.create(**body)
        completion = raw.parse()
        text = completion.choices[0].message.content or ""
        return Answer(text, (completion.model_extra or {})["context_info"], raw.headers)
    chunks = client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": usage_chunk}
    )
    with chunks:
        seen = list(chunks)
    text = "".join(c.choices[0].delta.content or "" for c in seen if c.choices)
    last = seen[-1]
    if usage_chunk:
        assert last.usage is not None and not last.choices
    else:
        assert last.choices[0].finish_reason == "stop"
    extras = [c for c in seen if "context_info" in (c.model_extra or {})]
    assert extras == [last], "context_info rides on the last chunk only"
    return Answer(text, (last.model_extra or {})["context_info"], chunks.response.headers)


def only_request(fake: FakeUpstream) -> RecordedRequest:
    requests_seen = fake.requests
    assert len(requests_seen) == 1, [(r.status, r.fault) for r in requests_seen]
    return requests_seen[0]


def check_headers(answer: Answer) -> None:
    info, headers = answer.info, answer.headers
    assert headers["x-context-risk-level"] == info["risk_level"]
    assert int(headers["x-context-tokens"]) == info["estimated_input_tokens"]
    assert float(headers["x-context-utilization"]) == pytest.approx(info["utilization"], abs=1e-4)


def figure(case: str, text: str) -> None:
    print(f"[context-window] {case}: {text}")  # noqa: T201 - the figures are the point


def show(case: str, sent: RecordedRequest, info: Json, estimate: int | None = None) -> None:
    """Print what the fake counted (GLM) against what the proxy estimated for the same request
    (by default the request context_info describes: the one forwarded last)."""
    estimate = info["estimated_input_tokens"] if estimate is None else estimate
    off = (estimate - sent.input_tokens) / sent.input_tokens
    figure(
        case,
        f"fake received {sent.input_tokens} ({sent.tokenizer}) + max_tokens "
        f"{sent.body.get('max_tokens')}, window {info['context_limit']}; proxy estimate "
        f"{estimate} ({off:+.2%}), original {info['original_input_tokens']}, budget "
        f"{info['input_budget']}, risk {info['risk_level']}, removed {info['messages_removed']}, "
        f"retry {info['overflow_retry']}",
    )
    if sent.tokenizer != GLM_NAME:
        figure(case, f"NOTE: counted with {sent.tokenizer}, not GLM-4.6's tokenizer")


def assert_truncated_to_fit(sent: Any, answer: Any, endpoint: str, model: str, window: int) -> None:
    """The fake accepted a request that fits `window` by its own count; the client was told."""
    assert (sent.endpoint, sent.body["model"], sent.status) == (endpoint, model, 200)
    assert sent.input_tokens + sent.body["max_tokens"] <= window
    assert answer.text == REPLY
    info = answer.info
    assert info["risk_level"] == "OVERFLOW" and info["truncated"] is True
    assert info["messages_removed"] > 0 and info["overflow_retry"] is False
    assert info["estimated_input_tokens"] <= info["input_budget"]
    assert (info["context_limit"], info["endpoint"], info["model"]) == (window, endpoint, model)
    check_headers(answer)


def answered(
    label: str, clients: Clients, fake: FakeUpstream, api: str, stream: bool, session: Session
) -> tuple[Any, Any]:
    """Send `session` through one client API; its answer and the one request the fake got."""
    fake.script(REPLY)
    answer = ask(clients, api, stream, session)
    sent = only_request(fake)
    show(f"{label}, {api} {'stream' if stream else 'create'}", sent, answer.info)
    return answer, sent


# ---------------------------------------------------------------------------- 1. text overflow


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_session_over_the_window_is_truncated_to_fit_and_answered(
    clients: Clients, fake: FakeUpstream, long_session: Session, api: str, stream: bool
) -> None:
    answer, sent = answered("long session", clients, fake, api, stream, long_session)

    assert_truncated_to_fit(sent, answer, "anthropic", "glm-4.6", TEXT_WINDOW)
    assert answer.info["original_input_tokens"] > answer.info["input_budget"]


# ---------------------------------------------------------------------------- 2. vision overflow


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_image_turn_over_the_vision_window_is_truncated_to_fit_and_answered(
    clients: Clients, fake: FakeUpstream, vision_session: Session, api: str, stream: bool
) -> None:
    answer, sent = answered("vision session", clients, fake, api, stream, vision_session)

    assert_truncated_to_fit(sent, answer, "openai", "glm-4.6v", VISION_WINDOW)
    last_user = next(m for m in reversed(sent.body["messages"]) if m["role"] == "user")
    source = FINAL_IMAGE["source"]
    url = f"data:{source['media_type']};base64,{source['data']}"
    assert any(p.get("image_url", {}).get("url") == url for p in last_user["content"])


# ---------------------------------------------------------------------------- 3. overflow retry


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("api", APIS)
def test_upstream_overflow_answer_is_retried_once_smaller(
    clients: Clients, fake: FakeUpstream, mid_session: Session, api: str, stream: bool
) -> None:
    fake.fail_next("overflow")
    fake.script(REPLY)
    # Chat-completions streams here end without the usage chunk: context_info on the finish chunk.
    answer = ask(clients, api, stream, mid_session, usage_chunk=False)
    requests_seen = fake.requests
    assert len(requests_seen) == 2, [(r.status, r.fault) for r in requests_seen]
    first, second = requests_seen
    case = f"overflow answer, {api} {'stream' if stream else 'create'}"
    # The first request was the client's conversation as is: its estimate is the original's.
    show(f"{case}: 1st", first, answer.info, estimate=answer.info["original_input_tokens"])
    show(f"{case}: 2nd", second, answer.info)

    assert (first.status, first.fault) == (400, "overflow")
    assert (second.status, second.fault) == (200, None)
    assert second.input_tokens < first.input_tokens
    assert len(second.body["messages"]) < len(first.body["messages"])
    assert answer.text == REPLY
    info = answer.info
    assert info["overflow_retry"] is True and info["truncated"] is True
    assert info["original_input_tokens"] <= info["input_budget"], "it fit by the estimate"
    assert info["estimated_input_tokens"] < info["original_input_tokens"]
    check_headers(answer)


# ---------------------------------------------------------------------------- 4. stalls


def read_messages_stream(url: str, body: Json) -> tuple[list[str], float, float]:
    """Event names of a raw /v1/messages stream; seconds to message_stop and to the body's end."""
    names: list[str] = []
    started = time.monotonic()
    at_stop = float("inf")
    headers = {"x-api-key": "sk-test"}
    with requests.post(
        url + "/v1/messages", json=body | {"stream": True}, headers=headers, stream=True, timeout=30
    ) as reply:
        assert reply.status_code == 200, reply.text
        for event in iter_sse(reply.iter_content(chunk_size=None)):
            names.append(event.event or "")
            if event.event == "message_stop":
                at_stop = time.monotonic() - started
    return names, at_stop, time.monotonic() - started


@pytest.mark.parametrize("client", ["raw-sse", "anthropic-sdk", "openai-sdk"])
def test_upstream_stalling_after_its_final_event_does_not_hold_the_client(
    proxy: Gunicorn, clients: Clients, fake: FakeUpstream, relay: StallingRelay, client: str
) -> None:
    fake.script(REPLY)
    relay.stall_after_message_stop()
    started = time.monotonic()
    if client == "raw-sse":
        names, at_stop, _ = read_messages_stream(proxy.url, SHORT_ASK)
        assert names[-1] == "message_stop" and at_stop < PROMPT_SECONDS
    elif client == "anthropic-sdk":
        with clients.anthropic.messages.stream(**SHORT_ASK) as events:
            names = [event.type for event in events]
        assert names[-1] == "message_stop"
    else:
        chunks = clients.openai.chat.completions.create(**SHORT_ASK, stream=True)
        with chunks:
            finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert finishes[-1] == "stop"
    ended = time.monotonic() - started  # the client's whole response has been read
    figure(f"upstream stalled after message_stop, {client}", f"client done in {ended:.2f} s")

    assert relay.stalled.is_set(), "the relay never saw message_stop"
    assert not relay.released.is_set(), "the stall was over before the client finished"
    assert ended < PROMPT_SECONDS
    assert fake.last.status == 200 and fake.last.endpoint == "anthropic"
    assert "Traceback" not in proxy.log_text()


def test_openai_upstream_stalling_before_done_does_not_hold_the_client(
    proxy: Gunicorn, fake: FakeUpstream
) -> None:
    """The fake's `hold` parks a stream before its final frame: on the OpenAI format that is
    `[DONE]`, after the finish chunk and the usage chunk, so the answer is complete by then."""
    fake.script(REPLY)
    fake.fail_next("hold", after=1000, seconds=STALL_SECONDS)  # clamped: just before [DONE]
    releaser = threading.Timer(PROMPT_SECONDS + 1, fake.release)  # bound this test's time
    releaser.start()
    try:
        names, at_stop, _ = read_messages_stream(proxy.url, SHORT_ASK | {"model": "glm-4.6-openai"})
    finally:
        releaser.cancel()
        fake.release()
    figure("openai upstream held before [DONE]", f"message_stop after {at_stop:.2f} s")
    assert fake.last.endpoint == "openai" and fake.last.fault == "hold"
    assert names[-1] == "message_stop"
    assert at_stop < PROMPT_SECONDS


# ---------------------------------------------------------------------------- 5. SAFE


@pytest.mark.parametrize("api", APIS)
def test_safe_request_is_forwarded_whole_and_estimated_like_glm_counts(
    clients: Clients, fake: FakeUpstream, safe_session: Session, api: str
) -> None:
    fake.script(REPLY)
    answer = ask(clients, api, False, safe_session)
    sent = only_request(fake)
    show(f"safe session, {api} create", sent, answer.info)

    assert sent.status == 200 and answer.text == REPLY
    info = answer.info
    assert info["risk_level"] == "SAFE" and info["truncated"] is False
    assert info["messages_removed"] == 0 and info["overflow_retry"] is False
    assert info["estimated_input_tokens"] == info["original_input_tokens"]
    assert info["estimated_input_tokens"] == pytest.approx(sent.input_tokens, rel=0.03)
    check_headers(answer)
