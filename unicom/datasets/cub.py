"""CUB-200-2011 (Wah et al. 2011): the metric-learning split by class, train = classes 1–100,
test = classes 101–200 (the official train/test file of the archive is not used: the
retrieval convention splits by class).

Official layout (``CUB_200_2011.tgz``)::

    CUB_200_2011/images.txt               "<image_id> <relative path>"
    CUB_200_2011/image_class_labels.txt   "<image_id> <class_id 1..200>"
    CUB_200_2011/images/<NNN.Class_name>/<file>.jpg
"""
from __future__ import annotations

from pathlib import Path

from .base import LabelledList, LayoutError, find_dataset_dir, require_file

NAME = "cub"
SOURCE = ("CUB-200-2011, https://www.vision.caltech.edu/datasets/cub_200_2011/ (CUB_200_2011.tgz, "
          "unpacked so that CUB_200_2011/images.txt exists)")
SPLITS = {"train": range(1, 101), "test": range(101, 201)}


def _read_pairs(path: Path) -> dict:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split(maxsplit=1)
        if len(parts) == 2:
            out[parts[0]] = (parts[1].strip(), n)
    return out


def read(data_root, split: str = "test") -> LabelledList:
    """Images of the ``train`` (classes 1–100) or ``test`` (101–200) classes, int class ids."""
    if split not in SPLITS:
        raise ValueError(f"{NAME}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root, _ = find_dataset_dir(data_root, ["images.txt"], ["CUB_200_2011"], NAME, SOURCE)
    labels_file = require_file(root / "image_class_labels.txt", NAME, SOURCE)
    images = _read_pairs(root / "images.txt")
    labels = _read_pairs(labels_file)
    out = LabelledList(NAME, split, root, origins=[], source=SOURCE,
                       info={"split": f"classes {SPLITS[split].start}-{SPLITS[split].stop - 1}", "root": str(root)})
    for image_id, (rel, n) in images.items():
        if image_id not in labels or not labels[image_id][0].isdigit():
            raise LayoutError(f"{root / 'images.txt'}:{n}: image {image_id} has no integer class in {labels_file}")
        y = int(labels[image_id][0])
        if y in SPLITS[split]:
            out.add(root / "images" / rel, y, f"{root / 'images.txt'}:{n}")
    return out
