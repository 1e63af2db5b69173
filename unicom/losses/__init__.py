"""Unicom's dual partial-selection margin loss (docs/partial_fc.md).

* :class:`PartialFC`: class centres sharded over ranks, Partial FC class-centre sampling, random
  feature-dimension sampling, ArcFace / CosFace / combined margins with sub-centres, and a
  distributed cross-entropy with exact gradients.
* :class:`SparseCentreOptimizer`: SGD / AdamW that update only the sampled centres.
* :func:`save_centre_shard` / :func:`load_centre_shards`: per-rank centre checkpoints that load
  on any world size.
"""
import importlib

_WHERE = {
    "load_centre_shards": "centre_checkpoint", "read_shard_index": "centre_checkpoint",
    "save_centre_shard": "centre_checkpoint", "shard_filename": "centre_checkpoint",
    "MARGIN_KINDS": "margin", "MarginSpec": "margin", "make_margin_spec": "margin", "target_margin": "margin",
    "PartialFC": "partial_fc", "init_centres": "partial_fc",
    "feature_subset": "sampling", "sample_class_centres": "sampling", "shard_range": "sampling",
    "uniform_subset": "sampling", "SparseCentreOptimizer": "sparse_optimizer",
}
__all__ = list(_WHERE)


def __getattr__(name):
    # Lazy (PEP 562): ``unicom.losses.defaults`` is imported by configs without pulling in torch.
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'unicom.losses' has no attribute {name!r}")
