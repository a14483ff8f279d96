"""X-Request-Id: the client's when it is valid (short, printable), else a new one; echoed in the
response and carried by every log line of the request (logs.py), the summary and description
calls it causes included."""

from __future__ import annotations

from flask import Flask, Response, g, request

from logs import REQUEST_ID, new_request_id, valid_request_id

HEADER = "X-Request-Id"


def register_request_ids(app: Flask) -> None:
    """Assign each request its id first thing, and echo it on every answer."""

    def assign() -> None:
        request_id = valid_request_id(request.headers.get(HEADER)) or new_request_id()
        # Not reset at the end: a stream's body is produced after the request context is gone,
        # in the same thread, and its lines (and gunicorn's access line) still need the id.
        REQUEST_ID.set(request_id)
        g.request_id = request_id

    def echo(response: Response) -> Response:
        response.headers[HEADER] = g.get("request_id") or REQUEST_ID.get()
        return response

    app.before_request(assign)
    app.after_request(echo)
