"""modelscope over loopback HTTP: chat, thinking, rate limits, and the image task cycle."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys

import pytest

import modelport
from modelport import errors
from modelport.testing.upstream import FakeUpstream, Reply

USER = [{"role": "user", "content": "hi"}]
TOKENS = ("MODELSCOPE_TOKEN", "MODELSCOPE_API_KEY", "MODELSCOPE_SDK_TOKEN")
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for name in (*TOKENS, "MODELSCOPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MODELSCOPE_TOKEN", "ms-token-1")


def test_token_sources_in_order(monkeypatch):
    def auth(**kwargs):
        return modelport.Client().build_request("chat", "modelscope/Qwen/Qwen3-8B", messages=USER, **kwargs).headers["Authorization"]

    monkeypatch.setenv("MODELSCOPE_API_KEY", "ms-token-2")
    monkeypatch.setenv("MODELSCOPE_SDK_TOKEN", "ms-token-3")
    assert auth(api_key="explicit") == "Bearer explicit"
    assert auth() == "Bearer ms-token-1"
    monkeypatch.delenv("MODELSCOPE_TOKEN")
    assert auth() == "Bearer ms-token-2"
    monkeypatch.delenv("MODELSCOPE_API_KEY")
    assert auth() == "Bearer ms-token-3"


def test_missing_token_fails_before_any_request(upstream, monkeypatch):
    monkeypatch.delenv("MODELSCOPE_TOKEN")
    with pytest.raises(errors.AuthenticationError) as info:
        modelport.completion("modelscope/Qwen/Qwen3-8B", USER, api_base=upstream.base_url)
    assert all(name in str(info.value) for name in TOKENS)
    assert upstream.requests == []


def test_base_url_default_and_overrides(monkeypatch):
    client = modelport.Client()
    assert client.build_request("chat", "modelscope/Qwen/Qwen3-8B", messages=USER).url == "https://api-inference.modelscope.cn/v1/chat/completions"
    monkeypatch.setenv("MODELSCOPE_API_BASE", "http://127.0.0.1:9/v1")
    assert client.build_request("chat", "modelscope/a/b", messages=USER).url == "http://127.0.0.1:9/v1/chat/completions"


def test_model_ids_with_several_slashes(upstream):
    modelport.completion("modelscope/LLM-Research/Llama-4-Scout-17B-16E-Instruct", USER, api_base=upstream.base_url)
    assert upstream.last.json["model"] == "LLM-Research/Llama-4-Scout-17B-16E-Instruct"
    assert upstream.last.headers["authorization"] == "Bearer ms-token-1"


def test_chat_sync_async_and_streaming(upstream):
    assert modelport.completion("modelscope/Qwen/Qwen3-8B", USER, api_base=upstream.base_url).choices[0].message.content == "You said: hi"
    assert upstream.last.json["enable_thinking"] is False

    async def run():
        stream = await modelport.acompletion("modelscope/Qwen/Qwen3-8B", USER, api_base=upstream.base_url, stream=True)
        return modelport.stream_to_completion([c async for c in stream])

    assert asyncio.run(run()).choices[0].message.content == "You said: hi"
    assert "enable_thinking" not in upstream.last.json and upstream.last.json["stream"] is True


def test_vision_parts_and_tools_reach_the_api(upstream):
    content = [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "https://x.invalid/a.jpg"}},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}},
    ]
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    modelport.completion("modelscope/Qwen/Qwen2.5-VL-7B-Instruct", [{"role": "user", "content": content}], tools=tools, api_base=upstream.base_url)
    assert upstream.last.json["messages"][0]["content"] == content and upstream.last.json["tools"] == tools


def test_reasoning_content_is_kept(upstream):
    upstream.reply(json={
        "id": "c", "object": "chat.completion", "created": 1, "model": "Qwen/QwQ-32B",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "4", "reasoning_content": "2+2"}, "finish_reason": "stop"}],
    })  # fmt: skip
    result = modelport.completion("modelscope/Qwen/QwQ-32B", USER, api_base=upstream.base_url)
    assert result.choices[0].message.reasoning_content == "2+2"


def test_forced_thinking_on_a_non_streaming_call_is_streamed_and_assembled(upstream):
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "Qwen/Qwen3-8B"}
    deltas = [{"role": "assistant", "reasoning_content": "Let me"}, {"reasoning_content": " think."}, {"content": "Four"}]
    events = [{**head, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**head, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}})
    upstream.reply(sse=events)
    result = modelport.completion("modelscope/Qwen/Qwen3-8B", USER, api_base=upstream.base_url, enable_thinking=True)
    assert isinstance(result, modelport.ChatCompletion) and result.object == "chat.completion"
    message = result.choices[0].message
    assert (message.reasoning_content, message.content, result.usage.total_tokens) == ("Let me think.", "Four", 8)
    sent = upstream.last.json
    assert sent["enable_thinking"] is True and sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_rate_limit_body_and_headers(upstream, samples):
    payload = samples["modelscope_429_request_limit"]["payload"]
    headers = {"modelscope-ratelimit-requests-limit": "2000", "modelscope-ratelimit-requests-remaining": "0"}
    upstream.reply(status=429, json=payload, headers=headers)
    with pytest.raises(errors.RateLimitError) as info:
        modelport.completion("modelscope/Qwen/Qwen3-8B", USER, api_base=upstream.base_url, num_retries=0)
    error = info.value
    assert error.message == "Request limit exceeded." and error.request_id == payload["errors"]["request_id"]
    assert error.details["ratelimit"] == headers
    assert error.headers["modelscope-ratelimit-requests-remaining"] == "0"


def test_rate_limit_is_retried(upstream, samples):
    upstream.reply(status=429, json=samples["modelscope_429_request_limit"]["payload"], headers={"Retry-After": "0"})
    assert modelport.completion("modelscope/Qwen/Qwen3-8B", USER, api_base=upstream.base_url).choices
    assert len(upstream.requests) == 2


def test_error_envelope_without_param(upstream, samples):
    payload = samples["modelscope_error_enable_thinking"]["payload"]
    upstream.reply(status=400, json=payload)
    with pytest.raises(errors.BadRequestError) as info:
        modelport.completion("modelscope/Qwen/Qwen3-235B-A22B-Thinking-2507", USER, api_base=upstream.base_url)
    assert info.value.code == "invalid_parameter_error" and info.value.param is None
    assert info.value.request_id == payload["request_id"] and "stream=False" in info.value.message


# --- image generation -----------------------------------------------------------------------


class TaskServer:
    """ModelScope's task API: submit returns a task id; polls walk through ``statuses``."""

    def __init__(self, statuses, final=None, throttle_polls=()):
        self.statuses = list(statuses)
        self.final = final
        self.throttle_polls = set(throttle_polls)
        self.polls = 0
        self.upstream = FakeUpstream(handler=self.handle)

    def handle(self, request):
        if request.path == "/v1/images/generations":
            return Reply(json={"task_id": "task-1", "request_id": "sub-1"})
        if request.path == "/v1/tasks/task-1":
            self.polls += 1
            if self.polls in self.throttle_polls:
                return Reply(status=429, json={"errors": {"message": "Request limit exceeded.", "request_id": "t"}}, headers={"Retry-After": "0"})
            status = self.statuses.pop(0) if self.statuses else "RUNNING"
            if status == "SUCCEED":
                return Reply(json={"task_status": "SUCCEED", "output_images": [f"{self.upstream.url}/files/out.png"]})
            if status == "FAILED":
                return Reply(json=self.final)
            return Reply(json={"task_status": status})
        if request.path == "/files/out.png":
            return Reply(body=PNG, content_type="image/png")
        return None

    def __enter__(self):
        self.upstream.start()
        return self

    def __exit__(self, *exc):
        self.upstream.stop()


