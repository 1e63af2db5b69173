"""argparse flags generated from a dataclass, so each default is written once: in the dataclass.

    @dataclass
    class Options:
        batch_size: int = option(128, "images per forward pass")
        progress: bool = True                      # not a flag: no option()

    add_dataclass_arguments(parser, Options)       # --batch-size BATCH_SIZE, default 128, help shown
    opts = dataclass_from_namespace(Options, parser.parse_args())

A field becomes a flag when it was declared with ``option(...)``; its flag is ``--field-name``
unless ``flag=`` says otherwise (a name without dashes makes a positional argument), and
``aliases=`` are deprecated spellings (``unicom.cli.flags.add_renamed``). The flag's ``dest`` is
the field name. Without an explicit ``type``/``action`` the annotation decides: ``int``,
``float``, ``str`` (and ``Optional`` of them, default None) are converted by
``unicom.cli.convert.convert`` (the conversion the trainer's YAML and overrides go through too,
so ``--batch-size 1e3`` and ``data.batch_size=1e3`` mean the same), ``bool`` becomes
``store_true``; any other annotation needs ``type=``. Every command's flags come from here:
``unicom-cluster`` (``clustering.config``), ``unicom-eval`` (``retrieval_eval.options``),
``unicom-train`` (``unicom.train.cli.TrainArgs``), ``unicom-sample``. Import-light (argparse,
dataclasses, typing), like ``unicom.cli.flags``.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Dict, Optional, Sequence, Type, TypeVar, Union

from .convert import ConversionError, convert
from .flags import add_renamed

T = TypeVar("T")
_ARG_KEYS = ("type", "choices", "metavar", "action", "nargs", "required")
_FLAG_TYPES = (int, float, str)


class TypedArg:
    """An argparse ``type`` that converts a flag's text with ``unicom.cli.convert.convert``; a
    value that does not fit is argparse's usage error ``argument --x: expects an integer, got 'y'``."""

    def __init__(self, hint: Any, flag: str):
        self.hint, self.flag = hint, flag
        self.__name__ = getattr(hint, "__name__", str(hint))  # argparse names the type in some messages

    def __call__(self, text: str) -> Any:
        try:
            return convert(text, self.hint, self.flag)
        except ConversionError as exc:
            raise argparse.ArgumentTypeError(f"expects {exc.expected}, got {text!r}") from None

    def __repr__(self) -> str:
        return f"TypedArg({self.__name__})"


def option(default: Any, help: str, *, flag: Optional[str] = None, aliases: Sequence[str] = (),
           group: Optional[str] = None, **argparse_kwargs: Any) -> Any:
    """A dataclass field that is also a command-line flag (``argparse_kwargs``: type, choices,
    metavar, action, nargs, required)."""
    unknown = set(argparse_kwargs) - set(_ARG_KEYS)
    if unknown:
        raise TypeError(f"option(): unsupported argparse keywords {sorted(unknown)}")
    meta = {"help": help, "flag": flag, "aliases": tuple(aliases), "group": group, "argparse": argparse_kwargs}
    if isinstance(default, (list, dict, set)):  # a mutable default: each instance (and parser) gets its own copy
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata={"cli": meta})
    return dataclasses.field(default=default, metadata={"cli": meta})


def _kwargs_from_annotation(hint: Any, flag: str, given: Dict[str, Any]) -> Dict[str, Any]:
    """``type``/``action``/``metavar`` for a field whose ``option()`` names none, from its resolved
    annotation ``hint``."""
    if "type" in given or "action" in given:
        return {}
    args = typing.get_args(hint)
    if typing.get_origin(hint) is Union and len(args) == 2 and type(None) in args:  # Optional[X]
        hint = next(a for a in args if a is not type(None))
    if hint is bool:
        return {"action": "store_true"}
    if hint not in _FLAG_TYPES:
        raise TypeError(f"option {flag}: give type= for the annotation {hint!r}")
    out: Dict[str, Any] = {"type": TypedArg(hint, flag)}
    if "choices" not in given and "metavar" not in given and flag.startswith("-"):
        out["metavar"] = flag.lstrip("-").upper().replace("-", "_")
    return out


def _default_of(f: dataclasses.Field) -> Any:
    """A field's default, calling its ``default_factory`` when it has one (a list default)."""
    factory = f.default_factory
    if f.default is dataclasses.MISSING and callable(factory):
        return factory()
    return f.default


def add_dataclass_arguments(parser: Any, cls: type, skip: Sequence[str] = ()) -> None:
    """Add one flag per ``option`` field of ``cls`` (not those named in ``skip``) to ``parser``
    (an ``ArgumentParser`` or an argument group); fields sharing a ``group`` share an argument
    group."""
    groups: Dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
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
        kwargs = dict(meta["argparse"], **_kwargs_from_annotation(hints[f.name], flag, meta["argparse"]))
        if not kwargs.get("required"):
            kwargs["default"] = _default_of(f)
        if not flag.startswith("-"):  # a positional argument: argparse takes its dest from the name
            if flag != f.name or meta["aliases"]:
                raise TypeError(f"positional option {flag!r} must be named as its field {f.name!r}, without aliases")
            target.add_argument(flag, help=meta["help"], **kwargs)
            continue
        add_renamed(target, flag, *meta["aliases"], dest=f.name, help=meta["help"], **kwargs)


def dataclass_from_namespace(cls: Type[T], namespace: argparse.Namespace, **overrides: Any) -> T:
    """An instance of ``cls`` from the parsed flags (fields the parser lacks keep their defaults),
    with ``overrides`` taking precedence."""
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # T is a dataclass
    values = {f.name: getattr(namespace, f.name) for f in fields if hasattr(namespace, f.name)}
    values.update(overrides)
    return cls(**values)  # type: ignore[call-arg]
