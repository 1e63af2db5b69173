"""argparse flags generated from a dataclass, so each default is written once: in the dataclass.

    @dataclass
    class Options:
        batch_size: int = option(128, "images per forward pass")
        progress: bool = True                      # not a flag: no option()

    add_dataclass_arguments(parser, Options)       # --batch-size BATCH_SIZE, default 128, help shown
    opts = dataclass_from_namespace(Options, parser.parse_args())

A field becomes a flag when it was declared with ``option(...)``; its flag is ``--field-name``
unless ``flag=`` says otherwise, and ``aliases=`` are deprecated spellings
(``unicom.cli.flags.add_renamed``). The flag's ``dest`` is the field name. Without an explicit
``type``/``action`` the annotation decides: ``int``, ``float``, ``str`` (and ``Optional`` of
them, default None) parse as that type, ``bool`` becomes ``store_true``; any other annotation
needs ``type=``. Used by ``unicom-cluster`` (``clustering.config``) and ``unicom-eval``
(``retrieval_eval.options``). Import-light (argparse, dataclasses), like ``cli_flags``.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Dict, Optional, Sequence, Type, TypeVar

from .flags import add_renamed

T = TypeVar("T")
_ARG_KEYS = ("type", "choices", "metavar", "action", "nargs", "required")
_TYPES: Dict[str, Any] = {"int": int, "float": float, "str": str}


def option(default: Any, help: str, *, flag: Optional[str] = None, aliases: Sequence[str] = (),
           group: Optional[str] = None, **argparse_kwargs: Any) -> Any:
    """A dataclass field that is also a command-line flag (``argparse_kwargs``: type, choices,
    metavar, action, nargs, required)."""
    unknown = set(argparse_kwargs) - set(_ARG_KEYS)
    if unknown:
        raise TypeError(f"option(): unsupported argparse keywords {sorted(unknown)}")
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "group": group, "argparse": argparse_kwargs}
    return dataclasses.field(default=default, metadata={"cli": meta})


def _kwargs_from_annotation(f: dataclasses.Field, flag: str, given: Dict[str, Any]) -> Dict[str, Any]:
    """``type``/``action``/``metavar`` for a field whose ``option()`` names none, from its annotation
    (a string under ``from __future__ import annotations``)."""
    if "type" in given or "action" in given:
        return {}
    typ = str(f.type).replace("typing.", "")
    if typ.startswith("Optional[") and typ.endswith("]"):
        typ = typ[len("Optional["):-1]
    if typ == "bool":
        return {"action": "store_true"}
    if typ not in _TYPES:
        raise TypeError(f"option {flag}: give type= for the annotation {f.type!r}")
    out: Dict[str, Any] = {"type": _TYPES[typ]}
    if "choices" not in given and "metavar" not in given:
        out["metavar"] = flag.lstrip("-").upper().replace("-", "_")
    return out


def add_dataclass_arguments(parser: Any, cls: type, skip: Sequence[str] = ()) -> None:
    """Add one flag per ``option`` field of ``cls`` (not those named in ``skip``) to ``parser``
    (an ``ArgumentParser`` or an argument group); fields sharing a ``group`` share an argument
    group."""
    groups: Dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("cli")
        if meta is None or f.name in skip:
            continue
        target = parser
        if meta["group"]:
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        flag = meta["flag"] or "--" + f.name.replace("_", "-")
        kwargs = dict(meta["argparse"], **_kwargs_from_annotation(f, flag, meta["argparse"]))
        if not kwargs.get("required"):
            kwargs["default"] = f.default
        add_renamed(target, flag, *meta["aliases"], dest=f.name, help=meta["help"], **kwargs)


def dataclass_from_namespace(cls: Type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """An instance of ``cls`` from the parsed flags (fields the parser lacks keep their defaults),
    with ``overrides`` taking precedence."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # T is a dataclass
    values = {f.name: getattr(namespace, f.name) for f in fields if hasattr(namespace, f.name)}
    values.update(overrides)
    return cls(**values)  # type: ignore[call-arg]
