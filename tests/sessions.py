"""Agent sessions for context-management tests and benchmarks: deterministic, any size.

A session is what Claude Code or an OpenAI agent client sends after many tool rounds: a system
prompt, tool definitions, the task, then rounds of assistant turns (thinking, text, parallel
tool calls) and user turns of tool results (strings or block lists, now and then with an image
or the user's own words, or a system reminder). `agent_session` builds the Anthropic Messages
body; `openai_body` writes the same conversation as a chat-completions body. Both are plain
client JSON, built without the proxy's code.
"""

from __future__ import annotations

import base64
import json
import random
import struct
import zlib
from typing import Any

Json = dict[str, Any]

WORDS = (
    "the parser reads each config file and returns a dict of settings for the worker pool "
    "error handling retries the request after a backoff when the upstream answers busy "
    "tests cover the cache eviction path and the lock around the shared counter state "
    "refactor moves the validation into its own module so the view stays short and clear"
).split()
CODE_LINES = (
    "def load(path: str) -> dict[str, int]:",
    "    with open(path, encoding='utf-8') as handle:",
    "        return json.load(handle)",
    "for index, item in enumerate(items):",
    "    if item.size > LIMIT: raise ValueError(f'{index}: too big')",
    "class Worker(threading.Thread):",
    "    result = cache.get(key) or compute(key, timeout=30)",
    "assert response.status_code == 200, response.text",
)
CHINESE = "上下文管理会在对话过长时压缩较早的消息并保留任务说明与最近的工具调用结果"
TOOL_NAMES = ("read_file", "run_tests", "grep", "edit_file", "list_dir")
SIGNATURE_PREFIX = "sig-"


def png(width: int, height: int) -> bytes:
    """A real, decodable grey PNG of the given size."""
    row = b"\x00" + b"\x80" * width
    data = zlib.compress(row * height)

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload)
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def image_block(width: int = 280, height: int = 280) -> Json:
    """An Anthropic base64 image block of a grey PNG."""
    data = base64.b64encode(png(width, height)).decode()
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


def old_image_session(image: Json, text: str = "Here is the error dialog.") -> Json:
    """A short conversation whose image sits in the first of four human turns: one turn older
    than the default IMAGE_AGE_THRESHOLD (3), so the text model gets it described."""
    messages: list[Json] = [
        {"role": "user", "content": [{"type": "text", "text": text}, image]},
        {"role": "assistant", "content": [{"type": "text", "text": "I see it."}]},
    ]
    for i in range(3):
        messages.append(
            {"role": "user", "content": [{"type": "text", "text": f"Step {i + 1}: what next?"}]}
        )
        if i < 2:
            messages.append(
                {"role": "assistant", "content": [{"type": "text", "text": f"Do step {i + 2}."}]}
            )
    return {"model": "glm-4.6", "max_tokens": 512, "messages": messages}


def tool_definitions() -> list[Json]:
    """The session's tools, Anthropic-shaped."""
    return [
        {
            "name": name,
            "description": f"{name.replace('_', ' ')}: " + " ".join(WORDS[:24]),
            "input_schema": {
                "type": "object",
                "properties": {
                    "path": {"type": "string", "description": "workspace-relative path"},
                    "limit": {"type": "integer"},
                },
                "required": ["path"],
            },
        }
        for name in TOOL_NAMES
    ]


class _Writer:
    """Deterministic filler text of roughly a given token size (~4 characters a token)."""

    def __init__(self, rng: random.Random, chinese: bool) -> None:
        self.rng = rng
        self.chinese = chinese

    def prose(self, tokens: int) -> str:
        words = [self.rng.choice(WORDS) for _ in range(max(1, int(tokens * 0.8)))]
        text = " ".join(words).capitalize() + "."
        if self.chinese and self.rng.random() < 0.3:
            text += " " + CHINESE[: self.rng.randint(8, len(CHINESE))]
        return text

    def code(self, tokens: int) -> str:
        lines: list[str] = []
        while len(lines) * 10 < tokens:
            lines.append(self.rng.choice(CODE_LINES) + f"  # line {len(lines) + 1}")
        return "\n".join(lines)


def agent_session(
    target_tokens: int,
    seed: int = 0,
    *,
    images: bool = False,
    thinking: bool = True,
    chinese: bool = False,
    model: str = "glm-4.6",
    max_tokens: int = 8192,
    end_with: str = "tool_result",
) -> Json:
    """An Anthropic Messages body of about `target_tokens` (cl100k-ish), ending in a user turn.

    `end_with`: "tool_result" (Claude Code's usual last message) or "human" (a typed message).
    """
    rng = random.Random(seed)
    writer = _Writer(rng, chinese)
    messages: list[Json] = [
        {"role": "user", "content": "Task: " + writer.prose(120) + " Keep the public API."}
    ]
    size = 3000  # system prompt and tools
    call = 0
    while size < target_tokens:
        assistant, calls = _assistant_turn(rng, writer, thinking, call)
        call += len(calls)
        messages.append(assistant)
        user, tokens = _results_turn(rng, writer, calls, images)
        messages.append(user)
        size += tokens + 150
    if end_with == "human":
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Done."}]})
        messages.append({"role": "user", "content": "Now summarise what changed."})
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": "You are a careful coding agent. " + writer.prose(2000),
        "tools": tool_definitions(),
        "messages": messages,
    }


