"""The sample third-party provider and middleware under tests/plugins, installed by the
test command like any published plugin, and the kit installed from a built wheel."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import textwrap

import modelport

ROOT = pathlib.Path(__file__).resolve().parent.parent
USER = [{"role": "user", "content": "hi"}]


def test_acme_is_discovered_through_its_entry_point():
    rows = {row.name: row for row in modelport.providers(load=False)}
    assert rows["acme"].distribution == "modelport-acme-sample"
    assert modelport.registry.hooks("acme").info.description.startswith("the Acme API")


def test_acme_serves_completion_on_loopback(upstream):
    head = {"id": "a1", "object": "chat.completion.chunk", "created": 1, "model": "acme-1"}
    upstream.reply(json={"id": "a1", "object": "chat.completion", "created": 1, "model": "acme-1",
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "end"}]})  # fmt: skip
    result = modelport.completion("acme/acme-1", USER, api_base=upstream.base_url, api_key="acme-secret")
    assert result.choices[0].finish_reason == "stop" and result.choices[0].message.content == "hello"
    assert upstream.last.headers["x-acme-key"] == "acme-secret" and "authorization" not in upstream.last.headers
    upstream.reply(sse=[{**head, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]},
                        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "end"}]}])  # fmt: skip
    chunks = list(modelport.completion("acme/acme-1", USER, api_base=upstream.base_url, stream=True))
    assert modelport.stream_to_completion(chunks).choices[0].finish_reason == "stop"


def test_middleware_wraps_every_provider(upstream):
    import modelport_trace

    modelport_trace.CALLS.clear()
    modelport.completion("openai/m1", USER, api_base=upstream.base_url)
    modelport.completion("hosted_vllm/m2", USER, api_base=upstream.base_url)
    modelport.text_completion("text-completion-openai/m3", "x", api_base=upstream.base_url)
    modelport.completion("dashscope/m4", USER, api_base=upstream.base_url, api_key="k")
    assert [r.headers["x-modelport-trace"] for r in upstream.requests] == ["openai/m1", "hosted_vllm/m2", "text-completion-openai/m3", "dashscope/m4"]
    assert modelport_trace.CALLS == [
        ("openai", "m1", "chat"), ("hosted_vllm", "m2", "chat"), ("text-completion-openai", "m3", "text_completion"), ("dashscope", "m4", "chat"),
    ]  # fmt: skip


def test_kit_runs_from_an_installed_wheel(tmp_path):
    wheels = tmp_path / "wheels"
    site = tmp_path / "site"
    source = tmp_path / "core"  # build from a copy: the build leaves files beside the sources
    shutil.copytree(ROOT / "core", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    wheel = next(wheels.glob("modelport-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True, capture_output=True, timeout=300)
    project = tmp_path / "third_party"
    project.mkdir()
    (project / "conftest.py").write_text('pytest_plugins = ["modelport.testing.plugin"]\n')
    (project / "test_kit.py").write_text(textwrap.dedent(
        """
        import modelport.testing
        from modelport.testing import ProviderConformance

        def test_kit_comes_from_the_wheel():
            assert modelport.testing.__file__.startswith(%r)

        class TestOpenAIFromWheel(ProviderConformance):
            provider = "openai"
        """ % str(site)
    ))  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(project)],
        capture_output=True, text=True, timeout=600, cwd=project,
        env={"PYTHONPATH": str(site), "MODELPORT_CONFORMANCE_EXAMPLES": "5", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_secret_headers_a_plugin_declares_are_redacted_in_dry_run_and_reprs():
    """Acme authenticates with X-Acme-Key; it declares the header secret, so no output shows it."""
    key = "acme-key-5551234"
    client = modelport.Client()
    text = client.describe_request("chat", "acme/acme-1", messages=USER, api_key=key)
    assert key not in text and "X-Acme-Key: [REDACTED]" in text
    request = client.build_request("chat", "acme/acme-1", messages=USER, api_key=key)
    assert request.headers["X-Acme-Key"] == key and key not in repr(request)
    result = subprocess.run([sys.executable, "-m", "modelport", "chat", "-m", "acme/acme-1", "--api-key", key, "--dry-run", "hi"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0 and key not in result.stdout + result.stderr and "[REDACTED]" in result.stdout


def test_mock_response_runs_the_plugins_own_decoding():
    """Acme's encoder writes its own finish reason ("end"); its decoder must map it back."""
    hooks = modelport.registry.hooks("acme")
    assert hooks.encodes_responses and hooks.encodes_streams
    wire = hooks.encode_response(modelport.Client()._prepare("chat", "acme/a", {"messages": USER}, {}, None)[1],
                                 {"choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}]})  # fmt: skip
    assert wire.json()["choices"][0]["finish_reason"] == "end"  # the mock really is in Acme's dialect
    result = modelport.completion("acme/acme-1", USER, mock_response="pong", api_key="k")
    assert result.choices[0].message.content == "pong" and result.choices[0].finish_reason == "stop"
    chunks = list(modelport.completion("acme/acme-1", USER, mock_response="a b", api_key="k", stream=True))
    assert modelport.stream_to_completion(chunks).choices[0].finish_reason == "stop"
