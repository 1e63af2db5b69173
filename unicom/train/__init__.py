"""``unicom-train``: the Unicom trainer (dual partial selection, DDP over torchrun, exact resume).

Modules: ``config`` (typed YAML presets + overrides), ``data`` (shards joined with pseudo labels,
restorable streaming), ``inputs`` (label checks, input fingerprints), ``model`` (backbone
construction), ``optim`` (parameter groups, the head's sparse optimizer), ``schedule`` (warm-up +
cosine / one-cycle), ``precision`` (autocast, fp16 loss scaling), ``setup`` (building a run),
``resume`` (where a session starts), ``step`` (one optimizer step), ``meter`` (log columns),
``checkpoint`` (saving and restoring step dirs), ``run_log`` (log.csv, tqdm, TensorBoard, plot),
``loop`` (the session and its hooks), ``cli`` (the command).
See docs/training.md.
"""
from .config import Config, load_config

__all__ = ["Config", "load_config", "train"]


def __getattr__(name):
    if name == "train":
        from .loop import train

        return train
    raise AttributeError(f"module 'unicom.train' has no attribute {name!r}")
