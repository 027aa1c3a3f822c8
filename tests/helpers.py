"""Helpers for tests that need run-time distributions and separate interpreters."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap
import threading
from typing import Any, Dict, Optional, Tuple


def make_distribution(
    root: pathlib.Path,
    name: str,
    modules: Dict[str, str],
    entry_points: Dict[str, Dict[str, str]],
    version: str = "1.0",
) -> pathlib.Path:
    """Write modules plus a real ``.dist-info`` (metadata and entry points) under ``root``.

    Putting ``root`` on ``sys.path`` makes importlib.metadata find the distribution,
    exactly as it finds an installed one.
    """
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines.extend(f"{k} = {v}" for k, v in eps.items())
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def run_python(code: str, *paths: pathlib.Path, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with ``paths`` prepended to sys.path."""
    full_env = {**os.environ, **(env or {})}
    if paths:
        full_env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), full_env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full_env, timeout=120
    )


def run_server(app: Any) -> Tuple[Any, threading.Thread, str]:
    """``app`` under a real uvicorn server on 127.0.0.1 (a free port), in a thread:
    (server, thread, base URL). Stop it with ``server.should_exit = True; thread.join()``."""
    import socket
    import time

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"
