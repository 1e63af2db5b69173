"""What a dataset reader returns, and the helpers every reader shares: finding the dataset
directory, the error a missing file raises, listing images.

A reader turns one official downloaded layout into a ``LabelledList`` per split: image paths,
their raw labels (class ids or names, as the layout gives them) and, where the layout has list
files, the ``file:line`` each image came from (for error messages). The trainer
(``unicom-train --dataset``) reads the train split, the evaluation (``unicom-eval``) the test
split, with the same reader.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


class DatasetNotFoundError(FileNotFoundError):
    """A file a dataset needs is missing. The message names the file expected and says where
    the dataset is obtained."""


class LayoutError(ValueError):
    """A list file breaks its layout (too few columns, a bad label, …); the message names the
    file and line."""


def missing_file_error(dataset: str, expected: Sequence[Union[str, Path]], source: str,
                       hint: str = "") -> DatasetNotFoundError:
    """Build the error for a missing dataset file: what was expected, and where to get it."""
    paths = "\n  ".join(str(p) for p in expected)
    msg = f"{dataset}: expected file not found; looked for\n  {paths}\n{dataset} is obtained from: {source}"
    if hint:
        msg += f"\n{hint}"
    return DatasetNotFoundError(msg)


def find_dataset_dir(data_root: Union[str, Path, None], markers: Sequence[str], subdirs: Sequence[str], dataset: str,
                     source: str, hint: str = "") -> Tuple[Path, str]:
    """Find the directory holding the dataset: ``data_root`` itself or one of its ``subdirs``
    (the official archive's top folder, so both ``--data-root /data`` and
    ``--data-root /data/CUB_200_2011`` work). Returns (directory, the marker found there).
    Raises ``DatasetNotFoundError`` naming every place looked at."""
    if data_root is None:
        raise ValueError(f"{dataset}: --data-root is required (the directory the dataset was unpacked into)")
    root = Path(os.path.expanduser(str(data_root)))
    candidates = [root] + [root / s for s in subdirs]
    for d in candidates:
        for m in markers:
            if (d / m).is_file():
                return d, m
    raise missing_file_error(dataset, [d / m for d in candidates for m in markers], source, hint)


def require_file(path: Path, dataset: str, source: str, hint: str = "") -> Path:
    """Return ``path`` if it is a file, else raise ``DatasetNotFoundError`` naming it."""
    if not Path(path).is_file():
        raise missing_file_error(dataset, [path], source, hint)
    return Path(path)


def encode_labels(raw: Sequence[Any]) -> Tuple[np.ndarray, List[Any]]:
    """Map arbitrary labels to int64 ids 0..C-1 (sorted order); returns (ids [n], names [C])."""
    names = sorted(set(raw), key=lambda x: (str(type(x)), x))
    lookup = {n: i for i, n in enumerate(names)}
    return np.fromiter((lookup[x] for x in raw), dtype=np.int64, count=len(raw)), names


def list_images(folder: Path) -> List[Path]:
    """Image files directly in ``folder`` (by extension, hidden files such as ``._x.jpg``
    skipped), sorted by name."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


@dataclass
class LabelledList:
    """One split of a dataset: ``paths[i]`` has the raw label ``labels[i]``; ``origins[i]``
    (optional) is where the row was read, as ``file:line``, for error messages."""

    name: str
    split: str
    root: Path
    paths: List[str] = field(default_factory=list)
    labels: List[Any] = field(default_factory=list)
    origins: Optional[List[str]] = None
    source: str = ""
    info: Dict[str, Any] = field(default_factory=dict)

    def add(self, path: Union[str, Path], label: Any, origin: Optional[str] = None) -> None:
        """Append one row (``origin`` kept only when the list records origins)."""
        self.paths.append(str(path))
        self.labels.append(label)
        if self.origins is not None:
            self.origins.append(origin or str(path))

    def __len__(self) -> int:
        return len(self.paths)

    def origin(self, i: int) -> str:
        """Where row ``i`` came from (``file:line``, or the image path itself)."""
        return self.origins[i] if self.origins is not None else self.paths[i]
