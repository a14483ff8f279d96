"""Image token estimates: header parsing of real image bytes, the patch formula, the policy."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from tokens.counter import TokenCounter
from tokens.images import (
    IMAGE_FRAMING_TOKENS,
    MAX_DESCRIPTION_CHARS,
    ImageTokenPolicy,
    patch_tokens,
    read_image_size,
)


def png(width: int, height: int) -> bytes:
    """A real, decodable grey PNG of the given size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    pixels = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(pixels))
        + chunk(b"IEND", b"")
    )


def gif(width: int, height: int) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x3b"


def jpeg(width: int, height: int, exif_bytes: int = 0) -> bytes:
    app1 = b"\xff\xe1" + struct.pack(">H", exif_bytes + 2) + b"\x00" * exif_bytes
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app1 + sof0 + b"\xff\xd9"


def webp(chunk: bytes, data: bytes) -> bytes:
    """A RIFF/WEBP file holding one chunk (VP8, VP8L or VP8X) with `data`."""
    body = chunk + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def webp_lossy(width: int, height: int) -> bytes:
    return webp(b"VP8 ", b"\x00\x00\x00" + b"\x9d\x01\x2a" + struct.pack("<HH", width, height))


def webp_lossless(width: int, height: int) -> bytes:
    bits = (width - 1) | ((height - 1) << 14)
    return webp(b"VP8L", b"\x2f" + bits.to_bytes(4, "little"))


def webp_extended(width: int, height: int) -> bytes:
    size = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return webp(b"VP8X", b"\x00" * 4 + size)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (png(3, 2), (3, 2)),
        (png(640, 1), (640, 1)),
        (gif(320, 200), (320, 200)),
        (jpeg(1920, 1080), (1920, 1080)),
        (jpeg(800, 600, exif_bytes=60_000), (800, 600)),
        (webp_lossy(1024, 768), (1024, 768)),
        (webp_lossless(500, 300), (500, 300)),
        (webp_extended(4000, 3000), (4000, 3000)),
    ],
    ids=["png", "png_wide", "gif", "jpeg", "jpeg_big_exif", "webp_vp8", "webp_vp8l", "webp_vp8x"],
)
def test_read_image_size(data: bytes, size: tuple[int, int]) -> None:
    assert read_image_size(b64(data)) == size
    assert read_image_size("data:image/x;base64," + b64(data)) == size


UNREADABLE = {
    "empty": "",
    "not_base64": "%%%%",
    "text": b64(b"not an image at all"),
    "truncated_png": b64(png(3, 2))[:20],
    "truncated_jpeg": b64(b"\xff\xd8\xff\xe1\xff\xff"),
    "empty_data_url": "data:image/png;base64,",
    "cyrillic": "сломано",
}


@pytest.mark.parametrize("data", UNREADABLE.values(), ids=UNREADABLE)
def test_unreadable_data_has_no_size(data: str) -> None:
    assert read_image_size(data) is None


def test_base64_with_line_breaks_is_read() -> None:
    wrapped = "\n".join(b64(png(64, 48))[i : i + 76] for i in range(0, 200, 76))
    assert read_image_size(wrapped) == (64, 48)


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (28, 28, 9),  # tiny images are scaled up to at least 6,272 px
        (280, 280, 100),
        (1920, 1080, 69 * 39),  # sides rounded to multiples of 28
        (10_000, 10_000, 6084),  # scaled down under 6,144 tokens
        (1, 1, 9),
    ],
)
def test_patch_tokens(width: int, height: int, tokens: int) -> None:
    assert patch_tokens(width, height) == tokens
    assert patch_tokens(width, height) <= 6144


@pytest.mark.parametrize(
    ("policy", "size", "chars", "expected"),
    [
        (ImageTokenPolicy(), (280, 280), 0, 100 + IMAGE_FRAMING_TOKENS),
        (ImageTokenPolicy(), None, 0, 85),
        (ImageTokenPolicy(), None, 101, 85 + 26),
        (ImageTokenPolicy(), None, 10**6, 85 + MAX_DESCRIPTION_CHARS // 4),
        (ImageTokenPolicy(base=10, per_char=1.0), None, 7, 17),
        (ImageTokenPolicy(dynamic=False, fixed=1000), (280, 280), 50, 1000),
        (ImageTokenPolicy(dynamic=False, fixed=1000), None, 50, 1000),
    ],
    ids=["size", "no_text", "text", "capped_text", "custom", "fixed_with_size", "fixed"],
)
def test_policy(
    policy: ImageTokenPolicy, size: tuple[int, int] | None, chars: int, expected: int
) -> None:
    assert policy.estimate(size, chars) == expected


def test_images_in_both_request_shapes(estimator_counter: TokenCounter) -> None:
    data = b64(png(280, 280))
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    canonical = {
        "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What is it"}]}]
    }
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
    openai = {
        "messages": [{"role": "user", "content": [part, {"type": "text", "text": "What is it"}]}]
    }
    expected = 100 + IMAGE_FRAMING_TOKENS
    assert estimator_counter.breakdown(canonical).images == expected
    assert estimator_counter.breakdown_openai(openai).images == expected
    # the image data itself is never counted as text
    assert estimator_counter.breakdown(canonical).messages < 10


def test_url_image_uses_the_text_beside_it(estimator_counter: TokenCounter) -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
    words = {"type": "text", "text": "x" * 40}
    request = {"messages": [{"role": "user", "content": [image, words]}]}
    assert estimator_counter.breakdown(request).images == 85 + 10


def test_image_inside_tool_result(estimator_counter: TokenCounter) -> None:
    image = {"type": "image", "source": {"type": "base64", "data": b64(gif(56, 56))}}
    result = {"type": "tool_result", "tool_use_id": "1", "content": [image]}
    request = {"messages": [{"role": "user", "content": [result]}]}
    assert estimator_counter.breakdown(request).images == 9 + IMAGE_FRAMING_TOKENS
