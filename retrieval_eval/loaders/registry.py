"""Benchmark names → loaders. ``load_benchmark(name, data_root)`` returns a ``Benchmark``."""
from __future__ import annotations

import csv
import pickle
from functools import partial
from typing import Callable, Dict, List

from . import cars, csv_list, cub, digits, gldv2, image_folder, inaturalist, inshop, revisitop, sample, sop
from .base import Benchmark

LOADERS: Dict[str, Callable[..., Benchmark]] = {
    "cub": cub.load,
    "cars": cars.load,
    "sop": sop.load,
    "inshop": inshop.load,
    "inaturalist": inaturalist.load,
    "roxford5k": partial(revisitop.load, name="roxford5k"),
    "rparis6k": partial(revisitop.load, name="rparis6k"),
    "gldv2": gldv2.load,
    "image_folder": image_folder.load,
    "csv": csv_list.load,
    "sample": sample.load,
    "digits": digits.load,
}
ALIASES = {"cub200": "cub", "cars196": "cars", "stanford_online_products": "sop", "in-shop": "inshop",
           "inat": "inaturalist", "inat2018": "inaturalist", "roxford": "roxford5k", "rparis": "rparis6k",
           "folder": "image_folder", "image-folder": "image_folder", "csv_list": "csv"}


class BenchmarkReadError(ValueError):
    """A benchmark's files exist but cannot be parsed (the message names the benchmark and root)."""


def available_benchmarks() -> List[str]:
    """The benchmark names ``load_benchmark`` accepts (aliases aside)."""
    return list(LOADERS)


def load_benchmark(name: str, data_root=None, **options) -> Benchmark:
    """Load benchmark ``name`` from ``data_root`` (its official downloaded layout)."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in LOADERS:
        raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(LOADERS)}")
    try:
        return LOADERS[key](data_root, **options)
    except (pickle.UnpicklingError, EOFError, csv.Error, KeyError, IndexError) as exc:
        # the last net under every reader: a malformed file is a one-line error, not a traceback
        raise BenchmarkReadError(f"{key}: cannot read the benchmark's files under {data_root} "
                                 f"({type(exc).__name__}: {exc})") from exc
