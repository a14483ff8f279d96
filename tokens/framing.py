"""How GLM-4.6's chat template frames a request, and the walk that lays a request out that way.

A `Layout` lists the texts the model will read (by section) plus the fixed tokens the template
adds around them. Both request shapes are walked here: the canonical Anthropic shape and an
OpenAI chat-completions body. The walks never raise: content of an unexpected type or a block of
an unknown type becomes an `odd` entry counted by its JSON length.

Framing figures were measured by rendering GLM-4.6's chat template (as transformers does, with
trim_blocks/lstrip_blocks) and encoding the result with glm-4.6.tiktoken, special tokens allowed;
tests/tokens/test_framing.py pins them with exact counts for small requests of both shapes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# "[gMASK]<sop>" opens every prompt, "<|assistant|>" is the generation prompt: 3.
# dict first: parsed JSON is all dicts, and isinstance against the Mapping ABC alone is several
# times slower, which a warm recount of a long conversation does a hundred thousand times.
MAPPINGS = (dict, Mapping)

REQUEST_TOKENS = 3
# "<|system|>\n" / "<|user|>\n" before the message text: 2.
SYSTEM_MESSAGE_TOKENS = 2
USER_MESSAGE_TOKENS = 2
# "<|assistant|>\n<think></think>\n" before an earlier assistant turn's text: 5, or 4 when the
# turn has no text (only tool calls), since the last "\n" only precedes text. A turn of the
# current agent loop carries its reasoning between the think tags instead (same + its text).
ASSISTANT_TURN_TOKENS = 5
ASSISTANT_TEXT_NEWLINE_TOKENS = 1
# "\n<tool_call>" + name + "\n" … "</tool_call>": 4, plus per argument
# "<arg_key>" k "</arg_key>\n<arg_value>" v "</arg_value>\n": 6. String values are rendered raw,
# other values as JSON (`tojson`), so they are counted that way too.
TOOL_CALL_TOKENS = 4
# Of those, the newline before "<tool_call>": counted with the text before it, when there is one.
CALL_NEWLINE_TOKENS = 1
TOOL_ARGUMENT_TOKENS = 6
# "<|observation|>" opens a run of tool results: 1; each result is
# "\n<tool_response>\n" … "\n</tool_response>": 5.
OBSERVATION_TOKENS = 1
TOOL_RESULT_TOKENS = 5
# Of those, the newline before "</tool_response>": counted with the result's text instead.
RESULT_NEWLINE_TOKENS = 1
ERROR_PREFIX = "Error: "
# With tools, a system block "# Tools … <tools>\n" + one JSON line per tool + "</tools> … the
# XML call format": exactly 100 tokens plus each tool's JSON line, counted with its newline.
TOOLS_PREAMBLE_TOKENS = 100
# Text ending in punctuation merges with a newline after it (".\n" is one token), so texts the
# template follows with a newline (tool results, tool lines) are counted together with it.

Section = Literal["system", "messages", "tools"]
# The upstream format a canonical request is forwarded in (upstream.routing.Endpoint values).
Wire = Literal["anthropic", "openai"]
# What the Anthropic-format renderer puts before reasoning it forwards as text
# (upstream.anthropic_format.UNSIGNED_REASONING_PREFIX; a test keeps the two equal).
UNSIGNED_REASONING_PREFIX = "[earlier reasoning]\n"


@dataclass(frozen=True)
class ImageRef:
    """One image: its base64 data or data: URL if inline, and the length of the text beside it."""

    data: str | None
    description_chars: int


@dataclass
class Layout:
    """A request as GLM's template lays it out: texts per section, fixed tokens, images."""

    texts: dict[Section, list[str]] = field(
        default_factory=lambda: {"system": [], "messages": [], "tools": []}
    )
    odd: dict[Section, list[str]] = field(
        default_factory=lambda: {"system": [], "messages": [], "tools": []}
    )
    framing: int = REQUEST_TOKENS
    images: list[ImageRef] = field(default_factory=list)
    # Where each message starts: (message texts, message odd entries, framing, images) so far.
    # Everything before the first mark, and system or tool texts anywhere, is the fixed part.
    marks: list[tuple[int, int, int, int]] = field(default_factory=list)

    def begin_message(self) -> None:
        """Note that the content added from now on belongs to the next message."""
        self.marks.append(
            (
                len(self.texts["messages"]),
                len(self.odd["messages"]),
                self.framing,
                len(self.images),
            )
        )

    def add(self, section: Section, value: object) -> None:
        """Add content of any type: strings are texts, anything else is counted by its JSON."""
        if isinstance(value, str):
            if value:
                self.texts[section].append(value)
        elif value is not None:
            self.odd[section].append(to_json(value))


