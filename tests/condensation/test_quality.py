"""The summary quality gate: which facts a span has, how a summary keeps them, sanity checks."""

from __future__ import annotations

import base64
import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condensation.quality import Quality, judge, salient_facts

# ---------------------------------------------------------------------------- what is a fact

PROSE = (
    "The quick brown fox jumps over the lazy dog. We talked about the plan for next week, e.g. "
    "moving fast, i.e. not waiting; it's a well-known, state-of-the-art idea. In the U.S. people "
    "have 2 cats and/or 3 dogs. The file(s) looked fine (see above). HTTP and JSON are fine, so "
    "are URLs, IDs and PRs. It took 10 minutes at 5 km/h... Wait...what? Mr. Smith said: Error! "
    "Note: _really_ done. Then he/she left; 1/2 of them stayed. Either way, etc."
)


@pytest.mark.parametrize(
    ("text", "facts"),
    [
        # English prose has no facts
        (PROSE, set()),
        ("Hello there! How are you today? I'm fine, thanks.", set()),
        ("Fix the bug, then run the tests again and report back.", set()),
        ("", set()),
        # paths
        ("open src/app/main.py now", {"src/app/main.py"}),
        ("see ./x.txt.", {"./x.txt"}),
        ("edit /etc/nginx/nginx.conf, then reload", {"/etc/nginx/nginx.conf"}),
        ("in C:\\dir\\f.py here", {"C:\\dir\\f.py"}),
        ('{"path": "C:\\\\dir\\\\f.py"}', {"C:\\dir\\f.py"}),
        (
            "under ../lib/util and ~/projects/app and /tmp",
            {"../lib/util", "~/projects/app", "/tmp"},
        ),
        ("look in tests/ first", {"tests/"}),
        ("read README.md and config.yaml", {"README.md", "config.yaml"}),
        ("--- a/src/x.py\n+++ b/src/x.py", {"src/x.py"}),
        ("and/or, km/h, TCP/IP, application/json, 3/4", set()),
        ("at src/app/main.py:42 in compute", {"src/app/main.py"}),
        # URLs
        ("docs at https://docs.z.ai/api/v1?x=1.", {"https://docs.z.ai/api/v1?x=1"}),
        ("(see http://localhost:8080/health)", {"http://localhost:8080/health"}),
        # identifiers
        ("call compute_total twice", {"compute_total"}),
        ("set CONDENSATION_QUALITY_THRESHOLD", {"CONDENSATION_QUALITY_THRESHOLD"}),
        ("getUserName and HttpClient and HTTPServer", {"getUserName", "HttpClient", "HTTPServer"}),
        ("use os.path.join here", {"os.path.join"}),
        ("the __init__ and _private helpers", {"__init__", "_private"}),
        ("then print(x) and render()", {"print", "render"}),
        ("if(x) and while(y) and type(s)", set()),
        ("pass --max-tokens to it", {"--max-tokens"}),
        ("return `None` here", {"None"}),
        ("ids toolu_01A09q90qw90lq917835lq9 and call_abc123def456", set()),
        # numbers
        ("the window is 8192 tokens", {"8192"}),
        ("the window is 8,192 tokens", {"8192"}),
        ("pi is 3.14 and v1.2.3 at 127.0.0.1", {"3.14", "1.2.3", "127.0.0.1"}),
        ("took 5ms, then 5 ms, 2 GB, 50% and 10k", {"5ms", "2GB", "50%", "10k"}),
        ("flags 0x1F", {"0x1f"}),
        ("got 404 then 200", {"404", "200"}),
        ("only 42 and 7 and sha256 and glm-4.6 and [1,2,3]", set()),
        ("a list [100,200]", {"100", "200"}),
        # errors
        ("raised ValueError and json.JSONDecodeError", {"ValueError", "JSONDecodeError"}),
        (
            "TypeError: unsupported operand type(s) for +",
            {
                "TypeError",
                "TypeError: unsupported operand type(s) for",
            },
        ),
        ("error: could not compile foo", {"error: could not compile foo"}),
        ("error[E0382]: borrow of moved value", {"E0382", "error: borrow of moved value"}),
        ("fatal: not a git repository", {"fatal: not a git repository"}),
        ("Process exited with code 137", {"exit code 137", "137"}),
        ("exit status 2; returncode=1", {"exit code 2", "exit code 1"}),
        ("open failed: ENOENT", {"ENOENT"}),
        ("Segmentation fault (core dumped)", {"Segmentation fault"}),
        ("KeyboardInterrupt", {"KeyboardInterrupt"}),
        # commands
        ("run `pytest -q tests/` now", {"pytest -q tests/", "tests/"}),
        ("$ git status\nnothing to commit", {"git status"}),
        ('this `{"a": 1}` is data', set()),
        # base64 is not a pile of identifiers
        (base64.b64encode(bytes(range(256)) * 4).decode(), set()),
    ],
)
def test_salient_facts(text: str, facts: set[str]) -> None:
    assert salient_facts(text) == facts


