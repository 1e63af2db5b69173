"""Stanford Online Products (Oh Song et al. 2016). ``Ebay_train.txt`` (11,318 classes, 59,551
images) and ``Ebay_test.txt`` (11,316 classes, 60,502 images); the class id is the label.

Official layout (``Stanford_Online_Products.zip``)::

    Stanford_Online_Products/Ebay_{train,test}.txt   header, then "image_id class_id super_class_id path"
    Stanford_Online_Products/<category>_final/<file>.JPG
"""
from __future__ import annotations

from .base import LabelledList, LayoutError, find_dataset_dir

NAME = "sop"
SOURCE = "Stanford Online Products, https://cvgl.stanford.edu/projects/lifted_struct/ (Stanford_Online_Products.zip)"
SPLITS = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}


def read(data_root, split: str = "test") -> LabelledList:
    """The ``train`` or ``test`` split: paths and int class ids, with ``file:line`` origins."""
    if split not in SPLITS:
        raise ValueError(f"{NAME}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root, marker = find_dataset_dir(data_root, [SPLITS[split]], ["Stanford_Online_Products"], NAME, SOURCE)
    out = LabelledList(NAME, split, root, origins=[], source=SOURCE, info={"split": marker, "root": str(root)})
    for n, line in enumerate((root / marker).read_text().splitlines()[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 4 or not parts[1].lstrip("-").isdigit():
            raise LayoutError(f"{root / marker}:{n}: expected 'image_id class_id super_class_id path', got {line!r}")
        out.add(root / parts[3], int(parts[1]), f"{root / marker}:{n}")
    return out
