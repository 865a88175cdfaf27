"""Prometheus metrics of one app, in a registry of its own (tests build many apps in one process).

Everything the proxy counts goes through a ``Metrics`` object: the access middleware (requests), the
one decision path (``screening.decision.decide``: decisions, on_error events, windows, the upstream call,
and per stream its longest hold-back and added time to first token; ``Metrics`` is its
``DecisionObserver``), the policy reloader, and the classifier's own hooks (model-call latency, batch
size, queue depth). ``/metrics`` renders it (see ``probes.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from crest_proxy.screening.guard import Screening

SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WINDOWS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
QUEUE = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
NO_TENANT = "none"  # requests that never authenticated


class Metrics:
    """The proxy's instruments and the registry ``/metrics`` renders."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "crest_requests", "HTTP requests answered.", ("tenant", "endpoint", "status"), registry=reg
        )
        self.request_seconds = Histogram(
            "crest_request_duration_seconds", "Time to answer a request, body included.", ("endpoint",),
            buckets=SECONDS, registry=reg,
        )  # fmt: skip
        self.decisions = Counter(
            "crest_decisions", "Screening decisions (one per direction of a request); language is the "
            "texts' language, 'mixed' or 'unknown'.", ("tenant", "direction", "action", "language"),
            registry=reg,
        )  # fmt: skip
        self.screening_seconds = Histogram(
            "crest_screening_duration_seconds", "Time to screen one direction (classifier and policy).",
            ("direction",), buckets=SECONDS, registry=reg,
        )  # fmt: skip
        self.windows_per_text = Histogram(
            "crest_windows_per_text", "512-token classifier windows per screened text.", buckets=WINDOWS,
            registry=reg,
        )  # fmt: skip
        self.on_error = Counter(
            "crest_classifier_failures", "Screenings whose classifier failed, by what on_error did "
            "(fail_open: allowed on, fail_closed: blocked).", ("tenant", "direction", "outcome"),
            registry=reg,
        )  # fmt: skip
        self.upstream_seconds = Histogram(
            "crest_upstream_duration_seconds", "Time until the upstream answered (response headers); "
            "outcome is 2xx..5xx or error.", ("tenant", "endpoint", "outcome"), buckets=SECONDS,
            registry=reg,
        )  # fmt: skip
        self.holdback_seconds = Histogram(
            "crest_stream_holdback_seconds", "The longest any text of a stream was held back for "
            "screening before it was released to the client (one observation per stream).", ("tenant",),
            buckets=SECONDS, registry=reg,
        )  # fmt: skip
        self.added_ttft_seconds = Histogram(
            "crest_stream_added_ttft_seconds", "Time to first token the proxy added to a stream (its first "
            "byte to the client minus the upstream's first byte).", ("tenant",), buckets=SECONDS,
            registry=reg,
        )  # fmt: skip
        self.reloads = Counter(
            "crest_policy_reloads", "Policy reloads by result: applied (a new set is in force), unchanged, "
            "or failed (the directory could not be read).", ("result",), registry=reg,
        )  # fmt: skip
        self.reload_errors = Counter(
            "crest_policy_reload_errors", "Policy files rejected on reload (their previous policy stays in "
            "force).", ("file",), registry=reg,
        )  # fmt: skip
        self.tenants = Gauge("crest_policy_tenants", "Tenants with a policy in force.", registry=reg)
        self.model_call_seconds = Histogram(
            "crest_classifier_model_call_seconds", "Time of one model call (one padded batch).",
            buckets=SECONDS, registry=reg,
        )  # fmt: skip
        self.batch_windows = Histogram(
            "crest_classifier_batch_windows", "Windows per model call.", buckets=BATCH, registry=reg
        )
        self.queue_depth = Histogram(
            "crest_classifier_queue_depth", "Texts waiting for the classifier, sampled as texts are queued.",
            buckets=QUEUE, registry=reg,
        )  # fmt: skip

    # --- what the request path reports -------------------------------------------------------------

    def observe_request(self, tenant: str | None, endpoint: str, status: int, seconds: float) -> None:
        """One answered HTTP request."""
        self.requests.labels(tenant or NO_TENANT, endpoint, str(status)).inc()
        self.request_seconds.labels(endpoint).observe(seconds)

    def observe_screening(self, tenant: str, screening: Screening) -> None:
        """One screening decision (called where its audit record is written)."""
        direction = screening.direction.value
        language = screening_language(screening)
        self.decisions.labels(tenant, direction, screening.action.value, language).inc()
        if screening.texts:
            self.screening_seconds.labels(direction).observe(screening.latency_ms / 1000)
        for decision in screening.decisions:
            if decision.windows:
                self.windows_per_text.observe(decision.windows)
        if screening.error is not None:
            outcome = "fail_closed" if screening.failed_closed else "fail_open"
            self.on_error.labels(tenant, direction, outcome).inc()

    def observe_upstream(self, tenant: str, endpoint: str, status: int | None, seconds: float) -> None:
        """One upstream exchange until its headers arrived (``status`` None: it failed)."""
        outcome = "error" if status is None else f"{status // 100}xx"
        self.upstream_seconds.labels(tenant, endpoint, outcome).observe(seconds)

    def observe_holdback(self, tenant: str, seconds: float) -> None:
        """A stream's text was held back at most ``seconds`` before the client got it."""
        self.holdback_seconds.labels(tenant).observe(seconds)

    def observe_added_ttft(self, tenant: str, seconds: float) -> None:
        """The proxy delayed a stream's first token by ``seconds``."""
        self.added_ttft_seconds.labels(tenant).observe(max(0.0, seconds))

    def observe_reload(self, result: str, rejected_files: Iterable[str], tenants: int) -> None:
        """One policy reload: its result, files that kept their previous policy, tenants now in force."""
        self.reloads.labels(result).inc()
        for name in rejected_files:
            self.reload_errors.labels(name).inc()
        self.tenants.set(tenants)

    # --- the classifier's hooks (``StatsObserver``) ---------------------------------------------------

    def admitted(self, queue_depth: int) -> None:
        """Texts were queued for the classifier."""
        self.queue_depth.observe(queue_depth)

    def model_call(self, rows: int, seconds: float) -> None:
        """The classifier ran one batch."""
        self.model_call_seconds.observe(seconds)
        self.batch_windows.observe(rows)

    def watch_classifier(self, classifier: Any) -> Callable[[], None]:
        """Export ``classifier``'s counters and hook its per-call histograms; returns the undo function."""
        undo: list[Callable[[], None]] = []
        if callable(getattr(classifier, "observe", None)):
            undo.append(classifier.observe(self))
        if hasattr(classifier, "stats"):
            undo.append(self._register(_Snapshot(lambda: _classifier_families(classifier.stats))))

        def unwatch() -> None:
            for step in undo:
                step()

        return unwatch

    def watch_audit(self, sink: Any) -> Callable[[], None]:
        """Export the sink's loss counters (lost, gap, torn, reopened, spooled, replayed) and writability."""
        if not hasattr(sink, "lost"):
            return lambda: None
        return self._register(_Snapshot(lambda: _audit_families(sink)))

    def _register(self, collector: Collector) -> Callable[[], None]:
        self.registry.register(collector)
        return lambda: self.registry.unregister(collector)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every metric, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


