"""The Azure OpenAI provider (plugins/azure) against a loopback server speaking Azure's wire.

The kit's mappings are Azure's documented rules, written from the REST reference, not
from the plugin's code: on a dated api-version the deployment is in the path and the
body has no ``model``; on the v1 surface the body is OpenAI's, ``model`` being the
deployment. The HTTP tests check the exact path and ``api-version`` query that reached
the fake, the credential headers, Azure's filter fields and its error bodies.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

import openai
import pytest

import modelport
from helpers import run_server
from modelport.server import app_from_config
from modelport.testing import ProviderConformance

KEY = "azure-key-0123456789abcdef"
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra-token-secret"
VERSION = "2024-10-21"
USER = [{"role": "user", "content": "hello there"}]
DEPLOYMENTS = {"gpt4o-prod", "text-embedding-3-small", "dalle3", "instruct"}


# --- the conformance kit, with Azure's documented mappings ---------------------------------


class TestAzure(ProviderConformance):
    provider = "azure"
    api_base = "https://conformance-res.openai.azure.com"

    def expected_request(self, body: Dict[str, Any]) -> Dict[str, Any]:
        # Documented: /openai/deployments/{deployment-id}/chat/completions takes the
        # deployment from the path; the request body has no model field.
        body.pop("model")
        return body


class TestAzureV1Surface(ProviderConformance):
    provider = "azure"
    api_base = "https://conformance-res.openai.azure.com"
    call_options = {"api_version": "v1"}
    # Documented: on /openai/v1 the body is OpenAI's, model being the deployment name.


# --- a loopback server speaking Azure OpenAI's data-plane wire -----------------------------

SAFE = {"filtered": False, "severity": "safe"}
TEXT_VERDICTS = {"hate": SAFE, "self_harm": SAFE, "sexual": SAFE, "violence": SAFE}
PROMPT_FILTER = [
    {
        "prompt_index": 0,
        "content_filter_results": {**TEXT_VERDICTS, "jailbreak": {"filtered": False, "detected": False}},
    }
]
SUPPORTED_VERSIONS = {"2024-06-01", "2024-10-21", "2025-04-01-preview"}
_ROUTES = {
    "chat/completions": "chat",
    "completions": "text_completion",
    "embeddings": "embedding",
    "images/generations": "image_generation",
}


def azure_error(code: str, message: str, **fields: Any) -> Dict[str, Any]:
    return {"error": {"code": code, "message": message, **fields}}


class Received:
    """One request as the fake saw it."""

    def __init__(self, method: str, target: str, headers: Dict[str, str], raw: bytes) -> None:
        parts = urlsplit(target)
        self.method = method
        self.target = target
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers
        self.raw = raw
        self.json: Any = json.loads(raw) if raw else None


class AzureServer:
    """Azure OpenAI's data plane on 127.0.0.1: auth, routes, api-versions, Azure-shaped answers.

    ``reply(...)`` queues a scripted answer (status, JSON or SSE events, headers) for the
    next request that passes auth and routing; otherwise it echoes in Azure's shapes.
    Bodies are sent with chunked transfer encoding, SSE cut into small writes.
    """

    def __init__(self) -> None:
        self.requests: List[Received] = []
        self._replies: List[Tuple[int, Dict[str, str], List[bytes]]] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="azure-fake", daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def last(self) -> Received:
        return self.requests[-1]

    def reply(
        self,
        status: int = 200,
        *,
        json_body: Any = None,
        events: Optional[List[Any]] = None,
        headers: Optional[Dict[str, str]] = None,
        piece: int = 0,
    ) -> None:
        """Queue an answer: a JSON body, or SSE ``events`` (dicts, or raw strings) ending in [DONE]."""
        if events is not None:
            raw = b"".join(b"data: " + (e if isinstance(e, str) else json.dumps(e)).encode() + b"\n\n" for e in events)
            raw += b"data: [DONE]\n\n"
            head = {"Content-Type": "text/event-stream", **(headers or {})}
        else:
            raw = json.dumps(json_body).encode()
            head = {"Content-Type": "application/json", **(headers or {})}
        pieces = [raw[i : i + piece] for i in range(0, len(raw), piece)] if piece else [raw]
        with self._lock:
            self._replies.append((status, head, pieces))

    # -- the service -------------------------------------------------------------------

    def _answer(self, got: Received) -> Tuple[int, Dict[str, str], List[bytes]]:
        auth = self._check_auth(got)
        if auth is not None:
            return auth
        operation, deployment, refusal = self._route(got)
        if refusal is not None:
            return refusal
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        return self._echo(operation, deployment, got.json or {})

    @staticmethod
    def _json(
        status: int, body: Any, headers: Optional[Dict[str, str]] = None
    ) -> Tuple[int, Dict[str, str], List[bytes]]:
        return status, {"Content-Type": "application/json", **(headers or {})}, [json.dumps(body).encode()]

    def _check_auth(self, got: Received) -> Optional[Tuple[int, Dict[str, str], List[bytes]]]:
        if "api-key" in got.headers:
            if got.headers["api-key"] == KEY:
                return None
            return self._json(
                401,
                azure_error(
                    "401",
                    "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.",
                ),
            )
        if got.headers.get("authorization") == f"Bearer {TOKEN}":
            return None
        return self._json(
            401,
            azure_error(
                "401",
                "Unauthorized. Access token is missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have expired.",
            ),
        )

    def _route(self, got: Received) -> Tuple[str, str, Any]:
        """(operation, deployment, None), or ("", "", the error answer)."""
        not_found = "", "", self._json(404, azure_error("404", "Resource not found"))
        if got.path.startswith("/openai/v1/"):
            operation = _ROUTES.get(got.path[len("/openai/v1/") :])
            versions = got.query.get("api-version")
            if operation is None or (versions and versions[0] not in ("preview", "latest")):
                return not_found
            deployment = (got.json or {}).get("model")
        elif got.path.startswith("/openai/deployments/"):
            deployment, _, rest = got.path[len("/openai/deployments/") :].partition("/")
            operation = _ROUTES.get(rest)
            versions = got.query.get("api-version")
            if operation is None or not versions:
                return not_found
            if versions[0] not in SUPPORTED_VERSIONS:
                return "", "", self._json(400, azure_error("BadRequest", "API version not supported"))
        else:
            return not_found
        if deployment not in DEPLOYMENTS:
            message = "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again."
            return "", "", self._json(404, azure_error("DeploymentNotFound", message))
        return str(operation), str(deployment), None

    def _echo(self, operation: str, deployment: str, body: Dict[str, Any]) -> Tuple[int, Dict[str, str], List[bytes]]:
        head = {
            "id": "chatcmpl-AZ1",
            "created": 1730000000,
            "model": "gpt-4o-2024-08-06",
            "system_fingerprint": "fp_azure",
        }
        if operation == "embedding":
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": [0.25, -0.5, float(len(text))]}
                for i, text in enumerate(inputs)
            ]
            return self._json(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 3, "total_tokens": 3},
                },
            )
        if operation == "image_generation":
            image = {
                "url": "https://dalle.blob.core.windows.net/private/img.png",
                "revised_prompt": "A watercolour " + body["prompt"],
                "content_filter_results": TEXT_VERDICTS,
            }
            return self._json(200, {"created": 1730000001, "data": [image]})
        if operation == "text_completion":
            choice = {
                "text": "You wrote: " + body["prompt"],
                "index": 0,
                "finish_reason": "stop",
                "logprobs": None,
                "content_filter_results": TEXT_VERDICTS,
            }
            return self._json(
                200,
                {
                    **head,
                    "id": "cmpl-AZ1",
                    "object": "text_completion",
                    "model": "gpt-35-turbo-instruct",
                    "choices": [choice],
                    "prompt_filter_results": PROMPT_FILTER,
                    "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
                },
            )
        text = "You said: " + body["messages"][-1]["content"]
        if not body.get("stream"):
            message = {"role": "assistant", "content": text, "refusal": None}
            choice = {
                "index": 0,
                "message": message,
                "finish_reason": "stop",
                "logprobs": None,
                "content_filter_results": TEXT_VERDICTS,
            }
            usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
            return self._json(
                200,
                {
                    **head,
                    "object": "chat.completion",
                    "choices": [choice],
                    "usage": usage,
                    "prompt_filter_results": PROMPT_FILTER,
                },
            )
        raw = b"".join(
            b"data: " + json.dumps(e).encode() + b"\n\n"
            for e in azure_stream(text, usage=bool((body.get("stream_options") or {}).get("include_usage")))
        )
        raw += b"data: [DONE]\n\n"
        return 200, {"Content-Type": "text/event-stream"}, [raw[i : i + 37] for i in range(0, len(raw), 37)]

    def _handler_class(self) -> Any:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                got = Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, raw)
                server.requests.append(got)
                status, headers, pieces = server._answer(got)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("apim-request-id", "4e1b7f2a-azure")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in pieces:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                    self.wfile.flush()
                    if len(pieces) > 1:
                        threading.Event().wait(0.001)  # not time.sleep: tests patch it
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        return Handler

    def __enter__(self) -> "AzureServer":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(10)


def azure_stream(text: str, *, usage: bool = False, finish: str = "stop") -> List[Dict[str, Any]]:
    """A chat stream as Azure sends it: the prompt-filter chunk first, filter verdicts on choices."""
    head = {
        "id": "chatcmpl-AZS",
        "object": "chat.completion.chunk",
        "created": 1730000002,
        "model": "gpt-4o-2024-08-06",
        "system_fingerprint": "fp_azure",
    }
    events: List[Dict[str, Any]] = [
        {"choices": [], "created": 0, "id": "", "model": "", "object": "", "prompt_filter_results": PROMPT_FILTER}
    ]
    events.append(
        {
            **head,
            "choices": [
                {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "finish_reason": None,
                    "logprobs": None,
                    "content_filter_results": {},
                }
            ],
        }
    )
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word + (" " if i < len(words) - 1 else "")
        events.append(
            {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"content": piece},
                        "finish_reason": None,
                        "logprobs": None,
                        "content_filter_results": TEXT_VERDICTS,
                    }
                ],
            }
        )
    events.append(
        {
            **head,
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": finish, "logprobs": None, "content_filter_results": {}}
            ],
        }
    )
    if usage:
        events.append(
            {
                **head,
                "choices": [],
                "usage": {"prompt_tokens": 9, "completion_tokens": len(words), "total_tokens": 9 + len(words)},
            }
        )
    return events


@pytest.fixture
def azure() -> Iterator[AzureServer]:
    with AzureServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _no_azure_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "AZURE_API_BASE",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_AD_TOKEN",
        "AZURE_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> List[float]:
    recorded: List[float] = []
    monkeypatch.setattr(time, "sleep", recorded.append)  # the sync client's retry delay
    return recorded


def _credentials(got: Received) -> Dict[str, Optional[str]]:
    return {"api-key": got.headers.get("api-key"), "authorization": got.headers.get("authorization")}


# --- chat ----------------------------------------------------------------------------------


def test_chat_goes_to_the_deployment_path_with_the_key_in_api_key(azure: AzureServer) -> None:
    result = modelport.completion(
        "azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY, temperature=0.2, api_version=VERSION
    )
    sent = azure.last
    assert sent.target == f"/openai/deployments/gpt4o-prod/chat/completions?api-version={VERSION}"
    assert _credentials(sent) == {"api-key": KEY, "authorization": None}
    assert sent.json == {"messages": USER, "temperature": 0.2}  # no model, no api_version
    assert b"api_version" not in sent.raw and b"2024-10-21" not in sent.raw
    assert result.choices[0].message.content == "You said: hello there"
    assert result.usage.total_tokens == 13


def test_azure_filter_fields_round_trip_exactly(azure: AzureServer) -> None:
    verdicts = {**TEXT_VERDICTS, "protected_material_text": {"filtered": False, "detected": False}}
    body = {
        "id": "chatcmpl-F1", "object": "chat.completion", "created": 1730000100, "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi", "refusal": None}, "finish_reason": "stop", "logprobs": None, "content_filter_results": verdicts}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}, "prompt_filter_results": PROMPT_FILTER, "system_fingerprint": "fp_x",
    }  # fmt: skip
    azure.reply(json_body=copy.deepcopy(body))
    result = modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY)
    assert result.to_dict() == body
    assert result.extra["prompt_filter_results"] == PROMPT_FILTER
    assert result.choices[0].extra["content_filter_results"] == verdicts


def test_a_content_filter_finish_reason_is_a_normal_answer(azure: AzureServer) -> None:
    filtered = {**TEXT_VERDICTS, "violence": {"filtered": True, "severity": "medium"}}
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": None, "refusal": None},
        "finish_reason": "content_filter",
        "logprobs": None,
        "content_filter_results": filtered,
    }
    azure.reply(
        json_body={
            "id": "chatcmpl-F2",
            "object": "chat.completion",
            "created": 1,
            "model": "gpt-4o",
            "choices": [choice],
            "prompt_filter_results": PROMPT_FILTER,
        }
    )
    result = modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY)
    assert result.choices[0].finish_reason == "content_filter"
    assert result.choices[0].extra["content_filter_results"]["violence"] == {"filtered": True, "severity": "medium"}


def test_acompletion(azure: AzureServer) -> None:
    async def run() -> Any:
        async with modelport.AsyncClient(api_key=KEY) as client:
            return await client.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, max_tokens=7)

    result = asyncio.run(run())
    assert result.choices[0].message.content == "You said: hello there"
    assert result.extra["prompt_filter_results"] == PROMPT_FILTER
    assert azure.last.target == f"/openai/deployments/gpt4o-prod/chat/completions?api-version={VERSION}"
    assert azure.last.json == {"messages": USER, "max_tokens": 7}


def _check_stream(chunks: List[Any]) -> None:
    first = chunks[0].to_dict()
    assert first == {
        "choices": [],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
        "prompt_filter_results": PROMPT_FILTER,
    }
    assert (
        chunks[2].choices[0].delta.content == "You "
        and chunks[2].choices[0].extra["content_filter_results"] == TEXT_VERDICTS
    )
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 13
    rebuilt = modelport.stream_to_completion(chunks)
    assert rebuilt.choices[0].message.content == "You said: hello there" and rebuilt.choices[0].finish_reason == "stop"
    assert (rebuilt.id, rebuilt.model, rebuilt.created) == ("chatcmpl-AZS", "gpt-4o-2024-08-06", 1730000002)
    assert rebuilt.extra["prompt_filter_results"] == PROMPT_FILTER
    assert rebuilt.usage.total_tokens == 13


def test_stream_sync_keeps_the_prompt_filter_chunk(azure: AzureServer) -> None:
    chunks = list(
        modelport.completion(
            "azure/gpt4o-prod",
            USER,
            api_base=azure.base_url,
            api_key=KEY,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert azure.last.json == {"messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    assert len(chunks) == 1 + 1 + 4 + 1 + 1
    _check_stream(chunks)


def test_stream_async_keeps_the_prompt_filter_chunk(azure: AzureServer) -> None:
    async def run() -> List[Any]:
        stream = await modelport.acompletion(
            "azure/gpt4o-prod",
            USER,
            api_base=azure.base_url,
            api_key=KEY,
            stream=True,
            stream_options={"include_usage": True},
        )
        return [chunk async for chunk in stream]

    _check_stream(asyncio.run(run()))


def test_asynchronous_filter_annotations_reach_the_user_and_the_rebuild_keeps_the_real_id(azure: AzureServer) -> None:
    events = azure_stream("abc def")
    offsets = {"check_offset": 0, "start_offset": 0, "end_offset": 8}
    annotation = {
        "choices": [
            {
                "index": 0,
                "finish_reason": None,
                "content_filter_results": TEXT_VERDICTS,
                "content_filter_offsets": offsets,
            }
        ],
        "created": 0,
        "id": "",
        "model": "",
        "object": "",
    }
    events.insert(-1, annotation)  # before the finish chunk, as Azure's asynchronous filter sends it
    azure.reply(events=events, piece=11)
    chunks = list(modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY, stream=True))
    assert chunks[-2].to_dict() == {"choices": annotation["choices"]}  # the placeholder head is not carried
    rebuilt = modelport.stream_to_completion(chunks)
    assert (rebuilt.id, rebuilt.model, rebuilt.created) == ("chatcmpl-AZS", "gpt-4o-2024-08-06", 1730000002)
    assert rebuilt.choices[0].extra["content_filter_offsets"] == offsets
    assert rebuilt.choices[0].message.content == "abc def"


def test_mock_response_runs_through_the_plugins_stream_parser() -> None:
    hooks = modelport.registry.hooks("azure")
    assert hooks.encodes_streams and hooks.encodes_responses
    chunks = list(
        modelport.completion(
            "azure/d", USER, mock_response="a b", stream=True, api_key=KEY, api_base="https://r.openai.azure.com"
        )
    )
    assert modelport.stream_to_completion(chunks).choices[0].message.content == "a b"


# --- the other operations --------------------------------------------------------------


def test_embedding(azure: AzureServer) -> None:
    result = modelport.embedding(
        "azure/text-embedding-3-small", ["ab", "cde"], api_base=azure.base_url, api_key=KEY, dimensions=3
    )
    assert azure.last.target == f"/openai/deployments/text-embedding-3-small/embeddings?api-version={VERSION}"
    assert azure.last.json == {"input": ["ab", "cde"], "dimensions": 3}
    assert [d.embedding for d in result.data] == [[0.25, -0.5, 2.0], [0.25, -0.5, 3.0]]


def test_image_generation_keeps_revised_prompt_and_filter_results(azure: AzureServer) -> None:
    result = modelport.image_generation(
        "azure/dalle3", "a fox", api_base=azure.base_url, api_key=KEY, size="1024x1024", quality="hd"
    )
    assert azure.last.target == f"/openai/deployments/dalle3/images/generations?api-version={VERSION}"
    assert azure.last.json == {"prompt": "a fox", "size": "1024x1024", "quality": "hd"}
    image = result.data[0]
    assert (
        image.url == "https://dalle.blob.core.windows.net/private/img.png"
        and image.revised_prompt == "A watercolour a fox"
    )
    assert image.extra["content_filter_results"] == TEXT_VERDICTS
    azure.reply(
        json_body={
            "created": 5,
            "data": [{"b64_json": "aGVsbG8=", "revised_prompt": "r", "content_filter_results": TEXT_VERDICTS}],
        }
    )
    assert (
        modelport.image_generation(
            "azure/dalle3", "x", api_base=azure.base_url, api_key=KEY, response_format="b64_json"
        )
        .data[0]
        .b64_json
        == "aGVsbG8="
    )


def test_text_completion(azure: AzureServer) -> None:
    result = modelport.text_completion("azure/instruct", "hey", api_base=azure.base_url, api_key=KEY, max_tokens=5)
    assert azure.last.target == f"/openai/deployments/instruct/completions?api-version={VERSION}"
    assert azure.last.json == {"prompt": "hey", "max_tokens": 5}
    assert result.choices[0].text == "You wrote: hey" and result.extra["prompt_filter_results"] == PROMPT_FILTER


# --- addressing, versions and credentials ------------------------------------------------


def test_environment_variables(azure: AzureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", azure.base_url)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", KEY)
    modelport.completion("azure/gpt4o-prod", USER)
    assert azure.last.target == f"/openai/deployments/gpt4o-prod/chat/completions?api-version={VERSION}"
    assert azure.last.headers["api-key"] == KEY
    monkeypatch.setenv("AZURE_API_BASE", azure.base_url + "/")  # wins over AZURE_OPENAI_ENDPOINT
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "http://127.0.0.1:9/unused")
    monkeypatch.setenv("AZURE_API_KEY", KEY)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", "not-this-one")
    monkeypatch.setenv("AZURE_API_VERSION", "2024-06-01")
    modelport.completion("azure/gpt4o-prod", USER)
    assert azure.last.target == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
    assert azure.last.headers["api-key"] == KEY
    modelport.completion("azure/gpt4o-prod", USER, api_version="2025-04-01-preview")  # the option wins over the env var
    assert azure.last.query == {"api-version": ["2025-04-01-preview"]} and "api_version" not in azure.last.json


@pytest.mark.parametrize("version, query", [("preview", "?api-version=preview"), ("v1", "")])
def test_v1_surface_puts_the_deployment_in_the_body(azure: AzureServer, version: str, query: str) -> None:
    result = modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY, api_version=version)
    assert azure.last.target == "/openai/v1/chat/completions" + query
    assert azure.last.json == {"model": "gpt4o-prod", "messages": USER}
    assert result.choices[0].message.content == "You said: hello there"
    modelport.embedding("azure/text-embedding-3-small", "x", api_base=azure.base_url + "/openai/v1", api_key=KEY)
    assert azure.last.target == "/openai/v1/embeddings" and azure.last.json == {
        "model": "text-embedding-3-small",
        "input": "x",
    }


def test_a_base_naming_a_deployment_is_used_as_it_is(azure: AzureServer) -> None:
    modelport.completion(
        "azure/label-only", USER, api_base=azure.base_url + "/openai/deployments/gpt4o-prod", api_key=KEY
    )
    assert azure.last.target == f"/openai/deployments/gpt4o-prod/chat/completions?api-version={VERSION}"
    full = azure.base_url + "/openai/deployments/gpt4o-prod/chat/completions"
    modelport.completion("azure/label-only", USER, api_base=full, api_key=KEY, api_version="2024-06-01")
    assert azure.last.target == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
    modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url + "/openai/", api_key=KEY)
    assert azure.last.target == f"/openai/deployments/gpt4o-prod/chat/completions?api-version={VERSION}"


def test_entra_id_token_goes_as_bearer(azure: AzureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, azure_ad_token=TOKEN)
    assert _credentials(azure.last) == {"api-key": None, "authorization": f"Bearer {TOKEN}"}
    assert "azure_ad_token" not in azure.last.json and TOKEN.encode() not in azure.last.raw
    monkeypatch.setenv("AZURE_API_KEY", KEY)
    modelport.completion(
        "azure/gpt4o-prod", USER, api_base=azure.base_url, azure_ad_token=TOKEN
    )  # the explicit token wins
    assert _credentials(azure.last) == {"api-key": None, "authorization": f"Bearer {TOKEN}"}
    monkeypatch.setenv("AZURE_AD_TOKEN", TOKEN)
    modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url)  # a key wins over AZURE_AD_TOKEN
    assert _credentials(azure.last) == {"api-key": KEY, "authorization": None}
    monkeypatch.delenv("AZURE_API_KEY")
    modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url)
    assert _credentials(azure.last) == {"api-key": None, "authorization": f"Bearer {TOKEN}"}


def test_no_base_url_is_a_config_error() -> None:
    with pytest.raises(modelport.ConfigError, match="AZURE_API_BASE"):
        modelport.completion("azure/gpt4o-prod", USER, api_key=KEY)


def test_no_credential_fails_before_sending(azure: AzureServer) -> None:
    with pytest.raises(modelport.AuthenticationError, match="AZURE_API_KEY") as caught:
        modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url)
    assert "azure_ad_token" in str(caught.value) and azure.requests == []
    with modelport.Client() as client:  # a dry run needs no credential
        text = client.describe_request("chat", "azure/gpt4o-prod", messages=USER, api_base=azure.base_url)
    assert text.startswith(
        f"POST {azure.base_url}/openai/deployments/gpt4o-prod/chat/completions?api-version={VERSION}"
    )


def test_describe_request_redacts_the_key_and_the_token() -> None:
    base = "https://my-res.openai.azure.com"
    with modelport.Client() as client:
        with_key = client.describe_request(
            "chat", "azure/gpt4o-prod", messages=USER, api_base=base, api_key=KEY, api_version="2024-06-01"
        )
        with_token = client.describe_request(
            "chat", "azure/gpt4o-prod", messages=USER, api_base=base, azure_ad_token=TOKEN
        )
        request = client.build_request("chat", "azure/gpt4o-prod", messages=USER, api_base=base, api_key=KEY)
    assert KEY not in with_key and "api-key: [REDACTED]" in with_key
    assert (
        with_key.splitlines()[0] == f"POST {base}/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
    )
    assert "api_version" not in with_key and '"model"' not in with_key
    assert (
        TOKEN not in with_token
        and "Authorization: Bearer [REDACTED]" in with_token
        and "azure_ad_token" not in with_token
    )
    assert request.headers["api-key"] == KEY and KEY not in repr(request)


# --- errors ------------------------------------------------------------------------------


def test_content_filter_error_keeps_the_verdicts(azure: AzureServer, sleeps: List[float]) -> None:
    verdicts = {
        "hate": {"filtered": True, "severity": "high"},
        "self_harm": SAFE,
        "sexual": SAFE,
        "violence": {"filtered": True, "severity": "medium"},
    }
    body = azure_error(
        "content_filter",
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy. Please modify your prompt and retry.",
        param="prompt", type=None, status=400,
        innererror={"code": "ResponsibleAIPolicyViolation", "content_filter_result": verdicts},
    )  # fmt: skip
    azure.reply(400, json_body=body)
    with pytest.raises(modelport.ContentFilterError) as caught:
        modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY)
    error = caught.value
    assert error.status == 400 and error.code == "content_filter" and error.retryable is False
    assert error.details["content_filter_result"] == verdicts
    assert "content management policy" in error.message and sleeps == [] and len(azure.requests) == 1


def test_image_content_policy_violation_is_a_content_filter_error(azure: AzureServer) -> None:
    verdicts = {"sexual": {"filtered": True, "severity": "high"}, "violence": SAFE, "hate": SAFE, "self_harm": SAFE}
    azure.reply(
        400,
        json_body=azure_error(
            "content_policy_violation",
            "Your request was rejected as a result of our safety system.",
            inner_error={
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_results": verdicts,
                "revised_prompt": "r",
            },
        ),
    )
    with pytest.raises(modelport.ContentFilterError) as caught:
        modelport.image_generation("azure/dalle3", "x", api_base=azure.base_url, api_key=KEY)
    assert caught.value.details["content_filter_result"] == verdicts


def test_context_length_exceeded(azure: AzureServer) -> None:
    message = "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens."
    azure.reply(
        400,
        json_body={
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
    )
    with pytest.raises(modelport.ContextWindowExceededError, match="maximum context length"):
        modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY)


def test_401_says_which_header_carried_the_credential(azure: AzureServer) -> None:
    with pytest.raises(modelport.AuthenticationError) as caught:
        modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key="wrong-key-999")
    text = str(caught.value)
    assert (
        caught.value.status == 401
        and "Access denied" in text
        and "api-key header" in text
        and "wrong-key-999" not in text
    )
    with pytest.raises(modelport.AuthenticationError) as caught:
        modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, azure_ad_token="expired-token-123")
    text = str(caught.value)
    assert "Authorization: Bearer" in text and "api-key header" not in text and "expired-token-123" not in text


def test_404_names_the_deployment_and_the_api_version(azure: AzureServer) -> None:
    with pytest.raises(modelport.NotFoundError) as caught:
        modelport.completion("azure/gpt-4o", USER, api_base=azure.base_url, api_key=KEY, api_version="2024-06-01")
    error = caught.value
    assert error.code == "DeploymentNotFound" and "does not exist" in error.message
    assert "'gpt-4o'" in error.message and "api-version 2024-06-01" in error.message and "/v1" not in error.message
    with pytest.raises(modelport.BadRequestError, match="API version not supported"):
        modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY, api_version="2019-01-01")


def test_429_is_retried_after_retry_after(azure: AzureServer, sleeps: List[float]) -> None:
    message = "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have exceeded token rate limit of your current OpenAI S0 pricing tier. Please retry after 2 seconds."
    azure.reply(429, json_body=azure_error("429", message), headers={"retry-after": "3"})
    result = modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY)
    assert result.choices[0].message.content == "You said: hello there"
    assert sleeps == [3.0] and len(azure.requests) == 2  # the header wins over the message
    azure.reply(429, json_body=azure_error("429", message))  # no header: the delay the message gives
    modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY)
    assert sleeps == [3.0, 2.0]


def test_error_in_a_stream_is_typed(azure: AzureServer) -> None:
    azure.reply(
        404, json_body=azure_error("DeploymentNotFound", "The API deployment for this resource does not exist.")
    )
    with pytest.raises(modelport.NotFoundError, match="'gpt4o-prod'"):
        list(modelport.completion("azure/gpt4o-prod", USER, api_base=azure.base_url, api_key=KEY, stream=True))


# --- the registry and the gateway ----------------------------------------------------------


def test_providers_lists_azure() -> None:
    (listing,) = [p for p in modelport.providers() if p.name == "azure"]
    assert listing.operations == ("chat", "embedding", "image_generation", "text_completion")
    assert listing.distribution == "modelport-azure" and listing.info is not None
    assert set(listing.info.options) == {"azure_ad_token", "api_version"}
    assert listing.info.api_key_env == ("AZURE_API_KEY", "AZURE_OPENAI_API_KEY")




def test_gateway_with_the_openai_sdk(azure: AzureServer, tmp_path: Any) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"""
model_list:
  - model_name: office-gpt
    params: {{model: azure/gpt4o-prod, api_base: {azure.base_url}, api_key: {KEY}, api_version: "2024-06-01"}}
