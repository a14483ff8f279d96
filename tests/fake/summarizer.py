"""The fake's summariser: how it answers the proxy's condensation requests, like an ideal model.

A summary request is a request whose last user message holds ``<conversation>`` …
``</conversation>`` (the transcript to condense) and optionally ``<previous-summary>`` …
``</previous-summary>``. Unless a reply is scripted, the fake answers it with a summary that lists
every fact it finds, the previous summary's first, then the conversation's, each in order of first
appearance::

    Summary of the conversation so far:
    Previous summary:
    - src/billing/invoice.py
    - compute_total_v2
    Facts:
    - 4821
    - TypeError: unsupported operand
    - `pytest -q`

The answer fits the request's ``max_tokens`` at 4 characters a token (no more than
``max_tokens * 4`` characters); facts that do not fit are dropped from the end. With a quality q
below 1 (``FakeUpstream.summary_quality``) only the first ``int(q * n)`` of the n facts are kept;
with none kept the summary is generic prose without a single fact, which a quality gate rejects.

Its facts are its own, on purpose simpler and more generous than the proxy's gate (the fake never
imports project code): URLs, paths (a token with ``/`` or ``\\``), names with ``_``, an inner
capital or dots, names called with ``(``, CLI flags, numbers of 3+ digits or with a point, unit or
``%``, hex, errno names, whole error lines (a name ending in Error/Exception, ``error:``,
``fatal:``, exit codes), backticked code and ``$ command`` lines.
"""

from __future__ import annotations

import re

from tests.fake.constants import Json
from tests.fake.replies import Reply

NOTE = "summary_request"
HEADER = "Summary of the conversation so far:"
GENERIC = (
    "The user and the assistant went through the task together and made some progress. "
    "The details were not kept."
)
CHARS_PER_TOKEN = 4
LINE_LIMIT = 200  # characters of an error line or command kept

_CONVERSATION = re.compile(r"<conversation>(.*?)</conversation>", re.S)
_PREVIOUS = re.compile(r"<previous-summary>(.*?)</previous-summary>", re.S)
_SEPARATORS = re.compile(r"[\s\"'`,;(){}\[\]<>=|*]+")
# 8,192 (a number with thousands separators, not a list such as [100,200]).
_GROUPED = re.compile(r"(?<![\d,\[])\d{1,3}(?:,\d{3})+(?![\d\]]|,\d)")
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'<>()\[\]{}`|]+")
_CALL = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*)\(")
_BACKTICKED = re.compile(r"`([^`\n]+)`")
_ERROR_LINE = re.compile(
    r"[A-Za-z]+(?:Error|Exception)\b|(?i:^\s*(?:error|fatal|panic)\b|exit(?:ed)? (?:with )?"
    r"(?:code|status))"
)
_NUMBER = re.compile(r"-?(?:0x[0-9a-fA-F]+|\d[\d.]*(?:[a-zA-Z]{1,3}|%)?)")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")
_ERRNO = re.compile(r"E[A-Z]{3,}")
_EDGE = "\"'.,;:!?)]}>"


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [p.get("text") for p in content if isinstance(p, dict)]
    return "\n".join(p for p in parts if isinstance(p, str))


def summary_parts(body: object) -> tuple[str, str] | None:
    """(conversation, previous summary or "") of a summary request; None for other requests."""
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list):
        return None
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        return None
    prompt = _text(users[-1].get("content"))
    conversation = _CONVERSATION.search(prompt)
    if conversation is None:
        return None
    previous = _PREVIOUS.search(prompt)
    return conversation.group(1), previous.group(1) if previous else ""


def is_summary_request(body: object) -> bool:
    """Whether `body` asks for a summary (its last user message holds <conversation>)."""
    return summary_parts(body) is not None


def _is_fact(token: str) -> bool:
    if len(token) < 2 or not token.isprintable():
        return False
    letters = any(c.isalpha() for c in token)
    if "://" in token or (("/" in token or "\\" in token) and letters):
        return True
    if letters and ("_" in token.strip("_") or token.startswith("__")):
        return True
    if re.search(r"[a-z][A-Z]", token) or (token.startswith("--") and len(token) > 3):
        return True
    if _DOTTED.fullmatch(token) and len(token) >= 4:
        return True
    if _ERRNO.fullmatch(token):
        return True
    if _NUMBER.fullmatch(token):
        digits = sum(c.isdigit() for c in token)
        return digits >= 3 or "." in token or not token[-1].isdigit() or token.startswith("0x")
    return False


def find_facts(text: str) -> list[str]:
    """The facts of `text`, each once, in order of first appearance (see the module docstring)."""
    found: dict[str, int] = {}  # fact -> position of its first appearance

    def note(fact: str, position: int) -> None:
        if fact and fact not in found:
            found[fact] = position

    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.strip().removeprefix("- ")  # a list item of an earlier summary
        if stripped.startswith("$ "):
            note(stripped[:LINE_LIMIT], offset)
        elif _ERROR_LINE.search(stripped):
            note(stripped[:LINE_LIMIT], offset)
        offset += len(line)
    for match in _BACKTICKED.finditer(text):
        note(match.group(0)[:LINE_LIMIT], match.start())
    for match in _CALL.finditer(text):
        if len(match.group(1)) >= 2 and not text.startswith("s)", match.end()):
            note(match.group(1), match.start())
    for match in _URL.finditer(text):
        note(match.group(0).rstrip(_EDGE), match.start())
    plain = _GROUPED.sub(lambda m: m.group(0).replace(",", ""), _URL.sub(" ", text))
    for match in re.finditer(r"\S+", plain):
        for piece in _SEPARATORS.split(match.group(0)):
            token = piece.rstrip(_EDGE)
            if _is_fact(token):
                note(token, match.start())
    return sorted(found, key=found.__getitem__)


def summarize(
    conversation: str, previous: str = "", max_tokens: int | None = None, quality: float = 1.0
) -> str:
    """The summary the fake writes (see the module docstring)."""
    earlier = find_facts(previous)
    seen = set(earlier)
    later = [fact for fact in find_facts(conversation) if fact not in seen]
    if quality < 1.0:  # forgetful: only the first int(q * n) facts
        keep = int(max(0.0, quality) * (len(earlier) + len(later)))
        earlier, later = earlier[:keep], later[: max(0, keep - len(earlier))]
    budget = max_tokens * CHARS_PER_TOKEN if max_tokens else None
    if not earlier and not later:
        text = f"{HEADER}\n{GENERIC}" if quality < 1.0 else f"{HEADER}\n- Facts: (none)"
        return text[:budget]
    text = HEADER[:budget]
    for label, facts in (("Previous summary", earlier), ("Facts", later)):
        for k, fact in enumerate(facts):
            # One fact a line, so a later summary reads each back whole (error lines included).
            piece = (f"\n{label}:" if k == 0 else "") + f"\n- {fact}"
            if budget is not None and len(text) + len(piece) > budget:
                return text  # the facts are kept in order: the first that does not fit ends it
            text += piece
    return text


def summary_reply(body: Json, quality: float = 1.0) -> Reply:
    """The reply to a summary request (`body` must be one)."""
    parts = summary_parts(body)
    assert parts is not None, "not a summary request"
    max_tokens = body.get("max_tokens")
    limit = max_tokens if isinstance(max_tokens, int) and not isinstance(max_tokens, bool) else None
    return Reply(text=summarize(parts[0], parts[1], limit, quality), stop_reason="end_turn")
