"""modelport against raw httpx / aiohttp (and the openai SDK, LiteLLM when installed).

    python benchmarks/bench.py            # all sections, figures as ratios
    python benchmarks/bench.py --quick    # fewer rounds

One run, one loopback upstream in a separate process (so the server does not share
the client's interpreter), canned responses so the server's cost is the same for
every client. Ratios are client time over raw-httpx time on the same run: lower is better.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

CHUNKS = 1000
MESSAGES = [{"role": "user", "content": "hello"}]


# --- the upstream -----------------------------------------------------------------------


def _canned() -> Dict[str, bytes]:
    head = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1, "model": "bench"}
    events = [
        json.dumps({**head, "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "logprobs": None, "finish_reason": None}]})
        for i in range(CHUNKS)
    ]
    events.append(json.dumps({**head, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]}))
    full = {
        "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there", "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
    }  # fmt: skip
    # Ollama stamps every line with its own time, in nanoseconds.
    ollama = [json.dumps({"model": "bench", "created_at": f"2026-12-01T00:00:00.{123456789 + 7919 * i}Z", "message": {"role": "assistant", "content": f"tok{i} "}, "done": False})
              for i in range(CHUNKS)]  # fmt: skip
    ollama_head = {"model": "bench", "created_at": "2026-12-01T00:00:01.2345Z"}
    ollama.append(json.dumps({**ollama_head, "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                              "prompt_eval_count": 5, "eval_count": CHUNKS}))  # fmt: skip
    anthropic = [
        ("message_start", {"type": "message_start", "message": {"id": "msg_bench", "type": "message", "role": "assistant", "model": "bench",
                                                                 "content": [], "stop_reason": None, "usage": {"input_tokens": 5, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f"tok{i} "}}) for i in range(CHUNKS)),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": CHUNKS}}),
        ("message_stop", {"type": "message_stop"}),
    ]  # fmt: skip
    return {
        "json": json.dumps(full).encode(),
        "events": [f"data: {e}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"],  # type: ignore[dict-item]
        "ndjson": [(line + "\n").encode() for line in ollama],  # type: ignore[dict-item]
        "anthropic": [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in anthropic],  # type: ignore[dict-item]
    }


def serve() -> None:
    from aiohttp import web

    canned = _canned()

    async def chat(request: Any) -> Any:
        body = await request.json()
        if not body.get("stream"):
            return web.Response(body=canned["json"], content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in canned["events"]:
            await response.write(event)
        await response.write_eof()
        return response

    def streamer(kind: str, content_type: str) -> Any:
        async def handle(request: Any) -> Any:
            await request.read()
            response = web.StreamResponse(headers={"Content-Type": content_type})
            await response.prepare(request)
            for event in canned[kind]:
                await response.write(event)
            await response.write_eof()
            return response

        return handle

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", chat)
        app.router.add_post("/api/chat", streamer("ndjson", "application/x-ndjson"))
        app.router.add_post("/v1/messages", streamer("anthropic", "text/event-stream"))
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock, backlog=1024).start()
        print(sock.getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- measuring --------------------------------------------------------------------------


def interleaved(runs: Dict[str, Callable[[], None]], repeat: int) -> Dict[str, float]:
    """Fastest of ``repeat`` rounds per client, the clients taking turns in every round
    so that a slow moment of the machine hits all of them alike."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def import_times(rounds: int) -> Dict[str, float]:
    def timed(code: str) -> float:
        samples = []
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    bare = timed("pass")
    out = {"bare interpreter": bare}
    for name in ("modelport", "httpx", "openai", "litellm"):
        try:
            out[f"import {name}"] = timed(f"import {name}") - bare
        except subprocess.CalledProcessError:
            continue
    out["import modelport + first call"] = (
        timed(
            "import modelport; modelport.completion('openai/m', [{'role': 'user', 'content': 'hi'}],"
            f" api_base='{BASE}', num_retries=0)"
        )
        - bare
    )
    return out


BASE = ""


