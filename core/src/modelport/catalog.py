"""The model catalog and the cost of a call, under LiteLLM's names.

Each provider plugin ships a ``models.json`` next to its module: context windows, output
limits, capabilities and prices of the models it serves, with the public pages the figures
were read from (``source``). The catalog is found through the plugin the registry loads for
a provider (no hook), read once per plugin package and cached.

    import modelport.catalog as catalog

    catalog.get_model_info("openai/gpt-4o-mini")["max_input_tokens"]     # 128000
    catalog.completion_cost(completion_response=response, model="openai/gpt-4o-mini")
    catalog.cost_per_token("anthropic/claude-haiku-4-5", prompt_tokens=1000, completion_tokens=200)

``get_model_info`` answers LiteLLM's keys (``max_tokens``, ``max_input_tokens``,
``input_cost_per_token``, ``litellm_provider``, ``mode``, ``supports_vision``, ...); a key the
catalog does not know is ``None`` (``supports_*`` are ``False``). A model the catalog does
not have raises ``InvalidRequestError`` ("This model isn't mapped yet") naming the model and
the config's ``model_info``, which is how a deployment supplies or overrides the figures:
``get_model_info(model, config_deployment=deployment)`` merges the deployment's
``model_info`` and its ``input_cost_per_token`` / ``output_cost_per_token`` over the catalog
(any price there replaces the catalog's prices as a whole), and looks the model up under
``model_info.base_model`` when one is given (deployment names that are not model names).

Prices are per token in the catalog's ``currency`` (``get_model_info(...)["currency"]``, USD
unless a region's prices say otherwise). A provider whose prices differ by region declares
``default_region`` plus the call option and environment variables naming the region
(``region_option``, ``region_env``), and per model a ``regions`` map; asked for a region
whose prices the catalog lacks, ``get_model_info`` returns no prices rather than another
region's.

Costs follow LiteLLM: cached prompt tokens at ``cache_read_input_token_cost`` and cache
writes (``usage.cache_creation_input_tokens``) at ``cache_creation_input_token_cost`` (the
input price when absent), reasoning tokens at ``output_cost_per_reasoning_token`` (the
output price when absent), price tiers by prompt size (``tiered_pricing`` ranges or
``*_above_<N>k_tokens`` keys), embeddings by prompt tokens, images at
``output_cost_per_image``. ``output_cost_per_token_thinking`` (not a LiteLLM key) prices every
completion token of an answer that reasoned, for providers that bill thinking mode as a
whole.

A response carries its cost out of band, never in its JSON (``to_dict`` stays what the
upstream said, so a gateway never forwards it): ``attach_cost(response, model)`` stores it
in ``response._hidden_params["response_cost"]`` (LiteLLM's place) when the response type
has that slot, else beside the object, and ``response_cost(response)`` reads it back.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import types
import weakref
from typing import Any, Dict, List, Mapping, Optional, Tuple

from .errors import ConfigError, InvalidRequestError, ModelportError

__all__ = [
    "CATALOG_FILE",
    "RESPONSE_COST_KEY",
    "MODES",
    "INFO_KEYS",
    "Catalog",
    "catalog_for",
    "get_model_info",
    "list_models",
    "completion_cost",
    "cost_per_token",
    "attach_cost",
    "response_cost",
    "clear_cache",
]

#: The data file a provider plugin ships in its package.
CATALOG_FILE = "models.json"
#: Where a response's cost lives: ``response._hidden_params[RESPONSE_COST_KEY]`` (LiteLLM's key).
RESPONSE_COST_KEY = "response_cost"
#: The values of ``mode``.
MODES = ("chat", "completion", "embedding", "rerank", "image_generation", "audio_transcription")

#: What ``get_model_info`` always answers (LiteLLM's ``ModelInfo`` keys), ``None`` when unknown.
INFO_KEYS = (
    "key",
    "max_tokens",
    "max_input_tokens",
    "max_output_tokens",
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
    "output_cost_per_reasoning_token",
    "input_cost_per_query",
    "input_cost_per_second",
    "output_cost_per_second",
    "output_cost_per_image",
    "output_vector_size",
    "litellm_provider",
    "mode",
    "supported_modalities",
    "supported_output_modalities",
    "supports_system_messages",
    "supports_response_schema",
    "supports_vision",
    "supports_function_calling",
    "supports_tool_choice",
    "supports_prompt_caching",
    "supports_reasoning",
    "supports_audio_input",
    "supports_audio_output",
    "supports_pdf_input",
    "supports_web_search",
    "currency",
    "region",
)
_FLAGS = tuple(k for k in INFO_KEYS if k.startswith("supports_"))
#: Keys of a catalog entry that describe the entry, not the model.
_ENTRY_ONLY = frozenset({"aliases", "regions"})
#: ``model_info`` keys that identify a deployment rather than describe its model.
_DEPLOYMENT_ONLY = frozenset({"id", "base_model", "db_model", "access_groups", "team_id"})
_TIER_KEY = re.compile(r"^(?P<base>.+)_above_(?P<k>\d+)k_tokens$")
_DATED = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|@\d{8})$")
_CALL_TYPES = {
    "completion": "chat",
    "acompletion": "chat",
    "chat": "chat",
    "text_completion": "completion",
    "atext_completion": "completion",
    "embedding": "embedding",
    "aembedding": "embedding",
    "image_generation": "image_generation",
    "aimage_generation": "image_generation",
    "rerank": "rerank",
    "arerank": "rerank",
    "transcription": "audio_transcription",
    "atranscription": "audio_transcription",
    "audio_transcription": "audio_transcription",
}


def _is_price(key: str) -> bool:
    return "cost" in key or key == "tiered_pricing"


# --- catalogs ---------------------------------------------------------------------------


class Catalog:
    """One plugin's ``models.json``: its models (by id), where the figures come from, and
    how its prices vary by region."""

    def __init__(self, package: str, data: Mapping[str, Any]) -> None:
        self.package = package
        self.data = data
        models = data.get("models") or {}
        self.models: Dict[str, Dict[str, Any]] = {str(k): dict(v) for k, v in models.items()}
        self.provider: Optional[str] = data.get("provider")
        self.currency: str = str(data.get("currency") or "USD")
        self.source: List[Dict[str, Any]] = list(data.get("source") or [])
        self.default_region: Optional[str] = data.get("default_region")
        self.region_option: Optional[str] = data.get("region_option")
        self.region_env: Tuple[str, ...] = tuple(data.get("region_env") or ())
        self._index: Dict[str, str] = {}
        for key, entry in self.models.items():
            for name in (key, *(entry.get("aliases") or ())):
                self._index.setdefault(str(name), key)
                self._index.setdefault(str(name).lower(), key)

    def __len__(self) -> int:
        return len(self.models)

    def __repr__(self) -> str:
        return f"Catalog({self.package!r}, {len(self)} models)"

    def find(self, model_id: str) -> Optional[str]:
        """The catalog key for ``model_id``: exact, an alias, any case, without a ``models/``
        prefix or a dated snapshot suffix (``-2024-07-18``, ``-20251001``)."""
        candidates = [model_id]
        if model_id.startswith("models/"):
            candidates.append(model_id[len("models/") :])
        candidates += [_DATED.sub("", c) for c in candidates if _DATED.search(c)]
        for candidate in candidates:
            for name in (candidate, candidate.lower()):
                if name in self._index:
                    return self._index[name]
        return None

    def region_for(self, region: Optional[str], params: Optional[Mapping[str, Any]] = None) -> Optional[str]:
        """The region a call uses: given, else the deployment's option, else the environment,
        else the catalog's default (None for a provider without regions)."""
        if region:
            return region
        if params and self.region_option and params.get(self.region_option):
            return str(params[self.region_option])
        for name in self.region_env:
            if os.environ.get(name):
                return os.environ[name]
        return self.default_region


