"""The choices and defaults of ``unicom-embed`` / ``unicom-search`` that their ``--help`` shows.

Import-light on purpose (stdlib only): the CLIs build their parsers from these before any
heavy import."""
from __future__ import annotations

import os

INPUT_TYPES = ("auto", "folder", "list", "shards")
DEFAULT_NAME = "images"          # the pseudo-shard name of a folder or list input
PRECISIONS = ("fp16", "bf16", "fp32")
OUTPUT_FORMATS = ("unicom", "clip-retrieval")


def default_workers() -> int:
    """DataLoader workers: the CPUs less one for the model, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))
