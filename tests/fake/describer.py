"""The fake's vision model describing an image, as the proxy asks it to (issue 12).

A description request goes to a vision model on the OpenAI-format endpoint, and its last user
message holds exactly one image and text ending with "Describe the image." (the proxy's
instruction). Unless a reply is scripted, the fake answers with what it "sees": the image's
format, pixel size and a short digest of its bytes, so a test can tell which image a
description came from, in whatever request carries it later::

    A 640x400 PNG image (fake vision; bytes sha256 1a2b3c4d5e6f).

Its rules are its own: it never imports the proxy's code.
"""

from __future__ import annotations

import hashlib

from tests.fake.images import decode_data, image_size
from tests.fake.replies import Reply

NOTE = "description_request"
INSTRUCTION = "Describe the image."
FORMATS = ((b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"\xff\xd8", "JPEG"), (b"RIFF", "WebP"))


def described_image(body: object) -> bytes | None:
    """The image bytes a description request asks about; None for other requests."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    content = last.get("content") if isinstance(last, dict) else None
    if last.get("role") != "user" or not isinstance(content, list):
        return None
    urls = [
        p.get("image_url") for p in content if isinstance(p, dict) and p.get("type") == "image_url"
    ]
    texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    if len(urls) != 1 or not isinstance(urls[0], dict):
        return None
    if not any(isinstance(t, str) and t.rstrip().endswith(INSTRUCTION) for t in texts):
        return None
    return decode_data(str(urls[0].get("url", "")))


def image_digest(raw: bytes) -> str:
    """The short digest the fake's descriptions name an image by."""
    return hashlib.sha256(raw).hexdigest()[:12]


def description_reply(raw: bytes) -> Reply:
    """What the fake's vision model says of an image."""
    kind = next((name for magic, name in FORMATS if raw.startswith(magic)), "unknown")
    size = image_size(raw)
    shape = f"{size[0]}x{size[1]} " if size else ""
    return Reply(text=f"A {shape}{kind} image (fake vision; bytes sha256 {image_digest(raw)}).")
