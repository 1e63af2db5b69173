"""Map-style labelled training data (``--dataset sop|inshop|…|image_folder|csv``): a checked
image list, a resumable distributed batch sampler, and the DataLoader over them.

**Labels.** The layout's raw labels become head class ids 0..C-1. A CSV's labels are either the
ids themselves (integers ≥ 0; C = the largest + 1, or ``data.num_classes``) or class names,
numbered in sorted order (``classes.py``; a CSV mixing both is refused); every other layout's
labels (class ids such as SOP's 1..11318, folder names, item ids) are numbered densely in
sorted order. A resumed run numbers names through its saved ``classes.json``. A label ≥
``data.num_classes`` is "outside the head": an error naming the row. Every listed image must
exist (``data.check_files``): a missing one is an error naming the file and the list line,
raised before training starts. An image that exists but cannot be decoded is skipped and
counted as ``bad_image`` (``too_large`` over the size limit; see below).

**Order.** The samples form one endless global sequence: epoch e is a permutation of the N
images seeded by (seed, e), and the epochs follow each other. Global position g is sample
``perm_{g // N}[g % N]``. Each micro-batch consumes ``batch × world_size`` consecutive
positions; rank r takes the r-th run of ``batch`` positions. The position of the whole run is
one number, the positions consumed, saved as ``(epoch, offset)``: resuming at it continues the
sequence exactly, on any number of ranks and loader workers. The sampler runs ahead of the
loop (the DataLoader prefetches), so each batch carries the position after it, and only
batches the loop has taken count.

**Augmentation and bad images.** Sample g is augmented with a generator seeded by (seed, g),
whatever process loads it. An undecodable image is replaced by a draw from a generator seeded
by (seed, g, attempt), so the batch stays full, deterministically; the skip travels with the
batch and is counted.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.decode import current_policy
from ..data.images import DECODE_ERRORS, open_image, skip_reason
from ..data.wds_reader import Skipped
from ..datasets import DatasetNotFoundError, LabelledList, LayoutError, encode_labels
from .classes import INT, KindTracker, as_id, label_kind, map_names
from .data import Batch

log = logging.getLogger(__name__)
MAX_REPLACEMENTS = 20


@dataclass
class LabelledImages:
    """A checked training list: ``paths[i]`` has head class ``labels[i]`` in [0, num_classes)."""

    name: str
    paths: List[str]
    labels: np.ndarray          # int64 [N]
    num_classes: int
    class_names: Optional[List[Any]] = None

    def __len__(self) -> int:
        return len(self.paths)


def _ids_or_names(rows: LabelledList, saved: Optional[Sequence[Optional[str]]]
                  ) -> Tuple[np.ndarray, Optional[List[Any]]]:
    """A CSV's labels: all class ids (returned as they are, no names) or all names (numbered in
    sorted order, or through ``saved``); a mix, a negative id or an empty label is an error."""
    tracker = KindTracker()
    for i, raw in enumerate(rows.labels):
        kind = label_kind(raw)
        if kind is None:
            text = str(raw).strip()
            if text.startswith("-") and text[1:].isdigit():
                raise LayoutError(f"{rows.origin(i)}: label {text} is negative; class ids run from 0")
            raise LayoutError(f"{rows.origin(i)}: label {raw!r} is neither a class id (an integer ≥ 0) nor a class "
                              "name")
        try:
            tracker.add(kind, rows.origin(i), raw)
        except ValueError as exn:
            raise LayoutError(f"{rows.info.get('list', rows.root)}: {exn}") from None
    if tracker.kind == INT:
        return np.asarray([as_id(x) for x in rows.labels], dtype=np.int64), None
    return _by_name(rows, saved)


def _by_name(rows: LabelledList, saved: Optional[Sequence[Optional[str]]]) -> Tuple[np.ndarray, List[Any]]:
    """Labels numbered by their names (as strings): sorted order, or a resumed run's ``saved``."""
    text = [str(x).strip() for x in rows.labels]
    try:
        lookup = map_names(text, saved, f"{rows.info.get('list', rows.root)}")
    except ValueError as exn:
        raise LayoutError(str(exn)) from None
    names = list(saved) if saved is not None else sorted(lookup, key=lookup.__getitem__)
    return np.fromiter((lookup[t] for t in text), dtype=np.int64, count=len(text)), names


def check_labelled(rows: LabelledList, num_classes: Optional[int] = None, integer_labels: bool = False,
                   check_files: bool = True, saved_names: Optional[Sequence[Optional[str]]] = None) -> LabelledImages:
    """Turn a reader's ``LabelledList`` into head class ids and check it (see the module
    docstring); errors name the list file and line (or the image). ``integer_labels`` (a CSV):
    the labels may be the ids themselves; ``saved_names``: a resumed run's class names."""
    if not len(rows):
        raise LayoutError(f"{rows.name}: the {rows.split} split of {rows.root} lists no images")
    names: Optional[List[Any]] = None
    if integer_labels:
        labels, names = _ids_or_names(rows, saved_names)
    elif saved_names is not None:
        labels, names = _by_name(rows, saved_names)
    else:
        labels, raw_names = encode_labels(rows.labels)
        names = [str(n) for n in raw_names]
    needed = int(labels.max()) + 1
    if names is not None and not num_classes:
        needed = max(needed, len(names))  # a resumed run keeps its head even if a class has no rows left
    classes = int(num_classes) if num_classes else needed
    if needed > classes:
        i = int(np.argmax(labels))
        raise LayoutError(f"{rows.origin(i)}: label {int(labels[i])} is outside the head (data.num_classes="
                          f"{classes}: ids 0..{classes - 1}); raise data.num_classes or fix the label")
    if check_files:
        for i, p in enumerate(rows.paths):
            if not os.path.isfile(p):
                raise DatasetNotFoundError(f"{rows.origin(i)}: image file {p} not found")
    return LabelledImages(rows.name, list(rows.paths), labels, classes, names)