def value_text(value: object) -> str:
    """A tool argument value as the template prints a non-string (`tojson`), fast for scalars."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if type(value) is int:
        return str(value)
    return to_json(value)


def to_json(value: object) -> str:
    """JSON text of `value` as the template renders it (ensure_ascii=False); never raises."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):  # cycles, odd keys, absurd nesting
        return f"<{type(value).__name__}>"


# ---------------------------------------------------------------------------- canonical shape


def layout_anthropic(request: Mapping[str, Any], wire: Wire = "anthropic") -> Layout:
    """Lay out a canonical (Anthropic Messages shaped) request as `wire` will forward it.

    The wires differ in one thing the model reads: reasoning no model signed (an OpenAI client's
    `reasoning_content`) goes to the Anthropic-format upstream as a text block, which the
    template keeps in every turn; on the OpenAI-format upstream it stays reasoning, which the
    template keeps only in the current agent loop.
    """
    layout = Layout()
    if not isinstance(request, MAPPINGS):
        layout.add("messages", request)
        return layout
    _add_system(layout, request.get("system"))
    _add_tools(layout, [_anthropic_tool(t) for t in _as_list(request.get("tools"))])
    messages = _as_list(request.get("messages"))
    current = _last_user_index(messages, _is_real_user_message)
    unsigned_as_text = wire == "anthropic"
    for index, message in enumerate(messages):
        layout.begin_message()
        if not isinstance(message, MAPPINGS):
            layout.add("messages", message)
        elif message.get("role") == "assistant":
            _add_assistant_blocks(layout, message.get("content"), index > current, unsigned_as_text)
        else:
            _add_user_blocks(layout, message.get("content"), wire)
    return layout


def _add_system(layout: Layout, system: object) -> None:
    if not system:
        return
    layout.framing += SYSTEM_MESSAGE_TOKENS
    if isinstance(system, list):
        for block in system:
            _add_text_block(layout, "system", block)
    else:
        layout.add("system", system)


def _add_text_block(layout: Layout, section: Section, block: object) -> None:
    layout.add(section, block.get("text") if isinstance(block, dict) and _is_text(block) else block)


def _add_user_blocks(layout: Layout, content: object, wire: Wire = "anthropic") -> None:
    if not isinstance(content, list):
        layout.framing += USER_MESSAGE_TOKENS
        layout.add("messages", content)
        return
    results = [b for b in content if _is_tool_result(b)]
    others = [b for b in content if not _is_tool_result(b)]
    if results:
        layout.framing += OBSERVATION_TOKENS
    for block in results:
        layout.framing += TOOL_RESULT_TOKENS - RESULT_NEWLINE_TOKENS
        # The OpenAI format marks a failed result in its text (upstream.blocks.tool_result_text).
        failed = wire == "openai" and block.get("is_error")
        _add_result(layout, block.get("content"), ERROR_PREFIX if failed else "")
    if others or not results:
        layout.framing += USER_MESSAGE_TOKENS
        _add_parts(layout, others)


def _add_result(layout: Layout, content: object, prefix: str = "") -> None:
    """A tool result's text with the newline the template puts after it, counted together.

    A text ending in punctuation or spaces merges with that newline (".\n" is one token), so
    counting them apart would over-count; text parts are joined with newlines, so each takes
    its own.
    """
    if isinstance(content, str):
        layout.add("messages", prefix + content + "\n")
        return
    if not isinstance(content, list) or not any(_is_text(b) for b in content):
        layout.add("messages", prefix.strip())
        layout.framing += RESULT_NEWLINE_TOKENS
        _add_parts(layout, content)
        return
    for block in content:
        if _is_text(block) and isinstance(block.get("text"), str):
            layout.add("messages", prefix + block["text"] + "\n")
            prefix = ""
        else:
            _add_parts(layout, [block])
    if any(isinstance(b, MAPPINGS) and b.get("type") == "image" for b in content):
        # The OpenAI format carries a result's images in a user message of their own.
        layout.framing += USER_MESSAGE_TOKENS


