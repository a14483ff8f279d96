"""The migration guide's `python test_integration_intelligent_context.py`, run as a user would.

`--fake` starts the fake z.ai and the proxy under gunicorn by itself; the run starts from a
clean environment (no variable the proxy reads) in an empty directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from config import Settings

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "test_integration_intelligent_context.py"
SETTINGS_VARIABLES = frozenset(f.metadata["env"] for f in fields(Settings))
KEY_VARIABLES = ("PROXY_TEST_KEY", "ZAI_API_KEY", "ANTHROPIC_AUTH_TOKEN", "PROXY_URL")
ROW = re.compile(
    r"^ +(\d+)  (SAFE|CAUTION|WARNING|CRITICAL|OVERFLOW) +([\d.]+) +([\d,]+) +([\d,]+) +(\d+) "
    r"+(yes|no) +(\d+) +(yes|no) +\d+$",
    re.M,
)


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    drop = SETTINGS_VARIABLES | set(KEY_VARIABLES)
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_growing_session_through_gunicorn_and_the_fake(tmp_path: Path) -> None:
    result = run(tmp_path, "--fake", "--turns", "12")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "a LOCAL FAKE z.ai at http://127.0.0.1:" in out and "under gunicorn" in out
    assert "turn  risk       util    client forwarded condensed trunc calls cache" in out
    rows = ROW.findall(out)
    assert [int(r[0]) for r in rows] == list(range(1, 13))
    condensed = [r for r in rows if int(r[5]) > 0]
    assert condensed, "the session was never condensed"
    first = int(condensed[0][0])
    assert all(r[8] == "yes" for r in rows if int(r[0]) > first)  # later turns reuse it
    assert all(int(r[4].replace(",", "")) <= 31_808 for r in rows)  # the input budget
    for line in (
        "[PASS] every answer 200 (12/12)",
        "[PASS] context_info on every answer (12/12",
        "[PASS] forwarded tokens within the input budget on every turn",
        f"[PASS] condensation started at turn {first}; the {12 - first} later turns reuse it",
        "[PASS] the fake z.ai accepted every forwarded request (12/12",
    ):
        assert line in out
    assert out.rstrip().endswith("all checks passed")


def test_without_a_key_or_fake_it_says_what_to_do(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.returncode == 2
    assert "no key: pass --key" in result.stderr and "--fake" in result.stderr


def test_an_unreachable_proxy_fails_cleanly(tmp_path: Path) -> None:
    result = run(tmp_path, "--url", "http://127.0.0.1:9", "--key", "sk-test", "--turns", "2")
    assert result.returncode == 1
    assert "[FAIL] the proxy cannot be used: ConnectionError" in result.stdout
    assert "Traceback" not in result.stderr
