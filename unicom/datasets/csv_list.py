"""A CSV list: rows of ``path,label[,split]``.

* ``split`` is ``train``, ``query`` / ``gallery`` (queries search the gallery), or ``test``
  (also ``eval``/``all``): every such image a query against all the others. An empty or
  missing split means "any": the row is used for training and, as ``test``, for evaluation.
* A header row (``path,label[,split]``) is optional. Relative paths are resolved against the
  CSV file's directory.

``--data-root`` is the CSV file, or a directory holding ``list.csv``.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Dict, Union

from .base import LabelledList, LayoutError, missing_file_error

NAME = "csv"
SOURCE = "your own list: a CSV file of path,label[,split] rows (split: train, query, gallery or test)"
ALL_SPLITS = ("test", "eval", "all")
KNOWN = ("train", "query", "gallery", "all", "")


def locate(data_root: Union[str, Path, None]) -> Path:
    """The CSV file: ``data_root`` itself or ``data_root/list.csv``."""
    if data_root is None:
        raise ValueError(f"{NAME}: --data-root is required (the CSV file)")
    path = Path(data_root).expanduser()
    if path.is_dir():
        path = path / "list.csv"
    if not path.is_file():
        raise missing_file_error(NAME, [path], SOURCE)
    return path


def _decode(path: Path) -> str:
    """The CSV's text: UTF-8, with a leading byte-order mark dropped (spreadsheets write one).
    Other bytes are a ``LayoutError`` naming the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exn:
        line = data[:exn.start].count(b"\n") + 1
        raise LayoutError(f"{path}:{line}: byte 0x{data[exn.start]:02x} is not UTF-8 ({exn.reason}); re-save the "
                          "file as UTF-8 (e.g. 'CSV UTF-8' in a spreadsheet, or iconv -f latin1 -t utf-8)") from None


def read(data_root) -> Dict[str, LabelledList]:
    """``{"train", "query", "gallery", "all", "": LabelledList}`` (``""``: rows without a split),
    labels as stripped strings, origins ``file:line``. Raises ``LayoutError`` naming the
    file and line for a row with fewer than two columns or an unknown split."""
    path = locate(data_root)
    parts = {k: LabelledList(NAME, k, path.parent, origins=[], source=SOURCE, info={"list": str(path)}) for k in KNOWN}
    with io.StringIO(_decode(path), newline="") as f:
        for n, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row):
                continue
            if n == 1 and [c.strip().lower() for c in row[:2]] == ["path", "label"]:
                continue
            if len(row) < 2 or not row[0].strip():
                raise LayoutError(f"{path}:{n}: expected path,label[,split], got {row!r}")
            split = row[2].strip().lower() if len(row) > 2 else ""
            target = "all" if split in ALL_SPLITS else split
            if target not in parts:
                raise LayoutError(f"{path}:{n}: unknown split {split!r}; use train, query, gallery or test")
            p = Path(row[0].strip())
            parts[target].add(p if p.is_absolute() else path.parent / p, row[1].strip(), f"{path}:{n}")
    return parts