def _add_parts(layout: Layout, content: object) -> None:
    """Text and image blocks of a user message or tool result; anything else by its JSON."""
    if not isinstance(content, list):
        layout.add("messages", content)
        return
    for block in content:
        if _is_text(block):
            layout.add("messages", block.get("text"))
        elif isinstance(block, MAPPINGS) and block.get("type") in ("image", "image_url"):
            beside = sum(_text_length(b) for b in content)
            layout.images.append(ImageRef(_image_data(block), beside))
        else:
            layout.add("messages", block)


def _add_assistant_blocks(
    layout: Layout, content: object, current_turn: bool, unsigned_as_text: bool
) -> None:
    layout.framing += ASSISTANT_TURN_TOKENS
    if not isinstance(content, list):
        if not _has_visible_text(content):
            layout.framing -= ASSISTANT_TEXT_NEWLINE_TOKENS
        layout.add("messages", content)
        return
    visible = False  # one pass: a warm recount walks every block of a long session
    texts = layout.texts["messages"]
    text_at: int | None = None  # where the text a tool call may follow sits in `texts`
    for block in content:
        kind = block.get("type") if isinstance(block, MAPPINGS) else None
        if kind == "text":
            text = block.get("text")
            visible = visible or _shows(text)
            layout.add("messages", text)
            text_at = len(texts) - 1 if isinstance(text, str) and text else None
        elif kind == "tool_use" and text_at is not None and text_at == len(texts) - 1:
            # "text\n<tool_call>": the text (stripped by the template) meets the call's newline
            # and may merge with it, so they are counted together.
            texts[text_at] = texts[text_at].rstrip() + "\n"
            layout.framing -= CALL_NEWLINE_TOKENS
            text_at = None
            _add_tool_call(layout, block.get("name"), block.get("input"))
        elif unsigned_as_text and _is_unsigned_thinking(block):
            visible = True
            layout.add("messages", UNSIGNED_REASONING_PREFIX + block["thinking"])
        elif kind in ("thinking", "redacted_thinking"):
            # Earlier turns' reasoning is dropped by the template; this turn's is kept.
            if current_turn:
                layout.add("messages", block.get("thinking") or block.get("data"))
        elif kind == "tool_use":
            _add_tool_call(layout, block.get("name"), block.get("input"))
        else:
            layout.add("messages", block)
    if not visible:
        layout.framing -= ASSISTANT_TEXT_NEWLINE_TOKENS


def _add_tool_call(layout: Layout, name: object, arguments: object) -> None:
    layout.framing += TOOL_CALL_TOKENS
    layout.add("messages", name)
    if not isinstance(arguments, MAPPINGS):
        layout.add("messages", arguments)
        return
    # The hottest loop of a warm recount (every argument of every call): appended directly.
    texts = layout.texts["messages"]
    layout.framing += TOOL_ARGUMENT_TOKENS * len(arguments)
    for key, value in arguments.items():
        for text in (str(key), value if type(value) is str else value_text(value)):
            if text:
                texts.append(text)


def _anthropic_tool(tool: object) -> object:
    """The function object z.ai prints for an Anthropic tool."""
    if not isinstance(tool, MAPPINGS) or "input_schema" not in tool:
        return tool  # server tools and odd shapes are printed as they are
    function = {"name": tool.get("name")}
    if "description" in tool:
        function["description"] = tool["description"]
    function["parameters"] = tool["input_schema"]
    return function


def _bare_function(tool: object) -> object:
    """z.ai prints an OpenAI tool as its bare function object, without the type wrapper."""
    if isinstance(tool, MAPPINGS) and tool.get("type") == "function":
        function = tool.get("function")
        if isinstance(function, MAPPINGS):
            return function
    return tool


def _add_tools(layout: Layout, tools: list[object]) -> None:
    if not tools:
        return
    layout.framing += TOOLS_PREAMBLE_TOKENS
    for tool in tools:
        # Each JSON line ends in "}" and merges with its newline ("}\n" is one token): counted
        # together, the line is exact.
        layout.add("tools", to_json(tool) + "\n")


def _is_unsigned_thinking(block: object) -> bool:
    """Reasoning no model signed, with something in it: the Anthropic wire sends it as text."""
    return (
        isinstance(block, MAPPINGS)
        and block.get("type") == "thinking"
        and not block.get("signature")
        and isinstance(block.get("thinking"), str)
        and bool(block["thinking"].strip())
    )


def _is_tool_result(block: object) -> bool:
    return isinstance(block, MAPPINGS) and block.get("type") == "tool_result"


