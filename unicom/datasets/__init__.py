"""Dataset readers: one reader per official layout, shared by the trainer (train split,
``unicom-train --dataset``) and the evaluation (test split, ``unicom-eval --benchmark``).

``read_train_split(name, data_root)`` returns the ``LabelledList`` a training source uses.
"""
from __future__ import annotations

from typing import Callable, Dict, List

from . import cars, csv_list, cub, gldv2, image_folder, inaturalist, inshop, sop
from .base import (
    IMAGE_EXTENSIONS,
    DatasetNotFoundError,
    LabelledList,
    LayoutError,
    encode_labels,
    find_dataset_dir,
    list_images,
    missing_file_error,
    require_file,
)

__all__ = ["DatasetNotFoundError", "IMAGE_EXTENSIONS", "LabelledList", "LayoutError", "LABELLED_LAYOUTS",
           "encode_labels", "find_dataset_dir", "list_images", "missing_file_error", "read_train_split",
           "require_file", "training_datasets"]


def _csv_train(data_root) -> LabelledList:
    parts = csv_list.read(data_root)
    train, anysplit = parts["train"], parts[""]
    if len(train) and len(anysplit):  # rows without a split join the training rows
        for i in range(len(anysplit)):
            train.add(anysplit.paths[i], anysplit.labels[i], anysplit.origin(i))
    chosen = train if len(train) else anysplit
    if not len(chosen):
        raise LayoutError(f"{csv_list.locate(data_root)}: no training rows (need rows with split 'train' or no split)")
    chosen.split = "train"
    return chosen


# name -> reader of the train split
LABELLED_LAYOUTS: Dict[str, Callable[..., LabelledList]] = {
    "sop": lambda root: sop.read(root, "train"),
    "inshop": lambda root: inshop.read(root, "train"),
    "inaturalist": lambda root: inaturalist.read(root, "train"),
    "cub": lambda root: cub.read(root, "train"),
    "cars": lambda root: cars.read(root, "train"),
    "gldv2": lambda root: gldv2.read(root, "train"),
    "image_folder": lambda root: image_folder.read(root, "train", allow_empty=False)["train"],
    "csv": _csv_train,
}
ALIASES = {"cub200": "cub", "cars196": "cars", "stanford_online_products": "sop", "in-shop": "inshop",
           "inat": "inaturalist", "inat2018": "inaturalist", "folder": "image_folder", "image-folder": "image_folder",
           "csv_list": "csv"}


def training_datasets() -> List[str]:
    """The names ``read_train_split`` accepts (aliases aside)."""
    return list(LABELLED_LAYOUTS)


def canonical_name(name: str) -> str:
    """``name`` with aliases resolved (``cub200`` → ``cub``); unknown names are returned as given."""
    key = name.strip().lower()
    return ALIASES.get(key, key)


def read_train_split(name: str, data_root) -> LabelledList:
    """The train split of dataset ``name`` read from ``data_root`` (its official layout)."""
    key = canonical_name(name)
    if key not in LABELLED_LAYOUTS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(LABELLED_LAYOUTS)}, shards")
    return LABELLED_LAYOUTS[key](data_root)
