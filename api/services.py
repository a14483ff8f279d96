"""The app-lifetime objects the views use, built once in create_app."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from flask import current_app

from config import Settings
from context.manager import ContextManager
from metrics import Metrics
from tokens import TokenCounter
from upstream.client import UpstreamClient

EXTENSION_KEY = "anthropic_proxy"


@dataclass(frozen=True)
class Services:
    """Settings plus the long-lived collaborators, shared by every request of a worker."""

    settings: Settings
    upstream: UpstreamClient
    context: ContextManager  # owns the TokenCounter (and the Condenser)
    metrics: Metrics | None = None  # None when ENABLE_METRICS=false
    started_at: float = field(default_factory=time.monotonic)

    @property
    def counter(self) -> TokenCounter:
        """The worker's TokenCounter, owned by the ContextManager."""
        return self.context.counter


def get_services() -> Services:
    """The Services of the current app (flaskr's get_db() pattern)."""
    return current_app.extensions[EXTENSION_KEY]
