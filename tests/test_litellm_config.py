"""LiteLLM proxy configs, routing strategies and limits, call options and response
objects, as LiteLLM users expect them; against recording loopback upstreams."""

from __future__ import annotations

import asyncio
import random
import warnings
from collections import Counter

import pytest

import modelport
from modelport import errors
from modelport.routing import Router, load_config
from modelport.testing.upstream import FakeUpstream

USER = [{"role": "user", "content": "hi"}]

LITELLM_DOCS_CONFIG = """
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {base}
      api_key: os.environ/LITELLM_TEST_KEY
      rpm: 600
      tpm: 100000
      timeout: 30
      stream_timeout: 60
      max_retries: 1
      input_cost_per_token: 0.0000025
      output_cost_per_token: 0.00001
      tags: ["paid"]
      region_name: eu
    model_info:
      id: gpt-4o-eu
      base_model: gpt-4o
  - model_name: gpt-3.5-turbo
    litellm_params:
      model: gpt-3.5-turbo
      api_base: {base}
litellm_settings:
  drop_params: true
  num_retries: 2
  request_timeout: 45
  set_verbose: false
  fallbacks: [{{"gpt-4o": ["gpt-3.5-turbo"]}}]
router_settings:
  routing_strategy: simple-shuffle
  allowed_fails: 2
  cooldown_time: 30
  model_group_alias: {{"gpt-4": "gpt-4o"}}
environment_variables:
  LITELLM_TEST_KEY: sk-from-config-env
general_settings:
  master_key: sk-1234
"""


def test_a_litellm_proxy_config_loads_and_routes_unchanged(tmp_path, upstream, monkeypatch):
    monkeypatch.delenv("LITELLM_TEST_KEY", raising=False)
    path = tmp_path / "litellm.yaml"
    path.write_text(LITELLM_DOCS_CONFIG.format(base=upstream.base_url))
    with pytest.warns(UserWarning, match=r"ignored \(not implemented by modelport\): litellm_settings.set_verbose"):
        client = modelport.Client.from_config(path)
    config = client.router.config
    first = config.deployments[0]
    assert (first.rpm, first.tpm, first.num_retries, first.timeout, first.stream_timeout) == (600, 100000, 1, 30, 60)
    assert first.id == "gpt-4o-eu" and first.input_cost_per_token == 0.0000025 and first.tags == ("paid",)
    assert config.deployments[1].model == "openai/gpt-3.5-turbo"  # a bare name is an OpenAI model, as in LiteLLM
    assert config.routing_strategy == "simple-shuffle" and config.allowed_fails == 2 and config.cooldown_time == 30
    assert config.timeout == 45 and config.num_retries == 2 and config.call_defaults == {"drop_params": True}

    result = client.completion("gpt-4", USER, logit_bias={"1": 1})  # the alias of the gpt-4o group
    sent = upstream.last.json
    assert result.choices[0].message.content == "You said: hi" and sent["model"] == "gpt-4o"
    for routing_key in ("rpm", "tpm", "timeout", "stream_timeout", "max_retries", "input_cost_per_token", "tags", "region_name", "model_info"):
        assert routing_key not in sent
    assert upstream.last.headers["authorization"] == "Bearer sk-from-config-env"  # environment_variables applied


def test_unimplemented_keys_are_warned_once_never_sent(tmp_path, upstream):
    config = {
        "model_list": [{"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": upstream.base_url,
                                                              "input_cost_per_second": 0.1, "use_in_pass_through": True}}],
        "litellm_settings": {"success_callback": ["langfuse"]},
        "router_settings": {"provider_budget_config": {}},
    }  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = modelport.Client.from_config(config)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert len(messages) == 1
    for key in ("input_cost_per_second", "use_in_pass_through", "litellm_settings.success_callback", "router_settings.provider_budget_config"):
        assert key in messages[0]
    client.completion("m", USER)
    assert set(upstream.last.json) == {"model", "messages"}


def _group(*deployments: dict, **settings) -> Router:
    config = load_config({"model_list": [{"model_name": "g", "params": {"model": f"openai/{d.pop('id')}", **d}} for d in deployments],
                          "router_settings": settings})  # fmt: skip
    return config


def _served(client, calls: int, model: str = "g", **kwargs) -> Counter:
    return Counter(client.completion(model, USER, mock_response="ok", **kwargs).model for _ in range(calls))


