"""Read a Hugging Face byte-level BPE `tokenizer.json` (GLM-4.6's) as tiktoken's parts.

`load_bpe_file` calls `parse_tokenizer_json` when TOKENIZER_FILE holds JSON. The parts:

- ranks: each `model.vocab` token string is GPT-2 byte-to-unicode text (byte 0x20 is "Ġ", …);
  mapped back it gives the token's bytes, and its id is its rank. That is sound when the merges
  come in id order: tiktoken merges the adjacent pair whose join has the lowest rank, Hugging
  Face the pair listed first in `model.merges`, so the two agree when the list is sorted by the
  id of the join (checked here, else the file is refused). GLM's list also holds every split of
  every token into two tokens (checked by the tests; converters from tiktoken write it so), so
  both sides may merge the same pairs. (Left open: two overlapping pairs that make the same
  token, where Hugging Face takes the one listed first and tiktoken the leftmost.) Both emit a
  whole pre-token that is in the vocab as one token (GLM's `ignore_merges`).
- pattern: the regex of the `Split` step in `pre_tokenizer` (GLM: a `Sequence` of that `Split`
  and a `ByteLevel` step without its own regex). GLM's regex is valid for tiktoken's regex
  engine as it is, and is used untranslated; one tiktoken cannot compile is refused at load.
  tiktoken skips text no alternative matches where Hugging Face keeps it as a piece; GLM's
  pattern matches every character.
- special tokens: every entry of `added_tokens` (content → id), whatever its `special` flag.

Anything else (not JSON, another model type, a normalizer, unknown pre-tokenizer steps, vocab
text that is not byte-level) raises ValueError naming TOKENIZER_FILE and what was expected.
"""

from __future__ import annotations

import itertools
import json
import operator
import re
from dataclasses import dataclass
from typing import Any

EXPECTED = "expected a Hugging Face byte-level BPE tokenizer.json such as GLM-4.6's"

_JSON_START = re.compile(rb"(?:\xef\xbb\xbf)?\s*[\[{]")


@dataclass(frozen=True)
class TokenizerParts:
    """What tiktoken.Encoding needs, read from a tokenizer.json."""

    pat_str: str
    mergeable_ranks: dict[bytes, int]
    special_tokens: dict[str, int]


def looks_like_json(data: bytes) -> bool:
    """Whether `data` starts as a JSON object or array would (a tiktoken file cannot)."""
    return _JSON_START.match(data) is not None


def parse_tokenizer_json(path: str, data: bytes) -> TokenizerParts:
    """The ranks, pattern and special tokens of the tokenizer.json `data` read from `path`."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise _error(path, f"is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise _error(path, f"holds a JSON {type(document).__name__}, not an object")
    model = document.get("model")
    if not isinstance(model, dict):
        raise _error(path, "is a JSON object without a 'model' object")
    kind = model.get("type")
    if kind != "BPE" or not isinstance(model.get("vocab"), dict):
        what = f"a {kind!r} model" if kind != "BPE" else "a BPE model without a vocab object"
        raise _error(path, f"holds {what}")
    _check_options(path, document, model)
    pat_str = _pattern(path, document.get("pre_tokenizer"))
    vocab: dict[str, Any] = model["vocab"]
    ranks = _ranks(path, vocab)
    _check_merges(path, vocab, model.get("merges"))
    specials = _special_tokens(path, document.get("added_tokens"), vocab, set(ranks.values()))
    return TokenizerParts(pat_str, ranks, specials)


# ---------------------------------------------------------------------------- internals


def _error(path: str, problem: str) -> ValueError:
    return ValueError(f"TOKENIZER_FILE={path!r} {problem}; {EXPECTED}")


def _check_options(path: str, document: dict[str, Any], model: dict[str, Any]) -> None:
    """Refuse what tiktoken cannot reproduce: text normalization and word-piece markers."""
    if document.get("normalizer") is not None:
        raise _error(path, "has a normalizer, which tiktoken cannot apply")
    for option in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(option):
            raise _error(path, f"sets model.{option}, which tiktoken cannot apply")
    if model.get("dropout"):
        raise _error(path, "sets model.dropout (random merges)")


def _pattern(path: str, pre_tokenizer: Any) -> str:
    """The Split regex of a `Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)]`."""
    steps = pre_tokenizer.get("pretokenizers") if isinstance(pre_tokenizer, dict) else None
    if (
        isinstance(steps, list)
        and pre_tokenizer.get("type") == "Sequence"
        and len(steps) == 2
        and all(isinstance(step, dict) for step in steps)
    ):
        split, byte_level = steps
        pattern = split.get("pattern")
        regex = pattern.get("Regex") if isinstance(pattern, dict) else None
        if (
            split.get("type") == "Split"
            and isinstance(regex, str)
            and split.get("behavior") == "Isolated"
            and not split.get("invert")
            and byte_level.get("type") == "ByteLevel"
            and not byte_level.get("use_regex")
            and not byte_level.get("add_prefix_space")
        ):
            return regex
    shown = json.dumps(pre_tokenizer)
    shown = shown if len(shown) <= 200 else shown[:200] + "…"
    raise _error(
        path,
        f"has pre_tokenizer {shown}, not a Sequence of a Split regex (behavior Isolated) and a "
        "ByteLevel step (use_regex and add_prefix_space false)",
    )


def _byte_level_decoding_table() -> dict[int, int]:
    """str.translate table: GPT-2 byte-level character → the byte it stands for (as a char).

    GPT-2's bytes_to_unicode keeps the 188 printable Latin-1 bytes as themselves and maps the
    other 68 to U+0100…U+0143 in byte order. Characters that stand for no byte are mapped to
    U+0100 when below U+0100 (and left alone above), so a following latin-1 encode rejects them.
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in set(printable)]
    table = {b: b for b in printable}
    table.update({0x100 + n: b for n, b in enumerate(others)})
    table.update({b: 0x100 for b in others})  # a raw space, control or soft hyphen: not valid
    return table


