"""What a summary call asks: the instructions per strategy and the transcript of the span.

The span is written as a plain transcript inside `<conversation>` tags, after the summary it
builds on (inside `<previous-summary>` tags) when there is one. PROMPT_VERSION is part of every
summary's cache key: changing a prompt or the transcript format must change it.
"""

from __future__ import annotations

import json

from config import Strategy
from upstream import canonical as c

PROMPT_VERSION = "1"
# A block longer than this is shown with its middle elided, so one huge tool result cannot
# crowd out the rest of the span in a bounded summary call.
MAX_BLOCK_CHARS = 12_000

_KEEP = (
    "Keep everything an AI agent needs to continue the work without the original messages: "
    "the task and its constraints; every instruction and preference the user gave, in their "
    "words where short; decisions made and why; file paths, function and variable names, "
    "identifiers, URLs, commands and their outcomes; errors with their messages and how they "
    "were fixed (or that they were not); numbers that matter; and the open next steps. "
    "Drop pleasantries, repetition and raw file contents that can be read again. "
    "Write plain text, no preamble, in the language of the conversation."
)
SYSTEM_PROMPTS = {
    Strategy.CONVERSATION_SUMMARY: (
        "You condense the earlier part of a long conversation between a user and an AI coding "
        "agent into a faithful summary that replaces it. " + _KEEP
    ),
    Strategy.KEY_POINT_EXTRACTION: (
        "You extract the key points of the earlier part of a long conversation between a user "
        "and an AI coding agent, as a terse bulleted list grouped under: Task, User "
        "instructions, Decisions, Files and identifiers, Commands and results, Errors and "
        "fixes, Open steps. " + _KEEP
    ),
    Strategy.PROGRESSIVE_SUMMARIZATION: (
        "You maintain a running summary of a long conversation between a user and an AI coding "
        "agent. Rewrite the previous summary so that it also covers the new part of the "
        "conversation, keeping every still-relevant fact of the previous summary. " + _KEEP
    ),
}


def summary_request(
    strategy: Strategy, transcript: str, previous: str | None, model: str, max_tokens: int
) -> c.Request:
    """The canonical request of one summary call."""
    parts = []
    if previous:
        parts.append(f"<previous-summary>\n{previous}\n</previous-summary>")
    parts.append(f"<conversation>\n{transcript}\n</conversation>")
    parts.append(f"Write the {'updated summary' if previous else 'summary'} now, in at most "
                 f"{max_tokens * 3 // 4} words.")  # fmt: skip
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": SYSTEM_PROMPTS[strategy]}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "\n\n".join(parts)}]}],
        "temperature": 0.2,
    }


def transcript(messages: list[c.Message]) -> str:
    """A span as plain text: one paragraph per block, speaker and kind first."""
    lines: list[str] = []
    for message in messages:
        speaker = "User" if message["role"] == "user" else "Assistant"
        for block in message["content"]:
            line = _block_line(speaker, block)
            if line:
                lines.append(line)
    return "\n\n".join(lines)


def _block_line(speaker: str, block: c.ContentBlock) -> str:
    if block["type"] == "text":
        return f"{speaker}: {_elide(block['text'])}"
    if block["type"] == "tool_use":
        arguments = json.dumps(block["input"], ensure_ascii=False)
        return f"{speaker} called {block['name']}({_elide(arguments)})"
    if block["type"] == "tool_result":
        content = block.get("content", "")
        text = content if isinstance(content, str) else c.text_of(content)  # type: ignore[arg-type]
        status = "error" if block.get("is_error") else "result"
        return f"Tool {status}: {_elide(text)}"
    if block["type"] == "thinking":
        return f"{speaker} (thinking): {_elide(block['thinking'])}"
    if block["type"] == "image":
        return f"{speaker}: [an image]"
    return ""


def _elide(text: str) -> str:
    if len(text) <= MAX_BLOCK_CHARS:
        return text
    half = MAX_BLOCK_CHARS // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[… {cut} characters elided …]\n{text[-half:]}"
