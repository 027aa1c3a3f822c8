"""The sans-IO engine and the router, driven directly: no transport, no client.

The engine is a generator of typed commands; these tests play the driver's part and
check every decision it makes (what it sends, how long it sleeps, what it reports).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import attrs
import pytest

from modelport import errors
from modelport._engine import (
    ChunkParser,
    OpenStream,
    Progress,
    RetryPolicy,
    Send,
    Sleep,
    run_call,
    run_routed,
)
from modelport.provider import (
    IGNORE_EVENT,
    Call,
    Endpoint,
    FollowUp,
    NDJSONDecoder,
    ProviderInfo,
    SSEDecoder,
    Step,
    WireRequest,
    WireResponse,
    end_of_stream,
    openai,
)
from modelport.routing import InMemoryRouterState, Router, load_config

INFO = ProviderInfo(name="fake", api_base="http://127.0.0.1:9/v1")
OK = {"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []}


def make_call(**changes: Any) -> Call:
    call = Call("chat", "fake", "m", {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, INFO, api_key="sk-secret-key")
    return attrs.evolve(call, **changes)


class Hooks:
    """The hook callers the engine uses, on the OpenAI wire unless a test overrides one."""

    def __init__(self, transform_response: Any = None) -> None:
        self.resolve_endpoint = openai.resolve_endpoint
        self.transform_request = openai.build_request
        self.map_error = openai.map_error
        self.parse_stream_chunk = openai.parse_chunk
        self.steps: List[Step] = []
        self._transform = transform_response
        self.encodes_responses = True
        self.encodes_streams = True
        self.encode_response = openai.encode_response
        self.encode_stream = openai.encode_stream

    def transform_response(self, call: Call, response: WireResponse, step: Step) -> Any:
        self.steps.append(step)
        if self._transform is not None:
            return self._transform(call, response, step)
        return openai.parse_response(call, response)

    def stream_decoder(self, call: Call, head: WireResponse) -> Any:
        return SSEDecoder()


def ok(body: Dict[str, Any] = OK, request: Optional[WireRequest] = None) -> WireResponse:
    return WireResponse(200, {"content-type": "application/json"}, openai.dumps(body).encode(), request)


def error(status: int, headers: Optional[Dict[str, str]] = None, code: str = "x") -> WireResponse:
    body = {"error": {"message": f"status {status}", "code": code}}
    return WireResponse(status, headers or {}, openai.dumps(body).encode())


def drive(engine: Any, replies: List[Any]) -> Any:
    """Play the driver: answer each Send with the next reply (an exception is thrown in)."""
    commands: List[Any] = []
    try:
        command = next(engine)
        while True:
            commands.append(command)
            if isinstance(command, Send):
                reply = replies.pop(0)
                if isinstance(reply, BaseException):
                    command = engine.throw(reply)
                    continue
                command = engine.send(reply)
            else:
                command = engine.send(None)
    except StopIteration as stop:
        return stop.value, commands


def test_retries_server_errors_with_backoff_then_returns():
    policy = RetryPolicy(retries=2, backoff=1.0, max_delay=8.0)
    result, commands = drive(run_call(Hooks(), make_call(), policy), [error(500), error(503), ok()])
    assert result == OK
    kinds = [type(c).__name__ for c in commands]
    assert kinds == ["Send", "Sleep", "Send", "Sleep", "Send"]
    first, second = commands[1].seconds, commands[3].seconds
    assert 0.5 <= first <= 1.0 and 1.0 <= second <= 2.0  # doubling, with jitter in [50%, 100%]


def test_gives_up_after_the_retry_budget_and_never_retries_other_4xx():
    with pytest.raises(errors.InternalServerError):
        drive(run_call(Hooks(), make_call(), RetryPolicy(retries=1)), [error(500), error(500)])
    engine = run_call(Hooks(), make_call(), RetryPolicy(retries=5))
    with pytest.raises(errors.BadRequestError):
        drive(engine, [error(400)])


def test_retry_after_from_headers_and_from_the_error_wins_over_backoff():
    _, commands = drive(run_call(Hooks(), make_call(), RetryPolicy()), [error(429, {"retry-after": "3"}), ok()])
    assert [c.seconds for c in commands if isinstance(c, Sleep)] == [3.0]

    hooks = Hooks()
    hooks.map_error = lambda call, response: openai.build_error(call, response, errors.RateLimitError, retry_after=1.25)
    _, commands = drive(run_call(hooks, make_call(), RetryPolicy()), [error(429), ok()])
    assert [c.seconds for c in commands if isinstance(c, Sleep)] == [1.25]


def test_connection_errors_thrown_in_are_retried_and_stamped():
    failure = errors.APIConnectionError("could not connect")
    result, commands = drive(run_call(Hooks(), make_call(), RetryPolicy(retries=1, backoff=0.01)), [failure, ok()])
    assert result == OK and failure.provider == "fake" and failure.model == "m"
    with pytest.raises(errors.APITimeoutError):
        drive(run_call(Hooks(), make_call(), RetryPolicy(retries=0)), [errors.APITimeoutError("slow")])


def test_echoed_key_is_scrubbed_from_errors():
    body = {"error": {"message": "bad key sk-secret-key", "code": "invalid"}}
    response = WireResponse(401, {}, openai.dumps(body).encode())
    with pytest.raises(errors.AuthenticationError) as info:
        drive(run_call(Hooks(), make_call(), RetryPolicy()), [response])
    assert "sk-secret-key" not in str(info.value) and "sk-secret-key" not in (info.value.body or "")


def test_extra_headers_reach_every_request_and_the_request_is_redacted_in_reprs():
    call = make_call(extra_headers={"X-Trace": "t1"})
    _, commands = drive(run_call(Hooks(), call, RetryPolicy()), [ok()])
    request = commands[0].request
    assert request.headers["X-Trace"] == "t1" and request.headers["Authorization"] == "Bearer sk-secret-key"
    assert "sk-secret-key" not in repr(request) and "sk-secret-key" not in repr(call)


@attrs.frozen
class Job:
    job_id: str


def test_follow_ups_carry_typed_state_and_the_engines_clock():
    """A submit-then-poll operation: state comes back in Step, elapsed from the engine's clock."""
    now = [100.0]

    def transform(call: Call, response: WireResponse, step: Step) -> Any:
        body = response.json()
        if step.state is None:
            return FollowUp(WireRequest("GET", "http://127.0.0.1:9/jobs/j1"), delay=2.0, status="QUEUED", state=Job(body["job"]))
        if body.get("state") != "done":
            return FollowUp(WireRequest("GET", f"http://127.0.0.1:9/jobs/{step.state.job_id}"), delay=2.0, status="RUNNING", state=step.state)
        return {"data": [{"url": body["url"]}], "job": step.state.job_id}

    hooks = Hooks(transform)
    engine = run_call(hooks, make_call(operation="image_generation"), RetryPolicy(), clock=lambda: now[0])
    replies = [ok({"job": "j1"}), ok({"state": "running"}), ok({"state": "done", "url": "u"})]
    commands: List[Any] = []
    command = next(engine)
    try:
        while True:
            commands.append(command)
            if isinstance(command, Sleep):
                now[0] += command.seconds
                command = engine.send(None)
            elif isinstance(command, Send):
                now[0] += 0.5
                command = engine.send(replies.pop(0))
            else:
                command = engine.send(None)
    except StopIteration as stop:
        result = stop.value
    assert result == {"data": [{"url": "u"}], "job": "j1"}
    assert [c.status for c in commands if isinstance(c, Progress)] == ["QUEUED", "RUNNING"]
    assert [s.number for s in hooks.steps] == [1, 2, 3]
    assert [s.state for s in hooks.steps] == [None, Job("j1"), Job("j1")]
    assert [s.elapsed for s in hooks.steps] == [0.5, 3.0, 5.5]
    assert [c.request.method for c in commands if isinstance(c, Send)] == ["POST", "GET", "GET"]


