"""``crest-proxy classify``: score texts from the command line, or JSONL lines from stdin."""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from crest_proxy.cli.model import add_model_arguments, say, settings_from_args
from crest_proxy.errors import ClassifierError, ModelNotAvailableError

if TYPE_CHECKING:
    from crest_proxy.classifier import CrestClassifier

# Lines per classify_sync call: big enough to fill model batches, small enough to stream output.
CHUNK_LINES = 256


class InputError(Exception):
    """A JSONL input line that cannot be classified; the message names its line number."""


@dataclass(frozen=True)
class Record:
    """One JSONL input line: its number, the parsed object, and the text to score."""

    line: int
    data: dict[str, Any]
    text: str


def register(subparsers: Any) -> None:
    """Add ``classify`` to the CLI."""
    parser = subparsers.add_parser(
        "classify",
        help="score texts with CREST (args, or JSONL on stdin)",
        description="Print label<TAB>score<TAB>text per TEXT; with no TEXT, read JSONL "
        '({"text": ...} per line) from stdin and write it back with score, label and windows added.',
    )
    add_model_arguments(parser)
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to score")
    parser.set_defaults(func=classify_command)


def classify_command(args: argparse.Namespace) -> int:
    """Run ``classify``: exit 0 on success, 1 when the model is unavailable or fails, 2 on bad input."""
    from crest_proxy.classifier import load_classifier

    try:
        classifier = load_classifier(settings_from_args(args), progress=say)
    except (ModelNotAvailableError, ValueError) as exc:  # ValueError: invalid ClassifierSettings
        say(str(exc))
        return 1
    try:
        if args.texts:
            write_tsv(classifier, args.texts, sys.stdout)
        else:
            write_jsonl(classifier, sys.stdin, sys.stdout)
    except InputError as exc:
        say(str(exc))
        return 2
    except ClassifierError as exc:
        say(str(exc))
        return 1
    finally:
        classifier.close()
    return 0


def write_tsv(classifier: CrestClassifier, texts: list[str], out: IO[str]) -> None:
    """One ``label<TAB>score<TAB>text`` line per text (tabs and newlines in the text escaped)."""
    for text, score in zip(texts, classifier.classify_sync(texts), strict=True):
        out.write(f"{score.label}\t{score.score:.6f}\t{_one_line(text)}\n")


def write_jsonl(classifier: CrestClassifier, lines: Iterable[str], out: IO[str]) -> None:
    """Score ``{"text": ...}`` lines in chunks, writing each object back with score, label and windows."""
    for chunk in _chunks(parse_records(lines), CHUNK_LINES):
        scores = classifier.classify_sync([r.text for r in chunk])
        for record, score in zip(chunk, scores, strict=True):
            result = {**record.data, "score": score.score, "label": score.label, "windows": score.windows}
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
        out.flush()


def parse_records(lines: Iterable[str]) -> Iterator[Record]:
    """Parse JSONL lazily; blank lines are skipped; a bad line raises InputError naming its number."""
    iterator, number = iter(lines), 0
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:  # text-mode stdin decodes as it reads
            raise InputError(f"stdin line {number + 1}: not valid UTF-8 ({exc.reason})") from exc
        number += 1
        if line.strip():
            yield parse_record(number, line)


def parse_record(number: int, line: str) -> Record:
    """One JSONL line -> Record, or InputError saying what is wrong with line ``number``."""
    try:
        data = json.loads(line)
    except ValueError as exc:
        raise InputError(f"stdin line {number}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f'stdin line {number}: expected a JSON object like {{"text": ...}}')
    if not isinstance(data.get("text"), str):
        raise InputError(f'stdin line {number}: the object needs a string "text" field')
    return Record(line=number, data=data, text=data["text"])


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _one_line(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
