"""A picture of the pseudo classes: a few random classes, a row of member images each, titled
with the most common words of their captions (``class_grid.png`` in the cluster report).

This is what a person checks first: whether a class holds one kind of thing. Classes are drawn
in proportion to their size (a random labelled sample picks its class), and label files are
read shard by shard only until every drawn class has its row, so a LAION-scale run reads a few
label files, not all of them.
"""
from __future__ import annotations

import logging
import math
import re
import tarfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from unicom.formats import features as ff
from unicom.formats.atomic_io import atomic_write

log = logging.getLogger(__name__)

THUMB = 96          # thumbnail side in pixels: 12 × 8 of them keep the PNG at a few hundred KB
_STOPWORDS = frozenset("a an the of in on at to and or with for from by is are this that its it as".split())


def _words(caption: Optional[str]) -> List[str]:
    return [w for w in re.findall(r"[a-z][a-z0-9]{2,}", (caption or "").lower()) if w not in _STOPWORDS]


def top_words(captions: Sequence[Optional[str]], n: int = 3,
              others: Sequence[Sequence[Optional[str]]] = ()) -> List[str]:
    """The ``n`` words (lower case, 3+ letters, no stop words) that best name ``captions``: most
    common among them, down-weighted (tf-idf) by how many of the ``others`` caption groups
    (the other classes drawn) also use them, so that template words shared by every class
    ("photo", "picture") give way to the words that set this class apart."""
    counts = Counter(w for c in captions for w in _words(c))
    groups = [set(w for c in g for w in _words(c)) for g in others]
    score = {w: k * math.log((1 + len(groups)) / (1 + sum(w in g for g in groups))) for w, k in counts.items()}
    return [w for w, v in sorted(score.items(), key=lambda t: (-t[1], t[0]))[:n] if v > 0 or not groups]


def pick_members(out: str, names: Sequence[str], num_classes: int, per_class: int,
                 seed: int = 0) -> Dict[int, List[Tuple[str, str]]]:
    """{class: [(shard name, key), …]} for up to ``num_classes`` classes drawn by size, with up
    to ``per_class`` members each (read from ``OUT/labels``, shard by shard in a seeded order)."""
    rng = np.random.default_rng(seed)
    ldir, fdir = ff.labels_dir(out), ff.features_dir(out)
    order = [names[i] for i in rng.permutation(len(names))]
    chosen: Optional[List[int]] = None
    members: Dict[int, List[Tuple[str, str]]] = defaultdict(list)
    for name in order:
        if not ff.label_path(ldir, name).is_file():
            continue
        labels = ff.read_labels(ldir, name).astype(np.int64)
        if not len(labels):
            continue
        if chosen is None:  # classes of random samples: large classes are drawn more often
            chosen = list(dict.fromkeys(labels[rng.permutation(len(labels))].tolist()))[:num_classes]
        keys = ff.read_shard_keys(fdir, name)
        for i in rng.permutation(len(labels)):
            c = int(labels[i])
            if c in chosen and len(members[c]) < per_class:
                members[c].append((name, keys[i]))
        if all(len(members[c]) >= per_class for c in chosen):
            break
    return {c: members[c] for c in (chosen or []) if members[c]}


def _read_tar(path: str, keys: set) -> Dict[str, Tuple[Optional[bytes], Optional[str]]]:
    """key → (image bytes, caption) for ``keys`` of one shard; a damaged shard gives what it can."""
    from unicom.data.wds_reader import IMAGE_EXTS

    found: Dict[str, list] = defaultdict(lambda: [None, None])
    try:
        with tarfile.open(path) as tf:
            for m in tf:
                base, _, ext = m.name.rpartition(".")
                if not m.isfile() or base not in keys:
                    continue
                if ext.lower() in IMAGE_EXTS and found[base][0] is None:
                    found[base][0] = tf.extractfile(m).read()
                elif ext == "txt":
                    found[base][1] = tf.extractfile(m).read().decode("utf-8", errors="replace").strip()
    except (tarfile.TarError, OSError, EOFError):
        pass
    return {k: (v[0], v[1]) for k, v in found.items()}


