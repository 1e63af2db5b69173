"""``sample``: the held-out concepts of the toolkit's own sample set (``make sample``), in the
image-folder layout ``DATA_ROOT/heldout/<concept>/*.jpg``. Every image is a query against all
the others. Offline: the set is drawn by ``python -m unicom.sample_data --output DIR``.
"""
from __future__ import annotations

from pathlib import Path

from . import image_folder
from .base import Benchmark, missing_file_error

NAME = "sample"
DEFAULT_ROOT = "data/sample"
SOURCE = "the toolkit's sample set: `make sample` or `python -m unicom.sample_data --output DIR` (no download)"


def load(data_root=None, **_) -> Benchmark:
    root = Path(data_root or DEFAULT_ROOT).expanduser()
    held = root / "heldout"
    if not held.is_dir():
        raise missing_file_error(NAME, [held / "<concept>" / "<image>.jpg"], SOURCE,
                                 hint="--data-root is the sample set directory (default data/sample)")
    bench = image_folder.load(held, name=NAME, source=SOURCE)
    bench.info["root"] = str(root)
    return bench
