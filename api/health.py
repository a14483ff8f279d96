"""GET /health: liveness plus the effective routing config (never secrets)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint

from api.services import get_services

bp = Blueprint("health", __name__)

VERSION = "0.1.0"
ROUTING_FIELDS = (
    "upstream_base",
    "openai_upstream_base",
    "autotext_model",
    "autovision_model",
    "text_endpoint_preference",
    "model_map",
    "real_text_model_tokens",
    "real_vision_model_tokens",
    "anthropic_expected_tokens",
    "openai_expected_tokens",
)


@bp.get("/health")
def health() -> dict[str, Any]:
    services = get_services()
    shown = services.settings.public_dict()
    return {
        "status": "ok",
        "version": VERSION,
        "uptime_seconds": round(time.monotonic() - services.started_at, 3),
        "routing": {key: shown[key] for key in ROUTING_FIELDS},
        "auth": {
            "proxy_keys": shown["proxy_api_keys_set"],
            "server_key": shown["server_api_key_set"],
        },
        "token_counter": services.counter.stats(),
        "context": services.context.stats(),
        "upstream_gate": services.upstream.gate.stats(),
    }
