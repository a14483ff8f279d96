"""Describer: each image described once by the vision model, for the text model to read.

A description is stored in the shared store under a digest of the image's bytes, the text of
the message that holds it and the prompt version. That message does not change from turn to
turn, so every later turn, worker and host finds it; concurrent requests needing the same one
make one call (single flight through the store). A call under way finishes and is stored even
when the request that asked for it is gone. A failed call is never the user's failure: the
caller puts a placeholder in (or takes the vision route).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Protocol

from condensation.store import Store, single_flight, stable_key
from config import Settings
from logs import in_context
from upstream import canonical as c
from upstream.routing import Route
from vision.images import MAX_CONTEXT_CHARS, ImageSite, Place, image_identity

logger = logging.getLogger(__name__)

PROMPT_VERSION = "image-description-v1"
SYSTEM_PROMPT = (
    "You describe images for a coding assistant that cannot see them. Write a plain, factual "
    "description that lets it work as if it had seen the image: what kind of image it is "
    "(screenshot, diagram, photo, chart), every piece of visible text, code, error message, "
    "number and label verbatim, the layout and what stands out. No preamble, no guesses about "
    "intent, no markdown headings."
)
CONTEXT_INTRO = "The image was sent in a message that says:\n\n"
NO_CONTEXT = "The image was sent without any text."
INSTRUCTION = "\n\nDescribe the image."
# Description calls of all requests of a worker run on this many threads.
DESCRIBE_WORKERS = 4

Call = Callable[[Route, c.Request, str, float], c.Response]


class Observer(Protocol):
    """Who hears each description needed (metrics)."""

    def record_image_description(self, result: str) -> None: ...


class DescriptionFailed(Exception):
    """A description call failed, timed out or answered no text."""


class Describer:
    """Finds stored descriptions (`stored`) and makes missing ones (`describe`)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        call: Call,
        route: Route,
        observer: Observer | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._call = call
        self._route = route
        self._observer = observer
        self._pool = ThreadPoolExecutor(DESCRIBE_WORKERS, thread_name_prefix="describe")
        self._lock = threading.Lock()
        self._stats = dict.fromkeys(("cache_hits", "made", "failed"), 0)

    def key(self, site: ImageSite) -> str:
        """The store key of a site's description: image bytes, message text, prompt version."""
        return stable_key(
            "image-description", PROMPT_VERSION, image_identity(site.image), site.context
        )

    def stored(self, sites: Sequence[ImageSite], tally: bool = False) -> dict[Place, str]:
        """The descriptions already in the store, by place (fast: one lookup per image).

        With `tally`, each one found counts as a cache hit (requests, not predictions, tally).
        """
        found: dict[Place, str] = {}
        by_key: dict[str, str | None] = {}
        for site in sites:
            key = self.key(site)
            if key not in by_key:
                by_key[key] = self._get(key)
            if (text := by_key[key]) is not None:
                found[site.place] = text
                if tally:
                    self._note("cache_hit")
        return found

    def describe(self, sites: Sequence[ImageSite], api_key: str) -> dict[Place, str | None]:
        """A description for every site (None where its call failed), one call per distinct
        image, side by side; may block for up to about twice CONDENSATION_TIMEOUT."""
        keys = {site.place: self.key(site) for site in sites}
        first: dict[str, ImageSite] = {}
        for site in sites:
            first.setdefault(keys[site.place], site)
        futures = {
            key: self._pool.submit(in_context(self._one), site, key, api_key)
            for key, site in first.items()
        }
        # A call gets its own timeout; waiting for another worker's call gets as long again.
        limit = 2 * self._settings.condensation_timeout + 1
        deadline = time.monotonic() + limit
        texts: dict[str, str | None] = {}
        for key, future in futures.items():
            try:
                texts[key] = future.result(timeout=max(deadline - time.monotonic(), 0.0))
            except FutureTimeout:
                logger.warning("IMAGE description not ready after %.0f s: placeholder", limit)
                self._note("failed")
                texts[key] = None
        return {place: texts[key] for place, key in keys.items()}

    def stats(self) -> dict[str, Any]:
        """This worker's figures for /health: hits, calls made, failures, hit ratio."""
        with self._lock:
            stats: dict[str, Any] = dict(self._stats)
        needed = sum(stats.values())
        stats["hit_ratio"] = round(stats["cache_hits"] / needed, 3) if needed else 0.0
        return stats

    def close(self) -> None:
        self._pool.shutdown(wait=False)

    # ------------------------------------------------------------------------ internals

    def _get(self, key: str) -> str | None:
        try:
            value = self._store.get(key)
        except Exception:  # a broken store: describe again rather than fail
            logger.exception("IMAGE description lookup failed")
            return None
        return value if isinstance(value, str) else None

    def _one(self, site: ImageSite, key: str, api_key: str) -> str | None:
        """One image's description: stored, or made by one worker while others wait."""
        try:
            value, cached = single_flight(
                self._store,
                key,
                lambda: self._ask(site, api_key),
                ttl=self._settings.image_description_cache_ttl,
                wait=self._settings.condensation_timeout,
            )
        except Exception as exc:  # the caller puts a placeholder in; the request goes on
            logger.warning("IMAGE description failed: %s: %s", type(exc).__name__, exc)
            self._note("failed")
            return None
        self._note("cache_hit" if cached else "made")
        return str(value)

    def _ask(self, site: ImageSite, api_key: str) -> str:
        started = time.perf_counter()
        request = description_request(
            site, self._route.model, self._settings.image_description_max_tokens
        )
        response = self._call(self._route, request, api_key, self._settings.condensation_timeout)
        text = c.text_of(response["content"]).strip()
        if not text:
            raise DescriptionFailed("the vision model answered no text")
        logger.info(
            "IMAGE described chars=%d seconds=%.2f", len(text), time.perf_counter() - started
        )
        return text

    def _note(self, result: str) -> None:
        with self._lock:
            self._stats["cache_hits" if result == "cache_hit" else result] += 1
        if self._observer is not None:
            try:
                self._observer.record_image_description(result)
            except Exception:  # an observer must never fail the request
                logger.exception("image description observer failed")


def description_request(site: ImageSite, model: str, max_tokens: int) -> c.Request:
    """The vision call for one image: the message's text as context, then the image."""
    context = site.context.strip()
    if len(context) > MAX_CONTEXT_CHARS:
        half = MAX_CONTEXT_CHARS // 2
        context = f"{context[:half]}\n[…]\n{context[-half:]}"
    prompt = (CONTEXT_INTRO + context if context else NO_CONTEXT) + INSTRUCTION
    return {
        "model": model,
        "max_tokens": max_tokens,
        "system": [{"type": "text", "text": SYSTEM_PROMPT}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": prompt}, site.image]},
        ],
    }
