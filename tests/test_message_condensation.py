"""The migration guide's `python test_message_condensation.py`, run as a user would.

Each run starts from a clean environment (no variable the proxy reads) in an empty directory,
so neither this machine's settings nor a developer's `.env` decide the outcome. `--fake` starts
the fake z.ai inside the script; without it and without SERVER_API_KEY the script refuses.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

from config import Settings

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "test_message_condensation.py"
SETTINGS_VARIABLES = frozenset(f.metadata["env"] for f in fields(Settings))
FACTS = ("src/payments/retry_policy.py", "compute_backoff_delay", "8643", "--max-attempts")


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_condenses_the_sample_against_the_local_fake(tmp_path: Path) -> None:
    result = run(tmp_path, "--fake")
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in result.stderr
    assert out.startswith(
        "UPSTREAM: a LOCAL FAKE z.ai (tests/fake_upstream.py) at http://127.0.0.1:"
    )
    assert "window 200,000, input budget 191,808" in out
    assert "graded WARNING" in out and "-> CONDENSATION_LIGHT" in out
    assert "result: strategy conversation_summary" in out
    assert "[Summary of " in out and "Summary of the conversation so far:" in out
    assert "planted facts (turns 1-4, all condensed): 12/12 kept" in out
    for fact in FACTS:
        assert f"  kept  {fact}\n" in out
    for line in (
        "[PASS] an AI summary was produced",
        "[PASS] the conversation_summary summary passed the quality gate",
        "[PASS] z.ai would accept the result: no problems",
        "[PASS] within the condensation target:",
    ):
        assert line in out
    assert "[FAIL]" not in out
    assert out.rstrip().endswith("all checks passed")


def test_settings_come_from_dotenv(tmp_path: Path) -> None:
    """The deployment's settings (.env here) hold with --fake too: only the upstream changes."""
    (tmp_path / ".env").write_text(
        "CONDENSATION_DEFAULT_STRATEGY=key_point_extraction\nREAL_TEXT_MODEL_TOKENS=40000\n"
    )
    result = run(tmp_path, "--fake")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "window 40,000" in result.stdout
    assert "result: strategy key_point_extraction" in result.stdout


def test_a_summary_that_loses_the_facts_fails(tmp_path: Path) -> None:
    result = run(tmp_path, "--fake", "--fake-quality", "0")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert "[FAIL] no AI summary was produced" in out
    assert "[FAIL] the conversation_summary summary did NOT pass the quality gate" in out
    assert "summary rejected: quality" in out  # the condenser's own reason, from its log
    assert out.rstrip().endswith("check(s) FAILED")


def test_without_a_key_it_says_what_to_do(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "SERVER_API_KEY is not set" in result.stderr and "--fake" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_setting_fails_naming_the_variable(tmp_path: Path) -> None:
    result = run(tmp_path, "--fake", CONDENSATION_QUALITY_THRESHOLD="2")
    assert result.returncode == 1
    assert "[FAIL] settings: CONDENSATION_QUALITY_THRESHOLD" in result.stdout
