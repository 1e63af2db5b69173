"""Stage 1: embed every sample of the shards with an open_clip model and write fused features.

Each image goes through the model's eval transform and each caption through its tokenizer (in
DataLoader workers); the two embeddings are fused (``fusion.fuse``) and written per shard
(``unicom.formats.features``). Shards are shared over torchrun ranks round-robin; rank 0 decides which
shards are still to do and tells the others, so every shard is written exactly once. A shard
whose files exist is skipped, which is how a killed run resumes.
"""
from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from unicom.cli.progress import progress_bar
from unicom.data.decode import DecodePolicy
from unicom.data.shards import shard_name, split_for_rank, unique_names
from unicom.data.wds_reader import SkipCounter
from unicom.formats import features as ff
from unicom.formats.fingerprint import weights_sha256
from unicom.runtime.device import autocast
from unicom.runtime.distributed import DistContext, all_gather_object, barrier, broadcast_object
from unicom.runtime.precision import announce_precision

from . import feature_store as fs
from .config import ExtractConfig
from .dataset import FileSampleDataset, ShardSampleDataset, collate
from .fusion import fuse, modality_weights

log = logging.getLogger(__name__)


@dataclass
class ExtractResult:
    """What one rank did (``written`` etc.) and what all ranks did together (``*_total``)."""

    written: List[str] = field(default_factory=list)
    samples: int = 0
    skipped: SkipCounter = field(default_factory=SkipCounter)
    seconds: float = 0.0             # the data loop alone (model building excluded)
    setup_seconds: float = 0.0
    model_seconds: float = 0.0
    already_done: int = 0
    written_by_rank: List[List[str]] = field(default_factory=list)
    samples_total: int = 0
    unreadable: List[str] = field(default_factory=list)
    inputs: Dict[str, Dict] = field(default_factory=dict)   # shard name → ff.input_stamp, taken before reading

    @property
    def model_busy(self) -> float:
        return self.model_seconds / self.seconds if self.seconds > 0 else 0.0


def _pretrained_id(pretrained: str) -> str:
    return os.path.abspath(pretrained) if pretrained and os.path.isfile(pretrained) else str(pretrained)


def _embed_dim(model: torch.nn.Module, tokenizer, device: torch.device) -> int:
    from unicom.models.clip_loader import model_dims

    d = model_dims(model)["embed_dim"]
    if d is None:  # unusual tower: ask the model
        with torch.inference_mode():
            tok = tokenizer(["probe"]).to(device)
            d = int(model.encode_text(tok).shape[-1])
    return int(d)


class _ShardBuffer:
    """Features, keys and ground truth of one shard while its batches arrive."""

    def __init__(self):
        self.feats: List[np.ndarray] = []
        self.keys: List[str] = []
        self.truth: List[Any] = []
        self.skips = SkipCounter()


def input_name(item: Any) -> str:
    """The feature-shard name of one input: a shard path's name, or an image list's pseudo-shard."""
    return item.name if hasattr(item, "paths") else shard_name(item)


def input_source(item: Any) -> Any:
    """What ``ff.input_stamp`` stamps for one input: a shard's path, or an image list's files."""
    return list(item.paths) if hasattr(item, "paths") else item


