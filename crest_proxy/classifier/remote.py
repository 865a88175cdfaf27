"""Backend ``remote``: the model runs on an Open Inference Protocol (KServe v2) server: Triton, MLServer.

Only the forward pass leaves the process: tokenization, windows, softmax, the label map and thresholds stay
here, so remote decisions equal in-process ones, and the micro-batcher's coalesced windows make one infer
call. Calls come from the batcher's single worker thread; /readyz reads ``health`` from the event loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np

from crest_proxy.classifier.breaker import CircuitBreaker
from crest_proxy.classifier.oip import ProtocolError, Signature, check_metadata, decode_logits, encode_request
from crest_proxy.classifier.packing import PaddedBatch
from crest_proxy.classifier.runtime import unsafe_probability
from crest_proxy.classifier.settings import ClassifierSettings
from crest_proxy.errors import ModelNotAvailableError

log = logging.getLogger("crest_proxy.classifier")

# Connection errors are retried (the request never reached the model); a timeout or an HTTP error is not:
# a slow or failing model would only get slower with more work.
_RETRIED = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)
HEALTH_INTERVAL_S = 2.0
_BACKOFF_S = 0.05


class RemoteError(RuntimeError):
    """An infer call failed; the batcher turns it into a ClassifierError and the tenant's on_error applies."""


@dataclass(frozen=True)
class RemoteEndpoint:
    """Where the model is served, and how long and how often to try one call."""

    url: str
    model_name: str
    timeout_s: float
    retries: int
    binary: bool

    @classmethod
    def from_settings(cls, settings: ClassifierSettings) -> RemoteEndpoint:
        """The endpoint ``settings`` describe (backend ``remote``)."""
        return cls(
            url=str(settings.url).rstrip("/"),
            model_name=settings.model_name,
            timeout_s=settings.remote_timeout_s,
            retries=settings.remote_retries,
            binary=settings.binary_tensors,
        )

    @property
    def model_path(self) -> str:
        """The model's path on the server."""
        return f"/v2/models/{self.model_name}"


@dataclass(frozen=True)
class RemoteHealth:
    """Whether the remote model answered lately (for /readyz), and a line saying what was seen."""

    ok: bool
    detail: str


