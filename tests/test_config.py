"""Config files and the router: aliases, load balancing, cool-downs, fallbacks, declared providers."""

from __future__ import annotations

import asyncio

import pytest

import modelport
from modelport import errors
from modelport.testing.upstream import FakeUpstream

USER = [{"role": "user", "content": "hi"}]


def write(tmp_path, text, name="config.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_yaml_and_toml_with_litellm_alias(tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("MY_UPSTREAM_KEY", "sk-from-env")
    yaml_path = write(tmp_path, f"""
model_list:
  - model_name: my-model
    litellm_params:
      model: openai/gpt-x
      api_base: {upstream.base_url}
      api_key: os.environ/MY_UPSTREAM_KEY
      temperature: 0.1
""")
    toml_path = write(tmp_path, f"""
[[model_list]]
model_name = "my-model"
[model_list.params]
model = "openai/gpt-x"
api_base = "{upstream.base_url}"
api_key = "os.environ/MY_UPSTREAM_KEY"
temperature = 0.1
""", "config.toml")
    for path in (yaml_path, toml_path):
        client = modelport.Client.from_config(path)
        assert client.model_names == ["my-model"]
        result = client.completion("my-model", USER)
        assert result.choices[0].message.content == "You said: hi"
        assert upstream.last.json["model"] == "gpt-x" and upstream.last.json["temperature"] == 0.1
        assert upstream.last.headers["authorization"] == "Bearer sk-from-env"
        assert "sk-from-env" not in repr(client.router.config)
        client.completion("my-model", USER, temperature=0.9)  # the caller's arguments win
        assert upstream.last.json["temperature"] == 0.9
        assert client.completion("openai/direct", USER, api_base=upstream.base_url).choices  # plain model strings still work


def test_missing_env_var_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    path = write(tmp_path, "model_list:\n  - model_name: m\n    params: {model: openai/x, api_key: os.environ/NOT_SET_ANYWHERE}\n")
    with pytest.raises(errors.ConfigError, match="NOT_SET_ANYWHERE"):
        modelport.Client.from_config(path).completion("m", USER, mock_response="x")


@pytest.mark.parametrize(
    "text,match",
    [
        ("model_list: [{params: {model: openai/x}}]", "model_name"),
        ("model_list: [{model_name: a, params: {}}]", "params.model"),
        ("model_list: [{model_name: a, params: {model: 'openai/*'}}]", "wildcard model_name"),
        ("model_list: [{model_name: a, params: {model: openai/x}}]\nrouter_settings: {routing_strategy: fastest}", "not one of"),
        ("model_list: [{model_name: a, params: {model: openai/x, rpm: -1}}]", "rpm must be a number"),
        ("model_list: [{model_name: a, params: {model: openai/x}}]\nrouter_settings: {model_group_alias: {b: c}}", "names no model group"),
        ("model_list: [{model_name: a, params: {model: openai/x}}]\nrouter_settings: {fallbacks: [{a: [b]}]}", "unknown model"),
        ("model_lists: []", "unknown section"),
        ("model_list: [unclosed", "not valid YAML"),
    ],
)
def test_bad_configs_say_what_to_fix(tmp_path, text, match):
    with pytest.raises(errors.ConfigError, match=match):
        modelport.load_config(write(tmp_path, text))


def test_missing_file():
    with pytest.raises(errors.ConfigError, match="does not exist"):
        modelport.Client.from_config("/nonexistent/config.yaml")


def _two_deployments(bad, good, extra=""):
    return {
        "model_list": [
            {"model_name": "grp", "params": {"model": "openai/a", "api_base": bad.base_url}},
            {"model_name": "grp", "params": {"model": "openai/b", "api_base": good.base_url}},
        ],
        "router_settings": {"num_retries": 0, "cooldown_time": 60},
    }


def test_group_round_robin_and_cooldown(upstream):
    with FakeUpstream() as other:
        client = modelport.Client.from_config(_two_deployments(upstream, other))
        for _ in range(4):
            client.completion("grp", USER)
        assert len(upstream.requests) == 2 and len(other.requests) == 2  # round-robin
        upstream.clear(), other.clear()
        upstream.reply(status=503, json={"error": {"message": "down"}}, times=10)
        for _ in range(4):
            assert client.completion("grp", USER).choices
        assert len(upstream.requests) == 1  # failed once, then cooled down
        assert len(other.requests) == 4


def test_errors_the_request_causes_do_not_fail_over(upstream):
    with FakeUpstream() as other:
        client = modelport.Client.from_config(_two_deployments(upstream, other))
        upstream.reply(status=400, json={"error": {"message": "bad"}})
        other.reply(status=400, json={"error": {"message": "bad"}})
        with pytest.raises(errors.BadRequestError):
            client.completion("grp", USER)
        assert len(upstream.requests) + len(other.requests) == 1


def test_fallbacks_after_the_group_fails(upstream):
    with FakeUpstream() as backup:
        config = {
            "model_list": [
                {"model_name": "main", "params": {"model": "openai/m", "api_base": upstream.base_url}},
                {"model_name": "backup", "params": {"model": "openai/b", "api_base": backup.base_url}},
            ],
            "router_settings": {"num_retries": 0, "fallbacks": [{"main": ["backup"]}]},
        }
        client = modelport.Client.from_config(config)
        upstream.reply(status=429, json={"error": {"message": "slow down"}})
        assert client.completion("main", USER).model == "b"
        assert len(backup.requests) == 1

        async def run():
            async with modelport.AsyncClient.from_config(config) as aclient:
                upstream.reply(status=500, json={"error": {"message": "boom"}})
                stream = await aclient.completion("main", USER, stream=True)
                return [c async for c in stream]

        assert modelport.stream_to_completion(asyncio.run(run())).model == "b"


def test_all_deployments_failing_raises_the_last_error(upstream):
    client = modelport.Client.from_config({
        "model_list": [{"model_name": "only", "params": {"model": "openai/m", "api_base": upstream.base_url}}],
        "router_settings": {"num_retries": 0},
    })  # fmt: skip
    upstream.reply(status=503, json={"error": {"message": "down"}})
    with pytest.raises(errors.ServiceUnavailableError):
        client.completion("only", USER)


def test_declared_provider_by_data(tmp_path, upstream, monkeypatch):
    monkeypatch.setenv("ACME_DATA_KEY", "sk-data")
    path = write(tmp_path, f"""
providers:
  - name: datacorp
    api_base: {upstream.base_url}
    api_key_env: ACME_DATA_KEY
    param_renames: {{max_tokens: max_output_tokens}}
model_list:
  - model_name: dc
    params: {{model: datacorp/big-1}}
""")
    client = modelport.Client.from_config(path)
    client.completion("dc", USER, max_tokens=5)
    sent = upstream.last
    assert sent.json["max_output_tokens"] == 5 and "max_tokens" not in sent.json
    assert sent.headers["authorization"] == "Bearer sk-data"
    assert client.completion("datacorp/big-1", USER).choices  # the client serves it directly too
    # ...but only that client: a declared provider is not registered process-wide.
    with pytest.raises(errors.UnknownProviderError):
        modelport.completion("datacorp/big-1", USER)
    other = modelport.Client.from_config({"model_list": [], "providers": [{"name": "othercorp", "api_base": upstream.base_url}]})
    with pytest.raises(errors.UnknownProviderError):
        other.completion("datacorp/big-1", USER)
    with pytest.raises(errors.UnknownProviderError):
        client.completion("othercorp/x", USER)


def test_dry_run_of_an_alias(tmp_path):
    client = modelport.Client.from_config({"model_list": [{"model_name": "m", "params": {"model": "openai/x", "api_base": "http://127.0.0.1:9/v1"}}]})
    request = client.build_request("chat", "m", messages=USER)
    assert request.url == "http://127.0.0.1:9/v1/chat/completions" and request.json["model"] == "x"
