"""Write the sample set: a small LAION-style webdataset (img2dataset layout) with ground truth.

Layout under ``out``:
  shards/00000.tar … NNNNN.tar   KEY.jpg, KEY.txt (caption), KEY.json (metadata + concept)
  shards/NNNNN_stats.json        img2dataset-style counts beside each shard
  shards/<last>.tar              the "bad" shard: truncated jpg, no caption, unreadable
                                 image, no image, and a tar cut off mid-member
  heldout/<concept>/<key>.jpg    held-out concepts (never in the shards) for the `sample`
                                 retrieval benchmark, in the image-folder layout
  manifest.json                  seed, concepts, counts and the bad samples' reasons
Everything is a deterministic function of ``seed``.
"""
from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..formats.atomic_io import atomic_write, write_json
from .drawing import COLOURS, SHAPES, TEXTURES, draw_digit, draw_shape

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# Held out from the training shards: whole concepts, like the unseen test classes of CUB/Cars.
HELDOUT_SHAPES = {("star", "green"), ("ring", "red"), ("cross", "blue"), ("triangle", "purple"),
                  ("circle", "orange"), ("square", "yellow"), ("star", "blue"), ("ring", "orange")}
HELDOUT_DIGITS = {7, 8}


@dataclass(frozen=True)
class Concept:
    name: str        # e.g. "red circle" or "digit 3"
    kind: str        # "shape" or "digit"
    shape: str       # shape name, or the digit as a string
    colour: str      # colour of the shape; for digits, picked per image


def all_concepts() -> Tuple[List[Concept], List[Concept]]:
    """Return (training concepts, held-out concepts), in a fixed order."""
    train, held = [], []
    for shape in SHAPES:
        for colour in COLOURS:
            c = Concept(f"{colour} {shape}", "shape", shape, colour)
            (held if (shape, colour) in HELDOUT_SHAPES else train).append(c)
    for d in range(10):
        c = Concept(f"digit {d}", "digit", str(d), "")
        (held if d in HELDOUT_DIGITS else train).append(c)
    return train, held


def _caption(rng: np.random.Generator, c: Concept, colour: str, texture: str) -> str:
    bg = "a plain" if texture == "plain" else f"a {texture}"
    if c.kind == "digit":
        templates = ["a handwritten digit {w} in {col} ink on {bg} background",
                     "the number {w} written by hand in {col}",
                     "{col} handwritten {w}, scanned digit"]
        return rng.choice(templates).format(w=DIGIT_WORDS[int(c.shape)], col=colour, bg=bg)
    templates = ["a {col} {s} on {bg} background", "a picture of a {col} {s}",
                 "{col} {s} shape, simple clip art", "a drawing of one {s} coloured {col}"]
    return rng.choice(templates).format(col=colour, s=c.shape, bg=bg)


def _render(rng: np.random.Generator, c: Concept, size: int, digits: Dict[int, np.ndarray]):
    texture = str(rng.choice(TEXTURES))
    if c.kind == "digit":
        colour = str(rng.choice(list(COLOURS)))
        pool = digits[int(c.shape)]
        img = draw_digit(rng, size, pool[rng.integers(len(pool))], colour, texture)
    else:
        colour = c.colour
        img = draw_shape(rng, size, c.shape, colour, texture)
    return img, colour, texture


