"""argparse flags generated from a dataclass, so each default is written once: in the dataclass.

    @dataclass
    class Options:
        batch_size: int = option(128, "images per forward pass", type=int)

    add_dataclass_arguments(parser, Options)       # --batch-size, default 128, help shown
    opts = dataclass_from_namespace(Options, parser.parse_args())

A field becomes a flag when it was declared with ``option(...)``; its flag is ``--field-name``
unless ``flag=`` says otherwise, and ``aliases=`` are deprecated spellings
(``unicom.cli_flags.add_renamed``). Import-light (argparse, dataclasses), like ``cli_flags``.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict, Optional, Sequence, Type, TypeVar

from .cli_flags import add_renamed

T = TypeVar("T")
_ARG_KEYS = ("type", "choices", "metavar", "action", "nargs")


def option(default: Any, help: str, *, flag: Optional[str] = None, aliases: Sequence[str] = (),
           group: Optional[str] = None, **argparse_kwargs: Any) -> Any:
    """A dataclass field that is also a command-line flag (``argparse_kwargs``: type, choices,
    metavar, action, nargs)."""
    unknown = set(argparse_kwargs) - set(_ARG_KEYS)
    if unknown:
        raise TypeError(f"option(): unsupported argparse keywords {sorted(unknown)}")
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "group": group, "argparse": argparse_kwargs}
    return dataclasses.field(default=default, metadata={"cli": meta})


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per ``option`` field of ``cls``; fields sharing a ``group`` share an argument group."""
    groups: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("cli")
        if meta is None:
            continue
        target = parser
        if meta["group"]:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        add_renamed(target, flag, *meta["aliases"], dest=f.name, default=f.default, help=meta["help"],
                    **meta["argparse"])


def dataclass_from_namespace(cls: Type[T], namespace: argparse.Namespace) -> T:
    """An instance of ``cls`` from the parsed flags (fields the parser lacks keep their defaults)."""
    values = {f.name: getattr(namespace, f.name) for f in dataclasses.fields(cls) if hasattr(namespace, f.name)}
    return cls(**values)  # type: ignore[call-arg]
