"""vision/images.py: finding images, their identity, recent human turns, description blocks."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from config import Settings
from tests.sessions import image_block, png
from upstream import anthropic_format, openai_format
from upstream import canonical as c
from vision.describer import Describer
from vision.images import (
    ImageSite,
    has_recent_image,
    image_identity,
    image_sites,
    is_human_turn,
    message_text,
    recent_start,
    with_descriptions,
)

IMAGE = image_block(56, 28)
OTHER = image_block(28, 56)


def user(*blocks: Any) -> c.Message:
    return {"role": "user", "content": [_block(b) for b in blocks]}


def assistant(text: str = "ok") -> c.Message:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def result(*parts: Any) -> dict[str, Any]:
    return {"type": "tool_result", "tool_use_id": "t1", "content": [_block(p) for p in parts]}


def _block(b: Any) -> Any:
    return {"type": "text", "text": b} if isinstance(b, str) else b


# ---------------------------------------------------------------------------- sites and text


def test_sites_are_found_in_blocks_and_in_tool_results_in_order() -> None:
    messages = [user("look", IMAGE), assistant(), user(result("shot:", OTHER, IMAGE), "and?")]
    sites = image_sites(messages)
    assert [s.place for s in sites] == [(0, 1, None), (2, 0, 1), (2, 0, 2)]
    assert [s.image for s in sites] == [IMAGE, OTHER, IMAGE]
    assert sites[0].context == "look"
    assert sites[1].context == "shot:\nand?"  # the tool result's text, then the message's


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (user("a", "b"), "a\nb"),
        (user(IMAGE), ""),
        (user({"type": "tool_result", "tool_use_id": "t", "content": "plain"}), "plain"),
        (user(result("x", IMAGE), "y"), "x\ny"),
    ],
)
def test_message_text(message: c.Message, text: str) -> None:
    assert message_text(message) == text


# ---------------------------------------------------------------------------- identity


def test_the_same_bytes_from_either_client_format_have_one_identity_and_one_key(
    settings: Settings,
) -> None:
    raw = png(64, 32)
    data = base64.b64encode(raw).decode()
    anthropic_body = {
        "model": "glm-4.6",
        "max_tokens": 100,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What fails here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": data}},
                ],
            }
        ],
    }  # fmt: skip
    openai_body = {
        "model": "glm-4.6",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What fails here?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}},
                ],
            }
        ],
    }
    from_anthropic = image_sites(anthropic_format.parse_request(anthropic_body)["messages"])
    from_openai = image_sites(openai_format.parse_request(openai_body, 100)["messages"])
    assert image_identity(from_anthropic[0].image) == image_identity(from_openai[0].image) == raw
    describer = Describer(settings, None, None, None)  # type: ignore[arg-type]
    assert describer.key(from_anthropic[0]) == describer.key(from_openai[0])


@pytest.mark.parametrize(
    ("source", "identity"),
    [
        ({"type": "base64", "data": "aGVs\nbG8="}, b"hello"),  # line breaks do not matter
        ({"type": "base64", "data": "aGVsbG8="}, b"hello"),
        ({"type": "url", "url": "https://x.test/a.png"}, b"url:https://x.test/a.png"),
        ({"type": "base64", "data": "not base64!"}, b"raw:not base64!"),
    ],
)
def test_image_identity(source: dict[str, str], identity: bytes) -> None:
    assert image_identity({"type": "image", "source": source}) == identity  # type: ignore[typeddict-item]


def test_key_depends_on_the_bytes_and_the_message_text(settings: Settings) -> None:
    describer = Describer(settings, None, None, None)  # type: ignore[arg-type]
    keys = {
        describer.key(ImageSite((0, 0, None), image, text))
        for image, text in [(IMAGE, "a"), (IMAGE, "b"), (OTHER, "a")]
    }
    assert len(keys) == 3
    assert describer.key(ImageSite((5, 1, None), IMAGE, "a")) == describer.key(
        ImageSite((0, 0, None), IMAGE, "a")
    )  # where it sits does not matter


# ---------------------------------------------------------------------------- recent turns


TOOL_ONLY = user(result("output"))


@pytest.mark.parametrize(
    ("messages", "turns", "recent"),
    [
        ([user("q", IMAGE)], 3, True),
        ([user("q", IMAGE)], 0, False),  # 0: never recent
        ([user("q", IMAGE), assistant(), user("2"), assistant(), user("3")], 3, True),
        (
            [
                user("q", IMAGE),
                assistant(),
                user("2"),
                assistant(),
                user("3"),
                assistant(),
                user("4"),
            ],
            3,
            False,
        ),  # fmt: skip
        # tool results are not human turns: they do not age an image
        (
            [
                user("q", IMAGE),
                assistant(),
                TOOL_ONLY,
                assistant(),
                TOOL_ONLY,
                assistant(),
                TOOL_ONLY,
            ],
            1,
            True,
        ),  # fmt: skip
        # a screenshot in a tool result after the latest human message belongs to its turn
        ([user("1"), assistant(), user("2"), assistant(), user(result("shot", IMAGE))], 1, True),
        ([user("1"), assistant(), user("2")], 3, False),
    ],
)
def test_has_recent_image(messages: list[c.Message], turns: int, recent: bool) -> None:
    assert has_recent_image(messages, turns) is recent


def test_human_turns_and_where_the_recent_ones_start() -> None:
    messages = [user("1"), assistant(), TOOL_ONLY, assistant(), user("  "), user("2")]
    assert [is_human_turn(m) for m in messages] == [True, False, False, False, False, True]
    assert recent_start(messages, 1) == 5
    assert recent_start(messages, 2) == 0
    assert recent_start(messages, 9) == 0


# ---------------------------------------------------------------------------- descriptions


def test_descriptions_replace_the_images_at_their_places_and_nothing_else() -> None:
    messages = [user("look", IMAGE), assistant(), user(result("shot:", OTHER, IMAGE), "and?")]
    request: c.Request = {"model": "m", "max_tokens": 9, "messages": messages}
    described = with_descriptions(request, {(0, 1, None): "A chart.", (2, 0, 2): None})
    assert described["messages"][0]["content"][1] == {"type": "text", "text": "[Image: A chart.]"}
    parts = described["messages"][2]["content"][0]["content"]  # type: ignore[typeddict-item]
    assert parts[1] == OTHER  # not named: stays
    assert parts[2] == {"type": "text", "text": "[Image: description unavailable]"}
    assert described["messages"][1] is messages[1]
    assert request["messages"][0]["content"][1] == IMAGE  # the client's request is untouched
    assert with_descriptions(request, {}) is request
