"""What ``--data`` names, resolved for clustering: shard paths, or an image folder or list file
cut into pseudo-shards. Below both the command line and the drawing code, which share it."""
from __future__ import annotations

import logging
from typing import Optional

from .config import ExtractConfig

FILES_PER_PSEUDO_SHARD = 10_000  # an image folder is read in pieces of this many images
log = logging.getLogger(__name__)


def resolve_data(spec: str, input_type: str = "auto", chunk: Optional[int] = None) -> tuple:
    """(inputs, names): shard paths, or the images of a folder or list file cut into pseudo-shards
    of ``chunk`` images (``ImageFiles`` named ``images``, or ``images-00000``, ``images-00001``,
    … when there are several), so that ranks share the work and a killed run resumes by chunk."""
    from dataclasses import replace

    from unicom.data.shards import shard_name
    from unicom.embed.dataset import resolve_input

    chunk = chunk or FILES_PER_PSEUDO_SHARD
    kind, items = resolve_input(spec, input_type)
    if kind != "files":
        return items, [shard_name(p) for p in items]
    if len(items.paths) <= chunk:
        return [items], [items.name]
    parts = [replace(items, name=f"{items.name}-{i // chunk:05d}", keys=items.keys[i:i + chunk],
                     paths=items.paths[i:i + chunk]) for i in range(0, len(items.paths), chunk)]
    return parts, [p.name for p in parts]


def image_only_note(inputs: list, ecfg: ExtractConfig) -> Optional[str]:
    """Images from a folder or list without a caption (``NAME.txt``) for every image are embedded
    alone: switch ``ecfg`` to image-only and return what the report says about it."""
    from unicom.data.images import sidecar_text

    files = [p for i in inputs if hasattr(i, "paths") for p in i.paths]
    if not files or ecfg.modality == "image":
        return None
    missing = sum(sidecar_text(p) is None for p in files)
    if not missing:
        return None
    if ecfg.modality == "text":
        raise ValueError(f"--modality text, but {missing} of {len(files)} images have no caption (NAME.txt beside "
                         "NAME.jpg); use --modality image or both")
    ecfg.modality = "image"
    note = f"image features alone: {missing} of {len(files)} images have no caption (NAME.txt beside NAME.jpg)"
    log.warning("%s", note)
    return note
