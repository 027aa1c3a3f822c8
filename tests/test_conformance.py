"""The conformance kit over every installed first-party provider and the sample plugin.

Each class is the one-line subclass a plugin author writes, plus the payload mappings
the provider documents (written here from the docs, not from the plugin's code).
"""

from __future__ import annotations

from typing import Any, Dict

from modelport.provider.openai import fold_system_messages
from modelport.testing import ProviderConformance


class TestOpenAI(ProviderConformance):
    provider = "openai"


class TestOpenAIWithoutSystemRole(ProviderConformance):
    provider = "openai"
    call_options = {"supports_system_message": False}

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # Documented: with supports_system_message=False, system and developer messages
        # are folded into the next user message (the public helper is the documented rule).
        body["messages"] = fold_system_messages(body["messages"])
        return body


class TestTextCompletionOpenAI(ProviderConformance):
    provider = "text-completion-openai"


class TestHostedVLLM(ProviderConformance):
    provider = "hosted_vllm"

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # Documented: file parts holding a video (a video/* data URI, or a file id / URL
        # ending in .mp4 .webm .mov .mkv .avi) become video_url parts, other files pass as
        # they are; neither tools: [] nor tool_choice is sent without tools.
        def is_video(url: str) -> bool:
            return url.startswith("data:video/") or url.lower().split("?")[0].endswith((".mp4", ".webm", ".mov", ".mkv", ".avi"))

        for message in body["messages"]:
            if isinstance(message.get("content"), list):
                parts = []
                for p in message["content"]:
                    url = (p.get("file") or {}).get("file_data") or (p.get("file") or {}).get("file_id") if p.get("type") == "file" else None
                    parts.append({"type": "video_url", "video_url": {"url": url}} if url and is_video(url) else p)
                message["content"] = parts
        if not body.get("tools"):
            body.pop("tool_choice", None)
            body.pop("tools", None)
        return body


class TestVLLMAlias(TestHostedVLLM):
    provider = "vllm"


class _ThinkingOffWhenNotStreaming(ProviderConformance):
    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # Documented for DashScope and ModelScope: non-streaming calls get
        # enable_thinking: false unless the caller set it (Qwen3 answers 400 otherwise).
        if not body.get("stream"):
            body.setdefault("enable_thinking", False)
        return body


class TestDashScope(_ThinkingOffWhenNotStreaming):
    provider = "dashscope"


class TestModelScope(_ThinkingOffWhenNotStreaming):
    provider = "modelscope"


class TestAcmeSamplePlugin(ProviderConformance):
    provider = "acme"


def test_inapplicable_operations_are_removed_not_skipped():
    assert TestTextCompletionOpenAI.test_chat_stream_rebuilds_the_response is None
    assert TestOpenAI.test_text_completion_response_survives_transform_response is None
    assert callable(TestHostedVLLM.test_text_completion_response_survives_transform_response)
    assert callable(TestDashScope.test_embedding_response_survives_transform_response)
