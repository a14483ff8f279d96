"""TokenCounter: GLM-4.6 token counts for requests, cached per content piece, thread-safe.

One counter serves a whole worker. It lays a request out the way GLM's chat template frames it
(`framing.py`), counts each text piece with the loaded encoding (exactly with a GLM BPE file, or
cl100k_base plus the corrections of `bias.py`), and remembers each piece's count by a hash of
the piece, so a conversation sent again with one new message costs hashing, not encoding.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from itertools import accumulate
from typing import Any

import cachetools
import tiktoken

from tokens.bias import DEFAULT_RATES, GlmEstimator, ScriptRates
from tokens.framing import ImageRef, Layout, Section, Wire, layout_anthropic, layout_openai
from tokens.images import DEFAULT_IMAGE_POLICY, ImageTokenPolicy, read_image_size

logger = logging.getLogger(__name__)

# Pieces shorter than this (argument keys and values, tool names, short replies) go to a plain
# dict keyed by the text itself instead of the LRU, so they neither crowd big pieces out of a
# TIKTOKEN_CACHE_SIZE-entry LRU nor pay its ~0.8 µs per lookup; agent sessions hold thousands.
MIN_CACHED_CHARS = 48
SMALL_MEMO_ENTRIES = 20_000
LEGACY_CHARS_PER_TOKEN = 4
# Content of an unknown type or shape counts by its JSON length (issue 4) instead of being
# encoded, so a stray base64 blob costs a division, not a multi-megabyte encode.
ODD_CHARS_PER_TOKEN = 4
SECTIONS: tuple[Section, ...] = ("system", "messages", "tools")


@dataclass(frozen=True)
class TokenBreakdown:
    """Where a request's tokens are: text per section, images and template framing."""

    system: int
    messages: int
    tools: int
    images: int
    framing: int

    @property
    def total(self) -> int:
        """All input tokens of the request."""
        return self.system + self.messages + self.tools + self.images + self.framing

    def to_dict(self) -> dict[str, int]:
        """The fields and the total, for logs and context_info."""
        return {**asdict(self), "total": self.total}


@dataclass(frozen=True)
class MessageCounts:
    """A request's tokens as a fixed part (framing, system, tools) plus one figure per message.

    Both come from the walk count_request makes, so `total` equals it; cumulative sums of
    `messages` tell what any cut of the conversation costs without counting it again.
    """

    fixed: int
    messages: tuple[int, ...]

    @property
    def total(self) -> int:
        """All input tokens of the request."""
        return self.fixed + sum(self.messages)


