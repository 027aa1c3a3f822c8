"""dashscope's native API over loopback HTTP: the text-to-image task cycle and multimodal embeddings.

The fake below speaks Model Studio's native wire as its API reference documents it:
``POST /api/v1/services/aigc/text2image/image-synthesis`` (needs ``X-DashScope-Async:
enable``; answers ``{"output": {"task_id", "task_status": "PENDING"}, "request_id"}``),
``GET /api/v1/tasks/{task_id}`` (``PENDING`` / ``RUNNING`` / ``SUCCEEDED`` with
``output.results[].url`` / ``FAILED`` ...), flat error bodies ``{"code", "message",
"request_id"}``, ``POST /api/v1/services/embeddings/multimodal-embedding/multimodal-embedding``,
and the compatible-mode ``/compatible-mode/v1/embeddings`` for text embedding models.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional

import openai as openai_sdk
import pytest

import modelport
from helpers import run_server as _run_server
from modelport import errors
from modelport.provider import Call, Step
from modelport.server import app_from_config

KEY = "sk-dashscope-images-77"
MODEL = "dashscope/qwen-image"
TASK = "0385dc79-5ff8-4d82-bcb6-task"
SUBMIT = "/api/v1/services/aigc/text2image/image-synthesis"
POLL = f"/api/v1/tasks/{TASK}"
EMBED = "/api/v1/services/embeddings/multimodal-embedding/multimodal-embedding"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
FAST = {"poll_interval": 0.01, "task_timeout": 10}  # bounded: a wrong branch fails, never hangs


class Recorded:
    def __init__(self, method: str, path: str, headers: Dict[str, str], body: bytes) -> None:
        self.method, self.path, self.headers, self.body = method, path, headers, body
        self.json = json.loads(body) if body else None


class NativeFake:
    """Model Studio's native API on 127.0.0.1 (port 0), scripted per test.

    ``statuses`` are the ``task_status`` values the polls walk through (``RUNNING`` once
    they run out); ``results`` is the ``output.results`` of a ``SUCCEEDED`` task;
    ``failure`` the ``output`` fields of a failed one; ``throttle_polls`` the poll numbers
    answered with a 429; ``submit_error`` a (status, body) for the submit.
    """

    def __init__(self, statuses=("RUNNING", "SUCCEEDED"), results=None, failure=None, throttle_polls=(), submit_error=None):
        self.statuses = list(statuses)
        self.results = results
        self.failure = failure or {}
        self.throttle_polls = set(throttle_polls)
        self.submit_error = submit_error
        self.requests: List[Recorded] = []
        self.polls = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return None

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                fake.requests.append(request)
                status, payload, headers = fake.answer(request)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                content_type = "image/png" if isinstance(payload, bytes) else "application/json"
                for name, value in {"Content-Type": content_type, "Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self) -> "NativeFake":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def api_requests(self) -> List[Recorded]:
        return [r for r in self.requests if not r.path.startswith("/files/")]

    # -- the API ---------------------------------------------------------------------

    def answer(self, request: Recorded):
        if request.path.startswith("/files/"):
            return 200, PNG, {}
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return 401, {"code": "InvalidApiKey", "message": "Invalid API-key provided.", "request_id": "req-auth"}, {}
        if request.method == "POST" and request.path == SUBMIT:
            return self.submit(request)
        if request.method == "GET" and request.path == POLL:
            return self.poll()
        if request.method == "POST" and request.path == EMBED:
            return self.multimodal_embedding(request)
        if request.method == "POST" and request.path == "/compatible-mode/v1/embeddings":
            inputs = request.json["input"]
            data = [{"object": "embedding", "index": i, "embedding": [float(len(text))]} for i, text in enumerate(inputs)]
            usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
            return 200, {"object": "list", "data": data, "model": request.json["model"], "usage": usage, "id": "emb"}, {}
        return 404, {"code": "NotFound", "message": f"no route {request.method} {request.path}", "request_id": "req-404"}, {}

    def submit(self, request: Recorded):
        if request.headers.get("x-dashscope-async") != "enable":
            return 403, {"code": "AccessDenied", "message": "current user api does not support synchronous calls", "request_id": "req-sync"}, {}
        if self.submit_error:
            return self.submit_error[0], self.submit_error[1], {}
        return 200, {"output": {"task_status": "PENDING", "task_id": TASK}, "request_id": "req-submit"}, {}

    def poll(self):
        self.polls += 1
        if self.polls in self.throttle_polls:
            body = {"code": "Throttling.RateQuota", "message": "Requests rate limit exceeded, please try again later.", "request_id": "req-429"}
            return 429, body, {"Retry-After": "0"}
        status = self.statuses.pop(0) if self.statuses else "RUNNING"
        output: Dict[str, Any] = {"task_id": TASK, "task_status": status, "submit_time": "2026-12-01 10:00:00.000"}
        if status == "SUCCEEDED":
            results = self.results if self.results is not None else [
                {"orig_prompt": "a fox", "actual_prompt": "a red fox in the snow, soft light", "url": f"{self.url}/files/out.png"}
            ]
            output.update(results=results, task_metrics={"TOTAL": len(results), "SUCCEEDED": sum("url" in r for r in results), "FAILED": sum("url" not in r for r in results)})
            return 200, {"request_id": f"req-poll-{self.polls}", "output": output, "usage": {"image_count": sum("url" in r for r in results)}}, {}
        if status in ("FAILED", "CANCELED", "UNKNOWN"):
            output.update(self.failure)
        return 200, {"request_id": f"req-poll-{self.polls}", "output": output}, {}

    def multimodal_embedding(self, request: Recorded):
        contents = request.json["input"]["contents"]
        embeddings = []
        for index, content in enumerate(contents):
            kind = next(k for k in ("text", "image", "video") if k in content)
            embeddings.append({"index": index, "embedding": [index + 0.5, -0.25, 0.125], "type": kind})
        embeddings.reverse()  # the API does not promise order: the index does
        usage = {"input_tokens": sum(len(c.get("text", "").split()) for c in contents), "image_count": sum("image" in c for c in contents), "duration": 0}
        return 200, {"output": {"embeddings": embeddings}, "usage": usage, "request_id": "req-embed"}, {}


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    for name in ("DASHSCOPE_REGION", "DASHSCOPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)


def built(**kwargs):
    return modelport.Client().build_request("image_generation", MODEL, prompt=kwargs.pop("prompt", "a fox"), **kwargs)


# --- provider info and endpoints -----------------------------------------------------------


def test_providers_lists_image_generation_and_the_task_options():
    row = next(r for r in modelport.providers() if r.name == "dashscope")
    assert row.operations == ("chat", "embedding", "image_generation", "rerank")
    assert {"region", "poll_interval", "task_timeout"} <= set(row.info.options)


def test_native_roots_by_region_and_from_an_explicit_base(monkeypatch):
    assert built().url == "https://dashscope-intl.aliyuncs.com/api/v1/services/aigc/text2image/image-synthesis"
    assert built(region="cn").url == "https://dashscope.aliyuncs.com/api/v1/services/aigc/text2image/image-synthesis"
    assert built(region="us").url == "https://dashscope-us.aliyuncs.com/api/v1/services/aigc/text2image/image-synthesis"
    for base in ("http://127.0.0.1:9/compatible-mode/v1", "http://127.0.0.1:9/compatible-mode/v1/", "http://127.0.0.1:9", "http://127.0.0.1:9/api/v1"):
        assert built(api_base=base).url == "http://127.0.0.1:9/api/v1/services/aigc/text2image/image-synthesis", base
    monkeypatch.setenv("DASHSCOPE_API_BASE", "http://127.0.0.1:8/compatible-mode/v1")
    assert built().url == "http://127.0.0.1:8/api/v1/services/aigc/text2image/image-synthesis"
    request = built()
    assert request.headers["X-DashScope-Async"] == "enable" and request.headers["Authorization"] == f"Bearer {KEY}"


def test_regions_without_image_synthesis_are_refused_before_sending():
    with pytest.raises(errors.InvalidRequestError) as info:
        built(region="hk")
    assert info.value.param == "region" and "hk" in str(info.value)
    assert all(host in str(info.value) for host in ("dashscope-intl.aliyuncs.com", "dashscope-us.aliyuncs.com", "dashscope.aliyuncs.com"))
    with pytest.raises(errors.InvalidRequestError, match="multimodal embedding"):
        modelport.Client().build_request("embedding", "dashscope/multimodal-embedding-v1", input=["x"], region="us")


def test_request_mapping_and_checks_before_sending():
    body = built(size="1024x1024", n=2, negative_prompt="blur", seed=0, prompt_extend=False, watermark=True, user="u1", response_format="url").json
    assert body == {
        "model": "qwen-image",
        "input": {"prompt": "a fox", "negative_prompt": "blur"},
        "parameters": {"size": "1024*1024", "n": 2, "seed": 0, "prompt_extend": False, "watermark": True},
    }
    assert built(size="1328*1328").json["parameters"] == {"size": "1328*1328"}
    assert built().json == {"model": "qwen-image", "input": {"prompt": "a fox"}}
    # provider fields without an OpenAI name go to parameters; input/parameters objects merge
    assert built(ref_mode="repaint", extra_body={"input": {"ref_img": "https://x.invalid/r.png"}}).json == {
        "model": "qwen-image", "input": {"ref_img": "https://x.invalid/r.png", "prompt": "a fox"}, "parameters": {"ref_mode": "repaint"},
    }  # fmt: skip
    bad = [
        ("size", "big"), ("size", "1024"), ("size", 1024), ("n", 0), ("n", 1.5), ("seed", -1), ("seed", 2**31),
        ("prompt_extend", "yes"), ("watermark", 1), ("negative_prompt", 3), ("poll_interval", 0), ("task_timeout", -5),
    ]  # fmt: skip
    for param, value in bad:
        with pytest.raises(errors.InvalidRequestError) as info:
            built(**{param: value})
        assert info.value.param == param, (param, value)
    with pytest.raises(errors.InvalidRequestError) as info:
        built(prompt=" ")
    assert info.value.param == "prompt"


def test_b64_json_and_openai_only_params_raise_without_a_request():
    with NativeFake() as fake:
        with pytest.raises(errors.InvalidRequestError) as info:
            modelport.image_generation(MODEL, "a fox", response_format="b64_json", api_base=fake.url, **FAST)
        assert info.value.param == "response_format" and "b64_json" in str(info.value) and "URL" in str(info.value)
        with pytest.raises(errors.InvalidRequestError, match="quality"):
            modelport.image_generation(MODEL, "a fox", quality="hd", api_base=fake.url, **FAST)
        assert fake.requests == []


# --- the task cycle ---------------------------------------------------------------------------


def test_image_task_cycle(tmp_path):
    with NativeFake(statuses=["PENDING", "RUNNING", "SUCCEEDED"]) as fake:
        seen = []
        result = modelport.image_generation(
            MODEL, "a fox", size="1328x1328", n=1, negative_prompt="dogs", seed=42, prompt_extend=True, watermark=False,
            api_base=fake.url + "/compatible-mode/v1", on_progress=lambda status, elapsed: seen.append(status), **FAST,
        )  # fmt: skip
        submit, *polls = fake.api_requests
        assert (submit.method, submit.path) == ("POST", SUBMIT)
        assert submit.headers["x-dashscope-async"] == "enable" and submit.headers["authorization"] == f"Bearer {KEY}"
        assert submit.json == {
            "model": "qwen-image",
            "input": {"prompt": "a fox", "negative_prompt": "dogs"},
            "parameters": {"size": "1328*1328", "n": 1, "seed": 42, "prompt_extend": True, "watermark": False},
        }
        assert [(p.method, p.path, p.body) for p in polls] == [("GET", POLL, b"")] * 3
        assert all(p.headers["authorization"] == f"Bearer {KEY}" and "x-dashscope-async" not in p.headers for p in polls)
        assert seen == ["PENDING", "PENDING", "RUNNING"]  # the submit's status, then each unfinished poll's
        assert isinstance(result, modelport.ImageResponse)
        assert result.to_dict()["data"] == [
            {"url": f"{fake.url}/files/out.png", "revised_prompt": "a red fox in the snow, soft light", "orig_prompt": "a fox"}
        ]
        extras = result.to_dict()
        assert (extras["usage"], extras["task_id"], extras["request_id"]) == ({"image_count": 1}, TASK, "req-poll-3")
        assert abs(result.created - time.time()) < 60 and "failed_images" not in result.to_dict()
        paths = modelport.save_images(result, tmp_path / "fox.png")
        assert paths == [tmp_path / "fox.png"] and paths[0].read_bytes() == PNG


def test_async_image_task():
    with NativeFake(statuses=["RUNNING", "RUNNING", "SUCCEEDED"]) as fake:
        seen = []

        async def run():
            return await modelport.aimage_generation(
                MODEL, "a fox", size="1024*1024", api_base=fake.url, on_progress=lambda s, e: seen.append(s), **FAST
            )

        result = asyncio.run(run())
        assert [d.url for d in result.data] == [f"{fake.url}/files/out.png"]
        assert [r.path for r in fake.api_requests] == [SUBMIT, POLL, POLL, POLL]
        assert fake.api_requests[0].json["parameters"] == {"size": "1024*1024"}
        assert seen == ["PENDING", "RUNNING", "RUNNING"]


def test_failed_sub_images_are_reported_and_the_rest_kept():
    results = [
        {"url": "https://x.invalid/1.png", "actual_prompt": "p1"},
        {"code": "InternalError.Timeout", "message": "An internal timeout error has occured during execution."},
        {"url": "https://x.invalid/3.png"},
    ]
    with NativeFake(statuses=["SUCCEEDED"], results=results) as fake:
        result = modelport.image_generation("dashscope/wan2.2-t2i-flash", "x", n=3, api_base=fake.url, **FAST)
    assert [d.url for d in result.data] == ["https://x.invalid/1.png", "https://x.invalid/3.png"]
    extras = result.to_dict()
    assert extras["failed_images"] == [{"index": 1, "code": "InternalError.Timeout", "message": "An internal timeout error has occured during execution."}]
    assert extras["usage"] == {"image_count": 2} and extras["task_metrics"] == {"TOTAL": 3, "SUCCEEDED": 2, "FAILED": 1}


def test_a_task_whose_every_image_failed_raises():
    results = [{"code": "DataInspectionFailed", "message": "Output data may contain inappropriate content."}]
    with NativeFake(statuses=["SUCCEEDED"], results=results) as fake:
        with pytest.raises(errors.TaskFailedError, match="inappropriate") as info:
            modelport.image_generation(MODEL, "x", api_base=fake.url, **FAST)
    assert info.value.code == "DataInspectionFailed" and info.value.details["task_id"] == TASK


@pytest.mark.parametrize("status", ["FAILED", "CANCELED", "UNKNOWN"])
def test_failed_tasks_raise_with_the_upstream_code(status):
    failure = {"code": "InvalidParameter", "message": "The size is not match the allowed size ['1664*928', '1328*1328']"}
    with NativeFake(statuses=["RUNNING", status], failure=failure) as fake:
        with pytest.raises(errors.TaskFailedError) as info:
            modelport.image_generation(MODEL, "x", api_base=fake.url, **FAST)
        error = info.value
        assert "allowed size" in error.message and status in error.message
        assert error.code == "InvalidParameter" and error.request_id == "req-poll-2"
        assert error.details == {"task_id": TASK, "task_status": status} and error.provider == "dashscope"
        assert fake.polls == 2


def test_a_429_while_polling_is_retried():
    with NativeFake(statuses=["RUNNING", "SUCCEEDED"], throttle_polls={2}) as fake:
        result = modelport.image_generation(MODEL, "x", api_base=fake.url, **FAST)
        assert result.data[0].url.endswith("/files/out.png")
        assert fake.polls == 3 and [r.path for r in fake.api_requests] == [SUBMIT, POLL, POLL, POLL]


def test_submit_errors_are_typed_and_not_retried():
    error_body = {"code": "InvalidParameter", "message": "Model not exist.", "request_id": "req-400"}
    with NativeFake(submit_error=(400, error_body)) as fake:
        with pytest.raises(errors.BadRequestError) as info:
            modelport.image_generation("dashscope/no-such-model", "x", api_base=fake.url, **FAST)
        assert info.value.code == "InvalidParameter" and info.value.request_id == "req-400" and "Model not exist" in info.value.message
        assert len(fake.requests) == 1
    with NativeFake() as fake:
        with pytest.raises(errors.AuthenticationError, match="bound to a region"):
            modelport.image_generation(MODEL, "x", api_base=fake.url, api_key="sk-wrong", **FAST)


def test_task_timeout():
    with NativeFake(statuses=[]) as fake:  # runs forever
        started = time.monotonic()
        with pytest.raises(errors.TaskFailedError, match="task_timeout") as info:
            modelport.image_generation(MODEL, "x", api_base=fake.url, poll_interval=0.05, task_timeout=0.3)
        assert time.monotonic() - started < 5
        assert info.value.details == {"task_id": TASK, "task_status": "RUNNING"}
        assert 1 <= fake.polls <= 7  # about 0.3 / 0.05 polls, fewer on a slow machine


def test_mock_response_returns_the_given_dict_without_a_request():
    mocked = {"created": 1, "data": [{"url": "https://example.invalid/fox.png"}], "usage": {"image_count": 1}}
    with NativeFake() as fake:
        result = modelport.image_generation(MODEL, "a fox", size="1024x1024", mock_response=mocked, api_base=fake.url)
        assert result.to_dict() == mocked
        with pytest.raises(errors.InvalidRequestError, match="full response dict"):
            modelport.image_generation(MODEL, "a fox", mock_response="an image", api_base=fake.url)
        assert fake.requests == []


# --- the CLI and the gateway ------------------------------------------------------------------


def test_cli_image_shows_progress_and_saves(tmp_path):
    with NativeFake(statuses=["PENDING", "RUNNING", "SUCCEEDED"]) as fake:
        out = tmp_path / "fox.png"
        result = subprocess.run(
            [sys.executable, "-m", "modelport", "image", "-m", MODEL, "a fox", "-o", str(out), "--size", "1024x1024", "--seed", "7",
             "--api-base", fake.url + "/compatible-mode/v1", "--option", "poll_interval=0.05", "--option", "prompt_extend=false"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "DASHSCOPE_API_KEY": KEY},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert "image task pending" in result.stderr and "image task running" in result.stderr and "done in" in result.stderr
        assert result.stdout.strip() == str(out) and out.read_bytes() == PNG
        assert fake.api_requests[0].json["parameters"] == {"size": "1024*1024", "seed": 7, "prompt_extend": False}
        assert KEY not in result.stdout + result.stderr


def test_cli_dry_run_shows_the_native_submit():
    result = subprocess.run(
        [sys.executable, "-m", "modelport", "image", "--dry-run", "-m", MODEL, "a fox", "--size", "1024x1024", "--option", "region=cn"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "DASHSCOPE_API_KEY": KEY},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("POST https://dashscope.aliyuncs.com/api/v1/services/aigc/text2image/image-synthesis")
    assert "X-DashScope-Async: enable" in result.stdout and KEY not in result.stdout
    assert '"size": "1024*1024"' in result.stdout




def test_images_and_multimodal_embeddings_through_the_gateway(tmp_path):
    with NativeFake(statuses=["RUNNING", "SUCCEEDED"]) as fake:
        config = tmp_path / "config.yaml"
        config.write_text(f"""
