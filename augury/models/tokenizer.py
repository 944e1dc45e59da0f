"""Text <-> token ids for byte-level BPE models, and chat templates.

The tokenizer is built with the `tokenizers` library, either from GGUF metadata (vocabulary,
merges and token types under llama.cpp's key names) or from a Hugging Face directory
(`tokenizer.json` + `tokenizer_config.json`). Chat templates are rendered in a sandboxed Jinja
environment set up the way transformers sets it up, so the same template gives the same prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import jinja2
import jinja2.ext
import jinja2.sandbox
import tokenizers
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors

# llama.cpp's token types (`tokenizer.ggml.token_type`).
_TOKEN_TYPE_CONTROL = 3
_TOKEN_TYPE_USER_DEFINED = 4

# Control tokens that end a turn: generation stops at any of these, besides the declared EOS.
_END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "</s>",
    "<|end|>",
    "<end_of_turn>",
)

_T = TypeVar("_T")

_CHAT_ROLES = frozenset({"system", "user", "assistant", "tool"})

# `tokenizer.ggml.pre` values whose split is GPT-2's regex (the ByteLevel default) ...
_GPT2_SPLIT_PRE = frozenset({"default", "gpt2", "mpt", "olmo", "jais", "trillion"})
# ... and those that first isolate every digit (`\p{N}`), then apply GPT-2's regex. SmolLM2 is
# one: its tokenizer.json chains Digits(individual_digits=True) before ByteLevel.
_DIGITS_THEN_GPT2_PRE = frozenset(
    {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
)
# Vocabularies split by a regex of their own (the patterns from the models' tokenizer.json).
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_REGEX_SPLIT_PRE = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
}
SUPPORTED_PRE_TOKENIZERS = sorted(_GPT2_SPLIT_PRE | _DIGITS_THEN_GPT2_PRE | set(_REGEX_SPLIT_PRE))


class Tokenizer:
    """A byte-level BPE tokenizer with its special tokens and chat template.

    Build it with `from_gguf_metadata` or `from_dir`; the constructor takes a ready
    `tokenizers.Tokenizer` whose post-processor already adds BOS/EOS as the model wants.
    """

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        unk_token: str | None = None,
        pad_token: str | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.backend = backend
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.unk_token = unk_token
        self.pad_token = pad_token
        self.chat_template = chat_template
        self._special_tokens = {
            token.content for token in backend.get_added_tokens_decoder().values() if token.special
        }
        self.bos_token_id = None if bos_token is None else self._require_id(bos_token, "bos_token")
        end_tokens = [name for name in _END_OF_TURN_TOKENS if self.is_special(name)]
        if eos_token is not None:
            end_tokens.append(eos_token)
        self.eos_token_ids = frozenset(self._require_id(t, "eos_token") for t in end_tokens)
        """Ids that end generation: the declared EOS plus the end-of-turn control tokens."""

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_gguf_metadata(cls, metadata: Mapping[str, object]) -> Tokenizer:
        """Build the tokenizer a GGUF file describes (only `tokenizer.ggml.model` "gpt2" so far)."""
        kind = _get(metadata, "tokenizer.ggml.model", str)
        if kind != "gpt2":
            raise ValueError(
                f"tokenizer.ggml.model={kind!r} is not supported; only 'gpt2' (byte-level BPE) is. "
                "Use a model with a byte-level BPE vocabulary, or load it from a Hugging Face dir."
            )
        tokens = _get(metadata, "tokenizer.ggml.tokens", list)
        merges = _get(metadata, "tokenizer.ggml.merges", list)
        token_types = metadata.get("tokenizer.ggml.token_type") or [1] * len(tokens)
        if not isinstance(token_types, list) or len(token_types) != len(tokens):
            raise ValueError("tokenizer.ggml.token_type must list one type per token")

        backend = tokenizers.Tokenizer(
            models.BPE(
                vocab={tok: i for i, tok in enumerate(_byte_level_spelling(tokens))},
                merges=[tuple(m.split(" ", 1)) for m in merges],
                fuse_unk=False,
                byte_fallback=False,
            )
        )
        pre = metadata.get("tokenizer.ggml.pre", "default")
        backend.pre_tokenizer = _pre_tokenizer(str(pre))
        backend.decoder = decoders.ByteLevel()
        _add_gguf_added_tokens(backend, tokens, token_types)

        def token_of(key: str) -> str | None:
            index = metadata.get(f"tokenizer.ggml.{key}")
            if index is None:
                return None
            if not isinstance(index, int) or not 0 <= index < len(tokens):
                raise ValueError(f"tokenizer.ggml.{key}={index!r} is not a token id")
            return str(tokens[index])

        bos, eos = token_of("bos_token_id"), token_of("eos_token_id")
        # transformers builds GPT2Tokenizer for "gpt2" files: BOS only when the file asks for it.
        add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", False))
        add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
        backend.post_processor = _template_processor(
            backend, bos if add_bos else None, eos if add_eos else None
        )
        template = metadata.get("tokenizer.chat_template")
        return cls(
            backend,
            bos_token=bos,
            eos_token=eos,
            unk_token=token_of("unknown_token_id"),
            pad_token=token_of("padding_token_id"),
            chat_template=template if isinstance(template, str) else None,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> Tokenizer:
        """Load `tokenizer.json` and `tokenizer_config.json` (Hugging Face layout) from `path`."""
        directory = Path(path)
        tokenizer_file = directory / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"{tokenizer_file} is missing; a tokenizer dir needs it")
        backend = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        config_file = directory / "tokenizer_config.json"
        config: dict[str, Any] = {}
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: [{"name": ..., "template": ...}]
            named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
            template = named.get("default")
        jinja_file = directory / "chat_template.jinja"  # newer transformers save it separately
        if template is None and jinja_file.is_file():
            template = jinja_file.read_text(encoding="utf-8")
        return cls(
            backend,
            bos_token=_config_token(config, "bos_token"),
            eos_token=_config_token(config, "eos_token"),
            unk_token=_config_token(config, "unk_token"),
            pad_token=_config_token(config, "pad_token"),
            chat_template=template if isinstance(template, str) else None,
        )

    def save(self, path: str | Path) -> None:
        """Write `tokenizer.json` and `tokenizer_config.json` into the directory `path`."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(directory / "tokenizer.json"))
        probe = self.backend.encode("", add_special_tokens=True).ids
        config: dict[str, object] = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "add_bos_token": self.bos_token_id is not None and probe[:1] == [self.bos_token_id],
            "add_eos_token": self.eos_token is not None
            and probe[-1:] == [self.token_to_id(self.eos_token)],
            "bos_token": self.bos_token,
            "eos_token": self.eos_token,
            "unk_token": self.unk_token,
            "pad_token": self.pad_token,
            "clean_up_tokenization_spaces": False,
        }
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        text = json.dumps(config, indent=2, ensure_ascii=False) + "\n"
        (directory / "tokenizer_config.json").write_text(text, encoding="utf-8")

    # -- encoding -----------------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; special tokens written in the text stay whole.

        `add_special_tokens` adds BOS/EOS only where the model asks for them (this GGUF does not).
        """
        try:
            ids: list[int] = self.backend.encode(text, add_special_tokens=add_special_tokens).ids
        except TypeError as exc:  # tokenizers refuses a str that is not valid Unicode
            if not isinstance(text, str):
                raise
            raise ValueError(
                "text contains a lone surrogate (invalid Unicode); send valid UTF-8 text"
            ) from exc
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; invalid or incomplete UTF-8 decodes to U+FFFD."""
        text: str = self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)
        return text

    @property
    def vocab_size(self) -> int:
        """Number of ids, added tokens included."""
        size: int = self.backend.get_vocab_size(with_added_tokens=True)
        return size

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of every special (control) token, sorted."""
        return sorted(
            i for i, token in self.backend.get_added_tokens_decoder().items() if token.special
        )

    def id_to_token(self, index: int) -> str | None:
        """The vocabulary string of `index` (byte-level spelling), or None if out of range."""
        token: str | None = self.backend.id_to_token(index)
        return token

    def token_to_id(self, token: str) -> int | None:
        """The id of the vocabulary string `token`, or None if it is not one."""
        index: int | None = self.backend.token_to_id(token)
        return index

    def is_special(self, token: str) -> bool:
        """Whether `token` is a special (control) token of this vocabulary."""
        return token in self._special_tokens

    # -- chat ---------------------------------------------------------------------------------

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True
    ) -> str:
        """Render `messages` into a prompt with the model's chat template.

        Raises ValueError for a malformed message, a missing or malformed template, or a template
        that raises (its message included).
        """
        _validate_messages(messages)
        try:
            return self._compiled_template.render(
                messages=[dict(m) for m in messages],
                add_generation_prompt=add_generation_prompt,
                tools=None,
                documents=None,
                bos_token=self.bos_token or "",
                eos_token=self.eos_token or "",
                unk_token=self.unk_token or "",
                pad_token=self.pad_token or "",
            )
        except jinja2.TemplateError as exc:
            raise ValueError(f"the chat template failed: {exc}") from exc

    @cached_property
    def _compiled_template(self) -> jinja2.Template:
        if self.chat_template is None:
            raise ValueError(
                "this model has no chat template; send a plain completion prompt instead"
            )
        return _compile_template(self.chat_template)

    # -- helpers ------------------------------------------------------------------------------

    def _require_id(self, token: str, role: str) -> int:
        index = self.token_to_id(token)
        if index is None:
            raise ValueError(f"{role} {token!r} is not in the vocabulary")
        return index


def _get(metadata: Mapping[str, object], key: str, kind: type[_T]) -> _T:
    """`metadata[key]`, or a ValueError naming the missing or mistyped key."""
    if key not in metadata:
        raise ValueError(f"GGUF metadata has no {key!r}; the file lacks a tokenizer")
    value = metadata[key]
    if not isinstance(value, kind):
        raise ValueError(f"GGUF metadata {key!r} is {type(value).__name__}, not {kind.__name__}")
    return value


def _byte_level_spelling(tokens: Sequence[object]) -> list[str]:
    """Tokens in the byte-to-unicode alphabet; a token stored as raw text gets respelled."""
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    byte_to_char = _bytes_to_unicode()
    spelled = []
    for token in tokens:
        text = str(token)
        if not set(text) <= alphabet:
            text = "".join(byte_to_char[b] for b in text.encode("utf-8"))
        spelled.append(text)
    return spelled


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _pre_tokenizer(pre: str) -> pre_tokenizers.PreTokenizer:
    """The split `tokenizer.ggml.pre` names, as llama.cpp and the original tokenizer.json do."""
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _GPT2_SPLIT_PRE:
        return byte_level
    if pre in _DIGITS_THEN_GPT2_PRE:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    if pre in _REGEX_SPLIT_PRE:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_REGEX_SPLIT_PRE[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    raise ValueError(
        f"tokenizer.ggml.pre={pre!r} is not supported; supported: {SUPPORTED_PRE_TOKENIZERS}"
    )


def _add_gguf_added_tokens(
    backend: tokenizers.Tokenizer, tokens: Sequence[object], token_types: Sequence[object]
) -> None:
    """Register control tokens as special and user-defined ones as added, so neither is split.

    A token whose text is not in the byte alphabet would get a new id instead of its own; such
    a token is a converter mislabel and is left alone (as transformers does).
    """
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    special, added = [], []
    for token, kind in zip(tokens, token_types, strict=True):
        text = str(token)
        if not set(text) <= alphabet:
            continue
        if kind == _TOKEN_TYPE_CONTROL:
            special.append(AddedToken(text, special=True, normalized=False))
        elif kind == _TOKEN_TYPE_USER_DEFINED:
            added.append(AddedToken(text, special=False, normalized=False))
    backend.add_special_tokens(special)
    backend.add_tokens(added)


def _template_processor(
    backend: tokenizers.Tokenizer, bos: str | None, eos: str | None
) -> processors.TemplateProcessing:
    """A post-processor that wraps a sequence in BOS/EOS where given."""
    single = " ".join(t for t in (bos and f"{bos}:0", "$A:0", eos and f"{eos}:0") if t)
    pair = " ".join(t for t in (single, bos and f"{bos}:1", "$B:1", eos and f"{eos}:1") if t)
    specials = [(t, backend.token_to_id(t)) for t in (bos, eos) if t is not None]
    return processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=sorted(set(specials))
    )


def _config_token(config: Mapping[str, Any], key: str) -> str | None:
    """A special token from tokenizer_config.json: a string or a serialized AddedToken."""
    value = config.get(key)
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _validate_messages(messages: Sequence[Mapping[str, str]]) -> None:
    if not messages:
        raise ValueError("messages is empty; send at least one message")
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ValueError(f"messages[{index}] is {type(message).__name__}, not an object")
        role = message.get("role")
        if role not in _CHAT_ROLES:
            raise ValueError(
                f"messages[{index}].role is {role!r}; use one of {sorted(_CHAT_ROLES)}"
            )
        content = message.get("content")
        if not isinstance(content, str):
            raise ValueError(f"messages[{index}].content is {type(content).__name__}, not a string")


def _raise_exception(message: str) -> NoReturn:
    raise jinja2.TemplateError(message)


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _tojson(value: object, indent: int | None = None) -> str:
    # transformers' override: keep non-ASCII text readable, as the templates expect.
    return json.dumps(value, ensure_ascii=False, indent=indent)


class _ChatTemplateSandbox(jinja2.sandbox.ImmutableSandboxedEnvironment):
    """transformers' sandbox, but an unsafe attribute raises at once instead of rendering ""."""

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe"
        )


def _compile_template(source: str) -> jinja2.Template:
    """Compile a chat template in the sandbox transformers uses (no attribute escapes)."""
    env = _ChatTemplateSandbox(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"the chat template is malformed: {exc}") from exc
