"""GLM-4.6's chat template, rendered in Python, for request bodies of either z.ai format.

The output is the prompt transformers renders from GLM-4.6's `chat_template.jinja`
(trim_blocks, lstrip_blocks, add_generation_prompt): ``[gMASK]<sop>``, a tools system block when
there are tools, then per message ``<|system|>\\n`` / ``<|user|>\\n`` + text, an assistant turn as
``<|assistant|>\\n<think>…</think>`` + ``\\n`` text + ``<tool_call>`` blocks, a run of tool
results as ``<|observation|>`` + ``\\n<tool_response>\\n…\\n</tool_response>`` each, and the
generation prompt ``<|assistant|>``. Reasoning is kept only for assistant turns after the last
user message (the current agent loop), as the template drops earlier turns' reasoning.

Anthropic bodies are first mapped to template messages the way z.ai's adapter would: system
(text blocks joined with "\\n") → a system message; tool_result blocks → tool messages, before
the rest of their user message (text blocks joined with "\\n"); assistant text → content,
thinking → reasoning, redacted_thinking → nothing, tool_use → tool calls. OpenAI bodies map one
to one (`reasoning_content` is the reasoning; text parts are concatenated, as the template's
`visible_text` does). Images become ``<|begin_of_image|>`` + N ``<|image|>`` +
``<|end_of_image|>`` with N from `tests.fake.images`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tests.fake.images import IMAGE_TOKENS, tokens_of_data

PROMPT_START = "[gMASK]<sop>"
GENERATION_PROMPT = "<|assistant|>"
TOOLS_HEAD = (
    "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
)
TOOLS_TAIL = (
    "</tools>\n\nFor each function call, output the function name and arguments within the "
    "following XML format:\n<tool_call>{function-name}\n<arg_key>{arg-key-1}</arg_key>\n"
    "<arg_value>{arg-value-1}</arg_value>\n<arg_key>{arg-key-2}</arg_key>\n"
    "<arg_value>{arg-value-2}</arg_value>\n...\n</tool_call>"
)
ANTHROPIC_JOIN = "\n"  # z.ai's Anthropic adapter: one block per line
OPENAI_JOIN = ""  # the template's visible_text concatenates text parts

Json = dict[str, Any]


@dataclass
class TemplateMessage:
    """One message as GLM's chat template sees it."""

    role: str  # system, user, assistant or tool
    content: str = ""
    reasoning: str | None = None
    tool_calls: list[tuple[str, Json]] = field(default_factory=list)


# ---------------------------------------------------------------------------- rendering


def render_prompt(endpoint: str, body: Json) -> str:
    """The prompt GLM-4.6 reads for a request body of `endpoint` ("anthropic" or "openai")."""
    if endpoint == "anthropic":
        return render_messages(anthropic_messages(body), anthropic_tools(body.get("tools")))
    return render_messages(openai_messages(body.get("messages")), openai_tools(body.get("tools")))


def render_messages(messages: list[TemplateMessage], tools: list[Json]) -> str:
    """The template over mapped messages and bare function objects."""
    out = [PROMPT_START]
    if tools:
        lines = "".join(json.dumps(tool, ensure_ascii=False) + "\n" for tool in tools)
        out.append(TOOLS_HEAD + lines + TOOLS_TAIL)
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=-1)
    for i, message in enumerate(messages):
        if message.role == "assistant":
            out.append(_render_assistant(message, current=i > last_user))
        elif message.role == "tool":
            opening = "" if i and messages[i - 1].role == "tool" else "<|observation|>"
            out.append(f"{opening}\n<tool_response>\n{message.content}\n</tool_response>")
        else:
            out.append(f"<|{message.role}|>\n{message.content}")
    out.append(GENERATION_PROMPT)
    return "".join(out)


def _render_assistant(message: TemplateMessage, current: bool) -> str:
    content, reasoning = message.content, message.reasoning
    if reasoning is None and "</think>" in content:  # reasoning inlined in the content
        reasoning = content.split("</think>")[0].rstrip("\n").split("<think>")[-1].lstrip("\n")
        content = content.split("</think>")[-1].lstrip("\n")
    thought = reasoning.strip() if current and reasoning else ""
    out = f"<|assistant|>\n<think>{thought}</think>"
    if content.strip():
        out += "\n" + content.strip()
    for name, arguments in message.tool_calls:
        pairs = "".join(
            f"<arg_key>{key}</arg_key>\n<arg_value>{_argument(value)}</arg_value>\n"
            for key, value in arguments.items()
        )
        out += f"\n<tool_call>{name}\n{pairs}</tool_call>"
    return out


