"""The ContextManager and images (issue 12): the route VISION_ROUTING picks, descriptions put in
by `finish`, counting that follows the route, and failures that never fail the request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from condensation import build_store
from config import Settings
from context.manager import ContextManager
from tests.conftest import VisionModel
from tests.context.conftest import canonical
from tests.sessions import image_block
from tokens import build_counter
from upstream import canonical as c
from upstream.routing import vision_route
from vision.describer import Describer
from vision.images import image_sites

SHOT = image_block(280, 280)  # 102 tokens by its pixels
ANSWER = "A terminal showing: TypeError: unsupported operand."
Make = Callable[..., tuple[ContextManager, VisionModel]]


@pytest.fixture
def make(tmp_path: Path) -> Make:
    """A manager with a Describer over its own store, whose vision model is a VisionModel."""

    def build(model: VisionModel | None = None, **env: str) -> tuple[ContextManager, VisionModel]:
        values = {"CACHE_DIR": str(tmp_path / "store"), "CONDENSATION_TIMEOUT": "2"}
        settings = Settings.from_env(values | {k.upper(): v for k, v in env.items()})
        model = model or VisionModel(ANSWER)
        route = vision_route(settings.autovision_model, settings)
        describer = Describer(settings, build_store(settings), model, route)
        counter = build_counter(settings)  # its image policy from the settings
        return ContextManager(settings, counter, None, None, None, describer), model

    return build


def turns(*texts: str, image_at: int | None = None, filler: str = "") -> c.Request:
    """A conversation of human turns `texts` (with assistant replies between); the image in
    human turn `image_at`; `filler` text in each assistant reply."""
    messages: list[dict[str, Any]] = []
    for i, text in enumerate(texts):
        content: list[Any] = [{"type": "text", "text": text}]
        if i == image_at:
            content.append(SHOT)
        messages.append({"role": "user", "content": content})
        if i < len(texts) - 1:
            messages.append({"role": "assistant", "content": f"Noted. {filler}"})
    return canonical({"model": "glm-4.6", "max_tokens": 1024, "messages": messages})


LONG = "word " * 3000  # ~3,000 tokens per assistant reply


# ---------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    ("mode", "request_", "vision", "describe"),
    [
        ("auto", turns("hi"), False, False),  # no image: the text model, nothing to describe
        ("auto", turns("look", image_at=0), True, False),  # recent, fits: the vision model
        ("auto", turns("1", "2", "3", image_at=0), True, False),  # 3 human turns: still recent
        ("auto", turns("1", "2", "3", "4", image_at=0), False, True),  # 4 turns old
        ("auto", turns("look", "more", "now", filler=LONG, image_at=2), False, True),  # too big
        ("describe", turns("look", image_at=0), False, True),
        ("vision", turns("look", image_at=0), True, False),
        ("vision", turns("1", "2", image_at=0), False, False),  # before: only the latest turn
    ],
)
def test_vision_routing_decides_where_images_go(
    make: Make, mode: str, request_: c.Request, vision: bool, describe: bool
) -> None:
    # A 4,000-token vision window: 80% of it is 3,200, which the LONG session (~6,000) passes.
    manager, _ = make(vision_routing=mode, real_vision_model_tokens="4000")
    route = manager.route(request_)
    assert (route.vision, route.describe_images) == (vision, describe)
    assert route.model == ("glm-4.6v" if vision else "glm-4.6")


@pytest.mark.parametrize("mode", ["auto", "describe", "vision"])
def test_naming_the_vision_model_gets_it_in_every_mode(make: Make, mode: str) -> None:
    manager, _ = make(vision_routing=mode)
    request = turns("1", "2", "3", "4", image_at=0) | {"model": "glm-4.6v"}
    assert manager.route(request).vision is True


def test_an_age_threshold_of_zero_describes_every_image(make: Make) -> None:
    manager, _ = make(image_age_threshold="0")
    assert manager.route(turns("look", image_at=0)).describe_images is True


# ---------------------------------------------------------------------------- describing


def test_descriptions_are_made_in_finish_and_found_on_the_next_turn(make: Make) -> None:
    manager, model = make()
    request = turns("1", "2", "3", "4", image_at=0)
    route = manager.route(request)
    prepared = manager.prepare(request, route, 1.0)
    assert prepared.pending and not prepared.pending_condensation and not model.calls

    done = manager.finish(prepared, "sk-key")
    assert len(model.calls) == 1 and model.calls[0][2] == "sk-key"
    assert not done.pending
    assert image_sites(done.request["messages"]) == []  # no image bytes go to the text model
    assert done.request["messages"][0]["content"][1] == {
        "type": "text",
        "text": f"[Image: {ANSWER}]",
    }
    assert (done.info.images_described, done.info.images_forwarded) == (1, 0)
    assert done.info.vision_routing == "auto"

    grown = turns("1", "2", "3", "4", "5", image_at=0)
    again = manager.prepare(grown, manager.route(grown), 1.0)
    assert not again.pending and len(model.calls) == 1  # found: no second call
    assert again.request["messages"][0] == done.request["messages"][0]
    assert manager.stats()["image_descriptions"]["cache_hits"] == 1


def test_the_vision_route_forwards_images_and_counts_them(make: Make) -> None:
    manager, model = make()
    request = turns("look", image_at=0)
    prepared = manager.prepare(request, manager.route(request), 1.0)
    assert not prepared.pending and not model.calls
    assert (prepared.info.images_described, prepared.info.images_forwarded) == (0, 1)


def test_a_failed_description_leaves_a_placeholder_on_the_text_route(make: Make) -> None:
    model = VisionModel()
    model.fail = TimeoutError("read timed out")
    manager, _ = make(model, vision_routing="describe")
    request = turns("look", image_at=0)
    done = manager.finish(manager.prepare(request, manager.route(request), 1.0), "k")
    assert done.route.vision is False
    assert done.request["messages"][0]["content"][1]["text"] == (  # type: ignore[typeddict-item]
        "[Image: description unavailable]"
    )


def test_a_failed_description_in_auto_takes_the_vision_route_when_it_fits(make: Make) -> None:
    model = VisionModel()
    model.fail = ConnectionError("reset")
    manager, _ = make(model)
    request = turns("1", "2", "3", "4", image_at=0)  # old image, small request
    prepared = manager.prepare(request, manager.route(request), 0.5)
    done = manager.finish(prepared, "k")
    assert done.route.vision is True and done.route.model == "glm-4.6v"
    assert done.info.images_forwarded == 1
    # the client's expected window is kept: scale = expected / real window
    assert done.info.scale_factor == pytest.approx(0.5 * 200_000 / 65_536)


# ---------------------------------------------------------------------------- counting


def predicted(manager: ContextManager, request: c.Request) -> int:
    return manager.predict_input_tokens(request, manager.route(request))


@pytest.mark.parametrize(
    ("env", "per_image"),
    [
        ({}, 85 + 800),  # BASE_IMAGE_TOKENS + 0.25 x 4 x IMAGE_DESCRIPTION_MAX_TOKENS
        ({"image_description_max_tokens": "400", "base_image_tokens": "50"}, 50 + 400),
        ({"enable_dynamic_image_tokens": "false"}, 1000),  # FIXED_IMAGE_TOKENS
    ],
)
def test_a_description_not_made_yet_is_estimated(
    make: Make, env: dict[str, str], per_image: int
) -> None:
    manager, model = make(vision_routing="describe", **env)
    with_image = predicted(manager, turns("look", image_at=0))
    without = predicted(manager, turns("look"))
    assert with_image - without == per_image
    assert not model.calls  # count_tokens never calls the upstream


def test_a_made_description_counts_as_its_text(make: Make) -> None:
    manager, _ = make(vision_routing="describe")
    request = turns("look", image_at=0)
    manager.finish(manager.prepare(request, manager.route(request), 1.0), "k")
    text = turns("look")
    text["messages"][0]["content"].append({"type": "text", "text": f"[Image: {ANSWER}]"})
    assert predicted(manager, request) == predicted(manager, text)


def test_on_the_vision_route_an_image_counts_by_its_pixels(make: Make) -> None:
    manager, _ = make()
    assert predicted(manager, turns("look", image_at=0)) - predicted(manager, turns("look")) == 102


@pytest.mark.parametrize("preference", ["anthropic", "openai"])
def test_no_image_bytes_reach_the_text_model_on_either_format(make: Make, preference: str) -> None:
    manager, _ = make(text_endpoint_preference=preference)
    request = turns("1", "2", "3", "4", image_at=0)
    route = manager.route(request)
    assert route.endpoint.value == preference and route.describe_images
    done = manager.finish(manager.prepare(request, route, 1.0), "k")
    assert image_sites(done.request["messages"]) == []
    # the next turn takes the fast path (the description is stored): still none
    again = manager.prepare(request, route, 1.0)
    assert not again.pending and image_sites(again.request["messages"]) == []
