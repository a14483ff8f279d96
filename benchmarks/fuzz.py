"""How many fuzzed bodies each client API answered, by status: the fuzz test at a larger scale.

Sends `--examples` generated bodies (tests/fuzz_bodies.py: valid, mutated, other JSON, broken
bytes) to each of /v1/chat/completions and /v1/messages (and every Messages body to
/v1/messages/count_tokens) through the app's test client, against the strict fake z.ai, with
fresh randomness unless `--seed` is given. Prints the number sent, a status histogram per
path, and every distinct problem found (an unreadable answer, a 5xx, an escaped exception, a
valid body refused, a forwarded body the fake rejected); exits 1 if there was any.

    .venv/bin/python benchmarks/fuzz.py --examples 5000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app import create_app  # noqa: E402
from benchmarks.fake_process import upstream_env  # noqa: E402
from config import Settings  # noqa: E402
from tests.fake_upstream import FakeUpstream  # noqa: E402
from tests.fuzz_bodies import CHAT, COUNT_TOKENS, MESSAGES, Case, cases  # noqa: E402
from tests.fuzz_runs import FuzzRun  # noqa: E402

# Problems are grouped by their opening words, so one bug met 500 times is listed once.
PROBLEM_KEY_CHARS = 90


def fuzz(run: FuzzRun, path: str, examples: int, problems: Counter[str]) -> None:
    """Send `examples` cases to `path`, counting each problem (hypothesis only generates)."""

    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(path))
    def one(case: Case) -> None:
        found = run.send(case)
        if path == MESSAGES:
            found += run.send(case, COUNT_TOKENS)
        for problem in found:
            problems[problem[:PROBLEM_KEY_CHARS]] += 1
            if problems[problem[:PROBLEM_KEY_CHARS]] == 1:
                print(f"  new problem ({path}): {problem[:400]}\n    body: {case.body[:2000]!r}")

    one()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="bodies per API")
    parser.add_argument("--seed", type=int, default=None, help="repeat a run")
    args = parser.parse_args()
    problems: Counter[str] = Counter()
    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as store:
        env = {
            **upstream_env(fake.base_url),
            "CACHE_DIR": store,
            "UPSTREAM_RETRY_BACKOFF": "0.01",
            "LOG_LEVEL": "CRITICAL",  # the app logs every 4xx; the histogram says it
        }
        run = FuzzRun(create_app(Settings.from_env(env)).test_client(), fake)
        started = time.perf_counter()
        for path in (CHAT, MESSAGES):
            runner = fuzz
            if args.seed is not None:
                runner = seed(args.seed)(fuzz)  # type: ignore[assignment]
            runner(run, path, args.examples, problems)
        elapsed = time.perf_counter() - started
    print(f"\nsent {run.sent} requests in {elapsed:.1f} s ({run.sent / elapsed:.0f}/s)")
    for path, counts in sorted(run.statuses.items()):
        histogram = ", ".join(f"{status}: {n}" for status, n in sorted(counts.items()))
        print(f"  {path:<28} {sum(counts.values()):>6} sent   {histogram}")
    print("  bodies by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(run.kinds.items())))
    print(f"problems: {sum(problems.values())} ({len(problems)} distinct)")
    for problem, n in problems.most_common():
        print(f"  {n:>5} × {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
