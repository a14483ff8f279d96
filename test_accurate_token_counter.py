"""Check the token counter as this deployment configures it: the migration guide's validation step.

    python test_accurate_token_counter.py [--glm PATH]

Builds the TokenCounter exactly as a worker does (environment plus `.env`), with the network shut
off, and counts a few typical requests: English chat, code with numbers, a tool loop, Chinese, an
image, and the same chat as an OpenAI body. Checks that a resent conversation is served from the
cache and that the legacy rollback switch works. When GLM-4.6's tokenizer is at hand
(TOKENIZER_FILE, --glm, or ../shared/tokenizers/glm-4.6.tiktoken) it also prints how far each
estimate is from GLM's exact count and fails on an under-count of more than 2%.
Exit status 0 when every check passes.
"""

from __future__ import annotations

import argparse
import base64
import socket
import struct
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from config import Settings
from tokens import TokenCounter, build_counter, load_encoding

SHARED_GLM_FILE = Path(__file__).resolve().parent.parent / "shared/tokenizers/glm-4.6.tiktoken"
MAX_UNDER_COUNT = 0.02  # an estimate this far below GLM's count could overflow the real window


def _png(width: int, height: int) -> str:
    """Base64 of a PNG header big enough for the counter to read the pixel size."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return base64.b64encode(b"\x89PNG\r\n\x1a\n" + ihdr).decode()


def _user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def _assistant(content: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content}


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city"],
    },
}
SAMPLES: dict[str, dict[str, Any]] = {
    "english chat": {
        "system": "You are a concise assistant.",
        "messages": [
            _user("Summarise the plot of Hamlet in two sentences."),
            _assistant("A prince avenges his murdered father. Almost everyone dies."),
            _user("Now do Macbeth, in the same style."),
        ],
    },
    "code and numbers": {
        "messages": [
            _user(
                "Why does this fail for n=1234567?\n\n"
                "def fib(n: int) -> int:\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n"
            )
        ]
    },
    "tool loop": {
        "tools": [WEATHER_TOOL],
        "messages": [
            _user("Weather in Lisbon for 3 days?"),
            _assistant(
                [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Lisbon", "days": 3},
                    },
                ]
            ),
            _user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": '{"temp_c": [21, 23, 19], "sky": "clear"}',
                    }
                ]
            ),
        ],
    },
    "chinese chat": {
        "messages": [
            _user("请帮我修改这个函数，让它支持分页查询，每页默认返回二十条记录。"),
            _assistant("好的。可以给函数加上 page 和 page_size 两个参数，默认每页二十条。"),
            _user("运行测试的时候报错了，提示找不到模块，我已经确认依赖都安装好了。"),
        ]
    },
    "image": {
        "messages": [
            _user(
                [
                    {"type": "text", "text": "What is in this screenshot?"},
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": "image/png",
                            "data": _png(1280, 720),
                        },
                    },
                ]
            )
        ]
    },
}
OPENAI_SAMPLE = {
    "messages": [
        {"role": "system", "content": "You are a concise assistant."},
        {"role": "user", "content": "Summarise the plot of Hamlet in two sentences."},
    ]
}


class Report:
    """Collects check results and prints them as they come."""

    def __init__(self) -> None:
        self.failures = 0

    def check(self, ok: bool, what: str) -> None:
        self.failures += not ok
        print(f"  [{'ok' if ok else 'FAIL'}] {what}")


@contextmanager
def network_refused() -> Iterator[None]:
    """Make any connection attempt fail loudly: counting must never need the network."""
    original = socket.socket.connect

    def refuse(*_args: Any) -> None:
        raise OSError("the token counter tried to use the network")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]


def check_counts(counter: TokenCounter, report: Report) -> dict[str, int]:
    print("counts (what count_tokens and message_start report)")
    counts = {name: counter.count_request(request) for name, request in SAMPLES.items()}
    for name, count in counts.items():
        print(f"  {name:18} {count:6d} tokens")
    openai = counter.count_openai_request(OPENAI_SAMPLE)
    print(f"  {'openai body':18} {openai:6d} tokens")
    report.check(all(count > 0 for count in counts.values()) and openai > 0, "every count > 0")
    report.check(counts["image"] > 100, "the image is counted from its 1280x720 pixel size")
    return counts


def check_cache(counter: TokenCounter, report: Report) -> None:
    print("cache (a resent conversation encodes only what is new)")
    session = {"messages": [_user(f"Message {i}: " + "lorem ipsum " * 40) for i in range(30)]}
    counter.count_request(session)
    before = counter.stats()
    counter.count_request(session)
    after = counter.stats()
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    report.check(hits >= 30 and misses == 0, f"resend: {hits} hits, {misses} misses")


def check_legacy(settings: Settings, report: Report) -> None:
    print("rollback (LEGACY_TOKEN_ESTIMATION=true: characters / 4)")
    legacy = build_counter(replace(settings, legacy_token_estimation=True))
    count = legacy.count_text("x" * 400)
    report.check(legacy.stats()["mode"] == "legacy" and count == 100, f"400 characters -> {count}")


def check_accuracy(counts: dict[str, int], glm_file: Path, report: Report) -> None:
    print(f"accuracy against GLM-4.6's tokenizer ({glm_file})")
    exact = TokenCounter(load_encoding(file=str(glm_file)), exact=True)
    for name, request in SAMPLES.items():
        truth = exact.count_request(request)
        error = (counts[name] - truth) / truth
        print(f"  {name:18} estimate {counts[name]:6d}  GLM {truth:6d}  error {error:+7.2%}")
        report.check(error >= -MAX_UNDER_COUNT, f"{name}: not under-counted by more than 2%")


def glm_file_to_use(given: str | None, settings: Settings) -> Path | None:
    for candidate in (given, settings.tokenizer_file, SHARED_GLM_FILE):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--glm", help="a tiktoken BPE file of GLM-4.6's tokenizer")
    args = parser.parse_args(argv)
    report = Report()
    settings = Settings.from_env(dotenv=True)
    with network_refused():
        counter = build_counter(settings)
        stats = counter.stats()
        print(f"token counter: mode={stats['mode']} cache={stats['maxsize']} entries")
        counts = check_counts(counter, report)
        if stats["mode"] == "legacy":
            print("cache: skipped (legacy mode counts characters, nothing to cache)")
        else:
            check_cache(counter, report)
        check_legacy(settings, report)
    glm_file = glm_file_to_use(args.glm, settings)
    if stats["mode"] == "legacy":
        print("accuracy: skipped (legacy mode estimates characters / 4 on purpose)")
    elif glm_file is None:
        print("accuracy: skipped (no GLM tokenizer file; pass --glm PATH or set TOKENIZER_FILE)")
    else:
        check_accuracy(counts, glm_file, report)
    print("all checks passed" if not report.failures else f"{report.failures} check(s) FAILED")
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