class RemoteRuntime:
    """Runs padded batches on the server; retries, a timeout and a circuit breaker around each call."""

    def __init__(
        self, client: httpx.Client, endpoint: RemoteEndpoint, signature: Signature, unsafe_index: int
    ) -> None:
        self._client = client
        self._endpoint = endpoint
        self._signature = signature
        self._unsafe_index = unsafe_index
        self._breaker = CircuitBreaker()
        self._lock = threading.Lock()
        self._health = RemoteHealth(True, f"{endpoint.model_name} at {endpoint.url}")
        self._checked_at = time.monotonic()
        self._refreshing = False

    def run(self, batch: PaddedBatch) -> np.ndarray:
        """P(unsafe) for every row of ``batch``, computed from the server's logits."""
        if not self._breaker.allow():
            state = self._breaker.state()
            raise RemoteError(
                f"remote classifier {self._endpoint.url} failed {state.failures} calls in a row; "
                f"not calling it for {state.retry_in_s:.1f} s (circuit open)"
            )
        try:
            logits = self._infer(batch)
        except Exception as exc:
            self._breaker.failed()
            self._record(RemoteHealth(False, f"last infer call failed: {exc}"))
            raise
        self._breaker.succeeded()
        self._record(RemoteHealth(True, f"{self._endpoint.model_name} at {self._endpoint.url}"))
        return unsafe_probability(logits, self._unsafe_index)

    def _infer(self, batch: PaddedBatch) -> np.ndarray:
        encoded = encode_request(batch, self._signature, binary=self._endpoint.binary)
        response = self._post(f"{self._endpoint.model_path}/infer", encoded.body, dict(encoded.headers))
        if response.status_code != 200:
            raise RemoteError(
                f"remote classifier answered HTTP {response.status_code}: {_error_text(response)}"
            )
        try:
            return decode_logits(response.content, response.headers, self._signature, batch.rows)
        except ProtocolError as exc:
            raise RemoteError(f"remote classifier sent an unusable answer: {exc}") from exc

    def _post(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        for attempt in range(self._endpoint.retries + 1):
            try:
                return self._client.post(path, content=body, headers=headers)
            except httpx.TimeoutException as exc:
                if isinstance(exc, httpx.ConnectTimeout) and attempt < self._endpoint.retries:
                    continue
                raise RemoteError(
                    f"remote classifier {self._endpoint.url} did not answer within "
                    f"{self._endpoint.timeout_s:g} s ({type(exc).__name__})"
                ) from exc
            except _RETRIED as exc:
                if attempt == self._endpoint.retries:
                    raise RemoteError(
                        f"cannot reach remote classifier {self._endpoint.url} "
                        f"({type(exc).__name__}, {attempt + 1} attempts)"
                    ) from exc
                time.sleep(_BACKOFF_S * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _record(self, health: RemoteHealth) -> None:
        with self._lock:
            self._health, self._checked_at = health, time.monotonic()

    def health(self) -> RemoteHealth:
        """The last seen state; refreshed in the background past HEALTH_INTERVAL_S (never blocks)."""
        with self._lock:
            stale = time.monotonic() - self._checked_at >= HEALTH_INTERVAL_S
            start, self._refreshing = stale and not self._refreshing, self._refreshing or stale
            health = self._health
        if start:
            threading.Thread(target=self._refresh, name="crest-remote-health", daemon=True).start()
        breaker = self._breaker.state()
        if breaker.open:
            return RemoteHealth(False, f"circuit open after {breaker.failures} failed calls; {health.detail}")
        return health

    def _refresh(self) -> None:
        try:
            response = self._client.get(f"{self._endpoint.model_path}/ready")
            ok = response.status_code == 200
            detail = "model ready" if ok else f"model not ready (HTTP {response.status_code})"
        except Exception as exc:  # HTTP errors, or a client closed meanwhile: never kill the thread
            ok, detail = False, f"unreachable ({type(exc).__name__})"
        with self._lock:
            self._refreshing = False
        self._record(RemoteHealth(ok, f"{self._endpoint.model_name} at {self._endpoint.url}: {detail}"))

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()


def connect_remote(settings: ClassifierSettings, *, num_labels: int, unsafe_index: int) -> RemoteRuntime:
    """Check the server is ready and serves a model with CREST's tensors; one clear message if not."""
    endpoint = RemoteEndpoint.from_settings(settings)
    timeout = httpx.Timeout(endpoint.timeout_s, connect=min(endpoint.timeout_s, 3.0))
    # trust_env=False: a proxy variable meant for the upstream LLM must not reroute in-cluster inference.
    client = httpx.Client(base_url=endpoint.url, timeout=timeout, trust_env=False)
    try:
        _check_ready(client, endpoint)
        meta = _model_metadata(client, endpoint)
        signature = check_metadata(meta, num_labels=num_labels)
    except ProtocolError as exc:
        client.close()
        raise ModelNotAvailableError(
            f"model {endpoint.model_name!r} at {endpoint.url} does not take CREST's tensors: {exc}. Expected "
            f"input_ids and attention_mask (INT64, [-1, -1]) in and logits (FP32, [-1, {num_labels}]) out: "
            "serve a repository written by `crest-proxy model export-repository`"
        ) from exc
    except BaseException:
        client.close()
        raise
    return RemoteRuntime(client, endpoint, signature, unsafe_index)


def _check_ready(client: httpx.Client, endpoint: RemoteEndpoint) -> None:
    try:
        response = client.get("/v2/health/ready")
    except httpx.HTTPError as exc:
        raise ModelNotAvailableError(
            f"cannot reach the inference server at {endpoint.url} ({type(exc).__name__}: {exc}); start it "
            "(docs/remote-classifier.md) or fix --classifier-url"
        ) from exc
    if response.status_code != 200:
        raise ModelNotAvailableError(
            f"the inference server at {endpoint.url} is not ready (GET /v2/health/ready answered "
            f"HTTP {response.status_code}); wait for it to load its models"
        )


def _model_metadata(client: httpx.Client, endpoint: RemoteEndpoint) -> dict[str, Any]:
    response = client.get(endpoint.model_path)
    if response.status_code == 200:
        return dict(response.json())
    served = _served_models(client)
    listing = f"; it serves {served}" if served else ""
    raise ModelNotAvailableError(
        f"the inference server at {endpoint.url} has no model {endpoint.model_name!r} "
        f"(GET {endpoint.model_path}: HTTP {response.status_code} {_error_text(response)}){listing}; "
        "fix --classifier-model"
    )


def _served_models(client: httpx.Client) -> list[str]:
    """The names in the server's model repository index (a Triton/MLServer extension; [] if absent)."""
    with contextlib.suppress(httpx.HTTPError, ValueError, TypeError, AttributeError):
        response = client.post("/v2/repository/index", json={})
        if response.status_code == 200:
            return sorted({str(entry.get("name")) for entry in response.json() if entry.get("name")})
    return []


def _error_text(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError):
        return str(response.json().get("error") or response.text)[:300]
    return response.text[:300]
