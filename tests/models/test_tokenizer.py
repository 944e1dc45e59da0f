"""Tokenizer and chat template, checked against transformers (and llama.cpp where recorded).

The reference ids live in tests/fixtures/tokenizer_reference.json, written by
tests/fixtures/make_tokenizer_reference.py; the `slow` tests load transformers live.
"""

from __future__ import annotations

import itertools
import json
import re
import unicodedata
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2.exceptions
import pytest

from augury.models.default import default_model_path
from augury.models.loader.gguf import read_gguf_metadata
from augury.models.tokenizer import Tokenizer
from tests.fixtures.make_tokenizer_reference import (
    CONVERSATIONS,
    FIXTURE,
    HAND_WRITTEN,
    make_strings,
    transformers_tokenizers,
)


@cache
def default_metadata() -> dict[str, object]:
    """Metadata of the default GGUF (read once per test session: it takes a few seconds)."""
    return read_gguf_metadata(default_model_path())


@cache
def default_tokenizer() -> Tokenizer:
    """The default model's tokenizer, shared by the tests that need a real vocabulary."""
    return Tokenizer.from_gguf_metadata(default_metadata())


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return default_tokenizer()


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return data


def tiny_metadata(**overrides: object) -> dict[str, object]:
    """GGUF metadata of a toy byte-level vocabulary: 256 bytes, 3 merges, 2 control tokens."""
    from tokenizers.pre_tokenizers import ByteLevel

    tokens = ["<s>", "</s>", *sorted(ByteLevel.alphabet()), "he", "ll", "hell"]
    metadata: dict[str, object] = {
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": "gpt2",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": [3, 3] + [1] * (len(tokens) - 2),
        "tokenizer.ggml.merges": ["h e", "l l", "he ll"],
        "tokenizer.ggml.bos_token_id": 0,
        "tokenizer.ggml.eos_token_id": 1,
        "tokenizer.chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}",
    }
    metadata.update(overrides)
    return metadata


def whitespace_before_number(text: str) -> bool:
    """Where transformers' GGUF tokenizer and SmolLM2's own split can differ (see the script)."""
    return any(
        a.isspace() and unicodedata.category(b).startswith("N") for a, b in itertools.pairwise(text)
    )


# -- ids against the references ---------------------------------------------------------------


def test_fixture_is_up_to_date(reference: dict[str, Any]) -> None:
    assert reference["model"] == default_model_path().name
    assert [case["text"] for case in reference["cases"]] == make_strings()
    assert len(reference["cases"]) >= 400


def test_ids_match_reference(tok: Tokenizer, reference: dict[str, Any]) -> None:
    wrong = [
        (case["text"], tok.encode(case["text"]), case["ids"])
        for case in reference["cases"]
        if tok.encode(case["text"]) != case["ids"]
    ]
    assert not wrong, f"{len(wrong)} strings differ, e.g. {wrong[:3]}"


def test_ids_match_llama_cpp_where_recorded(tok: Tokenizer, reference: dict[str, Any]) -> None:
    cases = [case for case in reference["cases"] if "llama_cpp_ids" in case]
    if not cases:
        pytest.skip("fixture made without llama-cpp-python")
    wrong = [c["text"] for c in cases if tok.encode(c["text"]) != c["llama_cpp_ids"]]
    assert not wrong, f"{len(wrong)} strings differ from llama.cpp, e.g. {wrong[:3]}"


def test_transformers_gguf_differs_only_on_whitespace_before_numbers(
    tok: Tokenizer, reference: dict[str, Any]
) -> None:
    differing = [
        case["text"]
        for case in reference["cases"]
        if tok.encode(case["text"]) != case["transformers_gguf_ids"]
    ]
    assert differing, "transformers now splits digits like SmolLM2: drop the fixture's patch"
    assert all(whitespace_before_number(text) for text in differing), differing


def test_special_tokens_are_never_split(tok: Tokenizer) -> None:
    ids = tok.encode("a<|im_start|>user\nhi<|im_end|><|endoftext|>")
    assert ids[1] == 1 and ids[-2:] == [2, 0]
    assert tok.encode("<|im_start") != [1]  # a partial one is ordinary text


def test_no_bos_for_this_gguf(tok: Tokenizer, reference: dict[str, Any]) -> None:
    # The file says add_bos_token=False; transformers (the reference ids) adds none either.
    assert default_metadata()["tokenizer.ggml.add_bos_token"] is False
    assert tok.encode("Hello", add_special_tokens=True) == tok.encode("Hello", False)
    assert tok.encode("") == []


