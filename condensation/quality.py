"""The quality gate of an AI summary: how many of its span's salient facts it kept.

A condenser accepts a summary only when ``judge(span, summary).score`` reaches
``CONDENSATION_QUALITY_THRESHOLD`` (0.6 by default). Everything here is deterministic, pure and
cheap (a 50,000-character span is judged in a few milliseconds).

Facts (``salient_facts``). Fewer, surer facts beat recall: ordinary English words never count.
Commands and error lines are read from the whole text; then URLs, paths and base64 runs (32+
characters mixing digits and both cases) are taken out, so that their parts are not facts of their
own, and names and numbers are read from what remains:

1. url: ``http(s)://``, ``ws(s)://``, ``ftp://``, ``file://`` up to whitespace, a quote or a
   closing bracket, trailing ``.,;:!?`` dropped.
2. path: a Windows path (``C:\\dir\\f.py``; JSON's doubled backslashes are read as one); a
   token holding a ``/`` that either starts with ``/``, ``./``, ``../`` or ``~/`` (its first
   part holding a letter; a lone part of 2+ characters), or is relative with 2+ parts and a last
   part with a file extension (``src/app/main.py``), or is a lowercase directory ending in ``/``
   (``tests/``). ``a/`` and ``b/`` of git diffs are dropped. Dates, fractions, ``and/or``,
   ``km/h``, MIME types (``application/json``) are not paths. A dotted name whose last part is a
   common file extension (``main.py``, ``config.yaml``; not ``self.``/``this.``/``cls.`` names)
   and is not called is a path as well.
3. error: exception-like names (``ValueError``, ``json.JSONDecodeError`` is kept as
   ``JSONDecodeError``, ``KeyboardInterrupt``, ``SystemExit``, ``StopIteration``), errno names
   (``ENOENT``, ``ECONNREFUSED`` ...), ``error[E0382]`` codes, ``Segmentation fault``; the key
   part of an error line: the first four words of the message of a line ``Name: message``
   (``TypeError: unsupported operand type(s) for``) or ``error:``/``fatal:``/``panic:``; and
   exit codes (``exit code 1``, ``exited with status 2``, ``returncode=1``).
4. command: the content of an inline `` `code span` `` holding a space and starting like a
   program or a path (``pytest -q tests/``), and a shell line ``$ command``.
5. identifier: snake_case (an inner underscore: ``compute_total``, ``MAX_TOKENS``; also
   ``_private`` and ``__dunder__``), camelCase/PascalCase (a lowercase letter or digit before a
   capital, or ``HTTPServer``-like; 4-40 characters, at most 30% digits), dotted names
   (``os.path.join``; 4+ characters, not all parts single letters, so not ``e.g``), a name called
   directly (``foo(`` but not ``file(s)`` or ``if(``), a CLI flag (``--max-tokens``) and a single
   token in backticks (`` `None` ``). Not ids that look random (a part of 8+ characters with
   digits in two places or more: ``toolu_01A09q90qw90lq917835lq9``).
6. number: 3+ digits (``8192``, ``404``, ``8,192`` read as ``8192``), a decimal or a version
   (``3.14``, ``v1.2.3`` read as ``1.2.3``, ``127.0.0.1``), hex (``0x1f``), or a number with a
   unit (``5ms``, ``2 GB``, ``50%``, ``10k``). Not inside words (``sha256``, ``glm-4.6``).

Kept: a fact is kept when the summary holds it, case-sensitively and not as a part of a longer
word (``my_func`` is not kept by ``my_func2``); numbers are compared as whole number tokens
(``8,192`` keeps ``8192``); a dotted name is also kept by its last part when that part is a
snake/camel identifier itself (``self.compute_total`` by ``compute_total``); commands are
compared with whitespace collapsed; error lines' key parts also case-insensitively; an exit code
is kept by ``exit``/``return code`` followed, within four words, by the code.

Weights (``score`` = weight of kept facts / weight of all facts):

- url, path, error, command: 2.
- identifier, number: 1 when it occurs 2+ times in the span or occurs in a tool call's input
  (``tool_inputs``), else 0.25 — a faithful 2,000-token summary of a huge span cannot list
  every identifier that was mentioned once.

Sanity (score 0, ``reason`` says why): an empty or whitespace summary (``"empty"``); a summary
longer than ``max_chars`` when given (``"too_long"``); a copy (``"copy"``): a summary at least 80%
as long as the span (whitespace collapsed) that holds at least 80% of the span's word 4-grams
(case-insensitive; spans under 50 words are never copied, their summaries may well look alike).
A span without facts scores 1.0.

>>> sorted(salient_facts("Edit src/app/main.py: compute_total returned 8192 (ValueError)."))
['8192', 'ValueError', 'compute_total', 'src/app/main.py']
>>> judge("See src/a.py and my_func.", "Changed src/a.py.").score
0.8888888888888888
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Quality", "judge", "salient_facts"]

MISSING_LIMIT = 20
COPY_SHARE = 0.8
SHINGLE = 4
COPY_MIN_WORDS = 50
HEAD_WORDS = 4

HEAVY = 2.0  # url, path, error, command
REPEATED = 1.0  # identifier or number seen 2+ times or in a tool call's input
SINGLE = 0.25  # identifier or number seen once
HEAVY_KINDS = frozenset({"url", "path", "error", "command"})

# Extensions that make a bare dotted name a file (not ones that are common attribute names).
FILE_EXTENSIONS = frozenset(
    """py pyi pyc ipynb js mjs cjs ts tsx jsx json jsonl md rst txt yml yaml toml cfg ini conf sh
    bash zsh ps1 bat cc cpp hpp cxx rs go java kt kts scala rb php lua swift html htm css scss
    sass less vue svelte sql sqlite csv tsv xml svg png jpg jpeg gif webp pdf zip gz tgz tar whl
    dll exe dylib proto graphql tf hcl dockerfile cmake gradle pem crt patch diff""".split()
)
OBJECTS = frozenset({"self", "this", "cls"})
ERRNO_NAMES = frozenset(
    """ENOENT EACCES EPERM EEXIST ENOTDIR EISDIR ENOSPC EAGAIN EINVAL EMFILE ENOTEMPTY EBADF EPIPE
    EBUSY EROFS ENOMEM ECONNREFUSED ECONNRESET ECONNABORTED ETIMEDOUT EADDRINUSE EHOSTUNREACH
    ENETUNREACH ENOTFOUND""".split()
)
OTHER_ERRORS = frozenset({"KeyboardInterrupt", "SystemExit", "StopIteration", "GeneratorExit"})
NOT_CALLS = frozenset(
    "if for while switch return and or not in is catch with elif else sizeof typeof".split()
)

# "(?=X)" in front of a pattern lets the regex engine skip fast to where it can start.
_URL = re.compile(r"(?:https?|wss?|ftp|file)://[^\s<>\"'`()\[\]{}|\\^]+")
_WINDOWS_PATH = re.compile(r"(?<![\w\\])[A-Za-z]:(?:\\{1,2}[\w@+.-]+)+")
# The first class lacks '/', and a run can only start where the lookbehind allows: linear time.
_PATH_CANDIDATE = re.compile(r"(?=[\w.~@+/-])(?<![\w.~@+/-])[\w.~@+-]*/[\w.~@+/-]*")
_EXTENSION = re.compile(r"^[\w@+-][\w@+.-]*\.[A-Za-z][A-Za-z0-9]{0,9}$")
_LOWER_DIR = re.compile(r"[a-z0-9_.-]+")
# A name, dotted or not, with the "(" of a call right after it (but not "file(s)").
_TOKEN = re.compile(
    r"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
    r"(?:\((?!(?:e?s|ies)\)))?",
    re.ASCII,
)
_ERRNO = re.compile(r"(?=E)\b(?:" + "|".join(sorted(ERRNO_NAMES)) + r")\b")
# A part of a name (between "_" and ".") of 8+ characters with digits in two places or more.
_RANDOM_PART = re.compile(r"(?:^|[_.])(?=[A-Za-z0-9]{8})[A-Za-z]*[0-9]+[A-Za-z]+[0-9]")
_LETTER = re.compile(r"[A-Za-z]")
# Long runs of base64 (images, keys): blanked before names and numbers are looked for.
_BLOB = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{32,}={0,2}(?![A-Za-z0-9+/=])")
_CAMEL = re.compile(r"[a-z0-9][A-Z]|[A-Z]{2}[a-z]{2}")
_ERROR_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*(?:Error|Exception|Warning)$")
_FLAG = re.compile(r"(?=--)(?<![\w-])--[A-Za-z][A-Za-z0-9_-]*[A-Za-z0-9]")
_NUMBER = re.compile(
    r"(?=[0-9])(?:(?<![\w.])|(?<=(?<![\w.])v))(?<![A-Za-z]-)"
    r"(?:(?P<hex>0[xX][0-9A-Fa-f]+)"
    r"|(?<![\[,])(?P<grouped>\d{1,3}(?:,\d{3})+(?:\.\d+)?)(?![\d\]]|,\d)"
    r"|(?P<plain>\d+(?:\.\d+)*))"
    r"(?:[ ]?(?P<unit>ms|us|µs|ns|[KMGT]i?B|kB|px)|(?P<suffix>[smhkKMG%x]))?"
    r"(?![\w%])(?!\.\d)"
)
_BACKTICKS = re.compile(r"(?<!`)`([^`\n]{1,200})`(?!`)")
_COMMAND_START = re.compile(r"^[A-Za-z./~_][\w./~+-]*$")
_SHELL_LINE = re.compile(r"^[ \t]*\$[ \t]+(\S[^\n]{0,199})$", re.M)
_NAMED_ERROR_LINE = re.compile(
    r"^[ \t]*(?:[A-Za-z_][\w.]*\.)?([A-Z][A-Za-z0-9]*(?:Error|Exception))[ \t]*:[ \t]*(\S[^\n]*)$",
    re.M,
)
_GENERIC_ERROR_LINE = re.compile(
    r"^[ \t]*(error|fatal|panic)(?:\[(\w+)\])?[ \t]*:[ \t]*(\S[^\n]*)$", re.M | re.I
)
_SEGFAULT = re.compile(r"\bSegmentation fault\b")
_EXIT = re.compile(
    r"(?=[ER])\b(?:exit(?:ed)?(?:[ \t]+with)?[ \t_]+(?:code|status)|return[ _]?code)"
    r"[ \t]*[:=]?[ \t]*(-?\d+)\b",
    re.I,
)
_WORD = re.compile(r"\w+")
_TRAILING = ".,;:!?'\""


@dataclass(frozen=True)
class Quality:
    """The verdict on one summary: score in [0, 1]; kept/total count facts (unweighted);
    missing: up to 20 facts not kept, heaviest first, then in the order they were found (for
    logs); reason: why a sanity check scored 0 (``empty``, ``too_long``, ``copy``), else ""."""

    score: float
    kept: int
    total: int
    missing: tuple[str, ...]
    reason: str = ""


@dataclass
class _Fact:
    text: str  # as shown in logs and returned by salient_facts
    kind: str  # url, path, error, command, identifier, number
    match: str  # how it is looked for: "word", "number", "head", "command", "exit", "windows"
    key: str  # what is looked for
    count: int = 0
    alias: str = ""  # a dotted name's salient last part, which keeps it too

    def weight(self, promoted: bool) -> float:
        if self.kind in HEAVY_KINDS:
            return HEAVY
        return REPEATED if promoted or self.count >= 2 else SINGLE


class _Facts:
    """Facts found in one text, keyed by their shown text, with their occurrence counts."""

    def __init__(self) -> None:
        self.by_text: dict[str, _Fact] = {}

    def add(
        self,
        text: str,
        kind: str,
        match: str = "word",
        key: str = "",
        alias: str = "",
        count: int = 1,
    ) -> None:
        fact = self.by_text.get(text)
        if fact is None:
            fact = _Fact(text, kind, match, key or text, alias=alias)
            self.by_text[text] = fact
        fact.count += count


# ---------------------------------------------------------------------------- extraction


def salient_facts(text: str) -> set[str]:
    """The salient facts of `text` (see the module docstring for the rules)."""
    return set(_extract(text).by_text)


def _extract(text: str) -> _Facts:
    facts = _Facts()
    _commands(text, facts)
    _error_lines(text, facts)
    rest = _URL.sub(lambda m: _take_url(m, facts), text) if "://" in text else text
    rest = _BLOB.sub(_blank_blob, rest)
    if ":\\" in rest:
        rest = _WINDOWS_PATH.sub(lambda m: _take_windows_path(m, facts), rest)
    if "/" in rest:
        paths: dict[str, str | None] = {}  # candidate -> its path, or None: judged once each
        rest = _PATH_CANDIDATE.sub(lambda m: _take_path(m, facts, paths), rest)
    _tokens(rest, facts)
    _numbers(rest, facts)
    return facts


def _blank_blob(match: re.Match[str]) -> str:
    """A space for a run of base64 (digits, capitals and small letters), else the run."""
    blob = match.group(0)
    mixed = not blob.islower() and not blob.isupper() and any(c.isdigit() for c in blob)
    return " " if mixed else blob


def _take_url(match: re.Match[str], facts: _Facts) -> str:
    url = match.group(0).rstrip(_TRAILING)
    facts.add(url, "url")
    return " " + match.group(0)[len(url) :]


def _take_windows_path(match: re.Match[str], facts: _Facts) -> str:
    path = match.group(0).rstrip(_TRAILING).replace("\\\\", "\\")
    facts.add(path, "path", "windows")
    return " "


def _take_path(match: re.Match[str], facts: _Facts, paths: dict[str, str | None]) -> str:
    whole = match.group(0)
    if whole in paths:
        path = paths[whole]
    else:
        path = paths[whole] = _path_of(whole)
    if path is None:
        return whole
    facts.add(path, "path")
    return " "


def _path_of(candidate: str) -> str | None:
    path = candidate.rstrip(_TRAILING + "-")
    if path[:2] in ("a/", "b/") and _is_path(path[2:]):
        return path[2:]  # a git diff's a/src/x.py
    return path if _is_path(path) else None


def _is_path(path: str) -> bool:
    if "/" not in path or "//" in path:
        return False
    for anchor in ("~/", "./", "../", "/"):
        if path.startswith(anchor):
            parts = path.lstrip("./~").rstrip("/").split("/")
            parts = [p for p in parts if p not in ("", ".", "..")]
            if not parts or not any(c.isalpha() for c in parts[0]):
                return False
            return len(parts) > 1 or len(parts[0]) >= 2
    parts = path.rstrip("/").split("/")
    if any(not p for p in parts) or all(p.replace(".", "").isdigit() for p in parts):
        return False
    if path.endswith("/"):
        return all(_LOWER_DIR.fullmatch(p) for p in parts) and any(c.isalpha() for c in path)
    return len(parts) >= 2 and _EXTENSION.match(parts[-1]) is not None


def _tokens(text: str, facts: _Facts) -> None:
    # findall + Counter do the per-occurrence work in C; each distinct token is judged once.
    for token, count in Counter(_TOKEN.findall(text)).items():
        called = token.endswith("(")
        name = token[:-1] if called else token
        verdict = _classify(name, called)
        if verdict is None and called and len(name) >= 2 and name not in NOT_CALLS:
            verdict = (name, "identifier", "")
        if verdict is not None:
            fact, kind, alias = verdict
            facts.add(fact, kind, alias=alias, count=count)
    if "E" in text:
        for match in _ERRNO.finditer(text):
            facts.add(match.group(0), "error")
    if "--" in text:
        for match in _FLAG.finditer(text):
            facts.add(match.group(0), "identifier")
    if "Segmentation fault" in text:
        for match in _SEGFAULT.finditer(text):
            facts.add(match.group(0), "error")


def _classify(token: str, called: bool) -> tuple[str, str, str] | None:
    """(fact, kind, alias) for a name token, else None (a plain call is decided by the caller)."""
    if _looks_random(token):
        return None
    if "." not in token:
        kind = _identifier_kind(token)
        return (token, kind, "") if kind is not None else None
    parts = token.split(".")
    last = parts[-1]
    if _identifier_kind(last) == "error":
        return last, "error", ""  # json.JSONDecodeError counts as JSONDecodeError
    if len(token) < 4 or all(len(p) == 1 for p in parts):
        return None  # e.g, i.e
    if not called and last.lower() in FILE_EXTENSIONS and parts[0] not in OBJECTS:
        return token, "path", ""
    alias = last if _identifier_kind(last) == "identifier" else ""
    return token, "identifier", alias


def _looks_random(token: str) -> bool:
    """An id such as toolu_01A09q90qw90lq917835lq9: a long part with digits in 2+ places."""
    return len(token) >= 8 and _RANDOM_PART.search(token) is not None


def _identifier_kind(token: str) -> str | None:
    """'error' or 'identifier' for a name that is one by itself, else None."""
    if _ERROR_NAME.match(token) or token in OTHER_ERRORS or token in ERRNO_NAMES:
        return "error"
    if "_" in token:
        core = token.strip("_")
        if _LETTER.search(core) is None:
            return None
        if "_" in core:
            return "identifier"
        if token.startswith("__") and token.endswith("__"):
            return "identifier"  # __init__
        if token.startswith("_") and not token.endswith("_") and len(core) >= 2:
            return "identifier"  # _private; not markdown's _emphasis_
        return None
    if 4 <= len(token) <= 40 and _CAMEL.search(token):
        digits = sum(c.isdigit() for c in token)
        if digits <= 0.3 * len(token):
            return "identifier"
    return None


def _number_text(hex_number: str, grouped: str, plain: str, unit: str, suffix: str) -> str | None:
    """The normalized text of a number (the groups of a `_NUMBER` match) that is a fact, else
    None."""
    if hex_number:
        return hex_number.lower() if len(hex_number) >= 3 else None
    digits = (grouped or plain).replace(",", "")
    unit = unit or suffix
    if unit or "." in digits or len(digits) >= 3:
        return digits + unit
    return None


def _numbers(text: str, facts: _Facts) -> None:
    for groups, count in Counter(_NUMBER.findall(text)).items():
        number = _number_text(*groups)
        if number is not None:
            facts.add(number, "number", "number", count=count)


def _commands(text: str, facts: _Facts) -> None:
    for match in _BACKTICKS.finditer(text) if "`" in text else ():
        content = match.group(1).strip()
        words = content.split()
        if len(words) >= 2 and _COMMAND_START.match(words[0]):
            facts.add(" ".join(words), "command", "command")
        elif len(words) == 1 and 2 <= len(content) <= 60 and _is_plain_code(content):
            facts.add(content, "identifier")
    for match in _SHELL_LINE.finditer(text) if "$" in text else ():
        command = " ".join(match.group(1).split())
        facts.add(command, "command", "command")


def _is_plain_code(content: str) -> bool:
    """A single word in backticks that no other rule takes whole (those are counted there)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", content):
        return False
    return _identifier_kind(content) is None


