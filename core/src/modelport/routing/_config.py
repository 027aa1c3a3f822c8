"""Config files (YAML or TOML, LiteLLM-proxy compatible).

    model_list:
      - model_name: my-model
        params:                              # `litellm_params` accepted as an alias
          model: openai/gpt-4o-mini
          api_key: os.environ/OPENAI_API_KEY
    router_settings: {num_retries: 2, cooldown_time: 30, fallbacks: [{my-model: [backup-model]}]}
    general_settings: {master_key: os.environ/MODELPORT_MASTER_KEY}
    providers:                               # OpenAI-compatible providers declared by data
      - name: acme
        api_base: https://api.acme.example/v1
        api_key_env: ACME_API_KEY
        param_renames: {max_tokens: max_output_tokens}

Several entries with one ``model_name`` form a group: calls go round-robin over its
healthy deployments; one that fails with an error a retry elsewhere may cure (rate
limits, server and connection errors, a bad key or a missing model on that
deployment) cools down and the next one serves; when the group is exhausted, its
``fallbacks`` are tried in order. Errors the request itself causes (400, 422,
``InvalidRequestError``) are raised at once.
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import attrs

from ..errors import (
    ConfigError,
)

__all__ = ["Config", "Deployment", "load_config", "EnvRef", "declared_providers", "ROUTING_STRATEGIES"]

_ENV_PREFIX = "os.environ/"


@attrs.frozen
class EnvRef:
    """A value read from the environment when a call needs it (``os.environ/NAME``)."""

    name: str

    def resolve(self, where: str) -> str:
        value = os.environ.get(self.name)
        if not value:
            raise ConfigError(f"{where} reads the environment variable {self.name}, which is not set")
        return value

    def __repr__(self) -> str:
        return f"os.environ/{self.name}"


def _env_refs(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_ENV_PREFIX):
        return EnvRef(value[len(_ENV_PREFIX) :])
    if isinstance(value, dict):
        return {k: _env_refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_env_refs(v) for v in value]
    return value


def _resolved(value: Any, where: str) -> Any:
    if isinstance(value, EnvRef):
        return value.resolve(where)
    if isinstance(value, dict):
        return {k: _resolved(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, where) for v in value]
    return value


_SECRET_NAME = re.compile(r"key|token|secret|password|credential", re.IGNORECASE)


def _redacted(params: Mapping[str, Any]) -> Dict[str, Any]:
    """Params for a repr: every value whose name says it is a credential is hidden."""
    return {k: ("[REDACTED]" if _SECRET_NAME.search(k) and not isinstance(v, EnvRef) else v) for k, v in params.items()}


#: Keys of a deployment's params that configure routing, limits, cost or timeouts: read
#: by the router, never sent upstream (LiteLLM's names).
ROUTING_PARAMS = frozenset(
    {"rpm", "tpm", "max_parallel_requests", "weight", "order", "tags", "region_name",
     "input_cost_per_token", "output_cost_per_token", "stream_timeout", "max_retries", "timeout"}
)  # fmt: skip
#: LiteLLM deployment keys modelport does not implement: warned about at load and dropped
#: (they configure LiteLLM itself and must not reach an upstream as body fields).
UNSUPPORTED_PARAMS = frozenset(
    {"input_cost_per_second", "output_cost_per_second", "cache_read_input_token_cost",
     "cache_creation_input_token_cost", "use_in_pass_through", "merge_reasoning_content_in_choices",
     "litellm_credential_name", "configurable_clientside_auth_params", "budget_duration", "max_budget",
     "mock_testing_fallbacks", "litellm_trace_id", "model_info"}
)  # fmt: skip
#: What each section may hold, and the keys of each that modelport honours.
_SECTIONS = {"model_list", "router_settings", "general_settings", "providers", "litellm_settings", "environment_variables"}
_ROUTER_KEYS = {
    "num_retries", "timeout", "cooldown_time", "allowed_fails", "routing_strategy", "fallbacks",
    "context_window_fallbacks", "content_policy_fallbacks", "default_fallbacks", "model_group_alias",
    "stream_timeout", "retry_after", "enable_pre_call_checks", "redis_url", "redis_host", "redis_port", "redis_password", "redis_key_prefix",
}  # fmt: skip
_LITELLM_KEYS = {
    "drop_params", "num_retries", "request_timeout", "fallbacks", "context_window_fallbacks",
    "content_policy_fallbacks", "default_fallbacks", "cooldown_time", "allowed_fails",
    "callbacks", "require_auth_for_metrics_endpoint",
}  # fmt: skip
#: ``litellm_settings.callbacks`` values modelport serves itself.
_CALLBACKS = {"prometheus", "otel"}
_GENERAL_KEYS = {
    "master_key", "max_request_size_mb", "max_upload_size_mb", "max_connections",
    "responses_store_max_entries", "responses_store_ttl_minutes",
    "database_url", "proxy_batch_write_at", "user_api_key_cache_ttl", "metrics", "otel", "metrics_require_auth",
    "cors_allow_origins", "graceful_shutdown_seconds",
    "health_check_cache_seconds", "health_check_concurrency", "health_check_timeout",
}  # fmt: skip
#: Strategies of ``router_settings.routing_strategy`` (LiteLLM's names, plus round-robin).
ROUTING_STRATEGIES = (
    "round-robin", "simple-shuffle", "least-busy", "latency-based-routing",
    "usage-based-routing", "usage-based-routing-v2",
)  # fmt: skip
#: Provider prefixes LiteLLM infers for bare model names (``model: claude-3-5-sonnet``).
_BARE_PREFIXES = (("claude", "anthropic"), ("gemini", "gemini"))


@attrs.frozen
class Deployment:
    """One entry of ``model_list``: an alias, the call arguments behind it and its limits.

    Immutable: health (cool-downs, failures, usage) lives in the router's state, keyed by ``id``.
    """

    model_name: str
    model: str
    params: Dict[str, Any] = attrs.field(repr=lambda params: repr(_redacted(params)))
    #: Unique within its config: ``<model_name>#<position in model_list>`` (or ``model_info.id``).
    id: str = ""
    #: Requests / tokens per minute and calls in flight this deployment takes (None: no limit).
    rpm: Optional[int] = None
    tpm: Optional[int] = None
    max_parallel_requests: Optional[int] = None
    #: Share of traffic under simple-shuffle (default: rpm, else tpm, else 1).
    weight: Optional[float] = None
    #: Priority tier: lower ``order`` is tried first; deployments without one come last.
    order: Optional[int] = None
    timeout: Any = None
    stream_timeout: Any = None
    num_retries: Optional[int] = None
    tags: Tuple[str, ...] = ()
    input_cost_per_token: Optional[float] = None
    output_cost_per_token: Optional[float] = None
    #: ``model_info`` as written (metadata: base_model, max_tokens, ...).
    info: Dict[str, Any] = attrs.field(factory=dict, repr=False)

    def call_kwargs(self) -> Dict[str, Any]:
        resolved: Dict[str, Any] = _resolved(self.params, f"model_list entry {self.model_name!r} ({self.model})")
        return resolved

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.model_name

    def for_model(self, requested: str) -> "Deployment":
        """This wildcard deployment serving ``requested`` (its ``*`` filled in)."""
        prefix, _, suffix = self.model_name.partition("*")
        filled = requested[len(prefix) : len(requested) - len(suffix) if suffix else None]
        model = self.model.replace("*", filled) if "*" in self.model else self.model
        return attrs.evolve(self, model=model)


def _number(value: Any, where: str, name: str, kind: type = float) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"{where}: {name} must be a number >= 0, got {value!r}")
    return kind(value)


@attrs.define
class Config:
    deployments: List[Deployment]
    fallbacks: Dict[str, List[str]]
    num_retries: Optional[int] = None
    timeout: Optional[float] = None
    cooldown_time: float = 60.0
    master_key: Any = attrs.field(default=None, repr=lambda v: "None" if v is None else "'[REDACTED]'")
    providers: List[Dict[str, Any]] = attrs.field(factory=list)
    path: str = ""
    #: ``general_settings`` as written (gateway limits and switches read it).
    general: Dict[str, Any] = attrs.field(factory=dict, repr=False)
    context_window_fallbacks: Dict[str, List[str]] = attrs.field(factory=dict)
    content_policy_fallbacks: Dict[str, List[str]] = attrs.field(factory=dict)
    #: Tried for any group that has no ``fallbacks`` entry of its own.
    default_fallbacks: List[str] = attrs.field(factory=list)
    #: Failures a deployment may have within a minute before it cools down (0: the first).
    allowed_fails: int = 0
    routing_strategy: str = "round-robin"
    #: Requested name -> model group that serves it.
    model_group_alias: Dict[str, str] = attrs.field(factory=dict)
    #: Call defaults from ``litellm_settings`` (e.g. ``drop_params``).
    call_defaults: Dict[str, Any] = attrs.field(factory=dict)
    environment_variables: Dict[str, str] = attrs.field(factory=dict, repr=False)
    #: Keys of the file modelport does not implement (each warned about once at load).
    ignored: List[str] = attrs.field(factory=list)
    #: ``router_settings`` as written (shared-state settings such as ``redis_url`` read it).
    router_settings: Dict[str, Any] = attrs.field(factory=dict, repr=False)
    #: ``litellm_settings`` as written (``callbacks``, ...).
    litellm_settings: Dict[str, Any] = attrs.field(factory=dict, repr=False)
    #: Skip deployments whose context window the prompt does not fit (LiteLLM's key).
    enable_pre_call_checks: bool = False

    @property
    def model_names(self) -> List[str]:
        return list(dict.fromkeys(d.model_name for d in self.deployments))

    def resolved_master_key(self) -> Optional[str]:
        return _resolved(self.master_key, "general_settings.master_key") if self.master_key is not None else None


def _read(path: pathlib.Path) -> Dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef,unused-ignore]
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml", ".json"):
            import yaml

            data = yaml.safe_load(text)
        else:
            raise ConfigError(f"{path}: config files are .yaml, .yml, .toml or .json")
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"{path}: not valid {suffix[1:].upper()}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with a model_list")
    return data


def _fallbacks(raw: Any, where: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    items = raw if isinstance(raw, list) else [raw] if isinstance(raw, dict) else None
    if raw is None:
        return out
    if items is None:
        raise ConfigError(f"{where} must be a list of {{model_name: [backup, ...]}}")
    for item in items:
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: each entry is a mapping {{model_name: [backup, ...]}}, got {item!r}")
        for name, backups in item.items():
            backups = [backups] if isinstance(backups, str) else backups
            if not isinstance(backups, list) or not all(isinstance(b, str) for b in backups):
                raise ConfigError(f"{where}: the fallbacks of {name!r} must be a list of model names")
            out.setdefault(str(name), []).extend(backups)
    return out


def _model_string(model: str, params: Dict[str, Any]) -> str:
    """``provider/model``: a bare name gets ``custom_llm_provider`` or the provider LiteLLM infers."""
    provider = params.pop("custom_llm_provider", None)
    if provider:
        return f"{provider}/{model}"
    if "/" in model or model == "*":
        return model
    for prefix, inferred in _BARE_PREFIXES:
        if model.startswith(prefix):
            return f"{inferred}/{model}"
    return f"openai/{model}"


def _deployment(entry: Any, position: int, where: str, ignored: List[str]) -> Deployment:
    label = f"{where}: model_list[{position}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
        raise ConfigError(f"{label} needs a model_name")
    name = entry["model_name"]
    params = entry.get("params", entry.get("litellm_params"))
    if not isinstance(params, dict) or not isinstance(params.get("model"), str) or not params["model"]:
        raise ConfigError(f"{label} ({name}) needs params.model, e.g. 'openai/gpt-4o-mini'")
    params = dict(params)
    model = _model_string(params.pop("model"), params)
    if "*" in model and "*" not in name:
        raise ConfigError(f"{label}: a wildcard model {model!r} needs a wildcard model_name (e.g. 'openai/*')")
    limits = {key: params.pop(key) for key in list(params) if key in ROUTING_PARAMS}
    for key in sorted(k for k in params if k in UNSUPPORTED_PARAMS):
        params.pop(key)
        ignored.append(f"model_list[{position}].litellm_params.{key}")
    if "api_version" in params and not model.startswith(("azure/", "azure_ai/")):
        params.pop("api_version")  # LiteLLM leaves it unused for other providers
        ignored.append(f"model_list[{position}].litellm_params.api_version (only azure/ uses it)")
    info = entry.get("model_info") or {}
    if not isinstance(info, dict):
        raise ConfigError(f"{label}: model_info must be a mapping")
    tags = limits.get("tags") or ()
    order = limits.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        raise ConfigError(f"{label}: order must be a whole number, got {order!r}")
    return Deployment(
        model_name=name,
        model=model,
        params=params,
        id=str(info.get("id") or f"{name}#{position}"),
        rpm=_number(limits.get("rpm"), label, "rpm", int),
        tpm=_number(limits.get("tpm"), label, "tpm", int),
        max_parallel_requests=_number(limits.get("max_parallel_requests"), label, "max_parallel_requests", int),
        weight=_number(limits.get("weight"), label, "weight"),
        order=order,
        timeout=limits.get("timeout"),
        stream_timeout=limits.get("stream_timeout"),
        num_retries=_number(limits.get("max_retries"), label, "max_retries", int),
        tags=tuple(tags) if isinstance(tags, (list, tuple)) else (str(tags),),
        input_cost_per_token=_number(limits.get("input_cost_per_token", info.get("input_cost_per_token")), label, "input_cost_per_token"),
        output_cost_per_token=_number(limits.get("output_cost_per_token", info.get("output_cost_per_token")), label, "output_cost_per_token"),
        info=dict(info),
    )


def load_config(source: Union[str, "os.PathLike[str]", Mapping[str, Any], Config]) -> Config:
    """Read and check a config file (or an already parsed mapping; a ``Config`` is returned as is).

    LiteLLM proxy configs load unchanged: every key modelport implements has LiteLLM's
    meaning; each key it does not implement is named in one warning (``ignored: ...``),
    never sent upstream and never an error.
    """
    if isinstance(source, Config):
        return source
    if isinstance(source, Mapping):
        data, where = dict(source), "config"
    else:
        path = pathlib.Path(source)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        data, where = _read(path), str(path)
    data = _env_refs(data)
    unknown = set(data) - _SECTIONS
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}; sections are {', '.join(sorted(_SECTIONS))}")
    ignored: List[str] = []
    entries = data.get("model_list") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: model_list must be a list")
    deployments = [_deployment(entry, position, where, ignored) for position, entry in enumerate(entries)]
    sections = {}
    for section in ("router_settings", "general_settings", "litellm_settings", "environment_variables"):
        value = data.get(section) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: {section} must be a mapping")
        sections[section] = value
    router, general, litellm = sections["router_settings"], sections["general_settings"], sections["litellm_settings"]
    ignored += [f"router_settings.{k}" for k in sorted(set(router) - _ROUTER_KEYS)]
    ignored += [f"litellm_settings.{k}" for k in sorted(set(litellm) - _LITELLM_KEYS)]
    callbacks = litellm.get("callbacks") or []
    ignored += [f"litellm_settings.callbacks: {c}" for c in (callbacks if isinstance(callbacks, list) else [callbacks]) if c not in _CALLBACKS]
    ignored += [f"general_settings.{k}" for k in sorted(set(general) - _GENERAL_KEYS)]

    def setting(name: str, *aliases: str) -> Any:  # router_settings wins over litellm_settings
        for section, key in [(router, name), (litellm, name), *((litellm, a) for a in aliases)]:
            if section.get(key) is not None:
                return section[key]
        return None

    names = {d.model_name for d in deployments}
    groups: Dict[str, Dict[str, List[str]]] = {}
    for kind in ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks"):
        table: Dict[str, List[str]] = {}
        for section_name, settings in (("litellm_settings", litellm), ("router_settings", router)):
            for name, backups in _fallbacks(settings.get(kind), f"{where}: {section_name}.{kind}").items():
                table.setdefault(name, []).extend(b for b in backups if b not in table.get(name, []))
        for name, backups in table.items():
            missing = [b for b in [name, *backups] if b not in names and not any("*" in n for n in names)]
            if missing:
                raise ConfigError(f"{where}: {kind} name unknown model(s) {', '.join(missing)}; known: {', '.join(sorted(names))}")
        groups[kind] = table
    default_fallbacks = setting("default_fallbacks") or []
    if isinstance(default_fallbacks, str):
        default_fallbacks = [default_fallbacks]
    strategy = setting("routing_strategy") or "round-robin"
    if strategy not in ROUTING_STRATEGIES:
        raise ConfigError(f"{where}: routing_strategy {strategy!r} is not one of {', '.join(ROUTING_STRATEGIES)}")
    aliases: Dict[str, str] = {}
    for alias, target in (router.get("model_group_alias") or {}).items():
        group = target.get("model") if isinstance(target, dict) else target
        if not isinstance(group, str) or group not in names:
            raise ConfigError(f"{where}: model_group_alias {alias!r} names no model group ({group!r}); known: {', '.join(sorted(names))}")
        aliases[str(alias)] = group
    call_defaults: Dict[str, Any] = {}
    if litellm.get("drop_params") is not None:
        call_defaults["drop_params"] = bool(litellm["drop_params"])
    environment = {str(k): str(v) for k, v in sections["environment_variables"].items() if not isinstance(v, EnvRef)}
    providers = data.get("providers") or []
    if not isinstance(providers, list):
        raise ConfigError(f"{where}: providers must be a list")
    if ignored:
        import warnings

        warnings.warn(f"{where}: ignored (not implemented by modelport): {', '.join(ignored)}", UserWarning, stacklevel=2)
    timeout = setting("timeout", "request_timeout")
    cooldown = setting("cooldown_time")
    return Config(
        deployments=deployments,
        fallbacks=groups["fallbacks"],
        context_window_fallbacks=groups["context_window_fallbacks"],
        content_policy_fallbacks=groups["content_policy_fallbacks"],
        default_fallbacks=list(default_fallbacks),
        num_retries=setting("num_retries"),
        timeout=timeout,
        cooldown_time=float(cooldown) if cooldown is not None else 60.0,
        allowed_fails=int(setting("allowed_fails") or 0),
        routing_strategy=strategy,
        model_group_alias=aliases,
        call_defaults=call_defaults,
        environment_variables=environment,
        master_key=general.get("master_key"),
        providers=providers,
        path=where,
        general=dict(general),
        ignored=ignored,
        router_settings=dict(router),
        litellm_settings=dict(litellm),
        enable_pre_call_checks=bool(router.get("enable_pre_call_checks", False)),
    )


# --- providers declared by data -------------------------------------------------------------


class DeclaredProvider:
    """An OpenAI-compatible provider from a config file's ``providers:`` section."""

    def __init__(self, spec: Mapping[str, Any], where: str) -> None:
        from ..provider import ProviderInfo

        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise ConfigError(f"{where}: each provider needs a name")
        if not spec.get("api_base"):
            raise ConfigError(f"{where}: provider {spec['name']!r} needs an api_base")
        key_env = spec.get("api_key_env") or ()
        renames = spec.get("param_renames") or {}
        if not isinstance(renames, Mapping):
            raise ConfigError(f"{where}: param_renames of {spec['name']!r} must map OpenAI names to the provider's")
        self.renames = dict(renames)
        api_base = spec["api_base"]
        self.info = ProviderInfo(
            name=spec["name"],
            api_base=api_base if isinstance(api_base, str) else None,
            api_base_env=(api_base.name,) if isinstance(api_base, EnvRef) else (),
            api_key_env=(key_env,) if isinstance(key_env, str) else tuple(key_env),
            operations=spec.get("operations") or ("chat", "embedding"),
            supports_system_message=bool(spec.get("supports_system_message", True)),
            description=f"declared in {where}",
        )

    def provider_info(self) -> Any:
        return self.info

    def transform_request(self, call: Any, endpoint: Any) -> Any:
        if not self.renames:
            return None
        from ..provider import WireRequest

        body = {self.renames.get(k, k): v for k, v in call.body.items()}
        return WireRequest("POST", endpoint.url, dict(endpoint.headers), json=body)


def _declared_plugin(spec: Mapping[str, Any], where: str) -> Any:
    from ..provider import hookimpl

    provider = DeclaredProvider(spec, where)

    class Plugin:
        @hookimpl
        def provider_info(self) -> Any:
            return provider.provider_info()

        @hookimpl
        def transform_request(self, call: Any, endpoint: Any) -> Any:
            return provider.transform_request(call, endpoint)

    return provider.info.name, Plugin()


def declared_providers(config: Config) -> Dict[str, Any]:
    """The hooks of the providers a config declares, by name: they serve the client built
    from that config only (two configs in one process do not see each other's)."""
    from .._registry import ProviderHooks, registry

    out: Dict[str, Any] = {}
    for position, spec in enumerate(config.providers):
        name, plugin = _declared_plugin(spec, f"{config.path}: providers[{position}]")
        out[name] = ProviderHooks(name, plugin, registry.middleware(), distribution=f"declared in {config.path}")
    return out


