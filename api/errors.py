"""Render every error in the client's own format: Anthropic for /v1/messages*, OpenAI elsewhere."""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from errors import BadRequest, ErrorKind, ProxyError, kind_for_status

logger = logging.getLogger(__name__)

# OpenAI names a few kinds differently from Anthropic.
OPENAI_TYPES = {
    ErrorKind.TOO_LARGE: "invalid_request_error",
    ErrorKind.OVERLOADED: "server_error",
    ErrorKind.API: "server_error",
    ErrorKind.TIMEOUT: "timeout",
    ErrorKind.PERMISSION: "permission_error",
}


def wants_anthropic_errors(path: str) -> bool:
    """Anthropic-format clients call /v1/messages and its sub-routes."""
    return path.startswith("/v1/messages")


def error_body(error: ProxyError, anthropic: bool) -> dict[str, Any]:
    """The JSON error body a client of either format expects."""
    if anthropic:
        return {"type": "error", "error": {"type": error.kind.value, "message": error.message}}
    body = {
        "message": error.message,
        "type": OPENAI_TYPES.get(error.kind, error.kind.value),
        "param": error.param,
        "code": error.code,
    }
    return {"error": body}


def error_response(error: ProxyError) -> Response:
    """A JSON error response for the current request, Retry-After kept for 429."""
    body = error_body(error, wants_anthropic_errors(request.path))
    response = Response(json.dumps(body), status=error.status, mimetype="application/json")
    if error.retry_after:
        response.headers["Retry-After"] = error.retry_after
    return response


def _handle_proxy_error(error: ProxyError) -> Response:
    log = logger.warning if error.status >= 500 else logger.info
    log("request failed: status=%s kind=%s path=%s", error.status, error.kind.value, request.path)
    return error_response(error)


def _handle_http_exception(error: HTTPException) -> Response:
    # Werkzeug's own errors (404 route, 405 method, 413 body size) as JSON, never an HTML page.
    status = error.code or 500
    message = error.description or error.name
    if status == 413:
        message = "request body is larger than MAX_REQUEST_BYTES allows"
    return error_response(ProxyError(message, status=status, kind=kind_for_status(status)))


def _handle_recursion(error: RecursionError) -> Response:
    # JSON nested deeper than the interpreter can walk; json.loads accepts more than dumps does.
    del error
    return error_response(BadRequest("request body nests JSON too deeply"))


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn any raised error into a client-format JSON response."""
    app.register_error_handler(ProxyError, _handle_proxy_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(RecursionError, _handle_recursion)
