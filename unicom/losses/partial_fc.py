"""Partial FC head of Unicom: sharded class centres, class-centre and feature-dimension sampling,
margin softmax, distributed cross-entropy.

    head = PartialFC(num_classes, embed_dim)            # rank / world size from torch.distributed
    loss = head(embeddings, labels)                     # [B_local, D], [B_local] global class ids
    loss.backward()                                     # exact gradients, see below
    opt = SparseCentreOptimizer(head, kind="adamw", lr=1e-3); opt.step()

* ``head.weight`` holds this rank's contiguous class range [class_start, class_end), K rows per
  class (K sub-centres; class c's rows are c·K … c·K+K−1 of the shard).
* Every forward gathers the embeddings and labels of all ranks (batch sizes may differ by rank
  and by step), keeps every positive class of the global batch and ⌊r·C_local⌋ − #positives
  uniform random negatives of this shard, picks the step's feature subset (the same on every
  rank) and returns the mean loss over the global batch, identical on every rank.
* ``loss.backward()`` gives every rank's embeddings the exact gradient of that mean (the
  gather's backward sums the ranks' contributions), and ``head.weight.grad`` the exact gradient
  for the centres as a sparse COO tensor over the sampled rows (dense when r = 1). Under DDP,
  which averages backbone gradients over ranks, pass ``embedding_grad_scale=world_size`` to get
  the exact backbone gradient, as the official code does.

Randomness: the step's draws come from generators seeded with (seed, step, rank) for the classes
and (seed, step) for the features, where ``step`` counts this head's forward calls. The step
counter is all the state there is: ``rng_state()`` / ``set_rng_state()`` and the centre shard
files carry it, and restoring it reproduces the sample sequence exactly (on the same world size
and device type; a different world size shards the classes differently).
"""
from __future__ import annotations

import contextlib
from typing import Any, Dict, Optional

import torch
import torch.distributed as dist
from torch import nn

from .defaults import DEFAULT_SAMPLE_RATE, check_rate
from .distributed_softmax import MarginSoftmaxCrossEntropy, StepPlan
from .gather import all_gather_rows, gather_rows, world
from .margin import DEFAULT_SCALE, make_margin_spec
from .sampling import (
    STREAM_INIT,
    class_generator,
    derive_seed,
    feature_subset,
    generator_for,
    num_sampled_classes,
    remap_labels,
    sample_class_centres,
    shard_range,
)
from .workspace import Workspace

# Defaults (docs/partial_fc.md, "Defaults", says where each comes from).
DEFAULT_INIT_STD = 0.01        # official PartialFC_V2: normal(0, 0.01)
_INIT_BLOCK = 4096             # classes per initialisation block (world-size independent init)

# Error codes exchanged before any other collective, so every rank raises the same error.
_BAD_EMB_SHAPE, _BAD_EMB_DTYPE, _BAD_LABEL_DTYPE, _BAD_LABEL_SHAPE, _BAD_DEVICE = 1, 2, 3, 4, 5
_MESSAGES = {
    _BAD_EMB_SHAPE: "embeddings must be a 2-D [batch, embed_dim] tensor",
    _BAD_EMB_DTYPE: "embeddings must be a floating-point tensor",
    _BAD_LABEL_DTYPE: "labels must be an integer tensor of global class ids",
    _BAD_LABEL_SHAPE: "labels must be [batch] (or [batch, 1]) and match the embeddings' batch size",
    _BAD_DEVICE: "embeddings must be on the device of head.weight",
}


