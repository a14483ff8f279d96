"""Reading a client's JSON body with the size limit and a clear 4xx for anything malformed."""

from __future__ import annotations

import json
from typing import Any

from flask import request

from errors import BadRequest, PayloadTooLarge


def read_json_body(max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; 413 over max_bytes, 400 when not a JSON object."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(
            f"request body is {request.content_length} bytes; the limit is {max_bytes}"
        )
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body is over the {max_bytes}-byte limit")
    if not raw.strip():
        raise BadRequest("request body is empty; send a JSON object")
    try:
        # Decode explicitly: json.loads(bytes) would guess UTF-16/32 from a byte-order mark.
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadRequest("request body is not UTF-8 encoded JSON") from None
    except RecursionError:
        raise BadRequest("request body nests JSON too deeply") from None
    except json.JSONDecodeError as exc:
        raise BadRequest(
            f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise BadRequest(f"request body is not acceptable JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body
