"""Finding providers by entry point and building one hook caller per provider.

A call loads only the plugin that owns its provider, into a plugin manager holding
just that plugin, the middleware and the OpenAI fallback. Hooks are then called
through a flat list of functions resolved once, so the cost of a call or a stream
chunk does not depend on how many plugins are installed. Wrapper middleware (which
needs pluggy's machinery) switches that hook back to pluggy's own caller.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

import attrs
import pluggy

from .errors import ModelportError, PluginLoadError, UnknownProviderError
from .provider import hookspecs
from .provider._fallback import OpenAIFallback
from .provider._types import ProviderInfo

__all__ = ["ProviderHooks", "ProviderListing", "Registry", "registry", "register_provider"]

log = logging.getLogger("modelport")

PROVIDER_GROUP = "modelport.providers"
#: Provider names (LiteLLM's among them) whose plugin's distribution is not
#: ``modelport-<name>`` (``_`` as ``-``), named by ``UnknownProviderError``; the other
#: first-party names (anthropic, azure, gemini, ollama, ...) follow that rule.
KNOWN_DISTRIBUTIONS = {
    "openai": "modelport-openai-compat",
    "text-completion-openai": "modelport-openai-compat",
    "hosted_vllm": "modelport-vllm",
    "ollama_chat": "modelport-ollama",
}
MIDDLEWARE_GROUP = "modelport.middleware"


class EntryPoint:
    """One ``name = module:attribute`` line of an installed distribution's entry points."""

    __slots__ = ("name", "value", "group", "_metadata", "_dist")

    def __init__(self, name: str, value: str, group: str, metadata: str = "", dist: Any = None) -> None:
        self.name = name
        self.value = value
        self.group = group
        self._metadata = metadata  # the distribution's METADATA / PKG-INFO file
        self._dist = dist  # or importlib.metadata's Distribution, where it did the scan

    def load(self) -> Any:
        import importlib

        module, _, attribute = self.value.partition(":")
        target = importlib.import_module(module.strip())
        for part in attribute.split("[")[0].strip().split(".") if attribute.strip() else ():
            target = getattr(target, part)
        return target

    def distribution(self) -> Tuple[str, str]:
        """(name, version) from the distribution's metadata; ("", "") when unknown."""
        if self._dist is not None:
            return self._dist.metadata["Name"] or "", self._dist.version or ""
        name = version = ""
        try:
            with open(self._metadata, encoding="utf-8") as handle:
                for line in handle:
                    if not line.strip():
                        break  # the end of the header: the description follows
                    key, _, value = line.partition(":")
                    if key == "Name":
                        name = value.strip()
                    elif key == "Version":
                        version = value.strip()
        except OSError:
            pass
        return name, version


