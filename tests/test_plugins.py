"""Plugin discovery and dispatch: lazy per-provider loading, isolation of broken plugins, middleware."""

from __future__ import annotations

import pytest

import modelport
from helpers import make_distribution, run_python
from modelport import errors
from modelport._registry import Registry

USER = [{"role": "user", "content": "hi"}]

PLAIN_PROVIDER = """
from modelport import ProviderInfo, hookimpl

@hookimpl
def provider_info():
    return ProviderInfo(name="{name}", api_base="http://127.0.0.1:9/v1", operations={{"chat"}})
"""


def provider_dist(root, dist, name, module=None):
    module = module or f"mp_{name.replace('-', '_')}"
    return make_distribution(
        root / dist, dist, {module: PLAIN_PROVIDER.format(name=name)}, {"modelport.providers": {name: module}}
    )


def test_import_modelport_is_light():
    result = run_python(
        """
        import sys, modelport
        heavy = [m for m in ("modelport_openai_compat", "httpx", "aiohttp", "pluggy", "yaml", "starlette", "modelport.testing", "modelport.server", "hypothesis") if m in sys.modules]
        print(heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_call_imports_only_its_provider(tmp_path):
    paths = [provider_dist(tmp_path, f"mp-fake-{i}", f"fake{i}") for i in range(5)]
    result = run_python(
        """
        import sys, modelport
        r = modelport.completion("fake2/m", [{"role": "user", "content": "hi"}], mock_response="ok")
        loaded = sorted(m for m in sys.modules if m.startswith("mp_fake"))
        hooks = modelport.registry.hooks("fake2")
        print(r.choices[0].message.content, loaded, len(hooks.pm.get_plugins()) - len(modelport.registry.middleware()))
        """,
        *paths,
    )
    assert result.returncode == 0, result.stderr
    # fake2's plugin plus the OpenAI fallback (besides middleware), whatever else is installed
    assert result.stdout.split() == ["ok", "['mp_fake2']", "2"]


def test_listing_without_loading_imports_nothing(tmp_path):
    paths = [provider_dist(tmp_path, "mp-fake-a", "fakea")]
    result = run_python(
        """
        import sys, modelport
        rows = {r.name: r for r in modelport.providers(load=False)}
        print(rows["fakea"].distribution, rows["fakea"].version, "mp_fakea" in sys.modules)
        """,
        *paths,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mp-fake-a", "1.0", "False"]


def test_broken_plugin_is_reported_by_name_and_breaks_nothing_else(tmp_path):
    broken = make_distribution(
        tmp_path / "broken", "mp-broken", {"mp_broken": "raise ImportError('missing dependency zzz')"},
        {"modelport.providers": {"broken": "mp_broken"}},
    )  # fmt: skip
    good = provider_dist(tmp_path, "mp-good", "good")
    result = run_python(
        """
        import warnings, modelport
        try:
            modelport.completion("broken/m", [{"role": "user", "content": "hi"}], mock_response="x")
        except modelport.PluginLoadError as exc:
            print("ERROR", exc.plugin, exc.distribution, "zzz" in str(exc))
        print(modelport.completion("good/m", [{"role": "user", "content": "hi"}], mock_response="fine").choices[0].message.content)
        """,
        broken, good,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ERROR", "broken", "mp-broken", "True", "fine"]
    assert "broken" in result.stderr and "RuntimeWarning" in result.stderr

    cli = run_python("import sys; from modelport.cli import main; sys.exit(main(['providers']))", broken, good)
    assert cli.returncode == 1
    assert "FAILED TO LOAD" in cli.stdout and "missing dependency zzz" in cli.stdout
    assert "good" in cli.stdout


def test_two_distributions_claiming_one_name(tmp_path):
    one = provider_dist(tmp_path, "mp-one", "twin", module="mp_twin_one")
    two = provider_dist(tmp_path, "mp-two", "twin", module="mp_twin_two")
    result = run_python(
        """
        import modelport
        try:
            modelport.completion("twin/m", [{"role": "user", "content": "hi"}], mock_response="x")
        except modelport.PluginLoadError as exc:
            print(exc)
        """,
        one, two,
    )  # fmt: skip
    assert "mp-one" in result.stdout and "mp-two" in result.stdout and "several distributions" in result.stdout


def test_misspelled_hook_is_an_error(tmp_path):
    typo = make_distribution(
        tmp_path / "typo", "mp-typo",
        {"mp_typo": PLAIN_PROVIDER.format(name="typo") + "\n@hookimpl\ndef transform_reqest(call, endpoint):\n    return None\n"},
        {"modelport.providers": {"typo": "mp_typo"}},
    )  # fmt: skip
    result = run_python(
        """
        import modelport
        try:
            modelport.completion("typo/m", [{"role": "user", "content": "hi"}], mock_response="x")
        except modelport.PluginLoadError as exc:
            print(exc)
        """,
        typo,
    )
    assert "transform_reqest" in result.stdout


def test_middleware_wraps_every_provider(tmp_path, upstream):
    middleware = make_distribution(
        tmp_path / "mw", "mp-mw",
        {"mp_mw": """
            from modelport import hookimpl

            @hookimpl(wrapper=True)
            def transform_request(call, endpoint):
                request = yield
                return request.with_headers({"X-Middleware": call.provider})
        """},
        {"modelport.middleware": {"stamp": "mp_mw"}},
    )  # fmt: skip
    result = run_python(
        f"""
        import modelport
        for model in ("openai/a", "text-completion-openai/b"):
            if model.startswith("openai"):
                modelport.completion(model, [{{"role": "user", "content": "hi"}}], api_base="{upstream.base_url}")
            else:
                modelport.text_completion(model, "hi", api_base="{upstream.base_url}")
        """,
        middleware,
    )
    assert result.returncode == 0, result.stderr
    assert [r.headers.get("x-middleware") for r in upstream.requests] == ["openai", "text-completion-openai"]


def test_unknown_provider_names_installed_ones():
    with pytest.raises(errors.UnknownProviderError) as info:
        modelport.completion("nosuch/m", USER)
    assert "openai" in str(info.value) and "pip install modelport-nosuch" in str(info.value)


def test_model_without_provider_prefix():
    with pytest.raises(errors.InvalidRequestError, match="provider prefix"):
        modelport.completion("gpt-4o", USER)


class StrictProvider:
    @modelport.hookimpl
    def provider_info(self):
        return modelport.ProviderInfo(
            name="strict", api_base="http://127.0.0.1:9/v1", operations={"chat"},
            params={"messages", "temperature", "stream", "stream_options"},
        )  # fmt: skip


@pytest.fixture
def strict():
    modelport.register_provider("strict", StrictProvider())
    yield
    modelport.registry.unregister("strict")


def test_unsupported_params_raise_or_drop(strict):
    with pytest.raises(errors.InvalidRequestError, match="logit_bias") as info:
        modelport.completion("strict/m", USER, logit_bias={"1": 2}, mock_response="x")
    assert "drop_params" in str(info.value) and info.value.param == "logit_bias"
    request = modelport.Client().build_request("chat", "strict/m", messages=USER, logit_bias={"1": 2}, top_k=5, drop_params=True)
    assert "logit_bias" not in request.json and request.json["top_k"] == 5


def test_unsupported_operation(strict):
    with pytest.raises(errors.InvalidRequestError, match="does not support embedding"):
        modelport.embedding("strict/m", "x")


def test_fast_caller_matches_pluggy_order():
    class Low:
        @modelport.hookimpl(trylast=True)
        def resolve_endpoint(self, call):
            return "low"

    class High:
        @modelport.hookimpl(tryfirst=True)
        def resolve_endpoint(self, call):
            return None  # passes to the next implementation

    class Mid:
        @modelport.hookimpl
        def resolve_endpoint(self, call):
            return "mid"

        @modelport.hookimpl
        def provider_info(self):
            return modelport.ProviderInfo(name="order")

    registry = Registry()
    registry.register("order", Mid())
    hooks = registry.hooks("order")
    for plugin in (Low(), High()):
        hooks.pm.register(plugin)
    assert hooks.resolve_endpoint("call") == hooks.pm.hook.resolve_endpoint(call="call") == "mid"

    class Later:
        @modelport.hookimpl(tryfirst=True)
        def resolve_endpoint(self, call):
            return "later"

    # Plugins registered or removed after the provider was loaded are honoured by the fast path.
    hooks.pm.register(Later(), name="later")
    assert hooks.resolve_endpoint("call") == hooks.pm.hook.resolve_endpoint(call="call") == "later"
    hooks.pm.unregister(name="later")
    assert hooks.resolve_endpoint("call") == hooks.pm.hook.resolve_endpoint(call="call") == "mid"


def test_entry_point_scan_finds_what_importlib_metadata_finds(tmp_path):
    """The registry reads entry points itself (a first call does not import
    importlib.metadata); it must see the same distributions: the first of two with one
    name on sys.path wins, egg-info directories count, a zip on sys.path hands the scan
    back to importlib.metadata."""
    first = provider_dist(tmp_path / "a", "mp-shadow", "shadow", module="mp_shadow_first")
    second = provider_dist(tmp_path / "b", "mp-shadow", "shadowed", module="mp_shadow_second")
    egg = tmp_path / "egg"
    (egg / "mp_egg.egg-info").mkdir(parents=True)
    (egg / "mp_egg.egg-info" / "PKG-INFO").write_text("Metadata-Version: 1.2\nName: mp-egg\nVersion: 3.1\n")
    (egg / "mp_egg.egg-info" / "entry_points.txt").write_text("[modelport.providers]\neggy = mp_egg_mod\n")
    (egg / "mp_egg_mod.py").write_text(PLAIN_PROVIDER.format(name="eggy"))
    code = """
        import sys
        import modelport
        print(modelport.completion("eggy/m", [{"role": "user", "content": "hi"}], mock_response="laid").choices[0].message.content)
        print("metadata imported" if "importlib.metadata" in sys.modules else "metadata not imported")
        from importlib.metadata import entry_points
        from modelport._registry import scan_entry_points
        ours = scan_entry_points(("modelport.providers",))["modelport.providers"]
        theirs = entry_points(group="modelport.providers")
        print(sorted((e.name, e.value) for e in ours) == sorted((e.name, e.value) for e in theirs))
        print(sorted(e.name for e in ours if e.name in ("shadow", "shadowed", "eggy")))
        print([e.distribution() for e in ours if e.name == "eggy"])
        """
    result = run_python(code, first, second, egg)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["laid", "metadata not imported", "True", "['eggy', 'shadow']", "[('mp-egg', '3.1')]"]
    # A zip file on sys.path: only importlib.metadata reads it; the scan defers to it.
    archive = tmp_path / "dists.zip"
    import zipfile

    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("mp_zipped-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: mp-zipped\nVersion: 1.0\n")
        bundle.writestr("mp_zipped-1.0.dist-info/entry_points.txt", "[modelport.providers]\nzipped = mp_zipped\n")
        bundle.writestr("mp_zipped.py", PLAIN_PROVIDER.format(name="zipped"))
    result = run_python(code.replace('"eggy"', '"zipped"').replace("eggy/m", "zipped/m"), archive, first)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ["laid", "metadata imported", "True", "['shadow', 'zipped']", "[('mp-zipped', '1.0')]"]