_EMPTY = Catalog("", {})
_lock = threading.Lock()
_catalogs: Dict[str, Catalog] = {}


def clear_cache() -> None:
    """Forget the loaded catalogs (after editing a ``models.json`` or installing a plugin)."""
    with _lock:
        _catalogs.clear()


def _package_of(plugin: Any) -> Optional[str]:
    """The package holding a plugin (a module, or an object whose class a module defines)."""
    if isinstance(plugin, types.ModuleType):
        module: Optional[types.ModuleType] = plugin
    else:
        module = sys.modules.get(getattr(type(plugin), "__module__", "") or "")
    if module is None:
        return None
    if hasattr(module, "__path__"):
        return module.__name__
    return module.__package__ or None  # a top-level single-file module ships no data file


def _load(package: str) -> Catalog:
    cached = _catalogs.get(package)
    if cached is not None:
        return cached
    from importlib import resources

    try:
        text = resources.files(package).joinpath(CATALOG_FILE).read_text(encoding="utf-8")
    except (OSError, ModuleNotFoundError, TypeError, ValueError):
        catalog = Catalog(package, {})
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{package}/{CATALOG_FILE} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
            raise ConfigError(f"{package}/{CATALOG_FILE} must be an object with a 'models' object")
        catalog = Catalog(package, data)
    with _lock:
        return _catalogs.setdefault(package, catalog)


