"""Hypothesis strategies for fuzzing the client APIs: valid bodies of both formats, and breakage.

A drawn `Case` is one request: the API it goes to, the raw bytes of its body, its headers, and
whether a client could rightly expect a 2xx (a valid body with a key). Valid bodies are built
from what real clients send (text, small base64 PNGs, tool calls with their results, tools,
system prompts, thinking, streaming); broken ones mutate a valid body (a value replaced by junk,
a field dropped or added, messages shuffled, nesting, bad base64), replace it with other JSON,
or corrupt its bytes. Used by tests/api/test_fuzz.py and benchmarks/fuzz.py.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"

# Real PNGs (1×1 and 2×2), and data that is not base64 or not an image.
PNG_1 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)
PNG_2 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJ"
    "RU5ErkJggg=="
)
BAD_BASE64 = ["!!not base64!!", "iVBOR", "====", "aGVsbG8=", " ", "\u00e9\u00e9", PNG_1[:-3]]

MODELS = [
    "glm-4.6",
    "glm-4.6-anthropic",
    "glm-4.6-openai",
    "glm-4.6v",
    "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5",
]
TOOL_NAMES = ["get_weather", "read_file", "run_tests"]
# Strings that have broken parsers, tokenizers and encoders elsewhere.
ODD_STRINGS = [
    "",
    " ",
    "\n\t",
    "\x00",
    "\ud800",
    "a\udfffb",
    "\ufeff",
    "<|endoftext|>",
    "[gMASK]<sop><|user|>",
    "data: [DONE]\n\n",
    "event: error\ndata: {}\n\n",
    "🙂" * 20,
    "\u202e\u0301\u200d",
    "null",
    "{}",
    "x" * 3000,
]
# Keys the parsers look for, so junk dicts sometimes look almost right.
KEYS = [
    "type", "role", "content", "text", "id", "name", "input", "source", "data", "media_type",
    "url", "image_url", "tool_use_id", "tool_call_id", "tool_calls", "function", "arguments",
    "thinking", "signature", "budget_tokens", "max_tokens", "messages", "model", "stream",
    "system", "tools", "tool_choice", "is_error", "parameters", "input_schema",
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One request to send: path, raw body, headers, and whether only a 2xx answer is right."""

    path: str
    body: bytes
    valid: bool
    kind: str  # how it was made: "valid", "replace", "raw", … (for the histogram)
    headers: dict[str, str] = field(default_factory=dict)


# ============================================================================ building blocks

plain_text = st.text(min_size=1, max_size=30).filter(lambda s: bool(s.strip()))
any_text = st.one_of(st.text(max_size=30), st.sampled_from(ODD_STRINGS))
huge_ints = st.sampled_from([2**31, 2**63, 10**30, -(2**63), 10**300])
junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
junk = st.recursive(
    junk_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6)), children, max_size=3
        ),
    ),
    max_leaves=6,
)
tool_input = st.dictionaries(
    st.text(min_size=1, max_size=8), st.one_of(st.integers(), plain_text, st.booleans()), max_size=3
)


def _schema(name: str) -> dict[str, Any]:
    return {"type": "object", "properties": {"arg": {"type": "string"}}, "title": name}


# ============================================================================ Anthropic bodies


def _anthropic_image(data: str) -> dict[str, Any]:
    return {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}


