"""Flag helpers shared by every command-line entry point (``docs/cli.md`` lists the names).

One flag name means one thing across all commands. When a flag is renamed, the old spelling
stays as an alias that still works and prints a one-line deprecation warning; argparse has no
per-alias deprecation before Python 3.13, hence this small helper.

This module must stay import-light (argparse, sys, warnings only): every CLI imports it before
it builds its parser, and ``--help`` has to return in well under a second.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Dict, Optional, Sequence


def _deprecating(action_cls: type, old: Sequence[str], new: str) -> type:
    """A subclass of ``action_cls`` that warns when one of the ``old`` spellings is used."""

    class _Deprecated(action_cls):  # type: ignore[misc, valid-type]
        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: Optional[str] = None) -> None:
            if option_string in old:
                print(f"{parser.prog}: warning: {option_string} is deprecated, use {new}", file=sys.stderr)
            super().__call__(parser, namespace, values, option_string)

    return _Deprecated


_ACTIONS: Dict[Any, type] = {
    None: argparse._StoreAction,
    "store": argparse._StoreAction,
    "store_true": argparse._StoreTrueAction,
    "store_false": argparse._StoreFalseAction,
    "append": argparse._AppendAction,
}


def add_renamed(group: Any, new: str, *old: str, **kwargs: Any) -> argparse.Action:
    """``group.add_argument(new, *old, **kwargs)`` where each name in ``old`` is a deprecated
    alias of ``new``: it keeps working and prints ``PROG: warning: --old is deprecated, use --new``.
    ``--help`` shows only the new name (the aliases are listed after it, marked deprecated).

    ``group`` is an ``ArgumentParser`` or an argument group; ``kwargs`` are add_argument's,
    with ``action`` limited to store / store_true / store_false / append.
    """
    action = kwargs.pop("action", None)
    if action not in _ACTIONS:
        raise ValueError(f"add_renamed: unsupported action {action!r}")
    if old:
        kwargs["help"] = (kwargs.get("help") or "") + f" (deprecated alias: {', '.join(old)})"
    return group.add_argument(new, *old, action=_deprecating(_ACTIONS[action], old, new), **kwargs)


def fail(prog: str, message: str, code: int = 2) -> int:
    """Print ``PROG: message`` on one line to stderr and return ``code`` (for ``return fail(...)``
    in a ``main``): the shape of every user-facing error."""
    print(f"{prog}: {' '.join(str(message).split())}", file=sys.stderr)
    return code


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows every flag's default (required ones have none) and keeps the description's line
    breaks (its examples)."""

    def _get_help_string(self, action: argparse.Action) -> Optional[str]:
        if action.required:
            return action.help
        return super()._get_help_string(action)
