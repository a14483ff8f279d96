"""The completion routes: chat completions, messages and count_tokens.

Each view parses its wire format into the canonical request and hands it to `complete`, which
has the ContextManager route and fit it, calls the upstream (`calls.py`: one smaller retry
after an overflow answer) and renders the answer in the client's own format with its
context_info; streams are `streams.py`'s.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from flask import Blueprint, Response, request

from api.auth import upstream_key
from api.body import read_json_body
from api.calls import UpstreamCall, usage_report
from api.client_format import ClientFormat
from api.limits import check_limits
from api.services import Services, get_services
from api.streams import stream_response
from config import Settings
from context.scaling import scale_count, scale_factor
from context.validation import validate_conversation
from errors import BadRequest
from upstream import anthropic_format, openai_format
from upstream import canonical as c
from upstream.routing import Route, fit_to_route
from upstream.sse import json_bytes

logger = logging.getLogger(__name__)

bp = Blueprint("completions", __name__)


@bp.post("/v1/chat/completions")
def chat_completions() -> Response:
    services = get_services()
    settings = services.settings
    key = upstream_key(request.headers, settings)
    body = _read_body(settings)
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
    canonical = anthropic_format.parse_request(_read_body(settings))
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
    body = _read_body(settings)
    canonical = anthropic_format.parse_request(body, require_max_tokens=False)
    canonical, route = _routed(services, canonical)
    factor = scale_factor(settings.anthropic_expected_tokens, route.window)
    # count_tokens never calls the upstream: the size the context manager would forward.
    return {
        "input_tokens": scale_count(services.context.predict_input_tokens(canonical, route), factor)
    }


def _routed(services: Services, canonical: c.Request) -> tuple[c.Request, Route]:
    """The route for a request, and the request as that upstream takes it (counted so)."""
    route = services.context.route(canonical)
    return fit_to_route(canonical, route), route


def _read_body(settings: Settings) -> dict[str, Any]:
    """The client's JSON body, within the size limit and the request limits (api/limits.py)."""
    body = read_json_body(settings.max_request_bytes)
    check_limits(body, settings)
    return body


def complete(services: Services, canonical: c.Request, client: ClientFormat, key: str) -> Response:
    """Fit a canonical request, send it upstream and answer in the client's format."""
    if problems := validate_conversation(canonical["messages"], canonical.get("system")):  # type: ignore[arg-type]
        raise BadRequest("conversation is not valid: " + "; ".join(problems[:5]), param="messages")
    context = services.context
    canonical, route = _routed(services, canonical)
    prepared = context.prepare(canonical, route, scale_factor(client.expected_window, route.window))
    call = UpstreamCall(services, key, _forwarded_headers())
    logger.debug(
        "route endpoint=%s model=%s stream=%s estimate=%d risk=%s",
        route.endpoint.value,
        route.model,
        bool(canonical.get("stream")),
        prepared.info.estimated_input_tokens,
        prepared.info.risk_level.value,
    )
    if canonical.get("stream"):
        return stream_response(call, prepared, client)
    # A JSON answer starts only when it is whole: slow work (condensation) simply runs first.
    prepared, response = call.with_retry(context.finish(prepared, call.summary_key), call.complete)
    report = usage_report(services.settings, prepared)
    body = client.render_response(report.response(response), route.requested_model)
    body["context_info"] = prepared.info.to_dict()
    return Response(json_bytes(body), mimetype="application/json", headers=prepared.info.headers())


def _forwarded_headers() -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower().startswith("anthropic-")}
