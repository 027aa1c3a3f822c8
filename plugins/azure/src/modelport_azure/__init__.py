"""modelport provider ``azure``: Azure OpenAI, addressed as ``azure/<deployment>``.

Azure OpenAI serves OpenAI's payloads, so what this plugin changes is where a call goes
and how it authenticates, plus Azure's own error and filter fields:

- **Address.** The model id is the *deployment* name. A dated ``api-version`` (option
  ``api_version``, else ``AZURE_API_VERSION``, else ``DEFAULT_API_VERSION``) targets
  ``{base}/openai/deployments/{deployment}/<operation>?api-version=...`` and the body goes
  without ``model`` (Azure reads the deployment from the path). ``api_version="v1"`` or
  ``"preview"`` targets the v1 surface, ``{base}/openai/v1/<operation>`` (``?api-version=preview``
  for ``"preview"``), where ``model`` in the body is the deployment name. A base URL that
  already names a deployment (``.../openai/deployments/<name>``) or the v1 surface
  (``.../openai/v1``) is used as it is.
- **Auth.** A key goes in the ``api-key`` header (not ``Authorization``); a Microsoft Entra
  ID token (option ``azure_ad_token``, or ``AZURE_AD_TOKEN`` when there is no key) goes as
  ``Authorization: Bearer``. Neither is a body field: both options configure the call.
- **Filters.** Azure adds ``prompt_filter_results`` (top level) and ``content_filter_results``
  (per choice); they are kept as they are. A stream opens with a chunk whose ``choices`` is
  empty and whose ``id`` / ``object`` / ``model`` are ``""`` (``created`` 0): it is passed on
  as sent. Asynchronous-filter streams also send mid-stream annotation chunks with those
  placeholder values next to real choices; there the placeholders are dropped, so rebuilding
  the stream keeps the real id, model and timestamp.
- **Errors.** OpenAI's envelope; ``content_filter`` (``innererror.code``
  ``ResponsibleAIPolicyViolation``) is a ``ContentFilterError`` with the filter verdicts on
  ``details["content_filter_result"]``; ``context_length_exceeded`` is a
  ``ContextWindowExceededError``; a 401 says which header carried the credential; a 404
  names the deployment and the api-version; a 429 is retried after ``retry-after``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Type
from urllib.parse import quote

from modelport.provider import (
    Call,
    Endpoint,
    ProviderInfo,
    StreamEvent,
    WireRequest,
    WireResponse,
    env_value,
    errors,
    hookimpl,
    openai,
)

__all__ = [
    "Target",
    "DEFAULT_API_VERSION",
    "V1_VERSIONS",
    "BASE_ENV",
    "KEY_ENV",
    "TOKEN_ENV",
    "VERSION_ENV",
    "PATHS",
    "target",
]

#: The latest GA data-plane inference api-version (2024-10-21), used when none is given.
DEFAULT_API_VERSION = "2024-10-21"
#: ``api_version`` values that select the v1 surface (``/openai/v1/...``).
V1_VERSIONS = ("v1", "preview")
BASE_ENV = ("AZURE_API_BASE", "AZURE_OPENAI_ENDPOINT")
KEY_ENV = ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY")
TOKEN_ENV = ("AZURE_AD_TOKEN",)
VERSION_ENV = ("AZURE_API_VERSION",)
#: Operation -> path under the deployment (or under ``/openai/v1``).
PATHS = {
    "chat": "/chat/completions",
    "text_completion": "/completions",
    "embedding": "/embeddings",
    "image_generation": "/images/generations",
}
_DEPLOYMENTS = "/openai/deployments/"
#: Placeholder head values of Azure's filter-only stream chunks.
_PLACEHOLDERS = {"id": "", "object": "", "model": "", "created": 0}
_FILTER_CODES = ("content_filter", "content_policy_violation", "contentFilter")
_RETRY_IN_MESSAGE = re.compile(r"retry after (\d+(?:\.\d+)?) seconds?", re.IGNORECASE)


@hookimpl
def provider_info() -> ProviderInfo:
    return ProviderInfo(
        name="azure",
        api_base_env=BASE_ENV,
        api_key_env=KEY_ENV,
        operations=set(PATHS),
        options=("azure_ad_token", "api_version"),
        # The Entra ID token is a credential: hidden in reprs, --dry-run and error texts.
        secret_fields={"azure_ad_token"},
        description="Azure OpenAI deployments (api-key or Entra ID token; dated api-versions or v1)",
    )


# --- where a call goes -------------------------------------------------------------------


class Target(NamedTuple):
    """Where a call goes: base URL, path (with the query), api-version, surface, deployment."""

    base_url: str
    path: str
    api_version: str
    v1: bool
    deployment: str


def _api_version(call: Call) -> str:
    return str(call.options.get("api_version") or env_value(VERSION_ENV) or DEFAULT_API_VERSION)


def target(call: Call) -> Target:
    """The URL parts for ``call``; ``ConfigError`` without a resource endpoint."""
    base = call.api_base or env_value(BASE_ENV)
    if not base:
        raise errors.ConfigError(
            "provider 'azure' needs the resource endpoint (e.g. https://my-resource.openai.azure.com):"
            " pass api_base=... or set AZURE_API_BASE (or AZURE_OPENAI_ENDPOINT)"
        )
    base = base.split("?", 1)[0].rstrip("/")  # the api-version comes from api_version, not the URL
    version = _api_version(call)
    operation = PATHS[call.operation]
    if _DEPLOYMENTS in base:  # a deployment URL: used as it is
        deployment = base.split(_DEPLOYMENTS, 1)[1].split("/", 1)[0]
        path = "" if base.endswith(operation) else operation
        return Target(base, f"{path}?api-version={quote(version)}", version, False, deployment)
    if base.endswith("/openai"):
        base = base[: -len("/openai")]
    if version in V1_VERSIONS or base.endswith("/openai/v1"):
        root = base if base.endswith("/openai/v1") else base + "/openai/v1"
        query = "?api-version=preview" if version == "preview" else ""
        return Target(root, operation + query, version, True, call.model)
    path = f"{_DEPLOYMENTS}{quote(call.model, safe='')}{operation}?api-version={quote(version)}"
    return Target(base, path, version, False, call.model)


def _credential(call: Call) -> Dict[str, str]:
    """``azure_ad_token=`` first, then the key (``api_key=`` or its env vars), then ``AZURE_AD_TOKEN``."""
    token = call.options.get("azure_ad_token")
    if token:
        return {"Authorization": f"Bearer {token}"}
    if call.api_key:
        return {"api-key": call.api_key}
    token = env_value(TOKEN_ENV)
    return {"Authorization": f"Bearer {token}"} if token else {}


@hookimpl
def resolve_endpoint(call: Call) -> Endpoint:
    where = target(call)
    headers = _credential(call)
    if not headers and not call.dry_run:
        raise errors.AuthenticationError(
            "no Azure OpenAI credential: pass api_key=... or set AZURE_API_KEY (or AZURE_OPENAI_API_KEY)"
            " for the api-key header, or pass azure_ad_token=... or set AZURE_AD_TOKEN for an Entra ID token",
            provider=call.provider,
            model=call.model,
        )
    return Endpoint(base_url=where.base_url, path=where.path, headers=headers)


@hookimpl
def transform_request(call: Call, endpoint: Endpoint) -> WireRequest:
    body = dict(call.body)
    if not target(call).v1:
        body.pop("model", None)  # the deployment is in the path
    return openai.build_request(call, endpoint, body)


# --- streams -----------------------------------------------------------------------------


@hookimpl
def parse_stream_chunk(call: Call, event: StreamEvent) -> Any:
    chunk = openai.parse_chunk(call, event)
    if type(chunk) is dict and chunk.get("choices") and chunk.get("id") == "":
        # An asynchronous-filter annotation next to real choices: its placeholder head
        # would overwrite the real one when the stream is rebuilt.
        return {k: v for k, v in chunk.items() if k not in _PLACEHOLDERS or v != _PLACEHOLDERS[k]}
    return chunk


@hookimpl
def encode_stream(call: Call, chunks: List[Dict[str, Any]]) -> bytes:
    return openai.encode_stream(call, chunks)  # Azure frames streams exactly like OpenAI


# --- errors ------------------------------------------------------------------------------


def _inner(body: Any) -> Dict[str, Any]:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return {}
    inner = error.get("innererror", error.get("inner_error"))
    return inner if isinstance(inner, dict) else {}


def _sent_headers(call: Call, response: WireResponse) -> Mapping[str, str]:
    return response.request.headers if response.request is not None else _credential(call)


def _auth_hint(call: Call, response: WireResponse) -> str:
    names = {name.lower() for name in _sent_headers(call, response)}
    if "api-key" in names:
        return "the key was sent in the api-key header: check it belongs to this resource (AZURE_API_KEY / api_key)"
    if "authorization" in names:
        return (
            "an Entra ID token was sent as Authorization: Bearer: check it has not expired and was issued"
            " for https://cognitiveservices.azure.com (azure_ad_token / AZURE_AD_TOKEN)"
        )
    return "no api-key or Authorization header was sent"


@hookimpl
def map_error(call: Call, response: WireResponse) -> errors.ProviderError:
    fields = openai.error_fields(response)
    code = str(fields["code"] or "")
    inner = _inner(response.json_or_none())
    cls: Optional[Type[errors.ProviderError]] = None
    extra: Dict[str, Any] = {}
    if code in _FILTER_CODES or inner.get("code") == "ResponsibleAIPolicyViolation":
        cls = errors.ContentFilterError
        verdicts = inner.get("content_filter_result", inner.get("content_filter_results"))
        extra["details"] = {"content_filter_result": verdicts, "innererror": inner}
    elif code == "context_length_exceeded":
        cls = errors.ContextWindowExceededError
    elif response.status == 401:
        extra["message"] = f"{fields['message']} ({_auth_hint(call, response)})"
    elif response.status == 404:
        try:
            where = target(call)
            at = f"deployment {where.deployment!r}, api-version {where.api_version}"
        except errors.ConfigError:
            at = f"deployment {call.model!r}, api-version {_api_version(call)}"
        extra["message"] = (
            f"{fields['message']} ({at}: check the deployment name, not the model name, and that"
            " the api-version supports this operation)"
        )
    elif response.status == 429 and "retry-after" not in response.headers and "retry-after-ms" not in response.headers:
        found = _RETRY_IN_MESSAGE.search(fields["message"])
        if found:
            extra["retry_after"] = float(found.group(1))
    return openai.build_error(call, response, cls, fields=fields, **extra)


@hookimpl
def encode_error(call: Call, status: int, message: str, code: Optional[str]) -> WireResponse:
    # Azure's envelope: {"error": {"code", "message"}}, the code a string ("401" when it has no name).
    body = {"error": {"code": code or str(status), "message": message}}
    return WireResponse(status, {"content-type": "application/json"}, openai.dumps(body).encode("utf-8"))