def extract_features(shard_paths: Sequence[Any], out: str, cfg: ExtractConfig, ctx: DistContext,
                     model_bundle: Optional[tuple] = None) -> ExtractResult:
    """Write ``OUT/features/`` for ``shard_paths``; return this rank's and the run's counts.

    The inputs are shard paths or image lists (``unicom.embed.dataset.ImageFiles``: an image
    folder or list file, one pseudo-shard each).

    ``model_bundle`` = ``(model, preprocess, tokenizer)`` reuses a model already built
    (benchmarks, tests); otherwise ``create_clip(cfg.model, cfg.pretrained)`` builds it."""
    from unicom.models.clip_loader import create_clip

    t0 = time.time()
    unique_names([p for p in shard_paths if isinstance(p, str)])
    wi, wt = modality_weights(cfg.modality, cfg.image_weight, cfg.text_weight)
    device = ctx.device
    res = ExtractResult()
    settings = {"model": cfg.model, "pretrained": _pretrained_id(cfg.pretrained), "modality": cfg.modality,
                "image_weight": wi, "text_weight": wt, fs.PRETRAINED_SHA256: weights_sha256(cfg.pretrained),
                "decode": decode_policy(cfg).record()}
    fdir = ff.features_dir(out)
    # rank 0 decides and removes stale shards; the broadcast holds the other ranks until it is done
    broadcast_object(fs.drop_if_other_weights(ff.read_meta(fdir), settings, out) if ctx.is_main else None, src=0)
    fs.check_meta(ff.read_meta(fdir), settings, out)
    pending, stamps = broadcast_object(_pending(shard_paths, fdir) if ctx.is_main else None, src=0)
    if pending and model_bundle is None:  # with nothing to do, the model is never built or loaded
        model_bundle = create_clip(cfg.model, cfg.pretrained, device=device)
    if pending:
        model, preprocess, tokenizer = model_bundle
        model.eval()
        dim = _embed_dim(model, tokenizer, device)
        meta = dict(settings, dim=dim, dtype="float16", normalised=True,
                    fusion="normalise(w_img*normalise(img) + w_txt*normalise(txt))", truth_field=cfg.truth_field)
        try:
            import open_clip

            meta["open_clip_version"] = open_clip.__version__
        except Exception:  # pragma: no cover
            pass
        fs.check_meta(ff.read_meta(fdir), meta, out)
        barrier()  # every rank has checked the existing meta before rank 0 writes a new one
        if ctx.is_main and not ff.read_meta(fdir):
            ff.write_meta(fdir, meta)
    res.already_done = len(shard_paths) - len(pending)
    mine = split_for_rank(pending, ctx.rank, ctx.world_size)
    if ctx.is_main and res.already_done:
        log.info("%d of %d shards already have features: skipped", res.already_done, len(shard_paths))
    if mine:
        model, preprocess, tokenizer = model_bundle
        t1 = time.time()
        res.inputs = {input_name(p): stamps[input_name(p)] for p in mine}
        _run_loader(mine, out, cfg, model, preprocess, tokenizer, wi, wt, dim, device, res)
        res.seconds = time.time() - t1
    res.setup_seconds = time.time() - t0 - res.seconds
    barrier()
    res.written_by_rank = all_gather_object(res.written)
    res.samples_total = sum(all_gather_object(res.samples))
    res.skipped = res.skipped.all_reduce() if ctx.is_distributed else res.skipped
    return res


def decode_policy(cfg: ExtractConfig) -> DecodePolicy:
    """The image decode policy of ``--background`` / ``--max-image-pixels``."""
    return DecodePolicy.from_settings(cfg.background, cfg.max_image_pixels)


def _dataset(mine: List[Any], cfg: ExtractConfig, preprocess, tokenizer, wi: float, wt: float):
    """The DataLoader's dataset for this rank's inputs, and their sample count when known."""
    kw = dict(need_image=wi > 0, need_caption=wt > 0, truth_field=cfg.truth_field, policy=decode_policy(cfg))
    pre, tok = preprocess if wi > 0 else None, tokenizer if wt > 0 else None
    files = [m for m in mine if hasattr(m, "paths")]
    if files and len(files) != len(mine):
        raise ValueError("give either shards or one image folder / list file, not both")
    if files:
        return FileSampleDataset(files, pre, tok, **kw), sum(len(f.paths) for f in files)
    return ShardSampleDataset(mine, pre, tok, **kw), None