def _error_lines(text: str, facts: _Facts) -> None:
    for match in _NAMED_ERROR_LINE.finditer(text):
        _error_head(match.group(1), match.group(2), facts)
    for match in _GENERIC_ERROR_LINE.finditer(text):
        if match.group(2):
            facts.add(match.group(2), "error")
        _error_head(match.group(1).lower(), match.group(3), facts)
    lowered = text.lower()
    for match in _EXIT.finditer(text) if "exit" in lowered or "code" in lowered else ():
        code = match.group(1)
        facts.add(f"exit code {code}", "error", "exit", code)


def _error_head(name: str, message: str, facts: _Facts) -> None:
    head = " ".join(message.split()[:HEAD_WORDS]).rstrip(_TRAILING + " ")
    if len(head) >= 3:
        facts.add(f"{name}: {head}", "error", "head", head.lower())


# ---------------------------------------------------------------------------- judging


def judge(
    span_text: str,
    summary: str,
    *,
    max_chars: int | None = None,
    tool_inputs: str | Iterable[str] = (),
) -> Quality:
    """How well `summary` keeps the salient facts of `span_text` (see the module docstring).

    `tool_inputs`: the inputs (arguments) of the span's tool calls, as text; their facts weigh as
    repeated ones and count as facts of the span even when `span_text` does not render them.
    """
    facts = _extract(span_text)
    promoted: set[str] = set()
    for text in [tool_inputs] if isinstance(tool_inputs, str) else tool_inputs:
        extra = _extract(text)
        promoted |= set(extra.by_text)
        for fact in extra.by_text.values():
            facts.by_text.setdefault(fact.text, fact)
    total = len(facts.by_text)
    if not summary.strip():
        return Quality(0.0, 0, total, (), "empty")
    if max_chars is not None and len(summary) > max_chars:
        return Quality(0.0, 0, total, (), "too_long")
    if _is_copy(span_text, summary):
        return Quality(0.0, 0, total, (), "copy")
    if not total:
        return Quality(1.0, 0, 0, ())
    view = _SummaryView(summary)
    kept_weight = all_weight = 0.0
    kept = 0
    missing: list[tuple[float, str]] = []
    for fact in facts.by_text.values():
        weight = fact.weight(fact.text in promoted)
        all_weight += weight
        if view.keeps(fact):
            kept += 1
            kept_weight += weight
        else:
            missing.append((weight, fact.text))
    missing.sort(key=lambda pair: -pair[0])  # stable: in the order the rules found them
    shown = tuple(text for _, text in missing[:MISSING_LIMIT])
    return Quality(kept_weight / all_weight, kept, total, shown)


