"""The pseudo classes of a ``unicom-cluster`` output, as the browser tab shows them.

Read once at start: ``labels/class_sizes.npy``, each shard's labels and keys, the ground truth
its record carries (``features/SHARD.info.json``, ``ground_truth``) and the captions of its
input (a tar shard's ``.txt`` members). Per class: size, the top caption words (most common,
weighted down by how many classes use them, so that template words such as "photo" give way)
and, where ground truth exists, purity = share of members carrying the class's majority truth.
Members are numbered in shard-name order; their images are read from the input recorded for
their shard (the record's ``input.path``, or ``meta.json``'s ``sources``).
"""
from __future__ import annotations

import io
import math
import re
import tarfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..formats import features as ff

WORDS_PER_CLASS = 4
CAPTIONS_PER_CLASS = 64   # captions drawn per class for its top words (seeded)
_STOP = frozenset("a an the of in on at to and or with for from by is are this that its it as".split())


def _words(caption: Optional[str]) -> List[str]:
    return [w for w in re.findall(r"[a-z][a-z0-9]{2,}", (caption or "").lower()) if w not in _STOP]


def top_words(groups: Dict[int, List[Optional[str]]], n: int = WORDS_PER_CLASS) -> Dict[int, List[str]]:
    """For each class, the ``n`` words of its captions with the highest count × log(classes /
    classes using the word) (tf-idf over classes)."""
    counts = {c: Counter(w for cap in caps for w in _words(cap)) for c, caps in groups.items()}
    df: Counter = Counter(w for cnt in counts.values() for w in cnt)
    total = max(1, len(counts))
    out = {}
    for c, cnt in counts.items():
        score = {w: k * math.log((1 + total) / (1 + df[w])) for w, k in cnt.items()}
        ranked = sorted(score.items(), key=lambda t: (-t[1], t[0]))
        out[c] = [w for w, v in ranked[:n] if v > 0 or total == 1]
    return out


