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
from typing import Any, Dict, List, Mapping, Optional, Union

import attrs

from ..errors import (
    ConfigError,
)

__all__ = ["Config", "Deployment", "load_config", "EnvRef", "declared_providers"]

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


@attrs.frozen
class Deployment:
    """One entry of ``model_list``: an alias and the call arguments behind it.

    Immutable: health (cool-downs, failures) lives in the router's state, keyed by ``id``.
    """

    model_name: str
    model: str
    params: Dict[str, Any] = attrs.field(repr=lambda params: repr(_redacted(params)))
    #: Unique within its config: ``<model_name>#<position in model_list>``.
    id: str = ""

    def call_kwargs(self) -> Dict[str, Any]:
        resolved: Dict[str, Any] = _resolved(self.params, f"model_list entry {self.model_name!r} ({self.model})")
        return resolved


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
        raise ConfigError(f"{where}: fallbacks must be a list of {{model_name: [backup, ...]}}")
    for item in items:
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: each fallback is a mapping {{model_name: [backup, ...]}}, got {item!r}")
        for name, backups in item.items():
            backups = [backups] if isinstance(backups, str) else backups
            if not isinstance(backups, list) or not all(isinstance(b, str) for b in backups):
                raise ConfigError(f"{where}: fallbacks for {name!r} must be a list of model names")
            out.setdefault(str(name), []).extend(backups)
    return out


def load_config(source: Union[str, "os.PathLike[str]", Mapping[str, Any], Config]) -> Config:
    """Read and check a config file (or an already parsed mapping; a ``Config`` is returned as is)."""
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
    unknown = set(data) - {"model_list", "router_settings", "general_settings", "providers", "litellm_settings"}
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(sorted(unknown))}")
    entries = data.get("model_list") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: model_list must be a list")
    deployments = []
    for position, entry in enumerate(entries):
        label = f"{where}: model_list[{position}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str):
            raise ConfigError(f"{label} needs a model_name")
        params = entry.get("params", entry.get("litellm_params"))
        if not isinstance(params, dict) or not isinstance(params.get("model"), str):
            raise ConfigError(f"{label} ({entry['model_name']}) needs params.model, e.g. 'openai/gpt-4o-mini'")
        params = dict(params)
        model = params.pop("model")
        if "/" not in model:
            raise ConfigError(f"{label}: model {model!r} needs a provider prefix, e.g. 'openai/{model}'")
        deployments.append(Deployment(model_name=entry["model_name"], model=model, params=params, id=f"{entry['model_name']}#{position}"))
    router = data.get("router_settings") or {}
    general = data.get("general_settings") or {}
    if not isinstance(router, dict) or not isinstance(general, dict):
        raise ConfigError(f"{where}: router_settings and general_settings must be mappings")
    fallbacks = _fallbacks(router.get("fallbacks"), f"{where}: router_settings")
    names = {d.model_name for d in deployments}
    for name, backups in fallbacks.items():
        missing = [b for b in [name, *backups] if b not in names]
        if missing:
            raise ConfigError(f"{where}: fallbacks name unknown model(s) {', '.join(missing)}; known: {', '.join(sorted(names))}")
    providers = data.get("providers") or []
    if not isinstance(providers, list):
        raise ConfigError(f"{where}: providers must be a list")
    return Config(
        deployments=deployments,
        fallbacks=fallbacks,
        num_retries=router.get("num_retries"),
        timeout=router.get("timeout"),
        cooldown_time=float(router.get("cooldown_time", 60.0)),
        master_key=general.get("master_key"),
        providers=providers,
        path=where,
        general=dict(general),
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


