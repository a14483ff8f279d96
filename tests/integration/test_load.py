"""The short load run of benchmarks/load.py (20 paced streams for 10 s): no errors at all.

Only errors are asserted; the timing figures are the benchmark's to print, not a test's.
"""

from __future__ import annotations

import subprocess
import sys

from tests.integration.servers import REPO_ROOT


def test_twenty_concurrent_streams_for_ten_seconds_make_no_errors() -> None:
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "load.py"), "--quick"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "target 0 errors: met" in run.stdout, run.stdout[-2000:]
    proxy = next(line for line in run.stdout.splitlines() if line.startswith("proxy"))
    assert "errors 0" in proxy
