"""vision/describer.py: one call per image, stored, shared, never a failure for the request."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from condensation import build_store
from condensation.store import Store
from config import Settings
from tests.conftest import VisionModel
from tests.sessions import image_block
from upstream import canonical as c
from upstream.routing import Route, vision_route
from vision import build_describer
from vision.describer import Describer, description_request
from vision.images import ImageSite

IMAGE = image_block(56, 28)
OTHER = image_block(28, 56)


class Heard:
    def __init__(self) -> None:
        self.results: list[str] = []

    def record_image_description(self, result: str) -> None:
        self.results.append(result)


@pytest.fixture
def settings_env(settings_env: dict[str, str]) -> dict[str, str]:
    return settings_env | {"CONDENSATION_TIMEOUT": "2", "IMAGE_DESCRIPTION_MAX_TOKENS": "300"}


@pytest.fixture
def store(settings: Settings) -> Store:
    return build_store(settings)


def make(settings: Settings, store: Store, model: VisionModel, heard: Heard | None = None) -> Any:
    route = vision_route(settings.autovision_model, settings)
    return Describer(settings, store, model, route, heard)


def site(image: Any = IMAGE, text: str = "Why does this fail?", m: int = 0) -> ImageSite:
    return ImageSite((m, 0, None), image, text)


def test_the_call_asks_the_vision_model_with_the_message_text_and_the_image(
    settings: Settings, store: Store
) -> None:
    model = VisionModel()
    described = make(settings, store, model).describe([site()], "sk-key")
    assert described == {(0, 0, None): "A grey rectangle."}
    [(route, request, key, timeout)] = model.calls
    assert (route.model, route.endpoint.value, key, timeout) == ("glm-4.6v", "openai", "sk-key", 2)
    assert request["max_tokens"] == 300
    content = request["messages"][0]["content"]
    assert "Why does this fail?" in content[0]["text"]  # type: ignore[typeddict-item]
    assert content[1] == IMAGE


def test_a_long_message_text_is_elided_in_the_middle() -> None:
    request = description_request(site(text="a" * 5000 + "END"), "glm-4.6v", 100)
    prompt = request["messages"][0]["content"][0]["text"]  # type: ignore[typeddict-item]
    assert "END" in prompt and len(prompt) < 4300


def test_one_call_per_distinct_image_then_the_store_answers(
    settings: Settings, store: Store
) -> None:
    model, heard = VisionModel(), Heard()
    describer = make(settings, store, model, heard)
    sites = [site(m=0), site(OTHER, m=2), site(m=4)]  # the first and last are one image
    described = describer.describe(sites, "k")
    assert len(model.calls) == 2
    assert set(described) == {(0, 0, None), (2, 0, None), (4, 0, None)}
    assert sorted(heard.results) == ["made", "made"]
    # a later turn (any worker: a new Describer over the same store) finds them stored
    again = make(settings, build_store(settings), VisionModel("never asked"))
    assert again.stored(sites, tally=True) == described
    assert again.stats()["cache_hits"] == 3 and again.stats()["hit_ratio"] == 1.0


def test_concurrent_requests_for_one_image_make_one_call(settings: Settings) -> None:
    model = VisionModel(delay=0.3)
    describers = [make(settings, build_store(settings), model) for _ in range(4)]
    results: list[dict[Any, Any]] = []
    threads = [
        threading.Thread(target=lambda d=d: results.append(d.describe([site()], "k")))
        for d in describers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(model.calls) == 1
    assert all(r == {(0, 0, None): "A grey rectangle."} for r in results)


@pytest.mark.parametrize("answer", ["", "   "])
def test_an_empty_answer_is_a_failure(settings: Settings, store: Store, answer: str) -> None:
    heard = Heard()
    described = make(settings, store, VisionModel(answer), heard).describe([site()], "k")
    assert described == {(0, 0, None): None}
    assert heard.results == ["failed"]


def test_a_failed_call_gives_none_is_counted_and_is_not_stored(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    model, heard = VisionModel(), Heard()
    model.fail = TimeoutError("upstream read timed out")
    describer = make(settings, store, model, heard)
    assert describer.describe([site()], "k") == {(0, 0, None): None}
    assert heard.results == ["failed"]
    assert describer.stats()["failed"] == 1
    assert [r.message for r in caplog.records if "IMAGE description failed" in r.message]
    model.fail = None  # the next turn tries again
    assert describer.describe([site()], "k") == {(0, 0, None): "A grey rectangle."}


def test_a_broken_store_means_describing_again_not_failing(settings: Settings) -> None:
    class Broken:
        def get(self, key: str) -> None:
            raise OSError(f"disk gone, {key} with it")

    describer = make(settings, Broken(), VisionModel())  # type: ignore[arg-type]
    assert describer.stored([site()]) == {}


def test_build_describer_calls_the_vision_model_through_the_upstream_client(
    settings: Settings, store: Store
) -> None:
    class Upstream:
        def __init__(self) -> None:
            self.seen: list[Any] = []

        def complete(self, route: Route, request: c.Request, key: str, headers: Any,
                     timeout: float) -> c.Response:  # fmt: skip
            assert headers is None and request["messages"][0]["content"][1] == IMAGE
            self.seen.append((route.model, key, timeout))
            return {"content": [{"type": "text", "text": "Seen."}]}  # type: ignore[typeddict-item]

    upstream = Upstream()
    describer = build_describer(settings, upstream, store)  # type: ignore[arg-type]
    assert describer.describe([site()], "sk-x") == {(0, 0, None): "Seen."}
    assert upstream.seen == [("glm-4.6v", "sk-x", 2.0)]
