"""Tokenizers behind one small interface: a character map for the tiny models, HF's for HF models."""

from __future__ import annotations

import string
from typing import Any, Protocol

from policylab.core.errors import PolicylabError


class TokenizerError(PolicylabError):
    """Text that the tokenizer cannot represent."""


class Tokenizer(Protocol):
    vocab_size: int
    pad_id: int
    bos_id: int | None
    eos_id: int

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: list[int]) -> str: ...


# Printable ASCII without the control whitespace: digits, letters, punctuation and the space.
DEFAULT_CHARSET = string.digits + string.ascii_letters + string.punctuation + " "


class CharTokenizer:
    """One id per character; ids 0, 1, 2 are PAD, BOS and EOS. Unknown characters are refused."""

    specials = ("<pad>", "<bos>", "<eos>")

    def __init__(self, charset: str = DEFAULT_CHARSET):
        if len(set(charset)) != len(charset):
            raise TokenizerError("charset has repeated characters")
        self.charset = charset
        self.pad_id, self.bos_id, self.eos_id = 0, 1, 2
        self._to_id = {c: i + len(self.specials) for i, c in enumerate(charset)}
        self._to_char = {i: c for c, i in self._to_id.items()}
        self.vocab_size = len(charset) + len(self.specials)

    def encode(self, text: str) -> list[int]:
        try:
            return [self._to_id[c] for c in text]
        except KeyError:
            pos = next(i for i, c in enumerate(text) if c not in self._to_id)
            raise TokenizerError(f"character {text[pos]!r} at position {pos} of {text[:40]!r} is not in the "
                                 f"tokenizer's charset ({len(self.charset)} characters: printable ASCII and space)"
                                 ) from None

    def decode(self, ids: list[int]) -> str:
        """Characters up to the first EOS; PAD and BOS are skipped."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in self._to_char:
                out.append(self._to_char[i])
        return "".join(out)

    def state(self) -> dict[str, Any]:
        return {"kind": "char", "charset": self.charset}


class HFTokenizer:
    """Adapter for a Hugging Face tokenizer: no special tokens added inside, BOS prepended by the caller."""

    def __init__(self, tokenizer: Any):
        self.tok = tokenizer
        if tokenizer.eos_token_id is None:
            raise TokenizerError("the Hugging Face tokenizer has no eos_token; set one before training")
        self.eos_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id) if tokenizer.pad_token_id is not None else self.eos_id
        self.bos_id = int(tokenizer.bos_token_id) if tokenizer.bos_token_id is not None else None
        self.vocab_size = len(tokenizer)

    def encode(self, text: str) -> list[int]:
        ids = self.tok.encode(text, add_special_tokens=False)
        unk = getattr(self.tok, "unk_token_id", None)
        if unk is not None and unk in ids:
            pos = ids.index(unk)
            raise TokenizerError(f"the Hugging Face tokenizer maps part of {text[:40]!r} to its unknown token "
                                 f"(token {pos})")
        return list(ids)

    def decode(self, ids: list[int]) -> str:
        ids = [int(i) for i in ids]
        if self.eos_id in ids:
            ids = ids[:ids.index(self.eos_id)]
        return self.tok.decode(ids, skip_special_tokens=True)

    def state(self) -> dict[str, Any]:
        return {"kind": "hf", "name_or_path": getattr(self.tok, "name_or_path", "")}


def prompt_ids(tokenizer: Tokenizer, text: str) -> list[int]:
    """The model's input for a prompt: BOS (when the tokenizer has one) followed by the text."""
    ids = tokenizer.encode(text)
    return ([tokenizer.bos_id] if tokenizer.bos_id is not None else []) + ids
