"""Streamed completions (``stream: true``), screened with a bounded hold-back before any byte is sent.

``relay`` owns the upstream stream and the audit; ``choices`` (chat, legacy completions) and
``responses`` (Responses API events) rewrite each dialect's events; ``crest_proxy.holdback`` decides
what text may go.
"""

from __future__ import annotations

from crest_proxy.streaming.relay import stream_completion

__all__ = ["stream_completion"]
