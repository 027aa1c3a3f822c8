"""The whole pipeline over real HTTP on 127.0.0.1, sync and async alike."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest

import modelport
from modelport import errors
from modelport.testing.upstream import FakeUpstream, Reply

USER = [{"role": "user", "content": "hello there"}]
KEY = "sk-test-0123456789abcdef"


@pytest.fixture(params=["sync", "async"])
def api(request, upstream):
    """api(method, *args, **kwargs): the same call through Client or AsyncClient; streams become lists."""
    settings = dict(retry_backoff=0.01, max_retry_delay=0.05, timeout=10, api_base=upstream.base_url)
    if request.param == "sync":
        client = modelport.Client(**settings)

        def call(method, *args, **kwargs):
            result = getattr(client, method)(*args, **kwargs)
            return list(result) if kwargs.get("stream") else result

        yield call
        client.close()
    else:

        def call(method, *args, **kwargs):
            async def go():
                async with modelport.AsyncClient(**settings) as client:
                    result = await getattr(client, method)(*args, **kwargs)
                    return [c async for c in result] if kwargs.get("stream") else result

            return asyncio.run(go())

        yield call


def test_chat_round_trip(api, upstream, validate):
    response = api("completion", "openai/gpt-test", USER, api_key=KEY, temperature=0.5, top_k=3)
    assert isinstance(response, modelport.ChatCompletion)
    assert response.choices[0].message.content == "You said: hello there"
    assert response.model == "gpt-test"
    validate(response.to_dict(), "CreateChatCompletionResponse")
    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.json == {"model": "gpt-test", "messages": USER, "temperature": 0.5, "top_k": 3}
    assert sent.headers["authorization"] == f"Bearer {KEY}"


def test_no_auth_header_without_a_key(api, upstream, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    api("completion", "openai/m", USER)
    assert "authorization" not in upstream.last.headers


def test_key_from_environment(api, upstream, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    api("completion", "openai/m", USER)
    assert upstream.last.headers["authorization"] == f"Bearer {KEY}"


def test_stream_with_usage_rebuilds(api, upstream, validate):
    chunks = api("completion", "openai/m", USER, stream=True, stream_options={"include_usage": True})
    assert all(isinstance(c, modelport.ChatCompletionChunk) for c in chunks)
    for chunk in chunks:
        validate(chunk.to_dict(), "CreateChatCompletionStreamResponse")
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    full = modelport.stream_to_completion(chunks)
    assert full.choices[0].message.content == "You said: hello there"
    assert full.choices[0].finish_reason == "stop"
    validate(full.to_dict(), "CreateChatCompletionResponse")
    assert upstream.last.json["stream"] is True


def test_extra_headers_and_extra_body(api, upstream):
    api("completion", "openai/m", USER, extra_headers={"X-Trace": "t1"}, extra_body={"guided_json": {"a": 1}, "temperature": 0})
    assert upstream.last.headers["x-trace"] == "t1"
    assert upstream.last.json["guided_json"] == {"a": 1}
    assert upstream.last.json["temperature"] == 0


def test_text_completion_plain_and_streamed(api, upstream, validate):
    result = api("text_completion", "text-completion-openai/davinci", "Say hi")
    assert isinstance(result, modelport.Completion)
    assert result.choices[0].text == "You wrote: Say hi"
    validate(result.to_dict(), "CreateCompletionResponse")
    assert upstream.last.path == "/v1/completions"
    chunks = api("text_completion", "text-completion-openai/davinci", "Say hi", stream=True)
    assert modelport.stream_to_completion(chunks).choices[0].text == "You wrote: Say hi"


def test_embeddings_float_and_base64(api, upstream, validate):
    floats = api("embedding", "openai/text-embedding-3-small", ["a", "b"], dimensions=4)
    assert [len(d.embedding) for d in floats.data] == [4, 4]
    validate(floats.to_dict(), "CreateEmbeddingResponse")
    encoded = api("embedding", "openai/text-embedding-3-small", "a", encoding_format="base64")
    assert isinstance(encoded.data[0].embedding, str)
    assert upstream.last.json["encoding_format"] == "base64"


@pytest.mark.parametrize(
    "status,cls",
    [
        (400, errors.BadRequestError),
        (401, errors.AuthenticationError),
        (403, errors.PermissionDeniedError),
        (404, errors.NotFoundError),
        (422, errors.UnprocessableEntityError),
    ],
)
def test_client_errors_are_typed_and_not_retried(api, upstream, status, cls):
    upstream.reply(status=status, json={"error": {"message": "nope", "type": "t", "code": "c1", "param": None}}, headers={"x-request-id": "req-9"})
    with pytest.raises(cls) as info:
        api("completion", "openai/m", USER)
    error = info.value
    assert (error.status, error.code, error.type, error.request_id, error.provider, error.model) == (status, "c1", "t", "req-9", "openai", "m")
    assert "nope" in str(error)
    assert len(upstream.requests) == 1


@pytest.mark.parametrize(
    "status,cls", [(500, errors.InternalServerError), (503, errors.ServiceUnavailableError), (409, errors.ConflictError), (408, errors.APITimeoutError)]
)
def test_server_errors_are_retried_then_raised(api, upstream, status, cls):
    upstream.reply(status=status, json={"error": {"message": "boom"}}, times=3)
    with pytest.raises(cls):
        api("completion", "openai/m", USER, num_retries=2)
    assert len(upstream.requests) == 3


def test_retry_then_success(api, upstream):
    upstream.reply(status=500, json={"error": {"message": "boom"}})
    response = api("completion", "openai/m", USER)
    assert response.choices[0].message.content.startswith("You said")
    assert len(upstream.requests) == 2


def test_html_502_body(api, upstream):
    upstream.reply(status=502, body="<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>", content_type="text/html", times=3)
    with pytest.raises(errors.ServiceUnavailableError) as info:
        api("completion", "openai/m", USER)
    assert "502 Bad Gateway" in info.value.message and "<h1>" not in info.value.message
    assert info.value.status == 502


def test_rate_limit_honours_retry_after(api, upstream, monkeypatch):
    slept = []
    real_sleep = asyncio.sleep
    monkeypatch.setattr("time.sleep", lambda s: slept.append(s))

    async def fake_async_sleep(s):
        slept.append(s)
        await real_sleep(0)

    monkeypatch.setattr("asyncio.sleep", fake_async_sleep)
    upstream.reply(status=429, json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}}, headers={"Retry-After": "7"})
    response = api("completion", "openai/m", USER)
    assert response.choices
    assert slept == [7.0]
    assert len(upstream.requests) == 2


def test_rate_limit_exhausts_retries(api, upstream):
    upstream.reply(status=429, json={"error": {"message": "slow down"}}, headers={"Retry-After": "0"}, times=2)
    with pytest.raises(errors.RateLimitError):
        api("completion", "openai/m", USER, num_retries=1)
    assert len(upstream.requests) == 2


def test_billing_429_is_quota_and_not_retried(api, upstream):
    upstream.reply(status=429, json={"error": {"message": "You exceeded your current quota", "type": "insufficient_quota", "code": "insufficient_quota"}})
    with pytest.raises(errors.QuotaExceededError):
        api("completion", "openai/m", USER)
    assert len(upstream.requests) == 1


def test_stream_cut_before_done(api, upstream):
    upstream.reply(sse=[{"id": "1", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}], done=False)
    with pytest.raises(errors.StreamInterruptedError, match="before its end marker"):
        api("completion", "openai/m", USER, stream=True)


def test_stream_connection_dropped(api, upstream):
    upstream.reply(sse=["data: {\"id\": \"1\", \"choices\": [{\"index\": 0, \"delta\": {\"content\": \"h"], abort=True)
    with pytest.raises(errors.StreamInterruptedError):
        api("completion", "openai/m", USER, stream=True)


def test_malformed_stream_data(api, upstream):
    upstream.reply(sse=["data: {this is not json}\n\n"])
    with pytest.raises(errors.MalformedStreamError) as info:
        api("completion", "openai/m", USER, stream=True)
    assert "{this is not json}" in str(info.value)


def test_error_inside_stream(api, upstream):
    upstream.reply(sse=[{"error": {"message": "context too long", "type": "BadRequestError", "code": 400}}])
    with pytest.raises(errors.BadRequestError, match="context too long"):
        api("completion", "openai/m", USER, stream=True)


def test_stream_error_status(api, upstream):
    upstream.reply(status=401, json={"error": {"message": "bad key", "code": "invalid_api_key"}})
    with pytest.raises(errors.AuthenticationError, match="bad key"):
        api("completion", "openai/m", USER, stream=True)


def test_timeout(api, upstream):
    upstream.reply(delay=1.5, json={})
    with pytest.raises(errors.APITimeoutError):
        api("completion", "openai/m", USER, timeout=0.3, num_retries=0)


def test_connection_refused(api):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.APIConnectionError, match="could not"):
        api("completion", "openai/m", USER, api_base=f"http://127.0.0.1:{port}/v1", num_retries=1)


def test_secret_never_in_errors_or_logs(api, upstream, caplog):
    caplog.set_level(logging.DEBUG, logger="modelport")
    upstream.reply(status=401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}})
    with pytest.raises(errors.AuthenticationError) as info:
        api("completion", "openai/m", USER, api_key=KEY)
    assert KEY not in str(info.value) and KEY not in repr(info.value) and KEY not in (info.value.body or "")
    assert "[REDACTED]" in str(info.value)
    assert caplog.records, "debug logging produced nothing to check"
    assert KEY not in caplog.text


def test_not_found_hints_at_v1(upstream):
    with modelport.Client(api_base=upstream.url) as client:  # no /v1
        with pytest.raises(errors.NotFoundError, match="/v1"):
            client.completion("openai/m", USER)


def test_close_stream_early_releases_connection(client, upstream):
    stream = client.completion("openai/m", USER, api_base=upstream.base_url, stream=True)
    first = next(iter(stream))
    assert first.choices[0].delta.role == "assistant"
    stream.close()
    assert client.completion("openai/m", USER, api_base=upstream.base_url).choices


def test_module_functions_across_event_loops(upstream):
    async def one():
        return await modelport.acompletion("openai/m", USER, api_base=upstream.base_url)

    assert asyncio.run(one()).choices[0].message.content == asyncio.run(one()).choices[0].message.content
    assert modelport.completion("openai/m", USER, api_base=upstream.base_url).choices


def test_http_error_codes_from_a_second_server():
    # A second, independent upstream proves nothing is tied to the shared fixture.
    with FakeUpstream() as other:
        other.reply(Reply(status=503, json={"error": {"message": "down"}}))
        with pytest.raises(errors.ServiceUnavailableError):
            modelport.completion("openai/m", USER, api_base=other.base_url, num_retries=0)


def test_connections_are_pooled_and_reused(upstream):
    with modelport.Client(api_base=upstream.base_url) as client:
        for _ in range(3):
            client.completion("openai/m", USER)
        list(client.completion("openai/m", USER, stream=True))
        client.completion("openai/m", USER)
    assert len({r.peer for r in upstream.requests}) == 1, [r.peer for r in upstream.requests]

    async def run():
        async with modelport.AsyncClient(api_base=upstream.base_url) as client:
            for _ in range(3):
                await client.completion("openai/m", USER)
            stream = await client.completion("openai/m", USER, stream=True)
            async for _ in stream:
                pass
            await client.completion("openai/m", USER)

    upstream.clear()
    asyncio.run(run())
    assert len({r.peer for r in upstream.requests}) == 1


def test_async_stream_close_and_context_manager(upstream):
    async def run():
        async with modelport.AsyncClient(api_base=upstream.base_url) as client:
            stream = await client.completion("openai/m", USER, stream=True)
            async with stream:
                first = await stream.__anext__()
            assert first.choices[0].delta.role == "assistant"
            stream = await client.completion("openai/m", USER, stream=True)
            await stream.close()
            again = await client.completion("openai/m", USER)
            return again.choices[0].message.content

    assert asyncio.run(run()) == "You said: hello there"


def test_sync_stream_context_manager(client, upstream):
    with client.completion("openai/m", USER, api_base=upstream.base_url, stream=True) as stream:
        texts = [c.choices[0].delta.content for c in stream if c.choices]
    assert "".join(t for t in texts if t) == "You said: hello there"


def test_secret_echoed_inside_a_stream_is_redacted(api, upstream):
    upstream.reply(sse=[{"error": {"message": f"key {KEY} is not allowed here", "code": 403}}])
    with pytest.raises(errors.PermissionDeniedError) as info:
        api("completion", "openai/m", USER, api_key=KEY, stream=True)
    assert KEY not in str(info.value) and KEY not in (info.value.body or "")


def test_shared_async_client_serves_several_threads_loops_at_once(upstream):
    import threading

    results, failures = [], []

    def worker(n):
        async def calls():
            replies = await asyncio.gather(*(modelport.acompletion("openai/m", [{"role": "user", "content": f"t{n}-{i}"}], api_base=upstream.base_url) for i in range(10)))
            return [r.choices[0].message.content for r in replies]

        try:
            results.extend(asyncio.run(calls()))
        except Exception as exc:  # reported below with the thread's error
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert sorted(results) == sorted(f"You said: t{n}-{i}" for n in range(4) for i in range(10))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_chunks_before_a_malformed_event_are_delivered_then_the_error(upstream, mode):
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    good = [{**head, "choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]} for t in ("a", "b")]
    upstream.reply(sse=[*good, "data: {this is not json", good[0]])
    received = []
    with pytest.raises(errors.MalformedStreamError, match="not JSON"):
        if mode == "sync":
            with modelport.Client(api_base=upstream.base_url) as client:
                for chunk in client.completion("openai/m", USER, stream=True):
                    received.append(chunk.choices[0].delta.content)
        else:

            async def run():
                async with modelport.AsyncClient(api_base=upstream.base_url) as client:
                    async with await client.completion("openai/m", USER, stream=True) as stream:
                        async for chunk in stream:
                            received.append(chunk.choices[0].delta.content)

            asyncio.run(run())
    assert received == ["a", "b"]


def test_a_client_dropped_open_warns(upstream):
    client = modelport.Client(api_base=upstream.base_url)
    client.completion("openai/m", USER)
    with pytest.warns(ResourceWarning, match="not closed"):
        client.__del__()
    client.close()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        client.__del__()  # closed: silent
        modelport.default_client().__del__()  # the module functions' shared client: silent


def test_a_stream_dropped_after_break_is_closed_and_warns(upstream):
    import gc

    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    upstream.reply(sse=[{**head, "choices": [{"index": 0, "delta": {"content": f"t{i}"}, "finish_reason": None}]} for i in range(50)], chunk_delay=0.01)
    with modelport.Client(api_base=upstream.base_url, max_connections=1, timeout=modelport.Timeout(read=5, pool=1.0)) as client:
        stream = client.completion("openai/m", USER, stream=True)
        for _ in stream:
            break
        with pytest.warns(ResourceWarning, match="dropped before it ended"):
            del stream
            gc.collect()
        # The one pooled connection is free again: the next call gets it at once.
        assert client.completion("openai/m", USER).choices
