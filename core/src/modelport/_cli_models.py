"""``modelport models [provider] [--json] [--region R]``: what the installed catalogs know.

A table of model, mode, context (max input tokens), max output, price per 1M input and
output tokens (in the catalog's currency; ``-`` where no price is known) and the tools /
vision / reasoning flags; ``--json`` prints ``get_model_info``'s keys for every model.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from .provider import CliCommand

if TYPE_CHECKING:
    import argparse

__all__ = ["commands"]

_HEADERS = ("model", "mode", "context", "max output", "$/1M in", "$/1M out", "tools", "vision", "reasoning")


def commands() -> List[CliCommand]:
    return [
        CliCommand(
            name="models",
            help="list the models the installed providers' catalogs know: limits, prices, capabilities",
            run=_run,
            add_arguments=_arguments,
        )
    ]


def _arguments(parser: "argparse.ArgumentParser") -> None:
    parser.add_argument("provider", nargs="?", help="one provider (e.g. openai); all installed ones when omitted")
    parser.add_argument("--region", help="price the models for this region (providers whose prices differ by region)")
    parser.add_argument("--json", action="store_true", help="machine-readable output: get_model_info's keys per model")


def _tokens(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _per_million(value: Any, tiered: bool, *, currency: Optional[str]) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    whole, _, decimals = f"{value * 1_000_000:.4f}".partition(".")
    amount = f"{whole}.{decimals.rstrip('0').ljust(2, '0')}"
    amount = amount if currency in (None, "USD") else f"{currency} {amount}"
    return amount + ("+" if tiered else "")


def _price(row: Dict[str, Any], key: str) -> Tuple[Any, bool]:
    """A flat price, else the first ``tiered_pricing`` range's; and whether larger prompts
    cost more (a ``+`` in the table)."""
    tiers = row.get("tiered_pricing")
    above = any(k.startswith(key + "_above_") and row[k] is not None for k in row)
    if row.get(key) is not None:
        return row[key], above or bool(tiers)
    if isinstance(tiers, list) and tiers and isinstance(tiers[0], dict):
        return tiers[0].get(key), len(tiers) > 1
    return None, False


def _flag(value: Any) -> str:
    return "yes" if value is True else "-"


def table(rows: Sequence[Dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    lines = [list(_HEADERS)]
    for row in rows:
        currency = row.get("currency")
        lines.append(
            [
                str(row["model"]),
                str(row.get("mode") or "-"),
                _tokens(row.get("max_input_tokens")),
                _tokens(row.get("max_output_tokens")),
                _per_million(*_price(row, "input_cost_per_token"), currency=currency),
                _per_million(*_price(row, "output_cost_per_token"), currency=currency),
                _flag(row.get("supports_function_calling")),
                _flag(row.get("supports_vision")),
                _flag(row.get("supports_reasoning")),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(_HEADERS))]
    numeric = {2, 3, 4, 5}
    out = []
    for line in lines:
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(line)]
        out.append("  ".join(cells).rstrip())
    if any(line[4].endswith("+") or line[5].endswith("+") for line in lines[1:]):
        out.append("+ the lowest price tier: longer prompts cost more (see --json)")
    return "\n".join(out)


def _run(args: "argparse.Namespace") -> int:
    from .catalog import list_models

    rows = list_models(args.provider, region=args.region)
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return 0
    if not rows:
        which = f"provider {args.provider!r}" if args.provider else "the installed providers"
        print(
            f"no catalog models for {which} (self-hosted or unpriced): give max_input_tokens,"
            " input_cost_per_token, ... under model_info in your config"
        )
        return 0
    print(table(rows))
    return 0