def _http_client_connection() -> Tuple[Any, str]:
    """A kept-alive ``http.client`` connection to the upstream and its base path: the
    standard library's HTTP, which modelport's sync transport uses for plain http://."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(BASE)
    return http.client.HTTPConnection(parts.hostname or "", parts.port), parts.path


def _client_via_httpx() -> Any:
    """A modelport client whose sync transport sends everything through httpx (as it
    does for https://): what the figures are for a remote provider's stack."""
    import modelport
    from modelport.transport import SyncHTTPTransport

    return modelport.Client(api_base=BASE, transport=SyncHTTPTransport(fast_http=False))


def sequential_calls(calls: int, repeat: int) -> Dict[str, float]:
    import httpx

    import modelport

    url = f"{BASE}/chat/completions"
    body = {"model": "bench", "messages": MESSAGES}
    raw = httpx.Client()
    client = modelport.Client(api_base=BASE)

    def run_raw() -> None:
        for _ in range(calls):
            raw.post(url, json=body).json()

    def run_modelport() -> None:
        for _ in range(calls):
            client.completion("openai/bench", MESSAGES)

    via_httpx = _client_via_httpx()

    def run_modelport_httpx() -> None:
        for _ in range(calls):
            via_httpx.completion("openai/bench", MESSAGES)

    connection, path = _http_client_connection()
    payload = json.dumps(body).encode()

    def run_http_client() -> None:
        for _ in range(calls):
            connection.request("POST", path + "/chat/completions", payload, {"Content-Type": "application/json"})
            json.loads(connection.getresponse().read())

    runs: Dict[str, Callable[[], None]] = {
        "raw httpx": run_raw, "raw http.client": run_http_client, "modelport": run_modelport, "modelport, all on httpx": run_modelport_httpx,
    }  # fmt: skip
    try:
        import openai

        sdk = openai.OpenAI(base_url=BASE, api_key="x", max_retries=0)

        def run_sdk() -> None:
            for _ in range(calls):
                sdk.chat.completions.create(model="bench", messages=MESSAGES)  # type: ignore[arg-type]

        runs["openai SDK"] = run_sdk
    except ImportError:
        pass
    try:
        import litellm

        def run_litellm() -> None:
            for _ in range(calls):
                litellm.completion(model="openai/bench", messages=MESSAGES, api_base=BASE, api_key="x")

        runs["LiteLLM"] = run_litellm
    except ImportError:
        pass
    for run in runs.values():  # warm up connections and plugin loading
        run()
    return {name: t / calls for name, t in interleaved(runs, repeat).items()}


def streaming(streams: int, repeat: int) -> Dict[str, float]:
    import httpx

    import modelport

    url = f"{BASE}/chat/completions"
    body = {"model": "bench", "messages": MESSAGES, "stream": True}
    raw = httpx.Client()
    client = modelport.Client(api_base=BASE)
    loads = json.loads

    def run_raw() -> None:
        for _ in range(streams):
            with raw.stream("POST", url, json=body) as response:
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: [DONE]":
                        loads(line[6:])

    def run_modelport() -> None:
        for _ in range(streams):
            for _chunk in client.completion("openai/bench", MESSAGES, stream=True):
                pass

    via_httpx = _client_via_httpx()

    def run_modelport_httpx() -> None:
        for _ in range(streams):
            for _chunk in via_httpx.completion("openai/bench", MESSAGES, stream=True):
                pass

    connection, path = _http_client_connection()
    payload = json.dumps(body).encode()

    def run_http_client() -> None:
        for _ in range(streams):
            connection.request("POST", path + "/chat/completions", payload, {"Content-Type": "application/json"})
            for line in connection.getresponse():
                if line.startswith(b"data: ") and line != b"data: [DONE]\n":
                    loads(line[6:])

    per_chunk = streams * (CHUNKS + 1)
    runs: Dict[str, Callable[[], None]] = {
        "raw httpx + json.loads": run_raw, "raw http.client + json.loads": run_http_client, "modelport": run_modelport,
        "modelport, all on httpx": run_modelport_httpx,
    }  # fmt: skip
    try:
        import openai

        sdk = openai.OpenAI(base_url=BASE, api_key="x", max_retries=0)

        def run_sdk() -> None:
            for _ in range(streams):
                for _chunk in sdk.chat.completions.create(model="bench", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
                    pass

        runs["openai SDK"] = run_sdk
    except ImportError:
        pass
    try:
        import litellm

        def run_litellm() -> None:
            for _ in range(streams):
                for _chunk in litellm.completion(model="openai/bench", messages=MESSAGES, api_base=BASE, api_key="x", stream=True):
                    pass

        runs["LiteLLM"] = run_litellm
    except ImportError:
        pass
    for run in runs.values():
        run()
    return {name: t / per_chunk for name, t in interleaved(runs, repeat).items()}


def provider_streams(streams: int, repeat: int) -> Dict[str, float]:
    """Per-chunk cost of the non-OpenAI wires (Ollama's NDJSON, Anthropic's typed SSE
    events) through their plugins, against raw httpx + json.loads on the same bytes."""
    import httpx

    import modelport

    root = BASE.rsplit("/v1", 1)[0]
    raw = httpx.Client()
    client = modelport.Client()
    loads = json.loads
    installed = {row.name for row in modelport.providers(load=False)}

    def raw_lines(url: str, prefix: str) -> Callable[[], None]:
        def run() -> None:
            for _ in range(streams):
                with raw.stream("POST", url, json={"model": "bench", "stream": True}) as response:
                    for line in response.iter_lines():
                        if line.startswith(prefix):
                            loads(line[len(prefix) :])

        return run

    def through(model: str, **kwargs: Any) -> Callable[[], None]:
        def run() -> None:
            for _ in range(streams):
                for _chunk in client.completion(model, MESSAGES, stream=True, **kwargs):
                    pass

        return run

    connection, _ = _http_client_connection()

    def client_lines(path: str, prefix: bytes) -> Callable[[], None]:
        def run() -> None:
            for _ in range(streams):
                connection.request("POST", path, b'{"model": "bench", "stream": true}', {"Content-Type": "application/json"})
                for line in connection.getresponse():
                    if line.startswith(prefix) and line.strip():
                        loads(line[len(prefix) :])

        return run

    runs: Dict[str, Callable[[], None]] = {}
    if "ollama" in installed:
        runs["ndjson: raw httpx + json.loads"] = raw_lines(f"{root}/api/chat", "")
        runs["ndjson: raw http.client + json.loads"] = client_lines("/api/chat", b"")
        runs["ndjson: modelport ollama/"] = through("ollama/bench", api_base=root)
    if "anthropic" in installed:
        runs["anthropic: raw httpx + json.loads"] = raw_lines(f"{root}/v1/messages", "data: ")
        runs["anthropic: raw http.client + json.loads"] = client_lines("/v1/messages", b"data: ")
        runs["anthropic: modelport anthropic/"] = through("anthropic/bench", api_base=root, api_key="x", max_tokens=10)
    for run in runs.values():
        run()
    return {name: t / (streams * (CHUNKS + 1)) for name, t in interleaved(runs, repeat).items()}


def sse_framing(repeat: int) -> Dict[str, float]:
    """Framing alone, no network: the canned stream fed event by event, as reads arrive."""
    from modelport import SSEDecoder

    events = _canned()["events"]
    loads = json.loads

    def run_modelport() -> None:
        decoder = SSEDecoder()
        for piece in events:
            for event in decoder.feed(piece):
                if event.data != "[DONE]":
                    loads(event.data)

    runs: Dict[str, Callable[[], None]] = {"modelport SSEDecoder + json.loads": run_modelport}
    try:
        import httpx
        import httpx_sse

        def run_httpx_sse() -> None:
            response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=iter(events))
            for event in httpx_sse.EventSource(response).iter_sse():
                if event.data != "[DONE]":
                    loads(event.data)

        runs["httpx-sse + json.loads"] = run_httpx_sse
    except ImportError:
        pass
    return {name: t / len(events) for name, t in interleaved(runs, repeat).items()}


def concurrency(total: int, width: int, rounds: int) -> Dict[str, float]:
    """Requests per second with ``width`` calls in flight, ``total`` calls a round; the
    clients take turns for ``rounds`` rounds on one event loop and the best round counts."""
    import aiohttp
    import httpx

    import modelport

    url = f"{BASE}/chat/completions"
    body = {"model": "bench", "messages": MESSAGES}

    async def drive(one: Callable[[], Any]) -> float:
        queue = iter(range(total))

        async def worker() -> None:
            for _ in queue:
                await one()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(width)))
        return total / (time.perf_counter() - start)

    async def main() -> Dict[str, float]:
        async with aiohttp.ClientSession() as session, httpx.AsyncClient(
            limits=httpx.Limits(max_connections=width)
        ) as hsession, modelport.AsyncClient(api_base=BASE) as client:

            async def raw_aiohttp() -> None:
                async with session.post(url, json=body) as response:
                    await response.json()

            async def raw_httpx() -> None:
                (await hsession.post(url, json=body)).json()

            async def with_modelport() -> None:
                await client.completion("openai/bench", MESSAGES)

            runs = {"raw aiohttp": raw_aiohttp, "raw httpx.AsyncClient": raw_httpx, "modelport AsyncClient": with_modelport}
            best = {name: 0.0 for name in runs}
            for one in runs.values():  # warm-up: open the connections
                await drive(one)
            for _ in range(rounds):
                for name, one in runs.items():
                    best[name] = max(best[name], await drive(one))
            return best

    return asyncio.run(main())


