"""``modelport new-provider``: the generated distribution installs, type-checks and passes
its own tests (conformance kit and end-to-end calls) right after generation.

Generated distributions are installed with ``pip --target`` into a temporary directory
and run in a separate interpreter with that directory on ``PYTHONPATH``, so the shared
environment's site-packages is never touched.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import subprocess
import sys
from typing import Dict, List, Optional

import pytest

import modelport
from modelport._scaffold import WIRES, core_requirement, create_provider, render
from modelport.errors import ConfigError, InvalidRequestError


def run(args: List[str], cwd: Optional[pathlib.Path] = None, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("mypy-cache")


# --- the generated distribution, end to end ---------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_generated_distribution_installs_and_passes_its_own_tests(tmp_path: pathlib.Path, mypy_cache: pathlib.Path, wire: str) -> None:
    name = f"demo-{wire}"
    target = create_provider(name, wire=wire, directory=tmp_path / "work")
    assert target == (tmp_path / "work" / f"modelport-{name}").resolve()

    site = tmp_path / "site"
    install = run(
        ["pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--disable-pip-version-check",
         "--quiet", "--target", str(site), str(target)]
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    assert list(site.glob("modelport_demo_*.dist-info/entry_points.txt")), "no entry points installed"

    env = {**os.environ, "PYTHONPATH": str(site), "MODELPORT_CONFORMANCE_EXAMPLES": "10"}
    tests = run(["pytest", "-q", "-rA", "-p", "no:cacheprovider", str(target / "tests")], cwd=target, env=env)
    output = tests.stdout + tests.stderr
    assert tests.returncode == 0, output
    summary = tests.stdout.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary) and not re.search(r"\b(failed|errors?|skipped)\b", summary), output
    ran = f"PASSED tests/test_{name.replace('-', '_')}.py::"
    kit = f"{ran}TestDemo{wire.capitalize()}::"
    for test in ("test_chat_request_survives_transform_request", "test_chat_stream_rebuilds_the_response", "test_mock_completion_through_the_public_api"):
        assert kit + test in tests.stdout, output
    for test in ("test_completion", "test_streamed_completion", "test_errors_are_typed"):
        assert ran + test in tests.stdout, output

    typed = run(["mypy", "--strict", "--cache-dir", str(mypy_cache), "src"], cwd=target)
    assert typed.returncode == 0, typed.stdout + typed.stderr


# --- what is generated -------------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_render_fills_every_placeholder_and_imports_only_the_toolkit(wire: str) -> None:
    files = render("acme-cloud", wire)
    assert set(files) == {
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "src/modelport_acme_cloud/__init__.py",
        "src/modelport_acme_cloud/py.typed",
        "tests/conftest.py",
        "tests/fake_upstream.py",
        "tests/test_acme_cloud.py",
    }
    for path, text in files.items():
        assert not re.search(r"\{\{\s*\w+\s*\}\}", text), path
        if path.endswith(".py"):
            compile(text, path, "exec")
    module = files["src/modelport_acme_cloud/__init__.py"]
    imported = set()
    for node in ast.walk(ast.parse(module)):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert {m for m in imported if m.split(".")[0] == "modelport"} == {"modelport.provider"}
    assert 'name="acme-cloud"' in module and 'api_base="https://api.acme-cloud.example/v1"' in module
    assert 'api_key_env=("ACME_CLOUD_API_KEY",)' in module and 'api_base_env=("ACME_CLOUD_API_BASE",)' in module
    if wire == "ndjson":
        assert 'stream_framing="ndjson"' in module and "end_of_stream(" in module
    if wire != "openai":
        for hook in ("transform_request", "transform_response", "parse_stream_chunk", "map_error", "encode_response", "encode_stream", "encode_error"):
            assert f"def {hook}(" in module, hook
    tests = files["tests/test_acme_cloud.py"]
    assert "class TestAcmeCloud(ProviderConformance):" in tests and 'provider = "acme-cloud"' in tests
    assert files["tests/conftest.py"].count('pytest_plugins = ["modelport.testing.plugin"]') == 1
    readme = files["README.md"]
    assert "pip install -e .[test]" in readme and "python -m pytest" in readme


def test_pyproject_metadata_and_core_range() -> None:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    project = tomllib.loads(render("acme-cloud", "sse")["pyproject.toml"])
    major, minor = (int(part) for part in modelport.__version__.split(".")[:2])
    upper = f"{major}.{minor + 1}" if major == 0 else str(major + 1)
    meta = project["project"]
    assert meta["name"] == "modelport-acme-cloud"
    assert meta["requires-python"] == ">=3.10"
    assert meta["dependencies"] == [f"modelport>={major}.{minor},<{upper}"]
    assert meta["optional-dependencies"]["test"] == ["pytest", "hypothesis", "jsonschema"]
    assert meta["entry-points"]["modelport.providers"] == {"acme-cloud": "modelport_acme_cloud"}
    assert project["build-system"]["build-backend"] == "setuptools.build_meta"
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]


@pytest.mark.parametrize(
    "version, requirement",
    [
        ("0.2.0", "modelport>=0.2,<0.3"),
        ("0.3.1", "modelport>=0.3,<0.4"),
        ("0.10.0rc1", "modelport>=0.10,<0.11"),
        ("1.4.2", "modelport>=1.4,<2"),
    ],
)
def test_core_requirement(version: str, requirement: str) -> None:
    assert core_requirement(version) == requirement


def test_core_requirement_needs_major_and_minor() -> None:
    with pytest.raises(ConfigError, match="MAJOR.MINOR"):
        core_requirement("dev")


# --- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "Acme", "1acme", "_acme", "-acme", "acme-", "acme_", "acme cloud", "acme/x", "acme.x", "acmé"])
def test_invalid_names_are_refused(tmp_path: pathlib.Path, name: str) -> None:
    with pytest.raises(InvalidRequestError, match="lowercase letters, digits, '-' and '_', starting with a letter") as caught:
        create_provider(name, directory=tmp_path)
    assert caught.value.param == "name"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a", "acme", "acme-cloud", "acme_2", "a-b_c9"])
def test_valid_names(tmp_path: pathlib.Path, name: str) -> None:
    target = create_provider(name, directory=tmp_path)
    assert target.name == f"modelport-{name}" and (target / "pyproject.toml").is_file()


def test_unknown_wire_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InvalidRequestError, match="openai, sse, ndjson") as caught:
        create_provider("acme", wire="grpc", directory=tmp_path)
    assert caught.value.param == "wire"
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_never_overwritten(tmp_path: pathlib.Path) -> None:
    existing = tmp_path / "modelport-acme"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists") as caught:
        create_provider("acme", wire="sse", directory=tmp_path)
    assert str(existing) in str(caught.value)
    assert [p.name for p in existing.iterdir()] == ["keep.txt"] and (existing / "keep.txt").read_text() == "mine"


def test_a_missing_parent_directory_is_created(tmp_path: pathlib.Path) -> None:
    target = create_provider("acme", wire="ndjson", directory=tmp_path / "a" / "b")
    assert target == (tmp_path / "a" / "b" / "modelport-acme").resolve()
    assert (target / "src" / "modelport_acme" / "py.typed").is_file()


# --- through the CLI ---------------------------------------------------------------------------


def test_cli_creates_a_provider(tmp_path: pathlib.Path) -> None:
    result = run(["modelport", "new-provider", "demo-x", "--wire", "ndjson", "-d", str(tmp_path)])
    assert result.returncode == 0, result.stderr
    target = tmp_path / "modelport-demo-x"
    assert target.is_dir() and (target / "src" / "modelport_demo_x" / "__init__.py").is_file()
    assert str(target.resolve()) in result.stdout


@pytest.mark.parametrize("name", ["Demo", "9lives", "demo x", "demo-"])
def test_cli_refuses_invalid_names(tmp_path: pathlib.Path, name: str) -> None:
    result = run(["modelport", "new-provider", name, "-d", str(tmp_path)])
    assert result.returncode == 2
    assert f"invalid provider name {name!r}" in result.stderr and "lowercase letters" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_an_existing_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / "modelport-demo-x").mkdir()
    result = run(["modelport", "new-provider", "demo-x", "-d", str(tmp_path)])
    assert result.returncode == 2
    assert str(tmp_path / "modelport-demo-x") in result.stderr and "already exists" in result.stderr


def test_cli_refuses_an_unknown_wire(tmp_path: pathlib.Path) -> None:
    result = run(["modelport", "new-provider", "demo-x", "--wire", "grpc", "-d", str(tmp_path)])
    assert result.returncode == 2 and "--wire" in result.stderr
    assert list(tmp_path.iterdir()) == []
