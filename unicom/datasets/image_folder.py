"""A generic image folder: one sub-folder per class.

Layouts::

    DIR/<class>/<image>            all images (training: all of them; evaluation: all-vs-all)
    DIR/train/<class>/<image>      training images, when DIR/train exists
    DIR/query/<class>/<image>      evaluation queries ...
    DIR/gallery/<class>/<image>    ... searching a separate gallery (class names shared)

Files are taken by image extension; hidden files (``._x.jpg``) are skipped. The label is the
class folder's name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict

from .base import LabelledList, LayoutError, list_images, missing_file_error

NAME = "image_folder"
SOURCE = "your own images: DIR/<class>/<image> (or DIR/train/<class>/…, DIR/query/<class>/… and DIR/gallery/<class>/…)"


def _scan(root: Path, split: str, allow_empty: bool, name: str, source: str) -> LabelledList:
    out = LabelledList(name, split, root, source=source, info={"root": str(root)})
    for c in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        images = list_images(c)
        if not images and not allow_empty:
            raise LayoutError(f"{c}: class folder holds no images (extensions .jpg, .png, …); remove it or add images")
        for p in images:
            out.add(p, c.name)
    return out


def read(data_root, split: str = "all", allow_empty: bool = True, name: str = NAME,
         source: str = SOURCE) -> Dict[str, LabelledList]:
    """``split="train"``: ``{"train": …}`` from DIR/train or DIR; ``split="all"`` (evaluation):
    ``{"query": …, "gallery": …}`` when DIR/query and DIR/gallery exist, else ``{"all": …}``.
    ``allow_empty=False`` makes a class folder without images an error naming it."""
    if data_root is None:
        raise ValueError(f"{name}: --data-root is required")
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise missing_file_error(name, [root], source)
    if split == "train":
        parts = {"train": _scan(root / "train" if (root / "train").is_dir() else root, "train", allow_empty, name,
                                source)}
    elif (root / "query").is_dir() and (root / "gallery").is_dir():
        parts = {s: _scan(root / s, s, allow_empty, name, source) for s in ("query", "gallery")}
    else:
        parts = {"all": _scan(root, "all", allow_empty, name, source)}
    if not any(len(p) for p in parts.values()):
        raise missing_file_error(name, [root / "<class>" / "<image>.jpg"], source,
                                 hint="the directory holds no class folders with images")
    return parts