def test_invalid_unicode_is_a_value_error(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("a\ud800b")


def test_special_token_ids(tok: Tokenizer) -> None:
    assert tok.vocab_size == 49152
    assert tok.bos_token_id == 1 and tok.bos_token == "<|im_start|>"
    assert tok.eos_token == "<|im_end|>"
    assert tok.eos_token_ids == frozenset({0, 2})  # <|im_end|>, <|endoftext|>
    assert tok.all_special_ids == list(range(17))
    assert tok.token_to_id("<|im_end|>") == 2
    assert tok.id_to_token(2) == "<|im_end|>"
    assert tok.token_to_id("Ġthe") is not None
    assert tok.token_to_id("not a token") is None


# -- decoding ---------------------------------------------------------------------------------


def test_decode_round_trips(tok: Tokenizer) -> None:
    for text in make_strings(count=100):
        assert tok.decode(tok.encode(text), skip_special_tokens=False) == text


def test_decode_skips_special_tokens(tok: Tokenizer) -> None:
    text = "<|im_start|>user\nHi 👋<|im_end|>\n"
    assert tok.decode(tok.encode(text)) == "user\nHi 👋\n"


def test_decode_of_a_split_character_is_replacement(tok: Tokenizer) -> None:
    ids = tok.encode("😀")
    assert len(ids) > 1
    assert tok.decode(ids[:1]).endswith("\ufffd")


# -- construction and files -------------------------------------------------------------------


def test_add_bos_token_from_metadata() -> None:
    with_bos = Tokenizer.from_gguf_metadata(tiny_metadata(**{"tokenizer.ggml.add_bos_token": True}))
    assert with_bos.encode("hello") == [0, *with_bos.encode("hello", add_special_tokens=False)]
    without = Tokenizer.from_gguf_metadata(tiny_metadata())
    assert without.encode("hello")[0] != 0
    assert without.id_to_token(without.encode("hello")[0]) == "hell"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("tokenizer.ggml.model", "llama", "tokenizer.ggml.model='llama'"),
        ("tokenizer.ggml.model", None, "'tokenizer.ggml.model'"),
        ("tokenizer.ggml.tokens", None, "'tokenizer.ggml.tokens'"),
        ("tokenizer.ggml.merges", None, "'tokenizer.ggml.merges'"),
        ("tokenizer.ggml.pre", "made-up", "tokenizer.ggml.pre='made-up'"),
        ("tokenizer.ggml.eos_token_id", 10**6, "tokenizer.ggml.eos_token_id"),
    ],
)
def test_bad_metadata_names_the_key(key: str, value: object, message: str) -> None:
    metadata = tiny_metadata()
    if value is None:
        del metadata[key]
    else:
        metadata[key] = value
    with pytest.raises(ValueError, match=re.escape(message)):
        Tokenizer.from_gguf_metadata(metadata)


@pytest.mark.parametrize(
    ("pre", "pieces"),
    [
        ("gpt2", ["a", "Ġ", "Ġ12345"]),
        ("smollm", ["a", "ĠĠ", "1", "2", "3", "4", "5"]),
        ("llama-bpe", ["a", "Ġ", "Ġ", "123", "45"]),
    ],
)
def test_pre_tokenizer_follows_gguf_pre(pre: str, pieces: list[str]) -> None:
    tok = Tokenizer.from_gguf_metadata(tiny_metadata(**{"tokenizer.ggml.pre": pre}))
    assert tok.backend.pre_tokenizer is not None
    split = tok.backend.pre_tokenizer.pre_tokenize_str("a  12345")
    assert [piece for piece, _ in split] == pieces


