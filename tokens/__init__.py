"""Token counting for GLM-4.6 (DESIGN.md §5): one TokenCounter per worker, built from Settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tokens.counter import MessageCounts, TokenBreakdown, TokenCounter
from tokens.encoding import load_encoding
from tokens.images import ImageTokenPolicy

if TYPE_CHECKING:
    from config import Settings

__all__ = [
    "ImageTokenPolicy",
    "MessageCounts",
    "TokenBreakdown",
    "TokenCounter",
    "build_counter",
    "load_encoding",
]


def build_counter(
    settings: Settings, on_lookup: Callable[[int, int], None] | None = None
) -> TokenCounter:
    """The worker's TokenCounter: loads the encoding (offline) unless counting is legacy.

    `on_lookup(hits, misses)` is called after each request's cache lookups (metrics).

    Raises ValueError naming TOKENIZER_ENCODING or TOKENIZER_FILE if the encoding cannot load.

    >>> build_counter(Settings.from_env({})).stats()["mode"]
    'estimate'
    """
    legacy = settings.counting_is_legacy
    encoding = None
    if not legacy:
        encoding = load_encoding(
            settings.tokenizer_encoding, settings.tokenizer_file, glm_digits=True
        )
    images = ImageTokenPolicy(
        dynamic=settings.enable_dynamic_image_tokens,
        base=settings.base_image_tokens,
        per_char=settings.image_tokens_per_char,
        fixed=settings.fixed_image_tokens,
        # A description is at most IMAGE_DESCRIPTION_MAX_TOKENS: about 4 characters each.
        description_chars=4 * settings.image_description_max_tokens,
    )
    return TokenCounter(
        encoding,
        cache_size=settings.tiktoken_cache_size,
        images=images,
        legacy=legacy,
        exact=settings.tokenizer_file is not None,
        log_breakdown=settings.enable_token_counting_logging,
        on_lookup=on_lookup,
    )
