"""One exception family for every room: each error knows its status and kind, not its wire format.

The api/ handlers render a ProxyError in the client's own format (OpenAI or Anthropic).
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    """What went wrong, named as the Anthropic API names it; OpenAI rendering maps from here."""

    INVALID_REQUEST = "invalid_request_error"
    AUTHENTICATION = "authentication_error"
    PERMISSION = "permission_error"
    NOT_FOUND = "not_found_error"
    TOO_LARGE = "request_too_large"
    RATE_LIMIT = "rate_limit_error"
    API = "api_error"
    OVERLOADED = "overloaded_error"
    TIMEOUT = "timeout_error"


class ProxyError(Exception):
    """An error with an HTTP status that ends a request (or, mid-stream, becomes an error event)."""

    status: int = 500
    kind: ErrorKind = ErrorKind.API

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        status: int | None = None,
        kind: ErrorKind | None = None,
        code: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.message!r})"


class BadRequest(ProxyError):
    status = 400
    kind = ErrorKind.INVALID_REQUEST


class Unauthorized(ProxyError):
    status = 401
    kind = ErrorKind.AUTHENTICATION


class NotFound(ProxyError):
    status = 404
    kind = ErrorKind.NOT_FOUND


class PayloadTooLarge(ProxyError):
    status = 413
    kind = ErrorKind.TOO_LARGE


class UpstreamError(ProxyError):
    """z.ai answered with an error status; status and message are passed on to the client."""

    kind = ErrorKind.API


class UpstreamUnavailable(ProxyError):
    status = 502
    kind = ErrorKind.API


class UpstreamTimeout(ProxyError):
    status = 504
    kind = ErrorKind.TIMEOUT


def kind_for_status(status: int) -> ErrorKind:
    """The error kind a client expects for an HTTP status."""
    return _KIND_BY_STATUS.get(status, ErrorKind.INVALID_REQUEST if status < 500 else ErrorKind.API)


_KIND_BY_STATUS = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.AUTHENTICATION,
    403: ErrorKind.PERMISSION,
    404: ErrorKind.NOT_FOUND,
    413: ErrorKind.TOO_LARGE,
    429: ErrorKind.RATE_LIMIT,
    502: ErrorKind.API,
    503: ErrorKind.OVERLOADED,
    504: ErrorKind.TIMEOUT,
    529: ErrorKind.OVERLOADED,
}