@contextlib.contextmanager
def _serial_on_cpu(device: torch.device):
    """Run the sampling's sorts on one thread on the CPU. Torch's parallel sort has many
    barriers, and on a busy machine each one can wait for a descheduled thread: sorting the
    ~10⁵ sampled ids was measured at 0.4–0.7 s with 2 threads under load and 15–30 ms with 1."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def init_centres(class_start: int, class_end: int, subcenters: int, embed_dim: int, seed: int,
                 std: float = DEFAULT_INIT_STD, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, std²) centres for the classes [class_start, class_end), K rows each.

    Classes are drawn in fixed blocks from generators seeded by (seed, block), so class c gets
    the same initial centre whatever the world size.
    """
    out = torch.empty((class_end - class_start) * subcenters, embed_dim, dtype=dtype)
    first, last = class_start // _INIT_BLOCK, (class_end - 1) // _INIT_BLOCK if class_end > class_start else -1
    for b in range(first, last + 1):
        lo, hi = b * _INIT_BLOCK, (b + 1) * _INIT_BLOCK
        g = generator_for(torch.device("cpu"), derive_seed(seed, STREAM_INIT, b))
        block = torch.randn((hi - lo) * subcenters, embed_dim, generator=g, dtype=dtype)
        a, z = max(lo, class_start), min(hi, class_end)
        out[(a - class_start) * subcenters:(z - class_start) * subcenters] = \
            block[(a - lo) * subcenters:(z - lo) * subcenters]
    return out.mul_(std)


