"""The exception tree every provider maps onto, so callers catch one set of classes.

``ProviderError`` carries what an upstream said (status, code, message, request id, raw
body) and whether retrying can help (``retryable``); the core's retry loop reads only
that flag, so a provider decides per error (one provider's throttling 429 is retried,
OpenAI's billing 429 is not) without touching the loop.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Type

__all__ = [
    "ModelportError",
    "ConfigError",
    "PluginLoadError",
    "UnknownProviderError",
    "InvalidRequestError",
    "ProviderError",
    "BadRequestError",
    "ContentFilterError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "ConflictError",
    "RateLimitError",
    "QuotaExceededError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APITimeoutError",
    "APIConnectionError",
    "StreamInterruptedError",
    "MalformedResponseError",
    "MalformedStreamError",
    "TaskFailedError",
    "error_class_for_status",
    "openai_code",
]

_BODY_LIMIT = 2000


class ModelportError(Exception):
    """Base of every error modelport raises."""


class ConfigError(ModelportError):
    """Configuration is missing or wrong (no base URL, bad config file, unknown region)."""


class PluginLoadError(ConfigError):
    """A provider or middleware plugin could not be imported or registered."""

    def __init__(self, message: str, *, plugin: str = "", distribution: str = "") -> None:
        super().__init__(message)
        self.plugin = plugin
        self.distribution = distribution


class UnknownProviderError(ConfigError):
    """The model string names a provider that no installed plugin serves."""

    def __init__(self, message: str, *, provider: str = "", installed: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.provider = provider
        self.installed = list(installed)


class InvalidRequestError(ModelportError, ValueError):
    """The request was rejected before sending; names the parameter and what is allowed."""

    def __init__(self, message: str, *, param: Optional[str] = None, allowed: Optional[str] = None) -> None:
        super().__init__(message)
        self.param = param
        self.allowed = allowed


class ProviderError(ModelportError):
    """An error from (or on the way to) the upstream provider."""

    status: Optional[int] = None
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: Optional[int] = None,
        provider: Optional[str] = None,
        model: Optional[str] = None,
        code: Any = None,
        type: Optional[str] = None,
        param: Optional[str] = None,
        request_id: Optional[str] = None,
        body: Optional[str] = None,
        headers: Optional[Mapping[str, str]] = None,
        retryable: Optional[bool] = None,
        retry_after: Optional[float] = None,
        details: Optional[Dict[str, Any]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        self.provider = provider
        self.model = model
        self.code = code
        self.type = type
        self.param = param
        self.request_id = request_id
        self.body = body[:_BODY_LIMIT] if body else body
        self.headers: Dict[str, str] = dict(headers or {})
        self.details: Dict[str, Any] = dict(details or {})
        if retryable is not None:
            self.retryable = retryable
        #: Seconds the upstream asked to wait before a retry (from its headers or body);
        #: the retry loop prefers it to its own backoff.
        self.retry_after = retry_after

    @property
    def status_code(self) -> Optional[int]:
        """OpenAI-SDK spelling of ``status``."""
        return self.status

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model) if p)
        head = f"{type(self).__name__}"
        if self.status is not None:
            head += f" ({self.status})"
        if where:
            head += f" from {where}"
        tail = []
        if self.code not in (None, ""):
            tail.append(f"code={self.code}")
        if self.request_id:
            tail.append(f"request_id={self.request_id}")
        suffix = f" [{', '.join(tail)}]" if tail else ""
        return f"{head}: {self.message}{suffix}"


class BadRequestError(ProviderError):
    status = 400


class ContentFilterError(BadRequestError):
    """The provider's content inspection refused the input or output."""


#: LiteLLM's name for ``ContentFilterError``.
ContentPolicyViolationError = ContentFilterError


class ContextWindowExceededError(BadRequestError):
    """The prompt (plus the requested output) is longer than the model's context window."""


class AuthenticationError(ProviderError):
    status = 401


class PermissionDeniedError(ProviderError):
    status = 403


class NotFoundError(ProviderError):
    status = 404


class ConflictError(ProviderError):
    status = 409
    retryable = True


class UnprocessableEntityError(ProviderError):
    status = 422


class RateLimitError(ProviderError):
    status = 429
    retryable = True


class QuotaExceededError(RateLimitError):
    """Billing or quota state (no credit, overdue account): waiting does not help."""

    retryable = False


class InternalServerError(ProviderError):
    status = 500
    retryable = True


class ServiceUnavailableError(ProviderError):
    status = 503
    retryable = True


class APITimeoutError(ProviderError):
    """The upstream did not answer within the timeout (or answered 408)."""

    retryable = True


class APIConnectionError(ProviderError):
    """The upstream could not be reached (refused, reset, DNS)."""

    retryable = True


class StreamInterruptedError(ProviderError):
    """The stream ended (or broke) before its end marker; what arrived may be partial."""


class MalformedResponseError(ProviderError):
    """The upstream answered 2xx with a body that is not the JSON the API promises."""


class MalformedStreamError(MalformedResponseError):
    """The stream carried data that is not valid server-sent-event JSON."""


class TaskFailedError(ProviderError):
    """An asynchronous upstream task (e.g. image generation) ended in failure or timed out."""


_BY_STATUS: Dict[int, Type[ProviderError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: APITimeoutError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
    500: InternalServerError,
    502: ServiceUnavailableError,
    503: ServiceUnavailableError,
    504: ServiceUnavailableError,
}


def error_class_for_status(status: int) -> Type[ProviderError]:
    """The default class for an HTTP status: other 4xx are BadRequest, other 5xx Internal."""
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if status >= 500:
        return InternalServerError
    if status >= 400:
        return BadRequestError
    return ProviderError


def openai_code(error: BaseException, status: Optional[int] = None) -> str:
    """The OpenAI error ``code`` for ``error`` where one fits (``context_length_exceeded``,
    ``rate_limit_exceeded``, ...), else a descriptive one; never a Python class name.
    Used wherever an error is written out in OpenAI's shape (gateway answers, batch files)."""
    import re

    if isinstance(error, ContextWindowExceededError):
        return "context_length_exceeded"
    if isinstance(error, ContentFilterError):
        return "content_filter"
    if isinstance(error, QuotaExceededError):
        return "insufficient_quota"
    if isinstance(error, RateLimitError):
        return "rate_limit_exceeded"
    if isinstance(error, InvalidRequestError):
        return "invalid_request"
    if isinstance(error, APITimeoutError) and error.status is None:
        return "upstream_timeout"
    if isinstance(error, APIConnectionError) and error.status is None:
        return "upstream_unreachable"
    if isinstance(error, StreamInterruptedError):
        return "upstream_stream_interrupted"
    if isinstance(error, MalformedResponseError):
        return "upstream_malformed_response"
    if isinstance(error, TaskFailedError):
        return "upstream_task_failed"
    if isinstance(error, ProviderError):
        code = error.code
        if isinstance(code, str) and re.match(r"^[A-Za-z0-9_.\-]{1,64}$", code):
            return code
        return "upstream_server_error" if (status or error.status or 500) >= 500 else "upstream_error"
    if isinstance(error, ConfigError):
        return "configuration_error"
    return "internal_error"

