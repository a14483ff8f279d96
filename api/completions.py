"""The completion routes: chat completions, messages and count_tokens.

Each view parses its wire format into the canonical request and hands it to `complete`, which
routes it, calls the upstream and renders the answer back in the client's own format.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from flask import Blueprint, Response, request

from api.auth import upstream_key
from api.body import read_json_body
from api.services import Services, get_services
from config import Settings
from context.scaling import UsageReport, scale_count, scale_factor
from context.validation import validate_conversation
from errors import BadRequest, UpstreamError, UpstreamUnavailable
from upstream import anthropic_format, openai_format
from upstream import canonical as c
from upstream.routing import choose_route
from upstream.sse import json_bytes

logger = logging.getLogger(__name__)

bp = Blueprint("completions", __name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
    route = choose_route(canonical, settings)
    factor = scale_factor(settings.anthropic_expected_tokens, route.window)
    return {"input_tokens": scale_count(services.counter.count_request(canonical), factor)}


def complete(services: Services, canonical: c.Request, client: ClientFormat, key: str) -> Response:
    """Route a canonical request upstream and answer in the client's format, streaming or not."""
    if problems := validate_conversation(canonical["messages"], canonical.get("system")):  # type: ignore[arg-type]
        raise BadRequest("conversation is not valid: " + "; ".join(problems[:5]), param="messages")
    route = choose_route(canonical, services.settings)
    estimate = services.counter.count_request(canonical)
    report = UsageReport(estimate, route.window, scale_factor(client.expected_window, route.window))
    forwarded = {k: v for k, v in request.headers.items() if k.lower().startswith("anthropic-")}
    logger.debug(
        "route endpoint=%s model=%s stream=%s estimate=%d",
        route.endpoint.value,
        route.model,
        bool(canonical.get("stream")),
        estimate,
    )
    with _upstream_key_errors(services.settings):
        if canonical.get("stream"):
            events = services.upstream.open_stream(route, canonical, key, estimate, forwarded)
            return _sse_response(events, report, client, route.requested_model)
        response = services.upstream.complete(route, canonical, key, forwarded)
    body = client.render_response(report.response(response), route.requested_model)
    return Response(json_bytes(body), mimetype="application/json")


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


def _sse_response(
    events: Iterator[c.StreamEvent], report: UsageReport, client: ClientFormat, model: str
) -> Response:
    """Stream frames with every header set up front; the upstream is released however it ends."""

    def body() -> Iterator[bytes]:
        try:
            yield from client.render_stream(report.events(events), model)
        except Exception:  # the stream's boundary: nothing may end it without telling the client
            logger.exception("stream conversion failed")
            failure = c.error_event("the proxy could not convert the upstream stream")
            yield from client.render_stream(iter([failure]), model)
        finally:
            # Runs when the stream ends and when the WSGI server closes us on client disconnect.
            events.close()  # type: ignore[attr-defined]

    return Response(body(), status=200, mimetype="text/event-stream", headers=SSE_HEADERS)
