"""Sending a chat-completions request and reading its SSE as it arrives, for integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import requests

from upstream.sse import iter_sse


def iter_sse_data(response: requests.Response) -> Iterator[Any]:
    """Each event's parsed `data` as the bytes arrive ("[DONE]" stays a string)."""
    for event in iter_sse(response.iter_content(chunk_size=None)):
        yield event.data if event.data == "[DONE]" else event.json()


def text_of(chunk: Any) -> str:
    """The content text a chat.completion.chunk carries."""
    return "".join(choice["delta"].get("content") or "" for choice in chunk["choices"])


HEADERS = {"Authorization": "Bearer sk-test"}


def chat(url: str, *, stream: bool, model: str = "glm-4.6") -> requests.Response:
    """POST a one-line chat to the server at `url`; a stream is read by the caller."""
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
    return requests.post(
        url + "/v1/chat/completions", json=body, headers=HEADERS, stream=stream, timeout=(5, 5)
    )
