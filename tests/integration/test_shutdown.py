"""Graceful shutdown and reload under real gunicorn (the shipped gunicorn.conf.py).

SIGTERM: streams under way finish, whole, and the master exits; new connections are refused at
once, not left hanging in the listen queue until the streams are done. HUP: the old workers
finish their streams while new workers serve. No stream ends in the middle of an event.

The streams are made to be under way by the fake, not by timing: it holds each one after its
first content event until the test has sent its signal and looked around, then paces the rest.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from tests.fake_upstream import FakeUpstream
from tests.integration.conftest import events_paced, proxy_env
from tests.integration.servers import Gunicorn

# 43 text deltas of the fake's 8 characters; paced 0.1 s apart, a stream lasts about 5 s.
REPLY = "Streaming on while the server is told to stop, one small piece at a time, until done. " * 4
EVENT_DELAY = 0.1
HELD_AFTER = 4  # upstream events before the hold: the first text delta has gone out
HOLD_SECONDS = 30.0  # a backstop: every test releases its holds itself
GRACEFUL = 20  # GUNICORN_GRACEFUL_TIMEOUT of these servers: far above a stream's 5 s
THREADS = 24  # per worker: connections need not split evenly, all 20 may go to one worker
WAIT = 20.0  # generous bound for anything the test waits for

ANTHROPIC_HEADERS = {"x-api-key": "sk-client", "anthropic-version": "2023-06-01"}
OPENAI_HEADERS = {"Authorization": "Bearer sk-client"}


def text_deltas(fake: FakeUpstream) -> int:
    """How many text deltas the fake streams for REPLY."""
    return len(range(0, len(REPLY), fake.chunk_chars))


@dataclass
class Stream:
    """One streaming client in a thread: its raw body bytes, as they came."""

    url: str
    api: str  # "anthropic" (/v1/messages) or "openai" (/v1/chat/completions)
    status: int | None = None
    raw: bytes = b""
    error: BaseException | None = None
    ended_at: float = 0.0
    started: threading.Event = field(default_factory=threading.Event)  # first text arrived
    done: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Stream:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        if self.api == "anthropic":
            path, headers = "/v1/messages", ANTHROPIC_HEADERS
            body: dict[str, Any] = {"model": "glm-4.6", "max_tokens": 256}
        else:
            path, headers = "/v1/chat/completions", OPENAI_HEADERS
            body = {"model": "glm-4.6"}
        body |= {"stream": True, "messages": [{"role": "user", "content": "go on"}]}
        first_text = REPLY[:8].encode()
        try:
            with requests.post(
                self.url + path, json=body, headers=headers, stream=True, timeout=(5, WAIT)
            ) as response:
                self.status = response.status_code
                for chunk in response.iter_content(chunk_size=None):
                    self.raw += chunk
                    if first_text in self.raw:
                        self.started.set()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
        finally:
            self.ended_at = time.monotonic()
            self.started.set()  # never leave the test waiting on a stream that failed early
            self.done.set()

    def wait(self) -> Stream:
        assert self.done.wait(WAIT), f"{self.api} stream still open after {WAIT} s"
        return self


def start_streams(url: str, count: int) -> list[Stream]:
    """`count` streams, half per client API, each started and under way (first text read)."""
    streams = [Stream(url, "anthropic" if i % 2 else "openai").start() for i in range(count)]
    for stream in streams:
        assert stream.started.wait(WAIT), "a stream did not start"
        assert stream.error is None and not stream.done.is_set(), stream.error
    return streams


def sse_events(raw: bytes) -> list[tuple[str | None, Any]]:
    """Every event of an SSE body as (event name, parsed data); asserts each is whole.

    The body must end on an event boundary: a blank line after the last event, nothing after
    it. Comments (": keepalive") are allowed; every data line must be JSON or [DONE].
    """
    assert raw.endswith(b"\n\n"), f"the body ends mid-event: ...{raw[-120:]!r}"
    events = []
    for frame in raw[:-2].split(b"\n\n"):
        name, data = None, None
        for line in frame.decode().split("\n"):
            if line.startswith(":"):
                continue
            field_name, sep, value = line.partition(": ")
            assert sep and field_name in ("event", "data"), f"not an SSE line: {line!r}"
            if field_name == "event":
                name = value
            else:
                data = value if value == "[DONE]" else json.loads(value)
        if data is not None:
            events.append((name, data))
    return events


def assert_complete(stream: Stream, deltas: int) -> None:
    """A 200 stream with its full, well-formed event sequence and all of the fake's text."""
    assert stream.error is None, f"{stream.api} stream failed: {stream.error!r}"
    assert stream.status == 200
    events = sse_events(stream.raw)
    if stream.api == "anthropic":
        assert events[0][1]["type"] == "message_start"
        assert events[-1] == ("message_stop", {"type": "message_stop"})
        assert all(name == data["type"] for name, data in events)
        pieces = [
            data["delta"]["text"]
            for _, data in events
            if data["type"] == "content_block_delta" and data["delta"]["type"] == "text_delta"
        ]
    else:
        assert events[-1] == (None, "[DONE]")
        chunks = [data for _, data in events[:-1]]
        assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
        assert any(choice.get("finish_reason") for c in chunks for choice in c["choices"])
        pieces = [
            choice["delta"]["content"]
            for chunk in chunks
            for choice in chunk["choices"]
            if choice["delta"].get("content")
        ]
    assert "".join(pieces) == REPLY
    assert len(pieces) == deltas, "content events lost or merged"


