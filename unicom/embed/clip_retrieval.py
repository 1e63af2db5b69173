"""``unicom-embed --format clip-retrieval``: the features as clip-retrieval's inference output.

autofaiss reads an embeddings folder holding ``img_emb/`` (one or more ``img_emb_N.npy``) and
``metadata/`` (``metadata_N.parquet``, row i describing embedding i). clip-retrieval's back end
reads the same layout but embeds its queries with a CLIP model, which gives silently wrong
results for a Unicom encoder's vectors: serve them with ``unicom-serve``. The layout is owned
by ``unicom.formats.index``; this module fills it from a features directory: the rows in
shard-name order (the index's order), the image path, the key, and the caption where the input
has one (a shard sample's ``.txt``, or a ``NAME.txt`` beside an image file).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..data.images import sidecar_text
from ..formats.features import iter_shards, read_meta, resolve_features_dir
from ..formats.index import write_clip_retrieval


def shard_captions(tar_path: str) -> Dict[str, str]:
    """key → caption of a webdataset shard (the images are not decoded)."""
    from ..data.wds_reader import Sample, iter_samples

    return {s.key: s.caption for s in iter_samples([tar_path], need_image=False, decode=False)
            if isinstance(s, Sample) and s.caption}


def export_clip_retrieval(features, out_dir) -> Tuple[Path, Path]:
    """Write ``OUT/img_emb/img_emb_0.npy`` and ``OUT/metadata/metadata_0.parquet`` from the
    features directory ``features`` (``OUT`` or ``OUT/features``); returns the two paths."""
    fdir = resolve_features_dir(features)
    sources = read_meta(fdir).get("sources") or {}
    arrays: List[np.ndarray] = []
    paths: List[Optional[str]] = []
    keys: List[str] = []
    captions: List[Optional[str]] = []
    for name, feats, shard_keys in iter_shards(fdir):
        if not shard_keys:
            continue
        src = sources.get(name, {})
        arrays.append(np.asarray(feats, dtype=np.float32))
        keys.extend(shard_keys)
        if src.get("kind") == "files":
            root = Path(src["source"])
            paths.extend(str(root / k) for k in shard_keys)
            captions.extend(sidecar_text(root / k) for k in shard_keys)
        elif src.get("kind") == "tar":
            caps = shard_captions(src["source"])
            paths.extend(f"{src['source']}::{k}" for k in shard_keys)
            captions.extend(caps.get(k) for k in shard_keys)
        else:
            paths.extend([None] * len(shard_keys))
            captions.extend([None] * len(shard_keys))
    if not arrays:
        raise ValueError(f"{fdir} holds no features to export")
    return write_clip_retrieval(out_dir, np.concatenate(arrays), paths, keys, captions)