def scan_entry_points(groups: Tuple[str, ...]) -> Dict[str, List[EntryPoint]]:
    """The entry points of ``groups`` of every distribution on ``sys.path``, in path order.

    What ``importlib.metadata.entry_points()`` finds (``*.dist-info`` / ``*.egg-info``
    directories, one distribution per normalised name, the first on the path winning),
    read directly: importing ``importlib.metadata`` (email, zipfile, ...) and building
    its objects was the largest part of a first call. Paths it alone can read (zip
    files, finders with their own distributions) hand the scan back to it.
    """
    found: Dict[str, List[EntryPoint]] = {group: [] for group in groups}
    if not _plain_paths():
        from importlib.metadata import entry_points

        for group in groups:
            for ep in entry_points(group=group):
                found[group].append(EntryPoint(ep.name, ep.value, group, dist=getattr(ep, "dist", None)))
        return found
    seen: Set[str] = set()
    for info in _metadata_directories():
        name = os.path.basename(info).rsplit(".", 1)[0].split("-", 1)[0]
        key = name.replace("-", "_").replace(".", "_").lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            with open(os.path.join(info, "entry_points.txt"), encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            continue
        metadata = os.path.join(info, "METADATA" if info.endswith(".dist-info") else "PKG-INFO")
        group = ""
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line[0] == "[" and line[-1] == "]":
                group = line[1:-1].strip()
            elif group in found and "=" in line:
                ep_name, _, value = line.partition("=")
                found[group].append(EntryPoint(ep_name.strip(), value.strip(), group, metadata))
    return found


def _plain_paths() -> bool:
    """True when every distribution is a directory on ``sys.path`` (the usual case)."""
    from importlib.machinery import PathFinder

    for finder in sys.meta_path:
        if finder is not PathFinder and getattr(finder, "find_distributions", None) is not None:
            return False
    return not any(os.path.isfile(path) for path in sys.path if path)


def _metadata_directories() -> Iterator[str]:
    for path in sys.path:
        root = path or "."
        try:
            names = os.listdir(root)
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                full = os.path.join(root, name)
                if os.path.isdir(full):
                    yield full


def _fast_caller(hook: Any) -> Callable[..., Any]:
    """A firstresult caller equivalent to ``hook(**kwargs)`` taking positional arguments."""
    impls = hook.get_hookimpls()
    spec_args = tuple(hook.spec.argnames)
    if any(impl.hookwrapper or impl.wrapper for impl in impls):

        def via_pluggy(*args: Any) -> Any:
            return hook(**dict(zip(spec_args, args)))

        return via_pluggy
    plan: List[Tuple[Callable[..., Any], Optional[Tuple[int, ...]]]] = []
    for impl in reversed(impls):  # pluggy calls the last registered (and tryfirst) first
        names = tuple(impl.argnames)
        plan.append((impl.function, None if names == spec_args else tuple(spec_args.index(n) for n in names)))
    if len(plan) == 1 and plan[0][1] is None:
        return plan[0][0]
    if len(plan) == 2 and plan[0][1] is None and plan[1][1] is None:
        first, second = plan[0][0], plan[1][0]

        def two(*args: Any) -> Any:
            result = first(*args)
            return second(*args) if result is None else result

        return two

    def many(*args: Any) -> Any:
        for function, picks in plan:
            result = function(*args) if picks is None else function(*[args[i] for i in picks])
            if result is not None:
                return result
        return None

    return many


class _PluginManager(pluggy.PluginManager):
    """pluggy's manager, telling its ``ProviderHooks`` when plugins come or go so the
    resolved callers are rebuilt: a plugin registered after the first call is honoured."""

    def __init__(self, on_change: Callable[[], None]) -> None:
        super().__init__(hookspecs.PROJECT)
        self._modelport_on_change = on_change

    def register(self, plugin: Any, name: Optional[str] = None) -> Optional[str]:
        result = super().register(plugin, name)
        self._modelport_on_change()
        return result

    def unregister(self, plugin: Any = None, name: Optional[str] = None) -> Any:
        result = super().unregister(plugin, name)
        self._modelport_on_change()
        return result


class ProviderHooks:
    """One provider's plugin manager and its resolved hook callers.

    ``pm`` is a plain pluggy manager (hooks: ``pm.hook.<name>(**kwargs)``); the
    attributes named after the hooks are the same calls resolved to plain functions
    taking positional arguments, which is what the per-call and per-chunk path uses.
    """

    def __init__(
        self,
        name: str,
        plugin: Any,
        middleware: List[Tuple[str, Any]],
        *,
        distribution: str = "",
        version: str = "",
        entry_point: Optional[EntryPoint] = None,
    ) -> None:
        self.name = name
        self.plugin = plugin
        self._distribution = (distribution, version) if entry_point is None else None
        self._entry_point = entry_point
        pm = _PluginManager(self._resolve)
        self.pm = pm
        self._ready = False
        pm.add_hookspecs(hookspecs)
        pm.register(OpenAIFallback(), name="openai-fallback")
        pm.register(plugin, name=f"provider:{name}")
        for mw_name, mw in middleware:
            pm.register(mw, name=f"middleware:{mw_name}")
        pm.check_pending()
        info = pm.hook.provider_info()
        if not isinstance(info, ProviderInfo):
            raise PluginLoadError(
                f"provider plugin {name!r} does not return a ProviderInfo from provider_info()",
                plugin=name,
                distribution=distribution,
            )
        self.info: ProviderInfo = info
        self._ready = True
        self._resolve()

    def _resolve(self) -> None:
        if not self._ready:
            return
        hook = self.pm.hook
        self.resolve_endpoint = _fast_caller(hook.resolve_endpoint)
        self.transform_request = _fast_caller(hook.transform_request)
        self.transform_response = _fast_caller(hook.transform_response)
        self.stream_decoder = _fast_caller(hook.stream_decoder)
        self.parse_stream_chunk = _fast_caller(hook.parse_stream_chunk)
        self.map_error = _fast_caller(hook.map_error)
        self.encode_response = _fast_caller(hook.encode_response)
        self.encode_stream = _fast_caller(hook.encode_stream)
        self.encode_error = _fast_caller(hook.encode_error)
        own = self._implemented_by_plugins()
        # Mock answers run the provider's own decoding only where it can be fed: the
        # OpenAI wire decodes OpenAI encodings; a plugin decoding its own format must
        # supply the matching encoder (else mocks bypass its decoding, as documented).
        self.encodes_responses = "encode_response" in own or "transform_response" not in own
        self.encodes_streams = "encode_stream" in own or not (
            {"parse_stream_chunk", "stream_decoder"} & own or self.info.stream_framing != "sse"
        )

    def _implemented_by_plugins(self) -> Set[str]:
        names: Set[str] = set()
        for hook_name in hookspecs.HOOKS:
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin_name != "openai-fallback":
                    names.add(hook_name)
        return names

    @property
    def distribution(self) -> str:
        return self._dist()[0]

    @property
    def version(self) -> str:
        return self._dist()[1]

    def _dist(self) -> Tuple[str, str]:
        # Read on demand: parsing distribution metadata costs more than a first call should.
        if self._distribution is None:
            assert self._entry_point is not None
            self._distribution = _dist_of(self._entry_point)
        return self._distribution

    def cli_commands(self) -> List[Any]:
        """What this provider's plugin adds to the CLI."""
        found: List[Any] = []
        for contributed in self.pm.hook.cli_commands():
            found.extend(contributed or ())
        return found


@attrs.frozen
class ProviderListing:
    """One installed provider as ``modelport.providers()`` reports it."""

    name: str
    distribution: str
    version: str
    info: Optional[ProviderInfo] = None
    error: Optional[str] = None

    @property
    def operations(self) -> Tuple[str, ...]:
        return tuple(sorted(self.info.operations)) if self.info else ()


def _dist_of(ep: EntryPoint) -> Tuple[str, str]:
    return ep.distribution()


class Registry:
    """The provider table: entry points read lazily, plugins imported on first use."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._entry_points: Optional[Dict[str, List[EntryPoint]]] = None
        self._registered: Dict[str, Any] = {}
        self._hooks: Dict[str, ProviderHooks] = {}
        self._failures: Dict[str, PluginLoadError] = {}
        self._middleware: Optional[List[Tuple[str, Any]]] = None
        self._middleware_entry_points: List[EntryPoint] = []

    # -- discovery ---------------------------------------------------------------------

    def entry_point_table(self) -> Dict[str, List[EntryPoint]]:
        if self._entry_points is None:
            # One scan of the installed distributions for both groups: each scan reads
            # every distribution's metadata, the largest part of a first call's cost.
            everything = scan_entry_points((PROVIDER_GROUP, MIDDLEWARE_GROUP))
            table: Dict[str, List[EntryPoint]] = {}
            seen = set()
            for ep in everything[PROVIDER_GROUP]:
                key = (ep.name, ep.value)
                if key in seen:  # one distribution seen twice on sys.path
                    continue
                seen.add(key)
                table.setdefault(ep.name, []).append(ep)
            self._middleware_entry_points = everything[MIDDLEWARE_GROUP]
            self._entry_points = table
        return self._entry_points

    def names(self) -> List[str]:
        return sorted(set(self.entry_point_table()) | set(self._registered))

    def middleware(self) -> List[Tuple[str, Any]]:
        if self._middleware is None:
            loaded = []
            self.entry_point_table()
            for ep in self._middleware_entry_points:
                try:
                    loaded.append((ep.name, ep.load()))
                except Exception as exc:  # a broken middleware must not break calls
                    dist = _dist_of(ep)[0]
                    warnings.warn(
                        f"modelport middleware {ep.name!r} ({dist or 'unknown distribution'}) failed to load"
                        f" and is skipped: {type(exc).__name__}: {exc}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            self._middleware = loaded
        return self._middleware

    # -- registration ------------------------------------------------------------------

    def register(self, name: str, plugin: Any, *, aliases: Tuple[str, ...] = ()) -> None:
        """Serve provider ``name`` (and ``aliases``) with ``plugin``, without an entry point."""
        with self._lock:
            for key in (name, *aliases):
                self._registered[key] = plugin
                self._hooks.pop(key, None)
                self._failures.pop(key, None)

    def unregister(self, name: str) -> None:
        with self._lock:
            self._registered.pop(name, None)
            self._hooks.pop(name, None)

    def reset(self) -> None:
        """Forget everything loaded (tests, or after installing a plugin at run time)."""
        with self._lock:
            self._entry_points = None
            self._hooks.clear()
            self._failures.clear()
            self._middleware = None

    # -- lookup ------------------------------------------------------------------------

    def hooks(self, name: str) -> ProviderHooks:
        hooks = self._hooks.get(name)
        if hooks is not None:
            return hooks
        with self._lock:
            if name in self._hooks:
                return self._hooks[name]
            if name in self._failures:
                raise self._failures[name]
            try:
                hooks = self._load(name)
            except PluginLoadError as exc:
                self._failures[name] = exc
                raise
            self._hooks[name] = hooks
            return hooks

    def _load(self, name: str) -> ProviderHooks:
        if name in self._registered:
            return ProviderHooks(name, self._registered[name], self.middleware(), distribution="(registered at run time)")
        candidates = self.entry_point_table().get(name)
        if not candidates:
            installed = self.names()
            known = KNOWN_DISTRIBUTIONS.get(name)
            install = f": `pip install {known}`" if known else f", e.g. `pip install modelport-{name.lower().replace('_', '-')}`"
            raise UnknownProviderError(
                f"unknown provider {name!r}; installed providers: {', '.join(installed) or 'none'}."
                f" Install its plugin{install}, or register one with modelport.register_provider()",
                provider=name,
                installed=installed,
            )
        dists = {_dist_of(ep)[0] for ep in candidates} if len(candidates) > 1 else set()
        if len(dists) > 1:
            raise PluginLoadError(
                f"provider {name!r} is claimed by several distributions: {', '.join(sorted(dists))};"
                " uninstall all but one",
                plugin=name,
                distribution=", ".join(sorted(dists)),
            )
        ep = candidates[0]
        try:
            plugin = ep.load()
            return ProviderHooks(name, plugin, self.middleware(), entry_point=ep)
        except PluginLoadError:
            raise
        except Exception as exc:
            dist = _dist_of(ep)[0]
            error = PluginLoadError(
                f"provider plugin {name!r} from {dist or 'an unknown distribution'} failed to load:"
                f" {type(exc).__name__}: {exc}",
                plugin=name,
                distribution=dist,
            )
            warnings.warn(str(error), RuntimeWarning, stacklevel=3)
            log.warning("%s", error)
            raise error from exc

    def listing(self, *, load: bool = True) -> List[ProviderListing]:
        """Every installed provider; with ``load=False`` only entry-point metadata is read."""
        rows = []
        table = self.entry_point_table()
        for name in self.names():
            if name in self._registered and name not in table:
                dist, version = "(registered at run time)", ""
            else:
                dists = sorted({_dist_of(ep) for ep in table[name]})
                dist = ", ".join(d for d, _ in dists)
                version = ", ".join(v for _, v in dists)
            info = error = None
            if load:
                try:
                    info = self.hooks(name).info
                except ModelportError as exc:
                    error = str(exc)
            rows.append(ProviderListing(name=name, distribution=dist, version=version, info=info, error=error))
        return rows


registry = Registry()


def register_provider(name: str, plugin: Any, *, aliases: Tuple[str, ...] = ()) -> None:
    """Serve provider ``name`` with ``plugin`` (an object or module with hook implementations)."""
    registry.register(name, plugin, aliases=aliases)
