"""Streaming token ids -> text, one token at a time, with stop strings.

Two stages, each holding text back for its own reason:

1. UTF-8: a byte-level token can end inside a character (an emoji is often 2-4 tokens). Like
   vLLM, we decode a small window `ids[prefix:]` and compare it with the already-emitted
   `ids[prefix:read]`; text ending in U+FFFD is held until a later token completes it. The window
   restarts at each emission, so a token costs O(window), not O(output).
2. Stop strings: text that could still turn into the start of a stop string is held until it
   either completes one (generation stops; the stop string and everything after it is dropped)
   or cannot (it is emitted).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

# Prompt tokens kept as left context for the first decode, as vLLM does: some decoders (e.g.
# SentencePiece's leading space) render a token differently at the start of a sequence.
_PROMPT_CONTEXT_TOKENS = 5


class TokenDecoder(Protocol):
    """What the detokenizer needs from a tokenizer."""

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...


class IncrementalDetokenizer:
    """Turns a stream of generated token ids into text chunks, cutting at stop strings.

    `push(token_id)` returns only newly completed text; `flush()` returns what is still held
    when generation ends for another reason (EOS, length). After a stop string completes,
    `stopped` is True, `stop_reason` is that string, and later pushes return "".
    """

    def __init__(
        self,
        tokenizer: TokenDecoder,
        prompt_ids: Sequence[int] = (),
        skip_special_tokens: bool = True,
        stop: Sequence[str] = (),
    ) -> None:
        if any(not s for s in stop):
            raise ValueError(f"stop={list(stop)!r} contains an empty string; remove it")
        self._tokenizer = tokenizer
        self._skip_special_tokens = skip_special_tokens
        self._stop = tuple(stop)
        # ids[:read] has been emitted (it is left context); ids[read:] is pending.
        self._ids: list[int] = list(prompt_ids[-_PROMPT_CONTEXT_TOKENS:])
        self._prefix_text = self._decode(self._ids)
        if self._prefix_text.endswith("\ufffd"):  # a prompt cut mid-character: no context
            self._ids, self._prefix_text = [], ""
        self._read = len(self._ids)
        # Decoded text held back because it may be the start of a stop string.
        self._held = ""
        self.stopped = False
        self.stop_reason: str | None = None

    def push(self, token_id: int) -> str:
        """Add one generated token; return the text it completes (possibly "")."""
        if self.stopped:
            return ""
        self._ids.append(token_id)
        text = self._decode(self._ids)
        if len(text) <= len(self._prefix_text) or text.endswith("\ufffd"):
            return ""  # nothing new, or a character still incomplete
        # Emit and restart the window at the last emission point, so it stays a few tokens long.
        new_text = text[len(self._prefix_text) :]
        del self._ids[: self._read]
        self._read = len(self._ids)
        self._prefix_text = self._decode(self._ids)
        return self._release(new_text, final=False)

    def flush(self) -> str:
        """Return all held text (an incomplete character decodes to U+FFFD); call once at end."""
        if self.stopped:
            return ""
        tail = self._decode(self._ids)[len(self._prefix_text) :]
        self._ids.clear()
        self._read = 0
        self._prefix_text = ""
        return self._release(tail, final=True)

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(ids, skip_special_tokens=self._skip_special_tokens)

    def _release(self, new_text: str, *, final: bool) -> str:
        """Pass `new_text` through the stop-string filter; return what is safe to emit."""
        text = self._held + new_text
        match = _first_stop(text, self._stop)
        if match is not None:
            start, stop = match
            self.stopped, self.stop_reason, self._held = True, stop, ""
            return text[:start]
        keep = 0 if final else _stop_prefix_length(text, self._stop)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]


def _first_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """(start, stop) of the stop string that completes first in `text`, or None.

    "Completes first" (smallest end, then longest) makes the result independent of how the text
    was chunked: streaming one character at a time would find the same one.
    """
    best: tuple[int, int, str] | None = None  # (end, start, stop)
    for stop in stops:
        start = text.find(stop)
        if start >= 0 and (best is None or (start + len(stop), start) < best[:2]):
            best = (start + len(stop), start, stop)
    return None if best is None else (best[1], best[2])


def _stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest
