"""Cars196 / Stanford Cars (Krause et al. 2013): the metric-learning split by class, train =
classes 1–98, test = classes 99–196. Bounding boxes are not used (the metric-learning
convention).

Official layout::

    cars_annos.mat      struct array ``annotations``: relative_im_path, bbox_*, class (1..196), test
    car_ims/<000001>.jpg
"""
from __future__ import annotations

import numpy as np

from .base import LabelledList, find_dataset_dir

NAME = "cars"
SOURCE = ("Stanford Cars, https://ai.stanford.edu/~jkrause/cars/car_dataset.html (car_ims.tgz and "
          "cars_annos.mat, both in one directory; mirrors keep the same two files)")
SPLITS = {"train": range(1, 99), "test": range(99, 197)}


def read_annotations(path) -> list:
    """[(relative_im_path, class)] from ``cars_annos.mat`` (read with scipy, no pickle)."""
    from scipy.io import loadmat

    mat = loadmat(str(path), squeeze_me=True, struct_as_record=True)
    ann = np.atleast_1d(mat["annotations"])
    paths = [str(p) for p in np.atleast_1d(ann["relative_im_path"])]
    classes = [int(c) for c in np.atleast_1d(ann["class"])]
    return list(zip(paths, classes))


def read(data_root, split: str = "test") -> LabelledList:
    """Images of the ``train`` (classes 1–98) or ``test`` (99–196) classes, int class ids."""
    if split not in SPLITS:
        raise ValueError(f"{NAME}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root, _ = find_dataset_dir(data_root, ["cars_annos.mat"], ["cars196", "Cars196", "CARS196", "stanford_cars"],
                               NAME, SOURCE)
    out = LabelledList(NAME, split, root, origins=[], source=SOURCE,
                       info={"split": f"classes {SPLITS[split].start}-{SPLITS[split].stop - 1}", "root": str(root)})
    for k, (rel, y) in enumerate(read_annotations(root / "cars_annos.mat")):
        if y in SPLITS[split]:
            out.add(root / rel, y, f"{root / 'cars_annos.mat'}: annotation {k}")
    return out