_AUDIT_COUNTERS = (
    ("lost", "crest_audit_lost_records", "Audit records that could not be written (each is in a gap note)."),
    ("gaps", "crest_audit_gap_notes", "Gap notes written to the audit chain in place of lost records."),
    ("torn", "crest_audit_torn_repairs", "Torn last lines cut off the audit log (or spool) at start."),
    ("reopened", "crest_audit_reopened", "Times the audit log was found deleted or replaced, and reopened."),
    ("spooled", "crest_audit_spooled_records", "Audit records spooled locally while the database was down."),
    ("replayed", "crest_audit_replayed_records", "Spooled audit records later inserted into the database."),
)


def _audit_families(sink: Any) -> Iterator[Metric]:
    stats = getattr(sink, "stats", None)
    for field, name, doc in _AUDIT_COUNTERS:
        value = getattr(stats, field, None) if stats is not None else (sink.lost if field == "lost" else None)
        if value is not None:
            yield CounterMetricFamily(name, doc, value=value)
    check = getattr(sink, "problem", None)
    writable = 0 if callable(check) and check() is not None else 1
    yield GaugeMetricFamily("crest_audit_writable", "1 while audit records can be written.", value=writable)


def screening_language(screening: Screening) -> str:
    """The language label of a screening: its texts' one language, ``mixed`` or ``unknown``."""
    languages = {d.verdict.language for d in screening.decisions if d.verdict.language}
    if len(languages) == 1:
        return languages.pop()
    return "mixed" if languages else "unknown"


class _Snapshot(Collector):
    """A collector whose families are computed at scrape time (counters kept elsewhere)."""

    def __init__(self, families: Callable[[], Iterable[Metric]]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        """The families as of now."""
        yield from self._families()

    def describe(self) -> Iterable[Metric]:
        """Nothing up front: the registry then calls ``collect`` to learn the names."""
        return []


def _classifier_families(stats: Any) -> list[Metric]:
    """Families for a ``ClassifierStats`` snapshot."""
    counters = {
        "requests": "Classify calls admitted.",
        "texts": "Texts admitted for classification.",
        "windows": "512-token windows scored.",
        "model_calls": "Model calls (padded batches).",
        "model_seconds": "Seconds spent in model calls.",
        "errors": "Classify calls that failed.",
        "overloaded": "Classify calls refused because the queue was full.",
    }
    families: list[Metric] = [
        CounterMetricFamily(f"crest_classifier_{name}", doc, value=float(getattr(stats, name)))
        for name, doc in counters.items()
    ]
    queued = GaugeMetricFamily("crest_classifier_queued_texts", "Texts waiting now.", value=stats.queue_depth)
    families.append(queued)
    return families