TRACEBACK = """Traceback (most recent call last):
  File "/home/dev/app/main.py", line 123, in run
    total = compute_total(items)
  File "src/billing/invoice.py", line 7, in compute_total
    return sum(line.amount for line in items) + tax_rate
TypeError: unsupported operand type(s) for +: 'int' and 'str'
"""
SHELL = """$ pytest -q tests/test_invoice.py
..F
FAILED tests/test_invoice.py::test_rounding - AssertionError: 4821 != 4822
1 failed, 2 passed in 0.31s
$ echo $?
1
"""
JSON_TEXT = json.dumps(
    {
        "model": "glm-4.6",
        "max_tokens": 8192,
        "url": "https://api.z.ai/api/anthropic/v1/messages",
        "file_path": "src/billing/invoice.py",
        "retries": 3,
        "enabled": True,
    },
    indent=2,
)
CODE = """class InvoiceBuilder:
    def __init__(self, tax_rate: float = 0.25) -> None:
        self._lines: list[Line] = []
        self.tax_rate = tax_rate

    def add_line(self, amount: int) -> None:
        self._lines.append(Line(amount))
"""


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        (
            TRACEBACK,
            {
                "/home/dev/app/main.py",
                "src/billing/invoice.py",
                "123",
                "compute_total",
                "line.amount",
                "tax_rate",
                "TypeError",
                "TypeError: unsupported operand type(s) for",
            },
            {"Traceback", "File", "line", "most", "recent", "7", "int"},
        ),
        (
            SHELL,
            {
                "pytest -q tests/test_invoice.py",
                "echo $?",
                "tests/test_invoice.py",
                "test_rounding",
                "AssertionError",
                "4821",
                "4822",
                "0.31s",
            },
            {"FAILED", "failed", "passed", "1", "2"},
        ),
        (
            JSON_TEXT,
            {
                "max_tokens",
                "8192",
                "https://api.z.ai/api/anthropic/v1/messages",
                "file_path",
                "src/billing/invoice.py",
            },
            {"model", "glm-4.6", "4.6", "3", "retries", "true", "enabled"},
        ),
        (
            CODE,
            {"InvoiceBuilder", "__init__", "self._lines", "tax_rate", "self.tax_rate", "add_line"},
            {"def", "self", "int", "None", "amount", "class"},
        ),
    ],
    ids=["traceback", "shell", "json", "code"],
)
def test_facts_of_real_looking_text(text: str, present: set[str], absent: set[str]) -> None:
    facts = salient_facts(text)
    assert present <= facts
    assert not absent & facts


def test_salient_facts_is_deterministic() -> None:
    text = TRACEBACK + SHELL + JSON_TEXT + CODE
    assert salient_facts(text) == salient_facts(text)
    assert judge(text, "summary: src/billing/invoice.py") == judge(
        text, "summary: src/billing/invoice.py"
    )


# ---------------------------------------------------------------------------- scores

# Two paths (weight 2 each) and two identifiers seen once (0.25 each): total weight 4.5.
SPAN = "Edit src/a.py and src/b.py; afterwards compute_total and compute_tax were run."


