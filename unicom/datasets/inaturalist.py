"""iNaturalist 2018 retrieval split (Brown et al., Smooth-AP, 2020): ``Inaturalist_train_set1.txt``
(5,690 species, 325,846 images) and ``Inaturalist_test_set1.txt`` (2,452 species, 136,093
images), one relative image path per line; the category id is the image's folder name.

Layout: the iNat 2018 images plus the split files, in one directory::

    Inat_dataset_splits/Inaturalist_{train,test}_set1.txt   one relative path per line
    train_val2018/<Supercategory>/<category_id>/<file>.jpg
"""
from __future__ import annotations

from pathlib import Path

from .base import LabelledList, LayoutError, find_dataset_dir

NAME = "inaturalist"
SPLITS = {"train": "Inat_dataset_splits/Inaturalist_train_set1.txt",
          "test": "Inat_dataset_splits/Inaturalist_test_set1.txt"}
SPLIT_FILE = SPLITS["test"]
SOURCE = ("iNaturalist 2018 images (train_val2018.tar.gz) from "
          "https://github.com/visipedia/inat_comp/tree/master/2018, plus the retrieval split files "
          "Inat_dataset_splits/Inaturalist_{train,test}_set1.txt from https://github.com/Andrew-Brown1/Smooth_AP")


def read(data_root, split: str = "test") -> LabelledList:
    """The ``train`` or ``test`` split file: paths and int category ids."""
    if split not in SPLITS:
        raise ValueError(f"{NAME}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root, marker = find_dataset_dir(data_root, [SPLITS[split]], ["iNaturalist", "inaturalist", "Inaturalist", "inat"],
                                    NAME, SOURCE)
    out = LabelledList(NAME, split, root, origins=[], source=SOURCE, info={"split": marker, "root": str(root)})
    for n, line in enumerate((root / marker).read_text().splitlines(), start=1):
        rel = line.strip()
        if not rel:
            continue
        category = Path(rel).parent.name
        if not category.isdigit():
            raise LayoutError(f"{root / marker}:{n}: the image's folder {category!r} is not a category id "
                              "(expected train_val2018/<Supercategory>/<category_id>/<file>.jpg)")
        out.add(root / rel, int(category), f"{root / marker}:{n}")
    return out