def _hooks(provider: str) -> Any:
    from ._registry import registry

    return registry.hooks(provider)


def catalog_for(provider: str) -> Catalog:
    """The catalog of the plugin serving ``provider`` (empty when it ships none).

    Raises ``UnknownProviderError`` / ``PluginLoadError`` as a call to that provider would.
    """
    package = _package_of(_hooks(provider).plugin)
    return _load(package) if package else _EMPTY


def _provider_names() -> List[str]:
    from ._registry import registry

    return list(registry.names())


# --- model resolution -------------------------------------------------------------------


def _deployment_parts(deployment: Any) -> Tuple[Optional[str], Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """(model, params, model_info, litellm_params-level prices) of a ``Deployment`` or of a
    ``model_list`` entry written as a mapping."""
    if deployment is None:
        return None, {}, {}, {}
    if isinstance(deployment, Mapping):
        params = dict(deployment.get("params") or deployment.get("litellm_params") or {})
        info = dict(deployment.get("model_info") or {})
        model = params.pop("model", None)
        prices = {k: params[k] for k in ("input_cost_per_token", "output_cost_per_token") if params.get(k) is not None}
        return model, params, info, prices
    params = dict(getattr(deployment, "params", None) or {})
    info = dict(getattr(deployment, "info", None) or {})
    prices = {}
    for key in ("input_cost_per_token", "output_cost_per_token"):
        value = getattr(deployment, key, None)
        if value is not None:
            prices[key] = value
    return getattr(deployment, "model", None), params, info, prices


def _split(model: str, custom_llm_provider: Optional[str]) -> Tuple[Optional[str], str]:
    if custom_llm_provider:
        prefix = custom_llm_provider + "/"
        return custom_llm_provider, model[len(prefix) :] if model.startswith(prefix) else model
    provider, sep, rest = model.partition("/")
    if sep and rest and provider in _provider_names():
        return provider, rest
    return None, model


def _locate(provider: Optional[str], model_id: str) -> Tuple[Optional[str], Catalog, Optional[str]]:
    """(provider, catalog, key) for a model; ``key`` is None when the catalog lacks it.

    A model without a known provider prefix (a response's bare ``model`` field) is looked up
    in every installed provider's catalog: a single match wins, ``openai`` wins a tie (as in
    LiteLLM), anything else is ambiguous.
    """
    if provider is not None:
        try:
            catalog = catalog_for(provider)
        except ModelportError as exc:  # not installed, or broken: a config may still price it
            return provider, Catalog("", {"error": str(exc)}), None
        return provider, catalog, catalog.find(model_id)
    matches: List[Tuple[str, Catalog, str]] = []
    seen = set()
    for name in _provider_names():
        try:
            catalog = catalog_for(name)
        except ModelportError:
            continue
        key = catalog.find(model_id)
        if key is None or (catalog.package, key) in seen:
            continue
        seen.add((catalog.package, key))
        matches.append((name, catalog, key))
    if not matches:
        return None, _EMPTY, None
    if len(matches) > 1:
        preferred = [m for m in matches if m[0] == "openai"]
        if not preferred:
            names = ", ".join(f"{name}/{key}" for name, _, key in matches)
            raise InvalidRequestError(
                f"model {model_id!r} is in several provider catalogs ({names}); name it with its provider prefix",
                param="model",
            )
        matches = preferred
    return matches[0]


def _not_mapped(model: str, provider: Optional[str], catalog: Catalog) -> InvalidRequestError:
    if provider is None and "/" in model:
        prefix = model.partition("/")[0]
        where = f"{prefix!r} is not an installed provider and no installed provider's catalog has it"
    elif provider is None:
        where = "no installed provider's catalog has it and it has no provider prefix"
    elif catalog.data.get("error"):
        where = str(catalog.data["error"])
    elif len(catalog) == 0:
        where = f"the {provider} plugin ships no catalog (self-hosted or unpriced models)"
    else:
        where = (
            f"it is not among the {len(catalog)} models of the {provider} catalog (see `modelport models {provider}`)"
        )
    return InvalidRequestError(
        f"This model isn't mapped yet: {model!r}; {where}. Give its figures in the config: under the"
        " model_list entry's model_info (max_input_tokens, max_output_tokens, input_cost_per_token,"
        " output_cost_per_token, mode, ...) or input_cost_per_token / output_cost_per_token in its params,"
        " and pass that deployment as config_deployment=",
        param="model",
    )


def _merge_region(info: Dict[str, Any], entry: Mapping[str, Any], catalog: Catalog, region: Optional[str]) -> None:
    """Apply a region's prices; a region the entry has no prices for gets none at all.
    Catalogs without a ``default_region`` have one price list whatever the region."""
    if catalog.default_region is None:
        return
    info["region"] = region
    if region is None or region == catalog.default_region:
        return
    regional = (entry.get("regions") or {}).get(region)
    for key in [k for k in info if _is_price(k)]:
        info[key] = None
    if "tiered_pricing" in info:
        del info["tiered_pricing"]
    if regional:
        info.update({k: v for k, v in regional.items()})


def _resolve(
    model: Optional[str],
    region: Optional[str],
    config_deployment: Any,
    custom_llm_provider: Optional[str],
    call_options: Optional[Mapping[str, Any]] = None,
) -> Dict[str, Any]:
    dep_model, params, overrides, dep_prices = _deployment_parts(config_deployment)
    params.update(call_options or {})
    model = model or dep_model
    if not isinstance(model, str) or not model:
        raise InvalidRequestError("get_model_info needs a model (or a config_deployment with one)", param="model")
    provider, model_id = _split(model, custom_llm_provider)
    base_model = overrides.get("base_model")
    lookup_provider, lookup_id = provider, model_id
    if isinstance(base_model, str) and base_model:
        base_provider, base_id = _split(base_model, None)
        lookup_provider, lookup_id = base_provider or provider, base_id
    found_provider, catalog, key = _locate(lookup_provider, lookup_id)
    extra = {k: v for k, v in overrides.items() if k not in _DEPLOYMENT_ONLY}
    extra.update(dep_prices)
    if key is None and not extra:
        raise _not_mapped(model, found_provider, catalog)

    info: Dict[str, Any] = {k: None for k in INFO_KEYS}
    info.update({k: False for k in _FLAGS})
    entry: Dict[str, Any] = catalog.models.get(key, {}) if key is not None else {}
    info.update({k: v for k, v in entry.items() if k not in _ENTRY_ONLY})
    info["key"] = key if key is not None else model_id
    info["litellm_provider"] = entry.get("litellm_provider") or catalog.provider or found_provider or provider
    info["currency"] = entry.get("currency") or catalog.currency
    _merge_region(info, entry, catalog, catalog.region_for(region, params))
    if any(_is_price(k) for k in extra):
        for price in [k for k in info if _is_price(k)]:  # custom pricing replaces the catalog's as a whole
            info[price] = None
        info.pop("tiered_pricing", None)
        info["currency"] = catalog.currency  # in the catalog's base currency unless model_info names one
    info.update(extra)
    if info.get("max_tokens") is None:
        info["max_tokens"] = info.get("max_output_tokens") or info.get("max_input_tokens")
    return info


def get_model_info(
    model: Optional[str] = None,
    region: Optional[str] = None,
    *,
    config_deployment: Any = None,
    custom_llm_provider: Optional[str] = None,
) -> Dict[str, Any]:
    """What the catalog knows of ``model`` (``"provider/model id"``), LiteLLM's keys.

    ``region`` picks regional prices (default: the deployment's region option, the
    provider's region environment variable, the catalog's default region).
    ``config_deployment`` (a ``Deployment`` of a loaded config, or a ``model_list`` entry as a
    mapping) supplies ``model_info`` and prices that win over the catalog, and the model when
    ``model`` is None. Raises ``InvalidRequestError`` for a model neither knows.
    """
    return _resolve(model, region, config_deployment, custom_llm_provider)


def list_models(provider: Optional[str] = None, *, region: Optional[str] = None) -> List[Dict[str, Any]]:
    """Every catalog model of ``provider`` (all installed providers when None), each as
    ``get_model_info`` answers it plus ``model`` (the ``provider/id`` string to call)."""
    names = [provider] if provider else _provider_names()
    rows: List[Dict[str, Any]] = []
    seen = set()
    for name in names:
        try:
            hooks = _hooks(name)
        except ModelportError:
            if provider:
                raise
            continue
        canonical = hooks.info.name
        catalog = catalog_for(name)
        for key, entry in catalog.models.items():
            owner = entry.get("litellm_provider") or catalog.provider or canonical
            if owner not in (canonical, name) or (catalog.package, key) in seen:
                continue
            seen.add((catalog.package, key))
            info = _resolve(f"{owner}/{key}", region, None, owner)
            rows.append({"model": f"{owner}/{key}", **info})
    return rows


# --- cost -------------------------------------------------------------------------------


def _as_dict(response: Any) -> Dict[str, Any]:
    if response is None:
        return {}
    if isinstance(response, Mapping):
        return dict(response)
    to_dict = getattr(response, "to_dict", None) or getattr(response, "model_dump", None)
    if callable(to_dict):
        data = to_dict()
        if isinstance(data, dict):
            return data
    raise InvalidRequestError(
        f"completion_response must be a response object or dict, not {type(response).__name__}",
        param="completion_response",
    )


def _int(value: Any) -> int:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


class _Usage:
    """Token counts of one call, OpenAI's meaning: prompt includes cached and cache-write tokens."""

    def __init__(
        self, prompt: int = 0, completion: int = 0, cached: int = 0, cache_write: int = 0, reasoning: int = 0
    ) -> None:
        self.prompt = prompt
        self.completion = completion
        self.cached = min(cached, prompt)
        self.cache_write = min(cache_write, max(0, prompt - self.cached))
        self.reasoning = min(reasoning, completion)

    @classmethod
    def of(cls, usage: Any) -> "_Usage":
        usage = usage if isinstance(usage, Mapping) else {}
        prompt = _int(usage.get("prompt_tokens", usage.get("input_tokens")))
        completion = _int(usage.get("completion_tokens", usage.get("output_tokens")))
        if not prompt and not completion:
            prompt = _int(usage.get("total_tokens"))
        prompt_details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        completion_details = usage.get("completion_tokens_details") or usage.get("output_tokens_details") or {}
        cached = _int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, Mapping) else 0
        cached = cached or _int(usage.get("cache_read_input_tokens"))
        reasoning = _int(completion_details.get("reasoning_tokens")) if isinstance(completion_details, Mapping) else 0
        return cls(prompt, completion, cached, _int(usage.get("cache_creation_input_tokens")), reasoning)


