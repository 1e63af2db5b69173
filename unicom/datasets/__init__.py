"""Dataset readers: one reader per official layout, shared by the trainer (train split,
``unicom-train --dataset``) and the evaluation (test split, ``unicom-eval --benchmark``).

``registry`` declares every dataset and benchmark once (name, aliases, ks, split);
``read_train_split(name, data_root)`` returns the ``LabelledList`` a training source uses.
"""
from __future__ import annotations

from typing import Callable, Dict

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
from .registry import DATASETS, canonical_name, dataset_spec, training_datasets

__all__ = ["DATASETS", "DatasetNotFoundError", "IMAGE_EXTENSIONS", "LabelledList", "LayoutError", "LABELLED_LAYOUTS",
           "canonical_name", "dataset_spec", "encode_labels", "find_dataset_dir", "list_images", "missing_file_error",
           "read_train_split", "require_file", "training_datasets"]


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


# name -> reader of the train split (the names with ``trains`` in ``registry``)
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


def read_train_split(name: str, data_root) -> LabelledList:
    """The train split of dataset ``name`` read from ``data_root`` (its official layout)."""
    key = canonical_name(name)
    if key not in LABELLED_LAYOUTS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(training_datasets())}, shards")
    return LABELLED_LAYOUTS[key](data_root)
