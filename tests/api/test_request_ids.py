"""X-Request-Id (api/request_ids.py): kept when valid, made when not, echoed on every answer."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from logs import valid_request_id

ASK = {"model": "glm-4.6", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "/health", None, 200),
        ("GET", "/nowhere", None, 404),
        ("POST", "/v1/messages", {"model": "glm-4.6"}, 400),  # bad input: the id still comes back
        ("POST", "/v1/messages/count_tokens", ASK, 200),
    ],
)
def test_a_valid_incoming_id_is_echoed(
    client: FlaskClient, method: str, path: str, body: object, status: int
) -> None:
    headers = {"X-Request-Id": "client-trace-1", "x-api-key": "sk-client"}
    reply = client.open(path, method=method, json=body, headers=headers)
    assert reply.status_code == status
    assert reply.headers["X-Request-Id"] == "client-trace-1"


@pytest.mark.parametrize("incoming", [None, "has space", "x" * 300, "semi;colon"])
def test_a_missing_or_invalid_id_is_replaced_by_a_new_one(
    client: FlaskClient, incoming: str | None
) -> None:
    headers = {"X-Request-Id": incoming} if incoming is not None else {}
    first = client.get("/health", headers=headers).headers["X-Request-Id"]
    second = client.get("/health", headers=headers).headers["X-Request-Id"]
    assert first != incoming and valid_request_id(first) == first and len(first) == 32
    assert first != second
