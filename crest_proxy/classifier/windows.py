"""Tokenize texts without truncation and cut long ones into overlapping model-sized windows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SpecialTokens:
    """The ids that wrap a window (``<s>`` … ``</s>`` for XLM-R, ``[CLS]`` … ``[SEP]`` for BERT) and pad."""

    bos_id: int
    eos_id: int
    pad_id: int


@dataclass(frozen=True)
class WindowShape:
    """How long a window is (incl. the two special tokens) and how many tokens neighbours share."""

    tokens: int
    overlap: int

    @property
    def content(self) -> int:
        """Content tokens per window (the two special tokens excluded)."""
        return self.tokens - 2

    @property
    def stride(self) -> int:
        """How far consecutive windows' starts are apart."""
        return self.content - self.overlap


def split_windows(ids: Sequence[int], shape: WindowShape, specials: SpecialTokens) -> list[list[int]]:
    """Cut one text's content ids into windows covering all of it, each wrapped in bos … eos."""
    windows = []
    start = 0
    while True:
        windows.append([specials.bos_id, *ids[start : start + shape.content], specials.eos_id])
        if start + shape.content >= len(ids):
            return windows
        start += shape.stride


class TokenEncoder:
    """A fast (Rust) tokenizer with truncation and padding switched off, plus its special ids."""

    def __init__(self, tokenizer: Any, specials: SpecialTokens) -> None:
        self._tokenizer = tokenizer
        self.specials = specials

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Content token ids per text, without special tokens and never truncated."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.ids) for e in encodings]

    def windows(self, texts: Sequence[str], shape: WindowShape) -> list[list[list[int]]]:
        """The windows of every text (a list of windows per text)."""
        return [split_windows(ids, shape, self.specials) for ids in self.encode(texts)]


def load_encoder(tokenizer_json: Path, specials: SpecialTokens) -> TokenEncoder:
    """Load ``tokenizer.json`` with the ``tokenizers`` library alone (no transformers import)."""
    from tokenizers import Tokenizer

    return TokenEncoder(_untruncated(Tokenizer.from_file(str(tokenizer_json))), specials)


def encoder_from_transformers(tokenizer: Any) -> TokenEncoder:
    """Wrap a transformers *fast* tokenizer's backend; its wrapping tokens become the window bounds."""
    backend = _untruncated(tokenizer.backend_tokenizer)
    return TokenEncoder(backend, special_tokens_of(tokenizer))


def special_tokens_of(tokenizer: Any) -> SpecialTokens:
    """The wrapping and padding ids of a transformers tokenizer (cls/sep, else bos/eos)."""
    bos = _first_id(tokenizer.cls_token_id, tokenizer.bos_token_id)
    eos = _first_id(tokenizer.sep_token_id, tokenizer.eos_token_id)
    pad = _first_id(tokenizer.pad_token_id, eos)
    if bos is None or eos is None or pad is None:
        raise ValueError("tokenizer has no cls/bos and sep/eos tokens to wrap windows with")
    return SpecialTokens(bos_id=bos, eos_id=eos, pad_id=pad)


def _first_id(*candidates: int | None) -> int | None:
    return next((c for c in candidates if c is not None), None)


def _untruncated(tokenizer: Any) -> Any:
    # A tokenizer.json may carry truncation/padding settings; windowing needs every token, unpadded.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer
