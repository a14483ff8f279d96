"""Which z.ai upstream and model serve a request (DESIGN.md §3)."""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass

from config import EndpointPreference, Settings
from errors import BadRequest
from upstream import canonical as c

OPENAI_SUFFIX = "-openai"
ANTHROPIC_SUFFIX = "-anthropic"
# What a text model on the OpenAI-format upstream reads where the client had sent an image.
IMAGE_NOTE = "[image omitted: this model cannot see images]"


class Endpoint(enum.Enum):
    """The two z.ai wire formats."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes: endpoint, upstream model, and that model's real window.

    `describe_images`: a text route on which every image is replaced by its description.
    """

    endpoint: Endpoint
    model: str
    requested_model: str
    window: int
    vision: bool
    describe_images: bool = False


def list_models(settings: Settings) -> list[str]:
    """Model ids the proxy offers, in /v1/models order."""
    text = settings.autotext_model
    return [text, settings.autovision_model, text + OPENAI_SUFFIX, text + ANTHROPIC_SUFFIX]


def choose_route(request: c.Request, settings: Settings) -> Route:
    """Route a canonical request; 400 (naming `model`) for a model the proxy does not serve.

    The vision model serves a request whose latest user turn has an image (VISION_ROUTING=vision;
    the ContextManager refines this for auto and describe) or that names it.
    """
    requested = request["model"]
    if _latest_user_has_image(request) or asks_for_vision(requested, settings):
        return vision_route(requested, settings)
    return text_route(requested, settings)


def asks_for_vision(requested: str, settings: Settings) -> bool:
    """True when the client named the vision model (or a name that maps to it)."""
    return _resolve_model(requested, settings)[0] == settings.autovision_model


def vision_route(requested: str, settings: Settings) -> Route:
    """The vision model's route: z.ai's Anthropic endpoint degrades images, so vision always
    takes the OpenAI format."""
    return Route(
        Endpoint.OPENAI,
        settings.autovision_model,
        requested,
        settings.real_vision_model_tokens,
        True,
    )


def text_route(requested: str, settings: Settings, describe_images: bool = False) -> Route:
    """The text model's route for a requested name (its endpoint by preference or suffix);
    callers send a name that asks for the vision model (`asks_for_vision`) to `vision_route`."""
    model, forced = _resolve_model(requested, settings)
    endpoint = forced or _preferred_endpoint(settings.text_endpoint_preference)
    return Route(
        endpoint, model, requested, settings.real_text_model_tokens, False, describe_images
    )


def fit_to_route(request: c.Request, route: Route) -> c.Request:
    """The request as the routed upstream takes it.

    z.ai's OpenAI-format upstream refuses images for a text model (its Anthropic endpoint takes
    them), so on that route each image of an earlier turn becomes a note; the latest user turn
    has none, or the route would be the vision model's. A describing route keeps its images:
    the ContextManager puts their descriptions in.
    """
    if route.vision or route.describe_images or route.endpoint is not Endpoint.OPENAI:
        return request
    if not any(c.has_image(m) for m in request["messages"]):
        return request
    messages: list[c.Message] = [
        {"role": m["role"], "content": [_image_as_note(b) for b in m["content"]]}
        for m in request["messages"]
    ]
    return request | {"messages": messages}


def _image_as_note(block: c.ContentBlock) -> c.ContentBlock:
    if block["type"] == "image":
        return {"type": "text", "text": IMAGE_NOTE}
    if block["type"] == "tool_result" and isinstance(content := block.get("content"), list):
        return block | {"content": [_part_as_note(part) for part in content]}
    return block


def _part_as_note(part: c.TextBlock | c.ImageBlock) -> c.TextBlock | c.ImageBlock:
    return {"type": "text", "text": IMAGE_NOTE} if part["type"] == "image" else part


def _resolve_model(requested: str, settings: Settings) -> tuple[str, Endpoint | None]:
    """The upstream model for a requested name, and the endpoint a suffix forces (if any)."""
    name, forced = requested, None
    if name.endswith(OPENAI_SUFFIX):
        name, forced = name.removesuffix(OPENAI_SUFFIX), Endpoint.OPENAI
    elif name.endswith(ANTHROPIC_SUFFIX):
        name, forced = name.removesuffix(ANTHROPIC_SUFFIX), Endpoint.ANTHROPIC
    for pattern, target in settings.model_map:
        if fnmatch.fnmatchcase(name, pattern):
            return target, forced
    if name in (settings.autotext_model, settings.autovision_model):
        return name, forced
    if name.startswith("claude-"):
        return settings.autotext_model, forced
    known = ", ".join(list_models(settings))
    raise BadRequest(f"model {requested!r} is not available; use one of: {known}", param="model")


def _preferred_endpoint(preference: EndpointPreference) -> Endpoint:
    return Endpoint.OPENAI if preference is EndpointPreference.OPENAI else Endpoint.ANTHROPIC


def _latest_user_has_image(request: c.Request) -> bool:
    for message in reversed(request["messages"]):
        if message["role"] == "user":
            return c.has_image(message)
    return False
