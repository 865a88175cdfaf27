"""Operator mistakes found before the model loads (which can take minutes): one clear line each (issue 17).

A port already in use and an audit log that cannot be written used to surface only after the classifier
had loaded, as a traceback from uvicorn or the audit writer thread.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path

from crest_proxy.errors import ConfigError


def check_port(host: str, port: int) -> None:
    """Raise ``ConfigError`` when ``host:port`` cannot be bound (in use, or not an address of this host)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"crest-proxy: port {port} on {host} is already in use by another process; "
                    f"stop it or choose another --port"
                ) from None
            raise ConfigError(
                f"crest-proxy: cannot listen on {host}:{port} ({exc.strerror}); check --host"
            ) from None


def check_audit_log(path: Path | None) -> None:
    """Raise ``ConfigError`` when the audit log cannot be opened for appending (missing folder, a directory,
    no permission, a read-only file system)."""
    if path is None:
        return
    existed = path.exists()
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"crest-proxy: audit log {path} cannot be written ({exc.strerror}); "
            f"choose a writable --audit-log (or --no-audit-log with --audit-db)"
        ) from None
    if not existed:
        path.unlink()  # the audit writer creates it with its own chain start
