"""Image sizes from inline data, and the tokens GLM-4.6V spends on an image of that size.

The pixel size comes from the file header (PNG, GIF, WebP, JPEG), read by a few lines of struct
unpacking: no imaging library. The token count follows GLM-4.6V's `smart_resize`: each side is
rounded to a multiple of 28, the area is scaled into [112*112/2, 28*28*6144] pixels, and every
28x28 square is one `<|image|>` token. An image whose size cannot be read (a URL, an unknown or
broken file) costs a flat IMAGE_TOKENS.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct

IMAGE_TOKENS = 1000  # an image whose pixel size the fake cannot read
FACTOR = 28  # 14-pixel patches merged 2x2: one token per 28x28 square
MIN_PIXELS = 112 * 112 // 2  # per image: the processor's bounds cover two temporal frames
MAX_PIXELS = 28 * 28 * 6144
# JPEG start-of-frame markers (SOF0..SOF15 except DHT C4, JPG C8 and DAC CC) carry the size.
JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def image_tokens(width: int, height: int) -> int:
    """`<|image|>` tokens for an image of width x height pixels, as GLM-4.6V resizes it."""
    if width < FACTOR or height < FACTOR:  # tiny images are first scaled up to 28 on the short side
        scale = max(FACTOR / width, FACTOR / height)
        width, height = int(width * scale), int(height * scale)
    w_bar = round(width / FACTOR) * FACTOR
    h_bar = round(height / FACTOR) * FACTOR
    if w_bar * h_bar > MAX_PIXELS:
        beta = math.sqrt(width * height / MAX_PIXELS)
        w_bar = max(FACTOR, math.floor(width / beta / FACTOR) * FACTOR)
        h_bar = max(FACTOR, math.floor(height / beta / FACTOR) * FACTOR)
    elif w_bar * h_bar < MIN_PIXELS:
        beta = math.sqrt(MIN_PIXELS / (width * height))
        w_bar = math.ceil(width * beta / FACTOR) * FACTOR
        h_bar = math.ceil(height * beta / FACTOR) * FACTOR
    return (w_bar // FACTOR) * (h_bar // FACTOR)


def tokens_of_data(data: str) -> int:
    """Tokens for inline base64 image data (or a data: URL); IMAGE_TOKENS if the size is unknown."""
    size = image_size(decode_data(data))
    return image_tokens(*size) if size else IMAGE_TOKENS


def decode_data(data: str) -> bytes:
    """The bytes of base64 data or of a `data:...;base64,` URL (b"" when it is neither)."""
    if data.startswith("data:"):
        header, _, data = data.partition(",")
        if not header.endswith(";base64"):
            return b""
    try:
        return base64.b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return b""


def image_size(raw: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG, GIF, WebP or JPEG header; None for anything else."""
    if raw.startswith(b"\x89PNG\r\n\x1a\n") and raw[12:16] == b"IHDR":
        return _positive(*struct.unpack(">II", raw[16:24]))
    if raw[:6] in (b"GIF87a", b"GIF89a") and len(raw) >= 10:
        return _positive(*struct.unpack("<HH", raw[6:10]))
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return _webp_size(raw)
    if raw[:2] == b"\xff\xd8":
        return _jpeg_size(raw)
    return None


def _positive(width: int, height: int) -> tuple[int, int] | None:
    return (width, height) if width > 0 and height > 0 else None


def _webp_size(raw: bytes) -> tuple[int, int] | None:
    chunk, body = raw[12:16], raw[20:]
    if chunk == b"VP8 " and len(body) >= 10:  # lossy: 14-bit sizes after the frame tag
        width, height = struct.unpack("<HH", body[6:10])
        return _positive(width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L" and len(body) >= 5:  # lossless: 14-bit sizes minus one, packed
        bits = int.from_bytes(body[1:5], "little")
        return _positive((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X" and len(body) >= 10:  # extended: 24-bit canvas sizes minus one
        width = int.from_bytes(body[4:7], "little") + 1
        height = int.from_bytes(body[7:10], "little") + 1
        return _positive(width, height)
    return None


def _jpeg_size(raw: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments up to the first start-of-frame marker."""
    at = 2
    while at + 9 <= len(raw):
        if raw[at] != 0xFF:
            return None
        marker = raw[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = struct.unpack(">H", raw[at + 2 : at + 4])[0]
        if marker in JPEG_SOF:
            height, width = struct.unpack(">HH", raw[at + 5 : at + 9])
            return _positive(width, height)
        at += 2 + length
    return None