def _byte_compile(*modules: str) -> None:
    """Byte-compile these modules' sources, as ``pip install`` does for an installed
    distribution (LiteLLM's included): an editable checkout run with
    PYTHONDONTWRITEBYTECODE=1 would otherwise compile them again in every interpreter."""
    import compileall
    import importlib.util

    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        if spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=1)
        else:
            compileall.compile_file(spec.origin, quiet=1)


def cold_start(rounds: int, litellm_python: Optional[str]) -> Dict[str, float]:
    """``import X`` plus one chat call, in a fresh interpreter, timed inside it (so the
    interpreter's own start is left out), median of ``rounds``."""
    call = "r = {mod}.completion(model='openai/bench', messages=[{{'role': 'user', 'content': 'hi'}}], api_base='{base}', api_key='x')"
    template = "import time; t = time.perf_counter(); import {mod}; " + call + "; print(time.perf_counter() - t)"

    def timed(python: str, module: str) -> float:
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}  # LiteLLM would fetch its price list
        code = template.format(mod=module, base=BASE)
        samples = [float(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True, env=env).stdout) for _ in range(rounds)]
        return statistics.median(samples)

    _byte_compile("modelport", "modelport_openai_compat")
    out = {"modelport": timed(sys.executable, "modelport")}
    if litellm_python:
        out["LiteLLM"] = timed(litellm_python, "litellm")
    return out


