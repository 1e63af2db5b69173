"""Class labels given as names or as integer ids, and the stable name → id mapping.

A labelled source (``--dataset csv``, ``--label-key FIELD``, any layout) gives raw labels. They
are either all **class ids** (integers ≥ 0, or strings of digits such as ``"3"``: the ids
themselves) or all **names** (any other string, e.g. ``"dog"``); a source that mixes both is
refused in one line naming one row of each. Names map to ids 0..C-1 in sorted order (Python's
string order), so the same set of names always gives the same ids. The mapping is saved as
``classes.json`` in the run folder and every export (``unicom.formats.export.write_classes``);
a resumed run maps names through the saved list, so its ids never move.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

INT = "int"
NAME = "name"


def label_kind(value: Any) -> Optional[str]:
    """``"int"`` for a class id (an int ≥ 0 or a string of digits), ``"name"`` for any other
    non-empty string, None for what is not a label (bool, float, negative, empty, None)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return INT if value >= 0 else None
    if isinstance(value, str):
        text = value.strip()
        if not text or (text.startswith("-") and text[1:].isdigit()):  # empty, or a negative id
            return None
        return INT if text.isdigit() else NAME
    return None


def as_id(value: Any) -> int:
    """A class id label (``label_kind == "int"``) as an int."""
    return int(value.strip()) if isinstance(value, str) else int(value)


def mixed_error(where_int: str, int_value: Any, where_name: str, name_value: Any) -> ValueError:
    """The one-line error of a source whose labels mix class ids and names."""
    return ValueError(f"labels mix class ids and class names ({where_int}: {int_value!r}; {where_name}: "
                      f"{name_value!r}); use one kind throughout: all integer ids, or all names")


class KindTracker:
    """Follows the kinds of labels seen, raising ``mixed_error`` at the first mix."""

    def __init__(self):
        self.first: Dict[str, Tuple[str, Any]] = {}

    def add(self, kind: str, where: str, value: Any) -> None:
        self.first.setdefault(kind, (where, value))
        if INT in self.first and NAME in self.first:
            (wi, vi), (wn, vn) = self.first[INT], self.first[NAME]
            raise mixed_error(wi, vi, wn, vn)

    @property
    def kind(self) -> Optional[str]:
        return next(iter(self.first), None)


def sorted_names(names) -> List[str]:
    """The class names in their id order: sorted as strings."""
    return sorted({str(n).strip() for n in names})


def map_names(names: Sequence[str], saved: Optional[Sequence[Optional[str]]], where: str) -> Dict[str, int]:
    """name → id: sorted order, or the ``saved`` list of a resumed run (every name must be in it:
    the head has no row for a new class)."""
    if saved is None:
        return {n: i for i, n in enumerate(sorted_names(names))}
    lookup = {n: i for i, n in enumerate(saved) if n is not None}
    missing = sorted(set(str(n).strip() for n in names) - set(lookup))
    if missing:
        raise ValueError(f"{where}: class {missing[0]!r} is not in the run's classes.json ({len(missing)} new "
                         "name(s)); the head has no row for it: start a new run (another --output)")
    return lookup


def saved_classes(output: Optional[str]) -> Optional[List[Optional[List[str]]]]:
    """Per source, the class names saved by the run in ``output`` when it is resumed (it holds a
    checkpoint and ``classes.json``; None for a source without names), else None."""
    if not output:
        return None
    from ..formats import checkpoint as layout
    from ..formats.export import read_classes_record

    out = Path(output)
    if layout.latest_name(layout.checkpoint_root(out)) is None:
        return None
    record = read_classes_record(out)
    return None if record is None else list(record["sources"])
