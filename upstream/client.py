"""The HTTP client for z.ai: one pooled session, wire-format selection, failures translated.

Transport failures become ProxyErrors here, at the boundary: timeouts → 504, unreachable → 502,
error statuses → UpstreamError with the upstream's own status and message (429 keeps Retry-After).
Once a stream has begun, failures become a canonical error event instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

from condensation.store import MemoryStore, Store
from config import Settings
from errors import (
    ErrorKind,
    ProxyError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    kind_for_status,
)
from upstream import anthropic_format, openai_format
from upstream import canonical as c
from upstream.gate import Gate, OpenGate, Slot, build_gate
from upstream.gate import Observer as GateObserver
from upstream.routing import Endpoint, Route
from upstream.sse import SSEEvent, iter_sse, json_bytes

logger = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_RETRY_AFTER = "5"
STREAM_READ_BYTES = 64 * 1024
# Headers a client may send that z.ai's Anthropic endpoint understands.
FORWARDED_ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


@dataclass(frozen=True)
class WireFormat:
    """How to speak one upstream endpoint."""

    path: str
    render_request: Callable[[c.Request, str], dict[str, Any]]
    parse_response: Callable[[dict[str, Any]], c.Response]
    parse_stream: Callable[[Iterable[SSEEvent], int], Iterator[c.StreamEvent]]


WIRE_FORMATS = {
    Endpoint.ANTHROPIC: WireFormat(
        "/v1/messages",
        anthropic_format.render_request,
        anthropic_format.parse_response,
        anthropic_format.parse_stream,
    ),
    Endpoint.OPENAI: WireFormat(
        "/chat/completions",
        openai_format.render_request,
        openai_format.parse_response,
        openai_format.parse_stream,
    ),
}


class UpstreamClient:
    """Sends canonical requests to z.ai and returns canonical responses or stream events."""

    def __init__(
        self,
        anthropic_base: str,
        openai_base: str,
        *,
        connect_timeout: float,
        read_timeout: float,
        pool_size: int,
        retries: RetryPolicy | None = None,
        gate: Gate | OpenGate | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """`on_retry(reason)` hears each retry: the status that caused it, or "connection"."""
        self._bases = {Endpoint.ANTHROPIC: anthropic_base, Endpoint.OPENAI: openai_base}
        self._on_retry = on_retry
        self._timeout = (connect_timeout, read_timeout)
        self._retries = retries or RetryPolicy(max_retries=0)
        self.gate = gate or OpenGate()
        self._session = requests.Session()
        # Pool as large as the worker's thread count: above it requests drops and reopens sockets.
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.trust_env = False

    def complete(
        self,
        route: Route,
        request: c.Request,
        api_key: str,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> c.Response:
        """Send a non-stream request; the canonical response, or a ProxyError.

        `timeout` (seconds to wait for the answer) replaces the read timeout for this call.
        """
        wire = WIRE_FORMATS[route.endpoint]
        body = wire.render_request(request | {"stream": False}, route.model)
        # The whole answer is read inside: the slot is free again once the call is over.
        with self.gate.enter(api_key, timeout):
            response = self._post(
                route, body, api_key, headers or {}, stream=False, timeout=timeout
            )
        payload = _json_answer(response)
        try:
            return wire.parse_response(payload)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            logger.warning("malformed upstream answer: %s", exc)
            raise UpstreamUnavailable("upstream returned a malformed answer") from None

    def open_stream(
        self,
        route: Route,
        request: c.Request,
        api_key: str,
        input_estimate: int,
        headers: dict[str, str] | None = None,
        slot: Slot | None = None,
    ) -> UpstreamStream:
        """Start a stream; errors before the first byte raise, later ones become error events.

        The stream holds a gate slot (`slot` if it is still held, else one it waits for) until
        it ends or is closed.
        """
        wire = WIRE_FORMATS[route.endpoint]
        body = wire.render_request(request | {"stream": True}, route.model)
        if slot is None or not slot.held:
            slot = self.gate.enter(api_key)
        try:
            response = self._post(route, body, api_key, headers or {}, stream=True)
            if "json" in response.headers.get("Content-Type", ""):
                # Asked for a stream, z.ai answered JSON: an error reported with status 200.
                try:
                    _json_answer(response)
                finally:
                    response.close()
                raise UpstreamUnavailable("upstream answered a stream request without a stream")
        except BaseException:
            slot.release()
            raise
        return UpstreamStream(self._events(response, wire, input_estimate), slot)

    def close(self) -> None:
        self._session.close()

    # ------------------------------------------------------------------------ internals

    def _post(
        self,
        route: Route,
        body: dict[str, Any],
        api_key: str,
        extra: dict[str, str],
        stream: bool,
        timeout: float | None = None,
    ) -> requests.Response:
        url = self._bases[route.endpoint] + WIRE_FORMATS[route.endpoint].path
        headers = _auth_headers(route.endpoint, api_key, extra)
        if stream:
            # Compression makes proxies and servers buffer SSE; ask for it plain.
            headers["Accept-Encoding"] = "identity"
        data = json_bytes(body)
        prepared = requests.PreparedRequest()
        prepared.prepare(method="POST", url=url, headers=headers, data=data)
        limits = self._timeout if timeout is None else (self._timeout[0], timeout)
        deadline = time.monotonic() + limits[1]  # the request's time budget, retries included
        attempt = 0
        while True:
            response, failure = self._send_once(prepared, limits, stream)
            wait = self._retries.wait(attempt, response, failure, deadline - time.monotonic())
            if wait is None:
                break
            if response is not None:
                response.close()
            attempt += 1
            logger.info(
                "upstream busy (%s); retry %d in %.2f s", _why(response, failure), attempt, wait
            )
            self._heard_retry(response)
            time.sleep(wait)
        if failure is not None:
            raise failure
        assert response is not None
        if response.status_code >= 400:
            try:
                raise status_error(response)
            finally:
                response.close()
        return response

    def _heard_retry(self, response: requests.Response | None) -> None:
        if self._on_retry is None:
            return
        try:
            self._on_retry(str(response.status_code) if response is not None else "connection")
        except Exception:  # an observer must never fail the request
            logger.exception("retry observer failed")

    def _send_once(
        self, prepared: requests.PreparedRequest, limits: tuple[float, float], stream: bool
    ) -> tuple[requests.Response | None, ProxyError | None]:
        """One attempt: the response, or the ProxyError its transport failure means."""
        try:
            # session.send skips per-call environment and cookie merging (~0.2 ms a request).
            return self._session.send(prepared, timeout=limits, stream=stream), None
        except requests.Timeout:
            return None, UpstreamTimeout("upstream did not answer in time")
        except requests.RequestException as exc:
            logger.warning("upstream unreachable: %s", type(exc).__name__)
            return None, UpstreamUnavailable("upstream is unreachable")

    def _events(
        self, response: requests.Response, wire: WireFormat, input_estimate: int
    ) -> Iterator[c.StreamEvent]:
        chunks = _arriving(response)
        try:
            for event in wire.parse_stream(iter_sse(chunks), input_estimate):
                yield event
                if event["type"] == "message_stop":
                    # The answer is complete and already on its way to the client. Reading the
                    # few bytes left (the chunked terminator) lets the connection go back to
                    # the pool; an upstream that stalls or resets here costs only the socket.
                    _drain(chunks)
                    return
        except requests.RequestException as exc:
            logger.warning("upstream stream failed: %s", type(exc).__name__)
            yield c.error_event("upstream stream was interrupted")
        except ValueError:
            logger.warning("upstream stream carried invalid JSON")
            yield c.error_event("upstream stream carried invalid data")
        finally:
            response.close()


class UpstreamStream:
    """An open stream's canonical events; closing it (or its end) frees its gate slot.

    A class rather than the bare generator: a generator closed before its first event never
    runs its `finally`, and the slot would stay leased (and renewed) for good.
    """

    def __init__(self, events: Iterator[c.StreamEvent], slot: Slot) -> None:
        self._events = events
        self._slot = slot

    def __iter__(self) -> UpstreamStream:
        return self

    def __next__(self) -> c.StreamEvent:
        try:
            return next(self._events)
        except StopIteration:
            self._slot.release()
            raise

    def close(self) -> None:
        try:
            self._events.close()  # type: ignore[attr-defined]
        finally:
            self._slot.release()


def _arriving(response: requests.Response) -> Iterator[bytes]:
    """The body's bytes as they arrive, framed or not.

    `iter_content(None)` yields each chunk of a chunked body as it comes, but reads a body
    without framing (HTTP/1.0 style, ended by closing the connection) to its end first; there
    `read1` hands over whatever has arrived.
    """
    if "chunked" in response.headers.get("Transfer-Encoding", "").lower():
        yield from response.iter_content(chunk_size=None)
        return
    raw = response.raw
    try:
        while data := raw.read1(STREAM_READ_BYTES, decode_content=True):
            yield data
    except urllib3.exceptions.ProtocolError as exc:
        raise requests.ConnectionError(str(exc)) from None
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ReadTimeout(str(exc)) from None


def _drain(chunks: Iterator[bytes]) -> None:
    """Read what is left of a finished stream; any failure only loses the pooled connection."""
    try:
        for _ in chunks:
            pass
    except Exception as exc:  # noqa: BLE001 - nothing after message_stop may reach the client
        logger.debug("upstream stream did not close cleanly after message_stop: %s", exc)


def build_upstream(
    settings: Settings,
    store: Store | None = None,
    observe: GateObserver | None = None,
    on_retry: Callable[[str], None] | None = None,
) -> UpstreamClient:
    """The worker's UpstreamClient, from Settings (endpoints, timeouts, pool, retries, gate).

    Without a store the gate (UPSTREAM_MAX_CONCURRENCY) holds for this process alone.
    """
    gate = build_gate(
        store or MemoryStore(),
        settings.upstream_max_concurrency,
        settings.upstream_queue_timeout,
        observe,
    )
    return UpstreamClient(
        settings.upstream_base,
        settings.openai_upstream_base,
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.request_timeout,
        pool_size=settings.upstream_pool_size,
        retries=RetryPolicy(
            settings.upstream_max_retries,
            settings.upstream_retry_backoff,
            settings.upstream_retry_max_wait,
        ),
        gate=gate,
        on_retry=on_retry,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed upstream call is tried again: before any byte went to the client, only for
    answers that mean "later" (429, 503, 529) or a connection that failed, within the budget.

    >>> RetryPolicy(max_retries=2, backoff=0.5).wait(0, None, UpstreamUnavailable("x"), 30.0)
    0.5
    """

    max_retries: int = 2
    backoff: float = 0.5  # seconds before the first retry; doubled for each later one
    max_wait: float = 10.0  # a longer Retry-After is passed on to the client instead

    def wait(
        self,
        attempt: int,
        response: requests.Response | None,
        failure: ProxyError | None,
        budget: float,
    ) -> float | None:
        """Seconds to wait before retrying, or None to stop here."""
        if attempt >= self.max_retries:
            return None
        if failure is not None:
            retryable = isinstance(failure, UpstreamUnavailable)  # a timeout used the budget
            after = None
        elif response is not None and response.status_code in RETRY_STATUSES:
            retryable, after = True, _retry_after(response)
        else:
            return None
        wait = self.backoff * 2**attempt if after is None else after
        if not retryable or wait > self.max_wait or wait >= budget:
            return None
        return wait