_DECODE = _byte_level_decoding_table()


def _ranks(path: str, vocab: dict[str, Any]) -> dict[bytes, int]:
    if not all(type(rank) is int and rank >= 0 for rank in vocab.values()):
        raise _error(path, "has a vocab id that is not a non-negative integer")
    try:
        ranks = {token.translate(_DECODE).encode("latin-1"): rank for token, rank in vocab.items()}
    except UnicodeEncodeError:
        bad = next(
            t for t in vocab if not all(ord(c) in _DECODE and _DECODE[ord(c)] < 256 for c in t)
        )
        raise _error(path, f"has vocab entry {bad!r}, which is not GPT-2 byte-level text") from None
    if len(set(ranks.values())) != len(ranks):
        raise _error(path, "gives one id to two vocab entries")
    if b"" in ranks:
        raise _error(path, "has an empty vocab entry")
    missing = [b for b in range(256) if bytes([b]) not in ranks]
    if missing:
        raise _error(path, f"has no vocab entry for byte 0x{missing[0]:02x} (of {len(missing)})")
    return ranks


def _check_merges(path: str, vocab: dict[str, Any], merges: Any) -> None:
    """Every merge makes a vocab token, and the merges come in the order of those tokens' ids."""
    if not isinstance(merges, list):
        raise _error(path, "has no model.merges list")
    try:
        if all(isinstance(merge, list) for merge in merges):
            joined = list(map("".join, merges))  # ["a", "b"] (tokenizers >= 0.20)
        else:
            joined = [merge.replace(" ", "", 1) for merge in merges]  # "a b"
    except (TypeError, AttributeError):
        raise _error(path, "has a merge that is neither 'a b' nor ['a', 'b']") from None
    ids: list[int] = list(map(vocab.get, joined, itertools.repeat(-1)))  # ids are >= 0
    if -1 in ids:
        index = ids.index(-1)
        raise _error(path, f"has merge {merges[index]!r}, which makes no vocab token")
    if not all(map(operator.le, ids, ids[1:])):
        index = next(i for i in range(1, len(ids)) if ids[i] < ids[i - 1])
        raise _error(
            path,
            f"lists merge {merges[index]!r} (id {ids[index]}) after one making id "
            f"{ids[index - 1]}: merges out of id order, so ids cannot serve as tiktoken ranks",
        )


def _special_tokens(
    path: str, added: Any, vocab: dict[str, Any], rank_ids: set[int]
) -> dict[str, int]:
    if added is None:
        return {}
    if not isinstance(added, list):
        raise _error(path, "has added_tokens that is not a list")
    specials: dict[str, int] = {}
    for entry in added:
        content = entry.get("content") if isinstance(entry, dict) else None
        token_id = entry.get("id") if isinstance(entry, dict) else None
        if not (isinstance(content, str) and content and type(token_id) is int and token_id >= 0):
            raise _error(path, f"has added token {entry!r} without a content string and an id")
        if content in specials or token_id in specials.values():
            raise _error(path, f"lists added token {content!r} (id {token_id}) twice")
        if token_id in rank_ids and vocab.get(content) != token_id:
            raise _error(path, f"gives added token {content!r} the id {token_id} of a vocab entry")
        specials[content] = token_id
    return specials
