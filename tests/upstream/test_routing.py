"""Routing table: model names, suffixes, preference and images → endpoint and model."""

from __future__ import annotations

import pytest

from config import Settings
from errors import BadRequest
from upstream.canonical import has_image
from upstream.routing import IMAGE_NOTE, Endpoint, choose_route, fit_to_route, list_models

TEXT = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
IMAGE = [
    {
        "role": "user",
        "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
    }
]
IMAGE_EARLIER = IMAGE + [
    {"role": "assistant", "content": [{"type": "text", "text": "a cat"}]},
    {"role": "user", "content": [{"type": "text", "text": "thanks"}]},
]
IMAGE_IN_TOOL_RESULT = [
    {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "t",
                "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}],
            }
        ],
    }
]


@pytest.mark.parametrize(
    ("env", "model", "messages", "endpoint", "upstream", "window"),
    [
        ({}, "glm-4.6", TEXT, Endpoint.ANTHROPIC, "glm-4.6", 200000),
        (
            {"TEXT_ENDPOINT_PREFERENCE": "anthropic"},
            "glm-4.6",
            TEXT,
            Endpoint.ANTHROPIC,
            "glm-4.6",
            200000,
        ),
        (
            {"TEXT_ENDPOINT_PREFERENCE": "openai"},
            "glm-4.6",
            TEXT,
            Endpoint.OPENAI,
            "glm-4.6",
            200000,
        ),
        ({}, "glm-4.6-openai", TEXT, Endpoint.OPENAI, "glm-4.6", 200000),
        (
            {"TEXT_ENDPOINT_PREFERENCE": "openai"},
            "glm-4.6-anthropic",
            TEXT,
            Endpoint.ANTHROPIC,
            "glm-4.6",
            200000,
        ),
        ({}, "glm-4.6", IMAGE, Endpoint.OPENAI, "glm-4.6v", 65536),
        ({}, "glm-4.6-anthropic", IMAGE, Endpoint.OPENAI, "glm-4.6v", 65536),
        ({}, "glm-4.6", IMAGE_EARLIER, Endpoint.ANTHROPIC, "glm-4.6", 200000),
        ({}, "glm-4.6", IMAGE_IN_TOOL_RESULT, Endpoint.OPENAI, "glm-4.6v", 65536),
        ({}, "glm-4.6v", TEXT, Endpoint.OPENAI, "glm-4.6v", 65536),
        ({}, "claude-opus-4-1", TEXT, Endpoint.ANTHROPIC, "glm-4.6", 200000),
        (
            {"MODEL_MAP": "claude-haiku-*=glm-4.5-air"},
            "claude-haiku-4-5",
            TEXT,
            Endpoint.ANTHROPIC,
            "glm-4.5-air",
            200000,
        ),
        ({"AUTOTEXT_MODEL": "glm-5"}, "glm-5-openai", TEXT, Endpoint.OPENAI, "glm-5", 200000),
    ],
)
def test_route(env, model, messages, endpoint, upstream, window) -> None:
    route = choose_route(
        {"model": model, "messages": messages, "max_tokens": 1}, Settings.from_env(env)
    )
    assert (route.endpoint, route.model, route.window, route.requested_model) == (
        endpoint,
        upstream,
        window,
        model,
    )


@pytest.mark.parametrize("model", ["gpt-4o", "glm-4.6-turbo", "", "claude"])
def test_unknown_model_is_400_naming_model(model: str) -> None:
    with pytest.raises(BadRequest) as info:
        choose_route({"model": model, "messages": TEXT, "max_tokens": 1}, Settings.from_env({}))
    assert info.value.param == "model"


def test_listed_models_follow_settings() -> None:
    assert list_models(Settings.from_env({"AUTOTEXT_MODEL": "t", "AUTOVISION_MODEL": "v"})) == [
        "t",
        "v",
        "t-openai",
        "t-anthropic",
    ]


@pytest.mark.parametrize("messages", [IMAGE_EARLIER, IMAGE_IN_TOOL_RESULT + IMAGE_EARLIER[1:]])
def test_earlier_images_become_notes_for_a_text_model_on_the_openai_upstream(messages) -> None:
    # z.ai's OpenAI-format upstream refuses images for glm-4.6; the latest turn has none here.
    request = {"model": "glm-4.6-openai", "messages": messages, "max_tokens": 1}
    fitted = fit_to_route(request, choose_route(request, Settings.from_env({})))
    assert not any(has_image(m) for m in fitted["messages"])
    assert IMAGE_NOTE in str(fitted["messages"])
    assert request["messages"] == messages  # the client's request is not touched


@pytest.mark.parametrize(
    ("model", "messages"),
    [("glm-4.6", IMAGE_EARLIER), ("glm-4.6-openai", IMAGE), ("glm-4.6v", IMAGE_EARLIER)],
)
def test_images_stay_where_the_route_takes_them(model: str, messages) -> None:
    request = {"model": model, "messages": messages, "max_tokens": 1}
    assert fit_to_route(request, choose_route(request, Settings.from_env({}))) is request
