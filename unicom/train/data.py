"""Training data: LAION-style shards joined with pseudo labels, streamed so that the position is
restorable exactly.

Labels (docs/formats.md, "Centroids and labels"): ``LABELS/SHARD.npy`` (int32 [n]) is aligned with
``FEATURES/SHARD.keys`` (n lines of ``__key__``), the features dir being the labels dir's sibling;
``LABELS/class_sizes.npy`` (int64 [K]) gives the number of classes. A sample joins its label by
shard name and key; a sample with no label (or a negative one) is skipped and counted as
``no_label``. Corrupt samples are skipped and counted by ``unicom.data.wds_reader``.

Streams. Each (rank, DataLoader worker) pair is one *stream*; there are ``S = world_size ·
max(1, num_workers)`` of them. The shards form one infinite global sequence: pass ``p`` is a
permutation of the shard list seeded by ``(seed, p)``, and the passes follow each other. Stream
``s`` reads positions ``offset + s, offset + s + S, …`` of that sequence (webdataset's
split-by-node plus split-by-worker over a repeated, reshuffled shard list). With
``resampled: true`` each stream instead draws shards with replacement from its own seeded
generator (webdataset's ``ResampledShards``), for multi-node runs where shards do not divide
evenly. Streams never end; an epoch is a number of samples (``data.samples_per_epoch``).

Shuffling. A stream reads ``shuffle_buffer`` consecutive records (crossing shard boundaries) into
a block, permutes the block with a generator seeded by the block's start, and yields it. A
record's augmentation (random resized crop, flip) is drawn from a generator seeded by its
position. The position of a stream is therefore the cursor ``(i, r, o)``: the block starts at
record ``r`` of the ``i``-th shard of the stream's sequence, and ``o`` records of the block have
been yielded. Restoring re-reads one block (without decoding the records before ``r``) and
skips ``o``: the stream continues exactly, whatever happened before.

Batches. A worker yields batches of exactly ``batch_size`` good samples together with the
``Skipped`` records met while filling them, and with its stream id and cursor; the collate
function separates them with ``split_skips``. The DataLoader takes batches from its workers in
turn, so after ``b`` batches the next one comes from worker ``b mod W``; on resume the workers'
roles are rotated by that phase, which makes the batch order identical too. Resuming on a
different number of streams (other world size or worker count) restarts every stream at the
earliest shard position that any old stream had not finished: nothing is lost, a few samples
may be seen twice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from ..data.decode import current_policy
from ..data.shards import shard_name
from ..data.transforms import to_rgb
from ..data.wds_reader import Skipped, iter_raw, split_skips, to_sample
from ..formats.atomic_io import read_npy
from ..formats.features import CLASS_SIZES_FILE, FEATURES_DIR, read_keys
from .inputs import label_problem


# --------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------
class LabelIndex:
    """Per-shard pseudo labels, loaded lazily one shard at a time (a LAION-scale key table
    never has to fit in memory)."""

    def __init__(self, labels_dir, features_dir=None):
        self.labels_dir = Path(labels_dir)
        self.features_dir = Path(features_dir) if features_dir else self.labels_dir.parent / FEATURES_DIR
        self.class_sizes_path = sizes_path = self.labels_dir / CLASS_SIZES_FILE
        if not sizes_path.is_file():
            raise FileNotFoundError(f"{sizes_path} not found: --labels must be the labels dir written by "
                                    "`make cluster` (OUT/labels, holding SHARD.npy and class_sizes.npy)")
        self.class_sizes = read_npy(sizes_path).astype(np.int64)
        if self.class_sizes.ndim != 1 or len(self.class_sizes) == 0:
            raise ValueError(f"{sizes_path} must be a non-empty 1-D array of class sizes")
        self.num_classes = int(len(self.class_sizes))
        self._cache: Dict[str, Optional[Dict[str, int]]] = {}

    def labels_path(self, name: str) -> Path:
        """``LABELS/SHARD.npy``."""
        return self.labels_dir / f"{name}.npy"

    def keys_path(self, name: str) -> Path:
        """``FEATURES/SHARD.keys``."""
        return self.features_dir / f"{name}.keys"

    def has_shard(self, name: str) -> bool:
        return self.labels_path(name).is_file() and self.keys_path(name).is_file()

    def shard_labels(self, name: str) -> Optional[Dict[str, int]]:
        """``{key: label}`` for shard ``name`` (labels < 0 left out), or None without labels."""
        if name in self._cache:
            return self._cache[name]
        if not self.has_shard(name):
            table = None
        else:
            keys = read_keys(self.keys_path(name))
            labels = read_npy(self.labels_path(name))
            why = label_problem(labels, len(keys), self.num_classes)  # checked up front too (validate_labels)
            if why:
                raise ValueError(f"{self.labels_path(name)} {why}")
            table = {k: int(v) for k, v in zip(keys, labels.tolist()) if v >= 0}
        if len(self._cache) >= 8:
            self._cache.pop(next(iter(self._cache)))
        self._cache[name] = table
        return table

    def label_for(self, raw: Dict[str, Any], shard: str, key: str) -> Optional[int]:
        """The label of one raw record (by shard name and key), or None."""
        table = self.shard_labels(shard)
        return None if table is None else table.get(key)

    def check_shards(self, shards: Sequence[str]) -> List[str]:
        """Return the shards that have no labels (their samples will count as ``no_label``);
        raise if none of them has any."""
        missing = [s for s in shards if not self.has_shard(shard_name(s))]
        if len(missing) == len(shards):
            raise FileNotFoundError(
                f"none of the {len(shards)} data shards has labels in {self.labels_dir} (with keys in "
                f"{self.features_dir}); e.g. {shard_name(shards[0])}.npy is missing. Run `make cluster` on the "
                "same shards, or point --labels at its OUT/labels")
        return missing


# --------------------------------------------------------------------------------------------
# Augmentation drawn from an explicit generator (so it is a function of the sample's position)
# --------------------------------------------------------------------------------------------
class SeededAugment:
    """Random resized crop (torchvision's sampling rule, bicubic), horizontal flip, to tensor,
    normalise; every random draw comes from the numpy generator passed in."""

    def __init__(self, image_size: int, mean, std, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), hflip: float = 0.5):
        self.size = int(image_size)
        self.mean, self.std = list(mean), list(std)
        self.scale, self.ratio, self.hflip = tuple(scale), tuple(ratio), float(hflip)

    def crop_params(self, width: int, height: int, rng: np.random.Generator) -> Tuple[int, int, int, int]:
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return top, left, h, w
        in_ratio = width / height  # fallback: centre crop at the nearest allowed ratio
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            h, w = height, int(round(height * max(self.ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        if image.mode != "RGB":  # the readers give RGB already; an image from elsewhere gets the decode policy
            image = to_rgb(image)
        top, left, h, w = self.crop_params(image.width, image.height, rng)
        image = TF.resized_crop(image, top, left, h, w, [self.size, self.size],
                                interpolation=InterpolationMode.BICUBIC, antialias=True)
        if self.hflip > 0 and rng.random() < self.hflip:
            image = TF.hflip(image)
        return TF.normalize(TF.to_tensor(image), self.mean, self.std)


# --------------------------------------------------------------------------------------------
# Shard sequences and cursors
# --------------------------------------------------------------------------------------------
@dataclass
class ShardPlan:
    """Which shard each stream reads at each position of its sequence."""

    shards: Tuple[str, ...]
    seed: int
    num_streams: int
    offset: int = 0           # global sequence position of stream 0's first shard
    resampled: bool = False
    generation: int = 0       # resampled mode: bumped when the stream layout changes on resume

    def __post_init__(self):
        self.shards = tuple(self.shards)
        if not self.shards:
            raise ValueError("no shards to train on")

    def global_position(self, stream: int, i: int) -> int:
        return self.offset + stream + i * self.num_streams

    def shard(self, stream: int, i: int) -> str:
        n = len(self.shards)
        if self.resampled:
            rng = np.random.default_rng([self.seed, 7, self.generation, stream, i])
            return self.shards[int(rng.integers(n))]
        g = self.global_position(stream, i)
        p, j = divmod(g, n)
        return self.shards[_permutation(self.seed, p, n)[j]]

    def pass_of(self, stream: int, i: int) -> int:
        return self.global_position(stream, i) // len(self.shards)


@lru_cache(maxsize=64)
def _permutation(seed: int, p: int, n: int) -> Tuple[int, ...]:
    return tuple(int(x) for x in np.random.default_rng([seed, 11, p]).permutation(n))


@dataclass
class Batch:
    """A training batch as the loop sees it."""

    images: torch.Tensor           # [B, 3, S, S] float32, normalised
    labels: torch.Tensor           # [B] int64
    skips: List[Skipped]           # records skipped while this batch was filled
    stream: int                    # the stream it came from
    cursor: Tuple[int, ...]        # that stream's position after this batch
    source: int = 0                # mixed runs: the index of the source it came from

    def pin_memory(self):
        self.images = self.images.pin_memory()
        self.labels = self.labels.pin_memory()
        return self


@dataclass
class _RawBatch:
    items: List[Any]
    stream: int
    cursor: Tuple[int, int, int]


def collate(raw: _RawBatch) -> Batch:
    """Separate skips from samples (``split_skips``) and stack the samples."""
    good, skips = split_skips(raw.items)
    images = torch.stack([g[0] for g in good]) if good else torch.empty(0)
    labels = torch.tensor([g[1] for g in good], dtype=torch.int64)
    return Batch(images, labels, skips, raw.stream, raw.cursor)


class TrainStream(IterableDataset):
    """Endless labelled-sample batches for one rank; see the module docstring."""

    def __init__(self, plan: ShardPlan, labels: LabelIndex, augment: SeededAugment, batch_size: int,
                 block_size: int, rank: int, num_workers: int,
                 cursors: Optional[Dict[int, Tuple[int, int, int]]] = None, phase: int = 0):
        super().__init__()
        self.plan, self.labels, self.augment = plan, labels, augment
        self.batch_size, self.block_size = int(batch_size), max(1, int(block_size))
        self.rank, self.workers = rank, max(1, int(num_workers))
        self.cursors = dict(cursors or {})
        self.phase = int(phase)
        self.policy = current_policy()  # the decode policy (data.background), carried into the workers

    def stream_id(self, worker: int) -> int:
        return self.rank * self.workers + (worker + self.phase) % self.workers

    def __iter__(self) -> Iterator[_RawBatch]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        stream = self.stream_id(worker)
        items: List[Any] = []
        n_good = 0
        for item, cursor in self.iter_stream(stream, self.cursors.get(stream, (0, 0, 0))):
            items.append(item)
            if not isinstance(item, Skipped):
                n_good += 1
                if n_good == self.batch_size:
                    yield _RawBatch(items, stream, cursor)
                    items, n_good = [], 0

    # -- one stream ---------------------------------------------------------------------------
    def _records(self, stream: int, i: int, r: int) -> Iterator[Tuple[int, int, Any]]:
        """Raw records from shard-sequence index ``i``, record ``r`` on, forever, as
        ``(i, r, record)``; each shard's tail error counts as one record."""
        empty_run = 0
        while True:
            shard = self.plan.shard(stream, i)
            n = 0
            for raw in iter_raw([shard]):
                if n >= r:
                    yield i, n, raw
                n += 1
            empty_run = empty_run + 1 if n <= r else 0
            if empty_run > 2 * len(self.plan.shards) + 2:
                raise RuntimeError(f"stream {stream} read {empty_run} shards in a row without a single record; "
                                   f"the shards ({self.plan.shards[0]} …) seem empty or unreadable")
            i, r = i + 1, 0

    def iter_stream(self, stream: int, cursor: Tuple[int, int, int]) -> Iterator[Tuple[Any, Tuple[int, int, int]]]:
        """Yield ``(sample or Skipped, cursor after it)`` from ``cursor`` on, forever."""
        i0, r0, o0 = (int(c) for c in cursor)
        records = self._records(stream, i0, r0)
        seed = self.plan.seed
        no_good_run = 0
        while True:
            block: List[Tuple[int, int, Any]] = []
            for rec in records:
                block.append(rec)
                if len(block) == self.block_size:
                    break
            start_i, start_r = block[0][0], block[0][1]
            block_key = [seed, 13, self.plan.generation, stream, start_i, start_r]
            order = np.random.default_rng(block_key).permutation(len(block))
            # the next block starts right after the last record read
            last_i, last_r = block[-1][0], block[-1][1]
            for o in range(o0, len(block)):
                _, _, raw = block[order[o]]
                record_key = [seed, 17, self.plan.generation, stream, start_i, start_r, o]
                item = self._prepare(raw, np.random.default_rng(record_key))
                next_cursor = (start_i, start_r, o + 1) if o + 1 < len(block) else (last_i, last_r + 1, 0)
                no_good_run = no_good_run + 1 if isinstance(item, Skipped) else 0
                if no_good_run > 100_000:
                    raise RuntimeError(f"stream {stream} skipped 100000 records in a row (last reason: {item.reason}); "
                                       "check that the labels belong to these shards")
                yield item, next_cursor
            o0 = 0  # only the first (restored) block starts part-way

    def _prepare(self, raw, rng: np.random.Generator):
        if isinstance(raw, Skipped):
            return raw
        key, shard = raw.get("__key__", "?"), shard_name(raw.get("__url__", "?"))
        label = self.labels.label_for(raw, shard, key)  # LabelIndex, or json_labels.JsonLabels (--label-key)
        if label is None:
            return Skipped("no_label", shard, key)
        sample = to_sample(raw, need_image=True, need_caption=False, decode=True, policy=self.policy)
        if isinstance(sample, Skipped):
            return sample
        return self.augment(sample.image, rng), label


# --------------------------------------------------------------------------------------------
# Data position across ranks
# --------------------------------------------------------------------------------------------
@dataclass
class DataPosition:
    """Everything needed to restart the streams: the plan's layout and one cursor per stream."""

    num_streams: int
    num_workers: int
    world_size: int
    offset: int = 0
    generation: int = 0
    batches: int = 0                                   # batches consumed per rank
    cursors: Dict[int, Tuple[int, int, int]] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"num_streams": self.num_streams, "num_workers": self.num_workers, "world_size": self.world_size,
                "offset": self.offset, "generation": self.generation, "batches": self.batches,
                "cursors": {str(k): list(v) for k, v in sorted(self.cursors.items())}}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "DataPosition":
        return cls(int(d["num_streams"]), int(d["num_workers"]), int(d["world_size"]), int(d.get("offset", 0)),
                   int(d.get("generation", 0)), int(d.get("batches", 0)),
                   {int(k): tuple(int(x) for x in v) for k, v in d.get("cursors", {}).items()})


