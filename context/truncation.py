"""Structure-safe truncation: the last resort when a conversation cannot fit its budget.

What is never dropped (DESIGN.md §4, issue 5): the system prompt (not a message), the latest
user message and the assistant turn it answers, the last human-written user message (with the
turn it answers when it also carries tool results), and the first user message (the task) when
it is small. Whole messages are dropped oldest first at cut points that keep every tool_use with
its tool_result, roles alternate starting with the user, and one short marker says how many
messages were omitted. Thinking goes with its turn; no signed block is ever altered.

The cut is found from the per-message counts of one counting walk (binary search over suffix
sums); only the result is counted again, to confirm it fits. When the protected part alone is
too big, its largest text blocks shrink (head and tail kept, the middle replaced by a marker);
when even that cannot fit, the task and the user's last words give way before the latest turn.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from tokens import MessageCounts
from upstream import canonical as c
from upstream.blocks import merge_roles

# The task (first user message) is kept when it is under this share of the input budget.
TASK_SHARE = 0.10
# A shrunk block keeps at least this many characters at each end.
MIN_KEPT_CHARS = 200
# Shrinking aims this far below the budget, so the marker text and rounding never tip it over.
SHRINK_MARGIN = 0.02
MAX_SHRINK_ROUNDS = 6
MAX_CUT_ROUNDS = 4

Count = Callable[[c.Request], MessageCounts]


class PromptTooLong(Exception):
    """Even the protected part, shrunk, cannot fit: the request cannot be forwarded."""

    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(
            f"prompt is too long: {tokens} tokens > {budget} maximum, even after truncation"
        )
        self.tokens = tokens
        self.budget = budget


@dataclass(frozen=True)
class Truncation:
    """A truncated request and what it took."""

    request: c.Request
    counts: MessageCounts
    messages_removed: int
    blocks_shrunk: int
    kept: tuple[int, ...] | None = None  # the messages kept, when nothing was shrunk


def replay(request: c.Request, kept: tuple[int, ...], counts: MessageCounts) -> Truncation:
    """A cut made before (`kept` messages, leaving `counts`) applied to an identical request."""
    removed = len(request["messages"]) - len(kept)
    return Truncation(_assemble(request, list(kept)), counts, removed, 0, kept)


def omitted_marker(count: int) -> c.TextBlock:
    """The one note that stands in for the messages dropped."""
    noun = "message was" if count == 1 else "messages were"
    return {
        "type": "text",
        "text": f"[context management: {count} earlier {noun} omitted to fit the context window]",
    }


def truncate(
    request: c.Request, counts: MessageCounts, budget: int, count: Count, *, simple: bool = False
) -> Truncation:
    """The request cut to fit `budget` input tokens; raises PromptTooLong when it cannot fit.

    `counts` are the request's own (from `count`); `simple` drops oldest first with no pins.
    """
    messages = request["messages"]
    plan = _Plan.of(messages, counts, budget, simple)
    target = budget
    for _ in range(MAX_CUT_ROUNDS):
        cut = plan.cut_for(target)
        if cut is None:
            break
        kept = plan.kept(cut, len(messages))
        candidate = _assemble(request, kept)
        candidate_counts = count(candidate)
        if candidate_counts.total <= budget:
            removed = len(messages) - len(kept)
            return Truncation(candidate, candidate_counts, removed, 0, tuple(kept))
        target -= candidate_counts.total - budget  # merge framing or marker cost more than planned
    try:
        return _shrink_protected(request, plan, budget, count)
    except PromptTooLong:
        if not plan.pins:
            raise
    # The task and the user's last words could not fit beside the latest turn, even shrunk:
    # forwarding the latest turn alone beats refusing the request.
    return _shrink_protected(request, _Plan.of(messages, counts, budget, True), budget, count)


# ---------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Plan:
    """Which messages are pinned, where the protected tail starts, and where cuts may fall."""

    pins: tuple[int, ...]
    tail: int  # first index of the protected tail
    cuts: tuple[int, ...]  # valid first indexes of a kept suffix, ascending (tail included)
    costs: tuple[int, ...]  # tokens kept with each cut: fixed part, marker, pins before, suffix

    @classmethod
    def of(
        cls, messages: list[c.Message], counts: MessageCounts, budget: int, simple: bool
    ) -> _Plan:
        tail = protected_tail(messages)
        pins = () if simple else protected_pins(messages, counts, budget, tail)
        cuts = tuple(k for k in range(1, tail + 1) if k == tail or can_start(messages[k]))
        suffix = list(reversed(list(accumulate(reversed(counts.messages), initial=0))))
        before = list(accumulate((counts.messages[i] if i in pins else 0 for i in range(tail + 1)),
                                 initial=0))  # fmt: skip
        base = counts.fixed + _MARKER_TOKENS
        return cls(pins, tail, cuts, tuple(base + before[k] + suffix[k] for k in cuts))

    def cut_for(self, target: int) -> int | None:
        """The earliest cut whose kept part fits `target`, or None when even the tail does not."""
        # Costs never rise as the cut moves later (a pin passed over moves from the suffix to
        # the pinned part): binary search the first that fits.
        index = bisect.bisect_left([-cost for cost in self.costs], -target)
        return self.cuts[index] if index < len(self.cuts) else None

    def kept(self, cut: int, total: int) -> list[int]:
        """Indexes of the `total` messages kept with a cut at `cut`."""
        return [*(p for p in self.pins if p < cut), *range(cut, total)]


# The marker's cost, rounded up; the confirming count sees the real one.
_MARKER_TOKENS = 24


def protected_tail(messages: Sequence[c.Message]) -> int:
    """First index of the latest user message and the assistant turn its tool results answer."""
    latest = _last_index(messages, lambda m: m["role"] == "user")
    if latest < 0:
        return 0
    if latest > 0 and _has_results(messages[latest]):
        return latest - 1
    return latest


def last_human_message(messages: Sequence[c.Message]) -> int:
    """Index of the last user message with something besides tool results, or -1."""
    return _last_index(messages, _is_human)


def protected_pins(
    messages: list[c.Message], counts: MessageCounts, budget: int, tail: int
) -> tuple[int, ...]:
    """Messages before the protected tail that are kept all the same: the task while it is
    under TASK_SHARE of `budget`, and the user's last own words (with the call they answer)."""
    pins: set[int] = set()
    if counts.messages and counts.messages[0] < TASK_SHARE * budget and 0 < tail:
        pins.add(0)
    human = last_human_message(messages)
    if 0 <= human < tail:
        pins.add(human)
        if human > 0 and _has_results(messages[human]):
            pins.add(human - 1)  # the tool_use blocks its results answer
    return tuple(sorted(pins))


