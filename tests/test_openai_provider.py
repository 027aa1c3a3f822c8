"""The openai provider: endpoint resolution, system-message folding, mock responses."""

from __future__ import annotations

import pytest

import modelport
from modelport import errors
from modelport.provider.openai import fold_system_messages


def test_default_base_and_env_overrides(monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_BASE", raising=False)
    client = modelport.Client()
    assert client.build_request("chat", "openai/gpt-4o", messages=[{"role": "user", "content": "x"}]).url == "https://api.openai.com/v1/chat/completions"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1234/v1/")
    assert client.build_request("embedding", "openai/e", input="x").url == "http://127.0.0.1:1234/v1/embeddings"
    request = client.build_request("text_completion", "text-completion-openai/d", prompt="x", api_base="http://h.invalid/v1")
    assert request.url == "http://h.invalid/v1/completions"


def test_text_completion_provider_has_no_chat():
    with pytest.raises(errors.InvalidRequestError, match="supports: text_completion"):
        modelport.completion("text-completion-openai/x", [{"role": "user", "content": "x"}], mock_response="y")


@pytest.mark.parametrize(
    "messages,expected",
    [
        (
            [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}],
            [{"role": "user", "content": "S\n\nU"}],
        ),
        (
            [{"role": "system", "content": "A"}, {"role": "system", "content": [{"type": "text", "text": "B"}]},
             {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}],
            [{"role": "user", "content": [{"type": "text", "text": "A\n\nB"}, {"type": "image_url", "image_url": {"url": "u"}}]}],
        ),
        (
            [{"role": "user", "content": "U"}, {"role": "system", "content": "late"}],
            [{"role": "user", "content": "U\n\nlate"}],
        ),
        (
            [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A"}, {"role": "system", "content": "S"}, {"role": "assistant", "content": "B"}],
            [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A"}, {"role": "user", "content": "S"}, {"role": "assistant", "content": "B"}],
        ),
        (
            [{"role": "system", "content": "only"}],
            [{"role": "user", "content": "only"}],
        ),
    ],
)  # fmt: skip
def test_fold_system_messages(messages, expected):
    folded = fold_system_messages(messages)
    assert folded == expected
    roles = [m["role"] for m in folded]
    assert all(not (a == b == "user") for a, b in zip(roles, roles[1:]))


def test_supports_system_message_false_reaches_the_wire(upstream):
    modelport.completion(
        "openai/m",
        [{"role": "system", "content": "be terse"}, {"role": "user", "content": "hi"}],
        api_base=upstream.base_url,
        supports_system_message=False,
    )
    assert upstream.last.json["messages"] == [{"role": "user", "content": "be terse\n\nhi"}]


def test_mock_response_runs_request_hooks_and_raises_errors():
    with pytest.raises(errors.InvalidRequestError, match="messages"):
        modelport.completion("openai/m", [], mock_response="x")
    with pytest.raises(errors.RateLimitError):
        modelport.completion("openai/m", [{"role": "user", "content": "x"}], mock_response=errors.RateLimitError("mocked"))
    full = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "from dict", "reasoning_content": "r"}, "finish_reason": "stop", "logprobs": None}]}
    result = modelport.completion("openai/m", [{"role": "user", "content": "x"}], mock_response=full)
    assert result.to_dict() == full


def test_none_valued_keywords_are_not_sent():
    request = modelport.Client().build_request("chat", "openai/m", messages=[{"role": "user", "content": "x"}], temperature=None, top_k=None)
    assert "temperature" not in request.json and "top_k" not in request.json


def test_typed_messages_are_accepted(upstream):
    message = modelport.Message(role="user", content=[modelport.TextPart(text="typed")])
    result = modelport.completion("openai/m", [message], api_base=upstream.base_url)
    assert result.choices[0].message.content == "You said: typed"


def test_client_repr_hides_key():
    client = modelport.Client(api_key="sk-very-secret-1")
    assert "sk-very-secret-1" not in repr(client)
    request = client.build_request("chat", "openai/m", messages=[{"role": "user", "content": "x"}])
    assert "sk-very-secret-1" not in repr(request)
    assert request.headers["Authorization"] == "Bearer sk-very-secret-1"


@pytest.mark.parametrize(
    "option,value",
    [("timeout", "soon"), ("timeout", 0), ("timeout", True), ("num_retries", -1), ("num_retries", 1.5),
     ("extra_headers", ["x"]), ("extra_headers", {"X-N": 1}), ("extra_body", "top_k=3")],
)  # fmt: skip
def test_bad_call_options_are_named(option, value):
    with pytest.raises(errors.InvalidRequestError) as info:
        modelport.completion("openai/m", [{"role": "user", "content": "x"}], mock_response="y", **{option: value})
    assert info.value.param == option and option in str(info.value)
