"""Images → embeddings with an encoder: the one ``embed_images`` that ``unicom-eval``,
``unicom-embed`` and ``unicom-search`` share.

* Batched through a DataLoader (``workers`` processes decode and transform), under autocast for
  ``precision`` (default ``unicom.runtime.precision.DEFAULT_PRECISION``, ``auto``: bf16 on GPUs
  and on CPUs with native bf16, fp32 on other CPUs; see there for why). Outputs are float32.
* An image that is missing or cannot be decoded is skipped and counted, never fatal: its row is
  NaN and ``skipped[row]`` says why (``missing_image``, ``bad_image``, or
  ``non_finite_embedding`` when the model returned NaN/inf for it).
* ``normalize=True`` L2-normalises the rows (unicom-embed's features); evaluation keeps them raw
  and lets the search normalise.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..cli.progress import progress_bar
from ..data.decode import current_policy
from ..data.images import DECODE_ERRORS, open_image, skip_reason  # noqa: F401  (re-exported)
from ..pretrained.load import LoadedEncoder
from ..runtime.device import autocast, module_device
from ..runtime.precision import DEFAULT_PRECISION, announce_precision

Box = Tuple[float, float, float, float]


class NoReadableImagesError(RuntimeError):
    """Not one image of a set could be read."""


class _ImageDataset(Dataset):
    def __init__(self, items: Sequence[Any], boxes: Optional[Sequence[Optional[Box]]], transform):
        self.items, self.boxes, self.transform = list(items), boxes, transform
        self.policy = current_policy()  # the decode policy, carried into the workers

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            img = open_image(self.items[i], None if self.boxes is None else self.boxes[i], policy=self.policy)
            return i, self.transform(img), None
        except DECODE_ERRORS as exc:
            return i, None, skip_reason(exc)


def _collate(batch):
    ok = [(i, x) for i, x, _ in batch if x is not None]
    failed = [(i, r) for i, x, r in batch if x is None]
    if not ok:
        return torch.zeros(0, dtype=torch.long), None, failed
    return torch.tensor([i for i, _ in ok]), torch.stack([x for _, x in ok]), failed


@dataclass
class EmbeddingResult:
    """``embeddings`` [n, D] float32 (NaN rows where skipped), ``skipped`` {row: reason} and the
    wall-clock ``seconds`` it took."""

    embeddings: np.ndarray
    skipped: Dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    def skip_counts(self) -> Dict[str, int]:
        return dict(Counter(self.skipped.values()))

    @property
    def ok(self) -> np.ndarray:
        """Boolean [n]: rows that hold an embedding."""
        mask = np.ones(len(self.embeddings), bool)
        mask[list(self.skipped)] = False
        return mask


def inference_autocast(encoder: Union[LoadedEncoder, nn.Module], precision: str = DEFAULT_PRECISION):
    """The autocast context of ``encoder``'s device for ``precision``. Hold it around a loop of
    ``encode_batch`` calls: autocast caches the low-precision copies of the weights until its
    outermost context ends, so the weights are cast once per loop instead of once per batch
    (on a CPU that cast costs as much as a ViT-B/32 forward at batch 16)."""
    device = encoder.device if isinstance(encoder, LoadedEncoder) else module_device(encoder)
    return autocast(device, announce_precision(precision, device, "encoder"))


@torch.inference_mode()
def encode_batch(encoder: Union[LoadedEncoder, nn.Module], images: torch.Tensor,
                 precision: str = DEFAULT_PRECISION, normalize: bool = True) -> np.ndarray:
    """Embed a batch of transformed images [B, 3, S, S]: float32 [B, D] (L2-normalised unless
    ``normalize=False``). The forward runs under autocast for ``precision`` (resolved on the
    encoder's device; ``auto`` is announced once per process)."""
    if isinstance(encoder, LoadedEncoder):
        device, forward = encoder.device, encoder.embed
    else:
        device, forward = module_device(encoder), encoder
    resolved = announce_precision(precision, device, "encoder")
    with autocast(device, resolved):
        out = forward(images.to(device, non_blocking=True)).float()
    if out.ndim != 2 or out.shape[0] != images.shape[0]:
        raise ValueError(f"the encoder returned shape {tuple(out.shape)} for a batch of {images.shape[0]}; "
                         "expected [B, D]")
    return (F.normalize(out, dim=1) if normalize else out).cpu().numpy()


def embed_images(encoder: LoadedEncoder, images: Sequence[Any], *, boxes: Optional[Sequence[Optional[Box]]] = None,
                 batch_size: int = 128, workers: int = 0, precision: str = DEFAULT_PRECISION,
                 normalize: bool = False, progress: bool = False, desc: str = "embed") -> EmbeddingResult:
    """Embed ``images`` (paths or PIL images), each cropped to ``boxes[i]`` when given, in order.

    Returns an ``EmbeddingResult``: [n, D] float32 with NaN rows for skipped images. Raises
    ``NoReadableImagesError`` when not one image could be read.
    """
    t0 = time.time()
    dev = encoder.device
    loader = DataLoader(_ImageDataset(images, boxes, encoder.transform), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=_collate, pin_memory=dev.type == "cuda")
    out: Optional[np.ndarray] = None
    skipped: Dict[int, str] = {}
    with progress_bar(progress, total=len(images), desc=desc, unit="img") as bar, \
            inference_autocast(encoder, precision):  # weights cast once, not per batch
        for idx, x, failed in loader:
            skipped.update(dict(failed))
            if x is not None:
                y = encode_batch(encoder, x, precision, normalize=False)
                if out is None:
                    out = np.full((len(images), y.shape[1]), np.nan, dtype=np.float32)
                out[idx.numpy()] = y
            bar.update(len(idx) + len(failed))
    if out is None:
        raise NoReadableImagesError(f"none of the {len(images)} images could be read "
                                    f"({dict(Counter(skipped.values()))}); check the paths")
    bad = ~np.isfinite(out).all(axis=1)
    for i in np.flatnonzero(bad):
        skipped.setdefault(int(i), "non_finite_embedding")
    if normalize:
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=np.isfinite(norms) & (norms > 0))
    return EmbeddingResult(out, skipped, time.time() - t0)