def can_start(message: c.Message) -> bool:
    """A kept suffix may start here: an assistant turn, or a user turn that answers nothing."""
    return message["role"] == "assistant" or not _has_results(message)


def _has_results(message: c.Message) -> bool:
    return any(b["type"] == "tool_result" for b in message["content"])


def _is_human(message: c.Message) -> bool:
    return message["role"] == "user" and any(b["type"] != "tool_result" for b in message["content"])


def _last_index(messages: Sequence[c.Message], test: Callable[[c.Message], bool]) -> int:
    for index in range(len(messages) - 1, -1, -1):
        if test(messages[index]):
            return index
    return -1


# ---------------------------------------------------------------------------- assembling


def _assemble(request: c.Request, kept: list[int]) -> c.Request:
    """The request with only the `kept` messages, one marker at the first gap, roles merged."""
    messages = request["messages"]
    removed = len(messages) - len(kept)
    out: list[c.Message] = []
    previous = -1
    marked = False
    for index in kept:
        if index != previous + 1 and not marked:
            out.append({"role": "user", "content": [omitted_marker(removed)]})
            marked = True
        out.append(messages[index])
        previous = index
    if not marked and removed:
        out.append({"role": "user", "content": [omitted_marker(removed)]})
    return request | {"messages": merge_roles(out)}


