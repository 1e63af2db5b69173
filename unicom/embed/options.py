"""The choices and defaults of ``unicom-embed`` / ``unicom-search`` that their ``--help`` shows.

Import-light on purpose (stdlib and ``unicom.runtime.precision`` only): the CLIs build their parsers
from these before any heavy import."""
from __future__ import annotations

import os

from ..runtime.precision import DEFAULT_PRECISION, PRECISIONS  # noqa: F401  (re-exported for the CLIs)

INPUT_TYPES = ("auto", "folder", "list", "shards")
DEFAULT_NAME = "images"          # the pseudo-shard name of a folder or list input
OUTPUT_FORMATS = ("unicom", "clip-retrieval")


def default_workers() -> int:
    """DataLoader workers: the CPUs less one for the model, at most 4."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))
