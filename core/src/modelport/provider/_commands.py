"""What a plugin adds to the ``modelport`` command (the ``cli_commands`` hook)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

import attrs

if TYPE_CHECKING:  # the CLI machinery is imported by the CLI, not by plugins
    import argparse

__all__ = ["CliCommand", "CliOptions"]


def _no_arguments(parser: "argparse.ArgumentParser") -> None:
    return None


def _names(values: Any) -> Tuple[str, ...]:
    return (values,) if isinstance(values, str) else tuple(values)


@attrs.frozen
class CliCommand:
    """A new subcommand: ``modelport <name> ...``; ``run`` returns the exit code."""

    name: str
    help: str
    run: Callable[["argparse.Namespace"], int]
    add_arguments: Callable[["argparse.ArgumentParser"], None] = _no_arguments


@attrs.frozen
class CliOptions:
    """Options added to a core command (``chat``, ``image``): ``add_arguments`` adds
    them, ``call_kwargs`` turns the parsed ones into call keyword arguments."""

    command: str
    #: Receives the command's parser, or an argument group of it when ``title`` is set.
    add_arguments: Callable[[Any], None]
    call_kwargs: Callable[["argparse.Namespace"], Dict[str, Any]]
    #: Shown in the command's help, e.g. "Acme image options".
    title: Optional[str] = None
    #: The providers these options are for: their call keywords reach only calls whose
    #: model names one of them (empty: every call).
    providers: Tuple[str, ...] = attrs.field(default=(), converter=_names)