class _Handle:
    head = WireResponse(200, {"content-type": "text/event-stream"}, b"")


def test_a_2xx_stream_is_handed_back_open():
    handle = _Handle()
    result, commands = drive(run_call(Hooks(), make_call(stream=True), RetryPolicy()), [handle])
    assert isinstance(result, OpenStream) and result.handle is handle and commands[0].stream is True


def test_mock_response_runs_the_decoding_hooks_without_sending():
    hooks = Hooks()
    result, commands = drive(run_call(hooks, make_call(), RetryPolicy(), mock="pong"), [])
    assert commands == [] and result["choices"][0]["message"]["content"] == "pong"
    assert len(hooks.steps) == 1  # transform_response ran on the encoded mock
    hooks.encodes_responses = False  # a plugin decoding its own format without an encoder
    result, _ = drive(run_call(hooks, make_call(), RetryPolicy(), mock="pong"), [])
    assert result["choices"][0]["message"]["content"] == "pong" and len(hooks.steps) == 1


# --- stream parsing -----------------------------------------------------------------------


def _chunk(text: str, finish: Optional[str] = None) -> Dict[str, Any]:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}  # fmt: skip


def test_one_event_may_yield_several_chunks_and_end_the_stream():
    def parse(call: Call, event: Any) -> Any:
        line = event.data
        if line == "ping":
            return IGNORE_EVENT
        if line == "pair":
            return [_chunk("a"), _chunk("b")]
        if line == "last":
            return end_of_stream(_chunk("", "stop"), {**_chunk(""), "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}})
        return _chunk(line)

    parser = ChunkParser(NDJSONDecoder(), parse, lambda d: d, make_call(stream=True))
    out = parser.feed(b"x\nping\npa") + parser.feed(b"ir\nlast\nafter\n")
    assert [c["choices"][0]["delta"]["content"] if c["choices"] else "usage" for c in out] == ["x", "a", "b", "", "usage"]
    assert parser.done and parser.error is None and parser.feed(b"more\n") == []


def test_chunks_before_a_malformed_event_are_delivered_then_the_error():
    parser = ChunkParser(SSEDecoder(), openai.parse_chunk, lambda d: d, make_call(stream=True))
    good = b"data: " + openai.dumps(_chunk("ok")).encode() + b"\n\n"
    out = parser.feed(good + good + b"data: {not json\n\n" + good)
    assert len(out) == 2 and isinstance(parser.error, errors.MalformedStreamError) and parser.done


def test_a_stream_that_ends_without_its_marker_is_interrupted():
    parser = ChunkParser(SSEDecoder(), openai.parse_chunk, lambda d: d, make_call(stream=True))
    parser.feed(b"data: " + openai.dumps(_chunk("ok")).encode() + b"\n\ndata: {\"id\"")
    assert parser.finish() == [] and isinstance(parser.error, errors.StreamInterruptedError)
    assert "in the middle of an event" in str(parser.error)


# --- the router ---------------------------------------------------------------------------

CONFIG = {
    "model_list": [
        {"model_name": "g", "params": {"model": "openai/a", "api_base": "http://127.0.0.1:9/v1"}},
        {"model_name": "g", "params": {"model": "openai/b", "api_base": "http://127.0.0.1:9/v1"}},
        {"model_name": "backup", "params": {"model": "openai/c", "api_base": "http://127.0.0.1:9/v1"}},
    ],
    "router_settings": {"cooldown_time": 30, "fallbacks": [{"g": ["backup"]}]},
}


def test_router_round_robin_advances_once_per_plan_and_deployments_reads_nothing():
    router = Router(load_config(CONFIG))
    assert [d.model for d in router.deployments("g")] == ["openai/a", "openai/b", "openai/c"]
    assert [router.plan("g")[0].model for _ in range(4)] == ["openai/a", "openai/b", "openai/a", "openai/b"]
    router.deployments("g")
    assert router.plan("g")[0].model == "openai/a"
    assert router.plan("g")[-1].model == "openai/c"  # fallbacks after the group


def test_router_cool_down_lives_in_its_state_not_on_the_config():
    now = [0.0]
    config = load_config(CONFIG)
    state = InMemoryRouterState()
    router = Router(config, state=state, clock=lambda: now[0])
    first = router.plan("g")[0]
    assert router.failed(first, errors.ServiceUnavailableError("down", status=503))
    assert not router.failed(first, errors.BadRequestError("bad", status=400))  # the request's own fault
    assert all(router.plan("g")[0] is not first for _ in range(3))  # healthy one first, every turn
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.model = "x"  # type: ignore[misc]
    # A second router on the same state (another worker sharing a store) sees the cool-down.
    other = Router(config, state=state, clock=lambda: now[0])
    assert other.plan("g")[0] is not first
    now[0] = 31.0
    assert {router.plan("g")[0].model for _ in range(2)} == {"openai/a", "openai/b"}
    router.succeeded(first)
    assert not state.cooling(first.id, 0.0)


def test_run_routed_fails_over_and_raises_request_errors_at_once():
    router = Router(load_config(CONFIG))
    tried: List[str] = []

    def attempt(deployment: Any) -> Any:
        tried.append(deployment.model)
        if deployment.model != "openai/c":
            raise errors.ServiceUnavailableError("down", status=503)
        return "answer"
        yield  # a generator, like the engine  # pragma: no cover

    result, _ = drive(run_routed(router, "g", attempt), [])
    assert result == "answer" and tried == ["openai/a", "openai/b", "openai/c"]

    def bad(deployment: Any) -> Any:
        raise errors.InvalidRequestError("fix your request")
        yield  # pragma: no cover

    with pytest.raises(errors.InvalidRequestError):
        drive(run_routed(router, "g", bad), [])


def test_endpoint_with_the_operations_path_already_is_used_as_is():
    assert Endpoint("http://h/v1", "/rerank").url == "http://h/v1/rerank"
    assert Endpoint("http://h/v1/rerank", "/rerank").url == "http://h/v1/rerank"


def test_secret_provider_options_are_hidden_in_reprs_and_scrubbed_from_errors():
    info = attrs.evolve(INFO, secret_fields={"ad_token"}, options=("ad_token", "region"))
    call = make_call(info=info, options={"ad_token": "tok-very-secret", "region": "us"})
    assert "tok-very-secret" not in repr(call) and "'region': 'us'" in repr(call)
    body = {"error": {"message": "token tok-very-secret rejected", "code": "x"}}
    with pytest.raises(errors.AuthenticationError) as info_:
        drive(run_call(Hooks(), call, RetryPolicy()), [WireResponse(401, {}, openai.dumps(body).encode())])
    assert "tok-very-secret" not in str(info_.value) and "tok-very-secret" not in (info_.value.body or "")


def test_config_reprs_hide_every_credential_like_param():
    config = load_config({"model_list": [{"model_name": "a", "params": {"model": "azure/d", "api_key": "k-1", "azure_ad_token": "t-2", "region": "us"}}]})
    text = repr(config.deployments[0])
    assert "k-1" not in text and "t-2" not in text and "'region': 'us'" in text


def test_rebuild_keeps_real_ids_over_later_placeholders():
    from modelport import stream_to_completion

    first = {**_chunk("a"), "id": "real", "created": 5}
    placeholder = {**_chunk("b"), "id": "", "model": "", "created": 0}
    rebuilt = stream_to_completion([first, placeholder, {**_chunk("", "stop"), "id": "real", "created": 5}])
    assert (rebuilt.id, rebuilt.created, rebuilt.model) == ("real", 5, "m")
    assert rebuilt.choices[0].message.content == "ab"