anthropic_user_block = st.one_of(
    plain_text.map(lambda t: {"type": "text", "text": t}),
    st.sampled_from([PNG_1, PNG_2]).map(_anthropic_image),
    st.just({"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}),
)


@st.composite
def anthropic_tool_result(draw: st.DrawFn, tool_id: str) -> dict[str, Any]:
    """A tool_result answering `tool_id`: text, text blocks or an image."""
    content = draw(
        st.one_of(
            plain_text,
            st.lists(plain_text.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=2),
            st.just([_anthropic_image(PNG_1)]),
        )
    )
    result = {"type": "tool_result", "tool_use_id": tool_id, "content": content}
    if draw(st.booleans()):
        result["is_error"] = draw(st.booleans())
    return result


@st.composite
def anthropic_assistant_blocks(draw: st.DrawFn, turn: int, tools: list[str]) -> list[Any]:
    """An assistant turn: maybe thinking, maybe text, maybe tool calls (at least one block)."""
    blocks: list[dict[str, Any]] = []
    if draw(st.booleans()):
        blocks.append({"type": "thinking", "thinking": draw(plain_text), "signature": "sig"})
    if draw(st.booleans()):
        blocks.append({"type": "text", "text": draw(plain_text)})
    calls = draw(st.integers(0, 2)) if tools else 0
    for k in range(calls):
        name = draw(st.sampled_from(tools))
        blocks.append(
            {"type": "tool_use", "id": f"toolu_{turn}_{k}", "name": name, "input": draw(tool_input)}
        )
    if not blocks or blocks[-1]["type"] == "thinking":
        blocks.append({"type": "text", "text": draw(plain_text)})
    return blocks


@st.composite
def anthropic_messages(draw: st.DrawFn, tools: list[str]) -> list[dict[str, Any]]:
    """A conversation that opens with a user turn; every tool_use answered in the next turn."""
    messages: list[dict[str, Any]] = []
    pending: list[str] = []
    for turn in range(draw(st.integers(1, 4))):
        content = [draw(anthropic_tool_result(tool_id)) for tool_id in pending]
        content += draw(st.lists(anthropic_user_block, min_size=0 if pending else 1, max_size=2))
        plain = len(content) == 1 and content[0]["type"] == "text" and draw(st.booleans())
        messages.append({"role": "user", "content": content[0]["text"] if plain else content})
        if turn and not draw(st.integers(0, 3)):
            break
        blocks = draw(anthropic_assistant_blocks(turn, tools))
        pending = [b["id"] for b in blocks if b["type"] == "tool_use"]
        messages.append({"role": "assistant", "content": blocks})
    if messages[-1]["role"] == "assistant":
        # A tool call the client still has to run, or a plain prefill the model continues.
        if pending:
            content = [draw(anthropic_tool_result(tool_id)) for tool_id in pending]
            messages.append({"role": "user", "content": content})
        elif draw(st.booleans()):
            messages.pop()
    return messages


@st.composite
def anthropic_body(draw: st.DrawFn) -> dict[str, Any]:
    """A valid Messages body, with the options real clients send."""
    tools = draw(st.lists(st.sampled_from(TOOL_NAMES), unique=True, max_size=3))
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(MODELS)),
        "max_tokens": draw(st.integers(1, 32000)),
        "messages": draw(anthropic_messages(tools)),
    }
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
    if draw(st.booleans()):
        body["system"] = draw(
            st.one_of(
                plain_text,
                st.lists(plain_text.map(lambda t: {"type": "text", "text": t}), max_size=2),
            )
        )
    if tools:
        body["tools"] = [
            {"name": n, "description": f"{n} tool", "input_schema": _schema(n)} for n in tools
        ]
        body["tool_choice"] = draw(
            st.sampled_from(
                [
                    {"type": "auto"},
                    {"type": "any"},
                    {"type": "none"},
                    {"type": "tool", "name": tools[0]},
                ]
            )
        )
    options = {
        "temperature": st.floats(0, 1),
        "top_p": st.floats(0, 1),
        "top_k": st.integers(0, 100),
        "stop_sequences": st.lists(plain_text, max_size=2),
        "metadata": st.just({"user_id": "user-1"}),
        "thinking": st.one_of(
            st.integers(1024, 40000).map(lambda n: {"type": "enabled", "budget_tokens": n}),
            st.sampled_from([{"type": "disabled"}, {"type": "adaptive"}]),
        ),
    }
    for name in draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=3)):
        body[name] = draw(options[name])
    return body


# ============================================================================ OpenAI bodies


def _image_part(url: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url}}


openai_user_part = st.one_of(
    plain_text.map(lambda t: {"type": "text", "text": t}),
    st.sampled_from([PNG_1, PNG_2]).map(lambda d: _image_part(f"data:image/png;base64,{d}")),
    st.just(_image_part("https://example.com/cat.png")),
    st.just({"type": "image_url", "image_url": "data:image/jpg;base64," + PNG_1}),
)


@st.composite
def openai_user(draw: st.DrawFn) -> dict[str, Any]:
    """A user message: a string or a list of text and image parts."""
    content = draw(st.one_of(plain_text, st.lists(openai_user_part, min_size=1, max_size=3)))
    message = {"role": "user", "content": content}
    if draw(st.booleans()):
        message["name"] = "alice"
    return message


@st.composite
def openai_assistant(draw: st.DrawFn, turn: int, tools: list[str]) -> dict[str, Any]:
    """An assistant message: text, reasoning and/or tool calls (content or calls, never none)."""
    calls = [
        {
            "id": f"call_{turn}_{k}",
            "type": "function",
            "function": {"name": draw(st.sampled_from(tools)), "arguments": json.dumps(args)},
        }
        for k, args in enumerate(draw(st.lists(tool_input, max_size=2 if tools else 0)))
    ]
    message: dict[str, Any] = {"role": "assistant", "content": draw(plain_text)}
    if calls:
        message["tool_calls"] = calls
        message["content"] = draw(st.one_of(st.none(), st.just(""), plain_text))
    if draw(st.booleans()):
        message["reasoning_content"] = draw(plain_text)
    return message


