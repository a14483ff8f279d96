"""Token estimates for images: from the pixel size when the data says it, else from settings.

GLM-4.6V cuts an image into 14-pixel ViT patches and merges each 2×2 block into one LLM token,
so one token covers 28×28 pixels. Its image processor (`smart_resize` in transformers'
glm4v image processor) first rounds each side to a multiple of 28 and scales the image into
[112×112/2, 28×28×6144] pixels (the /2 and ×2 come from its temporal patch of 2 frames), so
an image costs between 8 and 6,144 tokens, plus <|begin_of_image|> and <|end_of_image|>.
The size is read from the first bytes of base64 PNG, GIF, WebP or JPEG data; no decoding.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from dataclasses import dataclass

PATCH_PIXELS = 28  # 14-px patches merged 2×2
MIN_IMAGE_PIXELS = 112 * 112 // 2
MAX_IMAGE_PIXELS = 28 * 28 * 6144
IMAGE_FRAMING_TOKENS = 2  # <|begin_of_image|> … <|end_of_image|>
# Text beside an image stands in for its description; cap it so a long message beside a small
# image cannot add thousands of tokens (2000 chars × 0.25 = 500 tokens at the defaults).
MAX_DESCRIPTION_CHARS = 2000
# Enough base64 to reach a JPEG's SOF marker behind a large EXIF block (64 KiB).
HEADER_BASE64_CHARS = 96 * 1024

_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # DHT, JPG, DAC are not frames


@dataclass(frozen=True)
class ImageTokenPolicy:
    """How images are counted: dynamic (size or description based) or a fixed figure.

    `description_chars`: the length a description not yet made is counted at (its bound).
    """

    dynamic: bool = True
    base: int = 85
    per_char: float = 0.25
    fixed: int = 1000
    description_chars: int = 3200

    def estimate(self, size: tuple[int, int] | None, description_chars: int) -> int:
        """Tokens for one image of pixel `size` (if known) beside `description_chars` of text.

        >>> ImageTokenPolicy().estimate((280, 280), 0)
        102
        >>> ImageTokenPolicy().estimate(None, 100)
        110
        """
        if self.dynamic and size is not None:
            return patch_tokens(*size) + IMAGE_FRAMING_TOKENS
        return self._as_description(min(max(description_chars, 0), MAX_DESCRIPTION_CHARS))

    def pending_description(self) -> int:
        """Tokens for an image whose description (for the text model) is not made yet.

        >>> ImageTokenPolicy().pending_description()
        885
        """
        return self._as_description(self.description_chars)

    def _as_description(self, chars: int) -> int:
        """An image counted as `chars` of description (FIXED_IMAGE_TOKENS when not dynamic)."""
        if not self.dynamic:
            return self.fixed
        return self.base + math.ceil(self.per_char * chars)


DEFAULT_IMAGE_POLICY = ImageTokenPolicy()


def patch_tokens(width: int, height: int) -> int:
    """GLM-4.xV tokens for an image of `width`×`height` pixels (28×28 px per token)."""
    width, height = max(width, 1), max(height, 1)
    w = max(PATCH_PIXELS, round(width / PATCH_PIXELS) * PATCH_PIXELS)
    h = max(PATCH_PIXELS, round(height / PATCH_PIXELS) * PATCH_PIXELS)
    if w * h > MAX_IMAGE_PIXELS:
        scale = math.sqrt(width * height / MAX_IMAGE_PIXELS)
        w = max(PATCH_PIXELS, math.floor(width / scale / PATCH_PIXELS) * PATCH_PIXELS)
        h = max(PATCH_PIXELS, math.floor(height / scale / PATCH_PIXELS) * PATCH_PIXELS)
    elif w * h < MIN_IMAGE_PIXELS:
        scale = math.sqrt(MIN_IMAGE_PIXELS / (width * height))
        w = math.ceil(width * scale / PATCH_PIXELS) * PATCH_PIXELS
        h = math.ceil(height * scale / PATCH_PIXELS) * PATCH_PIXELS
    return (w // PATCH_PIXELS) * (h // PATCH_PIXELS)


def read_image_size(data: str) -> tuple[int, int] | None:
    """(width, height) from the header of base64 image data or a data: URL, None if unknown."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    head = _decode_prefix(data)
    if head is None:
        return None
    for reader in (_png_size, _gif_size, _webp_size, _jpeg_size):
        size = reader(head)
        if size is not None:
            return size if size[0] > 0 and size[1] > 0 else None
    return None


# ---------------------------------------------------------------------------- header readers


def _decode_prefix(data: str) -> bytes | None:
    prefix = "".join(data[:HEADER_BASE64_CHARS].split())
    prefix = prefix[: len(prefix) // 4 * 4]
    try:
        return base64.b64decode(prefix)
    except (binascii.Error, ValueError):
        return None


def _png_size(head: bytes) -> tuple[int, int] | None:
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR" or len(head) < 24:
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _gif_size(head: bytes) -> tuple[int, int] | None:
    if head[:6] not in (b"GIF87a", b"GIF89a") or len(head) < 10:
        return None
    width, height = struct.unpack("<HH", head[6:10])
    return width, height


def _webp_size(head: bytes) -> tuple[int, int] | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8L" and len(head) >= 25:  # lossless: 14-bit (size - 1) after a 0x2f byte
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if len(head) < 30:
        return None
    if chunk == b"VP8 ":  # lossy: 14-bit sizes after the frame start code
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8X":  # extended: 24-bit (size - 1) fields
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    if head[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= len(head):
        if head[pos] != 0xFF:
            return None
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", head[pos + 5 : pos + 9])
            return width, height
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # markers without a length
            pos += 2
            continue
        pos += 2 + struct.unpack(">H", head[pos + 2 : pos + 4])[0]
    return None
