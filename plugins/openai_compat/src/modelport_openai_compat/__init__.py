"""modelport providers ``openai`` and ``text-completion-openai``.

Any OpenAI-compatible endpoint speaks the wire format the core already ships as its
fallback hooks (system-message folding, the ``insufficient_quota`` billing error, the
``/v1`` hint on a 404 included), so these providers only describe themselves.
"""

from __future__ import annotations

from modelport.provider import ProviderInfo, hookimpl

__all__ = ["openai_provider", "text_completion_provider"]

_BASE = "https://api.openai.com/v1"
_BASE_ENV = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
_KEY_ENV = ("OPENAI_API_KEY",)


class OpenAIProvider:
    """``openai/<model>``: chat (with ``supports_system_message=False`` folding), embeddings, images."""

    @hookimpl
    def provider_info(self) -> ProviderInfo:
        return ProviderInfo(
            name="openai",
            api_base=_BASE,
            api_base_env=_BASE_ENV,
            api_key_env=_KEY_ENV,
            operations={"chat", "embedding", "image_generation"},
            options=("supports_system_message",),
            description="OpenAI or any OpenAI-compatible endpoint (set api_base)",
        )


class TextCompletionProvider:
    """``text-completion-openai/<model>``: the legacy ``/completions`` endpoint."""

    @hookimpl
    def provider_info(self) -> ProviderInfo:
        return ProviderInfo(
            name="text-completion-openai",
            api_base=_BASE,
            api_base_env=_BASE_ENV,
            api_key_env=_KEY_ENV,
            operations={"text_completion"},
            description="legacy /completions on OpenAI or any OpenAI-compatible endpoint",
        )


openai_provider = OpenAIProvider()
text_completion_provider = TextCompletionProvider()
