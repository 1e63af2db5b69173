"""Embed images with an encoder into the features format, batched, with AMP on CUDA.

``embed_to_features`` is what ``unicom-embed`` runs. ``encode_batch`` and ``embed_images``
live in ``unicom.models.inference`` (shared with unicom-eval and search) and are re-exported here.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..cli.progress import progress_bar
from ..data.decode import current_policy, policy_mismatch
from ..data.shards import shard_name, split_for_rank
from ..data.wds_reader import SkipCounter
from ..formats import features as ff
from ..models.inference import embed_images, encode_batch  # noqa: F401  (re-exported)
from ..pretrained.load import LoadedEncoder, load_encoder
from ..runtime.distributed import all_gather_object, barrier, broadcast_object, get_rank, get_world_size
from ..runtime.precision import DEFAULT_PRECISION, PRECISIONS
from .dataset import (
    DEFAULT_NAME,
    FileCollate,
    ImageFileDataset,
    ImageFiles,
    ShardBatches,
    default_workers,
    identity,
    resolve_input,
)

log = logging.getLogger(__name__)
WEIGHTS_SHA256 = "weights_sha256"   # meta.json / index.json: the SHA-256 of the encoder's weights file


@dataclass
class EmbedResult:
    features_dir: Path
    written: Dict[str, int]       # shard name → rows written in this run
    skipped_shards: List[str]     # already done, left alone
    skips: SkipCounter
    encoder: LoadedEncoder

    @property
    def total(self) -> int:
        return sum(self.written.values())


def split_pieces(files: ImageFiles, piece_size: Optional[int]) -> List[ImageFiles]:
    """A folder or list input as pieces of at most ``piece_size`` images, named ``NAME-00000``, …
    (one piece keeps the plain ``NAME``). The pieces depend on the input alone, never on the
    number of processes, so any number of ranks writes the same files."""
    n = len(files.keys)
    if not piece_size or n <= piece_size:
        return [files]
    return [ImageFiles(f"{files.name}-{i // piece_size:05d}", files.root, files.keys[i:i + piece_size],
                       files.paths[i:i + piece_size]) for i in range(0, n, piece_size)]


def embed_to_features(model: Union[str, os.PathLike, LoadedEncoder], input_spec: str, out: Union[str, os.PathLike],
                      input_type: str = "auto", batch_size: int = 64, workers: Optional[int] = None,
                      device: Optional[str] = None, precision: str = DEFAULT_PRECISION,
                      image_size: Optional[int] = None,
                      heads: Optional[int] = None, name: str = DEFAULT_NAME, overwrite: bool = False,
                      progress: bool = True, piece_size: Optional[int] = None, feature_dtype: str = "float16",
                      resolved: Optional[tuple] = None) -> EmbedResult:
    """Embed ``input_spec`` (folder, list file or shards) into ``out/features/``.

    Finished shards (and pieces of a folder, ``piece_size`` images each) are skipped unless
    ``overwrite``. Under torchrun the shards or pieces are shared round-robin over the ranks
    (each rank calls this with its own encoder on its own device); the files written do not
    depend on the number of ranks. The features directory must hold the features of one
    encoder and one image decode policy (``unicom.data.decode``; images are decoded under the
    process's, ``--background``): a different encoder or policy, or another source under the same
    pseudo-shard name, is an error. ``resolved`` is ``resolve_input``'s answer when the caller has it already.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if feature_dtype not in ff.FEATURE_DTYPES:
        raise ValueError(f"--feature-dtype {feature_dtype!r}: choose from {', '.join(ff.FEATURE_DTYPES)}")
    enc = model if isinstance(model, LoadedEncoder) else load_encoder(model, device=device, image_size=image_size,
                                                                       heads=heads, progress=progress)
    kind, items = resolved if resolved is not None else resolve_input(str(input_spec), input_type, name)
    rank, world = get_rank(), get_world_size()
    fdir = ff.features_dir(out)
    from ..formats.fingerprint import weights_sha256

    sha = weights_sha256(enc.weights)  # content identity: what "already done" relies on
    meta = _check_meta(_drop_if_other_weights(ff.read_meta(fdir), enc, sha, fdir, remove=rank == 0), enc, sha, fdir)
    sources = dict(meta.get("sources") or {})
    pieces = split_pieces(items, piece_size) if kind == "files" else []
    new_sources = ({p.name: {"kind": "files", "source": items.source} for p in pieces} if kind == "files" else
                   {shard_name(s): {"kind": "tar", "source": _abs(s)} for s in items})
    for shard, rec in new_sources.items():
        old = sources.get(shard)
        if old and old.get("source") != rec["source"] and not overwrite:
            raise ValueError(f"{fdir} already holds a shard named {shard!r} from {old.get('source')}; pass another "
                             f"--name / --output, or --overwrite")
    stale = [s for s in sources if kind == "files" and s not in new_sources and _piece_of(s, items.name)]
    for s in stale:
        sources.pop(s)
    sources.update(new_sources)
    meta.update(sources=sources, feature_dtype=feature_dtype)
    barrier()  # every rank has checked the old meta.json before rank 0 writes the new one
    if rank == 0:
        for s in stale:  # pieces of another split of the same input (it grew or shrank)
            ff.remove_shard(fdir, s)
        ff.write_meta(fdir, meta)

    workers = default_workers() if workers is None else int(workers)
    skips = SkipCounter()
    written: Dict[str, int] = {}
    # rank 0 stamps each input once, before it is read, and decides what is left to do: the done
    # check and the new record share the stamp, and every rank agrees on the split
    units = [p.name for p in pieces] if kind == "files" else [shard_name(s) for s in items]
    plan = None
    if rank == 0:
        stamps = ({p.name: ff.input_stamp(p.paths) for p in pieces} if kind == "files" else
                  {shard_name(s): ff.input_stamp(s) for s in items})
        todo = [u for u in units if overwrite or _todo(fdir, u, stamps[u]) is not None]
        plan = (todo, stamps)
    todo, stamps = broadcast_object(plan, src=0)
    skipped_shards = [u for u in units if u not in todo]
    mine = set(split_for_rank(todo, rank, world))
    if kind == "files":
        for p in pieces:
            if p.name in mine:
                written[p.name] = _embed_files(enc, p, fdir, batch_size, workers, precision, skips, progress,
                                               stamps[p.name], feature_dtype)
    else:
        shards = [s for s in items if shard_name(s) in mine]
        if shards:
            written.update(_embed_shards(enc, shards, fdir, batch_size, workers, precision, skips, progress, stamps,
                                         feature_dtype))
    if world > 1:
        skips = skips.all_reduce()
        written = {k: v for part in all_gather_object(written) for k, v in part.items()}
    barrier()
    if rank == 0:
        meta.update(skipped=skips.as_dict())
        ff.write_meta(fdir, meta)
    return EmbedResult(fdir, written, skipped_shards, skips, enc)


def _piece_of(shard: str, name: str) -> bool:
    """True when ``shard`` is the input ``name`` itself or one of its pieces (``NAME-00000``)."""
    return shard == name or (shard.startswith(name + "-") and shard[len(name) + 1:].isdigit())


def _todo(fdir: Path, name: str, stamp: Dict) -> Optional[str]:
    """Why shard ``name`` (its input stamped ``stamp``) must be embedded (again), or None when it
    is done (``ff.extraction_todo``)."""
    why = ff.extraction_todo(fdir, name, stamp)
    if why is not None and why != "no features yet":
        log.warning("shard %s is embedded again: %s", name, why)
    return why


def _write(fdir: Path, name: str, feats: List[np.ndarray], keys: List[str], dim: int, skips: SkipCounter,
           stamp: Dict, dtype: str = "float16") -> None:
    """Write one shard's features, keys and record (its input's stamp and what was read)."""
    arr = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    ff.write_shard(fdir, name, arr, keys, {"input": stamp, "samples_read": len(keys) + skips.total,
                                           "skipped": skips.as_dict(), "skip_examples": skips.examples,
                                           "decode": current_policy().record()}, dtype=dtype)


def _drop_if_other_weights(meta: dict, enc: LoadedEncoder, sha: Optional[str], fdir: Path,
                           remove: bool = True) -> dict:
    """When the encoder's weights changed at the same path since ``fdir`` was written (meta.json
    holds another SHA-256 than ``sha``, the weights' now), every shard there is stale: remove
    them all, with a warning that says why, and return an empty meta (the folder then holds this
    encoder's features only). Under torchrun only rank 0 removes (``remove``); every rank gets
    the empty meta."""
    from ..formats.fingerprint import short

    old, new = meta.get(WEIGHTS_SHA256), sha
    if not old or new is None or old == new or meta.get("model") != portable_source(enc.source):
        return meta  # the same weights, or another encoder altogether (refused by _check_meta)
    names = sorted(p.name[:-len(ff.RECORD_SUFFIX)] for p in fdir.glob(f"*{ff.RECORD_SUFFIX}")) + [
        n for n in ff.shard_names(fdir) if not ff.record_path(fdir, n).exists()]
    log.warning("the encoder's weights %s changed since the features in %s were made (sha256 %s → %s): its %d "
                "shard(s) are removed and embedded again", enc.weights, fdir, short(old), short(new), len(set(names)))
    for name in set(names) if remove else ():
        ff.remove_shard(fdir, name)
    return {}


def _check_meta(meta: dict, enc: LoadedEncoder, sha: Optional[str], fdir: Path) -> dict:
    record = enc.describe()
    record["model"] = portable_source(enc.source)
    record[WEIGHTS_SHA256] = sha
    if meta:
        for key in ("model", "image_size", "embed_dim"):
            if key in meta and meta[key] != record[key]:
                raise ValueError(f"{fdir} holds features of another encoder ({key}: {meta[key]!r}, this run: "
                                 f"{record[key]!r}); write to another --output")
        why = policy_mismatch(meta.get("decode"))
        if why and meta.get("decode"):
            raise ValueError(f"{fdir} holds features whose images were decoded differently: {why}; write to another "
                             "--output, or give the --background it was made with")
        if why and meta.get("sources"):
            log.warning("%s: %s; shards embedded now use the current policy", fdir, why)
    return {**meta, **record, "dim": enc.embed_dim, "image_weight": 1.0, "text_weight": 0.0, "normalised": True,
            "decode": current_policy().record()}


def _abs(path: str) -> str:
    return path if "://" in path or path.startswith("pipe:") else os.path.abspath(path)


def portable_source(source: str) -> str:
    """How an encoder is recorded in meta.json and index.json: names stay names; paths become
    absolute, so a later search finds the same encoder."""
    from ..pretrained.registry import is_known_name

    return source if is_known_name(source) else os.path.abspath(os.path.expanduser(source))


def _loader_kwargs(workers: int, device: torch.device) -> dict:
    kw = {"num_workers": workers, "pin_memory": device.type == "cuda"}
    if workers > 0:
        kw["persistent_workers"] = False
        kw["prefetch_factor"] = 2
    return kw


def _embed_files(enc: LoadedEncoder, files: ImageFiles, fdir: Path, batch_size: int, workers: int, precision: str,
                 skips: SkipCounter, progress: bool, stamp: Dict, dtype: str = "float16") -> int:
    device = enc.device
    loader = DataLoader(ImageFileDataset(files, enc.transform), batch_size=batch_size, shuffle=False,
                        collate_fn=FileCollate(files), **_loader_kwargs(workers, device))
    feats: List[np.ndarray] = []
    keys: List[str] = []
    mine = SkipCounter()
    with progress_bar(progress, total=len(files.paths), unit="img", desc=f"embed {files.name}") as bar:
        for batch in loader:
            skips.update(batch.skips)
            mine.update(batch.skips)
            if batch.images is not None:
                feats.append(encode_batch(enc, batch.images, precision))
                keys.extend(files.keys[i] for i in batch.indices)
            bar.update(len(batch.indices) + len(batch.skips))
    _write(fdir, files.name, feats, keys, enc.embed_dim, mine, stamp, dtype)
    return len(keys)


def _embed_shards(enc: LoadedEncoder, shards: List[str], fdir: Path, batch_size: int, workers: int, precision: str,
                  skips: SkipCounter, progress: bool, stamps: Dict[str, Dict], dtype: str = "float16"
                  ) -> Dict[str, int]:
    device = enc.device
    workers = min(workers, len(shards))
    loader = DataLoader(ShardBatches(shards, enc.transform, batch_size), batch_size=None, collate_fn=identity,
                        **_loader_kwargs(workers, device))
    pending: Dict[str, tuple] = {}
    written: Dict[str, int] = {}
    with progress_bar(progress, unit="img", desc=f"embed {len(shards)} shards") as bar:
        for batch in loader:
            skips.update(batch.skips)
            feats, keys, mine = pending.setdefault(batch.shard, ([], [], SkipCounter()))
            mine.update(batch.skips)
            if batch.images is not None:
                feats.append(encode_batch(enc, batch.images, precision))
                keys.extend(batch.keys)
            bar.update(len(batch.keys) + len(batch.skips))
            if batch.last:
                feats, keys, mine = pending.pop(batch.shard)
                _write(fdir, batch.shard, feats, keys, enc.embed_dim, mine, stamps[batch.shard], dtype)
                written[batch.shard] = len(keys)
                bar.set_postfix(shards=f"{len(written)}/{len(shards)}")
    return written
