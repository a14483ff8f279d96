"""The OpenAI chat-completions wire format ⇄ the canonical (Anthropic-shaped) format.

parse_* reads the wire into canonical shapes; render_* writes canonical shapes onto the wire.
Requests and responses go both ways because this format sits on both edges: chat-completions
clients, and z.ai's OpenAI-format upstream (used for vision and by preference). `request`,
`response` and `stream` hold one kind of message each; `terms` the names they share.
"""

from upstream.openai_format.request import (
    parse_image_url,
    parse_request,
    render_request,
    wants_usage_chunk,
)
from upstream.openai_format.response import (
    parse_response,
    parse_usage,
    render_response,
    render_usage,
)
from upstream.openai_format.stream import parse_stream, render_stream
from upstream.openai_format.terms import render_tool_call

__all__ = [
    "parse_image_url",
    "parse_request",
    "parse_response",
    "parse_stream",
    "parse_usage",
    "render_request",
    "render_response",
    "render_stream",
    "render_tool_call",
    "render_usage",
    "wants_usage_chunk",
]