def load_members(inputs: Sequence, members: Dict[int, List[Tuple[str, str]]]) -> Dict[int, List[tuple]]:
    """{class: [(PIL thumbnail or None, caption or None), …]} read from the inputs (shard paths,
    or one ``ImageFiles``)."""
    from unicom.data.images import open_image, sidecar_text
    from unicom.data.shards import shard_name
    from unicom.data.wds_reader import decode_image

    want: Dict[str, set] = defaultdict(set)
    for rows in members.values():
        for shard, key in rows:
            want[shard].add(key)
    got: Dict[Tuple[str, str], tuple] = {}
    for item in inputs:
        if hasattr(item, "paths"):  # an image folder or list: the keys are its relative paths
            if item.name in want:
                by_key = dict(zip(item.keys, item.paths))
                for key in want[item.name]:
                    got[(item.name, key)] = (_thumb(open_image, by_key.get(key)), sidecar_text(by_key[key]))
        elif shard_name(item) in want:
            for key, (data, cap) in _read_tar(item, want[shard_name(item)]).items():
                got[(shard_name(item), key)] = (_thumb(decode_image, data), cap)
    return {c: [got.get(r, (None, None)) for r in rows] for c, rows in members.items()}


def _thumb(opener, src):
    if src is None:
        return None
    try:
        im = opener(src)
        im.thumbnail((THUMB, THUMB))
        return im
    except Exception:  # an unreadable image is drawn as a grey tile, not an error
        return None


def draw_class_grid(rows: Dict[int, List[tuple]], sizes: Optional[np.ndarray], path, per_class: int) -> Path:
    """Draw one row per class (its id, size and top caption words as the title) into ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = len(rows)
    fig, axes = plt.subplots(n, per_class, figsize=(1.05 * per_class, 1.25 * n), dpi=90, squeeze=False)
    captions = {c: [cap for _, cap in items] for c, items in rows.items()}
    for r, (c, items) in enumerate(rows.items()):
        words = top_words(captions[c], others=[g for o, g in captions.items() if o != c])
        size = f", {int(sizes[c]):,} samples" if sizes is not None and c < len(sizes) else ""
        title = f"class {c}{size}" + (f": {' '.join(words)}" if words else " (no captions)")
        for j in range(per_class):
            ax = axes[r][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if j < len(items) and items[j][0] is not None:
                ax.imshow(items[j][0])
            elif j < len(items):
                ax.set_facecolor("#dddddd")
        axes[r][0].set_title(title, loc="left", fontsize=8, pad=2)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.97, bottom=0.01, hspace=0.35, wspace=0.04)
    path = Path(path)
    fig.canvas.draw()
    from PIL import Image

    # A 256-colour palette keeps photo thumbnails readable at a third of the RGB PNG's size.
    img = Image.frombuffer("RGBA", fig.canvas.get_width_height(), fig.canvas.buffer_rgba()).convert("RGB")
    plt.close(fig)
    with atomic_write(path, "wb") as f:
        img.quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(f, format="png", optimize=True)
    return path


def render_class_grid(out: str, inputs, path=None, num_classes: int = 12, per_class: int = 8,
                      seed: int = 0) -> Optional[Path]:
    """Write ``OUT/class_grid.png`` (or ``path``) for a finished cluster run in ``out``; the demo
    calls this too. ``inputs`` is what ``--data`` named: a spec string (shards, an image folder
    or a list file) or the resolved inputs. Returns the PNG's path, or None when nothing is
    labelled yet."""
    if isinstance(inputs, (str, Path)):
        from .inputs import resolve_data

        inputs, names = resolve_data(str(inputs))
    else:
        from .extract import input_name

        names = [input_name(i) for i in inputs]
    members = pick_members(out, names, num_classes, per_class, seed)
    if not members:
        log.warning("no labelled samples in %s: no class grid drawn", out)
        return None
    ldir = ff.labels_dir(out)
    sizes = ff.read_class_sizes(ldir) if ff.class_sizes_path(ldir).is_file() else None
    return draw_class_grid(load_members(inputs, members), sizes, path or Path(out) / "class_grid.png", per_class)
