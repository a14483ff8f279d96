"""Table tests for the OpenAI wire format ⇄ canonical conversions, both directions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from errors import BadRequest
from upstream import openai_format as fmt
from upstream.sse import SSEEvent, iter_sse

PNG_DATA = "iVBORw0KGgo="


def parse(messages: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return fmt.parse_request({"model": "glm-4.6", "messages": messages, **extra}, 1000)  # type: ignore[return-value]


# ---------------------------------------------------------------------------- parse_request

PARSE_CASES = [
    (
        "plain user text",
        [{"role": "user", "content": "hi"}],
        None,
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    ),
    (
        "system messages become the system prompt",
        [
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "and kind"}]},
            {"role": "user", "content": "hi"},
        ],
        [{"type": "text", "text": "be brief"}, {"type": "text", "text": "and kind"}],
        [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    ),
    (
        "multi-part content with a data URL image and an http image",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                ],
            }
        ],
        None,
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG_DATA},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/a.jpg"},
                    },
                ],
            }
        ],
    ),
    (
        "parallel tool calls and merged tool messages",
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning_content": "two cities",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "c2",
                        "type": "function",
                        "function": {"name": "w", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "cold"},
            {"role": "tool", "tool_call_id": "c2", "content": [{"type": "text", "text": "warm"}]},
            {"role": "user", "content": "thanks"},
        ],
        None,
        [
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "two cities", "signature": ""},
                    {"type": "tool_use", "id": "c1", "name": "w", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "c2", "name": "w", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "c1", "content": "cold"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "c2",
                        "content": [{"type": "text", "text": "warm"}],
                    },
                    {"type": "text", "text": "thanks"},
                ],
            },
        ],
    ),
    (
        "empty assistant turn dropped, neighbours merged",
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "b"},
        ],
        None,
        [
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            }
        ],
    ),
    (
        "system message mid-conversation keeps its place as a marked note",
        [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "system", "content": "now be terse"},
            {"role": "user", "content": "c"},
        ],
        None,
        [
            {"role": "user", "content": [{"type": "text", "text": "a"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>\nnow be terse\n</system-reminder>"},
                    {"type": "text", "text": "c"},
                ],
            },
        ],
    ),
]


@pytest.mark.parametrize(
    ("name", "messages", "system", "expected"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES]
)
def test_parse_request_messages(
    name: str, messages: list, system: list | None, expected: list
) -> None:
    del name
    request = parse(messages)
    assert request["messages"] == expected
    assert request.get("system") == system


PARAM_CASES = [
    ({"max_tokens": 50}, {"max_tokens": 50}),
    ({"max_completion_tokens": 70, "max_tokens": 50}, {"max_tokens": 70}),
    ({}, {"max_tokens": 1000}),
    ({"stop": "END"}, {"stop_sequences": ["END"]}),
    ({"stop": ["a", "b"]}, {"stop_sequences": ["a", "b"]}),
    ({"temperature": 0.2, "top_p": 0.9}, {"temperature": 0.2, "top_p": 0.9}),
    ({"tool_choice": "required"}, {"tool_choice": {"type": "any"}}),
    ({"tool_choice": "none"}, {"tool_choice": {"type": "none"}}),
    (
        {"tool_choice": {"type": "function", "function": {"name": "w"}}},
        {"tool_choice": {"type": "tool", "name": "w"}},
    ),
    (
        {"parallel_tool_calls": False},
        {"tool_choice": {"type": "auto", "disable_parallel_tool_use": True}},
    ),
    (
        {"reasoning_effort": "high", "max_tokens": 50000},
        {"thinking": {"type": "enabled", "budget_tokens": 16384}},
    ),
    (
        {"thinking": {"type": "enabled"}, "max_tokens": 50000},
        {"thinking": {"type": "enabled", "budget_tokens": 8192}},
    ),
    ({"reasoning_effort": "high", "max_tokens": 100}, {"thinking": {"type": "disabled"}}),
    (
        {"thinking": {"type": "enabled"}, "max_tokens": 4000},
        {"thinking": {"type": "enabled", "budget_tokens": 3999}},
    ),
    ({"thinking": {"type": "disabled"}}, {"thinking": {"type": "disabled"}}),
    ({"stream": True}, {"stream": True}),
    ({"user": "u-1"}, {"metadata": {"user_id": "u-1"}}),
    (
        {
            "tools": [
                {
                    "type": "function",
                    "function": {"name": "w", "description": "d", "parameters": {"type": "object"}},
                }
            ]
        },
        {"tools": [{"name": "w", "description": "d", "input_schema": {"type": "object"}}]},
    ),
]


@pytest.mark.parametrize(("extra", "expected"), PARAM_CASES)
def test_parse_request_parameters(extra: dict, expected: dict) -> None:
    request = parse([{"role": "user", "content": "hi"}], **extra)
    for key, value in expected.items():
        assert request[key] == value  # type: ignore[literal-required]


BAD_BODIES = [
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "glm-4.6"}, "messages"),
    ({"model": "glm-4.6", "messages": []}, "messages"),
    ({"model": "glm-4.6", "messages": "hi"}, "messages"),
    ({"model": "glm-4.6", "messages": [5]}, "messages[0]"),
    ({"model": "glm-4.6", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "glm-4.6", "messages": [{"role": "user", "content": 7}]}, "messages[0].content"),
    (
        {"model": "glm-4.6", "messages": [{"role": "user", "content": [{"type": "audio"}]}]},
        "messages[0].content[0].type",
    ),
    (
        {
            "model": "glm-4.6",
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}],
                }
            ],
        },
        "messages[0].content[0].image_url.url",
    ),
    (
        {"model": "glm-4.6", "messages": [{"role": "tool", "content": "x"}]},
        "messages[0].tool_call_id",
    ),
    (
        {"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "max_tokens": "10"},
        "max_tokens",
    ),
    (
        {"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        "max_tokens",
    ),
    (
        {"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
        "temperature",
    ),
    (
        {"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "top_p": "high"},
        "top_p",
    ),
    (
        {"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
        "stream",
    ),
    ({"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
    ({"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "tools": {}}, "tools"),
    (
        {
            "model": "glm-4.6",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function"}],
        },
        "tools[0].function",
    ),
    (
        {"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "tool_choice": 3},
        "tool_choice",
    ),
    ({"model": "glm-4.6", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    (
        {
            "model": "glm-4.6",
            "messages": [{"role": "user", "content": "x"}],
            "reasoning_effort": "max",
        },
        "reasoning_effort",
    ),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
def test_parse_request_rejects_with_the_field_named(body: dict, param: str) -> None:
    with pytest.raises(BadRequest) as info:
        fmt.parse_request(body, 1000)
    assert info.value.param == param
    assert param.split("[")[0] in info.value.message


# ---------------------------------------------------------------------------- render_request


def test_render_request_converts_every_canonical_part() -> None:
    canonical = parse(
        PARSE_CASES[3][1],
        tools=[{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}],
        tool_choice="required",
        stop=["X"],
        temperature=0.5,
        stream=True,
        max_tokens=99,
    )
    canonical["system"] = [{"type": "text", "text": "sys"}]
    body = fmt.render_request(canonical, "glm-4.6v")  # type: ignore[arg-type]
    assert body["model"] == "glm-4.6v"
    assert body["max_tokens"] == 99 and body["stop"] == ["X"] and body["temperature"] == 0.5
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tool_choice"] == "required"
    assert body["tools"] == [
        {"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}
    ]
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "tool", "user"]
    assistant = body["messages"][2]
    assert assistant["content"] is None and assistant["reasoning_content"] == "two cities"
    assert [json.loads(t["function"]["arguments"]) for t in assistant["tool_calls"]] == [
        {"city": "Oslo"},
        {"city": "Rome"},
    ]
    assert body["messages"][3] == {"role": "tool", "tool_call_id": "c1", "content": "cold"}
    assert body["messages"][4]["content"] == "warm"
    assert body["messages"][5] == {"role": "user", "content": "thanks"}


def test_render_request_images_become_image_url_parts() -> None:
    canonical = parse(PARSE_CASES[2][1])
    parts = fmt.render_request(canonical, "glm-4.6v")["messages"][0]["content"]  # type: ignore[arg-type]
    assert parts[1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG_DATA}"},
    }
    assert parts[2] == {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}


@pytest.mark.parametrize("case", PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_render_parse_render_is_stable(case: tuple) -> None:
    once = fmt.render_request(parse(case[1]), "m")  # type: ignore[arg-type]
    twice = fmt.render_request(parse(once["messages"]), "m")  # type: ignore[arg-type]
    assert twice == once


# ---------------------------------------------------------------------------- responses

RESPONSE_CASES = [
    ("stop", "end_turn", "stop"),
    ("length", "max_tokens", "length"),
    ("tool_calls", "tool_use", "tool_calls"),
]


@pytest.mark.parametrize(("finish", "stop_reason", "back"), RESPONSE_CASES)
def test_response_round_trip(finish: str, stop_reason: str, back: str) -> None:
    upstream = {
        "id": "abc",
        "model": "glm-4.6",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "message": {
                    "role": "assistant",
                    "content": "hello",
                    "reasoning_content": "hmm",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": '{"a":1}'},
                        }
                    ],
                },
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }
    canonical = fmt.parse_response(upstream)
    assert canonical["stop_reason"] == stop_reason
    assert canonical["usage"] == {"input_tokens": 10, "output_tokens": 5}
    assert [b["type"] for b in canonical["content"]] == ["thinking", "text", "tool_use"]
    rendered = fmt.render_response(canonical, "asked-for")
    assert rendered["model"] == "asked-for" and rendered["object"] == "chat.completion"
    choice = rendered["choices"][0]
    assert choice["finish_reason"] == back
    assert (
        choice["message"]["content"] == "hello" and choice["message"]["reasoning_content"] == "hmm"
    )
    assert choice["message"]["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a":1}'}
    assert rendered["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


# ---------------------------------------------------------------------------- streams


def sse_lines(chunks: list[dict[str, Any]], done: bool = True) -> list[SSEEvent]:
    events = [SSEEvent("", json.dumps(chunk)) for chunk in chunks]
    return events + ([SSEEvent("", "[DONE]")] if done else [])


def chunk(
    delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": "x1", "model": "glm-4.6", "choices": []}
    if delta is not None:
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    if usage is not None:
        body["usage"] = usage
    return body


def call_delta(
    index: int, args: str, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    entry: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if call_id:
        entry |= {"id": call_id, "type": "function"}
        entry["function"]["name"] = name
    return {"tool_calls": [entry]}


def summarize(events: list[dict[str, Any]]) -> list[tuple]:
    out: list[tuple] = []
    for e in events:
        if e["type"] == "content_block_start":
            out.append(("start", e["index"], e["content_block"]["type"]))
        elif e["type"] == "content_block_delta":
            d = e["delta"]
            out.append(
                ("delta", e["index"], d.get("text") or d.get("thinking") or d.get("partial_json"))
            )
        elif e["type"] == "content_block_stop":
            out.append(("stop", e["index"]))
        elif e["type"] == "message_delta":
            out.append(("message_delta", e["delta"]["stop_reason"], e["usage"]["output_tokens"]))
        else:
            out.append((e["type"],))
    return out


STREAM_CASES = [
    (
        "reasoning then text",
        [
            chunk({"role": "assistant", "content": ""}),
            chunk({"reasoning_content": "think"}),
            chunk({"content": "Hel"}),
            chunk({"content": "lo"}),
            chunk({}, "stop"),
            chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 4}),
        ],
        [
            ("message_start",),
            ("start", 0, "thinking"),
            ("delta", 0, "think"),
            ("stop", 0),
            ("start", 1, "text"),
            ("delta", 1, "Hel"),
            ("delta", 1, "lo"),
            ("stop", 1),
            ("message_delta", "end_turn", 4),
            ("message_stop",),
        ],
    ),
    (
        "sequential parallel tool calls, empty tool_calls lists ignored",
        [
            chunk({"role": "assistant", "tool_calls": []}),
            chunk(call_delta(0, "", "c0", "a")),
            chunk(call_delta(0, '{"x":')),
            chunk(call_delta(0, "1}")),
            chunk(call_delta(1, '{"y":2}', "c1", "b")),
            chunk({"tool_calls": []}, "tool_calls"),
        ],
        [
            ("message_start",),
            ("start", 0, "tool_use"),
            ("delta", 0, '{"x":'),
            ("delta", 0, "1}"),
            ("stop", 0),
            ("start", 1, "tool_use"),
            ("delta", 1, '{"y":2}'),
            ("stop", 1),
            ("message_delta", "tool_use", 0),
            ("message_stop",),
        ],
    ),
    (
        "interleaved parallel tool calls keep separate contiguous blocks",
        [
            chunk({"role": "assistant"}),
            chunk({"content": "Calling."}),
            chunk(call_delta(0, '{"a"', "c0", "f")),
            chunk(call_delta(1, '{"b"', "c1", "g")),
            chunk(call_delta(0, ":1}")),
            chunk(call_delta(1, ":2}")),
            chunk({}, "tool_calls"),
        ],
        [
            ("message_start",),
            ("start", 0, "text"),
            ("delta", 0, "Calling."),
            ("stop", 0),
            ("start", 1, "tool_use"),
            ("delta", 1, '{"a"'),
            ("delta", 1, ":1}"),
            ("stop", 1),
            ("start", 2, "tool_use"),
            ("delta", 2, '{"b":2}'),
            ("stop", 2),
            ("message_delta", "tool_use", 0),
            ("message_stop",),
        ],
    ),
    (
        "dropped stream ends in an error event",
        [chunk({"role": "assistant"}), chunk({"content": "par"})],
        [("message_start",), ("start", 0, "text"), ("delta", 0, "par"), ("stop", 0), ("error",)],
    ),
]


@pytest.mark.parametrize(
    ("name", "chunks", "expected"), STREAM_CASES, ids=[c[0] for c in STREAM_CASES]
)
def test_parse_stream(name: str, chunks: list, expected: list) -> None:
    done = "dropped" not in name
    events = list(fmt.parse_stream(sse_lines(chunks, done=done), input_estimate=42))
    assert summarize(events) == expected  # type: ignore[arg-type]
    assert events[0]["message"]["usage"]["input_tokens"] == 42  # type: ignore[typeddict-item]


def test_parse_stream_error_payload_stops_the_stream() -> None:
    events = list(
        fmt.parse_stream(sse_lines([chunk({"content": "a"}), {"error": {"message": "boom"}}]), 1)
    )
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "boom"}}


def test_parse_stream_ends_once_finish_and_usage_are_in_without_waiting_for_done() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2}
    finished = sse_lines([chunk({"content": "hi"}), chunk({}, "stop"), chunk(usage=usage)], False)

    def stalls_after() -> Any:
        yield from finished
        raise AssertionError("read past the usage chunk: a stalled [DONE] would hold the client")

    events = list(fmt.parse_stream(stalls_after(), 1))
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2]["usage"] == {"input_tokens": 5, "output_tokens": 2}  # type: ignore[typeddict-item]


def rendered_chunks(events: list[dict[str, Any]], include_usage: bool) -> list[Any]:
    frames = b"".join(fmt.render_stream(events, "client-model", include_usage))  # type: ignore[arg-type]
    return [e.data if e.data == "[DONE]" else json.loads(e.data) for e in iter_sse([frames])]


def test_render_stream_emits_role_first_tool_ids_once_usage_and_done() -> None:
    chunks = STREAM_CASES[1][1] + [chunk(None, usage={"prompt_tokens": 9, "completion_tokens": 4})]
    canonical = list(fmt.parse_stream(sse_lines(chunks), 9))
    out = rendered_chunks(canonical, include_usage=True)
    assert out[-1] == "[DONE]"
    assert out[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["model"] == "client-model" for c in out[:-1])
    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in out[:-2]
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    firsts = [c for c in calls if "id" in c]
    assert [(c["index"], c["id"], c["function"]["name"]) for c in firsts] == [
        (0, "c0", "a"),
        (1, "c1", "b"),
    ]
    args: dict[int, str] = {}
    for call in calls:
        args[call["index"]] = args.get(call["index"], "") + call["function"]["arguments"]
    assert {i: json.loads(a) for i, a in args.items()} == {0: {"x": 1}, 1: {"y": 2}}
    assert out[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert out[-2]["choices"] == [] and out[-2]["usage"]["total_tokens"] == 13


def test_render_stream_without_usage_request_has_no_usage_chunk() -> None:
    canonical = list(fmt.parse_stream(sse_lines(STREAM_CASES[0][1]), 9))
    out = rendered_chunks(canonical, include_usage=False)
    assert not any(isinstance(c, dict) and "usage" in c for c in out)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in out[:-1] if c["choices"])
    reasoning = "".join(
        c["choices"][0]["delta"].get("reasoning_content") or "" for c in out[:-1] if c["choices"]
    )
    assert (text, reasoning) == ("Hello", "think")


def test_render_stream_error_becomes_error_chunk_then_done() -> None:
    canonical = list(fmt.parse_stream(sse_lines(STREAM_CASES[3][1], done=False), 9))
    out = rendered_chunks(canonical, include_usage=True)
    assert out[-2]["error"]["message"] == "upstream stream ended early"
    assert out[-1] == "[DONE]"


@pytest.mark.parametrize(
    ("temperature", "sent"), [(0.0, 0.0), (0.7, 0.7), (1.0, 1.0), (1.6, 1.0), (2.0, 1.0)]
)
def test_temperature_clamped_to_the_range_zai_accepts(temperature: float, sent: float) -> None:
    from upstream import anthropic_format

    request = parse([{"role": "user", "content": "hi"}], temperature=temperature, top_p=1)
    for body in (fmt.render_request(request, "m"), anthropic_format.render_request(request, "m")):  # type: ignore[arg-type]
        assert (body["temperature"], body["top_p"]) == (sent, 1.0)


def test_image_jpg_media_type_is_normalised() -> None:
    source = fmt.parse_image_url("data:image/jpg;base64,AAAA", "url")
    assert source == {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}


@pytest.mark.parametrize(
    ("openai_usage", "canonical"),
    [
        ({"prompt_tokens": 10, "completion_tokens": 2}, {"input_tokens": 10, "output_tokens": 2}),
        (
            {
                "prompt_tokens": 110,
                "completion_tokens": 2,
                "prompt_tokens_details": {"cached_tokens": 100},
            },
            {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 100},
        ),
    ],
)
def test_usage_keeps_cached_tokens_inside_prompt_tokens_only(
    openai_usage: dict, canonical: dict
) -> None:
    assert fmt.parse_usage(openai_usage) == canonical
    rendered = fmt.render_usage(canonical)
    assert rendered["prompt_tokens"] == openai_usage["prompt_tokens"]
    assert rendered.get("prompt_tokens_details") == openai_usage.get("prompt_tokens_details")


def test_tool_input_given_whole_at_block_start_reaches_chat_clients() -> None:
    events = [
        {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 1}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 1},
        },
        {"type": "message_stop"},
    ]
    out = rendered_chunks(events, include_usage=False)
    call = out[1]["choices"][0]["delta"]["tool_calls"][0]
    assert json.loads(call["function"]["arguments"]) == {"a": 1}


def test_parallel_false_with_tool_choice_none_stays_none() -> None:
    request = parse(
        [{"role": "user", "content": "hi"}], tool_choice="none", parallel_tool_calls=False
    )
    assert request["tool_choice"] == {"type": "none"}


def test_assistant_turn_of_only_redacted_reasoning_is_not_sent_as_an_empty_message() -> None:
    request = parse([{"role": "user", "content": "hi"}])
    request["messages"] += [
        {"role": "assistant", "content": [{"type": "redacted_thinking", "data": "x"}]},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]
    roles = [m["role"] for m in fmt.render_request(request, "m")["messages"]]  # type: ignore[arg-type]
    assert roles == ["user", "user"]
