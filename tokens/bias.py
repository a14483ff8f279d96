"""Turn a cl100k_base count into an estimate of GLM-4.6's count (the default, no-GLM-file mode).

GLM-4.6's vocabulary holds 99,377 of cl100k_base's 100,256 ranks and the pre-tokenizer regex
differs only in how it groups whitespace, so plain ASCII text (English, code, JSON) tokenizes the
same in both except for digits: GLM keeps only 177 of the 1,000 three-digit groups as one token and
splits the others in two, which counting with `with_glm_digit_groups(encoding)` reproduces
exactly. GLM's extra 51,952 ranks are mostly words of other scripts, so cl100k
over-counts Chinese, Japanese, Cyrillic, Greek and Arabic text. The corrections below were measured
with `benchmarks/bench_tokens.py` and on natural text (man pages, vim tutors, gettext catalogues);
each errs a little towards over-counting, because an under-count can overflow the real window.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import tiktoken

from tokens.encoding import with_glm_digit_groups

# CJK runs are estimated per character instead of being encoded: cl100k splits many common
# Chinese characters into byte fragments, so its count says little about GLM's, while GLM's
# tokens per character are steady within a script. Han, kana, and CJK/full-width punctuation.
_CJK_CHARS = (
    "\u3000-\u303f\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\uff00-\uffef\U00020000-\U0003134f"
)
_CJK_PUNCT_CHARS = "\u3000-\u303f\uff00-\uff65\uffa0-\uffef"
# A run of CJK characters; newlines right after its punctuation belong to it, because GLM
# merges them with the mark ("。\n" and "：\n\n" are single tokens).
_CJK_RUN = re.compile(f"([{_CJK_CHARS}]+(?:(?<=[{_CJK_PUNCT_CHARS}])[\r\n]+)?)")
_KANA = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_CJK_PUNCT = re.compile(f"[{_CJK_PUNCT_CHARS}]")
_NEWLINES = re.compile("[\r\n]")
# Very common characters that exist only in Traditional Chinese: 13-17% of the Han characters
# of Traditional text, under 0.1% of Simplified text.
_TRADITIONAL = re.compile(
    "[們這個來說時會為國後對學點過還發經與開關種實體東從麼應現給見長問題電話機車門書業區號記錄將檔設"
    "資網頁輸擇請顯執錯誤訊視窗儲刪統軟無產認證讀寫變據]"
)
# Stands in for each CJK run in the text that is still encoded: a byte no cl100k token merges
# with, so every placeholder is exactly one token and keeps its neighbours apart.
_PLACEHOLDER = "\x00"


@dataclass(frozen=True)
class ScriptRates:
    """GLM tokens per CJK character, and per cl100k token of other scripts.

    Measured against glm-4.6.tiktoken in context (whole texts, not isolated runs) on natural
    text: gettext catalogues, man pages and vim tutors of each language, plus the benchmark
    corpus. Figures in the comments are the measured ranges across those sources.
    """

    # per Han/kana character (Simplified 0.53-0.57, Traditional 0.86-0.96, Japanese 0.60-0.66)
    simplified: float = 0.55
    traditional: float = 0.96
    japanese: float = 0.64
    # per full-width or CJK punctuation mark (one token; a newline after it is merged in)
    cjk_punct: float = 1.0
    # per cl100k token with letters of the script (Cyrillic 0.60-0.62, Greek 0.34-0.42,
    # Arabic 0.60, Hangul 0.76-0.84, accented Latin 0.2-0.9: low for Vietnamese, high for German)
    cyrillic: float = 0.63
    greek: float = 0.41
    arabic: float = 0.62
    hangul: float = 0.85
    latin_extended: float = 0.6


DEFAULT_RATES = ScriptRates()


def _lead_script(data: bytes) -> str:
    """Script of the first UTF-8 lead byte in a token that holds no whole character."""
    for byte in data:
        if byte >= 0xC0:
            if 0xD0 <= byte <= 0xD4:
                return "cyrillic"
            if byte in (0xCE, 0xCF):
                return "greek"
            if 0xD8 <= byte <= 0xDB:
                return "arabic"
            if 0xEA <= byte <= 0xED:
                return "hangul"
            if 0xC3 <= byte <= 0xC9:
                return "latin_extended"
            return "other"
    return "other"


def _char_script(char: str) -> str:
    code = ord(char)
    if 0x0400 <= code <= 0x052F:
        return "cyrillic"
    if 0x0370 <= code <= 0x03FF or 0x1F00 <= code <= 0x1FFF:
        return "greek"
    if 0x0600 <= code <= 0x06FF or 0x0750 <= code <= 0x077F:
        return "arabic"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF or 0x3130 <= code <= 0x318F:
        return "hangul"
    if 0x00C0 <= code <= 0x024F or 0x1E00 <= code <= 0x1EFF:
        return "latin_extended"
    return "other"


def token_script(data: bytes) -> str:
    """The script a cl100k token's bytes belong to: ascii, a corrected script, or other."""
    if data.isascii():
        return "ascii"
    scripts = [_char_script(c) for c in data.decode("utf-8", errors="ignore") if ord(c) >= 0x80]
    if not scripts:
        return _lead_script(data)
    return max(set(scripts), key=scripts.count)


