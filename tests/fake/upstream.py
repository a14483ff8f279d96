"""FakeUpstream: the fake's state, its test API, and the decision of what to answer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Self

from tests.fake.checks import (
    OVERFLOW_BODY,
    anthropic_problems,
    error_body,
    last_prompt_text,
    media_count,
    message_blocks,
    openai_problems,
    requested_output,
)
from tests.fake.constants import (
    ANTHROPIC_PREFIX,
    CHUNK_CHARS,
    DEFAULT_MODELS,
    DEFAULT_WINDOW,
    DEFAULT_WINDOWS,
    OPENAI_PREFIX,
    POLL_SECONDS,
    ROUTES,
    VISION_MODELS,
    Json,
)
from tests.fake.describer import NOTE as DESCRIPTION_NOTE
from tests.fake.describer import described_image, description_reply
from tests.fake.glm import count_input_tokens
from tests.fake.plans import REPLACING_FAULTS, Fault, Plan, RecordedRequest, fault_plan, json_plan
from tests.fake.replies import (
    Exchange,
    Reply,
    default_reply,
    render_anthropic_message,
    render_anthropic_stream,
    render_openai_completion,
    render_openai_stream,
    sign_thinking,
)
from tests.fake.summarizer import NOTE as SUMMARY_NOTE
from tests.fake.summarizer import is_summary_request, summary_reply
from tests.fake.transport import Server

# z.ai's words when a key has more requests in flight than its plan allows (code 1302).
CONCURRENCY_MESSAGE = "High concurrency usage of this API, please reduce concurrency"


class FakeUpstream:
    """A threaded local HTTP server speaking both of z.ai's formats; a context manager.

    Settable attributes: models, vision_models, windows (tokens per model, input + max_tokens),
    api_keys (None: any non-empty key), chunk_chars, event_delay (seconds between stream
    events), check_signatures (reject thinking blocks whose signature this fake did not give),
    summary_quality (1.0: unscripted summary requests get a summary keeping every fact; lower
    keeps fewer; 0.0: a generic summary without facts; see `tests.fake.summarizer`),
    concurrency_limit (None: unlimited; else requests in flight per key beyond it get z.ai's
    429 code 1302, as its coding plan answers them).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: Iterable[str] = DEFAULT_MODELS,
        vision_models: Iterable[str] = VISION_MODELS,
        windows: dict[str, int] | None = None,
        api_keys: Iterable[str] | None = None,
        chunk_chars: int = CHUNK_CHARS,
        event_delay: float = 0.0,
        check_signatures: bool = False,
        summary_quality: float = 1.0,
    ) -> None:
        self.host, self.port = host, port
        self.models = set(models)
        self.vision_models = set(vision_models)
        self.windows = {**DEFAULT_WINDOWS, **(windows or {})}
        self.api_keys = set(api_keys) if api_keys is not None else None
        self.chunk_chars = chunk_chars
        self.event_delay = event_delay
        self.check_signatures = check_signatures
        # Streams without chunked framing, ended by closing the connection (HTTP/1.0 style).
        self.close_delimited = False
        self.summary_quality = summary_quality
        self.concurrency_limit: int | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified when a stream is aborted
        self._records: list[RecordedRequest] = []
        self._script: list[Reply] = []
        self._faults: list[Fault] = []
        self._gates: list[threading.Event] = []  # of hold faults not yet released
        self._held = 0
        self._flight: dict[str, int] = {}  # requests in flight per key
        self._peak_in_flight = 0
        self._concurrency_rejections = 0
        self._seq = 0
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """http://host:port of the running server."""
        return f"http://{self.host}:{self.port}"

    @property
    def anthropic_base(self) -> str:
        """Base URL of the Anthropic-format endpoint (requests go to <this>/v1/messages)."""
        return self.base_url + ANTHROPIC_PREFIX

    @property
    def openai_base(self) -> str:
        """Base URL of the OpenAI-format endpoint (requests go to <this>/chat/completions)."""
        return self.base_url + OPENAI_PREFIX

    def start(self) -> Self:
        """Bind and serve in a background thread."""
        self._bind()
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": POLL_SECONDS}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Bind and serve in this thread until interrupted."""
        self._bind()
        assert self._server is not None
        self._server.serve_forever(poll_interval=POLL_SECONDS)

    def stop(self) -> None:
        """Stop serving, wake sleeping faults and close open connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        self.release()  # wake held streams; they see `stopping` and drop their connection
        if self._thread is not None:  # shutdown() would wait forever for a loop never started
            server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        server.close_connections()
        server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _bind(self) -> None:
        if self._server is None:
            self._server = Server((self.host, self.port), self)
        self.port = self._server.server_address[1]

    # ------------------------------------------------------------------------ test API

    def script(self, *specs: str | Json | Reply) -> None:
        """Queue replies for the next valid requests, in order (see `Reply` for spec keys)."""
        replies = [Reply.from_spec(spec) for spec in specs]
        with self._lock:
            self._script += replies

    def fail_next(self, kind: str, count: int = 1, **options: Any) -> None:
        """Inject a fault into the next `count` valid requests (see `Fault` for kinds/options)."""
        fault = Fault(kind, count, **options)
        with self._lock:
            self._faults.append(fault)
            if fault.kind == "hold":
                self._gates.append(fault.gate)

    def release(self) -> int:
        """Let every stream held by a `hold` fault injected so far go on; the number of gates."""
        with self._lock:
            gates, self._gates = self._gates, []
        for gate in gates:
            gate.set()
        return len(gates)

    @property
    def held(self) -> int:
        """How many streams are held: started under a `hold` fault and not yet past its gate."""
        with self._lock:
            return self._held

    @property
    def aborted(self) -> list[RecordedRequest]:
        """The recorded requests whose stream broke off because the client went away."""
        with self._lock:
            return [r for r in self._records if r.aborted]

    def wait_aborted(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Wait until `count` streams have been aborted by their client; False on timeout."""
        with self._changed:
            return self._changed.wait_for(
                lambda: sum(r.aborted for r in self._records) >= count, timeout
            )

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received on the two endpoints, oldest first."""
        with self._lock:
            return list(self._records)

    @property
    def summary_requests(self) -> list[RecordedRequest]:
        """The recorded requests that asked for a summary (noted "summary_request"), oldest
        first."""
        with self._lock:
            return [r for r in self._records if SUMMARY_NOTE in r.notes]

    @property
    def description_requests(self) -> list[RecordedRequest]:
        """The recorded requests that asked to describe an image (noted
        "description_request"), oldest first."""
        with self._lock:
            return [r for r in self._records if DESCRIPTION_NOTE in r.notes]

    @property
    def last(self) -> RecordedRequest:
        """The latest request received (IndexError if none)."""
        with self._lock:
            return self._records[-1]

    def flight_stats(self) -> Json:
        """Concurrency seen since the last reset: the peak of requests in flight for one key
        (admitted or not), how many are in flight now, how many got 429 code 1302."""
        with self._lock:
            return {
                "peak_in_flight": self._peak_in_flight,
                "in_flight": sum(self._flight.values()),
                "concurrency_rejections": self._concurrency_rejections,
            }

    @contextmanager
    def in_flight(self, path: str, headers: dict[str, str]) -> Iterator[Plan | None]:
        """Count one API request in flight while its answer is sent; over `concurrency_limit`
        for its key, the 429 it gets instead (None: answer it normally)."""
        endpoint = ROUTES.get(path.partition("?")[0])
        if endpoint is None:
            yield None
            return
        key = _bearer(headers.get("authorization", "")) or headers.get("x-api-key", "")
        with self._lock:
            now = self._flight[key] = self._flight.get(key, 0) + 1
            self._peak_in_flight = max(self._peak_in_flight, now)
            refused = self.concurrency_limit is not None and now > self.concurrency_limit
            self._concurrency_rejections += refused
        refusal = json_plan(429, error_body(endpoint, 429, CONCURRENCY_MESSAGE, "1302"))
        try:
            yield refusal if refused else None
        finally:
            with self._lock:
                self._flight[key] -= 1
                if not self._flight[key]:
                    del self._flight[key]

    def reset(self) -> None:
        """Forget recorded requests, pending scripted replies and pending faults; release holds."""
        with self._lock:
            self._peak_in_flight = self._concurrency_rejections = 0
            self._records.clear()
            self._script.clear()
            self._faults.clear()
        self.release()

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """Count a stream as held for the duration of the block."""
        with self._lock:
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1

    def _note_aborted(self, record: RecordedRequest | None) -> None:
        with self._changed:
            if record is not None:
                record.aborted = True
            self._changed.notify_all()

    # ------------------------------------------------------------------------ serving

    def plan(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> Plan:
        """Decide the answer to one HTTP request (no I/O; the handler sends the plan)."""
        route = path.partition("?")[0]
        if route.startswith("/_fake/"):
            return self._control(method, route, raw)
        endpoint = ROUTES.get(route)
        if endpoint is None:
            return json_plan(404, {"error": {"code": "404", "message": f"no route {route}"}})
        if method != "POST":
            return json_plan(405, error_body(endpoint, 405, f"{method} is not allowed"))
        record = RecordedRequest(endpoint, method, path, headers)
        plan = self._answer(record, raw)
        record.status = plan.status
        plan.record = record
        with self._lock:
            self._records.append(record)
        return plan

    def _answer(self, record: RecordedRequest, raw: bytes) -> Plan:
        endpoint = record.endpoint
        if not self._authorized(endpoint, record.headers):
            return self._auth_failure(endpoint, record.headers)
        try:
            record.body = json.loads(raw)
        except ValueError:
            return json_plan(
                400, error_body(endpoint, 400, "request body is not valid JSON", "1214")
            )
        if not isinstance(record.body, dict):
            return json_plan(
                400, error_body(endpoint, 400, "request body must be a JSON object", "1214")
            )
        if is_summary_request(record.body):
            record.notes.append(SUMMARY_NOTE)
        if endpoint == "openai" and described_image(record.body) is not None:
            record.notes.append(DESCRIPTION_NOTE)
        rejection = self._rejection(record)
        if rejection is not None:
            return rejection
        record.input_tokens, record.tokenizer = count_input_tokens(endpoint, record.body)
        if self._overflows(record):
            return json_plan(400, OVERFLOW_BODY)
        return self._reply(record)

    def _overflows(self, record: RecordedRequest) -> bool:
        """z.ai's rule: the prompt plus the requested max_tokens must fit the model's window."""
        window = self.windows.get(record.body["model"], DEFAULT_WINDOW)
        return record.input_tokens + requested_output(record.body) > window

    def _authorized(self, endpoint: str, headers: dict[str, str]) -> bool:
        key = _bearer(headers.get("authorization", ""))
        if endpoint == "anthropic":
            key = key or headers.get("x-api-key", "").strip()
        return bool(key) and (self.api_keys is None or key in self.api_keys)

    def _auth_failure(self, endpoint: str, headers: dict[str, str]) -> Plan:
        presented = "authorization" in headers or "x-api-key" in headers
        code, message = (
            ("1002", "Invalid API key") if presented else ("1001", "Authentication header missing")
        )
        return json_plan(401, error_body(endpoint, 401, message, code))

    def _rejection(self, record: RecordedRequest) -> Plan | None:
        """A 400 plan when the body breaks the endpoint's rules, else None (notes recorded)."""
        body, endpoint = record.body, record.endpoint
        model = body.get("model")
        if "model" not in body:
            return json_plan(400, error_body(endpoint, 400, "model: field required", "1214"))
        if model not in self.models:
            message = f"model: unknown model {model!r}"
            return json_plan(400, error_body(endpoint, 400, message, "1211"))
        if endpoint == "anthropic":
            problems = anthropic_problems(body) + self._signature_problems(record)
            if media_count(body.get("messages")):
                record.notes.append("image_on_anthropic_endpoint")
        else:
            problems = openai_problems(body)
            if model not in self.vision_models and media_count(body.get("messages")):
                problems.append(f"model: {model!r} does not accept images; use a vision model")
        if not problems:
            return None
        return json_plan(400, error_body(endpoint, 400, "; ".join(problems), "1214"))

    def _signature_problems(self, record: RecordedRequest) -> list[str]:
        problems = []
        for i, j, block in message_blocks(record.body.get("messages")):
            if block.get("type") == "thinking" and isinstance(block.get("thinking"), str):
                if block.get("signature") != sign_thinking(block["thinking"]):
                    problems.append(
                        f"messages[{i}].content[{j}]: invalid signature in thinking block"
                    )
        if problems:
            record.notes.append("thinking_signature_mismatch")
        return problems if self.check_signatures else []

    def _reply(self, record: RecordedRequest) -> Plan:
        fault, reply, seq = self._take(record.endpoint)
        record.fault = fault.kind if fault is not None else None
        if fault is not None and fault.kind in REPLACING_FAULTS:
            return fault_plan(record.endpoint, fault)
        body = record.body
        stream_options = body.get("stream_options") or {}
        exchange = Exchange(
            record.endpoint,
            body["model"],
            seq,
            stream=body.get("stream") is True,
            include_usage=stream_options.get("include_usage") is True,
            input_tokens=record.input_tokens,
        )
        if reply is None and SUMMARY_NOTE in record.notes:
            reply = summary_reply(body, self.summary_quality)
        elif reply is None and DESCRIPTION_NOTE in record.notes:
            reply = description_reply(described_image(body) or b"")
        elif reply is None:
            thinking = (body.get("thinking") or {}).get("type") == "enabled"
            reply = default_reply(last_prompt_text(body["messages"]), thinking)
        plan = self._render(reply, exchange)
        plan.fault = fault
        return plan

    def _take(self, endpoint: str) -> tuple[Fault | None, Reply | None, int]:
        """Consume the next matching fault, the next scripted reply (unless the fault replaces
        the reply) and a sequence number, atomically."""
        with self._lock:
            self._seq += 1
            fault = next((f for f in self._faults if f.endpoint in (None, endpoint)), None)
            if fault is not None:
                fault.count -= 1
                if fault.count == 0:
                    self._faults.remove(fault)
            replaced = fault is not None and fault.kind in REPLACING_FAULTS
            reply = self._script.pop(0) if self._script and not replaced else None
            return fault, reply, self._seq

    def _render(self, reply: Reply, exchange: Exchange) -> Plan:
        anthropic = exchange.endpoint == "anthropic"
        if not exchange.stream:
            render = render_anthropic_message if anthropic else render_openai_completion
            return json_plan(200, render(reply, exchange))
        stream = render_anthropic_stream if anthropic else render_openai_stream
        headers = (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"))
        return Plan(200, frames=stream(reply, exchange, self.chunk_chars), headers=headers)

    # ------------------------------------------------------------------------ control over HTTP

    def _control(self, method: str, route: str, raw: bytes) -> Plan:
        action = route.removeprefix("/_fake/")
        if method == "GET" and action == "requests":
            return json_plan(200, {"requests": [r.to_dict() for r in self.requests]})
        if method == "GET" and action == "flight":
            return json_plan(200, self.flight_stats())
        if method != "POST" or action not in ("script", "fault", "config", "reset", "release"):
            return json_plan(404, {"error": f"no control endpoint {method} {route}"})
        try:
            payload = json.loads(raw) if raw.strip() else {}
            return json_plan(200, self._apply_control(action, payload))
        except (ValueError, TypeError) as exc:
            return json_plan(400, {"error": str(exc)})

    def _apply_control(self, action: str, payload: Any) -> Json:
        if action == "script":
            specs = payload if isinstance(payload, list) else [payload]
            self.script(*specs)
            return {"queued": len(self._script)}
        if action == "fault":
            if not isinstance(payload, dict):
                raise ValueError("a fault is an object with a kind")
            self.fail_next(**payload)
            return {"faults": len(self._faults)}
        if action == "config":
            return self._configure(payload)
        if action == "release":
            return {"released": self.release()}
        self.reset()
        return {"reset": True}

    def _configure(self, payload: Json) -> Json:
        if not isinstance(payload, dict):
            raise ValueError("config is an object")
        known = {
            "windows",
            "event_delay",
            "chunk_chars",
            "check_signatures",
            "summary_quality",
            "concurrency_limit",
        }
        unknown = set(payload) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        quality = float(payload.get("summary_quality", self.summary_quality))
        if not 0.0 <= quality <= 1.0:
            raise ValueError("summary_quality is between 0 and 1")
        self.windows.update(payload.get("windows", {}))
        self.event_delay = float(payload.get("event_delay", self.event_delay))
        self.chunk_chars = int(payload.get("chunk_chars", self.chunk_chars))
        self.check_signatures = bool(payload.get("check_signatures", self.check_signatures))
        self.summary_quality = quality
        if "concurrency_limit" in payload:
            limit = payload["concurrency_limit"]
            self.concurrency_limit = None if limit is None else int(limit)
        return {
            "windows": self.windows,
            "event_delay": self.event_delay,
            "chunk_chars": self.chunk_chars,
            "summary_quality": self.summary_quality,
            "concurrency_limit": self.concurrency_limit,
        }


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""
