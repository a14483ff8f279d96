"""Table tests for the Anthropic wire format: client normalisation, and the OpenAI → Anthropic
stream conversion rendered as Messages SSE."""

from __future__ import annotations

import json
from typing import Any

import pytest

from errors import BadRequest
from tests.upstream.test_openai_format import call_delta, chunk, sse_lines
from upstream import anthropic_format as fmt
from upstream import openai_format
from upstream.sse import iter_sse

USER = {"role": "user", "content": "hi"}


def parse(**body: Any) -> dict[str, Any]:
    return fmt.parse_request({"model": "glm-4.6", "max_tokens": 2000, "messages": [USER], **body})  # type: ignore[return-value]


NORMALISE_CASES = [
    (
        "string content becomes a text block",
        {},
        lambda r: r["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    ),
    (
        "leading system message joins the system prompt",
        {"system": "base", "messages": [{"role": "system", "content": "extra"}, USER]},
        lambda r: [b["text"] for b in r["system"]] == ["base", "extra"] and len(r["messages"]) == 1,
    ),
    (
        "mid-conversation system message stays in place as a marked user note",
        {
            "messages": [
                USER,
                {"role": "assistant", "content": "ok"},
                {"role": "system", "content": "be terse"},
                {"role": "user", "content": "next"},
            ]
        },
        lambda r: (
            [m["role"] for m in r["messages"]] == ["user", "assistant", "user"]
            and "be terse" in r["messages"][2]["content"][0]["text"]
            and r["messages"][2]["content"][1]["text"] == "next"
        ),
    ),
    (
        "empty text blocks are dropped",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": " "}, {"type": "text", "text": "x"}],
                }
            ]
        },
        lambda r: r["messages"][0]["content"] == [{"type": "text", "text": "x"}],
    ),
    (
        "adaptive thinking becomes an explicit budget below max_tokens",
        {"thinking": {"type": "adaptive"}},
        lambda r: r["thinking"] == {"type": "enabled", "budget_tokens": 1999},
    ),
    (
        "thinking with no room under max_tokens is turned off",
        {"thinking": {"type": "enabled", "budget_tokens": 5000}, "max_tokens": 900},
        lambda r: r["thinking"] == {"type": "disabled"},
    ),
    (
        "unknown top-level fields are left out",
        {
            "context_management": {"edits": []},
            "output_config": {"effort": "low"},
            "service_tier": "auto",
        },
        lambda r: not {"context_management", "output_config", "service_tier"} & set(r),
    ),
    (
        "server tools are left out, client tools kept",
        {
            "tools": [
                {"type": "web_search_20250305", "name": "web_search"},
                {"name": "t", "input_schema": {"type": "object"}},
            ]
        },
        lambda r: r["tools"] == [{"name": "t", "input_schema": {"type": "object"}}],
    ),
    (
        "cache_control, metadata and stop_sequences pass through",
        {
            "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "metadata": {"user_id": "u"},
            "stop_sequences": ["END"],
        },
        lambda r: (
            r["system"][0]["cache_control"] == {"type": "ephemeral"}
            and r["metadata"] == {"user_id": "u"}
            and r["stop_sequences"] == ["END"]
        ),
    ),
    (
        "text documents become text",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "document", "source": {"type": "text", "data": "doc"}}],
                }
            ]
        },
        lambda r: r["messages"][0]["content"] == [{"type": "text", "text": "doc"}],
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "check"), NORMALISE_CASES, ids=[c[0] for c in NORMALISE_CASES]
)
def test_parse_request_normalises(name: str, body: dict, check) -> None:
    del name
    assert check(parse(**body))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}]},
            "messages[0].content[0].text",
        ),
        ({"system": [{"type": "image", "source": {}}]}, "system"),
        ({"thinking": {"type": "sometimes"}}, "thinking.type"),
        ({"tool_choice": {"type": "maybe"}}, "tool_choice.type"),
        ({"temperature": 1.5}, "temperature"),
        ({"stop_sequences": "END"}, None),
    ],
)
def test_parse_request_rejects_with_the_field_named(body: dict, param: str | None) -> None:
    if param is None:  # a bare string is accepted as one stop sequence
        assert parse(**body)["stop_sequences"] == ["END"]
        return
    with pytest.raises(BadRequest) as info:
        parse(**body)
    assert info.value.param == param


def test_count_tokens_shape_needs_no_max_tokens() -> None:
    request = fmt.parse_request({"model": "glm-4.6", "messages": [USER]}, require_max_tokens=False)
    assert request["messages"][0]["role"] == "user"


