"""The one typed conversion of settings: command-line flags and config values alike.

``convert(value, hint, name)`` turns a value into the type ``hint`` declares, or raises a
``ConversionError`` (a ValueError) naming the setting and the type it expects. It is used

* by ``unicom.cli.dataclass_args`` as the argparse ``type`` of every flag generated from a
  dataclass field (``--batch-size 1e3`` → 1000; ``--batch-size 2.5`` → an error), and
* by ``unicom.train.config`` for every YAML value and dotted override (``optim.lr=1e-3``),

so a value means the same whichever way it is given. Import-light (typing only).

Accepted: ``int`` (an integral number, or a string of one: ``"12"``, ``"1e3"``; never a bool),
``float`` (a number or numeric string; never a bool), ``bool`` (``True``/``False``, 0/1, and
from text ``true``/``false``/``yes``/``no``/``on``/``off``/``1``/``0``), ``str`` (a string), ``Optional[X]``
(``None``, else X), ``List[X]`` (a list or tuple, each item converted), ``Dict[...]`` (a mapping)
and ``Any`` (unchanged).
"""
from __future__ import annotations

import typing
from typing import Any, Dict, List, Union

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


class ConversionError(ValueError):
    """A value that does not fit its setting's type: ``str(err)`` is ``NAME expects WHAT, got VALUE``."""

    def __init__(self, name: str, expected: str, value: Any):
        self.name, self.expected, self.value = name, expected, value
        super().__init__(f"{name} expects {expected}, got {value!r}")


def _to_int(v: Any) -> int:
    if isinstance(v, bool) or isinstance(v, float) and not v.is_integer():
        raise ValueError(v)
    if isinstance(v, str):
        text = v.strip()
        return _to_int(float(text) if any(c in text for c in ".eE") else int(text))
    if not isinstance(v, (int, float)):
        raise TypeError(v)
    return int(v)


def _to_float(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise TypeError(v)
    return float(v)


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in _TRUE + _FALSE:
        return v.strip().lower() in _TRUE
    raise ValueError(v)


def _to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError(v)
    return v


_SCALARS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}
TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def is_supported(hint: Any) -> bool:
    """Whether ``convert`` handles the type ``hint``."""
    if hint is Any or hint in _SCALARS:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        return all(a is type(None) or is_supported(a) for a in args)
    return origin in (list, List, dict, Dict)


def convert(value: Any, hint: Any, name: str) -> Any:
    """``value`` converted to the type ``hint`` (see the module docstring); a ``ConversionError``
    naming ``name`` (``config key optim.lr``, ``--batch-size``) when it does not fit."""
    if hint is Any:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:  # Optional[X]
        if value is None:
            return None
        return convert(value, next(a for a in args if a is not type(None)), name)
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConversionError(name, "a mapping", value)
        return dict(value)
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConversionError(name, "a list", value)
        return [convert(v, args[0] if args else Any, name) for v in value]
    if hint not in _SCALARS:
        raise TypeError(f"{name}: no conversion to {hint!r}")
    try:
        return _SCALARS[hint](value)
    except (TypeError, ValueError):
        raise ConversionError(name, TYPE_NAMES[hint], value) from None