class PartialFC(nn.Module):
    """Sharded, sampled margin-softmax classifier head (see the module docstring).

    Args:
        num_classes: total number of classes C (all ranks).
        embed_dim: embedding dimension D.
        sample_rate: class-centre sampling rate r in (0, 1]; 1 = every centre, every step.
        feature_sample_dim: d′, dimensions used per step (None: all D).
        margin, scale, m1, m2, m3: the margin softmax (see :mod:`unicom.losses.margin`);
            margins left as None take the defaults of ``margin``.
        subcenters: K sub-centres per class (sub-centre ArcFace: max over them).
        straight_through: shift the target angle without gradient, as the official code does.
        interclass_filter: drop non-target cosines above this threshold (0 = off).
        seed: seed of the initial centres and of every step's samples.
        init_std: std of the initial centres.
        embedding_grad_scale: multiplies the embeddings' gradient (DDP: pass the world size).
        rank, world_size: override torch.distributed's (e.g. to re-shard checkpoints offline).
        process_group: the group the classes are sharded over (default: the world).
    """

    def __init__(self, num_classes: int, embed_dim: int, *, sample_rate: float = DEFAULT_SAMPLE_RATE,
                 feature_sample_dim: Optional[int] = None, margin: str = "arcface", scale: float = DEFAULT_SCALE,
                 m1: Optional[float] = 1.0, m2: Optional[float] = None, m3: Optional[float] = None,
                 subcenters: int = 1, straight_through: bool = False, interclass_filter: float = 0.0,
                 seed: int = 0, init_std: float = DEFAULT_INIT_STD, embedding_grad_scale: float = 1.0,
                 rank: Optional[int] = None, world_size: Optional[int] = None, process_group=None):
        super().__init__()
        num_classes, embed_dim, subcenters = int(num_classes), int(embed_dim), int(subcenters)
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        sample_rate = check_rate("sample_rate", sample_rate)
        if feature_sample_dim is not None:
            feature_sample_dim = int(feature_sample_dim)
            if feature_sample_dim > embed_dim:
                raise ValueError(f"feature_sample_dim d'={feature_sample_dim} exceeds embed_dim D={embed_dim}")
            if feature_sample_dim < 1:
                raise ValueError(f"feature_sample_dim must be >= 1 (or None for all D), got {feature_sample_dim}")
        if subcenters < 1:
            raise ValueError(f"subcenters must be >= 1, got {subcenters}")
        self.spec = make_margin_spec(margin, scale, m1, m2, m3, straight_through, interclass_filter)

        self.process_group = process_group
        if world_size is None:
            world_size = world(process_group)
            rank = dist.get_rank(process_group) if world_size > 1 else 0
        elif rank is None:
            raise ValueError("give rank together with world_size")
        if not 0 <= int(rank) < int(world_size):
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.rank, self.world_size = int(rank), int(world_size)
        if num_classes < self.world_size:
            raise ValueError(f"num_classes={num_classes} must be at least the world size {self.world_size}")

        self.num_classes, self.embed_dim, self.subcenters = num_classes, embed_dim, subcenters
        self.sample_rate = sample_rate
        self.feature_sample_dim = None if feature_sample_dim in (None, embed_dim) else feature_sample_dim
        self.seed = int(seed)
        self.embedding_grad_scale = float(embedding_grad_scale)
        self.class_start, self.class_end = shard_range(num_classes, self.world_size, self.rank)
        self.num_local = self.class_end - self.class_start
        self.weight = nn.Parameter(init_centres(self.class_start, self.class_end, subcenters, embed_dim,
                                                self.seed, init_std))
        self.step = 0
        self.last_sample: Optional[torch.Tensor] = None          # global class ids sampled (None: all)
        self.last_feature_index: Optional[torch.Tensor] = None   # feature dims used (None: all)
        self._workspace = Workspace()

    # ---- randomness as checkpointable state ---------------------------------------------------
    def rng_state(self) -> Dict[str, int]:
        """What determines every future sample: the seed and the step counter."""
        return {"seed": self.seed, "step": self.step}

    def set_rng_state(self, state: Dict[str, Any]) -> None:
        self.step = int(state["step"])
        if "seed" in state:
            self.seed = int(state["seed"])

    def get_extra_state(self) -> Dict[str, int]:
        return self.rng_state()

    def set_extra_state(self, state: Dict[str, Any]) -> None:
        self.set_rng_state(state)

    def release_workspace(self) -> None:
        """Free the cached step buffers (they are re-made on the next forward)."""
        self._workspace.clear()

    def extra_repr(self) -> str:
        s = self.spec
        return (f"num_classes={self.num_classes}, embed_dim={self.embed_dim}, classes=[{self.class_start}, "
                f"{self.class_end}) of rank {self.rank}/{self.world_size}, sample_rate={self.sample_rate}, "
                f"feature_sample_dim={self.feature_sample_dim}, margin={s.kind}(s={s.scale}, m1={s.m1}, m2={s.m2}, "
                f"m3={s.m3}), subcenters={self.subcenters}")

    # ---- forward ------------------------------------------------------------------------------
    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor, *,
                class_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Mean margin-softmax loss over the global batch (the same value on every rank).

        ``class_index`` (optional, for tests and diagnostics) replaces the random class sample:
        global class ids to use this step; each rank takes those in its range, which must
        include every positive of the global batch on that rank.
        """
        step = self.step
        device = self.weight.device
        group = self.process_group
        if self.world_size > 1 and world(group) != self.world_size:
            raise RuntimeError(f"this head is rank {self.rank} of {self.world_size} but torch.distributed has "
                               f"world size {world(group)}: initialise the process group first")

        code = self._local_check(embeddings, labels)
        labels = labels.reshape(-1) if code == 0 else labels
        b_local = int(embeddings.shape[0]) if embeddings.dim() >= 1 else 0
        if code == 0:
            lmin = int(labels.min()) if labels.numel() else 0
            lmax = int(labels.max()) if labels.numel() else 0
        else:
            lmin = lmax = 0
        d_local = int(embeddings.shape[-1]) if embeddings.dim() >= 1 else -1
        meta = torch.tensor([code, b_local, d_local, lmin, lmax, labels.numel() if code == 0 else 0],
                            dtype=torch.long, device=device)
        metas = all_gather_rows(meta.unsqueeze(0), [1] * self.world_size, group).tolist()
        self._global_check(metas)
        self.step += 1  # counted only once the batch is known to be valid on every rank
        sizes = [m[1] for m in metas]

        labels = labels.to(device=device, dtype=torch.long)
        all_labels = all_gather_rows(labels, sizes, group)
        cdtype = torch.float64 if self.weight.dtype == torch.float64 else torch.float32
        emb = gather_rows(embeddings.to(cdtype), sizes, self.rank, group, self.embedding_grad_scale)

        local = (all_labels >= self.class_start) & (all_labels < self.class_end)
        target_row = local.nonzero().squeeze(1)
        local_ids = all_labels[target_row] - self.class_start
        if class_index is not None:
            index = self._index_from_override(class_index, local_ids, device)
        elif self.sample_rate >= 1.0:
            index = None
        else:
            with _serial_on_cpu(device):
                positives = torch.unique(local_ids)
                n = num_sampled_classes(self.sample_rate, self.num_local, positives.numel())
                if n >= self.num_local:
                    index = None
                else:
                    gen = class_generator(self.seed, step, self.rank, device)
                    index = sample_class_centres(positives, self.num_local, n, gen)
        target_col = local_ids if index is None else remap_labels(local_ids, index)
        if index is None:
            rows = None
        elif self.subcenters == 1:
            rows = index
        else:
            k = torch.arange(self.subcenters, device=device)
            rows = (index.unsqueeze(1) * self.subcenters + k).reshape(-1)
        feat = feature_subset(self.embed_dim, self.feature_sample_dim, self.seed, step, device)
        self.last_sample = None if index is None else index + self.class_start
        self.last_feature_index = feat

        plan = StepPlan(rows, feat, target_row, target_col, self.subcenters, self.spec, self._workspace, group)
        return MarginSoftmaxCrossEntropy.apply(emb, self.weight, plan)

    def _local_check(self, embeddings: torch.Tensor, labels: torch.Tensor) -> int:
        if embeddings.dim() != 2:
            return _BAD_EMB_SHAPE
        if not embeddings.is_floating_point():
            return _BAD_EMB_DTYPE
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            return _BAD_LABEL_DTYPE
        if not (labels.dim() == 1 or (labels.dim() == 2 and labels.shape[1] == 1)) or \
                labels.shape[0] != embeddings.shape[0]:
            return _BAD_LABEL_SHAPE
        if embeddings.device != self.weight.device:
            return _BAD_DEVICE
        return 0

    def _global_check(self, metas) -> None:
        for r, (code, _batch, d, lmin, lmax, nlab) in enumerate(metas):
            where = f" (on rank {r})" if self.world_size > 1 else ""
            if code:
                raise ValueError(_MESSAGES[code] + where)
            if d != self.embed_dim:
                raise ValueError(f"embedding dimension mismatch{where}: got {d}, "
                                 f"the head has embed_dim={self.embed_dim}")
            if nlab and (lmin < 0 or lmax >= self.num_classes):
                raise ValueError(f"labels must lie in [0, num_classes={self.num_classes}){where}: "
                                 f"got values from {lmin} to {lmax}")
        if sum(m[1] for m in metas) == 0:
            raise ValueError("the global batch is empty")

    def _index_from_override(self, class_index: torch.Tensor, local_ids: torch.Tensor,
                             device: torch.device) -> torch.Tensor:
        ids = torch.as_tensor(class_index, device=device).long().reshape(-1)
        mine = torch.unique(ids[(ids >= self.class_start) & (ids < self.class_end)]) - self.class_start
        missing = ~torch.isin(local_ids, mine)
        if bool(missing.any()):
            raise ValueError("class_index must include every positive class of the batch: missing "
                             f"{sorted(set((local_ids[missing] + self.class_start).tolist()))[:10]}")
        return mine

    # ---- helpers for tests and diagnostics ------------------------------------------------------
    def dense_weight_grad(self) -> Optional[torch.Tensor]:
        """``weight.grad`` as a dense [rows, D] tensor (O(C) memory; for tests and debugging)."""
        g = self.weight.grad
        if g is None:
            return None
        return g.to_dense() if g.is_sparse else g.clone()

    @property
    def expected_sample_size(self) -> int:
        """⌊r·C_local⌋ (the sample size when the batch has fewer positives on this rank)."""
        return num_sampled_classes(self.sample_rate, self.num_local, 0)

    @staticmethod
    def shard_of(num_classes: int, world_size: int, rank: int):
        """The class range [start, end) that ``rank`` holds (no head needed)."""
        return shard_range(num_classes, world_size, rank)