@st.composite
def openai_messages(draw: st.DrawFn, tools: list[str]) -> list[dict[str, Any]]:
    """System first (maybe), then user/assistant turns with every tool call answered."""
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        role = draw(st.sampled_from(["system", "developer"]))
        text = draw(plain_text)
        content = text if draw(st.booleans()) else [{"type": "text", "text": text}]
        messages.append({"role": role, "content": content})
    for turn in range(draw(st.integers(1, 4))):
        messages.append(draw(openai_user()))
        if turn and not draw(st.integers(0, 3)):
            break
        assistant = draw(openai_assistant(turn, tools))
        messages.append(assistant)
        for call in assistant.get("tool_calls", []):
            messages.append(
                {"role": "tool", "tool_call_id": call["id"], "content": draw(plain_text)}
            )
    if messages[-1]["role"] == "assistant" and draw(st.booleans()):
        messages.append(draw(openai_user()))
    return messages


@st.composite
def openai_body(draw: st.DrawFn) -> dict[str, Any]:
    """A valid chat-completions body, with the options real clients send."""
    tools = draw(st.lists(st.sampled_from(TOOL_NAMES), unique=True, max_size=3))
    body: dict[str, Any] = {
        "model": draw(st.sampled_from(MODELS)),
        "messages": draw(openai_messages(tools)),
    }
    if draw(st.booleans()):
        body["stream"] = draw(st.booleans())
        if body["stream"] and draw(st.booleans()):
            body["stream_options"] = {"include_usage": draw(st.booleans())}
    if tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": n, "description": f"{n} tool", "parameters": _schema(n)},
            }
            for n in tools
        ]
        body["tool_choice"] = draw(
            st.sampled_from(
                ["auto", "none", "required", {"type": "function", "function": {"name": tools[0]}}]
            )
        )
        if draw(st.booleans()):
            body["parallel_tool_calls"] = draw(st.booleans())
    options = {
        "max_tokens": st.integers(1, 32000),
        "max_completion_tokens": st.integers(1, 32000),
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "n": st.just(1),
        "stop": st.one_of(plain_text, st.lists(plain_text, max_size=4)),
        "reasoning_effort": st.sampled_from(["none", "minimal", "low", "medium", "high"]),
        "thinking": st.sampled_from([{"type": "enabled"}, {"type": "disabled"}]),
        "user": plain_text,
        "seed": st.integers(0, 2**31),
        "presence_penalty": st.floats(-2, 2),
        "response_format": st.just({"type": "text"}),
    }
    for name in draw(st.lists(st.sampled_from(sorted(options)), unique=True, max_size=4)):
        body[name] = draw(options[name])
    return body