# --------------------------------------------------------------------------------------------
# Order
# --------------------------------------------------------------------------------------------
class GlobalOrder:
    """Global position g → sample index: epoch ``g // N`` is a permutation seeded by (seed, epoch)."""

    def __init__(self, num_samples: int, seed: int):
        self.n, self.seed = int(num_samples), int(seed)
        self._cache: Dict[int, np.ndarray] = {}

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.pop(min(self._cache))
            self._cache[epoch] = np.random.default_rng([self.seed, 31, epoch]).permutation(self.n)
        return self._cache[epoch]

    def index(self, g: int) -> int:
        e, o = divmod(int(g), self.n)
        return int(self.permutation(e)[o])


class ResumableBatchSampler(Sampler):
    """Endless per-rank micro-batches of ``(position, index, end)`` items starting at global
    position ``start``; ``end`` is the global position after the whole micro-batch (all ranks),
    which the loop records as consumed when it takes the batch."""

    def __init__(self, order: GlobalOrder, batch_size: int, rank: int, world_size: int, start: int = 0):
        self.order, self.batch = order, int(batch_size)
        self.rank, self.world = int(rank), int(world_size)
        self.start = int(start)

    def __iter__(self) -> Iterator[List[Tuple[int, int, int]]]:
        g = self.start
        step = self.batch * self.world
        while True:
            first = g + self.rank * self.batch
            yield [(p, self.order.index(p), g + step) for p in range(first, first + self.batch)]
            g += step

    def __len__(self) -> int:  # endless; DataLoader asks only when it must
        raise TypeError("ResumableBatchSampler is endless")


class LabelledDataset(Dataset):
    """``dataset[(position, index, end)]`` → ``(image tensor, label, skips, end)``."""

    def __init__(self, images: LabelledImages, augment, seed: int):
        self.images, self.augment, self.seed = images, augment, int(seed)
        self.policy = current_policy()  # the decode policy (data.background), carried into the workers

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, item: Tuple[int, int, int]):
        pos, index, end = item
        skips: List[Skipped] = []
        for attempt in range(MAX_REPLACEMENTS + 1):
            rng = np.random.default_rng([self.seed, 17, pos] + ([attempt] if attempt else []))
            try:
                image = open_image(self.images.paths[index], policy=self.policy)
            except DECODE_ERRORS as exn:  # PIL's errors for truncated / corrupt / too large files
                skips.append(Skipped(skip_reason(exn), self.images.name, self.images.paths[index], str(exn)[:200]))
                index = int(np.random.default_rng([self.seed, 23, pos, attempt]).integers(len(self.images)))
                continue
            # outside the try: an error of the transform itself is a bug to see, not a bad image
            return self.augment(image, rng), int(self.images.labels[index]), skips, end
        raise RuntimeError(f"{self.images.name}: {MAX_REPLACEMENTS + 1} images in a row could not be read, e.g. "
                           f"{skips[-1].key} ({skips[-1].detail}); check the dataset")


def collate_labelled(items: Sequence[Tuple[torch.Tensor, int, List[Skipped], int]], rank: int = 0) -> Batch:
    """Stack a micro-batch; its cursor is ``(end,)``, the global position after it."""
    images = torch.stack([it[0] for it in items])
    labels = torch.tensor([it[1] for it in items], dtype=torch.int64)
    skips = [s for it in items for s in it[2]]
    return Batch(images, labels, skips, rank, (int(items[-1][3]),))


class _Collate:
    def __init__(self, rank: int):
        self.rank = rank

    def __call__(self, items):
        return collate_labelled(items, self.rank)


def make_labelled_loader(images: LabelledImages, augment, batch_size: int, seed: int, rank: int, world_size: int,
                         start: int, num_workers: int, pin_memory: bool = False) -> DataLoader:
    """A DataLoader of ``Batch`` es for this rank, from global position ``start`` on."""
    sampler = ResumableBatchSampler(GlobalOrder(len(images), seed), batch_size, rank, world_size, start)
    kwargs: Dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(prefetch_factor=2, persistent_workers=False)
    # an own generator: the workers' base seed must not be drawn from the global torch RNG, whose
    # state the checkpoint restores (it drives drop-path)
    return DataLoader(LabelledDataset(images, augment, seed), batch_sampler=sampler, num_workers=num_workers,
                      collate_fn=_Collate(rank), pin_memory=pin_memory,
                      generator=torch.Generator().manual_seed(seed), **kwargs)