def _run_loader(mine: List[Any], out: str, cfg: ExtractConfig, model, preprocess, tokenizer,
                wi: float, wt: float, dim: int, device: torch.device, res: ExtractResult) -> None:
    ds, total = _dataset(mine, cfg, preprocess, tokenizer, wi, wt)
    workers = max(0, min(cfg.workers, len(mine)))
    loader = DataLoader(ds, batch_size=cfg.batch_size, num_workers=workers, collate_fn=collate,
                        pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None,
                        persistent_workers=False)
    # CLIP image and text towers under autocast (auto: bf16 on GPUs and on CPUs with native bf16);
    # fuse() normalises in float32
    precision = announce_precision(cfg.precision, device, "CLIP towers")
    buffers: Dict[str, _ShardBuffer] = defaultdict(_ShardBuffer)
    bar = progress_bar(cfg.progress, total=total, unit="sample", desc="extract")
    t_start = last_log = time.time()
    # one outer autocast context: the towers' weights are cast once, not per batch (the inner ones nest)
    with autocast(device, precision):
        for batch in loader:
            for s in batch["skips"]:
                res.skipped.add(s)
                buffers[s.shard].skips.add(s)
            if batch["keys"]:
                t = time.time()
                with torch.inference_mode(), autocast(device, precision):
                    img = model.encode_image(batch["images"].to(device, non_blocking=True)) if wi > 0 else None
                    txt = model.encode_text(batch["tokens"].to(device, non_blocking=True)) if wt > 0 else None
                    feats = fuse(img, txt, wi, wt).to(torch.float16).cpu().numpy()
                res.model_seconds += time.time() - t   # .cpu() synchronises, so this is true GPU time
                if feats.shape[1] != dim:
                    raise RuntimeError(f"model gave {feats.shape[1]}-d features, expected {dim}")
                start = 0
                for shard, n in _runs(batch["shards"]):
                    b = buffers[shard]
                    b.feats.append(feats[start:start + n])
                    b.keys.extend(batch["keys"][start:start + n])
                    b.truth.extend(batch["truth"][start:start + n])
                    start += n
                res.samples += len(batch["keys"])
            bar.update(len(batch["keys"]) + len(batch["skips"]))
            for shard in batch["ends"]:
                _finish_shard(out, shard, buffers.pop(shard, _ShardBuffer()), dim, cfg, res)
                if total is None:  # shards: estimate the total from the shards finished so far
                    bar.total = int(bar.n * len(mine) / len(res.written + res.unreadable))
                bar.set_postfix(shards=f"{len(res.written)}/{len(mine)}")
            if bar.disable and time.time() - last_log > cfg.log_every_s:  # no bar: a line now and then
                last_log = time.time()
                log.info("%d samples, %d/%d shards written, %.1f samples/s", res.samples, len(res.written),
                         len(mine), res.samples / max(last_log - t_start, 1e-9))
    bar.close()
    if buffers:  # every shard must have ended; anything left means a reader bug
        raise RuntimeError(f"shards {sorted(buffers)} produced samples but never finished")


def _pending(shard_paths: Sequence[Any], fdir) -> Tuple[List[Any], Dict[str, Dict]]:
    """The inputs to extract: those not done by ``ff.extraction_todo``'s rule (re-extractions are
    logged), and their ``ff.input_stamp`` by name. Each input is stamped once, here, before it is
    read: the done check and the new record share the stamp, and a change during the read shows
    in the next run."""
    out = []
    stamps: Dict[str, Dict] = {}
    for p in shard_paths:
        stamp = ff.input_stamp(input_source(p))
        why = ff.extraction_todo(fdir, input_name(p), stamp)
        if why is not None:
            out.append(p)
            stamps[input_name(p)] = stamp
            if why != "no features yet":
                log.warning("shard %s is extracted again: %s", input_name(p), why)
    return out, stamps


def _runs(names: List[str]):
    """Consecutive runs of equal shard names: [(name, count), ...]."""
    out: List[list] = []
    for n in names:
        if out and out[-1][0] == n:
            out[-1][1] += 1
        else:
            out.append([n, 1])
    return out


def _finish_shard(out: str, shard: str, buf: _ShardBuffer, dim: int, cfg: ExtractConfig,
                  res: ExtractResult) -> None:
    if not buf.keys and buf.skips.counts.get("unreadable_shard"):
        # Nothing could be read: leave it undone so that a re-run tries it again.
        log.warning("shard %s could not be read; no features written (a re-run retries it)", shard)
        res.unreadable.append(shard)
        return
    feats = np.concatenate(buf.feats) if buf.feats else np.zeros((0, dim), np.float16)
    truth = None
    if cfg.truth_field and any(t is not None for t in buf.truth):
        truth = {"field": cfg.truth_field, "values": [None if t is None else str(t) for t in buf.truth]}
    info = {"skipped": buf.skips.as_dict(), "skip_examples": buf.skips.examples, "ground_truth": truth,
            "input": res.inputs.get(shard, {}), "samples_read": len(buf.keys) + buf.skips.total,
            "decode": decode_policy(cfg).record()}
    ff.write_shard(ff.features_dir(out), shard, feats, buf.keys, info)
    res.written.append(shard)
    log.debug("shard %s: %d samples written%s", shard, len(buf.keys),
             f", {buf.skips.total} skipped" if buf.skips.total else "")
