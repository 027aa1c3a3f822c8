"""modelport: one OpenAI-shaped API over pluggable LLM providers.

    import modelport
    r = modelport.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

Providers are separate distributions found through the ``modelport.providers`` entry
point group and imported only when a call names them; ``import modelport`` imports no
plugin, no HTTP library, no event loop and no TLS. Plugin authors import
``modelport.provider`` (the provider toolkit), not this module's internals.
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional

__version__ = "0.2.0"  # before the imports below: modules they load may read it

from . import errors, types
from ._images import save_images
from ._rebuild import stream_to_completion
from .client import AsyncClient, Client, providers
from .errors import *  # noqa: F401,F403  (every error class is importable from modelport)
from .types import *  # noqa: F401,F403
from .types import EmbeddingResponse, ImageResponse, RerankResponse, Transcription

# Loaded on first use so that `import modelport` imports neither pluggy nor entry-point
# machinery: a plugin's `from modelport import hookimpl` pays for pluggy, an app's import does not.
_LAZY = {
    "Stream": ("_streaming", "Stream"),
    "AsyncStream": ("_streaming", "AsyncStream"),
    "registry": ("_registry", "registry"),
    "register_provider": ("_registry", "register_provider"),
    "ProviderListing": ("_registry", "ProviderListing"),
    "load_config": ("routing", "load_config"),
    "Router": ("routing", "Router"),
    "Timeout": ("transport", "Timeout"),
    "batch_completion": ("batch", "batch_completion"),
    "abatch_completion": ("batch", "abatch_completion"),
    "completion_cost": ("catalog", "completion_cost"),
    "cost_per_token": ("catalog", "cost_per_token"),
    "get_model_info": ("catalog", "get_model_info"),
    # The provider toolkit's names, for code written against v1's top-level imports;
    # plugins import them from modelport.provider.
    "hookimpl": ("provider", "hookimpl"),
    "ProviderInfo": ("provider", "ProviderInfo"),
    "Call": ("provider", "Call"),
    "Endpoint": ("provider", "Endpoint"),
    "WireRequest": ("provider", "WireRequest"),
    "WireResponse": ("provider", "WireResponse"),
    "StreamEvent": ("provider", "StreamEvent"),
    "ServerSentEvent": ("provider", "ServerSentEvent"),
    "FollowUp": ("provider", "FollowUp"),
    "Step": ("provider", "Step"),
    "END_OF_STREAM": ("provider", "END_OF_STREAM"),
    "IGNORE_EVENT": ("provider", "IGNORE_EVENT"),
    "SSEDecoder": ("provider", "SSEDecoder"),
    "NDJSONDecoder": ("provider", "NDJSONDecoder"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_lock = threading.Lock()
_default_client: Optional[Client] = None
_default_async_client: Optional[AsyncClient] = None


def default_client() -> Client:
    """The shared client behind the module-level functions."""
    global _default_client
    if _default_client is None:
        with _lock:
            if _default_client is None:
                _default_client = Client()
                _default_client._shared = True  # lives as long as the process: no unclosed warning
    return _default_client


def default_async_client() -> AsyncClient:
    global _default_async_client
    if _default_async_client is None:
        with _lock:
            if _default_async_client is None:
                _default_async_client = AsyncClient()
    return _default_async_client


def responses(model: str, input: Any = None, **kwargs: Any) -> Any:
    """OpenAI's Responses API over any provider's chat (see ``modelport.responses_api``)."""
    from . import responses_api

    return responses_api.responses(default_client(), model, input, **kwargs)


async def aresponses(model: str, input: Any = None, **kwargs: Any) -> Any:
    from . import responses_api

    return await responses_api.aresponses(default_async_client(), model, input, **kwargs)


def stream_chunk_builder(chunks: List[Any], messages: Optional[List[Any]] = None) -> Any:
    """LiteLLM's name for ``stream_to_completion`` (``messages`` is accepted and unused)."""
    return stream_to_completion(chunks)


def completion(model: str, messages: List[Any], **kwargs: Any) -> Any:
    """Chat completion through the shared client; see ``Client.completion``."""
    return default_client().completion(model, messages, **kwargs)


async def acompletion(model: str, messages: List[Any], **kwargs: Any) -> Any:
    return await default_async_client().completion(model, messages, **kwargs)


def text_completion(model: str, prompt: Any, **kwargs: Any) -> Any:
    return default_client().text_completion(model, prompt, **kwargs)


async def atext_completion(model: str, prompt: Any, **kwargs: Any) -> Any:
    return await default_async_client().text_completion(model, prompt, **kwargs)


def embedding(model: str, input: Any, **kwargs: Any) -> EmbeddingResponse:
    return default_client().embedding(model, input, **kwargs)


async def aembedding(model: str, input: Any, **kwargs: Any) -> EmbeddingResponse:
    return await default_async_client().embedding(model, input, **kwargs)


def rerank(model: str, query: str, documents: List[Any], **kwargs: Any) -> RerankResponse:
    return default_client().rerank(model, query, documents, **kwargs)


async def arerank(model: str, query: str, documents: List[Any], **kwargs: Any) -> RerankResponse:
    return await default_async_client().rerank(model, query, documents, **kwargs)


def transcription(model: str, file: Any, **kwargs: Any) -> Transcription:
    return default_client().transcription(model, file, **kwargs)


async def atranscription(model: str, file: Any, **kwargs: Any) -> Transcription:
    return await default_async_client().transcription(model, file, **kwargs)


def image_generation(model: str, prompt: str, **kwargs: Any) -> ImageResponse:
    return default_client().image_generation(model, prompt, **kwargs)


async def aimage_generation(model: str, prompt: str, **kwargs: Any) -> ImageResponse:
    return await default_async_client().image_generation(model, prompt, **kwargs)


__all__ = [
    "__version__",
    "errors",
    "types",
    "Client",
    "AsyncClient",
    "Stream",
    "AsyncStream",
    "completion",
    "acompletion",
    "text_completion",
    "atext_completion",
    "embedding",
    "aembedding",
    "rerank",
    "arerank",
    "transcription",
    "atranscription",
    "image_generation",
    "aimage_generation",
    "stream_to_completion",
    "stream_chunk_builder",
    "responses",
    "aresponses",
    "batch_completion",
    "abatch_completion",
    "completion_cost",
    "cost_per_token",
    "get_model_info",
    "save_images",
    "SSEDecoder",
    "NDJSONDecoder",
    "Timeout",
    "Router",
    "StreamEvent",
    "Step",
    "providers",
    "ProviderListing",
    "register_provider",
    "registry",
    "load_config",
    "default_client",
    "default_async_client",
    "hookimpl",
    "ProviderInfo",
    "Call",
    "Endpoint",
    "WireRequest",
    "WireResponse",
    "ServerSentEvent",
    "FollowUp",
    "END_OF_STREAM",
    "IGNORE_EVENT",
    *errors.__all__,
    *types.__all__,
]
