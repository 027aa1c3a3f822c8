"""``modelport batch`` (OpenAI Batch files) and ``modelport images`` (image prompts in bulk).

Progress goes to stderr: a tqdm bar when tqdm is installed (``pip install
"modelport[batch]"``) and stderr is a terminal, plain lines otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional, Tuple, TypeVar

from .provider import CliCommand

if TYPE_CHECKING:
    from .batch import BatchStats, ImagePrompt
    from .client import AsyncClient

__all__ = ["commands"]

T = TypeVar("T")


def _key_value(text: str) -> Tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML or TOML config: model aliases, deployments, fallbacks")
    parser.add_argument("--api-base", help="base URL for every call (overrides the config's)")
    parser.add_argument("--api-key", help="API key for every call (prefer the provider's environment variable)")
    parser.add_argument("--timeout", type=float, help="seconds each call may take")
    parser.add_argument("--num-retries", type=int, help="retries per call on 408/409/429/5xx and connection errors (default 2)")
    parser.add_argument(
        "--option", dest="option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
        help="extra argument for every call, value parsed as JSON when it can be",
    )  # fmt: skip
    parser.add_argument(
        "--progress", choices=("auto", "bar", "plain", "none"), default="auto",
        help="auto: a bar on a terminal when tqdm is installed, plain lines otherwise",
    )  # fmt: skip
    parser.add_argument("--progress-interval", type=float, default=2.0, help="seconds between plain progress lines")
    parser.add_argument("--json-summary", action="store_true", help="also print the summary as JSON on stdout")


def _call_options(args: argparse.Namespace) -> Dict[str, Any]:
    options: Dict[str, Any] = dict(args.option)
    for name in ("api_base", "api_key", "timeout", "num_retries"):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    return options


def _client(args: argparse.Namespace, concurrency: int) -> "AsyncClient":
    from .client import AsyncClient

    connections = max(100, concurrency * 2)
    if args.config:
        return AsyncClient.from_config(args.config, max_connections=connections)  # type: ignore[no-any-return]
    return AsyncClient(max_connections=connections)


# --- progress ------------------------------------------------------------------------------------------


def _count(value: float) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _tqdm() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class Progress:
    """done / failed / tokens / cost / ETA on stderr, at most every ``interval`` seconds."""

    def __init__(self, mode: str, label: str, *, interval: float = 2.0, tokens: bool = True) -> None:
        self.label = label
        self.tokens = tokens
        self.interval = max(0.05, interval)
        self._bar: Any = None
        self._last = 0.0
        self._started = False
        tqdm = _tqdm() if mode in ("auto", "bar") else None
        if mode == "bar" and tqdm is None:
            print(f"[modelport {label}] no progress bar: pip install 'modelport[batch]' (tqdm); plain lines instead", file=sys.stderr)
        self._tqdm: Any = tqdm if tqdm is not None and (mode == "bar" or sys.stderr.isatty()) else None
        self.mode = "none" if mode == "none" else ("bar" if self._tqdm is not None else "plain")

    def _figures(self, stats: "BatchStats") -> str:
        parts = [f"failed {stats.failed}"]
        if self.tokens:
            parts.append(f"tokens {_count(stats.tokens)}")
            parts.append(f"cost ${stats.cost:.4f}")
        if stats.cuts:
            parts.append(f"concurrency {stats.concurrency}")
        return ", ".join(parts)

    def begin(self, stats: "BatchStats") -> None:
        if self._started or self.mode == "none":
            return
        self._started = True
        self._last = time.monotonic()
        if stats.skipped:
            print(f"[modelport {self.label}] resuming: {stats.skipped} of {stats.lines} already done, {stats.to_do} to do", file=sys.stderr)
        if self.mode == "bar":
            try:
                width = os.get_terminal_size(sys.stderr.fileno()).columns
            except (OSError, ValueError):
                width = 0
            # a pty without a size reports 0 x 0, which tqdm takes as no room for any bar
            size: Dict[str, Any] = {"dynamic_ncols": True} if width > 0 else {"ncols": 110, "nrows": 24}
            self._bar = self._tqdm(total=stats.to_do, unit="req", desc=self.label, file=sys.stderr, smoothing=0.1, **size)
            self._bar.set_postfix_str(self._figures(stats), refresh=False)

    def update(self, stats: "BatchStats") -> None:
        if self.mode == "none":
            return
        self.begin(stats)
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(stats.done - self._bar.n)
            if now - self._last >= 0.25:
                self._last = now
                self._bar.set_postfix_str(self._figures(stats), refresh=False)
            return
        if now - self._last < self.interval or stats.done >= stats.to_do:
            return
        self._last = now
        rate = stats.requests_per_second
        eta = (stats.to_do - stats.done) / rate if rate > 0 else 0.0
        share = 100.0 * stats.done / stats.to_do if stats.to_do else 100.0
        print(
            f"[modelport {self.label}] {stats.done}/{stats.to_do} ({share:.0f}%), {self._figures(stats)},"
            f" {rate:.1f} req/s, ETA {_duration(eta)}",
            file=sys.stderr,
            flush=True,
        )

    def message(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def close(self, stats: "BatchStats") -> None:
        if self._bar is not None:
            self._bar.update(stats.done - self._bar.n)
            self._bar.set_postfix_str(self._figures(stats), refresh=False)
            self._bar.close()
            self._bar = None


def _summary(label: str, stats: "BatchStats", tokens: bool = True) -> str:
    text = f"[modelport {label}] {stats.lines} lines: {stats.ok} ok, {stats.failed} failed"
    if stats.invalid:
        text += f" ({stats.invalid} invalid)"
    text += f", {stats.skipped} skipped (done before)"
    if tokens:
        text += f"; {stats.tokens} tokens; cost ${stats.cost:.4f}"
    text += f"; {stats.elapsed:.1f}s; {stats.requests_per_second:.1f} requests/s"
    if stats.throttled:
        text += f"; throttled {stats.throttled}x, concurrency cut to {stats.lowest_concurrency} (now {stats.concurrency})"
    return text


def _run_until_signal(make: Callable[[], Awaitable[T]], cleanup: Callable[[], Awaitable[None]]) -> Tuple[Optional[T], Optional[int]]:
    """Run ``make()`` on a new event loop; SIGINT / SIGTERM cancel it (its finally blocks
    run). Returns (result, None), or (None, the signal) when interrupted."""
    received: List[int] = []

    async def main() -> Optional[T]:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def stop(signum: int) -> None:
            if not received:
                received.append(signum)
                task.cancel()

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, stop, signum)
                installed.append(signum)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
                pass
        try:
            return await make()
        except asyncio.CancelledError:
            if received:
                return None
            raise
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await cleanup()

    try:
        result = asyncio.run(main())
    except KeyboardInterrupt:
        return None, int(signal.SIGINT)
    return result, (received[0] if received else None)


def _interrupted(label: str, signum: int, stats: "BatchStats", json_summary: bool, tokens: bool = True) -> int:
    stats.interrupted = True
    print(_summary(label, stats, tokens), file=sys.stderr)
    print(f"[modelport {label}] interrupted ({signal.Signals(signum).name}): rerun the same command to resume", file=sys.stderr)
    if json_summary:
        print(json.dumps(stats.to_dict()))
    return 128 + signum


# --- modelport batch ------------------------------------------------------------------------------------


def _batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Run an OpenAI Batch API input file (JSONL: custom_id, method, url, body) against any provider"
        " and write an OpenAI Batch output file: one line per input line, errors included."
        " Rerunning with the same output skips the lines already in it."
    )
    parser.add_argument("input", help="OpenAI Batch input file (.jsonl)")
    parser.add_argument("-o", "--output", required=True, help="output file (.jsonl); appended to, so a rerun resumes")
    parser.add_argument("--concurrency", type=_positive, default=16, help="requests in flight at most (default 16); adapts down on 429")
    parser.add_argument(
        "--model-override", action="append", default=[], metavar="MODEL|NAME=MODEL",
        help="call MODEL for every line, or for lines whose body.model is NAME (repeatable)",
    )  # fmt: skip
    parser.add_argument("--retry-failed", action="store_true", help="remove failed lines from the output first and run them again")
    parser.add_argument("--no-adaptive", action="store_true", help="keep the concurrency fixed instead of backing off on 429")
    parser.add_argument("--throttle-retries", type=int, default=5, help="extra rounds for a line still rate-limited after its retries (default 5)")
    _connection_arguments(parser)


def _run_batch(args: argparse.Namespace) -> int:
    from .batch import BatchStats, arun_batch_file

    if not os.path.isfile(args.input):
        print(f"modelport: error: input file not found: {args.input}", file=sys.stderr)
        return 2
    client = _client(args, args.concurrency)
    stats = BatchStats()
    progress = Progress(args.progress, "batch", interval=args.progress_interval)

    async def run() -> BatchStats:
        return await arun_batch_file(
            args.input, args.output, client=client, concurrency=args.concurrency, model_override=args.model_override or None,
            adaptive=not args.no_adaptive, throttle_retries=max(0, args.throttle_retries), retry_failed=args.retry_failed,
            call_options=_call_options(args), on_update=progress.update, stats=stats,
        )  # fmt: skip

    try:
        _, signum = _run_until_signal(run, client.aclose)
    except OSError as exc:
        print(f"modelport: error: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close(stats)
    if stats.recovered_partial_line:
        print(f"[modelport batch] removed a cut-off last line from {args.output} (its request was made again)", file=sys.stderr)
    if signum is not None:
        return _interrupted("batch", signum, stats, args.json_summary)
    print(_summary("batch", stats), file=sys.stderr)
    if args.json_summary:
        print(json.dumps(stats.to_dict()))
    if stats.failed:
        what = "line" if stats.failed == 1 else "lines"
        print(f"[modelport batch] {stats.failed} {what} failed (see the error in {args.output}); --retry-failed runs them again", file=sys.stderr)
        return 1
    return 0


# --- modelport images -------------------------------------------------------------------------------------


def _images_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Generate one image task per prompt, saved as OUT/0001.png, 0002.png, ... Every prompt is"
        " checked before anything is sent; prompts whose file exists are skipped, so a rerun resumes."
    )
    parser.add_argument("--prompts", required=True, help="text file, one prompt per line; or .jsonl: a string or {\"prompt\": ..., other arguments}")
    parser.add_argument("--out", required=True, help="directory for the images")
    parser.add_argument("-m", "--model", required=True, help="provider/model (or a config alias)")
    parser.add_argument("--concurrency", type=_positive, default=4, help="image tasks at once (default 4)")
    parser.add_argument("--size", help="e.g. 1024x1024")
    parser.add_argument("-n", type=int, dest="n", help="images per prompt")
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--max-prompt-chars", type=int,
        help="longest prompt accepted, in characters (default: the limit the provider's plugin declares, else none; 0: no limit)",
    )  # fmt: skip
    _connection_arguments(parser)


def _image_kwargs(args: argparse.Namespace) -> Dict[str, Any]:
    kwargs = _call_options(args)
    for name in ("size", "n", "seed"):
        value = getattr(args, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


def _report(label: str, problems: List[str], what: str) -> int:
    print(f"modelport: error: {len(problems)} {what}; nothing was sent:", file=sys.stderr)
    for problem in problems[:20]:
        print(f"  {problem}", file=sys.stderr)
    if len(problems) > 20:
        print(f"  ... and {len(problems) - 20} more", file=sys.stderr)
    return 2


def _run_images(args: argparse.Namespace) -> int:
    from .batch import BatchStats, agenerate_images, check_prompts, prompt_limit, read_prompts
    from .errors import ModelportError

    if not os.path.isfile(args.prompts):
        print(f"modelport: error: prompts file not found: {args.prompts}", file=sys.stderr)
        return 2
    prompts, problems = read_prompts(args.prompts)
    if not prompts and not problems:
        print(f"modelport: error: {args.prompts} holds no prompts", file=sys.stderr)
        return 2
    client = _client(args, args.concurrency)
    kwargs = _image_kwargs(args)
    if args.max_prompt_chars is not None:
        limit: Optional[int] = args.max_prompt_chars if args.max_prompt_chars > 0 else None
    else:
        limit = prompt_limit(client, args.model)
    problems += check_prompts(prompts, max_chars=limit)
    for item in prompts:  # what the request would be, built and checked (nothing sent)
        if check_prompts([item], max_chars=limit):
            continue
        try:
            client.build_request("image_generation", args.model, prompt=item.prompt, **{**item.params, **kwargs})
        except ModelportError as exc:
            problems.append(f"prompt {item.number} (line {item.line}): {exc}")
            if not item.params:  # the same for every plain prompt: say it once
                break
    if problems:
        return _report("images", problems, "prompt problems" if len(problems) > 1 else "prompt problem")
    stats = BatchStats()
    progress = Progress(args.progress, "images", interval=args.progress_interval, tokens=False)

    def failed(item: "ImagePrompt", exc: BaseException) -> None:
        progress.message(f"[modelport images] prompt {item.number} failed: {exc}")

    async def run() -> BatchStats:
        return await agenerate_images(
            prompts, args.out, model=args.model, client=client, concurrency=args.concurrency, call_options=kwargs,
            on_update=progress.update, on_failure=failed, stats=stats,
        )  # fmt: skip

    try:
        _, signum = _run_until_signal(run, client.aclose)
    except OSError as exc:
        print(f"modelport: error: {exc}", file=sys.stderr)
        return 2
    finally:
        progress.close(stats)
    if signum is not None:
        return _interrupted("images", signum, stats, args.json_summary, tokens=False)
    print(_summary("images", stats, tokens=False).replace(" lines:", " prompts:"), file=sys.stderr)
    if args.json_summary:
        print(json.dumps(stats.to_dict()))
    if stats.failed:
        what = "prompt" if stats.failed == 1 else "prompts"
        print(f"[modelport images] {stats.failed} {what} failed: rerun the same command to try again", file=sys.stderr)
        return 1
    return 0


def commands() -> List[CliCommand]:
    return [
        CliCommand("batch", "run an OpenAI Batch API file (JSONL) against any provider, resumable", _run_batch, _batch_arguments),
        CliCommand("images", "generate images for a file of prompts (0001.png, ...), resumable", _run_images, _images_arguments),
    ]