class TokenCounter:
    """Count the tokens GLM-4.6 will read for a request or a text.

    >>> counter = TokenCounter(load_encoding())
    >>> counter.count_request({"messages": [{"role": "user", "content": "Hello there"}]})
    7
    """

    def __init__(
        self,
        encoding: tiktoken.Encoding | None,
        *,
        cache_size: int = 1000,
        images: ImageTokenPolicy = DEFAULT_IMAGE_POLICY,
        legacy: bool = False,
        exact: bool = False,
        log_breakdown: bool = False,
        on_lookup: Callable[[int, int], None] | None = None,
        rates: ScriptRates = DEFAULT_RATES,
    ) -> None:
        """`on_lookup(hits, misses)` hears each request's cache results, outside the lock.

        `rates` are the estimate mode's per-script corrections (benchmarks sweep them).
        """
        if encoding is None and not legacy:
            raise ValueError("TokenCounter needs an encoding unless legacy=True")
        self.mode = "legacy" if legacy else "exact" if exact else "estimate"
        self._measure = _pick_measure(encoding, self.mode, rates)
        self._images = images
        self._log_breakdown = log_breakdown
        self._on_lookup = on_lookup
        self._cache: cachetools.LRUCache[tuple[int, int], int] = cachetools.LRUCache(cache_size)
        self._small: dict[str, int] = {}
        self._lock = threading.Lock()  # cachetools caches are not thread-safe
        self._hits = 0
        self._misses = 0
        self._warned_small_cache = False

    # ------------------------------------------------------------------------ public

    def count_text(self, text: str) -> int:
        """Tokens of one text, without framing.

        >>> counter.count_text("Hello there")
        2
        """
        layout = Layout()
        layout.add("messages", text)
        return self._count_layout(layout, "text").messages

    def count_request(self, request: Mapping[str, Any], wire: Wire = "anthropic") -> int:
        """Input tokens of a canonical (Anthropic-shaped) request as `wire` forwards it.

        >>> user = {"role": "user", "content": "Hi"}
        >>> counter.count_request({"system": "Be brief", "messages": [user]})
        10
        """
        return self.breakdown(request, wire).total

    def count_messages(
        self, request: Mapping[str, Any], wire: Wire = "anthropic", described: bool = False
    ) -> MessageCounts:
        """The fixed part and each message's tokens of a canonical request, from one walk.

        >>> user = {"role": "user", "content": "Hi"}
        >>> counts = counter.count_messages({"system": "Be brief", "messages": [user, user]})
        >>> counts.fixed, counts.messages, counts.total
        (7, (3, 3), 13)

        `described`: the request goes to the text model with descriptions for its images, so
        an image still there counts as a description not yet made, not by its pixels.
        """
        started = time.perf_counter()
        layout = layout_anthropic(request, wire)
        counts, images = self._count_pieces(layout, described)
        result = _split_by_message(layout, counts, images)
        if self._log_breakdown:
            logger.info(
                "TOKEN shape=messages wire=%s mode=%s total=%d fixed=%d messages=%d images=%d "
                "pieces=%d ms=%.2f",
                wire, self.mode, result.total, result.fixed, len(result.messages), sum(images),
                len(counts), (time.perf_counter() - started) * 1000,
            )  # fmt: skip
        return result

    def count_openai_request(self, body: Mapping[str, Any]) -> int:
        """Input tokens of an OpenAI chat-completions body, framing included.

        >>> counter.count_openai_request({"messages": [{"role": "user", "content": "Hi"}]})
        6
        """
        return self.breakdown_openai(body).total

    def breakdown(self, request: Mapping[str, Any], wire: Wire = "anthropic") -> TokenBreakdown:
        """Per-section counts of a canonical request (`.total` is what count_request returns)."""
        return self._count_layout(layout_anthropic(request, wire), "anthropic")

    def breakdown_openai(self, body: Mapping[str, Any]) -> TokenBreakdown:
        """Per-section counts of an OpenAI chat-completions body."""
        return self._count_layout(layout_openai(body), "openai")

    def stats(self) -> dict[str, Any]:
        """Cache figures for /health and metrics: hits, misses, size, hit_ratio, mode.

        >>> sorted(counter.stats())
        ['hit_ratio', 'hits', 'maxsize', 'misses', 'mode', 'size']
        """
        with self._lock:
            hits, misses, size = self._hits, self._misses, len(self._cache)
        looked_up = hits + misses
        ratio = round(hits / looked_up, 3) if looked_up else 0.0
        return {
            "mode": self.mode,
            "hits": hits,
            "misses": misses,
            "size": size,
            "maxsize": self._cache.maxsize,
            "hit_ratio": ratio,
        }

    def clear_cache(self) -> None:
        """Forget every cached count and reset the hit/miss counters."""
        with self._lock:
            self._cache.clear()
            self._small.clear()
            self._hits = self._misses = 0

    # ------------------------------------------------------------------------ counting

    def _count_layout(self, layout: Layout, shape: str) -> TokenBreakdown:
        started = time.perf_counter()
        counts, images = self._count_pieces(layout)
        sums: dict[Section, int] = {}
        start = 0
        for section in SECTIONS:
            end = start + len(layout.texts[section])
            sums[section] = sum(counts[start:end]) + _odd_tokens(layout.odd[section])
            start = end
        result = TokenBreakdown(
            system=sums["system"],
            messages=sums["messages"],
            tools=sums["tools"],
            images=sum(images),
            framing=layout.framing if shape != "text" else 0,
        )
        if self._log_breakdown and shape != "text":
            self._log(result, shape, len(counts), time.perf_counter() - started)
        return result

    def _count_pieces(self, layout: Layout, described: bool = False) -> tuple[list[int], list[int]]:
        """Tokens of every text (system, messages, tools order) and of every image."""
        texts = [t for s in SECTIONS for t in layout.texts[s]]
        if described:
            images = [self._images.pending_description()] * len(layout.images)
        else:
            images = [self._count_image(i) for i in layout.images]
        return self._count_texts(texts), images

    def _count_image(self, image: ImageRef) -> int:
        size = read_image_size(image.data) if image.data and self._images.dynamic else None
        return self._images.estimate(size, image.description_chars)

    def _count_texts(self, texts: list[str]) -> list[int]:
        """Count every text: cached counts first (one lock per request), then encode the rest."""
        if self.mode == "legacy":
            return [math.ceil(len(t) / LEGACY_CHARS_PER_TOKEN) for t in texts]
        big, small, uncached = self._split(texts)
        counts = [0] * len(texts)
        for index in uncached:
            counts[index] = self._measure(texts[index])
        missing_big, missing_small = self._look_up(texts, big, small, counts, len(uncached))
        new_big = {key: self._measure(texts[i]) for key, i in missing_big.items()}
        new_small = {texts[i]: self._measure(texts[i]) for i in missing_small}
        self._store(new_big, new_small)
        for index, key in big.items():
            counts[index] = new_big.get(key, counts[index])
        for index in missing_small:
            counts[index] = new_small[texts[index]]
        return counts

    def _split(self, texts: list[str]) -> tuple[dict[int, tuple[int, int]], list[int], list[int]]:
        """Index → LRU key of the big pieces, indexes of the small ones and of the uncached.

        A request with more big pieces than the LRU holds would evict its own first pieces
        before the next request reads them (LRU thrashing), so only its first `maxsize` are
        cached and the rest are encoded every time.
        """
        big: dict[int, tuple[int, int]] = {}
        small: list[int] = []
        uncached: list[int] = []
        limit = self._cache.maxsize
        for index, text in enumerate(texts):
            if len(text) < MIN_CACHED_CHARS:
                small.append(index)
            elif len(big) < limit:
                big[index] = (hash(text), len(text))
            else:
                uncached.append(index)
        if uncached:
            self._warn_small_cache()
        return big, small, uncached

    def _look_up(
        self,
        texts: list[str],
        big: dict[int, tuple[int, int]],
        small: list[int],
        counts: list[int],
        uncached: int,
    ) -> tuple[dict[tuple[int, int], int], list[int]]:
        """Fill `counts` from the caches; return what is still to be encoded.

        Every piece is a hit or a miss; pieces past the LRU's size count as misses. The totals
        go to the `on_lookup` observer after the lock is released.
        """
        missing_big: dict[tuple[int, int], int] = {}
        missing_small: list[int] = []
        with self._lock:
            for index, key in big.items():
                count = self._cache.get(key)
                if count is None:
                    missing_big.setdefault(key, index)
                else:
                    counts[index] = count
            for index in small:
                count = self._small.get(texts[index])
                if count is None:
                    missing_small.append(index)
                else:
                    counts[index] = count
            looked_up = len(big) + len(small) + uncached
            misses = sum(1 for key in big.values() if key in missing_big) + len(missing_small)
            misses += uncached
            self._hits += looked_up - misses
            self._misses += misses
        self._report(looked_up - misses, misses)
        return missing_big, missing_small

    def _report(self, hits: int, misses: int) -> None:
        """Tell the observer (metrics) one request's hits and misses; its failure is only logged."""
        if self._on_lookup is None or not (hits or misses):
            return
        try:
            self._on_lookup(hits, misses)
        except Exception:  # an observer must never fail the count
            logger.exception("token cache observer failed")

    def _store(self, new_big: dict[tuple[int, int], int], new_small: dict[str, int]) -> None:
        with self._lock:
            for key, count in new_big.items():
                self._cache[key] = count
            if len(self._small) + len(new_small) > SMALL_MEMO_ENTRIES:
                self._small.clear()  # crude but bounded; small pieces are cheap to recount
            self._small.update(new_small)

    def _warn_small_cache(self) -> None:
        if not self._warned_small_cache:
            self._warned_small_cache = True
            logger.warning(
                "TOKEN a request has more than TIKTOKEN_CACHE_SIZE=%d cacheable pieces; "
                "only the first ones are cached, raise the size for long conversations",
                self._cache.maxsize,
            )

    def _log(self, result: TokenBreakdown, shape: str, pieces: int, seconds: float) -> None:
        logger.info(
            "TOKEN shape=%s mode=%s total=%d system=%d messages=%d tools=%d images=%d "
            "framing=%d pieces=%d ms=%.2f",
            shape,
            self.mode,
            result.total,
            result.system,
            result.messages,
            result.tools,
            result.images,
            result.framing,
            pieces,
            seconds * 1000,
        )


