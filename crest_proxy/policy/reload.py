"""Policies that change without a restart: watch the policies directory (and SIGHUP), revalidate, swap.

Each file is loaded on its own; a file that fails keeps its tenant's previous policy (the problem is
logged with its dotted key and counted), a deleted file removes its tenant, a new file adds one. The new
``PolicySet`` replaces ``PolicyStore.current`` in one assignment on the event loop, and a request reads
the store once (when it authenticates), so requests in flight finish under the policy they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crest_proxy.errors import ConfigError
from crest_proxy.policy.files import (
    PolicyEntry,
    PolicySet,
    assemble_policies,
    load_policy_entry,
    policy_entries,
    policy_files,
)

log = logging.getLogger("crest_proxy.policy.reload")


@dataclass(frozen=True)
class ReloadResult:
    """What one reload did: ``applied``, ``unchanged`` or ``failed``; tenants changed; files rejected."""

    result: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    rejected: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Merged:
    """A policy set built from freshly loaded files, and the files that could not be taken as they are."""

    policies: PolicySet
    rejected: tuple[Path, ...]
    problems: tuple[str, ...]


def merge(previous: PolicySet, loaded: Sequence[tuple[Path, PolicyEntry | ConfigError]]) -> Merged:
    """The new set: each file's new entry, or its previous one when it fails or conflicts."""
    old = {entry.source: entry for entry in policy_entries(previous)}
    fresh = [e for _, e in loaded if isinstance(e, PolicyEntry)]
    if len(fresh) == len(loaded):
        try:
            return Merged(assemble_policies(fresh), (), ())
        except ConfigError:
            pass  # a tenant or key conflict: settle it file by file below
    # Unchanged files first, so that a conflict is blamed on (and rolls back) the file that changed.
    ordered = sorted(loaded, key=lambda item: item[1] != old.get(item[0]))
    accepted: list[PolicyEntry] = []
    rejected: list[Path] = []
    problems: list[str] = []
    for path, outcome in ordered:
        if isinstance(outcome, ConfigError):
            rejected.append(path)
            problems += outcome.problems
            _accept(accepted, old.get(path))
        elif not _accept(accepted, outcome, problems):
            rejected.append(path)
            _accept(accepted, old.get(path))
    return Merged(assemble_policies(accepted), tuple(rejected), tuple(problems))


def _accept(
    accepted: list[PolicyEntry], entry: PolicyEntry | None, problems: list[str] | None = None
) -> bool:
    """Append ``entry`` when it fits with those already accepted; its conflicts go to ``problems``."""
    if entry is None:
        return False
    try:
        assemble_policies([*accepted, entry])
    except ConfigError as exc:
        if problems is not None:
            problems += exc.problems
        return False
    accepted.append(entry)
    return True


