"""The fake z.ai of tests/fake_upstream.py as a process of its own, for the load benchmarks.

    .venv/bin/python benchmarks/fake_process.py [--event-delay S] [--keep N]

It is `python tests/fake_upstream.py`, except that it keeps only the latest `--keep` recorded
requests: the fake records every request with its parsed body, and a few minutes of
150k-token sessions would grow it by gigabytes on a machine that the proxy being measured
shares. Like the original it prints its base URL as its first line of stdout.

`start_fake()` starts it and returns the process and the base URL, after optionally adding a
`hold` fault that stands in for the model's time to first event.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.fake.constants import ANTHROPIC_PREFIX, OPENAI_PREFIX  # noqa: E402
from tests.fake_upstream import FakeUpstream, Plan, serve_announced  # noqa: E402

KEEP = 50


class ForgetfulFake(FakeUpstream):
    """The fake, keeping only its latest `keep` recorded requests."""

    def __init__(self, *args: object, keep: int = KEEP, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.keep = keep

    def plan(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Plan:
        plan = super().plan(method, path, headers, raw)
        with self._lock:
            del self._records[: -self.keep or None]
        return plan


def start_fake(
    event_delay: float = 0.0, hold_seconds: float = 0.0, keep: int = KEEP
) -> tuple[subprocess.Popen[bytes], str]:
    """Start the fake in its own process; with `hold_seconds`, every answer (stream or not)
    waits that long before its first event or its body, as a model thinks first."""
    command = [sys.executable, __file__, "--event-delay", str(event_delay), "--keep", str(keep)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    base = process.stdout.readline().decode().strip()
    if not base.startswith("http://"):
        process.kill()
        raise RuntimeError("the fake upstream did not start")
    if hold_seconds:
        fault = {"kind": "hold", "after": 0, "seconds": hold_seconds, "count": 10**9}
        control(base, "fault", fault)
    return process, base


def upstream_env(base: str) -> dict[str, str]:
    """The proxy's settings that point it at the fake serving at `base` (its base_url)."""
    return {"UPSTREAM_BASE": base + ANTHROPIC_PREFIX, "OPENAI_UPSTREAM_BASE": base + OPENAI_PREFIX}


def control(base: str, action: str, payload: object = None) -> object:
    """POST /_fake/<action> (fault, config, release, reset) and return its JSON answer."""
    request = urllib.request.Request(
        f"{base}/_fake/{action}",
        data=json.dumps(payload if payload is not None else {}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--event-delay", type=float, default=0.0, help="seconds between events")
    parser.add_argument("--keep", type=int, default=KEEP, help="recorded requests kept")
    args = parser.parse_args()
    fake = ForgetfulFake("127.0.0.1", args.port, event_delay=args.event_delay, keep=args.keep)
    serve_announced(fake)


if __name__ == "__main__":
    main()
