"""Images in a canonical conversation: where they are, how recent, what identifies them, and
their replacement by description blocks. Pure functions over plain data.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from upstream import canonical as c

DESCRIPTION = "[Image: {text}]"
UNAVAILABLE = "description unavailable"
# The message text a description call is given as context, at most (the rest elided).
MAX_CONTEXT_CHARS = 4000

Place = tuple[int, int, int | None]  # message, block, part within a tool result (or None)


@dataclass(frozen=True)
class ImageSite:
    """One image of a conversation, and the text of the message that holds it."""

    place: Place
    image: c.ImageBlock
    context: str


def image_sites(messages: Sequence[c.Message]) -> list[ImageSite]:
    """Every image, in order: in content blocks and inside tool results' content."""
    sites: list[ImageSite] = []
    for m, message in enumerate(messages):
        if not c.has_image(message):
            continue
        context = message_text(message)
        for b, block in enumerate(message["content"]):
            if block["type"] == "image":
                sites.append(ImageSite((m, b, None), block, context))
            elif block["type"] == "tool_result" and isinstance(parts := block.get("content"), list):
                for p, part in enumerate(parts):
                    if part["type"] == "image":
                        sites.append(ImageSite((m, b, p), part, context))
    return sites


def message_text(message: c.Message) -> str:
    """The text of a message: its text blocks and its tool results' texts, in order."""
    texts: list[str] = []
    for block in message["content"]:
        if block["type"] == "text":
            texts.append(block["text"])
        elif block["type"] == "tool_result":
            content = block.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list):
                texts.extend(part["text"] for part in content if part["type"] == "text")
    return "\n".join(t for t in texts if t)


def image_identity(image: c.ImageBlock) -> bytes:
    """What an image is: its decoded bytes (the same whether they came as an Anthropic base64
    block or an OpenAI data: URL, whatever the line breaks), or the URL of a remote one."""
    source = image["source"]
    if source.get("type") == "url":
        return b"url:" + str(source.get("url", "")).encode()
    data = str(source.get("data", ""))
    try:
        return base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        return b"raw:" + data.encode()  # not base64: the text itself identifies it


def is_human_turn(message: c.Message) -> bool:
    """A user message with text (a person speaking), not one holding only tool results."""
    return message["role"] == "user" and any(
        block["type"] == "text" and block["text"].strip() for block in message["content"]
    )


def recent_start(messages: Sequence[c.Message], turns: int) -> int:
    """Where the last `turns` human turns begin (a turn runs until the next human message, so
    the tool results that follow it belong to it); len(messages) when `turns` is 0."""
    if turns <= 0:
        return len(messages)
    humans = [i for i, message in enumerate(messages) if is_human_turn(message)]
    return humans[-turns] if len(humans) >= turns else 0


def has_recent_image(messages: Sequence[c.Message], turns: int) -> bool:
    """True when an image sits in the last `turns` human turns."""
    return any(c.has_image(m) for m in messages[recent_start(messages, turns) :])


def description_block(text: str | None) -> c.TextBlock:
    """The clearly marked block that stands where an image was."""
    return {"type": "text", "text": DESCRIPTION.format(text=text or UNAVAILABLE)}


def with_descriptions(request: c.Request, texts: Mapping[Place, str | None]) -> c.Request:
    """The request with the image at each place of `texts` replaced by its description block
    (None: the placeholder). Images at other places stay; nothing else changes."""
    if not texts:
        return request
    by_message: dict[int, dict[tuple[int, int | None], str | None]] = {}
    for (m, b, p), text in texts.items():
        by_message.setdefault(m, {})[(b, p)] = text
    messages = list(request["messages"])
    for m, places in by_message.items():
        content = [_replaced(b, block, places) for b, block in enumerate(messages[m]["content"])]
        messages[m] = {"role": messages[m]["role"], "content": content}
    return request | {"messages": messages}


def _replaced(
    b: int, block: c.ContentBlock, places: Mapping[tuple[int, int | None], str | None]
) -> c.ContentBlock:
    if (b, None) in places:
        return description_block(places[(b, None)])
    content = block.get("content") if block["type"] == "tool_result" else None
    if not isinstance(content, list) or not any((b, p) in places for p in range(len(content))):
        return block
    parts: list[c.TextBlock | c.ImageBlock] = [
        description_block(places[(b, p)]) if (b, p) in places else part
        for p, part in enumerate(content)
    ]
    return block | {"content": parts}  # type: ignore[return-value]