# ============================================================================ breakage


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `value` (the root excluded)."""
    items = value.items() if isinstance(value, dict) else enumerate(value)
    paths = []
    for key, child in items:
        paths.append((*prefix, key))
        if isinstance(child, dict | list):
            paths += _paths(child, (*prefix, key))
    return paths


def _parent(body: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        body = body[key]
    return body


@st.composite
def mutated(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> tuple[str, Any]:
    """A valid body broken in one to three places: (how, the broken JSON value)."""
    body = copy.deepcopy(draw(valid))
    hows = draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3))
    for how in hows:
        _mutate(draw, body, how)
    return hows[0] if len(hows) == 1 else "several", body


MUTATIONS = [
    "replace",
    "replace",
    "delete",
    "insert",
    "copy",
    "extreme",
    "nest",
    "shuffle",
    "base64",
]
# Numbers at the edges of what parsers, budgets and windows handle.
EXTREMES = [0, -1, 1, 65536, 200_000, 2**31, 2**63, 10**30, 1e308, -1e-308, 0.5, True]
NUMERIC_FIELDS = ["max_tokens", "max_completion_tokens", "budget_tokens", "top_k", "temperature"]


def _mutate(draw: st.DrawFn, body: dict[str, Any], how: str) -> None:
    paths = _paths(body)
    if not paths:
        return
    path = draw(st.sampled_from(paths))
    parent, key = _parent(body, path), path[-1]
    if how == "replace":
        parent[key] = draw(junk)
    elif how == "delete":
        del parent[key]
    elif how == "insert":
        target = parent[key] if isinstance(parent[key], dict) else body
        target[draw(st.sampled_from(KEYS))] = draw(junk)
    elif how == "copy" and isinstance(parent, list):
        parent.insert(draw(st.integers(0, len(parent))), copy.deepcopy(parent[key]))
    elif how == "extreme":
        _set_everywhere(
            body, draw(st.sampled_from(NUMERIC_FIELDS)), draw(st.sampled_from(EXTREMES))
        )
    elif how == "nest":
        parent[key] = _nested(parent[key], draw(st.integers(1, 80)))
    elif how == "shuffle" and isinstance(body.get("messages"), list):
        messages = draw(st.permutations(body["messages"]))
        body["messages"] = messages[draw(st.integers(0, 1)) :] or messages
    elif how == "base64":
        _break_images(body, draw(st.sampled_from(BAD_BASE64)))


def _nested(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = [value]
    return value


def _set_everywhere(value: Any, name: str, number: Any) -> None:
    """Set every field called `name` in `value` (the top level always) to `number`."""
    if isinstance(value, dict):
        value[name] = number
    _set_nested(value, name, number)


def _set_nested(value: Any, name: str, number: Any) -> None:
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    for child in children:
        if isinstance(child, dict) and name in child:
            child[name] = number
        _set_nested(child, name, number)


def _break_images(value: Any, data: str) -> None:
    """Replace the data of every inline image (either format) in `value` by `data`."""
    if isinstance(value, list):
        for item in value:
            _break_images(item, data)
    elif isinstance(value, dict):
        source = value.get("source")
        if isinstance(source, dict) and "data" in source:
            source["data"] = data
        url = value.get("image_url")
        if isinstance(url, dict) and str(url.get("url", "")).startswith("data:"):
            url["url"] = "data:image/png;base64," + data
        for child in value.values():
            _break_images(child, data)


RAW_BODIES = [
    b"",
    b"{",
    b"null",
    b"[]",
    b'"text"',
    b"\xff\xfe{}",
    b"\xef\xbb\xbf{}",
    b'{"model": NaN}',
    b'{"max_tokens": ' + b"9" * 5000 + b"}",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
]


@st.composite
def raw_bytes(draw: st.DrawFn, valid: st.SearchStrategy[dict[str, Any]]) -> bytes:
    """Bytes that are not a JSON object: cut or corrupted JSON, other encodings, noise."""
    encoded = json.dumps(draw(valid)).encode()
    how = draw(st.sampled_from(["cut", "flip", "utf16", "noise", "table"]))
    if how == "cut":
        return encoded[: draw(st.integers(0, len(encoded) - 1))]
    if how == "flip":
        at = draw(st.integers(0, len(encoded) - 1))
        return encoded[:at] + draw(st.binary(min_size=1, max_size=3)) + encoded[at + 1 :]
    if how == "utf16":
        return encoded.decode().encode("utf-16")
    if how == "noise":
        return draw(st.binary(max_size=64))
    return draw(st.sampled_from(RAW_BODIES))


def _encode(value: Any) -> bytes:
    # allow_nan: Python clients really do send NaN/Infinity, and json.loads takes them.
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


@st.composite
def cases(draw: st.DrawFn, path: str) -> Case:
    """One request to `path`: valid (half the time) or broken in one of the ways above."""
    valid = openai_body() if path == CHAT else anthropic_body()
    kind = draw(st.sampled_from(["valid"] * 5 + ["mutated"] * 3 + ["other_json", "raw"]))
    headers = draw(_headers())
    if kind == "valid":
        return Case(path, _encode(draw(valid)), _keyed(headers), kind, headers)
    if kind == "mutated":
        how, body = draw(mutated(valid))
        return Case(path, _encode(body), False, how, headers)
    if kind == "other_json":
        return Case(path, _encode(draw(junk)), False, kind, headers)
    return Case(path, draw(raw_bytes(valid)), False, kind, headers)


@st.composite
def _headers(draw: st.DrawFn) -> dict[str, str]:
    """Mostly a bearer key; sometimes x-api-key (Anthropic clients), none, or a wrong scheme."""
    choice = draw(st.sampled_from(["bearer"] * 8 + ["x-api-key", "none", "basic"]))
    if choice == "x-api-key":
        return {"x-api-key": "sk-fuzz"}
    if choice == "none":
        return {}
    if choice == "basic":
        return {"Authorization": "Basic c2s6Zm9v"}
    return {"Authorization": "Bearer sk-fuzz"}


def _keyed(headers: dict[str, str]) -> bool:
    return "x-api-key" in headers or headers.get("Authorization", "").startswith("Bearer ")