class PseudoClasses:
    """A cluster output loaded for browsing (``--clusters OUT``)."""

    def __init__(self, out, progress: bool = False):
        self.out = Path(out)
        ldir, fdir = ff.labels_dir(self.out), ff.features_dir(self.out)
        if not ff.class_sizes_path(ldir).is_file():
            raise FileNotFoundError(f"no pseudo classes in {self.out}: {ff.class_sizes_path(ldir)} is missing "
                                    "(run unicom-cluster --output OUT first)")
        self.sizes = ff.read_class_sizes(ldir).astype(np.int64)
        sources = (ff.read_meta(fdir).get("sources") or {}) if (fdir / ff.META_FILE).is_file() else {}
        self.shards: List[Tuple[str, Optional[str], Optional[str]]] = []   # (name, kind, source)
        keys: List[str] = []
        labels: List[np.ndarray] = []
        truth: List[Optional[str]] = []
        self.has_truth = False
        for name in ff.shard_names(fdir):
            if not ff.label_path(ldir, name).is_file():
                continue
            lab = ff.read_labels(ldir, name).astype(np.int64)
            k = ff.read_shard_keys(fdir, name)
            if len(k) != len(lab):
                raise ValueError(f"{ff.label_path(ldir, name)} has {len(lab)} labels for {len(k)} keys")
            rec = ff.read_record(fdir, name)
            kind, source = self._source(rec, sources.get(name, {}))
            self.shards.append((name, kind, source))
            keys.extend(k)
            labels.append(lab)
            gt = (rec.get("ground_truth") or {}).get("values")
            if gt is not None and len(gt) == len(lab):
                self.has_truth = True
                truth.extend(gt)
            else:
                truth.extend([None] * len(lab))
        self.keys = keys
        self.labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
        self.truth = truth
        self._shard_of = np.repeat(np.arange(len(self.shards)), [len(x) for x in labels]) if labels else \
            np.zeros(0, np.int64)
        order = np.argsort(self.labels, kind="stable")
        bounds = np.searchsorted(self.labels[order], np.arange(len(self.sizes) + 1))
        self._members = {c: order[bounds[c]:bounds[c + 1]] for c in range(len(self.sizes))}
        self._tar_members: Dict[str, Dict[str, tarfile.TarInfo]] = {}
        self._captions: Dict[str, Dict[str, str]] = {}
        self._lock = threading.Lock()
        self.classes = self._summaries()

    @staticmethod
    def _source(record: Dict[str, Any], meta_source: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
        if meta_source.get("source"):
            return meta_source.get("kind"), meta_source["source"]
        path = (record.get("input") or {}).get("path")
        if path and str(path).endswith(".tar"):
            return "tar", str(path)
        return None, None

    def __len__(self) -> int:
        return len(self.labels)

    def _summaries(self) -> List[Dict[str, Any]]:
        rng = np.random.default_rng(0)
        drawn: Dict[int, List[Optional[str]]] = {}
        for c, rows in self._members.items():
            pick = rows if len(rows) <= CAPTIONS_PER_CLASS else rng.choice(rows, CAPTIONS_PER_CLASS, replace=False)
            drawn[c] = [self.caption(int(m)) for m in pick]
        words = top_words({c: caps for c, caps in drawn.items() if caps})
        out = []
        for c in range(len(self.sizes)):
            rows = self._members[c]
            purity, majority = None, None
            with_truth = [self.truth[m] for m in rows if self.truth[m] is not None]
            if with_truth:
                majority, count = Counter(with_truth).most_common(1)[0]
                purity = count / len(with_truth)
            out.append({"id": c, "size": int(self.sizes[c]), "members": int(len(rows)), "words": words.get(c, []),
                        "purity": purity, "truth": majority})
        return out

    def members(self, c: int, offset: int = 0, limit: int = 48) -> List[int]:
        """Member numbers of class ``c`` (KeyError for an unknown class)."""
        return [int(m) for m in self._members[c][offset:offset + limit]]

    def member_count(self, c: int) -> int:
        return int(len(self._members[c]))

    def describe(self, m: int) -> Dict[str, Any]:
        """``{member, key, shard, label, truth, caption, image_url}`` of member ``m``."""
        name = self.shards[int(self._shard_of[m])][0]
        return {"member": int(m), "key": self.keys[m], "shard": name, "label": int(self.labels[m]),
                "truth": self.truth[m], "caption": self.caption(m), "image_url": f"/clusters/members/{int(m)}/image"}

    def caption(self, m: int) -> Optional[str]:
        """Member ``m``'s caption (its tar sample's ``.txt``, or ``NAME.txt`` beside its file)."""
        _, kind, source = self.shards[int(self._shard_of[m])]
        if kind == "files" and source:
            from ..data.images import sidecar_text

            return sidecar_text(Path(source) / self.keys[m])
        if kind != "tar" or not source:
            return None
        with self._lock:
            caps = self._captions.get(source)
            if caps is None:
                from ..embed.clip_retrieval import shard_captions

                try:
                    caps = shard_captions(source)
                except (OSError, ValueError):
                    caps = {}
                self._captions[source] = caps
        return caps.get(self.keys[m])

    def open_image(self, m: int):
        """Member ``m``'s image (PIL, RGB), or None when its input is unknown or gone."""
        from ..data.images import open_image

        _, kind, source = self.shards[int(self._shard_of[m])]
        key = self.keys[m]
        if kind == "files" and source:
            return open_image(Path(source) / key)
        if kind == "tar" and source and Path(source).is_file():
            member = self._tar_index(source).get(key)
            if member is not None:
                with open(source, "rb") as f:
                    f.seek(member.offset_data)
                    return open_image(io.BytesIO(f.read(member.size)))
        return None

    def _tar_index(self, source: str) -> Dict[str, tarfile.TarInfo]:
        with self._lock:
            found = self._tar_members.get(source)
            if found is None:
                from ..data.wds_reader import image_members

                found = image_members(source)
                self._tar_members[source] = found
        return found
