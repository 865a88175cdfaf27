"""The exception tree. ``ProxyError`` subclasses carry what the OpenAI-style error body needs."""

from __future__ import annotations


class CrestError(Exception):
    """Base of every error raised by crest-proxy."""


class ConfigError(CrestError):
    """A settings or policy file is invalid; the message names the file, the dotted key and the fix."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


class ModelNotAvailableError(CrestError):
    """The classifier checkpoint cannot be found or loaded (offline, no cache, bad label map)."""


class ClassifierError(CrestError):
    """The classifier failed or timed out while scoring texts."""


class ClassifierOverloadedError(ClassifierError):
    """The classifier's queue is full; callers should shed load."""


class ProxyError(CrestError):
    """An error that becomes an OpenAI-style JSON error response."""

    status_code = 500
    error_type = "server_error"
    code: str | None = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class BadRequestError(ProxyError):
    """The client's request is malformed."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class ContentPolicyError(ProxyError):
    """An inbound text was blocked by the tenant's policy."""

    status_code = 400
    error_type = "invalid_request_error"
    code = "content_policy_violation"


class AuthenticationError(ProxyError):
    """Missing or unknown proxy key."""

    status_code = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class NotFoundError(ProxyError):
    """Unknown path or model."""

    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowedError(ProxyError):
    """Known path, wrong HTTP method."""

    status_code = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class RequestTimeoutError(ProxyError):
    """The client did not send its request body in time (the connection is closed after the answer)."""

    status_code = 408
    error_type = "invalid_request_error"
    code = "request_timeout"


class PayloadTooLargeError(ProxyError):
    """The request body is over the configured limit."""

    status_code = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class RateLimitError(ProxyError):
    """The proxy is shedding load."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "overloaded"


class UpstreamError(ProxyError):
    """The upstream could not be reached or answered garbage."""

    status_code = 502
    error_type = "api_error"
    code = "upstream_error"


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not answer in time."""

    status_code = 504
    code = "upstream_timeout"


class ServiceUnavailableError(ProxyError):
    """The proxy cannot serve now (classifier failed closed, shutting down, not ready)."""

    status_code = 503
    error_type = "server_error"
    code = "service_unavailable"