router_settings: {{num_retries: 0}}
""")
    server, thread, url = run_server(app_from_config(str(config)))
    try:
        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        result = sdk.chat.completions.create(
            model="office-gpt", messages=[{"role": "user", "content": "hi"}], temperature=0.1
        )
        assert result.choices[0].message.content == "You said: hi"
        assert azure.last.target == "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-06-01"
        assert azure.last.json == {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1}
        assert azure.last.headers["api-key"] == KEY and "authorization" not in azure.last.headers
        assert result.model_extra is not None and result.model_extra["prompt_filter_results"] == PROMPT_FILTER
        chunks = list(
            sdk.chat.completions.create(model="office-gpt", messages=[{"role": "user", "content": "a b"}], stream=True)
        )
        assert (
            chunks[0].choices == []
            and chunks[0].model_extra is not None
            and chunks[0].model_extra["prompt_filter_results"] == PROMPT_FILTER
        )
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "You said: a b"
        assert azure.last.json["stream"] is True and "model" not in azure.last.json
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_entra_token_option_is_declared_secret():
    import modelport
    from modelport.provider import Call

    hooks = modelport.Client().provider_hooks("azure")
    call = Call("chat", "azure", "dep", {}, hooks.info, options={"azure_ad_token": "eyJ-entra-token-1"})
    assert "eyJ-entra-token-1" not in repr(call) and "eyJ-entra-token-1" in call.secrets()
