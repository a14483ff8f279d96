"""AI condensation (DESIGN.md §6): older turns become one summary, reused across turns and hosts.

`build_condenser` wires the pieces once per worker: the shared store (summaries, records and
locks), the summarizer (summary calls through the proxy's own upstream client) and the
Condenser the ContextManager calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from condensation.condenser import Condenser, Observer, Record, View
from condensation.store import Store, build_store
from condensation.summarizer import Summarizer
from upstream import canonical as c
from upstream.routing import Route, choose_route

if TYPE_CHECKING:
    from config import Settings
    from upstream.client import UpstreamClient

__all__ = ["Condenser", "Record", "Store", "Summarizer", "View", "build_condenser", "build_store"]


def build_condenser(
    settings: Settings,
    upstream: UpstreamClient,
    store: Store,
    observer: Observer | None = None,
) -> Condenser:
    """The worker's Condenser, its summary calls made through `upstream`."""

    def route_for(model: str) -> Route:
        return choose_route({"model": model, "messages": [], "max_tokens": 1}, settings)

    def call(route: Route, request: c.Request, api_key: str, timeout: float) -> c.Response:
        return upstream.complete(route, request, api_key, None, timeout)

    summarizer = Summarizer(settings, store, call, route_for)
    return Condenser(settings, store, summarizer, observer)