def _rates(info: Mapping[str, Any], prompt_tokens: int) -> Dict[str, Any]:
    """The per-token prices that apply to a call with ``prompt_tokens``: the catalog's flat
    prices, then the matching ``tiered_pricing`` range, then ``*_above_<N>k_tokens``."""
    rates = {k: v for k, v in info.items() if "cost" in k and "_above_" not in k}
    tiers = info.get("tiered_pricing")
    if isinstance(tiers, list) and tiers:
        chosen = tiers[-1]
        for tier in tiers:
            low, high = (list(tier.get("range") or [0, math.inf]) + [math.inf])[:2]
            if prompt_tokens <= high and (prompt_tokens > low or low == 0):
                chosen = tier
                break
        rates.update({k: v for k, v in chosen.items() if k != "range"})
    best: Dict[str, Tuple[int, Any]] = {}
    for key, value in info.items():
        match = _TIER_KEY.match(key) if "_above_" in key else None
        if match and value is not None and prompt_tokens > int(match["k"]) * 1000:
            threshold = int(match["k"])
            if threshold >= best.get(match["base"], (-1, None))[0]:
                best[match["base"]] = (threshold, value)
    rates.update({base: value for base, (_, value) in best.items()})
    return rates


def _price(rates: Mapping[str, Any], key: str, model: str, region: Any, fallback: Optional[str] = None) -> float:
    value = rates.get(key)
    if value is None and fallback is not None:
        value = rates.get(fallback)
    if value is None:
        where = f" in region {region!r}" if region else ""
        raise InvalidRequestError(
            f"no {fallback or key} for {model!r}{where} in the catalog; set it under the model_list entry's"
            f" model_info (or {fallback or key} in its params) and pass config_deployment=",
            param="model",
        )
    return float(value)