def _argument(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def image_markup(tokens: int, kind: str = "image") -> str:
    """The placeholder run an image (or video) of `tokens` tokens takes in the prompt."""
    return f"<|begin_of_{kind}|>" + f"<|{kind}|>" * tokens + f"<|end_of_{kind}|>"


# ---------------------------------------------------------------------------- Anthropic


def anthropic_messages(body: Json) -> list[TemplateMessage]:
    """An Anthropic body's system and messages as template messages."""
    system = body.get("system")
    text = system if isinstance(system, str) else _anthropic_text(system)
    messages = [TemplateMessage("system", text)] if text else []
    for message in body.get("messages") or ():
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if message.get("role") == "assistant":
            messages.append(_anthropic_assistant(blocks or []))
        else:
            messages += _anthropic_user(blocks or [])
    return messages


def _anthropic_user(blocks: list[Json]) -> list[TemplateMessage]:
    results = [b for b in blocks if b.get("type") == "tool_result"]
    rest = [b for b in blocks if b.get("type") != "tool_result"]
    messages = [TemplateMessage("tool", _tool_result_text(b.get("content"))) for b in results]
    if rest:
        messages.append(TemplateMessage("user", _anthropic_text(rest)))
    return messages


def _tool_result_text(content: object) -> str:
    return content if isinstance(content, str) else _anthropic_text(content)


def _anthropic_assistant(blocks: list[Json]) -> TemplateMessage:
    thoughts = [b.get("thinking", "") for b in blocks if b.get("type") == "thinking"]
    calls = [
        (b.get("name", ""), b.get("input") or {}) for b in blocks if b.get("type") == "tool_use"
    ]
    texts = [b for b in blocks if b.get("type") == "text"]
    reasoning = ANTHROPIC_JOIN.join(thoughts) if thoughts else None
    return TemplateMessage("assistant", _anthropic_text(texts), reasoning, calls)


def _anthropic_text(blocks: object) -> str:
    """Text, image and document blocks as one string, one block per line."""
    parts = (_anthropic_part(b) for b in blocks if isinstance(b, dict)) if blocks else ()
    return ANTHROPIC_JOIN.join(part for part in parts if part is not None)


def _anthropic_part(block: Json) -> str | None:
    kind = block.get("type")
    if kind == "text":
        return block.get("text", "")
    source = block.get("source") or {}
    if kind == "image":
        data = source.get("data") if source.get("type") == "base64" else None
        return image_markup(tokens_of_data(data) if data else IMAGE_TOKENS)
    if kind == "document" and source.get("type") == "text":
        return source.get("data", "")
    return None


def anthropic_tools(tools: object) -> list[Json]:
    """Anthropic tool definitions as the bare function objects z.ai prints."""
    functions = []
    for tool in tools if isinstance(tools, list) else ():
        function = {"name": tool.get("name")}
        if "description" in tool:
            function["description"] = tool["description"]
        functions.append({**function, "parameters": tool.get("input_schema")})
    return functions


# ---------------------------------------------------------------------------- OpenAI


def openai_messages(messages: object) -> list[TemplateMessage]:
    """OpenAI chat messages as template messages."""
    mapped = []
    for message in messages if isinstance(messages, list) else ():
        text = _openai_text(message.get("content"))
        calls = [_openai_call(call) for call in message.get("tool_calls") or ()]
        reasoning = message.get("reasoning_content")
        reasoning = reasoning if isinstance(reasoning, str) else None
        mapped.append(TemplateMessage(message.get("role", "user"), text, reasoning, calls))
    return mapped


def _openai_call(call: Json) -> tuple[str, Json]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = None
    return function.get("name", ""), arguments if isinstance(arguments, dict) else {}


def _openai_text(content: object) -> str:
    if isinstance(content, str):
        return content
    parts = (_openai_part(p) for p in content if isinstance(p, dict)) if content else ()
    return OPENAI_JOIN.join(parts)


def _openai_part(part: Json) -> str:
    kind = part.get("type")
    if kind == "text":
        return part.get("text", "")
    if kind == "video_url":
        return image_markup(IMAGE_TOKENS, "video")
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        return image_markup(tokens_of_data(url) if url.startswith("data:") else IMAGE_TOKENS)
    return ""


def openai_tools(tools: object) -> list[Json]:
    """The function objects of OpenAI tool definitions (z.ai's built-in tools print nothing)."""
    tools = tools if isinstance(tools, list) else []
    return [t["function"] for t in tools if t.get("type") == "function" and "function" in t]
