"""``crest-proxy eval``: screen labelled texts exactly as the proxy does, report per-language metrics,
and recommend per-language thresholds (docs/evaluation.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import IO, Any

from crest_proxy.cli.model import add_model_arguments, say, settings_from_args

_DEFAULT_POLICY = Path("policies/default.yaml")


def register(subparsers: Any) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="measure screening on labelled JSONL and recommend per-language thresholds",
        description='Screen DATA (JSON Lines: {"text": ..., "label": "safe"|"unsafe", "lang": "en"}) through '
        "the proxy's own screening path and write metrics.json, report.html and thresholds.yaml.",
    )
    parser.add_argument("data", type=Path, metavar="DATA.jsonl", help="labelled texts")
    add_model_arguments(parser)
    parser.add_argument("--policy", type=Path, default=_DEFAULT_POLICY,
                        help="the policy whose thresholds are measured (default: %(default)s)")  # fmt: skip
    parser.add_argument("--direction", choices=("inbound", "outbound"), default="inbound",
                        help="screen the texts as requests or as answers (default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path("eval-out"), help="output directory (default: %(default)s)"
    )
    parser.add_argument("--target-fpr", type=_fraction, default=None, metavar="RATE",
                        help="recommend the lowest threshold with at most this false-positive rate "
                        "(default: the threshold with the best F1)")  # fmt: skip
    parser.add_argument("--min-samples", type=int, default=30, help="smallest language to tune (default: 30)")
    parser.set_defaults(func=run)


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a rate between 0 and 1")
    return value


def run(args: argparse.Namespace) -> int:
    """Check the data and policy, load the model, screen, write; bad input is one line and exit 2."""
    from crest_proxy.errors import ConfigError
    from crest_proxy.evaluation.dataset import DatasetError, load_samples
    from crest_proxy.policy.files import read_policy

    try:
        samples = load_samples(args.data)
        policy = read_policy(args.policy)  # env: secrets are not needed to read thresholds
    except DatasetError as exc:
        say(f"crest-proxy eval: {exc}")
        return 2
    except ConfigError as exc:
        say("\n".join(exc.problems))
        return 2
    return _evaluate(args, samples, policy)


def _evaluate(args: argparse.Namespace, samples: list[Any], policy: Any) -> int:
    from crest_proxy.classifier import load_classifier
    from crest_proxy.errors import ModelNotAvailableError
    from crest_proxy.evaluation.report import table, write_all
    from crest_proxy.evaluation.runner import EvaluationError, language_of_samples, score_samples
    from crest_proxy.evaluation.summary import evaluate
    from crest_proxy.types import Direction

    languages = language_of_samples(samples, _identifier(samples))
    try:
        classifier = load_classifier(settings_from_args(args), progress=say)
    except (ModelNotAvailableError, ValueError) as exc:
        say(f"crest-proxy eval: {exc}")
        return 1
    bar = ProgressBar(sys.stderr)
    try:
        scored = asyncio.run(score_samples(
            classifier, policy, samples, languages, direction=Direction(args.direction), progress=bar.update
        ))  # fmt: skip
    except EvaluationError as exc:
        say(f"crest-proxy eval: {args.data}: {exc}")
        return 1
    finally:
        bar.finish()
        classifier.close()
    result = evaluate(scored, target_fpr=args.target_fpr, min_samples=args.min_samples)
    for path in write_all(result, args.out, source=str(args.data)):
        say(f"wrote {path}")
    print(table(result))
    return 0


def _identifier(samples: list[Any]) -> Any:
    """The bundled language identifier, loaded only when some sample has no ``lang``."""
    if all(s.lang for s in samples):
        return None
    from crest_proxy.screening.language import load_language_identifier

    return load_language_identifier()


class ProgressBar:
    """``[#####.....] 120/500 24/s`` on stderr: redrawn in place on a terminal, every 10% otherwise."""

    def __init__(self, stream: IO[str], width: int = 30) -> None:
        self._stream, self._width = stream, width
        self._tty = stream.isatty()
        self._started = time.monotonic()
        self._shown = -1

    def update(self, done: int, total: int) -> None:
        """Show ``done`` of ``total``."""
        step = done * 10 // max(total, 1)
        if not self._tty and step == self._shown and done != total:
            return
        self._shown = step
        filled = done * self._width // max(total, 1)
        rate = done / max(time.monotonic() - self._started, 1e-9)
        line = f"[{'#' * filled}{'.' * (self._width - filled)}] {done}/{total} {rate:.0f}/s"
        self._stream.write(("\r" + line) if self._tty else line + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the in-place line."""
        if self._tty and self._shown >= 0:
            self._stream.write("\n")
            self._stream.flush()
