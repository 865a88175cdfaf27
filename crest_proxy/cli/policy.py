"""``crest-proxy policy``: validate a policy directory (``check``) and hash proxy keys (``hash-key``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``policy`` subcommand and its ``check`` and ``hash-key`` actions."""
    parser = subparsers.add_parser("policy", help="validate tenant policies, hash proxy keys")
    actions = parser.add_subparsers(dest="policy_command", metavar="ACTION")
    check = actions.add_parser("check", help="validate every policy file of a directory")
    check.add_argument("directory", type=Path, metavar="DIR", help="directory of tenant *.yaml files")
    check.add_argument(
        "--no-env",
        action="store_true",
        help="validate the files without their secrets: env: references are not looked up (e.g. in CI)",
    )
    check.set_defaults(func=run_check)
    hash_key = actions.add_parser(
        "hash-key",
        help="print sha256:<hex> of a proxy key, for a policy's keys list",
        description="Print sha256:<hex> of a proxy key. Omit KEY to read it from stdin, "
        "which keeps it out of shell history.",
    )
    hash_key.add_argument("key", nargs="?", metavar="KEY", help="the key (default: read from stdin)")
    hash_key.set_defaults(func=run_hash_key)
    parser.set_defaults(func=lambda _args: _usage(parser))


def run_check(args: argparse.Namespace) -> int:
    """Validate ``args.directory``; print every problem to stderr (exit 1) or a summary (exit 0)."""
    from crest_proxy.errors import ConfigError
    from crest_proxy.policy.files import load_policies

    try:
        policies = load_policies(args.directory, environ=_UncheckedEnv() if args.no_env else None)
    except ConfigError as exc:
        print("\n".join(exc.problems), file=sys.stderr)
        return 1
    names = sorted(policies.policies)
    print(f"ok: {len(names)} tenant{'s' if len(names) != 1 else ''} ({', '.join(names)})")
    return 0


def run_hash_key(args: argparse.Namespace) -> int:
    """Print ``sha256:<hex>`` of the key given, or of stdin's first line."""
    from crest_proxy.policy.files import hash_key

    key = args.key if args.key is not None else sys.stdin.readline().rstrip("\r\n")
    if not key:
        print("crest-proxy: empty key; pass KEY or pipe it on stdin", file=sys.stderr)
        return 2
    print(hash_key(key))
    return 0


class _UncheckedEnv(Mapping[str, str]):
    """An environment where every variable is set, each to a distinct placeholder (``--no-env``).

    Distinct values keep the duplicate-key check meaningful: two tenants naming the same variable clash.
    """

    def __getitem__(self, name: str) -> str:
        return f"unchecked:{name}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _usage(parser: argparse.ArgumentParser) -> int:
    """``crest-proxy policy`` without an action: show its help."""
    parser.print_help(sys.stderr)
    return 2