def _pick_measure(
    encoding: tiktoken.Encoding | None, mode: str, rates: ScriptRates
) -> Callable[[str], int]:
    if mode == "legacy" or encoding is None:
        return lambda text: math.ceil(len(text) / LEGACY_CHARS_PER_TOKEN)
    if mode == "exact":
        encode = encoding.encode_ordinary
        return lambda text: len(encode(text))
    return GlmEstimator(encoding, rates).count


def _split_by_message(layout: Layout, counts: list[int], images: list[int]) -> MessageCounts:
    """Attribute a layout's counted pieces to its messages by the marks of its walk."""
    first = len(layout.texts["system"])
    message_texts = counts[first : first + len(layout.texts["messages"])]
    odd = [math.ceil(len(item) / ODD_CHARS_PER_TOKEN) for item in layout.odd["messages"]]
    # Running totals of each kind of piece: a message's share is a difference of two of them.
    texts_before = list(accumulate(message_texts, initial=0))
    odd_before = list(accumulate(odd, initial=0))
    images_before = list(accumulate(images, initial=0))
    bounds = [*layout.marks, (len(message_texts), len(odd), layout.framing, len(images))]
    per_message = tuple(
        texts_before[b[0]] - texts_before[a[0]] + odd_before[b[1]] - odd_before[a[1]]
        + b[2] - a[2] + images_before[b[3]] - images_before[a[3]]
        for a, b in zip(bounds, bounds[1:], strict=False)
    )  # fmt: skip
    total = sum(counts) + _odd_tokens([o for s in SECTIONS for o in layout.odd[s]])
    total += layout.framing + sum(images)
    return MessageCounts(total - sum(per_message), per_message)


def _odd_tokens(items: list[str]) -> int:
    return sum(math.ceil(len(item) / ODD_CHARS_PER_TOKEN) for item in items)