@pytest.fixture
def held(fake: FakeUpstream) -> Iterator[FakeUpstream]:
    """The shared fake, pacing its stream events; its holds are released at the end."""
    with events_paced(fake, EVENT_DELAY) as paced:
        yield paced


@contextmanager
def releasing(fake: FakeUpstream) -> Iterator[None]:
    """Release the fake's holds on the way out, before the server stops: a failing test's
    server then still stops gracefully, its streams done."""
    try:
        yield
    finally:
        fake.release()


def hold_streams(fake: FakeUpstream, count: int) -> None:
    fake.script(*[REPLY] * count)
    fake.fail_next("hold", count=count, after=HELD_AFTER, seconds=HOLD_SECONDS)


def wait_held(fake: FakeUpstream, count: int) -> None:
    deadline = time.monotonic() + WAIT
    while fake.held < count:
        assert time.monotonic() < deadline, f"{fake.held} of {count} streams reached the fake"
        time.sleep(0.02)


def server_env(fake: FakeUpstream, graceful: int = GRACEFUL) -> dict[str, str]:
    """proxy_env, with this file's graceful_timeout and an upstream read timeout (conftest's is
    2 s) that outlasts the fake's holds."""
    return proxy_env(
        fake, GUNICORN_GRACEFUL_TIMEOUT=str(graceful), REQUEST_TIMEOUT=str(int(HOLD_SECONDS))
    )


def try_new_connection(url: str) -> str:
    """What a new client sees: "refused", "reset" (closed before any byte) or "served"
    (a whole response). A half response or no answer within 3 s fails the test."""
    host, port = url.removeprefix("http://").split(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=3)
    except ConnectionRefusedError:
        return "refused"
    with sock:
        received = b""
        try:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: proxy\r\nConnection: close\r\n\r\n")
            while chunk := sock.recv(65536):
                received += chunk
        except (ConnectionResetError, BrokenPipeError):
            pass
        except TimeoutError:
            pytest.fail(f"a new connection hung after {received[:80]!r}")
    if not received:
        return "reset"
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), f"half or failed response: {received[:200]!r}"
    assert json.loads(body)["status"] == "ok", f"half response: {received[-200:]!r}"
    return "served"


def wait_refused(url: str) -> list[str]:
    """Try new connections until one is refused, each ending cleanly; what each one saw."""
    seen: list[str] = []
    deadline = time.monotonic() + WAIT / 2
    while not seen or seen[-1] != "refused":
        assert time.monotonic() < deadline, f"new connections still not refused: {seen}"
        seen.append(try_new_connection(url))
        time.sleep(0.02)
    return seen


def test_sigterm_lets_twenty_streams_under_way_finish_whole(held: FakeUpstream) -> None:
    fake = held
    hold_streams(fake, 20)
    with Gunicorn(server_env(fake), threads=THREADS) as server, releasing(fake):
        streams = start_streams(server.url, 20)
        wait_held(fake, 20)  # all 20 are mid-stream, parked after their first text delta

        server.signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        wait_refused(server.url)  # the master and every worker have acted on the signal
        assert fake.held == 20 and not any(stream.done.is_set() for stream in streams)
        released_at = time.monotonic()
        assert fake.release() == 1  # the 20 go on: the rest of each, paced (over 4 s)

        code = server.wait(timeout=GRACEFUL + 10)
        exited_after = time.monotonic() - stopped_at
        for stream in streams:
            assert_complete(stream.wait(), text_deltas(fake))
        log = server.log_text()

    assert code == 0
    assert exited_after < GRACEFUL, "the master waited out graceful_timeout"
    assert all(stream.ended_at > released_at for stream in streams)  # all ran on after SIGTERM
    assert all(not r.aborted for r in fake.requests) and len(fake.requests) == 20
    assert "Traceback" not in log and "SIGKILL" not in log, log[-3000:]
    assert "Shutting down: Master" in log