class _SummaryView:
    """A summary, prepared once for the fact lookups."""

    def __init__(self, summary: str) -> None:
        self.text = summary
        self.words = set(_WORD.findall(summary))  # a plain name is kept iff it is one of them
        self.collapsed = " ".join(summary.split())
        self.lowered = self.collapsed.lower()
        self.numbers: set[str] = set()
        for hex_number, grouped, plain, unit, suffix in _NUMBER.findall(summary):
            bare = (grouped or plain).replace(",", "")  # every number, with and without its unit
            self.numbers |= {bare, bare + (unit or suffix), hex_number.lower()}

    def keeps(self, fact: _Fact) -> bool:
        if fact.match == "number":
            return fact.key in self.numbers
        if fact.match == "head":
            return fact.key in self.lowered
        if fact.match == "command":
            return fact.key in self.collapsed
        if fact.match == "exit":
            pattern = r"(?:exit|return[ _]?code)\w*\W+(?:\w+\W+){0,3}?" + re.escape(fact.key)
            return re.search(pattern + r"(?![\w.])", self.text, re.I) is not None
        if fact.match == "windows":
            doubled = fact.key.replace("\\", "\\\\")
            return _has_word(self.text, fact.key) or _has_word(self.text, doubled)
        if fact.key in self.words or (fact.alias and fact.alias in self.words):
            return True
        return _WORD.fullmatch(fact.key) is None and _has_word(self.text, fact.key)