class GlmEstimator:
    """Estimate GLM-4.6 token counts of text from a cl100k_base encoding (rates tuned for it).

    >>> GlmEstimator(load_encoding()).count("order 4567")  # "456" is two GLM tokens
    5
    """

    def __init__(self, encoding: tiktoken.Encoding, rates: ScriptRates = DEFAULT_RATES) -> None:
        encoding = with_glm_digit_groups(encoding)
        self._encode = encoding.encode_ordinary
        self._rates = rates
        self._weights = self._build_weights(encoding)

    # ------------------------------------------------------------------------ public

    def count(self, text: str) -> int:
        """Estimated GLM tokens of `text` (rounded up)."""
        if text.isascii():
            return self._count_ascii(text)
        parts = _CJK_RUN.split(text)
        rest = _PLACEHOLDER.join(parts[0::2])
        runs = parts[1::2]
        # A lone Han or kana character between words of other scripts ("用 git 提交") is one
        # GLM token; the per-character rate is for the longer runs where GLM merges words.
        lone = [run for run in runs if len(run) == 1 and not _CJK_PUNCT.match(run)]
        merged = "".join(run for run in runs if len(run) > 1 or _CJK_PUNCT.match(run))
        estimate = self._count_rest(rest) - len(runs) + len(lone) + self._estimate_cjk(merged)
        return math.ceil(estimate)

    # ------------------------------------------------------------------------ internals

    def _count_ascii(self, text: str) -> int:
        return len(self._encode(text))

    def _count_rest(self, rest: str) -> float:
        if rest.isascii():
            return self._count_ascii(rest)
        tokens = self._encode(rest)
        return math.fsum(map(self._weights.__getitem__, tokens))

    def _estimate_cjk(self, cjk: str) -> float:
        if not cjk:
            return 0.0
        rates = self._rates
        punct = _count_matches(_CJK_PUNCT, cjk)
        kana = _count_matches(_KANA, cjk)
        letters = len(cjk) - punct - _count_matches(_NEWLINES, cjk)
        if kana * 10 >= letters:
            rate = rates.japanese
        elif _count_matches(_TRADITIONAL, cjk) * 30 >= letters:
            rate = rates.traditional
        else:
            rate = rates.simplified
        return letters * rate + punct * rates.cjk_punct

    def _build_weights(self, encoding: tiktoken.Encoding) -> list[float]:
        """GLM tokens per cl100k token id: 1.0 except for letters of other scripts."""
        rates = self._rates
        per_script = {
            "cyrillic": rates.cyrillic,
            "greek": rates.greek,
            "arabic": rates.arabic,
            "hangul": rates.hangul,
            "latin_extended": rates.latin_extended,
        }
        weights = [1.0] * encoding.n_vocab
        for data in encoding.token_byte_values():
            if not data.isascii():
                weight = per_script.get(token_script(data), 1.0)
                if weight != 1.0:
                    weights[encoding.encode_single_token(data)] = weight
        return weights


def _count_matches(pattern: re.Pattern[str], text: str) -> int:
    return pattern.subn("", text)[1]
