"""The migration guide's `python test_intelligent_context_management.py`, run as a user would.

Each run starts from a clean environment (no variable the proxy reads) in an empty directory,
so neither this machine's settings nor a developer's `.env` decide the outcome.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from config import Settings
from tests.tokens.conftest import GLM_FILE

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "test_intelligent_context_management.py"
SETTINGS_VARIABLES = frozenset(f.metadata["env"] for f in fields(Settings))
LEVELS = ("SAFE", "CAUTION", "WARNING", "CRITICAL", "OVERFLOW")


def run(cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in SETTINGS_VARIABLES}
    return subprocess.run(
        [sys.executable, str(SCRIPT)],
        cwd=cwd,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def passed(result: subprocess.CompletedProcess[str]) -> str:
    """The output of a run that must have passed every check."""
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[FAIL]" not in result.stdout
    assert result.stdout.rstrip().endswith("all checks passed")
    return result.stdout


def context_info(stdout: str) -> dict:
    """The context_info JSON the script prints for its truncation."""
    start = stdout.index("context_info of the truncation:\n") + len(
        "context_info of the truncation:"
    )
    return json.JSONDecoder().raw_decode(stdout[start:].lstrip())[0]


def test_passes_with_the_defaults(tmp_path: Path) -> None:
    out = passed(run(tmp_path))
    assert "counting mode=estimate, thresholds 0.7/0.8/0.9, SIMPLE_TRUNCATION=False" in out
    assert "input budget 191,808 = window - min(max_tokens 8192" in out
    for level in LEVELS:
        assert f"[PASS] {level:8} " in out and f"-> {level}, " in out
    for line in (
        "[PASS] graded OVERFLOW and truncated",
        "[PASS] z.ai would accept it (validate_conversation): no problems",
        "[PASS] it starts with a user message",
        "[PASS] every tool_use answered in the next message",
        "[PASS] it fits:",
        "[PASS] the system prompt is kept",
        "[PASS] the latest user message and the assistant turn it answers are kept unchanged",
        "[PASS] the task (first user message) is kept",
        "[PASS] resent: cache_hit=True",
        "earlier overflowing lengths: every result valid and fitting",
        "[PASS] its head and tail are kept",
    ):
        assert line in out
    info = context_info(out)
    assert info["risk_level"] == "OVERFLOW" and info["truncated"] is True
    assert info["strategy_used"] == "EMERGENCY_TRUNCATION"
    assert info["messages_removed"] > 0
    assert info["estimated_input_tokens"] <= info["input_budget"] == 191_808
    assert info["original_input_tokens"] > info["input_budget"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SIMPLE_TRUNCATION": "true"}, "[info] SIMPLE_TRUNCATION=true drops the oldest first"),
        ({"ENABLE_ACCURATE_TOKEN_COUNTING": "false"}, "counting mode=legacy"),
        (
            {
                "REAL_TEXT_MODEL_TOKENS": "32000",
                "OUTPUT_RESERVE_TOKENS": "4096",
                "CONDENSATION_CAUTION_THRESHOLD": "0.5",
                "CONDENSATION_WARNING_THRESHOLD": "0.6",
                "CONDENSATION_CRITICAL_THRESHOLD": "0.95",
            },
            "input budget 27,904 = window - min(max_tokens 8192, OUTPUT_RESERVE_TOKENS 4096)",
        ),
    ],
)
def test_other_settings_still_pass(tmp_path: Path, env: dict[str, str], expected: str) -> None:
    out = passed(run(tmp_path, **env))
    assert expected in out
    assert all(f"-> {level}, " in out for level in LEVELS)


def test_settings_come_from_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SIMPLE_TRUNCATION=true\nREAL_TEXT_MODEL_TOKENS=64000\n")
    out = passed(run(tmp_path))
    assert "SIMPLE_TRUNCATION=True" in out
    assert "window 64,000" in out


def test_exact_counting_with_glm_tokenizer(tmp_path: Path) -> None:
    if not GLM_FILE.is_file():
        pytest.skip(f"GLM tokenizer not found at {GLM_FILE}")
    out = passed(run(tmp_path, TOKENIZER_FILE=str(GLM_FILE)))
    assert "counting mode=exact" in out


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.5", "CONDENSATION_WARNING_THRESHOLD=1.5 must be in (0, 1]"),
        ("0.6", "CONDENSATION_CAUTION_THRESHOLD=0.7 must be below CONDENSATION_WARNING_THRESHOLD"),
        ("lots", "CONDENSATION_WARNING_THRESHOLD='lots' is not a valid float"),
    ],
)
def test_an_invalid_threshold_fails_naming_the_variable(
    tmp_path: Path, value: str, message: str
) -> None:
    result = run(tmp_path, CONDENSATION_WARNING_THRESHOLD=value)
    assert result.returncode != 0
    assert f"[FAIL] settings: {message}" in result.stdout
    assert result.stdout.rstrip().endswith("1 check(s) FAILED")