def test_after_sigterm_new_connections_are_refused_while_streams_drain(
    held: FakeUpstream,
) -> None:
    """gunicorn's master closes its listening socket on SIGTERM, but each gthread worker keeps
    its inherited copy open until its own streams have finished: without gunicorn.conf.py's
    post_worker_init the kernel went on completing handshakes nobody accepted, and a new client
    hung until the drain ended, then was reset. Now it is refused at once."""
    fake = held
    hold_streams(fake, 2)
    with Gunicorn(server_env(fake), threads=THREADS) as server, releasing(fake):
        streams = start_streams(server.url, 2)
        wait_held(fake, 2)

        server.signal(signal.SIGTERM)
        seen = wait_refused(server.url)  # any try before: served whole, or reset without a byte
        assert set(seen) <= {"served", "reset", "refused"}
        # Refused while the server is still up and its streams are still held mid-way.
        assert server.running() and fake.held == 2
        assert not any(stream.done.is_set() for stream in streams)
        assert [try_new_connection(server.url) for _ in range(3)] == ["refused"] * 3

        fake.release()
        for stream in streams:
            assert_complete(stream.wait(), text_deltas(fake))
        assert server.wait(timeout=GRACEFUL + 10) == 0


def test_hup_reload_old_workers_finish_their_streams_while_new_workers_serve(
    held: FakeUpstream,
) -> None:
    fake = held
    hold_streams(fake, 6)
    with Gunicorn(server_env(fake), threads=THREADS) as server, releasing(fake):
        streams = start_streams(server.url, 6)
        wait_held(fake, 6)
        old_workers = set(server.pids()[1:])
        assert len(old_workers) == 2

        server.signal(signal.SIGHUP)
        reloaded_at = time.monotonic()
        # /health reports its worker's uptime: a new worker's began after the HUP.
        deadline = reloaded_at + WAIT
        while True:
            assert time.monotonic() < deadline, "no new worker answered after the HUP"
            health = requests.get(server.url + "/health", timeout=WAIT)
            assert health.status_code == 200
            if health.json()["uptime_seconds"] < time.monotonic() - reloaded_at:
                break
            time.sleep(0.1)
        fake.script("Served by a new worker.")
        ask = {
            "model": "glm-4.6",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": "hi"}],
        }
        answer = requests.post(
            server.url + "/v1/messages", json=ask, headers=ANTHROPIC_HEADERS, timeout=WAIT
        )
        assert answer.status_code == 200
        assert answer.json()["content"][0]["text"] == "Served by a new worker."
        # Meanwhile the old streams are still held mid-way, by old workers still there (an old
        # worker that had none of them may be gone already).
        assert fake.held == 6 and not any(stream.done.is_set() for stream in streams)
        assert old_workers & set(server.pids()[1:])

        fake.release()
        for stream in streams:
            assert_complete(stream.wait(), text_deltas(fake))
        deadline = time.monotonic() + GRACEFUL
        while old_workers & set(server.pids()[1:]):
            assert time.monotonic() < deadline, "the old workers did not exit"
            time.sleep(0.1)
        assert len(server.pids()[1:]) == 2 and server.running()
        assert requests.get(server.url + "/health", timeout=WAIT).status_code == 200
        log = server.log_text()
    assert "Traceback" not in log and "SIGKILL" not in log, log[-3000:]
    assert all(not r.aborted for r in fake.requests)


def test_a_stream_outliving_graceful_timeout_is_cut_between_events(held: FakeUpstream) -> None:
    """graceful_timeout is a hard bound: the master exits by then, and a longer stream is cut.
    Paced, not held, so the kill lands wherever the stream is: still between two events."""
    fake = held
    fake.script(REPLY * 3)  # about 13 s of events
    graceful = 2
    with Gunicorn(server_env(fake, graceful), threads=THREADS) as server:
        (stream,) = start_streams(server.url, 1)
        server.signal(signal.SIGTERM)
        stopped_at = time.monotonic()
        try:
            code = server.wait(timeout=graceful + 10)
        except subprocess.TimeoutExpired:
            pytest.fail("the master outlived graceful_timeout")
        exited_after = time.monotonic() - stopped_at
        stream.wait()

    assert code == 0 and exited_after < graceful + 5
    assert stream.error is not None, "the stream was not cut"  # no terminating chunk came
    events = sse_events(stream.raw)  # what did arrive ends with a whole event
    assert events and all(data != "[DONE]" for _, data in events)
    assert len(events) < text_deltas(fake) * 3
