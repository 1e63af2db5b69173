"""The extraction input pipeline: shards → decoded, transformed, tokenised samples.

``ShardSampleDataset`` is an IterableDataset over this rank's shards; each DataLoader worker
takes every ``num_workers``-th shard and reads it whole, so image decoding, the model's eval
transform and tokenisation all run in the workers. Besides samples it yields the reader's
``Skipped`` records and one ``ShardEnd`` after the last sample of every shard; ``collate``
separates the three, so skip counts and shard completion travel with the batches through the
worker processes. A worker emits its shard's items in order, so a ``ShardEnd`` reaches the main
process after every sample of that shard.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.data import IterableDataset, get_worker_info

from unicom.data.decode import DecodePolicy, current_policy
from unicom.data.shards import shard_name
from unicom.data.wds_reader import Skipped, iter_samples


@dataclass
class Item:
    """One good sample, ready for the model."""

    shard: str
    key: str
    image: Optional[torch.Tensor]
    tokens: Optional[torch.Tensor]
    truth: Optional[Any]


@dataclass
class ShardEnd:
    """Marks that every sample of ``shard`` has been yielded."""

    shard: str


class ShardSampleDataset(IterableDataset):
    """Samples of ``shards`` (paths), split over DataLoader workers by shard.

    ``preprocess`` maps a PIL image to a tensor; ``tokenizer`` maps a list of captions to a
    LongTensor. With ``need_image`` False images are not decoded (a bad image is then not a
    skip); with ``need_caption`` False a missing caption is not a skip. ``truth_field`` names
    a key of the sample's json (e.g. ``concept``) to carry along as ground truth.
    """

    def __init__(self, shards: Sequence[str], preprocess: Optional[Callable], tokenizer: Optional[Callable],
                 need_image: bool = True, need_caption: bool = True, truth_field: Optional[str] = "concept",
                 policy: Optional[DecodePolicy] = None):
        super().__init__()
        self.shards = list(shards)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.need_image = need_image
        self.need_caption = need_caption
        self.truth_field = truth_field
        self.policy = policy or current_policy()  # the decode policy, carried into the workers

    def worker_shards(self) -> List[str]:
        info = get_worker_info()
        if info is None:
            return self.shards
        return self.shards[info.id::info.num_workers]

    def __iter__(self):
        for shard in self.worker_shards():
            for s in iter_samples([shard], need_image=self.need_image, need_caption=self.need_caption,
                                  decode=self.need_image, policy=self.policy):
                if isinstance(s, Skipped):
                    yield s
                    continue
                try:
                    image = self.preprocess(s.image) if self.need_image else None
                except Exception as exn:  # a decoder/transform failure costs the sample, not the run
                    yield Skipped("bad_image", s.shard, s.key, f"transform: {type(exn).__name__}: {str(exn)[:80]}")
                    continue
                tokens = self.tokenizer([s.caption or ""])[0] if self.need_caption else None
                truth = s.meta.get(self.truth_field) if self.truth_field else None
                yield Item(s.shard, s.key, image, tokens, truth)
            yield ShardEnd(shard_name(shard))


def collate(batch: Sequence[Any]) -> Dict[str, Any]:
    """Split a list of ``Item``/``Skipped``/``ShardEnd`` into a dict: ``shards``, ``keys``,
    ``truth`` (lists), ``images``/``tokens`` (stacked tensors or None), ``skips``, ``ends``."""
    items: List[Item] = []
    skips: List[Skipped] = []
    ends: List[str] = []
    for it in batch:
        if isinstance(it, Item):
            items.append(it)
        elif isinstance(it, Skipped):
            skips.append(it)
        elif isinstance(it, ShardEnd):
            ends.append(it.shard)
        else:
            raise TypeError(f"unexpected item in a batch: {type(it).__name__}")
    has_img = bool(items) and items[0].image is not None
    has_tok = bool(items) and items[0].tokens is not None
    return {
        "shards": [i.shard for i in items],
        "keys": [i.key for i in items],
        "truth": [i.truth for i in items],
        "images": torch.stack([i.image for i in items]) if has_img else None,
        "tokens": torch.stack([i.tokens for i in items]) if has_tok else None,
        "skips": skips,
        "ends": ends,
    }


class FileSampleDataset(IterableDataset):
    """The images of image folders or list files (``unicom.embed.dataset.ImageFiles``, one
    pseudo-shard each), whole pseudo-shards per DataLoader worker, like ``ShardSampleDataset``.
    A caption is the ``NAME.txt`` beside ``NAME.jpg`` and ground truth a field of ``NAME.json``
    (img2dataset's files layout), where present."""

    def __init__(self, files, preprocess: Optional[Callable], tokenizer: Optional[Callable],
                 need_image: bool = True, need_caption: bool = True, truth_field: Optional[str] = "concept",
                 policy: Optional[DecodePolicy] = None):
        super().__init__()
        self.files = list(files)
        self.preprocess, self.tokenizer = preprocess, tokenizer
        self.need_image, self.need_caption, self.truth_field = need_image, need_caption, truth_field
        self.policy = policy or current_policy()  # the decode policy, carried into the workers

    def __iter__(self):
        info = get_worker_info()
        mine = self.files if info is None else self.files[info.id::info.num_workers]
        for files in mine:
            for i in range(len(files.paths)):
                yield self._item(files.name, files.keys[i], files.paths[i])
            yield ShardEnd(files.name)

    def _item(self, name: str, key: str, path) -> Any:
        from unicom.data.images import open_image, sidecar_text, skip_reason

        caption = sidecar_text(path) if self.need_caption else None
        if self.need_caption and not caption:
            return Skipped("missing_caption", name, key)
        try:
            image = self.preprocess(open_image(path, policy=self.policy)) if self.need_image else None
        except Exception as exn:  # a file that cannot be decoded costs the sample, not the run
            return Skipped(skip_reason(exn), name, key, f"{type(exn).__name__}: {str(exn)[:80]}")
        tokens = self.tokenizer([caption])[0] if self.need_caption else None
        return Item(name, key, image, tokens, _sidecar_truth(path, self.truth_field))


def _sidecar_truth(path, field: Optional[str]) -> Optional[Any]:
    if not field:
        return None
    import json

    from unicom.data.images import sidecar_text

    text = sidecar_text(path, ".json")
    try:
        return json.loads(text).get(field) if text else None
    except (ValueError, AttributeError):
        return None  # metadata is optional: a broken json does not cost the sample