def _token_costs(info: Mapping[str, Any], usage: _Usage, model: str) -> Tuple[float, float]:
    rates = _rates(info, usage.prompt)
    region = info.get("region")
    prompt_cost = 0.0
    plain = usage.prompt - usage.cached - usage.cache_write
    if plain:
        prompt_cost += plain * _price(rates, "input_cost_per_token", model, region)
    if usage.cached:
        prompt_cost += usage.cached * _price(
            rates, "cache_read_input_token_cost", model, region, "input_cost_per_token"
        )
    if usage.cache_write:
        prompt_cost += usage.cache_write * _price(
            rates, "cache_creation_input_token_cost", model, region, "input_cost_per_token"
        )
    completion_cost_ = 0.0
    if usage.completion:
        thinking = rates.get("output_cost_per_token_thinking")
        if usage.reasoning and thinking is not None:
            completion_cost_ = usage.completion * float(thinking)
        else:
            visible = usage.completion - usage.reasoning
            if visible:
                completion_cost_ += visible * _price(rates, "output_cost_per_token", model, region)
            if usage.reasoning:
                completion_cost_ += usage.reasoning * _price(
                    rates, "output_cost_per_reasoning_token", model, region, "output_cost_per_token"
                )
    return prompt_cost, completion_cost_


def cost_per_token(
    model: str,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    *,
    cached_tokens: int = 0,
    cache_creation_tokens: int = 0,
    reasoning_tokens: int = 0,
    region: Optional[str] = None,
    config_deployment: Any = None,
    custom_llm_provider: Optional[str] = None,
) -> Tuple[float, float]:
    """(prompt cost, completion cost) of a call with these token counts (LiteLLM's function).

    ``prompt_tokens`` includes ``cached_tokens`` and ``cache_creation_tokens`` (OpenAI's
    usage), ``completion_tokens`` includes ``reasoning_tokens``.
    """
    info = _resolve(model, region, config_deployment, custom_llm_provider)
    usage = _Usage(prompt_tokens, completion_tokens, cached_tokens, cache_creation_tokens, reasoning_tokens)
    return _token_costs(info, usage, model)