def _wait_for(url: str, process: "subprocess.Popen[bytes]", seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_gateway(config_text: str, processes: List[Any]) -> str:
    """``modelport serve`` of ``config_text`` in its own folder: its base URL."""
    folder = tempfile.mkdtemp()
    config = os.path.join(folder, "gateway.yaml")
    with open(config, "w") as handle:
        handle.write(config_text)
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "modelport", "serve", "--config", config, "--port", str(port), "--no-access-log", "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    processes.append(process)
    base = f"http://127.0.0.1:{port}"
    _wait_for(f"{base}/health", process)
    return base


def _virtual_key(base: str) -> str:
    import httpx

    reply = httpx.post(f"{base}/key/generate", json={"key_alias": f"bench-{os.getpid()}-{time.time_ns()}", "rpm_limit": 10**9, "max_budget": 10**9}, headers={"Authorization": "Bearer sk-bench"})
    reply.raise_for_status()
    return str(reply.json()["key"])


#: Median latency of each modelport gateway variant with one request in flight (filled by ``gateway``).
SINGLE_LATENCY: Dict[str, float] = {}


def gateway(total: int, width: int, rounds: int, litellm_python: Optional[str]) -> Dict[str, Tuple[float, float]]:
    """(requests per second, median latency) through each gateway at ``width`` in flight
    (best round), and straight to the upstream. Each gateway is one process with its
    defaults (limits on). Variants: the master key (no key lookup, no spend), a virtual key
    with spend and rate limits on the embedded SQLite, and the same on PostgreSQL + Redis
    when ``MODELPORT_TEST_POSTGRES_URL`` / ``MODELPORT_TEST_REDIS_URL`` name them."""
    import aiohttp

    deployment = f"model_list:\n  - model_name: bench\n    litellm_params: {{model: openai/bench, api_base: '{BASE}', api_key: x}}\n"
    processes: List[Any] = []
    targets: Dict[str, Tuple[str, str]] = {"upstream, direct": (f"{BASE}/chat/completions", "sk-bench")}
    try:
        base = _serve_gateway(deployment + "general_settings: {master_key: sk-bench}\n", processes)
        targets["modelport gateway"] = (f"{base}/v1/chat/completions", "sk-bench")
        quiet = _serve_gateway(deployment + "general_settings: {master_key: sk-bench, metrics: false}\n", processes)
        targets["modelport gateway, metrics off"] = (f"{quiet}/v1/chat/completions", "sk-bench")
        targets["modelport, virtual key (SQLite)"] = (f"{base}/v1/chat/completions", _virtual_key(base))
        postgres, redis = os.environ.get("MODELPORT_TEST_POSTGRES_URL"), os.environ.get("MODELPORT_TEST_REDIS_URL")
        if postgres and redis:
            shared = _serve_gateway(
                deployment + f"router_settings: {{redis_url: '{redis}', redis_key_prefix: 'bench{os.getpid()}:'}}\n"
                f"general_settings: {{master_key: sk-bench, database_url: '{postgres}'}}\n",
                processes,
            )
            targets["modelport, virtual key (Postgres+Redis)"] = (f"{shared}/v1/chat/completions", _virtual_key(shared))
        if litellm_python:
            lport = _free_port()
            config = os.path.join(tempfile.mkdtemp(), "litellm.yaml")
            with open(config, "w") as handle:  # the same deployment, master key and no database
                handle.write(deployment + "general_settings: {master_key: sk-bench}\n")
            env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
            ll = subprocess.Popen([litellm_python, "-m", "litellm.proxy.proxy_cli", "--config", config, "--port", str(lport), "--num_workers", "1"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)  # fmt: skip
            processes.append(ll)
            _wait_for(f"http://127.0.0.1:{lport}/health/liveliness", ll)
            targets["LiteLLM proxy"] = (f"http://127.0.0.1:{lport}/v1/chat/completions", "sk-bench")
        body = {"model": "bench", "messages": MESSAGES}

        async def main() -> Dict[str, Tuple[float, float]]:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=width)) as session:

                async def drive(url: str, key: str) -> Tuple[float, float]:
                    queue = iter(range(total))
                    headers = {"Authorization": f"Bearer {key}"}
                    latencies: List[float] = []

                    async def worker() -> None:
                        for _ in queue:
                            sent = time.perf_counter()
                            async with session.post(url, json=body, headers=headers) as response:
                                assert response.status == 200, await response.text()
                                await response.read()
                            latencies.append(time.perf_counter() - sent)

                    start = time.perf_counter()
                    await asyncio.gather(*(worker() for _ in range(width)))
                    return total / (time.perf_counter() - start), statistics.median(latencies)

                async def one_at_a_time(url: str, key: str, calls: int = 300) -> float:
                    """Median latency with one request in flight: what a call adds, without queueing."""
                    headers = {"Authorization": f"Bearer {key}"}
                    latencies = []
                    for _ in range(calls):
                        sent = time.perf_counter()
                        async with session.post(url, json=body, headers=headers) as response:
                            await response.read()
                        latencies.append(time.perf_counter() - sent)
                    return statistics.median(latencies)

                for name, (url, key) in targets.items():
                    if name.startswith("modelport"):
                        SINGLE_LATENCY[name] = min([await one_at_a_time(url, key), await one_at_a_time(url, key)])
                best = {name: (0.0, 0.0) for name in targets}
                for url, key in targets.values():
                    await drive(url, key)  # warm-up
                for _ in range(rounds):
                    for name, (url, key) in targets.items():
                        rate, median = await drive(url, key)
                        if rate > best[name][0]:
                            best[name] = (rate, median)
                return best

        return asyncio.run(main())
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


