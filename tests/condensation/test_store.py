"""The shared store: every backend's values, adds, leases and single flight; stable keys;
falling back to memory when Redis dies or the disk is unusable; workers agreeing across
processes."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from condensation.store import (
    DiskStore,
    GuardedStore,
    MemoryStore,
    build_store,
    default_cache_dir,
    single_flight,
    stable_key,
)
from config import Settings, Strategy
from tests.integration.servers import NO_REDIS, REDIS_SERVER, RedisServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    if not REDIS_SERVER:
        pytest.skip(NO_REDIS)
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["memory", "disk", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[GuardedStore]:
    made: GuardedStore
    if request.param == "memory":
        made = MemoryStore()
    elif request.param == "disk":
        made = DiskStore(str(tmp_path / "store"))
    else:
        from condensation.redis_store import RedisStore

        made = RedisStore(request.getfixturevalue("redis_server").url)
    yield made
    made.close()


@pytest.fixture
def key() -> str:
    """A key no other test (nor the shared redis) has used."""
    return f"test:{uuid.uuid4().hex}"


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """`work(i)` on `count` threads released together; their results, in order."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(index: int) -> None:
        start.wait(5)
        try:
            results[index] = work(index)
        except BaseException as exc:  # re-raised below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    if errors:
        raise errors[0]
    return results


# ---------------------------------------------------------------------------- every backend


@pytest.mark.parametrize(
    "value", [{"b": [1, 2.5, None], "a": "x"}, ["é", True], "text ✓", 7, 0.25, False]
)
def test_values_round_trip(store: GuardedStore, key: str, value: Any) -> None:
    store.set(key, value, ttl=30)
    assert store.get(key) == value
    assert store.get(key + ":other") is None
    stats = store.stats()
    assert (stats["name"], stats["hits"], stats["misses"]) == (store.name, 1, 1)
    assert (stats["errors"], stats["degraded"]) == (0, False)


def test_values_come_back_as_json(store: GuardedStore, key: str) -> None:
    store.set(key, {"pair": (1, 2)}, ttl=30)
    assert store.get(key) == {"pair": [1, 2]}


def test_values_expire(store: GuardedStore, key: str) -> None:
    store.set(key, "short", ttl=0.2)
    assert store.add(key + ":added", "short too", ttl=0.2)
    assert store.get(key) == "short"
    time.sleep(0.3)
    assert store.get(key) is None  # the front cache honours the TTL too
    assert store.get(key + ":added") is None
    assert store.add(key, "again", ttl=30)


def test_set_replaces_and_delete_removes(store: GuardedStore, key: str) -> None:
    store.set(key, 1, ttl=30)
    store.set(key, 2, ttl=30)
    assert store.get(key) == 2
    store.delete(key)
    assert store.get(key) is None
    store.delete(key)  # deleting what is absent is fine


def test_add_first_writer_wins(store: GuardedStore, key: str) -> None:
    won = run_threads(8, lambda i: store.add(key, {"writer": i}, ttl=30))
    assert won.count(True) == 1
    assert store.get(key) == {"writer": won.index(True)}
    assert not store.add(key, "late", ttl=30)


def test_lock_excludes_other_threads(store: GuardedStore, key: str) -> None:
    inside: list[int] = []
    overlaps = []

    def work(_index: int) -> bool:
        with store.lock(key, ttl=10, wait=10) as held:
            overlaps.append(len(inside))
            inside.append(1)
            time.sleep(0.01)
            inside.pop()
        return held

    assert run_threads(6, work) == [True] * 6
    assert overlaps == [0] * 6


def test_lock_gives_up_after_wait_and_runs_the_body(store: GuardedStore, key: str) -> None:
    ran = []
    with store.lock(key, ttl=10, wait=0) as first:
        started = time.monotonic()
        with store.lock(key, ttl=10, wait=0.15) as second:
            ran.append(time.monotonic() - started)
    assert (first, second) == (True, False)
    assert 0.14 <= ran[0] < 1.0
    with store.lock(key, ttl=10, wait=0) as again:
        assert again  # released on exit


