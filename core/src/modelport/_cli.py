"""The ``modelport`` command: chat, providers, demo (and what plugins add).

Exit codes: 0 success, 1 an error from the provider or the network, 2 a usage or
configuration error. Keys are never printed: ``--dry-run`` redacts them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence

from ._wire import redact_headers
from .errors import ConfigError, InvalidRequestError, ModelportError

__all__ = ["main"]


def _parse_option(text: str) -> Any:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key, parsed


def _add_connection_args(parser: argparse.ArgumentParser, option_flags: Sequence[str] = ("-o", "--option")) -> None:
    parser.add_argument("-m", "--model", required=True, help="provider/model, e.g. openai/gpt-4o-mini")
    parser.add_argument("--api-base", help="base URL of the provider's API (with /v1 where it has one)")
    parser.add_argument("--api-key", help="API key (prefer the provider's environment variable)")
    parser.add_argument(
        *option_flags,
        dest="option",
        action="append",
        type=_parse_option,
        default=[],
        metavar="KEY=VALUE",
        help="extra call argument, value parsed as JSON when it can be (e.g. -o region=us -o top_k=20)",
    )
    parser.add_argument("--timeout", type=float, help="seconds to wait for the provider")
    parser.add_argument("--config", help="YAML or TOML config: its model aliases become valid -m values")
    parser.add_argument("--dry-run", action="store_true", help="print the HTTP request (key redacted) and exit")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelport", description="One OpenAI-shaped API over LLM providers.")
    sub = parser.add_subparsers(dest="command", required=True)

    chat = sub.add_parser("chat", help="send a prompt and stream the answer to the terminal")
    _add_connection_args(chat)
    chat.add_argument("prompt", help="the user message ('-' reads standard input)")
    chat.add_argument("-s", "--system", help="system prompt")
    chat.add_argument("-t", "--temperature", type=float)
    chat.add_argument("--max-tokens", type=int)
    chat.add_argument("--no-stream", action="store_true", help="wait for the whole answer")

    listing = sub.add_parser("providers", help="list installed providers")
    listing.add_argument("--json", action="store_true", help="machine-readable output")

    image = sub.add_parser("image", help="generate an image, show the task's progress, save the file(s)")
    _add_connection_args(image, option_flags=("--option",))
    image.add_argument("prompt")
    image.add_argument("-o", "--output", default="image.png", help="file to write (several images: NAME-2.png, ...) or a directory")
    image.add_argument("--size", help="e.g. 1024x1024")
    image.add_argument("--negative-prompt")
    image.add_argument("--seed", type=int)
    image.add_argument("--steps", type=int)
    image.add_argument("--guidance", type=float)
    image.add_argument("--image-url", help="input image for image-to-image models")
    image.add_argument("--poll-interval", type=float, help="seconds between task polls")
    image.add_argument("--task-timeout", type=float, help="seconds the whole task may take")

    serve = sub.add_parser("serve", help="run the OpenAI-compatible gateway for a config file")
    serve.add_argument("--config", required=True, help="YAML or TOML config (model_list, router_settings, ...)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4000)

    demo = sub.add_parser("demo", help="stream a chat from a local OpenAI-compatible server this command starts")
    demo.add_argument("prompt", nargs="?", default="Hello from modelport!")
    return parser


def _chat_arguments(args: argparse.Namespace) -> Dict[str, Any]:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    messages: List[Dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": prompt})
    kwargs: Dict[str, Any] = {"messages": messages}
    if args.temperature is not None:
        kwargs["temperature"] = args.temperature
    if args.max_tokens is not None:
        kwargs["max_tokens"] = args.max_tokens
    if not args.no_stream:
        kwargs["stream"] = True
    return kwargs


def _connection(args: argparse.Namespace) -> Dict[str, Any]:
    kwargs: Dict[str, Any] = dict(args.option)
    if args.api_base:
        kwargs["api_base"] = args.api_base
    if args.api_key:
        kwargs["api_key"] = args.api_key
    if args.timeout is not None:
        kwargs["timeout"] = args.timeout
    return kwargs


def _client(args: argparse.Namespace) -> Any:
    from ._client import Client

    return Client.from_config(args.config) if getattr(args, "config", None) else Client()


def print_dry_run(client: Any, operation: str, model: str, kwargs: Dict[str, Any]) -> None:
    request = client.build_request(operation, model, **kwargs)
    print(f"{request.method} {request.url}")
    for key, value in redact_headers(request.headers).items():
        print(f"{key}: {value}")
    print()
    if request.json is not None:
        print(json.dumps(request.json, indent=2, ensure_ascii=False))
    elif request.data is not None or request.files:
        print(json.dumps({"form": request.data, "files": sorted(request.files or {})}, indent=2))


def _run_chat(args: argparse.Namespace) -> int:
    client = _client(args)
    kwargs = {**_chat_arguments(args), **_connection(args)}
    if args.dry_run:
        print_dry_run(client, "chat", args.model, kwargs)
        return 0
    messages = kwargs.pop("messages")
    result = client.completion(args.model, messages, **kwargs)
    if kwargs.get("stream"):
        usage = None
        with result as stream:
            for chunk in stream:
                for choice in chunk.choices or ():
                    text = choice.delta.content if choice.delta else None
                    if text:
                        sys.stdout.write(text)
                        sys.stdout.flush()
                if chunk.usage:
                    usage = chunk.usage
        sys.stdout.write("\n")
        if usage:
            print(f"[{usage.prompt_tokens} prompt + {usage.completion_tokens} completion tokens]", file=sys.stderr)
    else:
        print(result.choices[0].message.text)
    return 0


def _run_providers(args: argparse.Namespace) -> int:
    from ._client import providers

    rows = providers()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "distribution": r.distribution,
                        "version": r.version,
                        "operations": list(r.operations),
                        "error": r.error,
                    }
                    for r in rows
                ],
                indent=2,
            )
        )
        return 0
    if not rows:
        print("no providers installed: pip install modelport-openai-compat (or another modelport-<provider>)")
        return 0
    width = max(len(r.name) for r in rows)
    dist_width = max(len(f"{r.distribution} {r.version}") for r in rows)
    for row in rows:
        what = ", ".join(row.operations) if row.info else f"FAILED TO LOAD: {row.error}"
        print(f"{row.name:<{width}}  {(row.distribution + ' ' + row.version).strip():<{dist_width}}  {what}")
    return 1 if any(r.error for r in rows) else 0


def _run_demo(args: argparse.Namespace) -> int:
    from .testing.upstream import FakeUpstream

    with FakeUpstream() as upstream:
        print(f"[demo] local OpenAI-compatible server on {upstream.base_url}; streaming through modelport:", file=sys.stderr)
        namespace = argparse.Namespace(
            model="openai/demo-echo",
            prompt=args.prompt,
            system=None,
            temperature=None,
            max_tokens=None,
            no_stream=False,
            dry_run=False,
            option=[("stream_options", {"include_usage": True}), ("api_base", upstream.base_url)],
            api_base=None,
            api_key=None,
            timeout=30.0,
            config=None,
        )
        return _run_chat(namespace)


def _run_image(args: argparse.Namespace) -> int:
    import time

    from . import save_images

    client = _client(args)
    kwargs = _connection(args)
    for name in ("size", "negative_prompt", "seed", "steps", "guidance", "image_url", "poll_interval", "task_timeout"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    if args.dry_run:
        print_dry_run(client, "image_generation", args.model, {"prompt": args.prompt, **kwargs})
        return 0
    started = time.monotonic()
    interactive = sys.stderr.isatty()

    def progress(status: str, elapsed: float) -> None:
        line = f"[modelport] image task {status.lower()}, {elapsed:.1f}s elapsed"
        print(f"\r{line}" if interactive else line, end="" if interactive else "\n", file=sys.stderr, flush=True)

    result = client.image_generation(args.model, args.prompt, on_progress=progress, **kwargs)
    if interactive:
        print(file=sys.stderr)
    print(f"[modelport] image task done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    for path in save_images(result, args.output):
        print(path)
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401

        from .server import serve
    except ImportError:
        print("modelport: error: the gateway needs its extra: pip install 'modelport[server]'", file=sys.stderr)
        return 2
    serve(args.config, host=args.host, port=args.port)
    return 0


_COMMANDS = {"chat": _run_chat, "providers": _run_providers, "demo": _run_demo, "image": _run_image, "serve": _run_serve}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (ConfigError, InvalidRequestError) as exc:
        print(f"modelport: error: {exc}", file=sys.stderr)
        return 2
    except ModelportError as exc:
        print(f"modelport: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