model_list:
  - model_name: painter
    params: {{model: {MODEL}, api_base: {fake.url}/compatible-mode/v1, api_key: {KEY}, poll_interval: 0.01}}
  - model_name: vision-embedder
    params: {{model: dashscope/multimodal-embedding-v1, api_base: {fake.url}/compatible-mode/v1, api_key: {KEY}}}
router_settings: {{num_retries: 0}}
""")
        server, thread, url = _run_server(app_from_config(str(config)))
        try:
            sdk = openai_sdk.OpenAI(base_url=f"{url}/v1", api_key="anything", max_retries=0)
            image = sdk.images.generate(model="painter", prompt="a fox", size="1024x1024", n=1)
            assert [d.url for d in image.data] == [f"{fake.url}/files/out.png"]
            assert fake.api_requests[0].json["parameters"] == {"size": "1024*1024", "n": 1}
            vectors = sdk.embeddings.create(model="vision-embedder", input=["a fox"])
            assert vectors.data[0].embedding == [0.5, -0.25, 0.125] and fake.api_requests[-1].path == EMBED
        finally:
            server.should_exit = True
            thread.join(10)


# --- embeddings ----------------------------------------------------------------------------------


def test_multimodal_embeddings_use_the_native_endpoint():
    with NativeFake() as fake:
        inputs = ["a red fox", {"image": "https://x.invalid/fox.png"}, {"type": "image_url", "image_url": {"url": "https://x.invalid/2.jpg"}}]
        result = modelport.embedding("dashscope/multimodal-embedding-v1", inputs, api_base=fake.url + "/compatible-mode/v1", dimensions=1024)
        sent = fake.requests[-1]
        assert (sent.method, sent.path, sent.headers["authorization"]) == ("POST", EMBED, f"Bearer {KEY}")
        assert "x-dashscope-async" not in sent.headers
        assert sent.json == {
            "model": "multimodal-embedding-v1",
            "input": {"contents": [{"text": "a red fox"}, {"image": "https://x.invalid/fox.png"}, {"image": "https://x.invalid/2.jpg"}]},
            "parameters": {"dimension": 1024},
        }
        assert isinstance(result, modelport.EmbeddingResponse)
        assert result.to_dict() == {
            "object": "list",
            "data": [
                {"object": "embedding", "index": 0, "embedding": [0.5, -0.25, 0.125], "type": "text"},
                {"object": "embedding", "index": 1, "embedding": [1.5, -0.25, 0.125], "type": "image"},
                {"object": "embedding", "index": 2, "embedding": [2.5, -0.25, 0.125], "type": "image"},
            ],
            "model": "multimodal-embedding-v1",
            "usage": {"prompt_tokens": 3, "total_tokens": 3, "image_count": 2, "duration": 0},
            "request_id": "req-embed",
        }

        # the API answers floats; base64 (what the openai SDK asks for) is OpenAI's float32 encoding
        packed = modelport.embedding("dashscope/multimodal-embedding-v1", ["a"], encoding_format="base64", api_base=fake.url)
        assert "encoding_format" not in fake.requests[-1].json.get("parameters", {})
        assert struct.unpack("<3f", base64.b64decode(packed.data[0].embedding)) == (0.5, -0.25, 0.125)

        single = asyncio.run(modelport.aembedding("dashscope/tongyi-embedding-vision-plus", "one text", api_base=fake.url))
        assert fake.requests[-1].json == {"model": "tongyi-embedding-vision-plus", "input": {"contents": [{"text": "one text"}]}}
        assert [d.index for d in single.data] == [0]


def test_multimodal_embedding_inputs_checked_before_sending():
    with NativeFake() as fake:
        with pytest.raises(errors.InvalidRequestError) as info:
            modelport.embedding("dashscope/multimodal-embedding-v1", ["ok", [1, 2, 3]], api_base=fake.url)
        assert info.value.param == "input[1]"
        with pytest.raises(errors.InvalidRequestError) as info:
            modelport.embedding("dashscope/multimodal-embedding-v1", ["ok"], encoding_format="hex", api_base=fake.url)
        assert info.value.param == "encoding_format"
        assert fake.requests == []


def test_text_embedding_models_keep_the_compatible_path_and_batches():
    with NativeFake() as fake:
        texts = [f"text number {i}" for i in range(12)]
        result = modelport.embedding("dashscope/text-embedding-v4", texts, api_base=fake.url + "/compatible-mode/v1")
        assert [(r.path, len(r.json["input"])) for r in fake.requests] == [("/compatible-mode/v1/embeddings", 10), ("/compatible-mode/v1/embeddings", 2)]
        assert [d.index for d in result.data] == list(range(12)) and result.usage.total_tokens == 12


def test_multimodal_encoder_inverts_the_decoder():
    hooks = modelport.registry.hooks("dashscope")
    call = Call("embedding", "dashscope", "multimodal-embedding-v1", {"model": "multimodal-embedding-v1", "input": ["x"]}, hooks.info, api_key=KEY)
    result = {
        "object": "list",
        "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2], "type": "image"}],
        "model": "multimodal-embedding-v1",
        "usage": {"prompt_tokens": 0, "total_tokens": 0, "image_count": 1},
        "request_id": "r1",
    }
    wire = hooks.encode_response(call, result)
    assert json.loads(wire.content) == {
        "output": {"embeddings": [{"index": 0, "embedding": [0.1, 0.2], "type": "image"}]},
        "usage": {"input_tokens": 0, "image_count": 1},
        "request_id": "r1",
    }
    assert hooks.transform_response(call, wire, Step()) == result
    text_call = Call("embedding", "dashscope", "text-embedding-v4", {"model": "text-embedding-v4", "input": ["x"]}, hooks.info, api_key=KEY)
    plain: Optional[Dict[str, Any]] = {"object": "list", "data": [], "model": "text-embedding-v4", "usage": None}
    assert json.loads(hooks.encode_response(text_call, plain).content) == plain  # compatible mode: OpenAI's shape
