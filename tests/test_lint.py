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
    result = run("mypy", *sources)
    assert result.returncode == 0, result.stdout + result.stderr
