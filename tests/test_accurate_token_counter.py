"""The migration guide's `python test_accurate_token_counter.py`, run as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tokens.conftest import GLM_FILE

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "test_accurate_token_counter.py"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("TOKENIZER", "LEGACY"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=environ | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.skipif(not GLM_FILE.is_file(), reason=f"GLM tokenizer not found at {GLM_FILE}")
def test_passes_and_compares_with_glm() -> None:
    result = run("--glm", str(GLM_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode=estimate" in result.stdout
    assert "FAIL" not in result.stdout
    assert "english chat       estimate     55  GLM     55  error  +0.00%" in result.stdout
    assert result.stdout.rstrip().endswith("all checks passed")


def test_exact_mode_is_reported() -> None:
    if not GLM_FILE.is_file():
        pytest.skip(f"GLM tokenizer not found at {GLM_FILE}")
    result = run(TOKENIZER_FILE=str(GLM_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode=exact" in result.stdout
    assert "error  +0.00%" in result.stdout


def test_a_bad_setting_fails_naming_the_variable() -> None:
    result = run(TOKENIZER_ENCODING="no_such_encoding")
    assert result.returncode != 0
    assert "TOKENIZER_ENCODING" in result.stderr


def test_legacy_mode_skips_the_accuracy_check() -> None:
    result = run(LEGACY_TOKEN_ESTIMATION="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "mode=legacy" in result.stdout
    assert "accuracy: skipped (legacy mode" in result.stdout
