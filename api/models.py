"""GET /v1/models and /v1/models/<id> in OpenAI list format."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from api.auth import check_listing_access
from api.services import get_services
from errors import NotFound
from upstream.routing import list_models

bp = Blueprint("models", __name__)

# A fixed creation time: the ids are aliases, and clients only need a stable number.
CREATED = 1735689600


def _model(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": CREATED, "owned_by": "z.ai"}


@bp.get("/v1/models")
def list_all() -> dict[str, Any]:
    settings = get_services().settings
    check_listing_access(request.headers, settings)
    return {"object": "list", "data": [_model(m) for m in list_models(settings)]}


@bp.get("/v1/models/<path:model_id>")
def get_one(model_id: str) -> dict[str, Any]:
    settings = get_services().settings
    check_listing_access(request.headers, settings)
    if model_id not in list_models(settings):
        raise NotFound(
            f"The model {model_id!r} does not exist", param="model", code="model_not_found"
        )
    return _model(model_id)