RETRY_STATUSES = frozenset({429, 503, 529})


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (the delay form; an HTTP date is read as no hint)."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def _why(response: requests.Response | None, failure: ProxyError | None) -> str:
    return f"status {response.status_code}" if response is not None else type(failure).__name__


def _json_answer(response: requests.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; 502 when it is not one or reports an error inside."""
    try:
        payload = response.json()
    except ValueError:
        raise UpstreamUnavailable("upstream returned a body that is not JSON") from None
    if not isinstance(payload, dict):
        raise UpstreamUnavailable("upstream returned an unexpected JSON body")
    error = payload.get("error")
    if error and not ("choices" in payload or "content" in payload):
        # z.ai sometimes reports a failure inside a 200 answer.
        raise UpstreamUnavailable(f"upstream error: {c.error_message(error)}")
    return payload


def _auth_headers(endpoint: Endpoint, api_key: str, extra: dict[str, str]) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if endpoint is Endpoint.ANTHROPIC:
        headers["x-api-key"] = api_key
        headers["anthropic-version"] = ANTHROPIC_VERSION
        headers.update({k: v for k, v in extra.items() if k.lower() in FORWARDED_ANTHROPIC_HEADERS})
    else:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def status_error(response: requests.Response) -> ProxyError:
    """An upstream error status as a ProxyError: 4xx kept, 5xx → 502, 429 keeps Retry-After."""
    message, code = _error_message(response)
    status = response.status_code
    if status >= 500:
        return UpstreamError(
            f"upstream error {status}: {message}", status=502, kind=ErrorKind.API, code=code
        )
    retry_after = (
        (response.headers.get("Retry-After") or DEFAULT_RETRY_AFTER) if status == 429 else None
    )
    return UpstreamError(
        message, status=status, kind=kind_for_status(status), code=code, retry_after=retry_after
    )


def _error_message(response: requests.Response) -> tuple[str, str | None]:
    """The message and z.ai code from either upstream error shape, or the raw text."""
    try:
        payload = response.json()
    except ValueError:
        return (response.text[:500] or response.reason or "upstream error"), None
    error = payload.get("error", payload) if isinstance(payload, dict) else payload
    code = error.get("code") if isinstance(error, dict) else None
    return c.error_message(error), None if code is None else str(code)
