"""The completion routes: chat completions, messages and count_tokens.

Each view parses its wire format into the canonical request and hands it to `complete`, which
has the ContextManager route and fit it, calls the upstream (retrying once, smaller, after an
overflow answer) and renders the answer back in the client's own format with its context_info.

A stream's status and headers come from the decision made before the view returns, so errors
known by then are real HTTP statuses. Slow work (condensation) runs after the headers, with
keepalive comments; a failure after the headers is an SSE error event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from flask import Blueprint, Response, request

from api.auth import upstream_key
from api.body import read_json_body
from api.keepalive import Background
from api.services import Services, get_services
from config import Settings, UsageReporting
from context.manager import Prepared, PromptTooLongError
from context.overflow import is_overflow
from context.scaling import UsageReport, scale_count, scale_factor
from context.validation import validate_conversation
from errors import BadRequest, ProxyError, UpstreamError, UpstreamUnavailable
from upstream import anthropic_format, openai_format
from upstream import canonical as c
from upstream.sse import json_bytes

logger = logging.getLogger(__name__)

bp = Blueprint("completions", __name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
T = TypeVar("T")


@dataclass(frozen=True)
class ClientFormat:
    """How to answer one kind of client: its renderers and the window it expects."""

    render_response: Callable[[c.Response, str], dict[str, Any]]
    render_stream: Callable[[Iterable[c.StreamEvent], str], Iterator[bytes]]
    expected_window: int


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    services = get_services()
    settings = services.settings
    key = upstream_key(request.headers, settings)
    body = read_json_body(settings.max_request_bytes)
    canonical = openai_format.parse_request(body, settings.default_max_tokens)
    client = ClientFormat(
        openai_format.render_response,
        partial(openai_format.render_stream, include_usage=openai_format.wants_usage_chunk(body)),
        settings.openai_expected_tokens,
    )
    return complete(services, canonical, client, key)


@bp.post("/v1/messages")
def messages() -> Response:
    services = get_services()
    settings = services.settings
    key = upstream_key(request.headers, settings)
    canonical = anthropic_format.parse_request(read_json_body(settings.max_request_bytes))
    client = ClientFormat(
        anthropic_format.render_response,
        anthropic_format.render_stream,
        settings.anthropic_expected_tokens,
    )
    return complete(services, canonical, client, key)


@bp.post("/v1/messages/count_tokens")
def count_tokens() -> dict[str, int]:
    services = get_services()
    settings = services.settings
    upstream_key(request.headers, settings)
    body = read_json_body(settings.max_request_bytes)
    canonical = anthropic_format.parse_request(body, require_max_tokens=False)
    route = services.context.route(canonical)
    factor = scale_factor(settings.anthropic_expected_tokens, route.window)
    # count_tokens never calls the upstream: the size the context manager would forward.
    return {
        "input_tokens": scale_count(services.context.predict_input_tokens(canonical, route), factor)
    }


def complete(services: Services, canonical: c.Request, client: ClientFormat, key: str) -> Response:
    """Fit a canonical request, send it upstream and answer in the client's format."""
    if problems := validate_conversation(canonical["messages"], canonical.get("system")):  # type: ignore[arg-type]
        raise BadRequest("conversation is not valid: " + "; ".join(problems[:5]), param="messages")
    context = services.context
    route = context.route(canonical)
    prepared = context.prepare(canonical, route, scale_factor(client.expected_window, route.window))
    call = _UpstreamCall(services, key, _forwarded_headers())
    logger.debug(
        "route endpoint=%s model=%s stream=%s estimate=%d risk=%s",
        route.endpoint.value,
        route.model,
        bool(canonical.get("stream")),
        prepared.info.estimated_input_tokens,
        prepared.info.risk_level.value,
    )
    if canonical.get("stream"):
        return _stream(call, prepared, client)
    # A JSON answer starts only when it is whole: slow work (condensation) simply runs first.
    prepared, response = call.with_retry(context.finish(prepared), call.complete)
    report = _usage_report(services.settings, prepared)
    body = client.render_response(report.response(response), route.requested_model)
    body["context_info"] = prepared.info.to_dict()
    return Response(json_bytes(body), mimetype="application/json", headers=prepared.info.headers())


def _forwarded_headers() -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower().startswith("anthropic-")}


@dataclass(frozen=True)
class _UpstreamCall:
    """The upstream calls of one request, with the one smaller retry after an overflow answer."""

    services: Services
    key: str
    headers: dict[str, str]

    def complete(self, prepared: Prepared) -> c.Response:
        return self.services.upstream.complete(
            prepared.route, prepared.request, self.key, self.headers
        )

    def open_stream(self, prepared: Prepared) -> Iterator[c.StreamEvent]:
        return self.services.upstream.open_stream(
            prepared.route,
            prepared.request,
            self.key,
            prepared.info.estimated_input_tokens,
            self.headers,
        )

    def with_retry(self, prepared: Prepared, send: Callable[[Prepared], T]) -> tuple[Prepared, T]:
        """Send; after an overflow answer send once more, smaller; never a blind repeat."""
        context = self.services.context
        with _upstream_key_errors(self.services.settings):
            try:
                return prepared, send(prepared)
            except UpstreamError as error:
                retry = context.after_overflow(prepared, error.status, error.code, error.message)
                if retry is None:
                    raise _overflow_as_too_long(prepared, error) from None
            logger.info(
                "CONTEXT overflow answer: retrying once with %d tokens (was %d)",
                retry.info.estimated_input_tokens,
                prepared.info.estimated_input_tokens,
            )
            try:
                return retry, send(retry)
            except UpstreamError as error:
                raise _overflow_as_too_long(retry, error) from None


