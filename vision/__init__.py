"""Images in long sessions (issue 12): each image described once by the vision model, so the
text model can carry the whole session with descriptions where the images were.

`images.py` finds images and puts description blocks in their place (pure); `describer.py`
makes and stores the descriptions. The ContextManager decides the route and when to describe.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from upstream import canonical as c
from upstream.routing import Route, vision_route
from vision.describer import Describer, Observer

if TYPE_CHECKING:
    from condensation.store import Store
    from config import Settings
    from upstream.client import UpstreamClient

__all__ = ["Describer", "build_describer"]


def build_describer(
    settings: Settings, upstream: UpstreamClient, store: Store, observer: Observer | None = None
) -> Describer:
    """The worker's Describer, its calls made through `upstream` to AUTOVISION_MODEL."""

    def call(route: Route, request: c.Request, api_key: str, timeout: float) -> c.Response:
        return upstream.complete(route, request, api_key, None, timeout)

    route = vision_route(settings.autovision_model, settings)
    return Describer(settings, store, call, route, observer)
