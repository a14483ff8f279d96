"""Exact GLM-4.6 counts for small requests, and how the layout walk reads both shapes.

The expected totals were measured by rendering GLM-4.6's chat template (transformers settings:
trim_blocks, lstrip_blocks, add_generation_prompt) and encoding it with glm-4.6.tiktoken with
special tokens allowed, with each tool printed as its bare function object as z.ai prints it
(DESIGN.md §5). The rendered prompt of each case is in its comment.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tokens.counter import TokenCounter
from tokens.framing import (
    ASSISTANT_TURN_TOKENS,
    OBSERVATION_TOKENS,
    REQUEST_TOKENS,
    RESULT_NEWLINE_TOKENS,
    TOOL_ARGUMENT_TOKENS,
    TOOL_CALL_TOKENS,
    TOOL_RESULT_TOKENS,
    TOOLS_PREAMBLE_TOKENS,
    USER_MESSAGE_TOKENS,
    layout_anthropic,
    layout_openai,
)

SCHEMA = {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}
TOOL = {
    "name": "read_file",
    "description": "Read a file from the workspace",
    "input_schema": SCHEMA,
}
OPENAI_TOOL = {
    "type": "function",
    "function": {
        "name": "read_file",
        "description": "Read a file from the workspace",
        "parameters": SCHEMA,
    },
}


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def call(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)}}  # fmt: skip


# (canonical request, the same as an OpenAI body, GLM-4.6 tokens of the rendered prompt)
EXACT_CASES = {
    # [gMASK]<sop><|user|>\nHello there<|assistant|>
    "user_only": (
        {"messages": [{"role": "user", "content": "Hello there"}]},
        {"messages": [{"role": "user", "content": "Hello there"}]},
        7,
    ),
    # [gMASK]<sop><|system|>\nYou are a careful assistant<|user|>\nHello there<|assistant|>
    "system_string": (
        {
            "system": "You are a careful assistant",
            "messages": [{"role": "user", "content": [text("Hello there")]}],
        },
        {
            "messages": [
                {"role": "system", "content": "You are a careful assistant"},
                {"role": "user", "content": [text("Hello there")]},
            ]
        },
        14,
    ),
    # …<|system|>\nAnswer in one line<|user|>\nWhat is a tiktoken file<|assistant|>\n
    # <think></think>\nA list of base64 tokens and their ranks<|user|>\nThanks a lot<|assistant|>
    "multi_turn": (
        {
            "system": [text("Answer in one line")],
            "messages": [
                {"role": "user", "content": "What is a tiktoken file"},
                {"role": "assistant", "content": [text("A list of base64 tokens and their ranks")]},
                {"role": "user", "content": "Thanks a lot"},
            ],
        },
        {
            "messages": [
                {"role": "system", "content": "Answer in one line"},
                {"role": "user", "content": "What is a tiktoken file"},
                {"role": "assistant", "content": "A list of base64 tokens and their ranks"},
                {"role": "user", "content": "Thanks a lot"},
            ]
        },
        36,
    ),
    # …<|system|>\n# Tools … <tools>\n{"name": "read_file", …}\n</tools> …
    # </tool_call><|user|>\nOpen the readme<|assistant|>
    "tools": (
        {"tools": [TOOL], "messages": [{"role": "user", "content": "Open the readme"}]},
        {"tools": [OPENAI_TOOL], "messages": [{"role": "user", "content": "Open the readme"}]},
        155,
    ),
    # …<|user|>\nShow me the config<|assistant|>\n<think>I should read it first</think>\n
    # Reading the config\n<tool_call>read_file\n<arg_key>path</arg_key>\n<arg_value>config.py
    # </arg_value>\n<arg_key>limit</arg_key>\n<arg_value>40</arg_value>\n<arg_key>follow
    # </arg_key>\n<arg_value>true</arg_value>\n</tool_call><|observation|>\n<tool_response>\n
    # DEBUG = False\n</tool_response><|assistant|>
    "tool_round_current_thinking": (
        {
            "tools": [TOOL],
            "messages": [
                {"role": "user", "content": "Show me the config"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "thinking",
                            "thinking": "I should read it first",
                            "signature": "x",
                        },
                        text("Reading the config"),
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "read_file",
                            "input": {"path": "config.py", "limit": 40, "follow": True},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": "DEBUG = False",
                        }
                    ],
                },
            ],
        },
        {
            "tools": [OPENAI_TOOL],
            "messages": [
                {"role": "user", "content": "Show me the config"},
                {
                    "role": "assistant",
                    "content": "Reading the config",
                    "reasoning_content": "I should read it first",
                    "tool_calls": [
                        call(
                            "toolu_1",
                            "read_file",
                            {"path": "config.py", "limit": 40, "follow": True},
                        )
                    ],
                },
                {"role": "tool", "tool_call_id": "toolu_1", "content": "DEBUG = False"},
            ],
        },
        209,
    ),
    # …<|user|>\nPick a number<|assistant|>\n<think></think>\nSeven<|user|>\nAnother one
    # <|assistant|>  (reasoning of a turn before the last user message is dropped)
    "old_thinking_dropped": (
        {
            "messages": [
                {"role": "user", "content": "Pick a number"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "thinking",
                            "thinking": "Seven feels random enough",
                            "signature": "sig",
                        },
                        text("Seven"),
                    ],
                },
                {"role": "user", "content": "Another one"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Pick a number"},
                {
                    "role": "assistant",
                    "content": "Seven",
                    "reasoning_content": "Seven feels random enough",
                },
                {"role": "user", "content": "Another one"},
            ]
        },
        18,
    ),
    # …<|user|>\nCompare both files<|assistant|>\n<think></think>\n<tool_call>cat\n<arg_key>
    # path</arg_key>\n<arg_value>a</arg_value>\n</tool_call>\n<tool_call>cat … </tool_call>
    # <|observation|>\n<tool_response>\nalpha beta\n</tool_response>\n<tool_response>\ngamma\n
    # </tool_response><|user|>\nWhich is longer<|assistant|>
    "two_results_then_text": (
        {
            "messages": [
                {"role": "user", "content": "Compare both files"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "a", "name": "cat", "input": {"path": "a"}},
                        {"type": "tool_use", "id": "b", "name": "cat", "input": {"path": "b"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "a",
                            "content": [text("alpha beta")],
                        },
                        {"type": "tool_result", "tool_use_id": "b", "content": "gamma"},
                        text("Which is longer"),
                    ],
                },
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "Compare both files"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        call("a", "cat", {"path": "a"}),
                        call("b", "cat", {"path": "b"}),
                    ],
                },
                {"role": "tool", "tool_call_id": "a", "content": "alpha beta"},
                {"role": "tool", "tool_call_id": "b", "content": "gamma"},
                {"role": "user", "content": "Which is longer"},
            ]
        },
        57,
    ),
}


@pytest.mark.parametrize(("request_", "body", "expected"), EXACT_CASES.values(), ids=EXACT_CASES)
def test_exact_count_matches_rendered_template(
    exact_counter: TokenCounter, request_: dict[str, Any], body: dict[str, Any], expected: int
) -> None:
    assert exact_counter.count_request(request_) == expected
    assert exact_counter.count_openai_request(body) == expected


@pytest.mark.parametrize(("request_", "body", "expected"), EXACT_CASES.values(), ids=EXACT_CASES)
def test_default_counter_is_exact_on_plain_english(
    estimator_counter: TokenCounter, request_: dict[str, Any], body: dict[str, Any], expected: int
) -> None:
    # cl100k and GLM agree on ASCII without long digit runs, so the estimate is exact here.
    assert estimator_counter.count_request(request_) == expected
    assert estimator_counter.count_openai_request(body) == expected


# ---------------------------------------------------------------------------- layout walk


def framing_of(request: dict[str, Any]) -> int:
    return layout_anthropic(request).framing


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        ({}, REQUEST_TOKENS),
        ({"messages": [{"role": "user", "content": "hi"}]}, REQUEST_TOKENS + USER_MESSAGE_TOKENS),
        (
            {"messages": [{"role": "user", "content": "hi"}], "tools": [TOOL, TOOL]},
            REQUEST_TOKENS + USER_MESSAGE_TOKENS + TOOLS_PREAMBLE_TOKENS,  # lines count as text
        ),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": [
                            {"type": "tool_use", "id": "1", "name": "f", "input": {"a": 1, "b": 2}}
                        ],
                    },  # fmt: skip
                ]
            },
            REQUEST_TOKENS
            + ASSISTANT_TURN_TOKENS
            - 1
            + TOOL_CALL_TOKENS
            + 2 * TOOL_ARGUMENT_TOKENS,
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "tool_result", "tool_use_id": "1", "content": "x"},
                            {"type": "tool_result", "tool_use_id": "2", "content": "y"},
                        ],
                    },  # fmt: skip
                ]
            },
            # each result's closing newline is counted with its text
            REQUEST_TOKENS + OBSERVATION_TOKENS + 2 * (TOOL_RESULT_TOKENS - RESULT_NEWLINE_TOKENS),
        ),
    ],
    ids=["empty", "one_user", "two_tools", "tool_call_two_args", "two_results_no_text"],
)
def test_framing_figures(request_: dict[str, Any], expected: int) -> None:
    assert framing_of(request_) == expected


def test_tool_arguments_are_laid_out_as_the_template_prints_them() -> None:
    request = {
        "messages": [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "1",
                        "name": "edit",
                        "input": {"path": "a.py", "lines": [1, 2], "dry": False, "note": None},
                    }
                ],
            }
        ]
    }
    texts = layout_anthropic(request).texts["messages"]
    assert texts == ["edit", "path", "a.py", "lines", "[1, 2]", "dry", "false", "note", "null"]


@pytest.mark.parametrize(
    ("last_role_content", "thinking_counted"),
    [
        # the reasoning belongs to the current agent loop: only tool results follow the user
        ([{"type": "tool_result", "tool_use_id": "1", "content": "ok"}], True),
        # a new user message ends the loop: the reasoning is dropped
        ([text("next question")], False),
    ],
    ids=["current_turn", "earlier_turn"],
)
def test_thinking_counts_only_in_the_current_turn(
    last_role_content: list[dict[str, Any]], thinking_counted: bool
) -> None:
    request = {
        "messages": [
            {"role": "user", "content": "go"},
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "SECRET-PLAN", "signature": "sig"},
                    {"type": "tool_use", "id": "1", "name": "run", "input": {}},
                ],
            },
            {"role": "user", "content": last_role_content},
        ]
    }
    assert ("SECRET-PLAN" in layout_anthropic(request).texts["messages"]) is thinking_counted


def test_openai_legacy_functions_and_function_call_are_counted() -> None:
    body = {
        "functions": [{"name": "lookup", "parameters": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "find it"},
            {"role": "assistant", "content": None,
             "function_call": {"name": "lookup", "arguments": '{"q": "x"}'}},
            {"role": "function", "name": "lookup", "content": "found"},
        ],
    }  # fmt: skip
    layout = layout_openai(body)
    assert layout.texts["tools"] == ['{"name": "lookup", "parameters": {"type": "object"}}\n']
    assert layout.texts["messages"] == ["find it", "lookup", "q", "x", "found"]


@pytest.mark.parametrize(
    ("wire", "later_user", "counted"),
    [
        # the Anthropic-format renderer sends unsigned reasoning as a text block: always read
        ("anthropic", True, "[earlier reasoning]\nPLAN-B"),
        ("anthropic", False, "[earlier reasoning]\nPLAN-B"),
        # the OpenAI-format renderer sends it as reasoning_content: read in the current loop only
        ("openai", False, "PLAN-B"),
        ("openai", True, None),
    ],
)
def test_unsigned_reasoning_is_counted_as_the_wire_sends_it(
    wire: Any, later_user: bool, counted: str | None
) -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "go"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "PLAN-B", "signature": ""},
                {"type": "tool_use", "id": "1", "name": "run", "input": {}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "1", "content": "ok"}]},
    ]
    if later_user:
        messages.append({"role": "user", "content": [text("and now?")]})
    texts = layout_anthropic({"messages": messages}, wire).texts["messages"]
    reasoning = [t for t in texts if "PLAN-B" in t]
    assert reasoning == ([counted] if counted else [])


def test_unsigned_reasoning_prefix_matches_the_renderer() -> None:
    from tokens.framing import UNSIGNED_REASONING_PREFIX
    from upstream.anthropic_format import UNSIGNED_REASONING_PREFIX as RENDERED

    assert UNSIGNED_REASONING_PREFIX == RENDERED
