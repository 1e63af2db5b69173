"""The parity check of every export: the exported graph against the PyTorch encoder it came
from, on one fixed batch of images, written to ``parity.json``.

Figures (over the batch of n images, both sides L2-normalised for the cosine):
  max_abs_diff     the largest |exported - reference| over all coordinates (raw outputs)
  min_cosine       the smallest cosine between an image's two embeddings
  mean_cosine      their mean
  top10_agreement  for each image, the share of its 10 nearest neighbours within the batch
                   (itself excluded, by cosine) that both sides agree on; the mean over images
  top10_identical  the share of images whose 10 neighbours are the same set on both sides
The export fails when ``min_cosine`` is below the threshold: 0.9999 for a float32 graph;
0.999 for float16, whose 11-bit mantissa holds about 3 decimal digits per value.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .options import DEFAULT_PARITY_IMAGES

MIN_COSINE = {"float32": 0.9999, "float16": 0.999}
TOP_K = 10


class ParityError(RuntimeError):
    """The exported graph does not reproduce the encoder (one line with the figures)."""


@dataclass
class ParityReport:
    """What ``parity.json`` holds (see the module notes); ``passed`` is min_cosine ≥ threshold."""

    n: int
    images: str
    max_abs_diff: float
    min_cosine: float
    mean_cosine: float
    top10_agreement: float
    top10_identical: float
    k: int
    threshold: float
    passed: bool

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        return (f"min cosine {self.min_cosine:.6f} (threshold {self.threshold}), mean cosine {self.mean_cosine:.6f}, "
                f"max abs diff {self.max_abs_diff:.2e}, top-{self.k} agreement {self.top10_agreement:.4f} "
                f"on {self.n} images ({self.images})")


def sample_images(n: int = DEFAULT_PARITY_IMAGES, size: int = 96, seed: int = 0) -> List[Any]:
    """``n`` PIL images drawn like the sample set (``unicom.sample_data``: coloured shapes on
    textured backgrounds, every shape × colour in turn), the same for a given ``seed``."""
    from ..sample_data.drawing import COLOURS, SHAPES, TEXTURES, draw_shape

    rng = np.random.default_rng(seed)
    kinds = [(s, c) for s in SHAPES for c in COLOURS]
    return [draw_shape(rng, size, kinds[i % len(kinds)][0], kinds[i % len(kinds)][1],
                       str(TEXTURES[int(rng.integers(len(TEXTURES)))])) for i in range(n)]


def parity_images(spec: Optional[str], n: int = DEFAULT_PARITY_IMAGES) -> "tuple[List[Any], str]":
    """The batch of the parity check and its description: the first ``n`` images of ``spec``
    (an image folder or a list file, in ``unicom-embed``'s order) or, without ``spec``,
    ``sample_images(n)``."""
    if spec is None:
        return sample_images(n), f"{n} drawn sample-set images (seed 0)"
    from pathlib import Path

    from ..embed.dataset import list_folder, read_image_list

    p = Path(spec).expanduser()
    if p.is_dir():
        files = list_folder(p)
    elif p.is_file():
        files = read_image_list(p)
    else:
        raise FileNotFoundError(f"--parity-data {spec}: no such image folder or list file")
    paths = [str(x) for x in files.paths[:n]]
    if len(paths) <= TOP_K:
        raise ValueError(f"--parity-data {spec} holds {len(paths)} image(s); the parity check needs more than {TOP_K}")
    return paths, f"the first {len(paths)} images of {p.resolve()}"


def transform_batch(images: Sequence[Any], transform) -> torch.Tensor:
    """Decode (``open_image``) and transform each image: a float32 tensor [n, 3, S, S]."""
    from ..data.images import open_image

    return torch.stack([transform(open_image(im)) for im in images])


@torch.inference_mode()
def run_batches(module: nn.Module, x: torch.Tensor, batch_size: int = 32) -> np.ndarray:
    """``module`` over ``x`` in chunks (batch sizes other than the traced one on purpose):
    float32 [n, D]."""
    return np.concatenate([module(x[i:i + batch_size]).float().cpu().numpy() for i in range(0, len(x), batch_size)])


def neighbours(emb: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest rows of each row by cosine, itself excluded: int [n, k]."""
    e = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def compare(reference: np.ndarray, exported: np.ndarray, threshold: float, images: str = "") -> ParityReport:
    """The parity figures of ``exported`` against ``reference`` (both [n, D], float)."""
    ref, exp = np.asarray(reference, np.float64), np.asarray(exported, np.float64)
    if ref.shape != exp.shape:
        raise ParityError(f"the exported graph returns shape {exp.shape}, the encoder {ref.shape}")
    if not np.isfinite(exp).all():
        raise ParityError("the exported graph returns NaN or inf embeddings; export in float32 (drop --fp16)")
    norm = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    cos = (norm(ref) * norm(exp)).sum(axis=1)
    n = len(ref)
    k = min(TOP_K, n - 1)
    if k >= 1:
        a, b = neighbours(ref, k), neighbours(exp, k)
        shared = np.array([len(set(x) & set(y)) for x, y in zip(a.tolist(), b.tolist())])
        agreement, identical = float(shared.mean() / k), float((shared == k).mean())
    else:
        agreement = identical = float("nan")
    min_cos = float(cos.min())
    return ParityReport(n=n, images=images, max_abs_diff=float(np.abs(ref - exp).max()), min_cosine=min_cos,
                        mean_cosine=float(cos.mean()), top10_agreement=agreement, top10_identical=identical, k=k,
                        threshold=float(threshold), passed=bool(min_cos >= threshold))