def more_rounds(tokens: int, seed: int) -> list[Json]:
    """About `tokens` of further tool rounds (assistant first), ids unlike any other session's:
    what the next turns of a client add to a conversation."""
    extra = agent_session(tokens, seed)["messages"][1:]
    for message in extra:
        for block in message["content"] if isinstance(message["content"], list) else []:
            for key in ("id", "tool_use_id"):
                if key in block:
                    block[key] = f"g{seed}_{block[key]}"
    return extra


def _assistant_turn(
    rng: random.Random, writer: _Writer, thinking: bool, first_call: int
) -> tuple[Json, list[tuple[str, str]]]:
    content: list[Json] = []
    if thinking and rng.random() < 0.5:
        thought = writer.prose(rng.randint(20, 120))
        signature = SIGNATURE_PREFIX + str(first_call)
        content.append({"type": "thinking", "thinking": thought, "signature": signature})
    if rng.random() < 0.6:
        content.append({"type": "text", "text": writer.prose(rng.randint(10, 80))})
    calls = []
    for n in range(rng.choice((1, 1, 1, 2, 3))):  # parallel tool calls now and then
        call_id = f"toolu_{first_call + n:05d}"
        name = rng.choice(TOOL_NAMES)
        calls.append((call_id, name))
        path = f"src/module_{rng.randint(1, 90)}.py"
        content.append(
            {"type": "tool_use", "id": call_id, "name": name, "input": {"path": path, "limit": 200}}
        )
    return {"role": "assistant", "content": content}, calls


def _results_turn(
    rng: random.Random, writer: _Writer, calls: list[tuple[str, str]], images: bool
) -> tuple[Json, int]:
    content: list[Json] = []
    tokens = 0
    for call_id, _ in calls:
        size = rng.choice((60, 200, 600, 1500, 3000))
        tokens += size
        text = writer.code(size) if rng.random() < 0.5 else writer.prose(size)
        result: Json = {"type": "tool_result", "tool_use_id": call_id}
        if rng.random() < 0.5:
            result["content"] = text
        else:
            result["content"] = [{"type": "text", "text": text}]
            if images and rng.random() < 0.2:
                result["content"].append(image_block(rng.choice((112, 280, 560)), 280))
                tokens += 300
        if rng.random() < 0.05:
            result["is_error"] = True
        content.append(result)
    roll = rng.random()
    if roll < 0.1:
        content.append({"type": "text", "text": "Also: " + writer.prose(30)})  # the user speaks
    elif roll < 0.15:
        reminder = "<system-reminder>\n" + writer.prose(40) + "\n</system-reminder>"
        content.append({"type": "text", "text": reminder})
    return {"role": "user", "content": content}, tokens


# ---------------------------------------------------------------------------- OpenAI shape


def openai_body(body: Json) -> Json:
    """The same conversation as a chat-completions body (thinking as reasoning_content)."""
    messages: list[Json] = [{"role": "system", "content": body["system"]}]
    for message in body["messages"]:
        content = message["content"]
        if isinstance(content, str):
            messages.append({"role": message["role"], "content": content})
        elif message["role"] == "assistant":
            messages.append(_openai_assistant(content))
        else:
            messages.extend(_openai_user(content))
    tools = [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t["description"],
                "parameters": t["input_schema"],
            },
        }
        for t in body.get("tools", [])
    ]
    out = {"model": body["model"], "max_tokens": body["max_tokens"], "messages": messages}
    return out | ({"tools": tools} if tools else {})


def _openai_assistant(content: list[Json]) -> Json:
    message: Json = {"role": "assistant", "content": None}
    texts = [b["text"] for b in content if b["type"] == "text"]
    reasoning = [b["thinking"] for b in content if b["type"] == "thinking"]
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": json.dumps(b["input"])},
        }
        for b in content
        if b["type"] == "tool_use"
    ]
    if texts:
        message["content"] = "".join(texts)
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = calls
    return message


def _openai_user(content: list[Json]) -> list[Json]:
    out: list[Json] = []
    parts: list[Json] = []
    for block in content:
        if block["type"] == "tool_result":
            inner = block.get("content", "")
            text = (
                inner
                if isinstance(inner, str)
                else "\n".join(p["text"] for p in inner if p["type"] == "text")
            )
            out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            for part in inner if isinstance(inner, list) else []:
                if part["type"] == "image":
                    parts.append(_openai_image(part))
        elif block["type"] == "text":
            parts.append({"type": "text", "text": block["text"]})
        elif block["type"] == "image":
            parts.append(_openai_image(block))
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _openai_image(block: Json) -> Json:
    source = block["source"]
    return {
        "type": "image_url",
        "image_url": {"url": f"data:{source['media_type']};base64,{source['data']}"},
    }
