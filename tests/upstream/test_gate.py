"""The upstream concurrency gate: the limit across threads and workers, the queue timeout, leases
that free a dead worker's slot and are renewed for a long call, slots freed however a call ends."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from condensation.store import DiskStore, MemoryStore, Store
from config import Settings
from errors import ErrorKind
from tests.condensation.test_store import run_threads
from tests.fake_upstream import FakeUpstream
from upstream import canonical as c
from upstream.client import UpstreamClient, build_upstream
from upstream.gate import Gate, OpenGate, QueueTimeout
from upstream.routing import choose_route

REPO_ROOT = Path(__file__).resolve().parents[2]


class Flight:
    """Counts calls inside the gate at once, and the peak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = self.peak = self.done = 0

    def call(self, gate: Gate, key: str = "k", seconds: float = 0.03) -> None:
        with gate.enter(key):
            with self._lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
            time.sleep(seconds)
            with self._lock:
                self.now -= 1
                self.done += 1


@pytest.fixture
def disk(tmp_path: Path) -> Callable[[], Store]:
    """A new DiskStore on one directory per call: what another worker of the host opens."""
    return lambda: DiskStore(str(tmp_path / "store"))


@pytest.mark.parametrize("workers", [1, 2])
def test_calls_in_flight_never_exceed_the_limit(workers: int, disk: Callable[[], Store]) -> None:
    gates = [Gate(disk(), 2, queue_timeout=10) for _ in range(workers)]
    flight = Flight()
    run_threads(8, lambda i: flight.call(gates[i % workers]))
    assert flight.done == 8  # every queued call got its turn
    assert flight.peak == 2


def test_a_full_gate_answers_429_after_the_queue_timeout() -> None:
    gate = Gate(MemoryStore(), 1, queue_timeout=0.2)
    with gate.enter("k"):
        started = time.monotonic()
        with pytest.raises(QueueTimeout) as caught:
            gate.enter("k")
        waited = time.monotonic() - started
    error = caught.value
    assert (error.status, error.kind) == (429, ErrorKind.RATE_LIMIT)
    assert error.retry_after is not None and int(error.retry_after) >= 1
    assert "UPSTREAM_MAX_CONCURRENCY=1" in error.message
    assert "UPSTREAM_QUEUE_TIMEOUT" in error.message
    assert waited >= 0.19
    gate.enter("k").release()  # free again once the holder left


def test_a_shorter_wait_is_honoured_and_try_enter_does_not_wait() -> None:
    gate = Gate(MemoryStore(), 1, queue_timeout=30)
    with gate.enter("k"):
        started = time.monotonic()
        assert gate.try_enter("k") is None
        with pytest.raises(QueueTimeout):
            gate.enter("k", wait=0.1)  # a summary call's CONDENSATION_TIMEOUT, say
        assert time.monotonic() - started < 5
    slot = gate.try_enter("k")
    assert slot is not None and slot.held


def test_each_upstream_key_has_its_own_slots() -> None:
    gate = Gate(MemoryStore(), 1, queue_timeout=0.1)
    with gate.enter("alice"):
        with gate.enter("bob") as bob:
            assert bob.held
        with pytest.raises(QueueTimeout):
            gate.enter("alice")


def test_releasing_twice_frees_one_slot() -> None:
    gate = Gate(MemoryStore(), 1, queue_timeout=0.1)
    slot = gate.enter("k")
    slot.release()
    slot.release()
    assert not slot.held
    with gate.enter("k"):
        assert gate.try_enter("k") is None  # the double release did not make room for two


def test_the_worker_forgets_a_key_nobody_waits_for() -> None:
    gate = Gate(MemoryStore(), 2, queue_timeout=0.1)
    for index in range(50):
        gate.enter(f"key-{index}").release()
    assert gate._locals == {}  # noqa: SLF001 - memory bounded by the keys in use


def test_stats_count_this_workers_holders_and_waiters() -> None:
    gate = Gate(MemoryStore(), 1, queue_timeout=2)
    with gate.enter("k"):
        waiter = threading.Thread(target=lambda: gate.enter("k").release())
        waiter.start()
        time.sleep(0.1)
        busy = gate.stats()
    waiter.join(5)
    assert busy == {
        "limit": 1,
        "queue_timeout": 2,
        "held_by_this_worker": 1,
        "waiting_in_this_worker": 1,
    }
    assert gate.stats()["held_by_this_worker"] == gate.stats()["waiting_in_this_worker"] == 0
    assert OpenGate().stats() == {"limit": None}


