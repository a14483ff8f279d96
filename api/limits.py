"""Input limits a request must keep before anything is done with it (each a clear 4xx).

A proxy that carries long sessions sees long histories, so the limits are generous; they exist
so that one absurd body cannot take a worker's memory or time: how many messages, how many
blocks in one message, how deep the JSON nests, how big an image is once decoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from config import Settings
from errors import BadRequest, PayloadTooLarge

DATA_URL_MARK = ";base64,"


def check_limits(body: dict[str, Any], settings: Settings) -> None:
    """Raise the 4xx naming the first limit `body` breaks (Anthropic or OpenAI shape)."""
    depth = json_depth(body, settings.max_json_depth)
    if depth > settings.max_json_depth:
        raise BadRequest(
            f"request body nests JSON more than {settings.max_json_depth} levels deep "
            "(MAX_JSON_DEPTH)"
        )
    messages = body.get("messages")
    if not isinstance(messages, list):
        return  # the parser names what is wrong with it
    if len(messages) > settings.max_messages:
        raise BadRequest(
            f"request has {len(messages)} messages; the limit is {settings.max_messages} "
            "(MAX_MESSAGES)",
            param="messages",
        )
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and len(content) > settings.max_content_blocks:
            raise BadRequest(
                f"messages[{i}] has {len(content)} content blocks; the limit is "
                f"{settings.max_content_blocks} (MAX_CONTENT_BLOCKS)",
                param=f"messages[{i}].content",
            )
    for size in _image_sizes(messages):
        if size > settings.max_image_bytes:
            raise PayloadTooLarge(
                f"an image is {size} bytes once decoded; the limit is {settings.max_image_bytes} "
                "(MAX_IMAGE_BYTES)"
            )


def json_depth(value: Any, limit: int) -> int:
    """How deep `value` nests (a scalar is 0), counting no further than `limit` + 1.

    >>> json_depth({"a": [1, {"b": []}]}, 64)
    4
    """
    deepest = 0
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            return depth
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _image_sizes(messages: list[Any]) -> Iterator[int]:
    """Decoded sizes of inline images (Anthropic base64 sources, OpenAI data URLs)."""
    for block in _blocks(messages):
        source = block.get("source")
        if isinstance(source, dict) and isinstance(source.get("data"), str):
            yield len(source["data"]) * 3 // 4
        url = block.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if isinstance(url, str) and url.startswith("data:") and DATA_URL_MARK in url:
            yield (len(url) - url.index(DATA_URL_MARK) - len(DATA_URL_MARK)) * 3 // 4


def _blocks(messages: list[Any]) -> Iterator[dict[str, Any]]:
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else ():
            if isinstance(block, dict):
                yield block
                inner = block.get("content")
                yield from (
                    (b for b in inner if isinstance(b, dict)) if isinstance(inner, list) else ()
                )