def fingerprint(directory: Path) -> dict[str, str]:
    """SHA-256 of each policy file's bytes by name (empty when the directory is missing or has none)."""
    try:
        files = policy_files(directory)
    except ConfigError:
        return {}
    digests = {}
    for path in files:
        try:
            digests[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digests[path.name] = "unreadable"
    return digests


class PolicyReloader:
    """Reloads ``directory`` into ``store`` on demand, when its files change, or on SIGHUP."""

    def __init__(
        self,
        directory: Path,
        store: Any,
        *,
        environ: Mapping[str, str] | None = None,
        on_reload: Callable[[ReloadResult, PolicySet], None] | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.store = store  # a proxy.PolicyStore: ``.current`` is the one reference requests read
        self.last: ReloadResult | None = None
        self._environ = environ
        self._on_reload = on_reload
        self._lock = asyncio.Lock()
        self._seen: dict[str, str] | None = None
        self._tasks: set[asyncio.Task[ReloadResult]] = set()

    async def reload(self) -> ReloadResult:
        """Revalidate every file now and swap in the result; never raises for bad files."""
        async with self._lock:  # the watcher and SIGHUP may ask at once: one reload at a time
            previous = self.store.current
            seen, merged, result = await asyncio.to_thread(self._load, previous)
            self._seen = seen
            if merged is not None and result.result == "applied":
                self.store.current = merged.policies
            self.last = result
        _log_result(result)
        if self._on_reload is not None:
            self._on_reload(result, self.store.current)
        return result

    def reload_soon(self) -> None:
        """Start a reload in the background (what the SIGHUP handler calls)."""
        task = asyncio.get_running_loop().create_task(self.reload())
        self._tasks.add(task)  # keep a reference until it ends, or it may be collected mid-way
        task.add_done_callback(self._tasks.discard)

    async def watch(self, interval_s: float) -> None:
        """Poll the directory every ``interval_s`` s; reload when a file was added, changed or removed."""
        if self._seen is None:
            self._seen = await asyncio.to_thread(fingerprint, self.directory)
        while True:
            await asyncio.sleep(interval_s)
            try:
                current = await asyncio.to_thread(fingerprint, self.directory)
                if current != self._seen:
                    await self.reload()
            except Exception:  # the watcher must outlive any one bad reload
                log.exception("policy watcher: reload failed")

    def _load(self, previous: PolicySet) -> tuple[dict[str, str], Merged | None, ReloadResult]:
        """Runs in a thread: read and validate every file, merge with ``previous``, describe the change."""
        seen = fingerprint(self.directory)
        try:
            files = policy_files(self.directory)
        except ConfigError as exc:  # a missing or emptied directory: more likely a mistake than intent
            return seen, None, ReloadResult("failed", problems=tuple(exc.problems))
        merged = merge(previous, [(path, self._try_load(path)) for path in files])
        return seen, merged, describe(previous, merged)

    def _try_load(self, path: Path) -> PolicyEntry | ConfigError:
        try:
            return load_policy_entry(path, environ=self._environ)
        except ConfigError as exc:
            return exc


def describe(previous: PolicySet, merged: Merged) -> ReloadResult:
    """The tenants ``merged`` adds, removes and changes compared with ``previous``."""
    before = {e.policy.tenant: e for e in policy_entries(previous)}
    after = {e.policy.tenant: e for e in policy_entries(merged.policies)}
    added = tuple(sorted(after.keys() - before.keys()))
    removed = tuple(sorted(before.keys() - after.keys()))
    updated = tuple(sorted(t for t in after.keys() & before.keys() if after[t] != before[t]))
    result = "applied" if added or removed or updated else "unchanged"
    rejected = tuple(p.name for p in merged.rejected)
    return ReloadResult(result, added, removed, updated, rejected, merged.problems)


def _log_result(result: ReloadResult) -> None:
    for problem in result.problems:
        log.error(
            "policy reload: %s; the previous policy stays in force", problem, extra={"problem": problem}
        )
    if result.result == "applied":
        log.info(
            "policies reloaded: added %s, removed %s, updated %s",
            list(result.added),
            list(result.removed),
            list(result.updated),
            extra={"added": result.added, "removed": result.removed, "updated": result.updated},
        )


def install_sighup(reloader: PolicyReloader) -> Callable[[], None]:
    """Reload on SIGHUP (main thread, Unix only); returns the function that restores the previous handler."""
    loop = asyncio.get_running_loop()
    hup = getattr(signal, "SIGHUP", None)
    if hup is None:
        return lambda: None
    previous = signal.getsignal(hup)
    try:
        loop.add_signal_handler(hup, reloader.reload_soon)
    except (RuntimeError, ValueError, NotImplementedError):  # not the main thread (tests), or no support
        log.debug("SIGHUP reload not installed (not in the main thread)")
        return lambda: None

    def uninstall() -> None:
        loop.remove_signal_handler(hup)
        if previous is not None:
            signal.signal(hup, previous)

    return uninstall


async def start_reloading(reloader: PolicyReloader, stack: contextlib.AsyncExitStack, poll_s: float) -> None:
    """Reload on SIGHUP and, when ``poll_s`` > 0, on file changes; ``stack`` stops both on exit."""
    stack.callback(install_sighup(reloader))
    if poll_s <= 0:
        return
    watcher = asyncio.get_running_loop().create_task(reloader.watch(poll_s), name="crest-policy-watcher")

    async def stop() -> None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher

    stack.push_async_callback(stop)