def _overflow_as_too_long(prepared: Prepared, error: UpstreamError) -> ProxyError:
    """An overflow we could not fix says "prompt is too long", the phrase clients act on."""
    if not is_overflow(error.status, error.code, error.message):
        return error
    return PromptTooLongError(
        f"prompt is too long: the upstream refused {prepared.info.estimated_input_tokens} "
        f"estimated tokens for a {prepared.route.window}-token window ({error.message})",
        param="messages",
        code=error.code,
    )


@contextmanager
def _upstream_key_errors(settings: Settings) -> Iterator[None]:
    """With PROXY_API_KEYS the upstream key is the proxy's own: z.ai refusing it is our fault."""
    try:
        yield
    except UpstreamError as error:
        if error.status in (401, 403) and settings.proxy_api_keys:
            logger.error("z.ai refused SERVER_API_KEY (status %s)", error.status)
            raise UpstreamUnavailable("the proxy's upstream credentials were refused") from None
        raise


def _usage_report(settings: Settings, prepared: Prepared) -> UsageReport:
    """How upstream usage is checked, described (USAGE_REPORTING) and scaled for the client."""
    info = prepared.info
    added = info.tokens_saved if settings.usage_reporting is UsageReporting.CONVERSATION else 0
    return UsageReport(info.estimated_input_tokens, info.context_limit, info.scale_factor, added)


# ---------------------------------------------------------------------------- streams


def _stream(call: _UpstreamCall, prepared: Prepared, client: ClientFormat) -> Response:
    """A stream response: the upstream opened now when no slow work is due, else after headers."""
    model = prepared.route.requested_model
    if not prepared.pending_condensation:
        prepared, events = call.with_retry(prepared, call.open_stream)
        body = _stream_body(call.services.settings, prepared, events, client, model)
    else:
        body = _slow_stream_body(call, prepared, client, model)
    headers = SSE_HEADERS | prepared.info.headers()
    return Response(body, status=200, mimetype="text/event-stream", headers=headers)


def _stream_body(
    settings: Settings,
    prepared: Prepared,
    events: Iterator[c.StreamEvent],
    client: ClientFormat,
    model: str,
) -> Iterator[bytes]:
    """Frames of an open upstream stream; the upstream is released however it ends."""
    report = _usage_report(settings, prepared)
    try:
        yield from client.render_stream(_with_info(report.events(events), prepared), model)
    except Exception:  # the stream's boundary: nothing may end it without telling the client
        logger.exception("stream conversion failed")
        failure = c.error_event("the proxy could not convert the upstream stream")
        yield from client.render_stream(iter([failure]), model)
    finally:
        # Runs when the stream ends and when the WSGI server closes us on client disconnect.
        events.close()  # type: ignore[attr-defined]


def _slow_stream_body(
    call: _UpstreamCall, prepared: Prepared, client: ClientFormat, model: str
) -> Iterator[bytes]:
    """Headers are out: finish the decision and open the upstream in the background, with
    keepalives until the first upstream event, then stream as usual."""
    settings = call.services.settings

    def job() -> tuple[Prepared, Iterator[c.StreamEvent]]:
        finished = call.services.context.finish(prepared)
        return _open_first_event(call, finished)

    background = Background(job, cleanup=lambda opened: opened[1].close())  # type: ignore[attr-defined]
    try:
        yield from background.keepalives(settings.keepalive_interval)
        try:
            finished, events = background.result()
        except ProxyError as error:
            yield from client.render_stream(iter([_error_event(error)]), model)
            return
        except Exception:
            logger.exception("stream preparation failed")
            failure = c.error_event("the proxy could not prepare the request")
            yield from client.render_stream(iter([failure]), model)
            return
        yield from _stream_body(settings, finished, events, client, model)
    finally:
        background.abandon()


def _open_first_event(
    call: _UpstreamCall, prepared: Prepared
) -> tuple[Prepared, Iterator[c.StreamEvent]]:
    """Open the stream and wait for its first event; an overflow error event there (no content
    sent yet, only comments) gets the same one smaller retry as an overflow status."""
    prepared, events = call.with_retry(prepared, call.open_stream)
    first = next(events, None)
    if first is not None and first["type"] == "error" and not prepared.info.overflow_retry:
        message = first["error"].get("message", "")
        retry = call.services.context.after_overflow(prepared, 400, None, message)
        if retry is not None:
            events.close()  # type: ignore[attr-defined]
            prepared, events = call.with_retry(retry, call.open_stream)
            first = next(events, None)
    return prepared, _chain(first, events)


def _chain(first: c.StreamEvent | None, rest: Iterator[c.StreamEvent]) -> Iterator[c.StreamEvent]:
    """`first` then `rest`, closing `rest` when the chain is closed."""
    try:
        if first is not None:
            yield first
        yield from rest
    finally:
        rest.close()  # type: ignore[attr-defined]


def _error_event(error: ProxyError) -> c.ErrorEvent:
    return c.error_event(error.message, error.kind.value)


def _with_info(events: Iterable[c.StreamEvent], prepared: Prepared) -> Iterator[c.StreamEvent]:
    """The events with context_info on message_delta (the final event that carries data)."""
    info = prepared.info.to_dict()
    for event in events:
        if event["type"] == "message_delta":
            yield event | {"context_info": info}
        else:
            yield event
