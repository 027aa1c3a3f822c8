"""Batch inference with Ray Data: a JSONL or Parquet file in, a Parquet dataset out.

    pip install "modelport[ray]" modelport-openai-compat
    python examples/ray_batch.py prompts.jsonl out/ --model openai/gpt-4o-mini
    python examples/ray_batch.py prompts.parquet out/ --model my-model --config config.yaml \\
        --concurrency 4 --per-actor 16 -o temperature=0 -o max_tokens=256
    python examples/ray_batch.py docs.jsonl vectors/ --embeddings --input-column text \\
        --model openai/text-embedding-3-small -o dimensions=256

Each input row needs a ``prompt`` column (``--prompt-column``), or a ``messages`` column
holding a conversation (``--messages-column``), or for ``--embeddings`` a ``text`` column
(``--input-column``). The output has the input's columns plus ``response``,
``usage_prompt_tokens``, ``usage_completion_tokens``, ``cost`` and ``error``; a row whose
call failed has its error message in ``error`` and the run goes on.

Ray starts a local runtime, or joins the cluster named by ``--address`` or ``RAY_ADDRESS``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="a .jsonl/.json file or a .parquet file or directory")
    parser.add_argument("output", help="the directory to write the Parquet files to")
    parser.add_argument("--model", required=True, help="a model string (openai/gpt-4o-mini) or an alias of --config")
    parser.add_argument("--config", help="a modelport config file (YAML or TOML): aliases, deployments, fallbacks")
    parser.add_argument("--embeddings", action="store_true", help="embed --input-column instead of chatting")
    parser.add_argument("--prompt-column", default="prompt")
    parser.add_argument("--messages-column", help="a column of conversations (lists of messages or their JSON)")
    parser.add_argument("--input-column", default="text", help="with --embeddings: the text to embed")
    parser.add_argument("--system", help="a system message for every row")
    parser.add_argument("--concurrency", type=int, default=2, help="actors in the pool (default 2)")
    parser.add_argument("--per-actor", type=int, default=8, help="requests in flight per actor (default 8)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per batch (default 64)")
    parser.add_argument("--num-cpus-per-actor", type=float, default=0.25, help="CPUs Ray reserves per actor (default 0.25: the actors mostly wait on the network)")
    parser.add_argument("--address", help="a Ray cluster to join (default: RAY_ADDRESS, else a local runtime)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME", help="pass this environment variable on to the Ray workers (keys the config reads as os.environ/NAME, when joining a cluster)")
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help="a call argument, its value parsed as JSON when it can be")
    return parser.parse_args(argv)


def call_options(pairs: List[str]) -> Dict[str, Any]:
    options: Dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"-o expects KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def read(path: str) -> Any:
    import ray.data

    if path.endswith((".jsonl", ".json", ".ndjson")):
        return ray.data.read_json(path)
    return ray.data.read_parquet(path)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    import ray
    import ray.data

    from modelport.ray import ChatCompletions, Embeddings, actor_pool

    kwargs: Dict[str, Any] = {
        "model": args.model,
        "config": args.config,
        "max_concurrency_per_actor": args.per_actor,
        **call_options(args.option),
    }
    udf: Any
    if args.embeddings:
        udf, kwargs["input_column"] = Embeddings, args.input_column
    else:
        udf = ChatCompletions
        kwargs.update(prompt_column=args.prompt_column, messages_column=args.messages_column, system=args.system)

    missing = [name for name in args.env if name not in os.environ]
    if missing:
        raise SystemExit(f"--env names unset environment variables: {', '.join(missing)}")
    # A local runtime's workers inherit this environment; a cluster's workers get only what
    # the runtime environment carries (and what their nodes have).
    runtime_env = {"env_vars": {name: os.environ[name] for name in args.env}} if args.env else None
    ray.init(address=args.address, runtime_env=runtime_env)
    try:
        ds = read(args.input).map_batches(
            udf,
            fn_constructor_kwargs=kwargs,
            batch_size=args.batch_size,
            num_cpus=args.num_cpus_per_actor,
            # A fixed pool of actors, each with one client: compute=ActorPoolStrategy(size=N)
            # on Ray >= 2.51, concurrency=N before.
            **actor_pool(args.concurrency),
        )
        ds.write_parquet(args.output)
    finally:
        ray.shutdown()

    # The summary reads back only the small accounting columns.
    table = pq.read_table(args.output, columns=["usage_prompt_tokens", "usage_completion_tokens", "cost", "error"])
    failed = pc.drop_null(table.column("error"))
    errors = len(failed)
    summary = {
        "rows": table.num_rows,
        "errors": errors,
        "prompt_tokens": pc.sum(table.column("usage_prompt_tokens")).as_py() or 0,
        "completion_tokens": pc.sum(table.column("usage_completion_tokens")).as_py() or 0,
        "cost": pc.sum(table.column("cost")).as_py() or 0.0,
        "output": args.output,
        "first_error": failed[0].as_py() if errors else None,
    }
    print(json.dumps(summary))
    return 1 if table.num_rows and errors == table.num_rows else 0


if __name__ == "__main__":
    sys.exit(main())