def test_simple_shuffle_follows_weights():
    config = _group({"id": "heavy", "weight": 9}, {"id": "light", "weight": 1}, routing_strategy="simple-shuffle")
    client = modelport.Client(router=Router(config, rng=random.Random(7)))
    counts = _served(client, 400)
    assert 320 <= counts["heavy"] <= 390 and counts["light"] >= 10


def test_rpm_limits_move_calls_on_and_then_answer_429():
    config = _group({"id": "a", "rpm": 2}, {"id": "b", "rpm": 1})
    client = modelport.Client(router=Router(config, clock=lambda: 1000.0))
    assert sorted(_served(client, 3).elements()) == ["a", "a", "b"]
    with pytest.raises(errors.RateLimitError) as info:
        client.completion("g", USER, mock_response="ok")
    assert info.value.status == 429 and info.value.retry_after == pytest.approx(20.0) and "rpm" in info.value.message


def test_tpm_counts_the_tokens_of_finished_calls():
    config = _group({"id": "a", "tpm": 3}, {"id": "b"}, routing_strategy="usage-based-routing-v2")
    client = modelport.Client(router=Router(config, clock=lambda: 60.0))
    first = client.completion("g", USER, mock_response="ok")  # the mock reports 2 tokens
    second = client.completion("g", USER, mock_response="ok")
    assert {first.model, second.model} == {"a", "b"}  # usage-based: the unused one next
    client.completion("g", USER, mock_response="ok")
    client.completion("g", USER, mock_response="ok")
    assert _served(client, 3) == Counter({"b": 3})  # a passed its 3 tokens this minute


def test_max_parallel_requests_per_deployment(upstream):
    with FakeUpstream() as other:
        config = load_config({"model_list": [
            {"model_name": "g", "params": {"model": "openai/a", "api_base": upstream.base_url, "max_parallel_requests": 1}},
            {"model_name": "g", "params": {"model": "openai/b", "api_base": other.base_url, "max_parallel_requests": 1}},
        ]})  # fmt: skip
        upstream.reply(json={"id": "x", "object": "chat.completion", "created": 1, "model": "a", "choices": []}, delay=0.3, times=5)
        other.reply(json={"id": "y", "object": "chat.completion", "created": 1, "model": "b", "choices": []}, delay=0.3, times=5)

        async def burst():
            async with modelport.AsyncClient(router=Router(config)) as client:
                return await asyncio.gather(*(client.completion("g", USER) for _ in range(3)), return_exceptions=True)

        results = asyncio.run(burst())
        assert sorted(r.model for r in results if not isinstance(r, Exception)) == ["a", "b"]
        assert [type(r) for r in results if isinstance(r, Exception)] == [errors.RateLimitError]


def test_order_is_a_priority_tier():
    config = _group({"id": "backup", "order": 2}, {"id": "primary", "order": 1}, {"id": "unordered"})
    client = modelport.Client(router=Router(config))
    assert _served(client, 4) == Counter({"primary": 4})
    router = client.router
    assert [d.model for d in router.plan("g")] == ["openai/primary", "openai/backup", "openai/unordered"]


def test_least_busy_and_latency_based_read_the_state():
    for strategy in ("least-busy", "latency-based-routing"):
        config = _group({"id": "a"}, {"id": "b"}, routing_strategy=strategy)
        router = Router(config, clock=lambda: 10.0)
        a, b = config.deployments
        if strategy == "least-busy":
            router.begin(a)  # a has a call in flight
        else:
            router.end(router.begin(a), result={})  # a answered in 0 s ...
            ticket = router.begin(b)
            router._clock = lambda: 12.0
            router.end(ticket, result={})  # ... b in 2 s
            router.begin(b)  # and b is busier anyway
        assert router.plan("g")[0] is (b if strategy == "least-busy" else a)


def test_allowed_fails_before_a_cool_down():
    config = _group({"id": "a"}, {"id": "b"}, allowed_fails=1, cooldown_time=60)
    router = Router(config, clock=lambda: 5.0)
    a = config.deployments[0]
    down = errors.ServiceUnavailableError("down", status=503)
    router.end(router.begin(a), error=down)
    assert not router.state.cooling(a.id, 5.0)  # one failure allowed
    router.end(router.begin(a), error=down)
    assert router.state.cooling(a.id, 5.0)


