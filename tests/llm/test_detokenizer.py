"""Incremental detokenization: streamed chunks add up to `decode(all ids)`, cut at stop strings."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augury.llm.detokenizer import IncrementalDetokenizer
from augury.models.tokenizer import Tokenizer
from tests.fixtures.make_tokenizer_reference import make_strings
from tests.models.test_tokenizer import default_tokenizer

EMOJI_AND_CJK = [
    "😀",
    "👨\u200d👩\u200d👧\u200d👦 family",
    "🏳️\u200d🌈🇯🇵👍🏽",
    "日本語のテキストです。中文文本。한국어",
    "mixed 😀 text 中文 and é\u0301",
    "\U0001f9d1\U0001f3ff\u200d\U0001f9af",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return default_tokenizer()


def stream(
    tok: Tokenizer,
    ids: Sequence[int],
    prompt_ids: Sequence[int] = (),
    skip_special_tokens: bool = True,
    stop: Sequence[str] = (),
) -> tuple[list[str], IncrementalDetokenizer]:
    """Push every id; return the chunks (the flush last) and the detokenizer."""
    detok = IncrementalDetokenizer(
        tok, prompt_ids=prompt_ids, skip_special_tokens=skip_special_tokens, stop=stop
    )
    chunks = [detok.push(i) for i in ids]
    chunks.append(detok.flush())
    return chunks, detok


def expected_stop(text: str, stops: Sequence[str]) -> tuple[str, str | None]:
    """Reference: scan one character at a time; the first stop string to complete wins."""
    for end in range(1, len(text) + 1):
        done = [s for s in stops if text[:end].endswith(s)]
        if done:
            stop = max(done, key=len)  # same end: the one starting first
            return text[: end - len(stop)], stop
    return text, None


# -- UTF-8 and concatenation ------------------------------------------------------------------


@pytest.mark.parametrize("skip_special_tokens", [True, False])
def test_chunks_concatenate_to_decode(tok: Tokenizer, skip_special_tokens: bool) -> None:
    for text in make_strings(count=150) + EMOJI_AND_CJK:
        ids = tok.encode(text)
        chunks, _ = stream(tok, ids, skip_special_tokens=skip_special_tokens)
        full = tok.decode(ids, skip_special_tokens=skip_special_tokens)
        assert "".join(chunks) == full, text
        if "\ufffd" not in full:
            assert not any("\ufffd" in chunk for chunk in chunks), (text, chunks)
            assert chunks[-1] == "", "a complete text needs no flush"


def test_split_emoji_is_held_until_complete(tok: Tokenizer) -> None:
    ids = tok.encode("a😀b")
    assert len(ids) >= 4  # the emoji alone is several byte tokens
    chunks, _ = stream(tok, ids)
    assert chunks[0] == "a"
    assert "😀" in chunks and all(c in ("", "a", "😀", "b") for c in chunks)


def test_prompt_context_does_not_leak(tok: Tokenizer) -> None:
    prompt = tok.encode("<|im_start|>user\nHi 😀<|im_end|>\n<|im_start|>assistant\n")
    ids = tok.encode("Hello! 中文 👍🏽")
    chunks, _ = stream(tok, ids, prompt_ids=prompt)
    assert "".join(chunks) == "Hello! 中文 👍🏽"


def test_prompt_cut_mid_character(tok: Tokenizer) -> None:
    ids = tok.encode("ab😀cd")
    cut = next(n for n in range(len(ids)) if tok.decode(ids[:n]).endswith("\ufffd"))
    chunks, _ = stream(tok, ids[cut:], prompt_ids=ids[:cut])
    assert "".join(chunks) == tok.decode(ids[cut:])
    assert "".join(chunks).endswith("cd")


def test_incomplete_tail_is_flushed_as_replacement(tok: Tokenizer) -> None:
    ids = tok.encode("ok😀")[:-1]  # generation stopped mid-emoji
    chunks, _ = stream(tok, ids)
    assert "".join(chunks[:-1]) == "ok"
    assert chunks[-1] == tok.decode(ids)[2:] and chunks[-1].endswith("\ufffd")


def test_decode_window_stays_small(tok: Tokenizer) -> None:
    lengths: list[int] = []

    class Counting:
        def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
            lengths.append(len(ids))
            return tok.decode(ids, skip_special_tokens)

    ids = tok.encode(" ".join(EMOJI_AND_CJK) * 40)
    assert len(ids) > 1000
    detok = IncrementalDetokenizer(Counting(), prompt_ids=ids[:100])
    text = "".join(detok.push(i) for i in ids) + detok.flush()
    assert text == tok.decode(ids)
    assert max(lengths) <= 8, "each decode should cover a few tokens, not the whole output"


# -- stop strings -----------------------------------------------------------------------------


def spans_tokens(tok: Tokenizer, ids: Sequence[int], text: str, stop: str) -> bool:
    """Whether a token boundary falls strictly inside the first `stop` in `text`."""
    start = text.index(stop)
    boundaries = {len(tok.decode(ids[:n])) for n in range(len(ids) + 1)}
    return any(start < b < start + len(stop) for b in boundaries)


@pytest.mark.parametrize(
    ("text", "stop", "before"),
    [
        ("Hello world, this is a test.", "llo wo", "He"),
        ("The answer is 42.\nUser: next", "\nUser:", "The answer is 42."),
        ("emoji a😀b stop", "😀b", "emoji a"),
        ("日本語のテキストです。", "テキス", "日本語の"),
    ],
)
def test_stop_string_spanning_tokens_cuts_exactly(
    tok: Tokenizer, text: str, stop: str, before: str
) -> None:
    ids = tok.encode(text)
    assert spans_tokens(tok, ids, text, stop)
    chunks, detok = stream(tok, ids, stop=[stop])
    assert "".join(chunks) == before
    assert detok.stopped and detok.stop_reason == stop
    assert detok.push(ids[0]) == "" and detok.flush() == ""


def test_text_that_may_start_a_stop_is_held(tok: Tokenizer) -> None:
    stop = "</answer>"
    ids = tok.encode("a < b </ans c </answer> tail")
    detok = IncrementalDetokenizer(tok, stop=[stop])
    emitted = ""
    for n, token_id in enumerate(ids, start=1):
        emitted += detok.push(token_id)
        if detok.stopped:
            break
        so_far = tok.decode(ids[:n])
        held = max((k for k in range(1, len(stop)) if so_far.endswith(stop[:k])), default=0)
        assert emitted == so_far[: len(so_far) - held]
    assert emitted == "a < b </ans c " and detok.stop_reason == stop


@pytest.mark.parametrize(
    ("stops", "before", "reason"),
    [
        (["world", "lo w"], "Hel", "lo w"),
        # Both complete within the token " world"; "o w" completes first, so it wins even
        # though "llo world" starts earlier: the same answer as a character-by-character stream.
        (["llo world", "o w"], "Hell", "o w"),
        (["o world", "o w"], "Hell", "o w"),
    ],
)
def test_first_completed_stop_wins(
    tok: Tokenizer, stops: list[str], before: str, reason: str
) -> None:
    assert tok.encode("Hello world") == tok.encode("Hello") + tok.encode(" world")
    chunks, detok = stream(tok, tok.encode("Hello world"), stop=stops)
    assert "".join(chunks) == before and detok.stop_reason == reason


def test_held_prefix_is_released_at_flush(tok: Tokenizer) -> None:
    chunks, detok = stream(tok, tok.encode("ends with </ans"), stop=["</answer>"])
    assert chunks[-1] == "</ans" and "".join(chunks) == "ends with </ans"
    assert not detok.stopped and detok.stop_reason is None


def test_empty_stop_string_is_rejected(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="empty string"):
        IncrementalDetokenizer(tok, stop=["ok", ""])


ALPHABET = st.one_of(
    st.sampled_from([*"ab \n.<>/", "😀", "👍", "\U0001f3fd", "中", "文", "é", "\u200d"]),
    st.characters(codec="utf-8", exclude_characters="\ufffd"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), text=st.text(ALPHABET, max_size=40))
def test_stream_with_random_stops_matches_reference(data: st.DataObject, text: str) -> None:
    tok = default_tokenizer()
    ids = tok.encode(text, add_special_tokens=False)
    full = tok.decode(ids)
    substrings = st.builds(
        lambda i, n: full[i : i + n], st.integers(0, len(full)), st.integers(1, 6)
    ).filter(bool)
    stop = data.draw(
        st.lists(st.one_of(substrings, st.text(ALPHABET, min_size=1, max_size=4)), max_size=3)
    )
    chunks, detok = stream(tok, ids, stop=stop)
    emitted, reason = expected_stop(full, stop)
    assert "".join(chunks) == emitted
    assert detok.stop_reason == reason and detok.stopped == (reason is not None)
    if "\ufffd" not in full:
        assert not any("\ufffd" in chunk for chunk in chunks)