def _has_word(text: str, word: str) -> bool:
    """Whether `word` occurs in `text` not as a part of a longer word."""
    check_before, check_after = _is_word_char(word[0]), _is_word_char(word[-1])
    start = text.find(word)
    while start >= 0:
        end = start + len(word)
        before_ok = not check_before or start == 0 or not _is_word_char(text[start - 1])
        after_ok = not check_after or end == len(text) or not _is_word_char(text[end])
        if before_ok and after_ok:
            return True
        start = text.find(word, start + 1)
    return False


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"


def _is_copy(span_text: str, summary: str) -> bool:
    """Whether the summary reproduces most of the span (see the module docstring)."""
    span_length = len(" ".join(span_text.split()))
    if not span_length or len(" ".join(summary.split())) < COPY_SHARE * span_length:
        return False
    span_words = _WORD.findall(span_text.lower())
    if len(span_words) < COPY_MIN_WORDS:
        return False
    span_grams = _grams(span_words, SHINGLE)
    summary_grams = _grams(_WORD.findall(summary.lower()), SHINGLE)
    return len(span_grams & summary_grams) >= COPY_SHARE * len(span_grams)


def _grams(words: list[str], size: int) -> set[tuple[str, ...]]:
    return set(zip(*(words[k:] for k in range(size)), strict=False))  # the word size-grams