@pytest.mark.parametrize(
    "kind,error",
    [
        ("context_window_fallbacks", errors.ContextWindowExceededError("prompt is too long", status=400)),
        ("content_policy_fallbacks", errors.ContentFilterError("flagged", status=400)),
    ],
)
def test_context_window_and_content_policy_fallbacks(kind, error):
    config = load_config({
        "model_list": [
            {"model_name": "small", "params": {"model": "openai/small", "mock_response": error}},
            {"model_name": "small", "params": {"model": "openai/small-2", "mock_response": error}},
            {"model_name": "big", "params": {"model": "openai/big", "mock_response": "served by big"}},
        ],
        "router_settings": {kind: [{"small": ["big"]}], "num_retries": 0},
    })  # fmt: skip
    client = modelport.Client(router=Router(config))
    result = client.completion("small", USER)
    assert result.choices[0].message.content == "served by big" and result.model == "big"
    without = modelport.Client(router=Router(load_config({"model_list": config_entries(config)})))
    with pytest.raises(type(error)):  # a 400 the request causes does not fail over on its own
        without.completion("small", USER)


def config_entries(config):
    return [{"model_name": d.model_name, "params": {"model": d.model, **d.params}} for d in config.deployments]


def test_default_fallbacks_serve_groups_without_their_own():
    down = errors.ServiceUnavailableError("down", status=503)
    config = load_config({
        "model_list": [
            {"model_name": "a", "params": {"model": "openai/a", "mock_response": down}},
            {"model_name": "spare", "params": {"model": "openai/spare", "mock_response": "spare"}},
        ],
        "litellm_settings": {"default_fallbacks": ["spare"]},
    })  # fmt: skip
    assert modelport.Client(router=Router(config)).completion("a", USER).model == "spare"


def test_wildcard_groups_fill_in_the_requested_model(upstream):
    client = modelport.Client.from_config({"model_list": [
        {"model_name": "openai/*", "litellm_params": {"model": "openai/*", "api_base": upstream.base_url, "api_key": "sk-wild"}},
        {"model_name": "*", "litellm_params": {"model": "openai/*", "api_base": upstream.base_url, "api_key": "sk-any"}},
    ]})  # fmt: skip
    client.completion("openai/gpt-4o-mini", USER)
    assert upstream.last.json["model"] == "gpt-4o-mini" and upstream.last.headers["authorization"] == "Bearer sk-wild"
    client.completion("some-model", USER)  # the catch-all group
    assert upstream.last.json["model"] == "some-model" and upstream.last.headers["authorization"] == "Bearer sk-any"


def test_stream_timeout_applies_to_streams():
    config = load_config({"model_list": [{"model_name": "m", "params": {"model": "openai/x", "timeout": 5, "stream_timeout": 50}}]})
    router = Router(config)
    assert router.call_arguments(config.deployments[0], {})[1]["timeout"] == 5
    assert router.call_arguments(config.deployments[0], {"stream": True})[1]["timeout"] == 50


def test_an_unknown_alias_lists_the_configured_ones():
    client = modelport.Client.from_config({"model_list": [{"model_name": "alpha", "params": {"model": "openai/x"}}]})
    with pytest.raises(errors.InvalidRequestError, match="the config's model names: alpha"):
        client.completion("beta", USER)


# --- call options and response objects -------------------------------------------------------


def test_litellm_call_options(upstream, client):
    client.completion("gpt-4o", USER, custom_llm_provider="openai", api_base=upstream.base_url, extra_query={"tenant": "t 1"})
    assert upstream.last.json["model"] == "gpt-4o" and upstream.last.query == {"tenant": "t 1"}
    assert client.completion("openai/m", USER, base_url=upstream.base_url, ssl_verify=False).choices
    with pytest.raises(errors.InvalidRequestError, match="takes no api_version"):
        client.completion("openai/m", USER, api_base=upstream.base_url, api_version="2024-10-21")
    with pytest.raises(errors.InvalidRequestError, match="ssl_verify"):
        client.completion("openai/m", USER, api_base=upstream.base_url, ssl_verify=3)