def test_the_observer_sees_waits_and_timeouts() -> None:
    seen: list[tuple[float, str]] = []
    gate = Gate(MemoryStore(), 1, queue_timeout=0.1, observe=lambda s, o: seen.append((s, o)))
    with gate.enter("k"), pytest.raises(QueueTimeout):
        gate.enter("k")
    assert [outcome for _, outcome in seen] == ["entered", "timeout"]
    assert seen[1][0] >= 0.09


def test_a_long_call_keeps_its_slot_by_renewal(disk: Callable[[], Store]) -> None:
    holder = Gate(disk(), 1, queue_timeout=1, lease=0.3)
    other = Gate(disk(), 1, queue_timeout=1, lease=0.3)  # another worker of the host
    with holder.enter("k"):
        time.sleep(1.0)  # more than three leases: only renewal keeps the slot
        assert other.try_enter("k") is None
    slot = other.try_enter("k")
    assert slot is not None
    slot.release()


DYING_WORKER = """
import os, sys
from condensation.store import DiskStore
from upstream.gate import Gate
gate = Gate(DiskStore(sys.argv[1]), 1, queue_timeout=1, lease=0.5)
gate.enter("k")
print("entered", flush=True)
os._exit(0)  # dies holding the slot: no release, no renewal
"""


def test_the_slot_of_a_worker_that_died_frees_itself(tmp_path: Path) -> None:
    directory = str(tmp_path / "store")
    run = subprocess.run(
        [sys.executable, "-c", DYING_WORKER, directory],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.strip() == "entered", run.stderr
    gate = Gate(DiskStore(directory), 1, queue_timeout=5)
    started = time.monotonic()
    with gate.enter("k"):
        waited = time.monotonic() - started
    assert waited < 3  # the dead worker's lease ran out (0.5 s after it was last renewed)


def test_without_a_limit_every_call_enters() -> None:
    gate = OpenGate()
    slots = [gate.enter("k") for _ in range(100)]
    assert all(slot.held for slot in slots)
    assert gate.try_enter("k") is not None


# ---------------------------------------------------------------------------- through the client


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def gated_client(fake: FakeUpstream, limit: int = 1) -> tuple[UpstreamClient, Settings]:
    settings = Settings.from_env(
        {
            "UPSTREAM_BASE": fake.anthropic_base,
            "OPENAI_UPSTREAM_BASE": fake.openai_base,
            "UPSTREAM_MAX_CONCURRENCY": str(limit),
            "UPSTREAM_QUEUE_TIMEOUT": "1",
            "UPSTREAM_MAX_RETRIES": "0",
        }
    )
    return build_upstream(settings, MemoryStore()), settings


REQUEST: c.Request = {
    "model": "glm-4.6",
    "max_tokens": 50,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
}


def free(client: UpstreamClient) -> bool:
    """Whether the client's (only) gate slot is free now; it is left free."""
    slot = client.gate.try_enter("key")
    if slot is not None:
        slot.release()
    return slot is not None


def test_a_stream_frees_its_slot_however_it_ends(fake: FakeUpstream) -> None:
    client, settings = gated_client(fake)
    route = choose_route(REQUEST, settings)
    # Read to its end.
    events = list(client.open_stream(route, REQUEST, "key", 10))
    assert events[-1]["type"] == "message_stop"
    assert free(client)
    # Closed before its first event (a client that left before anything was sent).
    stream = client.open_stream(route, REQUEST, "key", 10)
    assert not free(client)
    stream.close()
    assert free(client)
    # Refused by the upstream before it began.
    fake.fail_next("http_error", status=400, message="bad")
    with pytest.raises(Exception, match="bad"):
        client.open_stream(route, REQUEST, "key", 10)
    assert free(client)


def test_a_complete_call_holds_its_slot_only_while_it_runs(fake: FakeUpstream) -> None:
    client, settings = gated_client(fake)
    route = choose_route(REQUEST, settings)
    stream = client.open_stream(route, REQUEST, "key", 10)  # holds the only slot
    with pytest.raises(QueueTimeout):
        client.complete(route, REQUEST, "key")
    assert len(fake.requests) == 1  # the queued call never reached the upstream
    stream.close()
    answer = client.complete(route, REQUEST, "key")
    assert answer["content"][0] == {"type": "text", "text": "echo: hi"}
    assert free(client)