MODEL = "modelscope/Tongyi-MAI/Z-Image-Turbo"


def test_image_task_cycle(tmp_path):
    with TaskServer(["PENDING", "RUNNING", "PROCESSING", "SUCCEED"]) as server:
        seen = []
        result = modelport.image_generation(
            MODEL, "a cat", size="1024x1024", negative_prompt="dogs", seed=7, steps=9, guidance=3.5,
            image_url="https://x.invalid/in.png", api_base=server.upstream.base_url, poll_interval=0.01,
            on_progress=lambda status, elapsed: seen.append(status),
        )  # fmt: skip
        submit, *polls = server.upstream.requests
        assert submit.method == "POST" and submit.headers["x-modelscope-async-mode"] == "true"
        assert submit.json == {
            "model": "Tongyi-MAI/Z-Image-Turbo", "prompt": "a cat", "size": "1024x1024", "negative_prompt": "dogs",
            "seed": 7, "steps": 9, "guidance": 3.5, "image_url": "https://x.invalid/in.png",
        }  # fmt: skip
        assert [(p.method, p.path, p.headers["x-modelscope-task-type"]) for p in polls] == [("GET", "/v1/tasks/task-1", "image_generation")] * 4
        assert all(p.headers["authorization"] == "Bearer ms-token-1" for p in polls)
        assert seen == ["SUBMITTED", "PENDING", "RUNNING", "PROCESSING"]
        assert isinstance(result, modelport.ImageResponse)
        assert [d.url for d in result.data] == [f"{server.upstream.url}/files/out.png"]
        paths = modelport.save_images(result, tmp_path / "cat.png")
        assert paths == [tmp_path / "cat.png"] and paths[0].read_bytes() == PNG