def test_responses_read_like_litellm_objects(upstream, client):
    result = client.completion("openai/m", USER, api_base=upstream.base_url)
    assert result["choices"][0]["message"]["content"] == result.choices[0].message.content == "You said: hi"
    assert result.get("no-such-field", "d") == "d" and "choices" in result and "nope" not in result
    assert result.model_dump() == result.to_dict()
    import json

    assert json.loads(result.model_dump_json()) == result.to_dict() == json.loads(result.json())
    chunks = list(client.completion("openai/m", USER, api_base=upstream.base_url, stream=True))
    assert modelport.stream_chunk_builder(chunks, messages=USER).choices[0].message.content == "You said: hi"
    with pytest.raises(KeyError):
        result["nope"]


def test_a_json_answer_to_a_streaming_request_says_so(upstream, client):
    upstream.reply(json={"id": "x", "object": "chat.completion", "created": 1, "model": "m", "choices": []})
    with pytest.raises(errors.MalformedResponseError, match="plain JSON body instead of a stream"):
        list(client.completion("openai/m", USER, api_base=upstream.base_url, stream=True))


def test_api_version_on_a_non_azure_deployment_is_warned_and_dropped(upstream):
    with pytest.warns(UserWarning, match=r"api_version \(only azure/ uses it\)"):
        client = modelport.Client.from_config({"model_list": [
            {"model_name": "m", "litellm_params": {"model": "openai/x", "api_base": upstream.base_url, "api_version": "2024-10-21"}}]})  # fmt: skip
    client.completion("m", USER)
    assert "api_version" not in upstream.last.json


def test_every_response_knows_its_cost(upstream):
    client = modelport.Client.from_config({"model_list": [{"model_name": "priced", "litellm_params": {
        "model": "openai/house-model", "api_base": upstream.base_url,
        "input_cost_per_token": 0.001, "output_cost_per_token": 0.002}}]})  # fmt: skip
    result = client.completion("priced", USER)
    usage = result.usage
    expected = usage.prompt_tokens * 0.001 + usage.completion_tokens * 0.002
    assert expected > 0 and result.cost == pytest.approx(expected)
    assert result._hidden_params["response_cost"] == pytest.approx(expected)  # LiteLLM's place
    assert "cost" not in result.to_dict() and "_hidden_params" not in result.to_dict()
    assert modelport.completion_cost(completion_response=result, model="openai/gpt-4o-mini") > 0  # from the catalog
    unknown = modelport.completion("openai/not-in-any-catalog", USER, api_base=upstream.base_url)
    assert unknown.cost is None


def test_pre_call_checks_skip_deployments_the_prompt_does_not_fit():
    config = load_config({
        "model_list": [
            {"model_name": "g", "params": {"model": "openai/small", "mock_response": "small"}, "model_info": {"max_input_tokens": 50}},
            {"model_name": "g", "params": {"model": "openai/big", "mock_response": "big"}, "model_info": {"max_input_tokens": 100000}},
            {"model_name": "tiny", "params": {"model": "openai/tiny", "mock_response": "tiny"}, "model_info": {"max_input_tokens": 10}},
            {"model_name": "huge", "params": {"model": "openai/huge", "mock_response": "huge"}, "model_info": {"max_input_tokens": 100000}},
        ],
        "router_settings": {"enable_pre_call_checks": True, "context_window_fallbacks": [{"tiny": ["huge"]}]},
    })  # fmt: skip
    client = modelport.Client(router=Router(config))
    long = [{"role": "user", "content": "word " * 200}]  # about 250 tokens
    assert {client.completion("g", long).model for _ in range(4)} == {"big"}
    assert {client.completion("g", USER).model for _ in range(4)} == {"small", "big"}  # short prompts fit both
    assert client.completion("tiny", long).model == "huge"  # nothing fits: the context-window fallback
    off = modelport.Client(router=Router(load_config({"model_list": config_entries(config)[:1]})))
    assert off.completion("g", long).model == "small"  # without the checks the prompt is sent as it is
    strict = modelport.Client(router=Router(load_config({
        "model_list": [{"model_name": "tiny", "params": {"model": "openai/tiny", "mock_response": "tiny"}, "model_info": {"max_input_tokens": 10}}],
        "router_settings": {"enable_pre_call_checks": True},
    })))  # fmt: skip
    with pytest.raises(errors.ContextWindowExceededError, match="does not fit"):
        strict.completion("tiny", long)