def test_save_and_from_dir_round_trip(tok: Tokenizer, tmp_path: Path) -> None:
    tok.save(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["add_bos_token"] is False and config["eos_token"] == "<|im_end|>"
    loaded = Tokenizer.from_dir(tmp_path)
    for text in HAND_WRITTEN:
        assert loaded.encode(text) == tok.encode(text)
    assert loaded.eos_token_ids == tok.eos_token_ids
    assert loaded.bos_token_id == tok.bos_token_id
    assert loaded.chat_template == tok.chat_template


def test_from_dir_reads_hf_config_variants(tmp_path: Path) -> None:
    Tokenizer.from_gguf_metadata(tiny_metadata(**{"tokenizer.ggml.add_bos_token": True})).save(
        tmp_path
    )
    config = json.loads((tmp_path / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["bos_token"] = {"content": "<s>", "special": True}  # a serialized AddedToken
    config["chat_template"] = [{"name": "default", "template": "{{ messages[0].content }}!"}]
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    loaded = Tokenizer.from_dir(tmp_path)
    assert loaded.bos_token_id == 0 and loaded.encode("he")[0] == 0
    assert loaded.apply_chat_template([{"role": "user", "content": "hi"}]) == "hi!"


def test_from_dir_without_tokenizer_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"tokenizer\.json"):
        Tokenizer.from_dir(tmp_path)


# -- chat template ----------------------------------------------------------------------------


def test_chat_template_matches_reference(tok: Tokenizer, reference: dict[str, Any]) -> None:
    assert len(reference["chats"]) == 2 * len(CONVERSATIONS)
    for chat in reference["chats"]:
        rendered = tok.apply_chat_template(
            chat["messages"], add_generation_prompt=chat["add_generation_prompt"]
        )
        assert rendered == chat["text"]


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "messages is empty"),
        (
            [{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}],
            r"messages\[1\].role",
        ),
        ([{"role": "user", "content": None}], r"messages\[0\].content"),
        ([{"role": "user"}], r"messages\[0\].content"),
        (["hello"], r"messages\[0\] is str"),
    ],
)
def test_bad_messages_name_index_and_field(
    tok: Tokenizer, messages: list[Mapping[str, str]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        tok.apply_chat_template(messages)


def with_template(template: str | None) -> Tokenizer:
    return Tokenizer.from_gguf_metadata(tiny_metadata(**{"tokenizer.chat_template": template}))


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
        "{{ raise_exception.__globals__ }}",
        "{% for m in messages %}{{ m.__class__ }}{% endfor %}",
        "{% set _ = messages.append({'role': 'user'}) %}",  # immutable sandbox
    ],
)
def test_template_cannot_escape_the_sandbox(template: str) -> None:
    with pytest.raises(ValueError, match="chat template failed") as info:
        with_template(template).apply_chat_template(HI)
    assert isinstance(info.value.__cause__, jinja2.exceptions.SecurityError)


def test_template_raise_exception_gives_its_message() -> None:
    tok = with_template(
        "{% if messages[0].role == 'user' %}{{ raise_exception('no users') }}{% endif %}"
    )
    with pytest.raises(ValueError, match="no users"):
        tok.apply_chat_template(HI)


def test_malformed_or_missing_template() -> None:
    with pytest.raises(ValueError, match="malformed"):
        with_template("{% for m in messages %}").apply_chat_template(HI)
    with pytest.raises(ValueError, match="no chat template"):
        with_template(None).apply_chat_template(HI)


def test_template_variables_and_whitespace_control() -> None:
    template = "{{ bos_token }}\n{% for m in messages %}\n  {{ m.content | tojson }}\n{% endfor %}"
    template += "{% if add_generation_prompt %}{{ eos_token }}{% endif %}"
    tok = with_template(template)
    assert tok.apply_chat_template([{"role": "user", "content": "é"}]) == '<s>\n  "é"\n</s>'
    assert tok.apply_chat_template(HI, add_generation_prompt=False) == '<s>\n  "hi"\n'


# -- live comparison with transformers --------------------------------------------------------


@pytest.fixture(scope="module")
def transformers_pair() -> tuple[Any, Any]:
    pytest.importorskip("transformers")
    return transformers_tokenizers(default_model_path())


@pytest.mark.slow
def test_live_against_transformers(tok: Tokenizer, transformers_pair: tuple[Any, Any]) -> None:
    as_is, smollm_split = transformers_pair
    strings = make_strings(seed=7, count=30)[-30:]
    for text in strings:
        ids = tok.encode(text)
        assert ids == smollm_split.encode(text), text
        if not whitespace_before_number(text):
            assert ids == as_is.encode(text), text
        assert tok.decode(ids) == as_is.decode(ids, skip_special_tokens=True), text
        assert tok.decode(ids, False) == as_is.decode(ids, skip_special_tokens=False), text
    for messages in CONVERSATIONS:
        for gen in (True, False):
            expected = as_is.apply_chat_template(
                messages, add_generation_prompt=gen, tokenize=False
            )
            assert tok.apply_chat_template(messages, add_generation_prompt=gen) == expected


@pytest.mark.slow
def test_transformers_loads_a_saved_tokenizer(tok: Tokenizer, tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok.save(tmp_path)
    loaded = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    for text in HAND_WRITTEN:
        assert loaded.encode(text) == tok.encode(text), text
    messages = CONVERSATIONS[1]
    for gen in (True, False):
        expected = loaded.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
        assert tok.apply_chat_template(messages, add_generation_prompt=gen) == expected
