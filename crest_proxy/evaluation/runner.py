"""Score labelled samples through the proxy's own screening path: ``Guard.screen``, nothing re-implemented.

Each text goes through the same normalization, readings, windows and backend as live traffic, and gets
the threshold the policy applies in its language. The language is the sample's ``lang`` when given, else
the bundled identifier's guess (``screening.language``); the guard is told that language, so per-language
overrides in the policy apply as they would in production.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from crest_proxy.classifier.protocol import Classifier
from crest_proxy.evaluation.dataset import Sample
from crest_proxy.policy.model import Policy, primary_language
from crest_proxy.screening.guard import Guard
from crest_proxy.types import Direction

UNKNOWN = "unknown"  # the language bucket of texts the identifier was not sure about
_CONCURRENCY = 32  # screenings in flight: enough for the classifier's batcher to fill batches


class EvaluationError(RuntimeError):
    """The screening path failed on a sample (e.g. the classifier errored); the message names the line."""


@dataclass(frozen=True)
class Scored:
    """One sample after screening: its label, language, score and the policy's threshold for it."""

    line: int
    unsafe: bool
    lang: str
    score: float
    threshold: float


Progress = Callable[[int, int], None]


def language_of_samples(samples: Sequence[Sample], identify: Callable[[str], str | None] | None) -> list[str]:
    """Each sample's language: as given, else identified (``unknown`` when unsure or no identifier)."""
    out = []
    for sample in samples:
        code = sample.lang if sample.lang else (identify(sample.text) if identify else None)
        out.append(primary_language(code) or UNKNOWN)
    return out


async def score_samples(
    classifier: Classifier,
    policy: Policy,
    samples: Sequence[Sample],
    languages: Sequence[str],
    *,
    direction: Direction = Direction.INBOUND,
    progress: Progress | None = None,
    timeout_s: float = 60.0,
) -> list[Scored]:
    """Screen every sample as ``policy`` would in ``direction``; ``progress(done, total)`` as they finish."""
    guards = {lang: _guard_for(classifier, lang, timeout_s) for lang in set(languages)}
    limit, done = asyncio.Semaphore(_CONCURRENCY), 0

    async def one(sample: Sample, lang: str) -> Scored:
        nonlocal done
        async with limit:
            screening = await guards[lang].screen(policy, direction, [sample.text])
        if screening.error is not None or screening.score is None:
            raise EvaluationError(
                f"line {sample.line}: the screening failed: {screening.error or 'no score'}"
            )
        done += 1
        if progress is not None:
            progress(done, len(samples))
        return Scored(sample.line, sample.unsafe, lang, screening.score, screening.threshold)

    return list(await asyncio.gather(*(one(s, lang) for s, lang in zip(samples, languages, strict=True))))


def _guard_for(classifier: Classifier, lang: str, timeout_s: float) -> Guard:
    """A guard that sees every text as ``lang`` (the sample's known or identified language)."""
    code = None if lang == UNKNOWN else lang
    return Guard(classifier, timeout_s=timeout_s, language_of=lambda _text: code, max_screen_tokens=1 << 30)