def test_lock_lease_expires_when_the_holder_never_releases(store: GuardedStore, key: str) -> None:
    stuck = store.lock(key, ttl=0.3, wait=0)
    assert stuck.__enter__()  # and never exits: a worker that died holding it
    started = time.monotonic()
    with store.lock(key, ttl=10, wait=3) as held:
        waited = time.monotonic() - started
        stuck.__exit__(None, None, None)  # the old holder wakes: it must not free our lease
        with store.lock(key, ttl=10, wait=0) as third:
            assert not third
    assert held
    assert 0.15 <= waited < 2.0


def test_a_lease_is_renewed_only_by_its_holder(store: GuardedStore, key: str) -> None:
    lease = store.lease(key, 0.3)
    assert lease is not None
    assert store.lease(key, 10) is None  # held
    time.sleep(0.2)
    assert store.renew(lease, 0.5)  # still held: 0.5 s more from now
    time.sleep(0.25)
    assert store.lease(key, 10) is None  # without the renewal it would have expired
    time.sleep(0.4)
    assert not store.renew(lease, 10)  # expired: renewing cannot take it back
    other = store.lease(key, 10)
    assert other is not None
    store.release(lease)  # the old holder's release leaves the new lease alone
    assert not store.renew(lease, 10)
    assert store.lease(key, 10) is None
    store.release(other)
    assert store.lease(key, 10) is not None


def test_single_flight_computes_once_for_concurrent_threads(store: GuardedStore, key: str) -> None:
    calls = []

    def compute() -> dict[str, Any]:
        calls.append(1)
        time.sleep(0.3)
        return {"summary": "once"}

    results = run_threads(8, lambda _i: single_flight(store, key, compute, ttl=30, wait=5))
    assert len(calls) == 1
    assert {json.dumps(value) for value, _ in results} == {'{"summary": "once"}'}
    assert sorted(cached for _, cached in results) == [False] + [True] * 7


def test_single_flight_returns_a_stored_value(store: GuardedStore, key: str) -> None:
    store.set(key, "stored", ttl=30)
    assert single_flight(store, key, lambda: pytest.fail("computed"), ttl=30, wait=1) == (
        "stored",
        True,
    )


def test_single_flight_failure_releases_the_lock(store: GuardedStore, key: str) -> None:
    def fail() -> str:
        raise RuntimeError("upstream down")

    with pytest.raises(RuntimeError, match="upstream down"):
        single_flight(store, key, fail, ttl=30, wait=1)
    with store.lock(key + ":lock", ttl=1, wait=0) as held:
        assert held
    started = time.monotonic()
    assert single_flight(store, key, lambda: "second try", ttl=30, wait=5) == ("second try", False)
    assert time.monotonic() - started < 0.5
    assert store.get(key) == "second try"


def test_single_flight_computes_anyway_after_waiting(store: GuardedStore, key: str) -> None:
    stuck = store.lock(key + ":lock", ttl=30, wait=0)
    assert stuck.__enter__()
    try:
        started = time.monotonic()
        assert single_flight(store, key, lambda: "mine", ttl=30, wait=0.2) == ("mine", False)
        assert 0.15 <= time.monotonic() - started < 1.5
    finally:
        stuck.__exit__(None, None, None)


def test_single_flight_keeps_the_first_stored_value(store: GuardedStore, key: str) -> None:
    def compute() -> str:
        store.set(key, "theirs", ttl=30)  # another worker, lock lost, stored first
        return "mine"

    assert single_flight(store, key, compute, ttl=30, wait=1) == ("theirs", True)


def test_single_flight_does_not_store_none(store: GuardedStore, key: str) -> None:
    assert single_flight(store, key, lambda: None, ttl=30, wait=1) == (None, False)
    assert store.get(key) is None