@pytest.mark.parametrize(
    ("summary", "score", "kept"),
    [
        ("Edited src/a.py and src/b.py; ran compute_total and compute_tax.", 1.0, 4),
        ("Edited src/a.py, ran compute_total.", 0.5, 2),  # (2 + 0.25) / 4.5
        ("Edited src/a.py and src/b.py.", 4 / 4.5, 2),
        ("Ran compute_total and compute_tax.", 0.5 / 4.5, 2),
        ("Some files were edited and some functions were run.", 0.0, 0),
    ],
    ids=["all", "half", "paths", "identifiers", "none"],
)
def test_score_is_the_weighted_share_kept(summary: str, score: float, kept: int) -> None:
    quality = judge(SPAN, summary)
    assert quality.score == pytest.approx(score)
    assert (quality.kept, quality.total, quality.reason) == (kept, 4, "")
    assert len(quality.missing) == 4 - kept


def test_repeated_identifiers_and_numbers_weigh_more() -> None:
    span = "compute_total returned 4821; compute_total again; 4821 again; helper_fn once."
    # compute_total 1, 4821 1, helper_fn 0.25
    assert judge(span, "compute_total gave 4821").score == pytest.approx(2 / 2.25)
    assert judge(span, "helper_fn").score == pytest.approx(0.25 / 2.25)


def test_facts_of_tool_inputs_weigh_as_repeated_ones() -> None:
    span = "ran the tool on helper_fn; also saw other_fn"
    plain = judge(span, "helper_fn")
    promoted = judge(span, "helper_fn", tool_inputs=['{"name": "helper_fn"}'])
    assert plain.score == pytest.approx(0.5)
    assert promoted.score == pytest.approx(1 / 1.25)
    assert judge(span, "helper_fn", tool_inputs='{"path": "src/x.py"}').total == 3


def test_missing_lists_the_heaviest_first_and_at_most_20() -> None:
    names = " ".join(f"name_{k}" for k in range(30))
    quality = judge(f"{names} then src/late.py", "nothing kept here")
    assert quality.missing[0] == "src/late.py"
    assert len(quality.missing) == 20 and quality.total == 31


@pytest.mark.parametrize(
    ("span", "summary", "kept"),
    [
        ("use my_func", "my_func2 was used", False),  # not a part of a longer word
        ("use my_func", "used my_func.", True),
        ("use compute_total", "used Compute_Total", False),  # case-sensitive
        ("size 8192", "size 81920", False),  # numbers as whole tokens
        ("size 8192", "size 8,192 bytes", True),
        ("size 8,192", "size 8192.", True),
        ("took 5ms", "took 5 ms", True),
        ("flag 0x1F", "flag 0x1f", True),
        ("call self.compute_total", "compute_total was called", True),  # by its last part
        ("call os.path.join", "join was called", False),
        ("file C:\\dir\\f.py", 'json "C:\\\\dir\\\\f.py"', True),
        ("ran `pytest  -q   tests/`", "ran pytest -q tests/ again", True),
        (
            "TypeError: Unsupported Operand types here",
            "TypeError: unsupported operand types here!",
            True,
        ),
        (
            "TypeError: Unsupported Operand types here",
            "TypeError: operand types unsupported",
            False,
        ),
        ("Process exited with code 137", "the build exited with status 137", True),
        ("Process exited with code 137", "137 tests", False),
        ("edit src/a.py", "edited src/a.pyc", False),
        ("edit src/a.py", "edited ./src/a.py", True),
    ],
)
def test_what_keeps_a_fact(span: str, summary: str, kept: bool) -> None:
    quality = judge(span, summary)
    assert quality.total >= 1
    assert (quality.kept == quality.total) is kept, quality


# ---------------------------------------------------------------------------- sanity


LONG_SPAN = (TRACEBACK + SHELL + JSON_TEXT + CODE) * 3


@pytest.mark.parametrize(
    ("span", "summary", "options", "reason"),
    [
        (SPAN, "", {}, "empty"),
        (SPAN, " \n\t ", {}, "empty"),
        ("no facts here at all", "", {}, "empty"),
        (SPAN, "src/a.py src/b.py compute_total compute_tax", {"max_chars": 20}, "too_long"),
        (LONG_SPAN, LONG_SPAN, {}, "copy"),
        (LONG_SPAN, "Summary:\n" + LONG_SPAN + "\nThat is all.", {}, "copy"),
        (LONG_SPAN, LONG_SPAN.upper().replace("\n", " "), {}, "copy"),
    ],
)
def test_sanity_checks_score_zero(
    span: str, summary: str, options: dict[str, int], reason: str
) -> None:
    quality = judge(span, summary, **options)
    assert quality.score == 0.0 and quality.reason == reason


