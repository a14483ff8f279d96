"""The app-lifetime objects the views use, built once in create_app."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import current_app

from config import Settings
from metrics import Metrics
from upstream import canonical as c
from upstream.client import UpstreamClient

EXTENSION_KEY = "anthropic_proxy"


class Counter(Protocol):
    """What the views need from a token counter."""

    def count_request(self, request: c.Request) -> int: ...

    def stats(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Services:
    """Settings plus the long-lived collaborators, shared by every request of a worker."""

    settings: Settings
    upstream: UpstreamClient
    counter: Counter
    metrics: Metrics | None = None  # None when ENABLE_METRICS=false
    started_at: float = field(default_factory=time.monotonic)


def get_services() -> Services:
    """The Services of the current app (flaskr's get_db() pattern)."""
    return current_app.extensions[EXTENSION_KEY]