def _is_real_user_message(message: object) -> bool:
    """A user turn with something besides tool results (those become 'tool' messages)."""
    if not isinstance(message, MAPPINGS) or message.get("role", "user") != "user":
        return False
    content = message.get("content")
    if not isinstance(content, list):
        return True
    return not all(_is_tool_result(b) for b in content)


# ---------------------------------------------------------------------------- OpenAI shape


def layout_openai(body: Mapping[str, Any]) -> Layout:
    """Lay out an OpenAI chat-completions request body."""
    layout = Layout()
    if not isinstance(body, MAPPINGS):
        layout.add("messages", body)
        return layout
    tools = [_bare_function(t) for t in _as_list(body.get("tools"))]
    _add_tools(layout, tools + _as_list(body.get("functions")))
    messages = _as_list(body.get("messages"))
    current = _last_user_index(
        messages, lambda m: isinstance(m, MAPPINGS) and m.get("role") == "user"
    )
    previous_role = None
    for index, message in enumerate(messages):
        if not isinstance(message, MAPPINGS):
            layout.add("messages", message)
            continue
        role = message.get("role")
        _add_openai_message(layout, message, role, index > current, previous_role)
        previous_role = role
    return layout


def _add_openai_message(
    layout: Layout, message: Mapping[str, Any], role: object, current: bool, previous: object
) -> None:
    content = message.get("content")
    if role in ("system", "developer"):
        layout.framing += SYSTEM_MESSAGE_TOKENS
        _add_openai_parts(layout, "system", content)
    elif role == "assistant":
        layout.framing += ASSISTANT_TURN_TOKENS
        if not _has_visible_text(content):
            layout.framing -= ASSISTANT_TEXT_NEWLINE_TOKENS
        _add_openai_parts(layout, "messages", content)
        if current:
            layout.add("messages", message.get("reasoning_content"))
        for call in _as_list(message.get("tool_calls")) + _as_list(message.get("function_call")):
            _add_openai_call(layout, call)
    elif role in ("tool", "function"):
        if previous not in ("tool", "function"):
            layout.framing += OBSERVATION_TOKENS
        layout.framing += TOOL_RESULT_TOKENS
        _add_openai_parts(layout, "messages", content)
    else:
        layout.framing += USER_MESSAGE_TOKENS
        _add_openai_parts(layout, "messages", content)


def _add_openai_parts(layout: Layout, section: Section, content: object) -> None:
    if not isinstance(content, list):
        layout.add(section, content)
        return
    beside = sum(_text_length(p) for p in content)
    for part in content:
        if _is_text(part):
            layout.add(section, part.get("text"))
        elif isinstance(part, MAPPINGS) and part.get("type") in ("image_url", "image"):
            layout.images.append(ImageRef(_image_data(part), beside))
        else:
            layout.add(section, part)


def _add_openai_call(layout: Layout, call: object) -> None:
    if not isinstance(call, MAPPINGS):
        layout.add("messages", call)
        return
    function = call.get("function", call)
    if not isinstance(function, MAPPINGS):
        layout.add("messages", function)
        return
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):  # not JSON: count the raw string as given
            pass
    _add_tool_call(layout, function.get("name"), arguments)


# ---------------------------------------------------------------------------- shared helpers


def _as_list(value: object) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    return [value]


def _last_user_index(messages: list[Any], is_user: Callable[[object], bool]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if is_user(messages[index]):
            return index
    return -1


def _has_visible_text(content: object) -> bool:
    """True if an assistant message shows text (the template strips it before printing)."""
    if isinstance(content, str):
        return _shows(content)
    if isinstance(content, list):
        return any(_is_text(p) and _shows(p.get("text")) for p in content)
    return content is not None


def _shows(text: object) -> bool:
    """True for text with something besides whitespace (without copying it, as strip() would)."""
    if isinstance(text, str):
        return bool(text) and not text.isspace()
    return bool(text)


def _text_length(block: object) -> int:
    text = block.get("text") if isinstance(block, dict) and _is_text(block) else None
    return len(text) if isinstance(text, str) else 0


def _is_text(block: object) -> bool:
    return isinstance(block, MAPPINGS) and block.get("type") == "text"


def _image_data(block: Mapping[str, Any]) -> str | None:
    """Inline base64 data (canonical source) or a data: URL (OpenAI image_url), else None."""
    source = block.get("source")
    if isinstance(source, MAPPINGS) and isinstance(source.get("data"), str):
        return source["data"]
    url = block.get("image_url")
    if isinstance(url, MAPPINGS):
        url = url.get("url")
    if isinstance(url, str) and url.startswith("data:"):
        return url
    return None