# ---------------------------------------------------------------------------- stable keys


def test_stable_key_ignores_dict_order_and_tells_inputs_apart() -> None:
    key = stable_key("summary", {"model": "glm-4.6", "text": "hi"}, 3)
    assert key == stable_key("summary", {"text": "hi", "model": "glm-4.6"}, 3)
    assert key.startswith("ap1:") and len(key) == 44
    int(key[4:], 16)
    others = {
        stable_key("summary", {"model": "glm-4.6", "text": "hi"}, 4),
        stable_key("summary", {"model": "glm-4.6", "text": "hi!"}, 3),
        stable_key("record", {"model": "glm-4.6", "text": "hi"}, 3),
        stable_key("summary", {"model": "glm-4.6", "text": "hi"}, "3"),
        stable_key("summary", {"model": "glm-4.6", "text": "hi"}),
        stable_key("summary:", {"model": "glm-4.6", "text": "hi"}, 3),
    }
    assert key not in others and len(others) == 6


def test_stable_key_digests_enums_and_bytes_and_refuses_the_rest() -> None:
    strategy = Strategy.CONVERSATION_SUMMARY
    assert stable_key(strategy) == stable_key("conversation_summary")
    assert stable_key(b"\x89PNG") == stable_key(bytearray(b"\x89PNG")) != stable_key(b"\x89PNH")
    with pytest.raises(TypeError, match="object"):
        stable_key(object())


