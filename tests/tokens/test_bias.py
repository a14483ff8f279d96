"""GlmEstimator: cl100k_base counts corrected towards GLM-4.6's tokenizer."""

from __future__ import annotations

import json

import pytest
import tiktoken

from tokens.bias import GlmEstimator, ScriptRates, token_script


@pytest.fixture(scope="module")
def estimator(cl100k: tiktoken.Encoding) -> GlmEstimator:
    return GlmEstimator(cl100k)


ASCII_SAMPLES = {
    "prose": "The quick brown fox jumps over the lazy dog. It's 9:45 and we're late again!",
    "code": "def add(a: int, b: int) -> int:\n    return a + b  # 100% tested\n\n\n\n"
    "class X:\n    pass\n",
    "json": json.dumps({"id": 9_876_543_210, "price": 1234.56, "tags": ["a", "b"], "ok": True}),
    "log": "2025-11-26T12:34:56.789Z INFO [worker-12] latency_ms=4567 bytes=98765432",
    "digits": "12345678901234567890 000 001 456 999 1000000",
    "whitespace": "a    b\t\tc\n\n\n   \n d      ",
    "special_literals": "<|endoftext|> <|user|> <think>",
}


@pytest.mark.parametrize("text", ASCII_SAMPLES.values(), ids=ASCII_SAMPLES)
def test_ascii_estimate_is_exact(
    estimator: GlmEstimator, glm_encoding: tiktoken.Encoding, text: str
) -> None:
    assert estimator.count(text) == len(glm_encoding.encode_ordinary(text))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("order 4567", 5), ("100", 1), ("199", 1), ("456", 2), ("45", 1), ("", 0), ("no digits", 2)],
)
def test_three_digit_groups(estimator: GlmEstimator, text: str, expected: int) -> None:
    assert estimator.count(text) == expected


# Text of other scripts: the corrected estimate must land closer to GLM than raw cl100k does.
# One sentence can still be 20-30% off: GLM merges whole phrases ("してください") or falls back
# to bytes for rare characters, which no per-character rate sees; the rates are tuned for
# averages over many sentences (benchmarks/bench_tokens.py).
OTHER_SCRIPTS = {
    "simplified": (
        "请帮我检查一下这段代码，为什么在服务器上运行的时候会出现内存泄漏？"
        "我已经尝试过增加日志，但是没有找到明显的原因。另外，测试环境一切正常。",
        0.25,
    ),
    "traditional": ("請幫我檢查這段程式碼，為什麼在伺服器上執行的時候會出現記憶體洩漏？", 0.25),
    "japanese": (
        "このエラーの原因は設定ファイルの書き間違いだと思いますので、確認してください。",
        0.35,
    ),
    "korean": ("서버가 갑자기 느려져서 원인을 찾고 있습니다. 설정 파일을 확인해 주세요.", 0.25),
    "russian": ("Пожалуйста, проверьте конфигурацию сервера перед обновлением системы.", 0.25),
    "mixed": ("运行 `pytest -q` 以后有 3 个测试失败，错误是 KeyError: 'user_id'。\n怎么修？", 0.25),
}


@pytest.mark.parametrize(("text", "bound"), OTHER_SCRIPTS.values(), ids=OTHER_SCRIPTS)
def test_other_scripts_are_corrected(
    estimator: GlmEstimator,
    cl100k: tiktoken.Encoding,
    glm_encoding: tiktoken.Encoding,
    text: str,
    bound: float,
) -> None:
    truth = len(glm_encoding.encode_ordinary(text))
    estimate = estimator.count(text)
    raw = len(cl100k.encode_ordinary(text))
    assert abs(estimate - truth) < abs(raw - truth)
    assert abs(estimate - truth) <= bound * truth


def test_rates_are_applied(cl100k: tiktoken.Encoding) -> None:
    assert GlmEstimator(cl100k, ScriptRates(simplified=1.0)).count("中文字符串") == 5
    assert GlmEstimator(cl100k, ScriptRates(simplified=0.5)).count("中文字符串") == 3
    assert GlmEstimator(cl100k, ScriptRates(traditional=2.0)).count("這個們") == 6
    # a newline right after CJK punctuation merges into the mark
    assert GlmEstimator(cl100k, ScriptRates(simplified=1.0)).count("好。\n") == 2


def test_lone_cjk_character_is_one_token(
    cl100k: tiktoken.Encoding, glm_encoding: tiktoken.Encoding
) -> None:
    # A run of one character cannot merge, so the per-character rate does not apply to it.
    low = GlmEstimator(cl100k, ScriptRates(simplified=0.1))
    assert low.count("再 push") == len(glm_encoding.encode_ordinary("再 push")) == 2
    text = "用 git 提交, 再 push 到 main 分支"
    assert GlmEstimator(cl100k).count(text) >= len(glm_encoding.encode_ordinary(text))


@pytest.mark.parametrize(
    ("data", "script"),
    [
        (b"hello", "ascii"),
        ("при".encode(), "cyrillic"),
        ("é".encode(), "latin_extended"),
        ("αβ".encode(), "greek"),
        ("مر".encode(), "arabic"),
        ("안녕".encode(), "hangul"),
        (b"\xd0", "cyrillic"),  # a lone lead byte of a Cyrillic letter
        (b"\xa8", "other"),  # a continuation byte alone says nothing
        ("中".encode(), "other"),  # CJK is estimated per character, not per token
    ],
)
def test_token_script(data: bytes, script: str) -> None:
    assert token_script(data) == script
