"""One writer per audit file: an exclusive ``flock`` on a ``.<log>.lock`` file beside it.

Two processes appending to one hash-chained file would each link to their own head and break the chain
(issue 14). The lock is on a side file, not the log, so it survives rotation and a deleted log; the kernel
drops it when the process dies, even by SIGKILL, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class AuditLogLocked(RuntimeError):
    """Another process holds the audit file's lock."""


def lock_path(log: Path) -> Path:
    """The lock file of ``log`` (hidden, so ``audit verify crest-audit.jsonl*`` does not take it in)."""
    return log.with_name(f".{log.name}.lock")


class FileLock:
    """An exclusive, non-blocking lock on ``.<log>.lock`` holding the owner's pid."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.path = lock_path(log)
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``AuditLogLocked`` naming the holder and the fix."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AuditLogLocked(
                f"audit log {self.log} is in use by another process{holder}; "
                "give each crest-proxy its own --audit-log (or stop the other one)"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent); the lock file stays, so no one races on creating it."""
        fd, self._fd = self._fd, None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def ensure_unlocked(log: Path) -> None:
    """Raise ``AuditLogLocked`` now if another process holds ``log`` (a check before slow start-up work)."""
    probe = FileLock(log)
    probe.acquire()
    probe.release()


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""
