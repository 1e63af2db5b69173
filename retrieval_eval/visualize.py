"""The retrieval picture (``--visualize N``): one row per query, the query first (blue frame),
then its top-k results framed green (correct), red (wrong) or grey (ignored, e.g. revisitop
junk). A header names the columns (query, rank 1 … k); under each result its rank, cosine
similarity and verdict are written out, so the picture reads without the colours. Images that
cannot be opened are drawn as a grey tile. The PNG is palette-quantised to stay small (a
8 × 8 grid is well under 400 KB)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from unicom.data.images import DECODE_ERRORS, open_image
from unicom.formats.atomic_io import write_bytes

from .loaders.base import Benchmark
from .scoring import Example

COLOURS = {"query": (31, 119, 180), "pos": (0, 150, 0), "neg": (210, 30, 30), "ignored": (140, 140, 140)}
VERDICT = {"pos": "correct", "neg": "wrong", "ignored": "ignored"}
TILE = 104
FRAME = 5
CAPTION = 32       # two text lines under each tile
HEADER = 24
GAP = 8
FONT_SIZE = 13


def _font(size: int = FONT_SIZE):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(item, box=None, size: int = TILE):
    from PIL import Image, ImageOps

    try:
        img = open_image(item, box)
    except DECODE_ERRORS:
        return Image.new("RGB", (size, size), (200, 200, 200))
    return ImageOps.pad(img, (size, size), color=(255, 255, 255))


def render_grid(bench: Benchmark, examples: Sequence[Example], k: int = 8):
    """Return the picture as a PIL image."""
    from PIL import Image, ImageDraw

    if not examples:
        raise ValueError("no queries to draw")
    k = min(k, max(len(e.neighbours) for e in examples))
    cell = TILE + 2 * FRAME
    width = GAP + (k + 1) * (cell + GAP) + GAP
    row_h = cell + CAPTION + GAP
    height = HEADER + GAP + len(examples) * row_h
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font()
    x_of = [GAP + col * (cell + GAP) + (GAP if col else 0) for col in range(k + 1)]
    draw.text((x_of[0] + 2, 4), "query", fill=(0, 0, 0), font=font)
    for col in range(1, k + 1):
        draw.text((x_of[col] + 2, 4), f"rank {col}", fill=(0, 0, 0), font=font)
    gallery = bench.search_set
    for row, ex in enumerate(examples):
        y = HEADER + GAP + row * row_h
        q_box = None if bench.queries.boxes is None else bench.queries.boxes[ex.query]
        cells = [(bench.queries.items[ex.query], q_box, "query", f"query {ex.query}", "")]
        cells += [(gallery.items[j], None, st, f"#{r + 1}  sim {sc:.3f}", VERDICT[st])
                  for r, (j, sc, st) in enumerate(zip(ex.neighbours[:k], ex.scores[:k], ex.status[:k]))]
        for col, (item, box, status, line1, line2) in enumerate(cells):
            x = x_of[col]
            draw.rectangle([x, y, x + cell - 1, y + cell - 1], fill=COLOURS[status])
            canvas.paste(_tile(item, box), (x + FRAME, y + FRAME))
            draw.text((x + 1, y + cell + 1), line1, fill=(0, 0, 0), font=font)
            if line2:
                draw.text((x + 1, y + cell + 1 + CAPTION // 2), line2, fill=COLOURS[status], font=font)
    return canvas


def save_grid(path, bench: Benchmark, examples: Sequence[Example], k: int = 8) -> Path:
    """Draw the picture and write it as a palette PNG (256 colours), atomically."""
    if not bench.queries.has_images:
        raise ValueError("the benchmark has no images to draw (precomputed embeddings with --labels only)")
    from PIL import Image

    buf = io.BytesIO()
    picture = render_grid(bench, examples, k).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    picture.save(buf, format="PNG", optimize=True)
    write_bytes(path, buf.getvalue())
    return Path(path)