def test_unsigned_thinking_goes_upstream_as_plain_text_signed_stays() -> None:
    request = parse(
        messages=[
            USER,
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "from vision", "signature": ""},
                    {"type": "thinking", "thinking": "signed", "signature": "sig"},
                    {"type": "text", "text": "answer"},
                ],
            },
            {"role": "user", "content": "more"},
        ]
    )
    blocks = fmt.render_request(request, "glm-4.6")["messages"][1]["content"]  # type: ignore[arg-type]
    assert blocks[0] == {"type": "text", "text": "[earlier reasoning]\nfrom vision"}
    assert blocks[1] == {"type": "thinking", "thinking": "signed", "signature": "sig"}


# ------------------------------------------------------------- OpenAI stream → Messages SSE


def to_messages_sse(
    chunks: list[dict[str, Any]], done: bool = True
) -> list[tuple[str, dict[str, Any]]]:
    events = openai_format.parse_stream(sse_lines(chunks, done=done), input_estimate=55)
    frames = b"".join(fmt.render_stream(events, "claude-x"))
    return [(e.event, json.loads(e.data)) for e in iter_sse([frames])]


STREAM_CASES = [
    (
        "reasoning, text and two interleaved calls",
        [
            chunk({"role": "assistant"}),
            chunk({"reasoning_content": "hmm"}),
            chunk({"content": "Hi"}),
            chunk(call_delta(0, '{"a"', "c0", "f")),
            chunk(call_delta(1, '{"b"', "c1", "g")),
            chunk(call_delta(0, ":1}")),
            chunk(call_delta(1, ":2}")),
            chunk({"tool_calls": []}, "tool_calls"),
            chunk(None, usage={"prompt_tokens": 50, "completion_tokens": 9}),
        ],
        ["thinking", "text", "tool_use", "tool_use"],
        {2: {"a": 1}, 3: {"b": 2}},
        "tool_use",
    ),
    (
        "plain text with length stop",
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "abc"}),
            chunk({}, "length"),
        ],
        ["text"],
        {},
        "max_tokens",
    ),
]


@pytest.mark.parametrize(
    ("name", "chunks", "kinds", "inputs", "stop"), STREAM_CASES, ids=[c[0] for c in STREAM_CASES]
)
def test_openai_stream_renders_as_messages_sse(name, chunks, kinds, inputs, stop) -> None:
    del name
    events = to_messages_sse(chunks)
    assert all(event == data["type"] for event, data in events)
    assert events[0][1]["message"]["model"] == "claude-x"
    assert events[0][1]["message"]["usage"]["input_tokens"] == 55
    starts = [d for e, d in events if e == "content_block_start"]
    assert [d["content_block"]["type"] for d in starts] == kinds
    assert [d["index"] for d in starts] == list(range(len(kinds)))
    assert [d["index"] for e, d in events if e == "content_block_stop"] == list(range(len(kinds)))
    # Each block's deltas sit between its own start and stop.
    open_index = None
    for event, data in events:
        if event == "content_block_start":
            open_index = data["index"]
        elif event == "content_block_delta":
            assert data["index"] == open_index
        elif event == "content_block_stop":
            open_index = None
    for index, expected in inputs.items():
        pieces = [
            d["delta"]["partial_json"]
            for e, d in events
            if e == "content_block_delta" and d["index"] == index
        ]
        assert json.loads("".join(pieces)) == expected
    thinking_start = next((d for d in starts if d["content_block"]["type"] == "thinking"), None)
    if thinking_start:
        assert thinking_start["content_block"]["signature"] == ""
    assert events[-2][1]["delta"]["stop_reason"] == stop
    assert events[-1][0] == "message_stop"


def test_dropped_openai_stream_ends_in_an_error_event() -> None:
    events = to_messages_sse([chunk({"role": "assistant"}), chunk({"content": "par"})], done=False)
    assert events[-1][0] == "error"
    assert events[-1][1]["error"]["message"] == "upstream stream ended early"
    assert [e for e, _ in events].count("content_block_stop") == 1


def test_anthropic_upstream_stream_with_zero_input_tokens_gets_the_estimate() -> None:
    start = {
        "type": "message_start",
        "message": {"id": "m", "usage": {"input_tokens": 0, "output_tokens": 1}},
    }
    events = list(
        fmt.parse_stream(iter_sse([b"data: " + json.dumps(start).encode() + b"\n\n"]), 77)
    )
    assert events[0]["message"]["usage"]["input_tokens"] == 77  # type: ignore[typeddict-item]
    assert events[-1]["type"] == "error"


def test_tool_choice_naming_a_left_out_server_tool_is_left_out_too() -> None:
    request = parse(
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "tool", "name": "web_search"},
    )
    assert "tool_choice" not in request and "tools" not in request