def test_image_task_failure(samples):
    with TaskServer(["RUNNING", "FAILED"], final=samples["modelscope_image_task_failed"]["payload"]) as server:
        with pytest.raises(errors.TaskFailedError, match="Out of memory") as info:
            modelport.image_generation(MODEL, "x", api_base=server.upstream.base_url, poll_interval=0.01)
        assert info.value.request_id == "req-12345" and info.value.details["task_id"] == "task-1"


def test_image_task_timeout():
    with TaskServer([]) as server:
        with pytest.raises(errors.TaskFailedError, match="task_timeout"):
            modelport.image_generation(MODEL, "x", api_base=server.upstream.base_url, poll_interval=0.05, task_timeout=0.3)
        assert 1 <= server.polls <= 7  # about 0.3 / 0.05 polls, fewer on a slow machine


def test_image_task_backs_off_on_429_while_polling():
    with TaskServer(["RUNNING", "SUCCEED"], throttle_polls={1}) as server:
        result = modelport.image_generation(MODEL, "x", api_base=server.upstream.base_url, poll_interval=0.01)
        assert result.data[0].url.endswith("/files/out.png") and server.polls == 3


def test_async_image_task_and_cancellation():
    with TaskServer(["PENDING", "SUCCEED"]) as server:
        result = asyncio.run(modelport.aimage_generation(MODEL, "x", api_base=server.upstream.base_url, poll_interval=0.01))
        assert len(result.data) == 1

    with TaskServer([]) as server:  # runs forever: cancel it

        async def cancel_midway():
            task = asyncio.create_task(modelport.aimage_generation(MODEL, "x", api_base=server.upstream.base_url, poll_interval=0.05))
            deadline = asyncio.get_running_loop().time() + 10
            while server.polls < 2:
                assert not task.done(), task  # the task must still be polling
                assert asyncio.get_running_loop().time() < deadline, "the task never polled twice"
                await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.1)  # a poll already on the wire may still land
            polls = server.polls
            await asyncio.sleep(0.4)  # several poll intervals: none may follow
            return polls

        polls_at_cancel = asyncio.run(cancel_midway())
        assert server.polls == polls_at_cancel  # nothing polls after cancellation


def test_save_images_b64_and_several(tmp_path):
    response = {"created": 1, "data": [{"b64_json": base64.b64encode(PNG).decode()}, {"b64_json": base64.b64encode(b"two").decode()}]}
    paths = modelport.save_images(response, tmp_path / "pic.png")
    assert [p.name for p in paths] == ["pic.png", "pic-2.png"] and paths[1].read_bytes() == b"two"
    paths = modelport.save_images(response, str(tmp_path / "dir") + os.sep)
    assert [p.name for p in paths] == ["image-1.png", "image-2.png"]


def test_cli_image_shows_progress_and_saves(tmp_path):
    with TaskServer(["PENDING", "RUNNING", "SUCCEED"]) as server:
        out = tmp_path / "cli.png"
        result = subprocess.run(
            [sys.executable, "-m", "modelport", "image", "-m", MODEL, "a fox", "-o", str(out), "--size", "512x512",
             "--api-base", server.upstream.base_url, "--poll-interval", "0.05"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "MODELSCOPE_TOKEN": "ms-cli"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "image task pending" in result.stderr and "image task running" in result.stderr and "elapsed" in result.stderr
        assert result.stdout.strip() == str(out) and out.read_bytes() == PNG
        assert "ms-cli" not in result.stdout + result.stderr


def test_mock_image_result_skips_the_task_cycle():
    mocked = {"created": 1, "data": [{"url": "https://example.invalid/x.png"}]}
    result = modelport.image_generation(MODEL, "x", mock_response=mocked)
    assert result.to_dict() == mocked
    with pytest.raises(errors.InvalidRequestError, match="full response dict"):
        modelport.image_generation(MODEL, "x", mock_response="just text")
