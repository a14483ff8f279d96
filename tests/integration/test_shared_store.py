"""The shared store across processes: two Python processes on one real redis-server agree on
one value, computed once (single flight through Redis)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.servers import NO_REDIS, REDIS_SERVER, RedisServer

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

# One "worker": builds the store from CACHE_URL as the app does, waits for its peer, then asks
# for the same key; the compute leaves a marker so the test can count upstream calls.
WORKER = """
import json, os, sys, time
from pathlib import Path

from condensation.store import build_store, single_flight
from config import Settings

work = Path(sys.argv[1])
store = build_store(Settings.from_env())
(work / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 20
while len(list(work.glob("ready-*"))) < 2 and time.monotonic() < deadline:
    time.sleep(0.01)

def compute():
    (work / f"computed-{os.getpid()}").touch()
    time.sleep(0.5)
    return {"summary": "made once", "by": os.getpid()}

value, cached = single_flight(store, sys.argv[2], compute, ttl=60, wait=10)
print(json.dumps({"value": value, "cached": cached, "stats": store.stats()}))
store.close()
"""


@pytest.mark.skipif(not REDIS_SERVER, reason=NO_REDIS)
def test_two_processes_share_one_value_through_redis(tmp_path: Path) -> None:
    with RedisServer() as server:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO_ROOT),
            "CACHE_URL": server.url,
        }
        command = [sys.executable, "-c", WORKER, str(tmp_path), "integration:summary"]
        # Run from an empty directory so no developer .env reaches the workers.
        workers = [
            subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        try:
            outputs = [worker.communicate(timeout=30)[0] for worker in workers]
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.communicate()
    assert [worker.returncode for worker in workers] == [0, 0]
    results = [json.loads(output) for output in outputs]
    assert len(list(tmp_path.glob("computed-*"))) == 1
    assert results[0]["value"] == results[1]["value"]
    assert sorted(r["cached"] for r in results) == [False, True]
    assert all(r["stats"]["name"] == "redis" and not r["stats"]["degraded"] for r in results)