def _mode_of(call_type: Optional[str], info: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    if call_type:
        mode = _CALL_TYPES.get(call_type, call_type)
        if mode not in MODES:
            raise InvalidRequestError(
                f"call_type {call_type!r} is not one of {', '.join(sorted(_CALL_TYPES))}", param="call_type"
            )
        return mode
    if data:
        obj = data.get("object")
        if obj in ("chat.completion", "chat.completion.chunk"):
            return "chat"
        if obj == "text_completion":
            return "completion"
        first = (data.get("data") or [None])[0]
        if isinstance(first, Mapping) and ("embedding" in first or first.get("object") == "embedding"):
            return "embedding"
        if isinstance(first, Mapping) and ("url" in first or "b64_json" in first):
            return "image_generation"
        if "results" in data:
            return "rerank"
        if "text" in data and "choices" not in data:
            return "audio_transcription"
    declared = info.get("mode")
    return str(declared) if declared in MODES else "chat"


def completion_cost(
    completion_response: Any = None,
    model: Optional[str] = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    *,
    call_type: Optional[str] = None,
    region: Optional[str] = None,
    config_deployment: Any = None,
    custom_llm_provider: Optional[str] = None,
    cached_tokens: int = 0,
    reasoning_tokens: int = 0,
    n: Optional[int] = None,
    call_options: Optional[Mapping[str, Any]] = None,
) -> float:
    """The cost of one call, in the catalog's currency (LiteLLM's function).

    ``completion_response`` is a response object or its dict (chat, legacy completion,
    embeddings, images, rerank, transcription, or a ``stream_to_completion`` rebuild): its
    ``usage`` and, unless ``model`` is given, its ``model`` field are used. Without a response,
    ``prompt_tokens`` / ``completion_tokens`` (and ``cached_tokens`` / ``reasoning_tokens``)
    are priced. ``call_options`` are the call's provider options (a region option among
    them picks regional prices). Raises ``InvalidRequestError`` when the model or a needed
    price is unknown, or when a token-priced response has no usage.
    """
    data = _as_dict(completion_response)
    model = model or (data.get("model") if isinstance(data.get("model"), str) else None)
    if not model and config_deployment is None:
        raise InvalidRequestError("completion_cost needs a model, or a response with a model field", param="model")
    info = _resolve(model, region, config_deployment, custom_llm_provider, call_options)
    name = model or str(info.get("key"))
    mode = _mode_of(call_type, info, data)
    usage_data = data.get("usage") if data else None
    if data:
        usage = _Usage.of(usage_data)
    else:
        usage = _Usage(prompt_tokens, completion_tokens, cached_tokens, 0, reasoning_tokens)

    if mode == "image_generation":
        images = n if n is not None else len(data.get("data") or []) if data else 1
        per_image = info.get("output_cost_per_image")
        if per_image is not None:
            return images * float(per_image)
        if usage.prompt or usage.completion:
            return sum(_token_costs(info, usage, name))
        return images * _price(info, "output_cost_per_image", name, info.get("region"))
    if mode == "audio_transcription":
        if info.get("input_cost_per_second") is not None:
            seconds = data.get("duration") if data else None
            if seconds is None and isinstance(usage_data, Mapping):
                seconds = usage_data.get("seconds")
            return float(seconds or 0) * float(info["input_cost_per_second"])
        if not (usage.prompt or usage.completion):
            return _price(info, "input_cost_per_second", name, info.get("region"))  # raises: nothing to price by
    if mode == "rerank":
        if info.get("input_cost_per_query") is not None:
            return float(info["input_cost_per_query"]) + (sum(_token_costs(info, usage, name)) if usage.prompt else 0.0)
        if not usage.prompt:
            return _price(info, "input_cost_per_query", name, info.get("region"))  # raises: nothing to price by
    if data and usage_data is None and mode in ("chat", "completion", "embedding"):
        raise InvalidRequestError(
            f"the {mode} response for {name!r} carries no usage to price (for streams pass"
            " stream_options={'include_usage': True}); give prompt_tokens / completion_tokens instead",
            param="completion_response",
        )
    if mode == "embedding":
        usage = _Usage(usage.prompt, 0)
    return sum(_token_costs(info, usage, name))


# --- a response's cost ------------------------------------------------------------------

_side_costs: Dict[int, float] = {}


def _store(response: Any, cost: float) -> None:
    from .types import PricedResult

    if isinstance(response, PricedResult):  # read back by its ``cost`` / ``_hidden_params``
        response._cost = cost
        return
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict):
        hidden[RESPONSE_COST_KEY] = cost
        return
    try:
        object.__setattr__(response, "_hidden_params", {RESPONSE_COST_KEY: cost})
        return
    except (AttributeError, TypeError):
        pass
    key = id(response)
    try:
        weakref.finalize(response, _side_costs.pop, key, None)
    except TypeError:  # a plain dict: nothing to hang the cost on without changing its JSON
        return
    _side_costs[key] = cost


def attach_cost(
    response: Any,
    model: Optional[str] = None,
    *,
    region: Optional[str] = None,
    config_deployment: Any = None,
    call_options: Optional[Mapping[str, Any]] = None,
) -> Optional[float]:
    """Price ``response`` and keep the cost with it (see ``response_cost``); never raises:
    a model or price the catalog lacks gives ``None``, as LiteLLM's ``response_cost`` is.

    The client calls it with the ``provider/model`` it called, the deployment a config
    routed to (its ``model_info`` wins) and the call's provider options (``Call.options``).
    """
    try:
        cost = completion_cost(
            response, model, region=region, config_deployment=config_deployment, call_options=call_options
        )
    except (ModelportError, ValueError, TypeError):
        return None
    _store(response, cost)
    return cost


def response_cost(response: Any) -> Optional[float]:
    """The cost ``attach_cost`` stored for ``response`` (None when it was not priced)."""
    from .types import PricedResult

    if isinstance(response, PricedResult):
        return response.cost
    hidden = getattr(response, "_hidden_params", None)
    if isinstance(hidden, dict) and RESPONSE_COST_KEY in hidden:
        value = hidden[RESPONSE_COST_KEY]
        return float(value) if value is not None else None
    return _side_costs.get(id(response))
