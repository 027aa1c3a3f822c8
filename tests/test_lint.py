"""The code stays lint-clean and type-checked (tools pinned in requirements-dev.txt)."""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff():
    result = run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy():
    sources = ["core/src/modelport", *map(str, sorted((ROOT / "plugins").glob("*/src")))]
    result = run("mypy", "--strict", *sources)
    assert result.returncode == 0, result.stdout + result.stderr


def _imports_of(path: pathlib.Path) -> list:
    import ast

    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_plugins_import_only_the_public_toolkit():
    """Every in-repo plugin (and the samples) builds on modelport.provider, never on internals."""
    plugin_files = [*ROOT.glob("plugins/*/src/*/*.py"), *ROOT.glob("tests/plugins/*/*.py")]
    assert len(plugin_files) >= 6
    for path in plugin_files:
        for name in _imports_of(path):
            if not name.startswith("modelport"):
                continue
            parts = name.split(".")
            private = [p for p in parts if p.startswith("_")]
            assert not private, f"{path.relative_to(ROOT)} imports the private name {name}"
            assert "OpenAIWire" not in parts and "openai_wire" not in parts, f"{path.relative_to(ROOT)} imports {name}"


def test_core_knows_no_provider():
    """Provider specifics live in their plugins; the core names none outside docs."""
    import re

    pattern = re.compile(r"modelscope|dashscope|vllm", re.IGNORECASE)
    # The one exception: the install hint of UnknownProviderError names real distributions.
    allowed = {("_registry.py", '    "hosted_vllm": "modelport-vllm",')}
    offenders = []
    for path in (ROOT / "core" / "src").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and (path.name, line) not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
