"""The README's benchmark commands run (smaller where the full run takes minutes): each finishes
and prints its figures. The figures are the benchmarks' to judge, not a test's; load.py's short
run is tests/integration/test_load.py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.integration.servers import REPO_ROOT

RUNS = [
    (["bench_tokens.py"], "total"),  # as the README gives it (about 20 s)
    (["bench_context.py", "--quick"], "total"),
    (["bench_condensation.py", "--quick"], "latency each condensing turn adds"),
    (["bench_proxy.py", "--requests", "20"], "target: added p50"),
    (["fuzz.py", "--examples", "50"], "problems: 0"),
]


@pytest.mark.parametrize(("args", "figure"), RUNS, ids=[" ".join(a) for a, _ in RUNS])
def test_a_benchmark_runs_and_prints_its_figures(args: list[str], figure: str) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / args[0]), *args[1:]],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert figure in run.stdout, run.stdout[-2000:]