def test_stable_key_is_the_same_in_another_process() -> None:
    parts = ["summary", {"z": [1, 2], "a": "é ✓"}, 3.5, None, True]
    script = (
        "import json, sys; from condensation.store import stable_key; "
        "print(stable_key(*json.loads(sys.argv[1])))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", script, json.dumps(parts)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert other.stdout.strip() == stable_key(*parts)


# ---------------------------------------------------------------------------- building


def test_build_store_picks_disk_or_redis(tmp_path: Path) -> None:
    disk = build_store(Settings.from_env({"CACHE_DIR": str(tmp_path)}))
    assert isinstance(disk, DiskStore) and disk.directory == str(tmp_path)
    default = build_store(Settings.from_env({}))
    assert isinstance(default, DiskStore) and default.directory == default_cache_dir()
    assert default_cache_dir().startswith(tempfile.gettempdir())
    remote = build_store(Settings.from_env({"CACHE_URL": "redis://127.0.0.1:1/0"}))
    assert remote.name == "redis"
    for made in (disk, default, remote):
        assert isinstance(made, GuardedStore)
        made.close()


def test_disk_stores_of_one_directory_agree(tmp_path: Path, key: str) -> None:
    first, second = DiskStore(str(tmp_path)), DiskStore(str(tmp_path))
    try:
        assert first.add(key, "first", ttl=30)
        assert not second.add(key, "second", ttl=30)
        assert second.get(key) == "first"
        with first.lock(key + ":lock", ttl=10, wait=0) as held:
            with second.lock(key + ":lock", ttl=10, wait=0) as other:
                assert (held, other) == (True, False)
    finally:
        first.close()
        second.close()


def _flight_in_process(directory: str, work: str, key: str) -> None:
    """One 'worker' (a spawned process): waits for its peer, then single-flights `key`."""
    store = DiskStore(directory)
    Path(work, f"ready-{os.getpid()}").touch()
    deadline = time.monotonic() + 20
    while len(list(Path(work).glob("ready-*"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

    def compute() -> dict[str, int]:
        Path(work, f"computed-{os.getpid()}").touch()
        time.sleep(0.5)
        return {"pid": os.getpid()}

    value, cached = single_flight(store, key, compute, ttl=60, wait=10)
    Path(work, f"result-{os.getpid()}").write_text(json.dumps([value, cached]))
    store.close()


def test_single_flight_across_processes_on_one_disk_store(tmp_path: Path, key: str) -> None:
    directory, work = tmp_path / "store", tmp_path / "work"
    work.mkdir()
    spawn = multiprocessing.get_context("spawn")
    processes = [
        spawn.Process(target=_flight_in_process, args=(str(directory), str(work), key))
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0
        process.close()
    assert len(list(work.glob("computed-*"))) == 1
    results = [json.loads(p.read_text()) for p in work.glob("result-*")]
    assert len(results) == 2 and results[0][0] == results[1][0]
    assert sorted(cached for _, cached in results) == [False, True]


# ---------------------------------------------------------------------------- failures


def store_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "condensation.store" and r.levelno == level]


def use_everything(store: GuardedStore, key: str) -> None:
    """Every operation, each succeeding, as if the backend were there."""
    store.set(key, {"v": 1}, ttl=30)
    assert store.get(key) == {"v": 1}
    assert store.add(key + ":added", 1, ttl=30)
    assert not store.add(key + ":added", 2, ttl=30)
    with store.lock(key + ":l", ttl=5, wait=0) as held:
        assert held
    assert single_flight(store, key + ":f", lambda: "made", ttl=30, wait=1) == ("made", False)
    store.delete(key)
    assert store.get(key) is None


def test_redis_dying_mid_test_falls_back_to_memory(
    caplog: pytest.LogCaptureFixture, key: str
) -> None:
    if not REDIS_SERVER:
        pytest.skip(NO_REDIS)
    from condensation.redis_store import RedisStore

    caplog.set_level(logging.DEBUG, logger="condensation.store")
    with RedisServer() as server:
        store = RedisStore(server.url, retry_after=0.5)
        try:
            use_everything(store, key)
            server.stop()
            for round_ in range(5):
                use_everything(store, f"{key}:{round_}")
            stats = store.stats()
            assert stats["degraded"] and stats["errors"] == 1  # not retried before retry_after
            assert len(store_records(caplog, logging.WARNING)) == 1
            server.start()  # same port
            time.sleep(0.55)
            use_everything(store, key + ":back")
            assert not store.stats()["degraded"]
            assert len(store_records(caplog, logging.WARNING)) == 1
            assert "reachable again" in store_records(caplog, logging.INFO)[-1].getMessage()
        finally:
            store.close()


def test_redis_password_never_logged(caplog: pytest.LogCaptureFixture, key: str) -> None:
    from condensation.redis_store import redact

    caplog.set_level(logging.DEBUG)
    port = free_port()  # nothing listens there
    url = f"redis://proxy:s3cret%2Fpw@127.0.0.1:{port}/0"
    store = build_store(Settings.from_env({"CACHE_URL": url}))
    assert isinstance(store, GuardedStore)
    try:
        use_everything(store, key)
        assert store.stats()["degraded"]
    finally:
        store.close()
    assert len(store_records(caplog, logging.WARNING)) == 1
    assert f"127.0.0.1:{port}" in caplog.text
    assert "s3cret" not in caplog.text
    assert redact("unix:///run/redis.sock?password=s3cret") == "unix:///run/redis.sock"


def test_unusable_disk_falls_back_to_memory(
    caplog: pytest.LogCaptureFixture, tmp_path: Path, key: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="condensation.store")
    (tmp_path / "file").write_text("a file, not a directory")
    store = DiskStore(str(tmp_path / "file" / "store"), retry_after=0.1)
    use_everything(store, key)
    stats = store.stats()
    assert stats["degraded"] and stats["errors"] == 1  # not retried before retry_after
    assert stats["front_size"] == 0  # only the shared backend's values are cached in front
    time.sleep(0.15)
    use_everything(store, key + ":later")  # retried, failed again: logged at debug only
    assert store.stats()["errors"] >= 2
    assert len(store_records(caplog, logging.WARNING)) == 1
    assert store_records(caplog, logging.DEBUG)
    store.close()
