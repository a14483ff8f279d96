"""A deterministic corpus of realistic requests for the token-counting benchmark.

Every text comes from `corpus_text.TextGen` (templates written for this benchmark and a seeded
`random.Random`), so the corpus is the same on every run and needs no network. Categories:
English chat, code, JSON-heavy tool traffic, Chinese, mixed scripts, and multi-turn agent
sessions with tool results. Requests are canonical (Anthropic Messages shaped); `to_openai`
renders one as an OpenAI chat-completions body.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.corpus_text import EN_OPENERS, TextGen

CATEGORIES = ("english", "code", "json_tools", "chinese", "mixed", "agent")

# ---------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class Sample:
    """One corpus request and its category."""

    category: str
    request: dict[str, Any]


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _request(
    messages: list[dict[str, Any]],
    system: str | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    request: dict[str, Any] = {"model": "glm-4.6", "max_tokens": 4096, "messages": messages}
    if system:
        request["system"] = [_text(system)]
    if tools:
        request["tools"] = tools
    return request


def _chat(
    gen: TextGen, ask: Callable[[], str], answer: Callable[[], str], system: str | None
) -> dict[str, Any]:
    messages = []
    for _ in range(gen.rng.randint(0, 6)):
        messages += [
            {"role": "user", "content": [_text(ask())]},
            {"role": "assistant", "content": [_text(answer())]},
        ]
    messages.append({"role": "user", "content": [_text(ask())]})
    return _request(messages, system)


def english_request(gen: TextGen) -> dict[str, Any]:
    """A multi-turn English chat."""
    system = gen.en_paragraph((1, 4)) if gen.rng.random() < 0.6 else None
    return _chat(gen, lambda: gen.en_paragraph((1, 5)), gen.en_answer, system)


def code_request(gen: TextGen) -> dict[str, Any]:
    """Questions about code with code blocks in both directions."""

    def ask() -> str:
        return f"{gen.en_sentence()}\n\n```\n{gen.code_file((1, 4))}```\n{gen.en_sentence()}"

    def answer() -> str:
        opener, code = gen.pick(EN_OPENERS), gen.code_file((1, 3))
        return f"{opener}\n\n```\n{code}```\n\n{gen.en_paragraph((1, 3))}"

    return _chat(gen, ask, answer, "You are a senior engineer. Answer with working code.")


def chinese_request(gen: TextGen) -> dict[str, Any]:
    """A multi-turn Chinese chat."""
    system = "你是一个乐于助人的助手，请用简体中文回答。" if gen.rng.random() < 0.7 else None
    return _chat(gen, lambda: gen.zh_paragraph((1, 5)), gen.zh_answer, system)


def mixed_request(gen: TextGen) -> dict[str, Any]:
    """Chinese with English terms and code, plus sentences in other languages."""

    def ask() -> str:
        parts = [gen.zh_paragraph((1, 3)), gen.en_sentence(), gen.foreign_sentence()]
        if gen.rng.random() < 0.5:
            parts.append(f"```\n{gen.code()}```")
        gen.rng.shuffle(parts)
        return "\n".join(parts)

    def answer() -> str:
        return "\n\n".join((gen.zh_answer(), gen.en_paragraph((1, 3)), gen.foreign_sentence()))

    return _chat(gen, ask, answer, gen.en_paragraph((1, 2)))


def _schema(gen: TextGen) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for _ in range(gen.rng.randint(1, 5)):
        kind = gen.pick(("string", "integer", "boolean", "array"))
        prop: dict[str, Any] = {"type": kind, "description": gen.en_sentence()}
        if kind == "array":
            prop["items"] = {"type": "string"}
        if kind == "integer" and gen.rng.random() < 0.5:
            prop["minimum"], prop["maximum"] = 0, gen.rng.randint(10, 100000)
        props[gen.ident(1)] = prop
    return {"type": "object", "properties": props, "required": list(props)[:1]}


def tool_definitions(gen: TextGen, count: tuple[int, int] = (2, 8)) -> list[dict[str, Any]]:
    """Anthropic-style tool definitions with JSON schemas."""
    return [
        {"name": gen.ident(), "description": gen.en_paragraph((1, 2)), "input_schema": _schema(gen)}
        for _ in range(gen.rng.randint(*count))
    ]


def _tool_input(gen: TextGen, tool: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, prop in tool["input_schema"]["properties"].items():
        kind = prop["type"]
        if kind == "string":
            out[key] = gen.pick((gen.path, gen.en_sentence, gen.uid))()
        elif kind == "integer":
            out[key] = gen.number()
        elif kind == "boolean":
            out[key] = gen.rng.random() < 0.5
        else:
            out[key] = [gen.ident(1) for _ in range(gen.rng.randint(1, 4))]
    return out


def _tool_turns(
    gen: TextGen,
    tools: list[dict[str, Any]],
    result: Callable[[], str],
    thinking: bool,
    lead: Callable[[], str],
) -> list[dict[str, Any]]:
    """One assistant turn calling 1–3 tools, and the user turn with their results."""
    calls, results = [], []
    for _ in range(gen.rng.randint(1, 3)):
        tool = gen.pick(tuple(tools))
        call_id = f"toolu_{gen.hexid(24)}"
        calls.append(
            {
                "type": "tool_use",
                "id": call_id,
                "name": tool["name"],
                "input": _tool_input(gen, tool),
            }
        )
        content: Any = result()
        if gen.rng.random() < 0.3:
            content = [_text(content)]
        results.append({"type": "tool_result", "tool_use_id": call_id, "content": content})
    blocks: list[dict[str, Any]] = []
    if thinking:
        blocks.append({"type": "thinking", "thinking": lead(), "signature": gen.hexid(40)})
    blocks.append(_text(lead()))
    return [{"role": "assistant", "content": blocks + calls}, {"role": "user", "content": results}]


def json_tools_request(gen: TextGen) -> dict[str, Any]:
    """Tool calls whose results are JSON API payloads and numbers."""
    tools = tool_definitions(gen)

    def result() -> str:
        return json.dumps(gen.json_payload(), ensure_ascii=False, indent=gen.pick((None, 2)))

    messages: list[dict[str, Any]] = [
        {"role": "user", "content": [_text(gen.en_paragraph((1, 3)))]}
    ]
    for _ in range(gen.rng.randint(1, 5)):
        messages += _tool_turns(gen, tools, result, False, gen.en_sentence)
    return _request(messages, gen.en_paragraph((2, 5)), tools)


def agent_request(
    gen: TextGen, steps: tuple[int, int] = (3, 14), mid_loop: bool | None = None
) -> dict[str, Any]:
    """A coding-agent session: long system prompt, tools, file reads, logs, tests, thinking.

    Half of them (unless `mid_loop` says) stop inside the agent loop, on tool results, as most
    agent requests do; the reasoning of that loop is then part of the prompt.
    """
    tools = tool_definitions(gen, (6, 14))
    zh = gen.rng.random() < 0.25
    ask = gen.zh_paragraph if zh else gen.en_paragraph
    outputs = (
        gen.code_file,
        gen.log_lines,
        gen.grep_output,
        gen.test_output,
        lambda: json.dumps(gen.json_payload((1, 6)), indent=2),
    )

    def lead() -> str:
        return gen.zh_sentence() if zh else gen.en_sentence()

    messages: list[dict[str, Any]] = []
    for _ in range(gen.rng.randint(1, 3)):
        messages.append({"role": "user", "content": [_text(ask((1, 4)))]})
        for _ in range(gen.rng.randint(*steps)):
            messages += _tool_turns(
                gen, tools, lambda: gen.pick(outputs)(), gen.rng.random() < 0.5, lead
            )
        messages.append({"role": "assistant", "content": [_text(lead() + "\n\n" + ask((1, 3)))]})
    if mid_loop if mid_loop is not None else gen.rng.random() < 0.5:
        messages.pop()  # no closing summary: the loop is still running
    else:
        messages.append({"role": "user", "content": [_text(ask((1, 3)))]})
    system = "\n\n".join(gen.en_paragraph((4, 9)) for _ in range(gen.rng.randint(3, 10)))
    return _request(messages, system, tools)


BUILDERS: dict[str, Callable[[TextGen], dict[str, Any]]] = {
    "english": english_request,
    "code": code_request,
    "json_tools": json_tools_request,
    "chinese": chinese_request,
    "mixed": mixed_request,
    "agent": agent_request,
}


def build_corpus(per_category: int = 40, seed: int = 20251126) -> list[Sample]:
    """`per_category` requests of each category, the same on every run for the same seed."""
    gen = TextGen(seed)
    return [Sample(cat, BUILDERS[cat](gen)) for cat in CATEGORIES for _ in range(per_category)]


def build_long_session(target_chars: int, seed: int = 7) -> dict[str, Any]:
    """An agent session grown step by step to about `target_chars` characters of JSON."""
    gen = TextGen(seed)
    request = agent_request(gen, steps=(4, 8), mid_loop=False)
    while len(json.dumps(request, ensure_ascii=False)) < target_chars:
        more = agent_request(gen, steps=(2, 5), mid_loop=False)["messages"]
        request["messages"] = request["messages"][:-1] + more
    return request


def add_user_turn(request: dict[str, Any], text: str) -> dict[str, Any]:
    """The same request followed by one more assistant answer and a new user message."""
    messages = list(request["messages"])
    messages += [
        {"role": "assistant", "content": [_text("Done. " + text[: len(text) // 2])]},
        {"role": "user", "content": [_text(text)]},
    ]
    return {**request, "messages": messages}


# ---------------------------------------------------------------------------- OpenAI shape


def _openai_content(blocks: list[dict[str, Any]]) -> str:
    return "".join(b["text"] for b in blocks if b["type"] == "text")


def _openai_assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": _openai_content(blocks)}
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {
                "name": b["name"],
                "arguments": json.dumps(b["input"], ensure_ascii=False),
            },
        }
        for b in blocks
        if b["type"] == "tool_use"
    ]
    thinking = "".join(b["thinking"] for b in blocks if b["type"] == "thinking")
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = thinking
    return message


def _openai_user(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for b in blocks:
        if b["type"] == "tool_result":
            content = b.get("content", "")
            text = content if isinstance(content, str) else _openai_content(content)
            out.append({"role": "tool", "tool_call_id": b["tool_use_id"], "content": text})
    text = _openai_content(blocks)
    if text:
        out.append({"role": "user", "content": text})
    return out


def to_openai(request: dict[str, Any]) -> dict[str, Any]:
    """Render a canonical corpus request as an OpenAI chat-completions body."""
    messages: list[dict[str, Any]] = []
    if request.get("system"):
        messages.append({"role": "system", "content": _openai_content(request["system"])})
    for m in request["messages"]:
        if m["role"] == "assistant":
            messages.append(_openai_assistant(m["content"]))
        else:
            messages += _openai_user(m["content"])
    body: dict[str, Any] = {"model": request["model"], "messages": messages}
    if request.get("tools"):
        body["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "parameters": t["input_schema"],
                },
            }
            for t in request["tools"]
        ]
    return body
