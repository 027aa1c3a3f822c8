"""The ``modelport`` command: chat, image, providers, serve, demo, new-provider, and
what plugins add through the ``cli_commands`` hook.

Exit codes: 0 success, 1 an error from the provider or the network, 2 a usage or
configuration error. Keys are never printed: ``--dry-run`` redacts them, and every
secret a provider declares.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

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


def _build_parser() -> Tuple[argparse.ArgumentParser, Any]:
    parser = argparse.ArgumentParser(prog="modelport", description="One OpenAI-shaped API over LLM providers.")
    parser.add_argument("--version", action="version", version=f"modelport {_version()}")
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

    image = sub.add_parser(
        "image", help="generate an image, show the task's progress, save the file(s)",
        epilog="For a file of prompts: modelport image --prompts FILE --out DIR -m MODEL (see `modelport images --help`).",
    )  # fmt: skip
    _add_connection_args(image, option_flags=("--option",))
    image.add_argument("prompt")
    image.add_argument("-o", "--output", default="image.png", help="file to write (several images: NAME-2.png, ...) or a directory")
    image.add_argument("--size", help="e.g. 1024x1024")
    image.add_argument("-n", type=int, dest="n", help="number of images")
    image.add_argument("--seed", type=int)
    image.add_argument("--poll-interval", type=float, help="seconds between polls of an asynchronous image task")
    image.add_argument("--task-timeout", type=float, help="seconds an asynchronous image task may take in all")

    serve = sub.add_parser("serve", help="run the OpenAI-compatible gateway for a config file")
    serve.add_argument("--config", required=True, help="YAML or TOML config (model_list, router_settings, ...)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 for all)")
    serve.add_argument("--port", type=int, default=4000)
    serve.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    serve.add_argument("--no-access-log", action="store_true", help="do not log one line per request")
    serve.add_argument("--log-format", default="text", choices=("text", "json"))
    serve.add_argument("--limit-concurrency", type=int, default=4096, help="connections served at once; more are answered 503")
    serve.add_argument("--timeout-keep-alive", type=int, default=5, help="seconds an idle kept-alive connection stays open")
    serve.add_argument("--workers", type=int, default=1, help="processes serving one port (share limits and routing through Redis)")

    demo = sub.add_parser("demo", help="stream a chat from a local OpenAI-compatible server this command starts")
    demo.add_argument("prompt", nargs="?", default="Hello from modelport!")

    scaffold = sub.add_parser("new-provider", help="create a provider plugin distribution (code, fake upstream, tests)")
    scaffold.add_argument("name", help="provider name, e.g. acme (model strings become acme/<model>)")
    scaffold.add_argument("--wire", choices=("openai", "sse", "ndjson"), default="openai", help="what the upstream speaks")
    scaffold.add_argument("-d", "--directory", default=".", help="where to create modelport-<name>/")
    return parser, sub


def _version() -> str:
    from . import __version__

    return __version__


#: Core commands that never need a plugin's CLI additions (so they start without loading any).
_PLUGIN_FREE = {"providers", "serve", "demo", "new-provider", "models"}


def _plugin_extensions() -> List[Any]:
    """What installed provider plugins add to the CLI (a broken plugin is skipped: `providers` reports it)."""
    from ._registry import registry

    found: List[Any] = []
    seen: Set[int] = set()
    for name in registry.names():
        try:
            hooks = registry.hooks(name)
        except ModelportError:
            continue
        if id(hooks.plugin) in seen:  # a plugin serving several names (aliases) adds once
            continue
        seen.add(id(hooks.plugin))
        found.extend(hooks.cli_commands())
    return found


def _extend(sub: Any, extensions: List[Any]) -> Dict[str, Any]:
    """Add plugin commands and options to the subcommands; the new commands' runners by name."""
    from .provider import CliCommand, CliOptions

    runners: Dict[str, Any] = {}
    for item in extensions:
        if isinstance(item, CliCommand) and item.name not in sub.choices:
            command = sub.add_parser(item.name, help=item.help)
            item.add_arguments(command)
            runners[item.name] = item.run
        elif isinstance(item, CliOptions) and item.command in sub.choices:
            target = sub.choices[item.command]
            group = target.add_argument_group(item.title) if item.title else target
            try:
                item.add_arguments(group)
            except argparse.ArgumentError as exc:  # two plugins claiming one flag: the first keeps it
                import warnings

                warnings.warn(f"a plugin's option for `modelport {item.command}` was skipped: {exc}", RuntimeWarning, stacklevel=2)
    return runners


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
    from .client import Client

    return Client.from_config(args.config) if getattr(args, "config", None) else Client()


def print_dry_run(client: Any, operation: str, model: str, kwargs: Dict[str, Any]) -> None:
    print(client.describe_request(operation, model, **kwargs))


def _plugin_kwargs(command: str, args: argparse.Namespace) -> Dict[str, Any]:
    from .provider import CliOptions

    kwargs: Dict[str, Any] = {}
    model = getattr(args, "model", "") or ""
    provider = model.split("/", 1)[0] if "/" in model else None  # an alias: its provider is not known here
    for item in getattr(args, "_extensions", ()):
        if isinstance(item, CliOptions) and item.command == command:
            if item.providers and provider is not None and provider not in item.providers:
                continue
            kwargs.update(item.call_kwargs(args))
    return kwargs


def _run_chat(args: argparse.Namespace) -> int:
    client = _client(args)
    kwargs = {**_chat_arguments(args), **_connection(args), **_plugin_kwargs("chat", args)}
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
    from .client import providers

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
    for name in ("size", "n", "seed", "poll_interval", "task_timeout"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    kwargs.update(_plugin_kwargs("image", args))
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
    return serve(
        args.config,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        json_logs=args.log_format == "json",
        limit_concurrency=args.limit_concurrency,
        timeout_keep_alive=args.timeout_keep_alive,
        workers=args.workers,
    )


def _run_new_provider(args: argparse.Namespace) -> int:
    from ._scaffold import create_provider

    target = create_provider(args.name, wire=args.wire, directory=args.directory)
    print(f"created {target}")
    print(f"next: pip install -e \"{target}[test]\" && python -m pytest {target}")
    return 0


_COMMANDS = {
    "chat": _run_chat,
    "providers": _run_providers,
    "demo": _run_demo,
    "image": _run_image,
    "serve": _run_serve,
    "new-provider": _run_new_provider,
}


#: Core command modules beyond this file, each ``modelport/<name>.py`` with
#: ``commands() -> List[CliCommand]`` (imported only to build the parser).
COMMAND_MODULES = ("_cli_teams", "_cli_batch", "_cli_models")


def _core_extensions() -> List[Any]:
    import importlib

    found: List[Any] = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"modelport.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"modelport.{name}":  # not built yet
                continue
            raise
        found.extend(module.commands())
    return found


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, sub = _build_parser()
    first = next((a for a in argv if not a.startswith("-")), None)
    if first == "image" and any(a == "--prompts" or a.startswith("--prompts=") for a in argv):
        # `image --prompts FILE --out DIR` is the bulk form: the same command as `images`
        argv[argv.index("image")] = first = "images"
    extensions = [*_core_extensions(), *([] if first in _PLUGIN_FREE else _plugin_extensions())]
    runners = _extend(sub, extensions)
    args = parser.parse_args(argv)
    args._extensions = extensions
    try:
        run = runners.get(args.command) or _COMMANDS[args.command]
        return int(run(args))
    except (ConfigError, InvalidRequestError) as exc:
        print(f"modelport: error: {exc}", file=sys.stderr)
        return 2
    except ModelportError as exc:
        print(f"modelport: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
