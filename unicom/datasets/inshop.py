"""DeepFashion In-Shop Clothes Retrieval (Liu et al. 2016): ``list_eval_partition.txt`` puts
each image in ``train`` (3,997 items, 25,882 images), ``query`` or ``gallery``; the item id is
the label.

Official layout::

    Inshop_Clothes/Eval/list_eval_partition.txt   count, header, then "image_name item_id status"
    Inshop_Clothes/Img/img/<GENDER>/<category>/<item_id>/<file>.jpg
"""
from __future__ import annotations

from .base import LabelledList, find_dataset_dir

NAME = "inshop"
SOURCE = ("DeepFashion In-shop Clothes Retrieval Benchmark, "
          "https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html "
          "(Eval/list_eval_partition.txt and Img/img.zip)")
SPLITS = ("train", "query", "gallery")


def read(data_root, split: str = "query") -> LabelledList:
    """The ``train``, ``query`` or ``gallery`` rows: paths and item-id strings."""
    if split not in SPLITS:
        raise ValueError(f"{NAME}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    root, marker = find_dataset_dir(data_root, ["Eval/list_eval_partition.txt", "list_eval_partition.txt"],
                                    ["Inshop_Clothes", "InShop", "inshop"], NAME, SOURCE)
    image_base = root / "Img" if (root / "Img").is_dir() else root
    out = LabelledList(NAME, split, root, origins=[], source=SOURCE,
                       info={"split": f"list_eval_partition.txt {split}", "root": str(root)})
    for n, line in enumerate((root / marker).read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) == 3 and parts[2] == split:
            out.add(image_base / parts[0], parts[1], f"{root / marker}:{n}")
    return out