def _jpeg(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def _write_shard(path: Path, members: List[Tuple[str, bytes]]) -> None:
    with atomic_write(path) as f:
        with tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members:
                _add(tar, name, data)


def _load_digits() -> Dict[int, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return {k: d.images[d.target == k] for k in range(10)}


def generate_sample_set(out: str, seed: int = 0, per_concept: int = 60, heldout_per_concept: int = 40,
                        shard_size: int = 500, image_size: int = 96) -> dict:
    """Write the sample set under ``out`` and return its manifest.

    Defaults give 36 training concepts × 60 images (2,160 in 5 shards, plus the bad shard)
    and 12 held-out concepts × 40 images. Sizes are in images; ``image_size`` in pixels.
    Deterministic for a given ``seed``.
    """
    rng = np.random.default_rng(seed)
    out_dir = Path(out)
    shard_dir, held_dir = out_dir / "shards", out_dir / "heldout"
    digits = _load_digits()
    train, held = all_concepts()

    order = [(ci, j) for ci in range(len(train)) for j in range(per_concept)]
    rng.shuffle(order)
    samples = []
    for idx, (ci, _) in enumerate(order):
        c = train[ci]
        img, colour, texture = _render(rng, c, image_size, digits)
        key = f"{idx:09d}"
        caption = _caption(rng, c, colour, texture)
        meta = {"key": key, "url": f"sample://{key}.jpg", "caption": caption, "status": "success",
                "error_message": None, "width": image_size, "height": image_size,
                "original_width": image_size, "original_height": image_size,
                "concept": c.name, "concept_id": ci, "source": c.kind, "colour": colour, "texture": texture}
        samples.append((key, _jpeg(img), caption, meta))

    n_shards = 0
    for s in range(0, len(samples), shard_size):
        name = f"{n_shards:05d}"
        members = []
        for key, jpg, cap, meta in samples[s:s + shard_size]:
            members += [(f"{key}.jpg", jpg), (f"{key}.txt", cap.encode()), (f"{key}.json", json.dumps(meta).encode())]
        _write_shard(shard_dir / f"{name}.tar", members)
        n = len(samples[s:s + shard_size])
        write_json(shard_dir / f"{name}_stats.json", {"count": n, "successes": n, "failed_to_download": 0,
                                                        "failed_to_resize": 0, "status_dict": {"success": n}})
        n_shards += 1

    bad_name = f"{n_shards:05d}"
    bad_reasons = _write_bad_shard(shard_dir / f"{bad_name}.tar", rng, train, image_size, digits, len(samples))
    write_json(shard_dir / f"{bad_name}_stats.json", {"count": len(bad_reasons), "note": "deliberately bad samples"})

    held_counts = {}
    for hi, c in enumerate(held):
        folder = held_dir / c.name.replace(" ", "_")
        for j in range(heldout_per_concept):
            img, _, _ = _render(rng, c, image_size, digits)
            with atomic_write(folder / f"h{hi:02d}_{j:04d}.jpg") as f:
                f.write(_jpeg(img))
        held_counts[c.name] = heldout_per_concept

    manifest = {"seed": seed, "image_size": image_size, "num_train_samples": len(samples),
                "num_shards": n_shards + 1, "bad_shard": f"{bad_name}.tar", "bad_samples": bad_reasons,
                "train_concepts": [c.name for c in train], "heldout_concepts": [c.name for c in held],
                "heldout_counts": held_counts}
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def _write_bad_shard(path: Path, rng, train, size, digits, first_index) -> Dict[str, str]:
    """One shard of trouble. Returns {key: reason} for the samples a reader must skip."""
    def good(i):
        c = train[i % len(train)]
        img, colour, texture = _render(rng, c, size, digits)
        key = f"{first_index + i:09d}"
        cap = _caption(rng, c, colour, texture)
        meta = {"key": key, "caption": cap, "concept": c.name, "concept_id": i % len(train), "source": c.kind}
        return key, [(f"{key}.jpg", _jpeg(img)), (f"{key}.txt", cap.encode()),
                     (f"{key}.json", json.dumps(meta).encode())]

    members, reasons = [], {}
    for i in range(4):
        members += good(i)[1]
    k_trunc, m = good(4)
    members += [(n, d[: len(d) // 3] if n.endswith(".jpg") else d) for n, d in m]
    reasons[k_trunc] = "bad_image"
    k_nocap, m = good(5)
    members += [(n, d) for n, d in m if not n.endswith(".txt")]
    reasons[k_nocap] = "missing_caption"
    k_junk, m = good(6)
    members += [(n, rng.bytes(2000) if n.endswith(".jpg") else d) for n, d in m]
    reasons[k_junk] = "bad_image"
    k_noimg, m = good(7)
    members += [(n, d) for n, d in m if not n.endswith(".jpg")]
    reasons[k_noimg] = "missing_image"
    for i in range(8, 10):
        members += good(i)[1]
    k_cut, m = good(10)
    members += m
    reasons[k_cut] = "truncated_tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            _add(tar, name, data)
    raw = buf.getvalue()
    # Cut inside the last sample's image member so the archive ends mid-file, as a download
    # interrupted part-way would leave it.
    cut = raw.rfind(f"{k_cut}.jpg".encode()) + 512 + 300
    with atomic_write(path) as f:
        f.write(raw[:cut])
    return reasons
