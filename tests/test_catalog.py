"""The model catalog (each plugin's models.json), get_model_info, costs and `modelport models`."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

import modelport
from modelport import catalog
from modelport.errors import InvalidRequestError

ROOT = pathlib.Path(__file__).resolve().parent.parent
CATALOG_FILES = sorted(ROOT.glob("plugins/*/src/*/models.json"))
M = 1e-6  # catalog prices are per token; the figures below are per 1M tokens


def info(model, **kwargs):
    return catalog.get_model_info(model, **kwargs)


def chat_response(model, prompt, completion, *, cached=None, reasoning=None, **usage_extra):
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion, **usage_extra}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    message = {"role": "assistant", "content": "hi", "refusal": None}
    choice = {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": model, "choices": [choice], "usage": usage}


# --- get_model_info: LiteLLM's keys, per provider -----------------------------------------


LITELLM_KEYS = {
    "max_tokens", "max_input_tokens", "max_output_tokens", "input_cost_per_token", "output_cost_per_token",
    "cache_read_input_token_cost", "litellm_provider", "mode", "supports_function_calling", "supports_vision",
    "supports_reasoning", "supports_response_schema", "supports_prompt_caching", "key",
}  # fmt: skip


@pytest.mark.parametrize(
    "model, expected",
    [
        ("openai/gpt-4o-mini", {"max_input_tokens": 128_000, "max_output_tokens": 16_384, "max_tokens": 16_384,
                                "input_cost_per_token": 0.15 * M, "output_cost_per_token": 0.60 * M,
                                "cache_read_input_token_cost": 0.075 * M, "litellm_provider": "openai", "mode": "chat",
                                "supports_function_calling": True, "supports_vision": True, "supports_reasoning": False}),
        ("openai/o4-mini", {"max_input_tokens": 200_000, "max_output_tokens": 100_000, "input_cost_per_token": 1.10 * M,
                            "output_cost_per_token": 4.40 * M, "supports_reasoning": True}),
        ("openai/text-embedding-3-small", {"mode": "embedding", "max_input_tokens": 8_191, "max_tokens": 8_191,
                                           "input_cost_per_token": 0.02 * M, "output_cost_per_token": None,
                                           "output_vector_size": 1536, "supports_vision": False}),
        ("text-completion-openai/gpt-3.5-turbo-instruct", {"mode": "completion", "litellm_provider": "text-completion-openai",
                                                           "input_cost_per_token": 1.50 * M, "output_cost_per_token": 2.00 * M}),
        ("anthropic/claude-haiku-4-5", {"max_input_tokens": 200_000, "max_output_tokens": 64_000, "input_cost_per_token": 1 * M,
                                        "output_cost_per_token": 5 * M, "cache_read_input_token_cost": 0.10 * M,
                                        "cache_creation_input_token_cost": 1.25 * M, "litellm_provider": "anthropic"}),
        ("anthropic/claude-opus-5-5", {"max_input_tokens": 1_000_000, "max_output_tokens": 128_000,
                                       "input_cost_per_token": 4 * M, "output_cost_per_token": 20 * M}),
        ("gemini/gemini-2.5-pro", {"max_input_tokens": 1_048_576, "max_output_tokens": 65_536, "input_cost_per_token": 1.25 * M,
                                   "input_cost_per_token_above_200k_tokens": 2.50 * M, "supports_response_schema": True}),
        ("gemini/gemini-embedding-001", {"mode": "embedding", "max_input_tokens": 2_048, "input_cost_per_token": 0.15 * M}),
        ("dashscope/qwen-plus", {"litellm_provider": "dashscope", "mode": "chat", "input_cost_per_token": 0.4 * M,
                                 "output_cost_per_token": 1.2 * M, "currency": "USD", "region": "intl",
                                 "supports_function_calling": True, "supports_reasoning": True}),
        ("dashscope/qwen-turbo", {"max_input_tokens": 98_304, "max_output_tokens": 16_384, "supports_function_calling": False}),
        ("dashscope/text-embedding-v4", {"mode": "embedding", "max_input_tokens": 8_192, "input_cost_per_token": 0.07 * M}),
        ("modelscope/Qwen/Qwen3-235B-A22B-Instruct-2507", {"max_input_tokens": 262_144, "input_cost_per_token": 0.0,
                                                            "output_cost_per_token": 0.0, "litellm_provider": "modelscope"}),
        ("modelscope/Tongyi-MAI/Z-Image-Turbo", {"mode": "image_generation", "output_cost_per_image": 0.0}),
        ("azure/gpt-4o-mini", {"litellm_provider": "azure", "input_cost_per_token": 0.15 * M, "max_input_tokens": 128_000}),
    ],
)  # fmt: skip
def test_get_model_info_keys_and_values(model, expected):
    got = info(model)
    assert LITELLM_KEYS <= set(got)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value) if isinstance(value, float) else got[key] == value, key


def test_snapshot_ids_aliases_and_bare_names_resolve():
    assert info("anthropic/claude-haiku-4-5-20251001")["key"] == "claude-haiku-4-5"
    assert info("openai/gpt-4o-mini-2024-07-18")["key"] == "gpt-4o-mini"
    assert info("gemini/models/gemini-2.5-flash")["key"] == "gemini-2.5-flash"
    # a response's bare model field: found in the one catalog that has it (openai wins ties, as in LiteLLM)
    assert info("gpt-4o-mini")["litellm_provider"] == "openai"
    assert info("claude-haiku-4-5")["litellm_provider"] == "anthropic"
    assert info("Qwen/Qwen3-8B")["litellm_provider"] == "modelscope"


def test_unknown_models_raise_invalid_request_naming_model_and_model_info():
    for model in ("openai/gpt-nonexistent", "hosted_vllm/Qwen/Qwen3-8B", "vllm/x", "ollama/llama3", "gpt-zzz", "nope/x"):
        with pytest.raises(InvalidRequestError) as caught:
            info(model)
        message = str(caught.value)
        assert "isn't mapped yet" in message and repr(model) in message and "model_info" in message
        assert caught.value.param == "model"
    with pytest.raises(InvalidRequestError, match="ships no catalog"):
        info("hosted_vllm/Qwen/Qwen3-8B")
    with pytest.raises(InvalidRequestError, match="'nope' is not an installed provider"):
        info("nope/x")


def test_regional_prices_and_region_sources(monkeypatch):
    cn = info("dashscope/qwen-plus", region="cn")
    assert cn["currency"] == "CNY" and cn["region"] == "cn"
    assert cn["input_cost_per_token"] is None and cn["tiered_pricing"][0]["input_cost_per_token"] == pytest.approx(0.8 * M)
    assert info("dashscope/text-embedding-v4", region="cn")["input_cost_per_token"] == pytest.approx(0.072 * M)
    # a region whose prices were not published: no prices at all, never another region's
    us = info("dashscope/qwen-plus", region="us")
    assert us["region"] == "us" and us["input_cost_per_token"] is None and us["output_cost_per_token"] is None
    assert us["mode"] == "chat" and us["supports_function_calling"] is True
    monkeypatch.setenv("DASHSCOPE_REGION", "cn")
    assert info("dashscope/qwen-plus")["currency"] == "CNY"
    assert info("dashscope/qwen-plus", region="intl")["input_cost_per_token"] == pytest.approx(0.4 * M)
    # providers without regions ignore one
    assert info("openai/gpt-4o-mini", region="us")["input_cost_per_token"] == pytest.approx(0.15 * M)


def test_catalog_files_are_loaded_once_through_the_plugin_package():
    catalog.clear_cache()
    first = catalog.catalog_for("openai")
    assert catalog.catalog_for("text-completion-openai") is first  # one package, one load
    assert catalog.catalog_for("openai") is first
    assert first.package == "modelport_openai_compat" and len(first) > 10
    assert catalog.catalog_for("vllm") is catalog.catalog_for("hosted_vllm") and len(catalog.catalog_for("vllm")) == 0
    catalog.clear_cache()
    assert catalog.catalog_for("openai") is not first


def test_a_plugin_without_a_data_file_has_an_empty_catalog():
    from modelport.provider import ProviderInfo, hookimpl

    class Plugin:
        @hookimpl
        def provider_info(self) -> ProviderInfo:
            return ProviderInfo(name="catalogless")

    modelport.register_provider("catalogless", Plugin())
    try:
        assert len(catalog.catalog_for("catalogless")) == 0
        with pytest.raises(InvalidRequestError, match="ships no catalog"):
            info("catalogless/m")
    finally:
        modelport.registry.unregister("catalogless")


# --- config overrides -------------------------------------------------------------------


@pytest.fixture
def config():
    return modelport.load_config(
        {
            "model_list": [
                {"model_name": "cheap", "params": {"model": "openai/gpt-4o-mini", "input_cost_per_token": 1e-06},
                 "model_info": {"id": "cheap-1", "max_input_tokens": 1000, "output_cost_per_token": 2e-06}},
                {"model_name": "mine", "params": {"model": "hosted_vllm/Qwen/Qwen3-8B", "api_base": "http://gpu:8000"},
                 "model_info": {"max_input_tokens": 32768, "mode": "chat", "input_cost_per_token": 0.0,
                                "output_cost_per_token": 0.0}},
                {"model_name": "az", "params": {"model": "azure/prod-mini", "api_base": "https://x.openai.azure.com"},
                 "model_info": {"base_model": "gpt-4o-mini"}},
                {"model_name": "ds", "params": {"model": "dashscope/qwen-plus", "region": "cn"}},
                {"model_name": "img", "params": {"model": "modelscope/Tongyi-MAI/Z-Image-Turbo"},
                 "model_info": {"output_cost_per_image": 0.04}},
                {"model_name": "rr", "params": {"model": "hosted_vllm/bge-reranker"},
                 "model_info": {"mode": "rerank", "input_cost_per_query": 0.002}},
                {"model_name": "asr", "params": {"model": "hosted_vllm/whisper"},
                 "model_info": {"mode": "audio_transcription", "input_cost_per_second": 0.0001}},
                {"model_name": "ds-own", "params": {"model": "dashscope/qwen-plus", "region": "cn"},
                 "model_info": {"input_cost_per_token": 1e-07, "output_cost_per_token": 2e-07}},
                {"model_name": "think", "params": {"model": "openai/my-reasoner"},
                 "model_info": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06,
                                "output_cost_per_reasoning_token": 3e-06}},
            ]
        }
    )  # fmt: skip


def deployment(config, name):
    return next(d for d in config.deployments if d.model_name == name)


def test_config_model_info_and_prices_win_over_the_catalog(config):
    got = info(None, config_deployment=deployment(config, "cheap"))
    assert got["key"] == "gpt-4o-mini" and got["litellm_provider"] == "openai" and got["mode"] == "chat"
    assert got["max_input_tokens"] == 1000 and got["max_output_tokens"] == 16_384  # catalog fills the rest
    assert got["input_cost_per_token"] == 1e-06 and got["output_cost_per_token"] == 2e-06
    assert got["cache_read_input_token_cost"] is None  # custom prices replace the catalog's as a whole
    assert "id" not in got
    # the same with the entry written as a mapping, LiteLLM style
    entry = {"model_name": "x", "litellm_params": {"model": "openai/gpt-4o-mini", "input_cost_per_token": 5e-06}}
    assert info(None, config_deployment=entry)["input_cost_per_token"] == 5e-06


def test_config_supplies_what_no_catalog_has_and_base_model_names_the_model(config):
    mine = info("hosted_vllm/Qwen/Qwen3-8B", config_deployment=deployment(config, "mine"))
    assert mine["max_input_tokens"] == 32768 and mine["input_cost_per_token"] == 0.0 and mine["litellm_provider"] == "hosted_vllm"
    assert catalog.completion_cost(chat_response("Qwen/Qwen3-8B", 100, 10), config_deployment=deployment(config, "mine")) == 0.0
    az = info(None, config_deployment=deployment(config, "az"))
    assert az["litellm_provider"] == "azure" and az["input_cost_per_token"] == pytest.approx(0.15 * M)
    ds = info(None, config_deployment=deployment(config, "ds"))
    assert ds["currency"] == "CNY" and ds["region"] == "cn"  # the deployment's region option


def test_custom_prices_are_in_the_base_currency_even_in_a_regional_deployment(config):
    own = info(None, config_deployment=deployment(config, "ds-own"))
    assert own["currency"] == "USD" and own["region"] == "cn" and "tiered_pricing" not in own
    assert catalog.completion_cost(model="dashscope/qwen-plus", prompt_tokens=10, completion_tokens=10,
                                   config_deployment=deployment(config, "ds-own")) == pytest.approx(10 * 1e-07 + 10 * 2e-07)  # fmt: skip


def test_rerank_and_transcription_costs_from_config(config):
    rerank = modelport.RerankResponse.from_dict({"id": "r", "results": [{"index": 0, "relevance_score": 0.5}]})
    assert catalog.completion_cost(rerank, config_deployment=deployment(config, "rr")) == pytest.approx(0.002)
    heard = modelport.Transcription.from_dict({"text": "hello", "duration": 12.5})
    assert catalog.completion_cost(heard, config_deployment=deployment(config, "asr")) == pytest.approx(12.5 * 0.0001)
    with pytest.raises(InvalidRequestError, match="input_cost_per_second"):
        catalog.completion_cost(heard, "openai/gpt-4o-mini", call_type="transcription")


# --- completion_cost ----------------------------------------------------------------------


def test_chat_cost_with_cached_tokens_dict_typed_and_token_counts():
    response = chat_response("gpt-4o-mini-2024-07-18", 1000, 200, cached=400)
    expected = 600 * 0.15 * M + 400 * 0.075 * M + 200 * 0.60 * M
    assert catalog.completion_cost(response) == pytest.approx(expected)  # model from the response
    assert catalog.completion_cost(completion_response=response, model="openai/gpt-4o-mini") == pytest.approx(expected)
    typed = modelport.ChatCompletion.from_dict(response)
    assert catalog.completion_cost(typed, "openai/gpt-4o-mini") == pytest.approx(expected)
    assert catalog.completion_cost(model="openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=200, cached_tokens=400) == pytest.approx(expected)
    prompt_cost, completion_cost = catalog.cost_per_token("openai/gpt-4o-mini", 1000, 200, cached_tokens=400)
    assert prompt_cost == pytest.approx(600 * 0.15 * M + 400 * 0.075 * M) and completion_cost == pytest.approx(200 * 0.60 * M)


def test_cached_tokens_without_a_cache_price_cost_the_input_price():
    # claude-sonnet-5-5's cache-read price is not in the catalog (sources disagree)
    cost = catalog.completion_cost(chat_response("claude-sonnet-5-5", 1000, 0, cached=800), "anthropic/claude-sonnet-5-5")
    assert cost == pytest.approx(1000 * 2 * M)


def test_anthropic_cache_writes_and_reads():
    # the anthropic plugin's usage: prompt_tokens = input + cache writes + cache reads
    response = chat_response("claude-haiku-4-5", 100 + 1000 + 2000, 50, cached=2000, cache_creation_input_tokens=1000)
    expected = 100 * 1 * M + 2000 * 0.10 * M + 1000 * 1.25 * M + 50 * 5 * M
    assert catalog.completion_cost(response, "anthropic/claude-haiku-4-5") == pytest.approx(expected)


def test_reasoning_tokens():
    # no separate reasoning price: reasoning tokens cost the output price
    response = chat_response("o4-mini", 100, 1000, reasoning=600)
    assert catalog.completion_cost(response, "openai/o4-mini") == pytest.approx(100 * 1.10 * M + 1000 * 4.40 * M)


def test_reasoning_price_from_config(config):
    response = chat_response("my-reasoner", 100, 50, reasoning=20)
    cost = catalog.completion_cost(response, config_deployment=deployment(config, "think"))
    assert cost == pytest.approx(100 * 1e-06 + 30 * 2e-06 + 20 * 3e-06)


def test_prompt_size_tiers():
    short = catalog.completion_cost(model="gemini/gemini-2.5-pro", prompt_tokens=100_000, completion_tokens=1000)
    assert short == pytest.approx(100_000 * 1.25 * M + 1000 * 10 * M)
    long = catalog.completion_cost(model="gemini/gemini-2.5-pro", prompt_tokens=250_000, completion_tokens=1000)
    assert long == pytest.approx(250_000 * 2.50 * M + 1000 * 15 * M)
    haiku = catalog.completion_cost(model="anthropic/claude-haiku-5-5", prompt_tokens=150_000, completion_tokens=1000)
    assert haiku == pytest.approx(150_000 * 0.50 * M + 1000 * 2.50 * M)


def test_regional_tiers_and_thinking_mode_prices():
    thinking = chat_response("qwen-plus", 1000, 500, reasoning=300)
    assert catalog.completion_cost(thinking, "dashscope/qwen-plus", region="cn") == pytest.approx(1000 * 0.8 * M + 500 * 8 * M)
    plain = catalog.completion_cost(model="dashscope/qwen-plus", prompt_tokens=200_000, completion_tokens=100, region="cn")
    assert plain == pytest.approx(200_000 * 2.4 * M + 100 * 20 * M)
    assert catalog.completion_cost(chat_response("qwen-plus", 1000, 100), "dashscope/qwen-plus") == pytest.approx(1000 * 0.4 * M + 100 * 1.2 * M)
    with pytest.raises(InvalidRequestError, match="region 'us'"):
        catalog.completion_cost(chat_response("qwen-plus", 10, 1), "dashscope/qwen-plus", region="us")


def test_embedding_cost():
    response = {"object": "list", "model": "text-embedding-3-small",
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 1000, "total_tokens": 1000}}  # fmt: skip
    assert catalog.completion_cost(response, "openai/text-embedding-3-small") == pytest.approx(1000 * 0.02 * M)
    typed = modelport.EmbeddingResponse.from_dict(response)
    assert catalog.completion_cost(typed) == pytest.approx(1000 * 0.02 * M)
    assert catalog.completion_cost(model="dashscope/text-embedding-v4", prompt_tokens=1000, call_type="embedding") == pytest.approx(1000 * 0.07 * M)


def test_image_cost_per_image(config):
    images = modelport.ImageResponse.from_dict({"created": 1, "data": [{"url": "https://x/a.png"}, {"url": "https://x/b.png"}]})
    assert catalog.completion_cost(images, "modelscope/Tongyi-MAI/Z-Image-Turbo") == 0.0
    assert catalog.completion_cost(images, config_deployment=deployment(config, "img")) == pytest.approx(0.08)
    assert catalog.completion_cost(model="modelscope/Tongyi-MAI/Z-Image-Turbo", call_type="image_generation", n=3, config_deployment=deployment(config, "img")) == pytest.approx(0.12)


def test_responses_without_usage_or_model_are_refused_clearly():
    response = chat_response("gpt-4o-mini", 1, 1)
    del response["usage"]
    with pytest.raises(InvalidRequestError, match="include_usage"):
        catalog.completion_cost(response, "openai/gpt-4o-mini")
    with pytest.raises(InvalidRequestError, match="needs a model"):
        catalog.completion_cost(model=None, prompt_tokens=1)


# --- streams, the client pipeline, and the cost a response carries ----------------------------


def test_a_rebuilt_stream_costs_the_same_as_the_full_response(client):
    full = chat_response("gpt-4o-mini", 1200, 80, cached=1024)
    full["choices"][0]["message"]["content"] = "one two three"
    kwargs = {"api_key": "sk-test", "mock_response": full}
    direct = client.completion("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], **kwargs)
    with client.completion("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}], stream=True,
                           stream_options={"include_usage": True}, **kwargs) as stream:  # fmt: skip
        chunks = list(stream)
    rebuilt = modelport.stream_to_completion(chunks)
    expected = 176 * 0.15 * M + 1024 * 0.075 * M + 80 * 0.60 * M
    assert catalog.completion_cost(full, "openai/gpt-4o-mini") == pytest.approx(expected)
    assert catalog.completion_cost(direct, "openai/gpt-4o-mini") == pytest.approx(expected)
    assert catalog.completion_cost(rebuilt, "openai/gpt-4o-mini") == pytest.approx(expected)
    assert catalog.completion_cost(rebuilt) == pytest.approx(expected)  # bare model field of the chunks


def test_attach_cost_keeps_the_cost_out_of_the_json():
    response = modelport.ChatCompletion.from_dict(chat_response("gpt-4o-mini", 1000, 100))
    before = response.to_dict()
    cost = catalog.attach_cost(response, "openai/gpt-4o-mini")
    assert cost == pytest.approx(1000 * 0.15 * M + 100 * 0.60 * M)
    assert catalog.response_cost(response) == cost
    assert response.to_dict() == before and catalog.RESPONSE_COST_KEY not in json.dumps(before)
    assert response.extra == {}
    # a model nobody prices: no cost, no exception (a call must not fail over pricing)
    unknown = modelport.ChatCompletion.from_dict(chat_response("x", 1, 1))
    assert catalog.attach_cost(unknown, "hosted_vllm/x") is None and catalog.response_cost(unknown) is None
    # the client passes the call's provider options: a region option picks regional prices
    regional = modelport.ChatCompletion.from_dict(chat_response("qwen-plus", 1000, 100))
    assert catalog.attach_cost(regional, "dashscope/qwen-plus", call_options={"region": "cn"}) == pytest.approx(1000 * 0.8 * M + 100 * 2 * M)
    # a plain dict is priced but left untouched
    raw = chat_response("gpt-4o-mini", 10, 1)
    assert catalog.attach_cost(raw, "openai/gpt-4o-mini") == pytest.approx(10 * 0.15 * M + 0.60 * M)
    assert raw == chat_response("gpt-4o-mini", 10, 1)


def test_attach_cost_uses_hidden_params_when_the_type_has_them():
    class Response:  # what the proposed types.py slot gives: LiteLLM's response._hidden_params
        def __init__(self) -> None:
            self._hidden_params: dict = {}

        def to_dict(self) -> dict:
            return chat_response("gpt-4o-mini", 1000, 0)

    response = Response()
    catalog.attach_cost(response, "openai/gpt-4o-mini")
    assert response._hidden_params["response_cost"] == pytest.approx(1000 * 0.15 * M)
    assert catalog.response_cost(response) == response._hidden_params["response_cost"]


# --- `modelport models` ---------------------------------------------------------------------


def cli(*args):
    return subprocess.run([sys.executable, "-m", "modelport", "models", *args], capture_output=True, text=True, timeout=120)


def test_cli_table():
    result = cli("openai")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["model", "mode", "context", "max", "output", "$/1M", "in", "$/1M", "out", "tools", "vision", "reasoning"]
    row = next(line for line in lines if line.startswith("openai/gpt-4o-mini "))
    assert row.split() == ["openai/gpt-4o-mini", "chat", "128,000", "16,384", "0.15", "0.60", "yes", "yes", "-"]
    embedding = next(line for line in lines if line.startswith("openai/text-embedding-3-small "))
    assert embedding.split()[:6] == ["openai/text-embedding-3-small", "embedding", "8,191", "-", "0.02", "-"]
    regional = cli("dashscope", "--region", "cn")
    assert regional.returncode == 0, regional.stderr
    assert "CNY 0.80+" in next(line for line in regional.stdout.splitlines() if line.startswith("dashscope/qwen-plus "))
    everything = cli()
    assert everything.returncode == 0 and "anthropic/claude-haiku-4-5 " in everything.stdout and "gemini/gemini-2.5-pro " in everything.stdout


def test_cli_json_empty_and_unknown():
    result = cli("anthropic", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    assert rows["anthropic/claude-haiku-4-5"]["max_input_tokens"] == 200_000
    assert rows["anthropic/claude-haiku-4-5"]["input_cost_per_token"] == pytest.approx(1 * M)
    empty = cli("hosted_vllm")
    assert empty.returncode == 0 and "model_info" in empty.stdout
    unknown = cli("nope")
    assert unknown.returncode == 2 and "unknown provider 'nope'" in unknown.stderr


# --- the shipped data files ---------------------------------------------------------------

PRICE = {"type": "number", "minimum": 0}
TOKENS = {"type": "integer", "minimum": 1}
MODALITIES = {"type": "array", "items": {"enum": ["text", "image", "audio", "video", "pdf", "embedding"]}, "uniqueItems": True}
PRICE_KEYS = (
    r"^(input_cost_per_(token|query|second|image|pixel)|output_cost_per_(token|reasoning_token|token_thinking|image|second)"
    r"|cache_(read|creation)_input_token_cost)(_above_\d+k_tokens)?$"
)
PRICES = {"type": "object", "patternProperties": {PRICE_KEYS: PRICE}}
TIER = {
    "type": "object",
    "required": ["range", "input_cost_per_token"],
    "properties": {"range": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 2, "maxItems": 2}},
    "patternProperties": {PRICE_KEYS: PRICE},
    "additionalProperties": False,
}
PRICING = {
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "tiered_pricing": {"type": "array", "items": TIER, "minItems": 1},
}
REGION = {"type": "object", "properties": PRICING, "patternProperties": {PRICE_KEYS: PRICE}, "additionalProperties": False}
ENTRY = {
    "type": "object",
    "required": ["mode"],
    "properties": {
        **PRICING,
        "mode": {"enum": list(catalog.MODES)},
        "max_input_tokens": TOKENS,
        "max_output_tokens": TOKENS,
        "max_tokens": TOKENS,
        "output_vector_size": TOKENS,
        "litellm_provider": {"type": "string"},
        "aliases": {"type": "array", "items": {"type": "string"}},
        "supported_modalities": MODALITIES,
        "supported_output_modalities": MODALITIES,
        "regions": {"type": "object", "additionalProperties": REGION},
        "deprecated": {"type": "string"},
        "price_valid_until": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "deployment_type": {"type": "string"},
    },
    "patternProperties": {r"^supports_[a-z_]+$": {"type": "boolean"}, PRICE_KEYS: PRICE},
    "additionalProperties": False,
}
SCHEMA = {
    "type": "object",
    "required": ["schema_version", "provider", "currency", "source", "models"],
    "properties": {
        "schema_version": {"const": 1},
        "provider": {"type": "string"},
        "currency": {"const": "USD"},
        "default_region": {"type": "string"},
        "region_option": {"type": "string"},
        "region_env": {"type": "array", "items": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"}},
        "source": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["url", "read"],
                "properties": {"url": {"type": "string", "pattern": "^https://"}, "read": {"const": "2026-12"},
                               "covers": {"type": "string"}, "note": {"type": "string"}},
                "additionalProperties": False,
            },
        },  # fmt: skip
        "missing": {"type": "array", "items": {"type": "string"}},
        "models": {"type": "object", "additionalProperties": ENTRY},
    },
    "additionalProperties": False,
}


def test_every_plugin_ships_a_catalog_that_it_packages():
    import tomllib

    plugins = sorted(p for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists())
    assert len(CATALOG_FILES) == len(plugins) >= 8
    for plugin in plugins:
        package = next(p.name for p in (plugin / "src").iterdir() if p.is_dir() and not p.name.endswith(".egg-info"))
        assert (plugin / "src" / package / "models.json").exists(), plugin.name
        pyproject = tomllib.loads((plugin / "pyproject.toml").read_text())
        assert "models.json" in pyproject["tool"]["setuptools"]["package-data"][package], plugin.name


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda p: p.parent.name)
def test_shipped_catalogs_validate(path):
    from jsonschema import Draft202012Validator

    data = json.loads(path.read_text())
    Draft202012Validator(SCHEMA).validate(data)
    assert data["provider"] in modelport.registry.names()
    for key, entry in data["models"].items():
        if "region" in json.dumps(entry):
            assert data.get("default_region"), f"{key}: regional prices need the catalog's default_region"
        for name, region in (entry.get("regions") or {}).items():
            assert name != data.get("default_region"), key
            if region.get("currency", "USD") != "USD":
                assert "currency" in region, key
        for tier in entry.get("tiered_pricing", []) + [t for r in (entry.get("regions") or {}).values() for t in r.get("tiered_pricing", [])]:
            low, high = tier["range"]
            assert low < high, key
        # every model is reachable through the registry and answers LiteLLM's keys
        owner = entry.get("litellm_provider") or data["provider"]
        got = catalog.get_model_info(f"{owner}/{key}")
        assert got["mode"] == entry["mode"] and LITELLM_KEYS <= set(got)
