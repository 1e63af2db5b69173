"""What the training loop reads: one object per run that hides where the samples come from.

``build_training_data(cfg, ctx)`` returns a ``TrainingData`` for the run's sources:

* ``ShardData``: LAION-style shards with ``make cluster`` labels (``--labels``) or a json field
  (``--label-key``); streamed, position = one cursor per stream (``data.py``);
* ``LabelledData``: a labelled layout (``--dataset sop|inshop|inaturalist|cub|cars|gldv2|
  image_folder|csv``), read by ``unicom.datasets``; map-style, position = the global sample
  position, saved as (epoch, offset) (``labelled.py``);
* ``MixedData``: several of these (``data.sources``), each with its own disjoint range of class
  ids in the one head and a sampling weight: each micro-batch of each rank is drawn from one
  source, picked with probability ∝ weight by a generator seeded by (seed, rank, batch index).

The loop calls: ``num_classes``, ``samples_per_epoch``, ``describe()``, ``new_position()``,
``restore_position(saved)`` → (position, exact), ``make_loader(position, augment, pin)``,
``record(position, batch)`` for every batch it takes, ``position_state(position)``
(a collective: every rank calls it) for the checkpoint, ``fingerprint()`` for
``RUN/inputs.json`` (``inputs.py``: ``--resume`` on changed inputs is refused) and
``class_sources()`` for ``classes.json`` (each source's class count and names, ``classes.py``).
Labels may be class ids or class names; a resumed run numbers names through the saved
``classes.json`` (``saved``: that source's names).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..data.shards import expand_shards, shard_name, unique_names
from ..formats.atomic_io import read_npy
from ..runtime.distributed import DistContext, all_gather_object, broadcast_object
from .data import DataPosition, LabelIndex, ShardPlan, make_loader, remap_position
from .inputs import Entry, clustered_inputs, json_label_entry, labelled_entry, shard_entry, validate_labels

log = logging.getLogger(__name__)
SHARDS = "shards"


# --------------------------------------------------------------------------------------------
# Shards
# --------------------------------------------------------------------------------------------
class ShardData:
    """Shards joined with pseudo labels (or a json label field); see ``data.py``."""

    kind = "shards"

    def __init__(self, cfg, ctx: DistContext, data: Optional[str], labels: Optional[str], label_key: Optional[str],
                 saved: Optional[List[str]] = None):
        if not data:
            raise ValueError("--dataset shards needs --data (a brace pattern, a directory of .tar or a list file)")
        self.cfg, self.ctx = cfg, ctx
        self.shards = expand_shards(data)
        unique_names(self.shards)
        if label_key:
            from .json_labels import JsonLabels

            d = cfg.data
            if d.num_classes and d.samples_per_epoch:  # no scan: class ids, or the resumed run's names
                self.labels = JsonLabels(label_key, d.num_classes, names=saved)
            else:
                self.labels = on_main(ctx, JsonLabels.scan, self.shards, label_key, d.num_classes, saved)
            self.missing: List[str] = []
        elif labels:
            self.labels = LabelIndex(labels, cfg.data.features_dir)
            self.missing = self.labels.check_shards(self.shards)
            if self.missing and ctx.is_main:
                log.warning("%d of %d shards have no labels (their samples count as no_label), e.g. %s",
                            len(self.missing), len(self.shards), self.missing[0])
            on_main(ctx, validate_labels, self.labels, self.shards)  # every label file, before any step
        else:
            raise ValueError("--dataset shards needs --labels (OUT/labels from `make cluster`) or --label-key FIELD "
                             "(a class id in each sample's json, e.g. concept_id)")
        self.num_classes = int(self.labels.num_classes)
        self.samples_per_epoch = int(self.labels.class_sizes.sum())
        self.epoch_note = ""
        if labels and not label_key:
            self._count_used_labels()
        self.workers = cfg.data.num_workers
        self.num_streams = ctx.world_size * max(1, self.workers)

    def _count_used_labels(self) -> None:
        """An epoch is the labelled samples of the shards used, not all of the labels dir's (the
        clustering may have labelled more shards than ``--data`` names); the note says which."""
        used = [shard_name(s) for s in self.shards if self.labels.has_shard(shard_name(s))]
        counts = on_main(self.ctx, count_labelled, self.labels, used)
        n_used, n_all = int(sum(counts)), int(self.labels.class_sizes.sum())
        if n_used != n_all and n_used > 0:
            shown = ", ".join(used[:4]) + (f" … ({len(used)} in all)" if len(used) > 4 else "")
            self.epoch_note = (f"; an epoch is the {n_used} labelled samples of the {len(used)} shard(s) used "
                               f"({shown}), of {n_all} in {self.labels.labels_dir}")
            self.samples_per_epoch = n_used

    def class_sources(self) -> List[Tuple[int, Optional[List[str]]]]:
        """``[(number of classes, class names or None)]`` for ``classes.json``."""
        return [(self.num_classes, getattr(self.labels, "names", None))]

    def describe(self) -> str:
        how = f"json field {self.labels.field!r}" if hasattr(self.labels, "field") else "cluster labels"
        note = f" ({len(self.missing)} without labels, e.g. {self.missing[0]})" if self.missing else ""
        return f"{len(self.shards)} shards with {how}{note}{self.epoch_note}"

    def fingerprint(self) -> Dict[str, Entry]:
        """The shards (names and sizes) and the labels (file digests, or the json field's counts)."""
        if isinstance(self.labels, LabelIndex):
            return clustered_inputs(self.shards, self.labels)
        return {"shards": shard_entry(self.shards), "labels": json_label_entry(self.labels)}

    def new_position(self) -> DataPosition:
        return DataPosition(self.num_streams, self.workers, self.ctx.world_size)

    def restore_position(self, saved: Dict[str, Any]) -> Tuple[DataPosition, bool]:
        if saved.get("kind", self.kind) != self.kind:
            raise ValueError(f"the checkpoint's data position is of kind {saved.get('kind')!r}, but this run reads "
                             "shards; resume with the run's original sources")
        old = DataPosition.from_dict(saved)
        exact = (old.world_size, old.num_workers) == (self.ctx.world_size, self.workers)
        if not exact and self.ctx.is_main:
            log.info("data order re-laid out: %d rank(s) × %d worker(s) instead of %d × %d", self.ctx.world_size,
                     self.workers, old.world_size, old.num_workers)
        return remap_position(old, self.num_streams, self.workers, self.ctx.world_size, self.cfg.data.resampled), exact

    def make_loader(self, position: DataPosition, augment, pin_memory: bool):
        d = self.cfg.data
        plan = ShardPlan(tuple(self.shards), self.cfg.train.seed, self.num_streams, position.offset, d.resampled,
                         position.generation)
        return make_loader(plan, self.labels, augment, d.batch_size, d.shuffle_buffer, self.ctx.rank, self.workers,
                           position, pin_memory=pin_memory)

    @staticmethod
    def record(position: DataPosition, batch) -> None:
        position.cursors[batch.stream] = tuple(batch.cursor)
        position.batches += 1

    def position_state(self, position: DataPosition) -> Dict[str, Any]:
        cursors: Dict[int, Tuple[int, ...]] = {}
        for d in all_gather_object({str(k): list(v) for k, v in position.cursors.items()}):
            cursors.update({int(k): tuple(v) for k, v in d.items()})
        pos = DataPosition(position.num_streams, position.num_workers, position.world_size, position.offset,
                           position.generation, position.batches, cursors)
        return {"kind": self.kind, **pos.to_dict()}


# --------------------------------------------------------------------------------------------
# Labelled layouts (map-style)
# --------------------------------------------------------------------------------------------
@dataclass
class LabelledPosition:
    consumed: int = 0      # global sample positions consumed (all ranks)
    batches: int = 0       # micro-batches taken by this rank


class LabelledData:
    """A labelled layout's train split (``labelled.py``)."""

    kind = "labelled"

    def __init__(self, cfg, ctx: DistContext, dataset: str, data_root: Optional[str],
                 saved: Optional[List[str]] = None):
        from ..datasets import canonical_name, read_train_split
        from .labelled import check_labelled

        self.cfg, self.ctx = cfg, ctx
        self.name = canonical_name(dataset)
        if not data_root:
            raise ValueError(f"--dataset {dataset} needs --data-root (the directory the dataset was unpacked into"
                             f"{'; for csv: the CSV file' if self.name == 'csv' else ''})")

        def load():
            rows = read_train_split(self.name, data_root)
            return check_labelled(rows, cfg.data.num_classes, integer_labels=self.name == "csv",
                                  check_files=cfg.data.check_files, saved_names=saved)

        # rank 0 reads and checks (one pass of stat calls over the list), the others receive it;
        # an error is raised on every rank with the same message.
        result = on_main(ctx, load)
        self.images = result
        self.num_classes = result.num_classes
        self.samples_per_epoch = len(result)
        self.root = data_root

    def class_sources(self) -> List[Tuple[int, Optional[List[str]]]]:
        """``[(number of classes, class names or None)]`` for ``classes.json``."""
        names = self.images.class_names
        return [(self.num_classes, None if names is None else [str(n) for n in names])]

    def describe(self) -> str:
        return f"{self.name} train split in {self.root}: {len(self.images)} images"

    def fingerprint(self) -> Dict[str, Entry]:
        """The dataset, its root and a digest of its (image, class) list (a CSV: also the file's)."""
        return {"labelled": labelled_entry(self.name, self.root, self.images)}

    def new_position(self) -> LabelledPosition:
        return LabelledPosition()

    def restore_position(self, saved: Dict[str, Any]) -> Tuple[LabelledPosition, bool]:
        if saved.get("kind") != self.kind:
            raise ValueError(f"the checkpoint's data position is of kind {saved.get('kind', 'shards')!r}, but this run "
                             f"reads {self.kind!r} data ({self.name}); resume with the run's original sources")
        if int(saved.get("num_samples", len(self.images))) != len(self.images):
            log.warning("the dataset now lists %d images, the checkpoint %s; the data order changes",
                        len(self.images), saved.get("num_samples"))
        exact = int(saved.get("world_size", self.ctx.world_size)) == self.ctx.world_size
        return LabelledPosition(int(saved["consumed"]), 0), exact

    def make_loader(self, position: LabelledPosition, augment, pin_memory: bool):
        from .labelled import make_labelled_loader

        d = self.cfg.data
        return make_labelled_loader(self.images, augment, d.batch_size, self.cfg.train.seed, self.ctx.rank,
                                    self.ctx.world_size, position.consumed, d.num_workers, pin_memory)

    @staticmethod
    def record(position: LabelledPosition, batch) -> None:
        position.consumed = int(batch.cursor[0])
        position.batches += 1

    def position_state(self, position: LabelledPosition) -> Dict[str, Any]:
        n = len(self.images)
        return {"kind": self.kind, "consumed": position.consumed, "epoch": position.consumed // n,
                "offset": position.consumed % n, "num_samples": n, "world_size": self.ctx.world_size}


def count_labelled(label_index, names: Sequence[str]) -> List[int]:
    """The labelled rows (label ≥ 0) of each shard's labels file, in ``names`` order."""
    return [int((read_npy(label_index.labels_path(n), mmap=True) >= 0).sum()) for n in names]


def on_main(ctx: DistContext, fn, *args) -> Any:
    """Run ``fn(*args)`` on the main rank only and return its result on every rank. When it
    raises, the main rank re-raises its error and every other rank raises a ValueError with the
    same message (nobody waits forever)."""
    error, result = None, None
    if ctx.is_main:
        try:
            result = fn(*args)
        except Exception as exn:  # noqa: BLE001 (re-raised below, on every rank)
            error = exn
    shared = broadcast_object(("error", str(error)) if error is not None else ("ok", result))
    if error is not None:
        raise error
    if shared[0] == "error":
        raise ValueError(shared[1])
    return shared[1]


# --------------------------------------------------------------------------------------------
# Mixed sources
# --------------------------------------------------------------------------------------------
@dataclass
class MixedPosition:
    children: List[Any]
    draws: int = 0         # micro-batches taken by this rank (the index j of the next draw)
    batches: int = 0


class MixedData:
    """Several sources in one head: source k owns class ids [offsets[k], offsets[k] + C_k)."""

    kind = "mixed"

    def __init__(self, cfg, ctx: DistContext, sources: List[Any], weights: List[float]):
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"source weights must be ≥ 0 with a positive sum, got {weights}")
        self.cfg, self.ctx, self.sources = cfg, ctx, sources
        self.probs = np.asarray(weights, np.float64) / float(sum(weights))
        self.offsets = np.concatenate([[0], np.cumsum([s.num_classes for s in sources])]).astype(np.int64)
        self.num_classes = int(self.offsets[-1])
        self.samples_per_epoch = int(sum(s.samples_per_epoch for s in sources))

    def class_sources(self) -> List[Tuple[int, Optional[List[str]]]]:
        """Every source's ``(number of classes, names or None)``, in head order."""
        return [entry for s in self.sources for entry in s.class_sources()]

    def class_ranges(self) -> List[Tuple[int, int]]:
        """Source k's class ids, as [start, end)."""
        return [(int(self.offsets[k]), int(self.offsets[k + 1])) for k in range(len(self.sources))]

    def fingerprint(self) -> Dict[str, Entry]:
        """Each source's entries, prefixed ``source<k>.``, and the sampling weights."""
        out: Dict[str, Entry] = {"mix": {"weights": [round(float(p), 9) for p in self.probs]}}
        for k, s in enumerate(self.sources):
            out.update({f"source{k}.{name}": entry for name, entry in s.fingerprint().items()})
        return out

    def describe(self) -> str:
        parts = [f"[{k}] {s.describe()}, classes {a}..{b - 1}, weight {p:.3g}"
                 for k, (s, (a, b), p) in enumerate(zip(self.sources, self.class_ranges(), self.probs))]
        return "mixed sources:\n  " + "\n  ".join(parts)

    def choose(self, j: int) -> int:
        """The source of this rank's micro-batch ``j``."""
        u = np.random.default_rng([self.cfg.train.seed, 29, self.ctx.rank, int(j)]).random()
        return int(min(np.searchsorted(np.cumsum(self.probs), u, side="right"), len(self.sources) - 1))

    def new_position(self) -> MixedPosition:
        return MixedPosition([s.new_position() for s in self.sources])

    def restore_position(self, saved: Dict[str, Any]) -> Tuple[MixedPosition, bool]:
        if saved.get("kind") != self.kind or len(saved.get("sources", [])) != len(self.sources):
            raise ValueError("the checkpoint's data sources differ from this run's (data.sources); resume with the "
                             "run's original sources")
        restored = [s.restore_position(d) for s, d in zip(self.sources, saved["sources"])]
        exact = all(e for _, e in restored) and int(saved.get("world_size", 0)) == self.ctx.world_size
        draws = int(saved["draws"]) if exact else 0
        return MixedPosition([p for p, _ in restored], draws), exact

    def make_loader(self, position: MixedPosition, augment, pin_memory: bool) -> Iterator[Any]:
        loaders = [s.make_loader(p, augment, pin_memory) for s, p in zip(self.sources, position.children)]
        return self._draw(loaders, position.draws)

    def _draw(self, loaders, start: int) -> Iterator[Any]:
        iters: List[Optional[Iterator[Any]]] = [None] * len(loaders)
        j = start
        while True:
            k = self.choose(j)
            if iters[k] is None:  # started on first use: a source never drawn starts no workers
                iters[k] = iter(loaders[k])
            batch = next(iters[k])
            batch.labels = batch.labels + int(self.offsets[k])
            batch.source = k
            j += 1
            yield batch

    def record(self, position: MixedPosition, batch) -> None:
        self.sources[batch.source].record(position.children[batch.source], batch)
        position.draws += 1
        position.batches += 1

    def position_state(self, position: MixedPosition) -> Dict[str, Any]:
        return {"kind": self.kind, "draws": position.draws, "world_size": self.ctx.world_size,
                "sources": [s.position_state(p) for s, p in zip(self.sources, position.children)]}


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def build_source(cfg, ctx: DistContext, spec: Dict[str, Any], saved: Optional[List[str]] = None):
    """One source from ``{dataset, data, labels, label_key, data_root}``; ``saved``: its class
    names in a resumed run's ``classes.json``."""
    known = {"dataset", "data", "labels", "label_key", "data_root", "weight"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"data source {spec}: unknown keys {sorted(unknown)}; a source takes {sorted(known)}")
    dataset = str(spec.get("dataset") or SHARDS)
    if dataset == SHARDS:
        return ShardData(cfg, ctx, spec.get("data"), spec.get("labels"), spec.get("label_key"), saved)
    root = spec.get("data_root") or (spec.get("data") if dataset in ("csv", "image_folder") else None)
    return LabelledData(cfg, ctx, dataset, root, saved)


def build_training_data(cfg, ctx: DistContext):
    """The run's ``TrainingData``: the command line's source (``cfg.run``), mixed with
    ``data.sources`` when that list is not empty."""
    from .classes import saved_classes

    r = cfg.run
    primary = {"dataset": r.dataset, "data": r.data, "labels": r.labels, "label_key": r.label_key,
               "data_root": r.data_root}
    specs = [primary] + [dict(s) for s in cfg.data.sources]
    saved = saved_classes(r.output) or []  # a resumed run's class names, per source
    if len(saved) not in (0, len(specs)):
        raise ValueError(f"{r.output}/classes.json describes {len(saved)} data source(s), this run has "
                         f"{len(specs)}; resume with the run's original sources")
    names = saved or [None] * len(specs)
    if not cfg.data.sources:
        return build_source(cfg, ctx, primary, names[0])
    weights = [cfg.data.source_weight] + [float(s.get("weight", 1.0)) for s in cfg.data.sources]
    return MixedData(cfg, ctx, [build_source(cfg, ctx, s, n) for s, n in zip(specs, names)], weights)
