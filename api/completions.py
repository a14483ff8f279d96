"""The completion routes: chat completions, messages and count_tokens.

Each view parses its wire format into the canonical request and hands it to `complete`, which
routes it, calls the upstream and renders the answer back in the client's own format.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from flask import Blueprint, Response, request

from api.auth import upstream_key
from api.body import read_json_body
from api.services import Services, get_services
from context.scaling import (
    sanitize_events,
    sanitize_usage,
    scale_count,
    scale_events,
    scale_factor,
    scale_response,
)
from context.validation import validate_conversation
from errors import BadRequest
from upstream import anthropic_format, openai_format
from upstream import canonical as c
from upstream.routing import choose_route

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
    factor = scale_factor(client.expected_window, route.window)
    estimate = services.counter.count_request(canonical)
    forwarded = {k: v for k, v in request.headers.items() if k.lower().startswith("anthropic-")}
    logger.debug(
        "route endpoint=%s model=%s stream=%s estimate=%d",
        route.endpoint.value,
        route.model,
        bool(canonical.get("stream")),
        estimate,
    )
    if canonical.get("stream"):
        events = services.upstream.open_stream(route, canonical, key, estimate, forwarded)
        checked = sanitize_events(events, estimate, route.window)
        frames = client.render_stream(scale_events(checked, factor), route.requested_model)
        return _sse_response(frames, events)
    response = services.upstream.complete(route, canonical, key, forwarded)
    response["usage"] = sanitize_usage(response["usage"], estimate, route.window)
    body = client.render_response(scale_response(response, factor), route.requested_model)
    return Response(json.dumps(body, ensure_ascii=False), mimetype="application/json")


def _sse_response(frames: Iterator[bytes], upstream_events: Iterator[c.StreamEvent]) -> Response:
    """Stream frames with every header set up front; the upstream is released however it ends."""

    def body() -> Iterator[bytes]:
        try:
            yield from frames
        finally:
            # Runs when the stream ends and when the WSGI server closes us on client disconnect.
            upstream_events.close()  # type: ignore[attr-defined]

    return Response(body(), status=200, mimetype="text/event-stream", headers=SSE_HEADERS)
