"""``crest-proxy`` command line: a thin argparse layer; each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules, imported on demand so that `crest-proxy --help` loads no torch/transformers.
# Each module exposes `register(subparsers)` which adds its parser and sets `func(args) -> int`.
_COMMANDS = ("serve", "classify", "model", "policy", "audit", "console", "eval")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="crest-proxy",
        description="OpenAI-compatible guardrail gateway screening traffic with the CREST classifier.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        try:
            module = importlib.import_module(f"crest_proxy.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"crest_proxy.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``crest-proxy`` console script."""
    from crest_proxy.errors import ConfigError

    try:
        parser = build_parser()  # flag defaults come from CREST_PROXY_* variables, which can be malformed
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