def report(title: str, figures: Dict[str, float], base: Optional[str], unit: str, scale: float, higher_is_better: bool = False) -> None:
    print(f"\n## {title}")
    reference = figures.get(base) if base else None
    for name, value in figures.items():
        ratio = f"  {value / reference:5.2f}x {base}" if reference else ""
        print(f"  {name:<32} {value * scale:10.1f} {unit}{ratio}")


def main() -> None:
    global BASE
    parser = argparse.ArgumentParser()
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--litellm-python", help="a Python with litellm[proxy] installed: adds LiteLLM's cold start and proxy")
    parser.add_argument("--only", choices=("calls", "gateway"), help="run one part: the client sections or the gateway")
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        BASE = f"http://127.0.0.1:{port}/v1"
        os.environ.setdefault("OPENAI_API_KEY", "x")
        quick = args.quick
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; upstream {BASE}")
        from modelport import registry

        middleware = [name for name, _ in registry.middleware()]
        if middleware:
            print(f"note: middleware installed and active in every call: {', '.join(middleware)}")
        if args.only != "gateway":
            report("import time above a bare interpreter (median)", import_times(3 if quick else 9), None, "ms", 1e3)
            calls = sequential_calls(100, 5 if quick else 25)  # many short turns: a slow moment hits one turn, not a client
            report("sequential non-streaming call", calls, "raw httpx", "us/call", 1e6)
            print(f"  (modelport over raw http.client, the stack it uses for http://: {calls['modelport'] / calls['raw http.client']:.2f}x)")
            streams = streaming(3, 3 if quick else 12)
            report(f"streaming, {CHUNKS}-chunk streams", streams, "raw httpx + json.loads", "us/chunk", 1e6)
            print(f"  (modelport over raw http.client + json.loads: {streams['modelport'] / streams['raw http.client + json.loads']:.2f}x)")
            report("SSE framing alone (no network)", sse_framing(5 if quick else 20), "modelport SSEDecoder + json.loads", "us/event", 1e6)
            wires = provider_streams(3, 3 if quick else 12)
            print(f"\n## other wires, {CHUNKS}-chunk streams (per chunk; ratios against raw httpx / raw http.client + json.loads on the same bytes)")
            for name, value in wires.items():
                wire = name.split(":")[0]
                base, stdlib = wires.get(f"{wire}: raw httpx + json.loads"), wires.get(f"{wire}: raw http.client + json.loads")
                ratios = f"{value / base:5.2f}x httpx  {value / stdlib:5.2f}x http.client" if base and stdlib else ""
                print(f"  {name:<40} {value * 1e6:8.1f} us/chunk  {ratios}")
            figures = concurrency(500 if quick else 1500, 64, 2 if quick else 4)
            print("\n## 64 concurrent async calls")
            for name, value in figures.items():
                print(f"  {name:<32} {value:10.0f} req/s  {value / figures['raw aiohttp']:5.2f}x raw aiohttp")
            cold = cold_start(3 if quick else 7, args.litellm_python)
            print("\n## cold start: import + first chat call, in a fresh interpreter (median)")
            for name, value in cold.items():
                ratio = f"  1/{cold['LiteLLM'] / value:.1f} of LiteLLM" if "LiteLLM" in cold and name != "LiteLLM" else ""
                print(f"  {name:<32} {value * 1e3:10.1f} ms{ratio}")
        if args.only != "calls":
            figures = gateway(1000 if quick else 3000, 32, 2 if quick else 3, args.litellm_python)
            print("\n## gateway, 32 requests in flight (one process each, limits on; req/s, median latency)")
            litellm = figures.get("LiteLLM proxy", (0.0, 0.0))[0]
            for name, (rate, median) in figures.items():
                extra = f"  {rate / litellm:5.1f}x LiteLLM proxy" if litellm else ""
                share = f"  {rate / figures['upstream, direct'][0]:4.2f} of direct"
                print(f"  {name:<40} {rate:8.0f} req/s {median * 1e3:7.2f} ms{share}{extra}")
            if SINGLE_LATENCY:
                print("  median latency with one request in flight:")
                for name, value in SINGLE_LATENCY.items():
                    print(f"    {name:<38} {value * 1e3:7.3f} ms")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
