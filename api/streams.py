"""Stream responses: status and headers from the decision, slow work behind keepalives.

The fast path opens the upstream before the response starts, so its errors are real HTTP
statuses. With slow work due (condensation, or a wait for an upstream gate slot), the headers go
out first; the work, the upstream's opening and its first event then run in the background while
`: keepalive` comments flow, and a failure from there on is an SSE error event in the client's
format.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from functools import partial

from flask import Response

from api.calls import UpstreamCall, input_tokens, usage_report
from api.client_format import ClientFormat
from api.keepalive import Background
from context.manager import ContextManager, Prepared
from errors import ProxyError
from metrics import Metrics
from upstream import canonical as c

logger = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def stream_response(call: UpstreamCall, prepared: Prepared, client: ClientFormat) -> Response:
    """A stream response: the upstream opened now when no slow work is due and a gate slot is
    free, else after the headers (behind keepalives)."""
    model = prepared.route.requested_model
    gate = call.services.upstream.gate
    slot = None if prepared.pending else gate.try_enter(call.key)
    if slot is not None:
        prepared, events = call.with_retry(prepared, partial(call.open_stream, slot=slot))
        body = _stream_body(call, prepared, events, client, model)
    else:
        body = _slow_stream_body(call, prepared, client, model)
    headers = SSE_HEADERS | prepared.info.headers()
    body = _counted(body, call.services.metrics)
    return Response(body, status=200, mimetype="text/event-stream", headers=headers)


def _counted(body: Iterator[bytes], metrics: Metrics | None) -> Iterator[bytes]:
    """The body, in the streams-in-flight gauge from its first byte to its end, however it
    ends (a client that leaves closes it)."""
    if metrics is None:
        yield from body
        return
    metrics.stream_opened()
    try:
        yield from body
    finally:
        metrics.stream_closed()


def _stream_body(
    call: UpstreamCall,
    prepared: Prepared,
    events: Iterator[c.StreamEvent],
    client: ClientFormat,
    model: str,
) -> Iterator[bytes]:
    """Frames of an open upstream stream; the upstream is released however it ends."""
    report = usage_report(call.services.settings, prepared)
    learned = _learning(events, call.services.context, prepared)
    try:
        yield from client.render_stream(_with_info(report.events(learned), prepared), model)
    except Exception:  # the stream's boundary: nothing may end it without telling the client
        logger.exception("stream conversion failed")
        failure = c.error_event("the proxy could not convert the upstream stream")
        yield from client.render_stream(iter([failure]), model)
    finally:
        # Runs when the stream ends and when the WSGI server closes us on client disconnect.
        events.close()  # type: ignore[attr-defined]


def _slow_stream_body(
    call: UpstreamCall, prepared: Prepared, client: ClientFormat, model: str
) -> Iterator[bytes]:
    """Headers are out: finish the decision and open the upstream in the background, with
    keepalives until the first upstream event, then stream as usual."""
    settings = call.services.settings

    def job() -> tuple[Prepared, Iterator[c.StreamEvent]]:
        finished = call.services.context.finish(prepared, call.summary_key)
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
        yield from _stream_body(call, finished, events, client, model)
    finally:
        background.abandon()


def _open_first_event(
    call: UpstreamCall, prepared: Prepared
) -> tuple[Prepared, Iterator[c.StreamEvent]]:
    """Open the stream and wait for its first event; an overflow error event there (no content
    sent yet, only comments) gets the same one smaller retry as an overflow status."""
    prepared, events = call.with_retry(prepared, call.open_stream)
    first = next(events, None)
    if first is not None and first["type"] == "error" and not prepared.info.overflow_retry:
        message = first["error"].get("message", "")
        retry = call.services.context.after_overflow(prepared, 400, None, message)
        if retry is not None:
            events.close()
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


def _learning(
    events: Iterable[c.StreamEvent], context: ContextManager, prepared: Prepared
) -> Iterator[c.StreamEvent]:
    """The events as they pass; at message_stop the upstream's input size is learned.

    The final usage (message_delta) is believed first; message_start's only when it is not the
    estimate the parser put in for an upstream that sent none.
    """
    start = final = 0
    for event in events:
        if event["type"] == "message_start":
            usage = event["message"]["usage"]
            # 0 when the parser put our own estimate in for an upstream that sent none
            given = usage.get("input_tokens") != prepared.info.estimated_input_tokens
            start = input_tokens(usage) if given else 0
        elif event["type"] == "message_delta":
            final = input_tokens(event.get("usage") or {})
        elif event["type"] == "message_stop":
            true = final or start
            if true:
                context.learn(prepared, true)
        yield event
