"""Find which output of a sequence-classification head means "unsafe" (pure; reads no files)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crest_proxy.errors import ModelNotAvailableError

# CREST says safe/unsafe; other moderation checkpoints use these words for the flagged class.
UNSAFE_NAMES = frozenset({"unsafe", "harmful", "toxic", "toxicity", "malicious"})
SAFE_NAMES = frozenset({"safe", "benign", "harmless", "non-toxic", "non_toxic", "not_toxic", "neutral"})


@dataclass(frozen=True)
class LabelMap:
    """The model's labels, which index is unsafe, and the names to report for each decision."""

    id2label: Mapping[int, str]
    unsafe_index: int

    @property
    def unsafe_label(self) -> str:
        """The model's own name for the unsafe class."""
        return self.id2label[self.unsafe_index]

    @property
    def safe_label(self) -> str:
        """The model's name for the other class ("safe" for CREST)."""
        others = [name for idx, name in sorted(self.id2label.items()) if idx != self.unsafe_index]
        safe = [name for name in others if name.lower() in SAFE_NAMES]
        return (safe or others or ["safe"])[0]

    def label_for(self, score: float) -> str:
        """The label for P(unsafe) = ``score`` (unsafe from 0.5 up)."""
        return self.unsafe_label if score >= 0.5 else self.safe_label


def find_labels(
    id2label: Mapping[int | str, str], *, model: str, unsafe_label: str | None = None
) -> LabelMap:
    """Read ``config.id2label`` and pick the unsafe class (named by ``unsafe_label`` if given), or fail."""
    labels = {int(idx): str(name) for idx, name in id2label.items()}
    if unsafe_label is not None:
        return LabelMap(id2label=labels, unsafe_index=_chosen(labels, unsafe_label, model=model))
    unsafe = [idx for idx, name in sorted(labels.items()) if name.strip().lower() in UNSAFE_NAMES]
    if len(labels) < 2 or len(unsafe) != 1:
        raise ModelNotAvailableError(
            f"model {model!r} has no recognisable unsafe label (found {_found(labels)}); expected "
            f"exactly one of {sorted(UNSAFE_NAMES)} (case-insensitive) in config.json's id2label. If you "
            "know which output is unsafe, name it: --unsafe-label NAME|INDEX "
            "(ClassifierSettings.unsafe_label), e.g. --unsafe-label LABEL_1"
        )
    return LabelMap(id2label=labels, unsafe_index=unsafe[0])


def _chosen(labels: Mapping[int, str], wanted: str, *, model: str) -> int:
    """The index ``--unsafe-label`` names: a label (case-insensitive) first, else an index."""
    text = wanted.strip()
    by_name = [idx for idx, name in labels.items() if name.strip().lower() == text.lower()]
    if len(labels) >= 2 and len(by_name) == 1:
        return by_name[0]
    if len(labels) >= 2 and text.lstrip("-").isdigit() and int(text) in labels:
        return int(text)
    raise ModelNotAvailableError(
        f"--unsafe-label {wanted!r} names no output of model {model!r} (found {_found(labels)}); give one "
        "of those names or indexes (a model needs at least two labels)"
    )


def _found(labels: Mapping[int, str]) -> str:
    return ", ".join(f"{idx}={name!r}" for idx, name in sorted(labels.items())) or "none"
