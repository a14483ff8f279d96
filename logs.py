"""Logging: one format for the app's and gunicorn's lines, the request id on each, no secrets.

`LOG_FORMAT=text` (default) writes `time [pid] level logger [request-id] message`; `json` writes
one object per line: time, pid, level, logger, request_id, event (the line's prefix: CONTEXT,
CONDENSATION, TOKEN, IMAGE, STORE, ACCESS, or "log"), message and the message's `key=value`
pairs as fields. The prefixes stay greppable in both. Every line passes the `Redactor` first:
Authorization values, `sk-…` keys, the configured keys and the password of CACHE_URL never
reach the output, whatever a message or an exception's text held.

The request id lives in a context variable: set once per request (api/request_ids.py), read by
every line of the thread serving it; the threads a request hands work to (a stream's
preparation, summary and description calls) run in a copy of its context (`in_context`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import Any, TypeVar
from urllib.parse import urlsplit

from gunicorn import glogging

from config import LogFormat, Settings

NO_REQUEST = "-"
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default=NO_REQUEST)
# An incoming X-Request-Id is kept when it is short and made of these (no spaces, no quotes:
# nothing that could forge a log line or a field).
VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
EVENTS = frozenset({"CONTEXT", "CONDENSATION", "TOKEN", "IMAGE", "STORE", "ACCESS"})
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s [%(request_id)s] %(message)s"
FIELD = re.compile(r"(\w+)=(\S+)")
REDACTED = "[redacted]"
# Each pattern with its replacement: what names the secret stays, the secret goes.
SECRET_PATTERNS = (
    # Authorization / x-api-key values, however quoted
    (re.compile(r"(?i)\b(bearer|basic)\s+[^\s\"',;]+"), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"(?i)((?:x-api-key|api[_-]?key|authorization)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"
        ),
        rf"\1{REDACTED}",
    ),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{6,}"), REDACTED),
    (re.compile(r"(redis(?:s)?://[^:@/\s]*:)[^@/\s]+(@)"), rf"\1{REDACTED}\2"),  # URL password
)
# What gunicorn's own lines need of the settings (its master builds no Settings of its own).
GUNICORN_FIELDS = ("log_format", "server_api_key", "proxy_api_keys", "cache_url")

T = TypeVar("T")


def valid_request_id(value: str | None) -> str | None:
    """An incoming request id worth keeping, else None.

    >>> valid_request_id("req-42"), valid_request_id("a b"), valid_request_id("x" * 200)
    ('req-42', None, None)
    """
    if value and VALID_REQUEST_ID.fullmatch(value):
        return value
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


def in_context(job: Callable[..., T]) -> Callable[..., T]:
    """`job` bound to a copy of the caller's context: run in another thread, its log lines
    carry the caller's request id."""
    context = contextvars.copy_context()
    # a copy per call: one Context cannot be entered by two threads at once
    return lambda *args, **kwargs: context.copy().run(job, *args, **kwargs)


class Redactor:
    """Takes secrets out of text: the patterns above and the exact values it was given."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern, replacement in SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class ContextFilter(logging.Filter):
    """Puts the request id on each record, and its message through the redactor (once)."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        if not getattr(record, "redacted", False):
            record.msg = self._redact(record.getMessage())
            record.args = None
            if record.exc_info:
                record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            record.redacted = True
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        first = message.split(" ", 1)[0]
        event = first if first in EVENTS else "log"
        line: dict[str, Any] = {
            "time": _utc(record.created),
            "pid": record.process,
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", NO_REQUEST),
            "event": event,
            "message": message,
        }
        if event != "log":
            line["fields"] = {k: _value(v) for k, v in FIELD.findall(message)}
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def _value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def formatter(kind: LogFormat) -> logging.Formatter:
    return JsonFormatter() if kind is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)


def dress(handler: logging.Handler, kind: LogFormat, redact: Redactor) -> None:
    """Give a handler the format and the request-id/redaction filter."""
    handler.setFormatter(formatter(kind))
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter(redact))


def configure(settings: Settings) -> None:
    """The root logger writes to stderr in LOG_FORMAT, unless someone (pytest) set it up first."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        dress(handler, settings.log_format, Redactor(secret_values(settings)))
        root.addHandler(handler)
    root.setLevel(settings.log_level)


def secret_values(settings: Settings) -> list[str]:
    """The configured keys, and the password in CACHE_URL: never to be written."""
    values: list[str] = []
    for f in fields(settings):
        if f.metadata.get("secret"):
            value = getattr(settings, f.name)
            values.extend(value if isinstance(value, tuple) else [value] if value else [])
    return [_password(v) or v if "://" in v else v for v in values]


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class GunicornLogger(glogging.Logger):
    """gunicorn's lines in LOG_FORMAT, through the redactor; access lines as ACCESS events with
    the request id the response carries (gunicorn.conf.py: `logger_class`)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        settings = Settings.from_env(only=GUNICORN_FIELDS)
        redact = Redactor(secret_values(settings))
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                dress(handler, settings.log_format, redact)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:  # noqa: ARG002
        if not self.access_log_enabled:
            return
        headers = {str(k).lower(): v for k, v in resp.headers}
        self.access_log.info(
            "ACCESS method=%s path=%s status=%s bytes=%s ms=%.1f",
            req.method,
            req.path,
            resp.status_code,
            getattr(resp, "sent", 0),
            request_time.total_seconds() * 1000,
            extra={"request_id": headers.get("x-request-id", NO_REQUEST)},
        )