def test_within_max_chars_is_judged() -> None:
    summary = "src/a.py src/b.py compute_total compute_tax"
    assert judge(SPAN, summary, max_chars=len(summary)).score == 1.0


def test_a_span_without_facts_scores_one() -> None:
    assert judge(PROSE, "They chatted.") == Quality(1.0, 0, 0, ())


def test_a_long_summary_that_is_no_copy_is_judged() -> None:
    facts = sorted(salient_facts(LONG_SPAN))
    summary = "Summary of the conversation so far:\n" + "\n".join(f"- {f}" for f in facts)
    quality = judge(LONG_SPAN, summary)
    assert (quality.score, quality.reason) == (1.0, "")


def test_the_first_half_of_a_span_is_no_copy() -> None:
    half = LONG_SPAN[: len(LONG_SPAN) // 2]
    assert judge(LONG_SPAN, half).reason == ""


# ---------------------------------------------------------------------------- speed


def test_a_50k_character_span_is_judged_fast() -> None:
    rng = random.Random(7)
    pieces = [TRACEBACK, SHELL, JSON_TEXT, CODE, PROSE]
    words = [f"name_{k}" for k in range(2000)] + PROSE.split()
    text = ""
    while len(text) < 50_000:
        text += rng.choice(pieces) + " ".join(rng.choices(words, k=80)) + "\n"
    text = text[:50_000]
    summary = "Summary: " + ", ".join(sorted(salient_facts(text))[:300])
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        judge(text, summary, max_chars=20_000)
        best = min(best, time.perf_counter() - started)
    assert best < 0.040  # 10-15 ms on a loaded 2-core machine; generous for CI


# ---------------------------------------------------------------------------- properties

_NAME = st.from_regex(r"[a-z]{2,6}", fullmatch=True)
_FILLER = st.sampled_from("then and we saw the a it so but later again there".split())
_FACT = st.one_of(
    st.builds(lambda a, b: f"{a}_{b}", _NAME, _NAME),
    st.builds(lambda a, b: a + b.capitalize(), _NAME, _NAME),
    st.builds(lambda a, b: f"{a}.{b}()", _NAME, _NAME),
    st.builds(
        lambda a, b, ext: f"{a}/{b}.{ext}", _NAME, _NAME, st.sampled_from(["py", "md", "json"])
    ),
    st.builds(lambda a, b: f"/{a}/{b}", _NAME, _NAME),
    st.builds(lambda a, b: f"https://{a}.example.com/{b}", _NAME, _NAME),
    st.integers(100, 10**7).map(str),
    st.floats(0.5, 999, allow_nan=False).map(lambda x: f"{x:.2f}"),
    st.sampled_from(["ValueError", "KeyError", "ENOENT", "exit code 3"]),
    st.builds(lambda a, b: f"\nTypeError: {a} {b} failed\n", _NAME, _NAME),
    st.builds(lambda a, b: f"`{a} -q {b}`", _NAME, _NAME),
)
_SPAN = st.lists(st.tuples(_FACT, _FILLER), min_size=1, max_size=30).map(
    lambda pairs: " ".join(f"{fact} {filler}" for fact, filler in pairs)
)


@settings(max_examples=50, deadline=None)
@given(_SPAN)
def test_a_summary_listing_every_fact_scores_one(span: str) -> None:
    facts = salient_facts(span)
    assert facts
    summary = "Summary of the conversation so far:\n" + "\n".join(sorted(facts))
    assert judge(span, summary).score == 1.0
    assert judge(span, "").score == 0.0


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=400))
def test_any_text_is_judged_consistently(text: str) -> None:
    facts = salient_facts(text)
    summary = "Summary:\n" + "\n".join(sorted(facts))
    quality = judge(text, summary)
    assert quality.score == 1.0 or quality.reason == "copy"
    assert quality.total == len(facts)
    if facts:
        assert judge(text, "").score == 0.0
