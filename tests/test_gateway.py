"""The gateway under a real uvicorn server on 127.0.0.1, driven by the official openai SDK."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx
import openai
import pytest

from helpers import run_server
from modelport.server import app_from_config
from modelport.testing.upstream import FakeUpstream

MASTER = "sk-gateway-master-123"
UPSTREAM_KEY = "sk-upstream-secret-456"




@pytest.fixture
def gateway(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("GATEWAY_MASTER", MASTER)
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model_list:
  - model_name: chat-model
    params: {{model: openai/gpt-up, api_base: {upstream.base_url}, api_key: {UPSTREAM_KEY}}}
  - model_name: legacy
    params: {{model: text-completion-openai/davinci, api_base: {upstream.base_url}}}
  - model_name: embedder
    params: {{model: hosted_vllm/bge, api_base: {upstream.base_url}}}
  - model_name: whisper
    params: {{model: hosted_vllm/whisper-large, api_base: {upstream.base_url}}}
  - model_name: reranker
    params: {{model: hosted_vllm/bge-reranker, api_base: {upstream.base_url}}}
router_settings: {{num_retries: 0}}
general_settings: {{master_key: os.environ/GATEWAY_MASTER}}
""")
    server, thread, url = run_server(app_from_config(str(config)))
    yield url
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def sdk(gateway):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=MASTER, max_retries=0)


def test_chat_through_the_sdk(sdk, upstream):
    result = sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "hello"}], temperature=0.3)
    assert result.choices[0].message.content == "You said: hello"
    assert upstream.last.json == {"model": "gpt-up", "messages": [{"role": "user", "content": "hello"}], "temperature": 0.3}
    assert upstream.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_streaming_through_the_sdk(sdk):
    stream = sdk.chat.completions.create(
        model="chat-model", messages=[{"role": "user", "content": "a b c"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: a b c" and chunks[-1].usage.total_tokens > 0


def test_extra_body_reaches_the_upstream(sdk, upstream):
    sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "x"}], extra_body={"top_k": 7})
    assert upstream.last.json["top_k"] == 7


def test_legacy_completions_embeddings_models(sdk, upstream):
    assert sdk.completions.create(model="legacy", prompt="hey").choices[0].text == "You wrote: hey"
    vectors = sdk.embeddings.create(model="embedder", input=["a", "b"], dimensions=3)
    assert [len(d.embedding) for d in vectors.data] == [3, 3]
    assert sorted(m.id for m in sdk.models.list()) == ["chat-model", "embedder", "legacy", "reranker", "whisper"]


def test_transcription_multipart(sdk, upstream):
    upstream.reply(json={"text": "transcribed"})
    result = sdk.audio.transcriptions.create(model="whisper", file=("a.wav", b"RIFF0000"), language="en")
    assert result.text == "transcribed"
    assert upstream.last.files["file"][:2] == ("a.wav", b"RIFF0000") and upstream.last.form["language"] == "en"
    upstream.reply(json={"text": "t", "words": []})
    sdk.audio.transcriptions.create(
        model="whisper", file=("a.wav", b"RIFF"), response_format="verbose_json", timestamp_granularities=["word", "segment"]
    )
    assert upstream.last.form_lists["timestamp_granularities[]"] == ["word", "segment"]


def test_rerank_over_http(gateway, upstream):
    upstream.reply(json={"id": "r", "model": "bge-reranker", "results": [{"index": 0, "relevance_score": 0.5, "document": {"text": "d"}}]})
    reply = httpx.post(f"{gateway}/v1/rerank", json={"model": "reranker", "query": "q", "documents": ["d"]}, headers={"Authorization": f"Bearer {MASTER}"})
    assert reply.status_code == 200 and reply.json()["results"][0]["relevance_score"] == 0.5


def test_auth_is_checked(gateway):
    bad = openai.OpenAI(base_url=f"{gateway}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "x"}])
    assert httpx.get(f"{gateway}/v1/models").status_code == 401
    assert httpx.get(f"{gateway}/health").json()["status"] == "ok"


def test_unknown_model_is_404(sdk):
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found" and "chat-model" in info.value.body["message"]


@pytest.mark.parametrize(
    "status,cls",
    [(429, openai.RateLimitError), (400, openai.BadRequestError), (401, openai.AuthenticationError), (503, openai.InternalServerError)],
)
def test_upstream_errors_keep_their_status(sdk, upstream, status, cls):
    upstream.reply(status=status, json={"error": {"message": f"upstream says {status}", "code": "c"}}, headers={"Retry-After": "0"})
    with pytest.raises(cls) as info:
        sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == status and f"upstream says {status}" in info.value.message


def test_error_inside_a_stream(sdk, upstream):
    upstream.reply(sse=[{"error": {"message": "context too long", "code": 400}}])
    with pytest.raises(openai.APIError, match="context too long"):
        list(sdk.chat.completions.create(model="chat-model", messages=[{"role": "user", "content": "x"}], stream=True))


def test_callers_cannot_redirect_the_servers_key(gateway, upstream):
    with FakeUpstream() as thief:
        reply = httpx.post(
            f"{gateway}/chat/completions",  # without /v1 too
            json={"model": "chat-model", "messages": [{"role": "user", "content": "x"}], "api_base": thief.base_url,
                  "api_key": "other", "extra_headers": {"X-Evil": "1"}},
            headers={"Authorization": f"Bearer {MASTER}"},
        )  # fmt: skip
        assert reply.status_code == 200
        assert thief.requests == []
        assert reply.headers["x-modelport-ignored-params"] == "api_base,api_key,extra_headers"
        assert upstream.last.headers["authorization"] == f"Bearer {UPSTREAM_KEY}" and "x-evil" not in upstream.last.headers


def test_bad_json_is_a_400(gateway):
    reply = httpx.post(f"{gateway}/v1/chat/completions", content=b"{not json", headers={"Authorization": f"Bearer {MASTER}"})
    assert reply.status_code == 400 and "not valid JSON" in reply.json()["error"]["message"]


def test_modelport_serve_command(tmp_path, upstream):
    config = tmp_path / "serve.yaml"
    config.write_text(f"model_list:\n  - model_name: m\n    params: {{model: openai/x, api_base: {upstream.base_url}}}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "modelport", "serve", "--config", str(config), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="any", max_retries=0)
        deadline = time.monotonic() + 30
        while True:
            try:
                result = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "served"}])
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert result.choices[0].message.content == "You said: served"
    finally:
        process.terminate()
        process.wait(10)


def test_image_generation_through_the_sdk(tmp_path, monkeypatch):
    from test_modelscope import TaskServer

    monkeypatch.setenv("MODELSCOPE_TOKEN", "ms-token")
    with TaskServer(["RUNNING", "SUCCEED"]) as tasks:
        config = tmp_path / "images.yaml"
        config.write_text(
            "model_list:\n  - model_name: painter\n"
            f"    params: {{model: modelscope/Tongyi-MAI/Z-Image-Turbo, api_base: {tasks.upstream.base_url}, poll_interval: 0.01}}\n"
        )
        server, thread, url = run_server(app_from_config(str(config)))
        try:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="any", max_retries=0)
            result = client.images.generate(model="painter", prompt="a fox", size="512x512")
            assert result.data[0].url.endswith("/files/out.png")
            submit = tasks.upstream.requests[0]
            assert submit.json == {"model": "Tongyi-MAI/Z-Image-Turbo", "prompt": "a fox", "size": "512x512"}
        finally:
            server.should_exit = True
            thread.join(10)
