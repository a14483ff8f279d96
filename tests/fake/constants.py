"""The fake's fixed settings: routes, models, context windows, sizes, and its JSON encoder."""

from __future__ import annotations

import json
from typing import Any

ANTHROPIC_PREFIX = "/api/anthropic"
OPENAI_PREFIX = "/api/coding/paas/v4"
ROUTES = {
    ANTHROPIC_PREFIX + "/v1/messages": "anthropic",
    OPENAI_PREFIX + "/chat/completions": "openai",
}
DEFAULT_MODELS = frozenset({"glm-4.6", "glm-4.6v", "glm-4.5-air", "glm-4.5v"})
VISION_MODELS = frozenset({"glm-4.6v", "glm-4.5v"})
DEFAULT_WINDOWS = {
    "glm-4.6": 200_000,
    "glm-4.6v": 65_536,
    "glm-4.5-air": 128_000,
    "glm-4.5v": 65_536,
}
DEFAULT_WINDOW = 200_000
ECHO_LIMIT = 2000  # characters of the echoed prompt, so huge prompts don't make huge replies
CHUNK_CHARS = 8  # characters per text/argument delta in streams
SIGNING_KEY = b"fake-zai-thinking:"
POLL_SECONDS = 0.01  # how often the accept loop checks for stop(): bounds teardown time
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
}
# One encoder, built once: json.dumps(separators=...) builds a new one per call, which dominated
# the cost of rendering a stream. Non-ASCII goes out as UTF-8, as the real APIs send it.
to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

Json = dict[str, Any]