# ---------------------------------------------------------------------------- shrinking


def _shrink_protected(request: c.Request, plan: _Plan, budget: int, count: Count) -> Truncation:
    """Keep only what is protected, then shrink its largest text blocks until it fits."""
    kept = plan.kept(plan.tail, len(request["messages"]))
    candidate = _assemble(request, kept)
    removed = len(request["messages"]) - len(kept)
    shrunk = 0
    for _ in range(MAX_SHRINK_ROUNDS):
        counts = count(candidate)
        if counts.total <= budget:
            return Truncation(candidate, counts, removed, shrunk, None if shrunk else tuple(kept))
        excess = counts.total - budget + math.ceil(budget * SHRINK_MARGIN)
        candidate, cut_blocks = _shrink_largest(candidate, excess, counts)
        if not cut_blocks:
            raise PromptTooLong(counts.total, budget)
        shrunk += cut_blocks
    counts = count(candidate)
    if counts.total > budget:
        raise PromptTooLong(counts.total, budget)
    return Truncation(candidate, counts, removed, shrunk)


def _shrink_largest(
    request: c.Request, excess: int, counts: MessageCounts
) -> tuple[c.Request, int]:
    """Cut `excess` tokens (estimated by characters) from the largest shrinkable texts."""
    places = sorted(_text_places(request["messages"]), key=lambda p: -len(p.text))
    messages = [dict(m) | {"content": list(m["content"])} for m in request["messages"]]
    tokens_per_char = counts.total / max(1, _total_chars(request))
    cut_blocks = 0
    for place in places:
        if excess <= 0:
            break
        room = len(place.text) - 2 * MIN_KEPT_CHARS
        if room <= 0:
            continue
        chars = min(room, math.ceil(excess / max(tokens_per_char, 1e-6)))
        place.replace(messages, _cut_middle(place.text, chars, math.ceil(chars * tokens_per_char)))
        excess -= math.floor(chars * tokens_per_char)
        cut_blocks += 1
    return request | {"messages": messages}, cut_blocks  # type: ignore[return-value]


def _cut_middle(text: str, chars: int, tokens: int) -> str:
    """`text` with `chars` characters taken out of its middle and a marker in their place."""
    keep = len(text) - chars
    head = keep // 2
    tail = keep - head
    marker = f"\n[… {tokens} tokens cut here to fit the context window …]\n"
    return text[:head] + marker + text[len(text) - tail :]


@dataclass(frozen=True)
class _TextPlace:
    """Where one shrinkable text sits: message, block, and part inside a tool result."""

    message: int
    block: int
    part: int | None
    text: str

    def replace(self, messages: list[Any], text: str) -> None:
        """Put `text` in this place of `messages` (copied blocks, never the client's)."""
        content = messages[self.message]["content"]
        block = dict(content[self.block])
        if self.part is None and block["type"] == "text":
            block["text"] = text
        elif self.part is None:
            block["content"] = text
        else:
            parts = list(block["content"])
            parts[self.part] = dict(parts[self.part]) | {"text": text}
            block["content"] = parts
        content[self.block] = block


def _text_places(messages: list[c.Message]) -> list[_TextPlace]:
    """Text blocks and tool-result texts; thinking and tool_use input are never cut."""
    places = []
    for i, message in enumerate(messages):
        for j, block in enumerate(message["content"]):
            if block["type"] == "text":
                places.append(_TextPlace(i, j, None, block["text"]))
            elif block["type"] == "tool_result":
                content = block.get("content", "")
                if isinstance(content, str):
                    places.append(_TextPlace(i, j, None, content))
                    continue
                for k, part in enumerate(content):
                    if part["type"] == "text":
                        places.append(_TextPlace(i, j, k, part["text"]))
    return places


def _total_chars(request: c.Request) -> int:
    return sum(len(p.text) for p in _text_places(request["messages"])) + sum(
        len(b["text"]) for b in request.get("system", [])
    )
