"""logs.py: request ids, the redactor, the JSON and text formats, context across threads."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

import logs
from config import LogFormat, Settings


@pytest.mark.parametrize(
    ("incoming", "kept"),
    [
        ("req-42", "req-42"),
        ("0f8c2a1e-7b3d-4e55-9a0b-2c1d3e4f5a6b", "0f8c2a1e-7b3d-4e55-9a0b-2c1d3e4f5a6b"),
        ("trace:abc/def+1=@x", "trace:abc/def+1=@x"),
        ("x" * 128, "x" * 128),
        ("x" * 129, None),  # too long
        ("two words", None),
        ('quote"d', None),
        ("line\nbreak", None),
        ("", None),
        (None, None),
    ],
)
def test_valid_request_id(incoming: str | None, kept: str | None) -> None:
    assert logs.valid_request_id(incoming) == kept


def test_new_request_ids_are_valid_and_distinct() -> None:
    made = {logs.new_request_id() for _ in range(100)}
    assert len(made) == 100 and all(logs.valid_request_id(r) == r for r in made)


@pytest.mark.parametrize(
    ("text", "gone", "kept"),
    [
        ("Authorization: Bearer abc.def-123", "abc.def-123", "Authorization"),
        ("headers={'x-api-key': 'zz-topsecret-1'}", "zz-topsecret-1", "x-api-key"),
        ("api_key=hunter2hunter2 rest", "hunter2hunter2", "rest"),
        ("the key sk-ABCdef123456789 leaked", "sk-ABCdef123456789", "leaked"),
        ("redis://user:pa55word@cache:6379/0", "pa55word", "@cache:6379/0"),
        ("configured my-own-key-value here", "my-own-key-value", "here"),
    ],
)
def test_the_redactor_takes_secrets_out(text: str, gone: str, kept: str) -> None:
    redact = logs.Redactor(["my-own-key-value", "abc"])  # "abc": too short to be a secret
    out = redact(text)
    assert gone not in out and kept in out and logs.REDACTED in out


def test_secret_values_come_from_the_settings_fields_marked_secret() -> None:
    settings = Settings.from_env(
        {"SERVER_API_KEY": "srv-key-1", "PROXY_API_KEYS": "a-key-1,b-key-2",
         "CACHE_URL": "redis://:pw-secret@host:6379/0"}
    )  # fmt: skip
    assert sorted(logs.secret_values(settings)) == ["a-key-1", "b-key-2", "pw-secret", "srv-key-1"]
    # gunicorn's lines: only the fields they need, read without the cross-field checks (here
    # PROXY_API_KEYS without SERVER_API_KEY would fail them), the same keys come out
    environ = {"SERVER_API_KEY": "srv-key-1", "PROXY_API_KEYS": "a-key-1, b-key-2",
               "CACHE_URL": "redis://:pw-secret@host:6379/0", "OTHER": "x",
               "REAL_TEXT_MODEL_TOKENS": "not read"}  # fmt: skip
    partial = Settings.from_env(environ, only=logs.GUNICORN_FIELDS)
    assert sorted(logs.secret_values(partial)) == sorted(logs.secret_values(settings))
    unchecked = Settings.from_env({"PROXY_API_KEYS": "a-key-1"}, only=logs.GUNICORN_FIELDS)
    assert logs.secret_values(unchecked) == ["a-key-1"]


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("tests.logs.captured")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream, handler
    finally:
        logger.removeHandler(handler)


def test_json_lines_carry_time_level_logger_request_id_event_and_fields(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    logs.dress(handler, LogFormat.JSON, logs.Redactor(["sk-configured"]))
    token = logs.REQUEST_ID.set("req-7")
    try:
        logger.info("CONTEXT risk=%s forwarded=%d utilization=%.4f ok=True", "SAFE", 120, 0.5)
        logger.warning("plain words with %s", "sk-configured")
        try:
            raise ValueError("boom Bearer abcdefgh")
        except ValueError:
            logger.exception("TOKEN failed")
    finally:
        logs.REQUEST_ID.reset(token)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    first, second, third = lines
    assert set(first) == {
        "time",
        "pid",
        "level",
        "logger",
        "request_id",
        "event",
        "message",
        "fields",
    }
    assert first["time"].endswith("Z") and first["level"] == "INFO"
    assert (first["logger"], first["request_id"], first["event"]) == (
        "tests.logs.captured", "req-7", "CONTEXT",
    )  # fmt: skip
    assert first["fields"] == {"risk": "SAFE", "forwarded": 120, "utilization": 0.5, "ok": True}
    assert second["event"] == "log" and "fields" not in second
    assert "sk-configured" not in second["message"]
    assert third["event"] == "TOKEN" and "ValueError" in third["exception"]
    assert "abcdefgh" not in third["exception"]


def test_text_lines_keep_the_prefixes_greppable_with_the_request_id(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    logs.dress(handler, LogFormat.TEXT, logs.Redactor())
    token = logs.REQUEST_ID.set("req-9")
    try:
        logger.info("CONDENSATION strategy=%s", "conversation_summary")
    finally:
        logs.REQUEST_ID.reset(token)
    line = stream.getvalue().strip()
    assert " INFO tests.logs.captured [req-9] CONDENSATION strategy=conversation_summary" in line


def test_work_handed_to_other_threads_keeps_the_request_id() -> None:
    seen: list[str] = []
    token = logs.REQUEST_ID.set("req-threads")
    try:
        job = logs.in_context(lambda n: seen.append(f"{n}:{logs.REQUEST_ID.get()}"))
    finally:
        logs.REQUEST_ID.reset(token)
    # two threads run the same bound job at once: each in its own copy of the context
    threads = [threading.Thread(target=job, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seen) == ["0:req-threads", "1:req-threads"]