def remap_position(old: DataPosition, num_streams: int, num_workers: int, world_size: int,
                   resampled: bool) -> DataPosition:
    """Carry a saved position over to a different stream layout (see the module docstring)."""
    if (old.num_streams, old.num_workers, old.world_size) == (num_streams, num_workers, world_size):
        return old
    if resampled:
        return DataPosition(num_streams, num_workers, world_size, 0, old.generation + 1, 0, {})
    starts = [old.offset + s + old.cursors.get(s, (0, 0, 0))[0] * old.num_streams for s in range(old.num_streams)]
    return DataPosition(num_streams, num_workers, world_size, min(starts), old.generation, 0, {})


def make_loader(plan: ShardPlan, labels: LabelIndex, augment: SeededAugment, batch_size: int, block_size: int,
                rank: int, num_workers: int, position: DataPosition, pin_memory: bool = False) -> DataLoader:
    """A DataLoader over this rank's streams, starting at ``position``."""
    workers = max(1, num_workers)
    ds = TrainStream(plan, labels, augment, batch_size, block_size, rank, num_workers,
                     cursors=position.cursors, phase=position.batches % workers)
    kwargs: Dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(prefetch_factor=2, persistent_workers=False)
    return DataLoader(ds, batch_size=None, num_workers=num_workers, collate_fn=collate, pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(plan.seed), **kwargs)
