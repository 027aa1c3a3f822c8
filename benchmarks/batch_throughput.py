"""`modelport batch` against an upstream of fixed capacity: how much of it does a run use?

    python benchmarks/batch_throughput.py                      # capacity 16, 100 ms per request
    python benchmarks/batch_throughput.py --capacity 8 16 32 64 --seconds 5 --repeat 3

The upstream (aiohttp, in its own process) serves at most C requests at once, each for a
fixed service time (20 ms by default); more wait in line. Its capacity is C / service
requests per second. `modelport batch` runs at ``--concurrency C`` on a generated chat
file sized for about ``--seconds`` of work, and its own summary gives the requests/s of
the request phase (interpreter start-up excluded). The figure reported is that rate as a
share of the upstream's capacity (target: >= 90%); the best of ``--repeat`` runs is kept,
as the machine is shared. Interleaved with those runs, a raw aiohttp client posts the same
bodies at the same concurrency and writes nothing: its share is what the machine allowed
at that moment (on a loaded 2-core machine neither reaches the capacity).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List

ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "bench",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there", "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7},
}).encode()  # fmt: skip


def serve(capacity: int, service: float) -> None:
    """The upstream: prints its port, then serves until stdin closes; at exit prints the
    most requests it held at once."""
    from aiohttp import web

    slots = asyncio.Semaphore(capacity)
    state = {"in_flight": 0, "max": 0, "served": 0}

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        async with slots:
            state["in_flight"] += 1
            state["max"] = max(state["max"], state["in_flight"])
            await asyncio.sleep(service)
            state["in_flight"] -= 1
            state["served"] += 1
        return web.Response(body=ANSWER, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)
        print(json.dumps(state), flush=True)
        await runner.cleanup()

    asyncio.run(main())


def baseline_client(port: int, concurrency: int, source: str) -> None:
    """Raw aiohttp posting the same bodies at the same concurrency, writing nothing: what
    this machine allows at the moment (prints requests/s of its request phase)."""
    import aiohttp

    with open(source) as handle:
        bodies = [json.loads(line)["body"] for line in handle]
    for body in bodies:
        body["model"] = "bench"
    url = f"http://127.0.0.1:{port}/v1/chat/completions"

    async def main() -> float:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency * 2)) as session:
            slots = asyncio.Semaphore(concurrency)

            async def one(body: Dict[str, Any]) -> None:
                async with slots:
                    async with session.post(url, json=body, headers={"Authorization": "Bearer bench"}) as response:
                        json.loads(await response.read())

            started = time.monotonic()
            await asyncio.gather(*(one(b) for b in bodies))
            return len(bodies) / (time.monotonic() - started)

    print(json.dumps({"requests_per_second": asyncio.run(main())}))


def run_once(capacity: int, service: float, seconds: float, workdir: str, baseline: bool = False) -> Dict[str, Any]:
    lines = max(capacity * 10, int(seconds * capacity / service))
    source = os.path.join(workdir, f"in-{capacity}.jsonl")
    out = os.path.join(workdir, f"out-{capacity}-{time.monotonic_ns()}.jsonl")
    with open(source, "w") as handle:
        for i in range(lines):
            body = {"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": f"request {i}"}]}
            handle.write(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n")
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(capacity), str(service)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        if baseline:
            command = [sys.executable, __file__, "--baseline-client", str(port), str(capacity), source]
        else:
            command = [sys.executable, "-m", "modelport", "batch", source, "-o", out, "--concurrency", str(capacity),
                       "--api-base", f"http://127.0.0.1:{port}/v1", "--api-key", "bench", "--progress", "none", "--json-summary"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            raise SystemExit(f"modelport batch failed ({result.returncode}):\n{result.stderr}")
        server.stdin.close()
        upstream = json.loads(server.stdout.readline())
    finally:
        server.wait(30)
        if os.path.exists(out):
            os.unlink(out)
    summary = json.loads(result.stdout)
    capacity_rps = capacity / service
    return {
        "capacity": capacity,
        "lines": lines,
        "requests_per_second": summary["requests_per_second"],
        "capacity_rps": capacity_rps,
        "share": summary["requests_per_second"] / capacity_rps,
        "upstream_max_in_flight": upstream["max"],
    }


def main(argv: List[str]) -> int:
    if argv[:1] == ["--serve"]:
        serve(int(argv[1]), float(argv[2]))
        return 0
    if argv[:1] == ["--baseline-client"]:
        baseline_client(int(argv[1]), int(argv[2]), argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capacity", type=int, nargs="+", default=[16], help="requests the upstream serves at once (and the run's concurrency)")
    # 100 ms: still far below a real model call, and long enough that one loopback round
    # trip per request (which no client avoids at a concurrency equal to the capacity; raw
    # aiohttp loses about 10% of a 20 ms service time to it) does not decide the figure.
    parser.add_argument("--service-ms", type=float, default=100.0, help="service time per request")
    parser.add_argument("--seconds", type=float, default=5.0, help="about how long each run lasts")
    parser.add_argument("--repeat", type=int, default=3, help="runs per capacity; the best is reported")
    parser.add_argument("--target", type=float, default=0.9, help="share of capacity to reach")
    parser.add_argument("--no-baseline", dest="baseline", action="store_false", help="skip the raw aiohttp runs")
    args = parser.parse_args(argv)
    service = args.service_ms / 1000
    failed = False
    print(f"{'C':>4} {'capacity':>10} {'batch':>10} {'share':>7} {'raw aiohttp':>12} {'share':>7}  batch runs / raw runs")
    with tempfile.TemporaryDirectory() as workdir:
        for capacity in args.capacity:
            runs: List[Dict[str, Any]] = []
            raws: List[Dict[str, Any]] = []
            for _ in range(args.repeat):  # interleaved: both see the same machine
                runs.append(run_once(capacity, service, args.seconds, workdir))
                if args.baseline:
                    raws.append(run_once(capacity, service, args.seconds, workdir, baseline=True))
            best = max(runs, key=lambda r: r["share"])
            raw = max(raws, key=lambda r: r["share"]) if raws else None
            shares = " ".join(f"{r['share']:.0%}" for r in runs) + (" / " + " ".join(f"{r['share']:.0%}" for r in raws) if raws else "")
            raw_text = f"{raw['requests_per_second']:>10.0f}/s {raw['share']:>7.1%}" if raw else f"{'-':>12} {'-':>7}"
            print(
                f"{capacity:>4} {best['capacity_rps']:>8.0f}/s {best['requests_per_second']:>8.0f}/s {best['share']:>7.1%}"
                f" {raw_text}  {shares}",
                flush=True,
            )
            failed = failed or best["share"] < args.target
    print(f"target: >= {args.target:.0%} of capacity" + ("" if not failed else " -- NOT MET"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
