"""Distractors (``unicom-eval --distractors SOURCE``): extra database items that are relevant to
no query, such as revisitop's R1M set, joined to any benchmark's gallery.

SOURCE may be
* the **revisitop1m** folder: ``revisitop1m.txt`` (one image path per line, relative to
  ``jpg/``) and ``jpg/`` (or the ``revisitop1m.txt`` file itself, with ``jpg/`` beside it);
* an image folder (searched recursively), a list file of image paths, or webdataset shards,
  as ``unicom-embed`` reads them;
* precomputed features: a ``unicom-embed`` output folder (``OUT`` or ``OUT/features``, with
  ``meta.json``) or a ``.npy`` array [m, D].

Images are embedded once, with the evaluated encoder, into a cache folder named after a hash of
the encoder's identity, the precision and the source (``$UNICOM_CACHE/distractors/<hash>/``).
The cache is written by ``unicom.embed.embed_to_features`` (atomic shard files; an
interrupted run resumes), under the folder lock, with ``identity.json`` recording what built
it; another encoder, weights file or source gets another folder, so a cache is never reused
across encoders. Unreadable images are skipped and counted.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from unicom.formats.atomic_io import read_npy, write_json, write_text
from unicom.runtime.precision import DEFAULT_PRECISION, resolve_precision

from .knn import l2_normalize

log = logging.getLogger(__name__)

REVISITOP1M_LIST = "revisitop1m.txt"
REVISITOP1M_IMAGES = "jpg"
IDENTITY_FILE = "identity.json"
CACHE_SUBDIR = "distractors"
LOCK_WAIT_S = 1800.0   # how long a run waits for another job building the same cache
LOCK_NOTE_S = 30.0     # a note while waiting, this often
LOCK_POLL_S = 0.5


@dataclass
class Distractors:
    """Distractor embeddings ``features`` [m, D] (float32, L2-normalised) and where they came from."""

    features: np.ndarray
    source: str
    kind: str                          # "revisitop1m", "images" or "features"
    cache: Optional[str] = None        # the cache folder (images only)
    reused_cache: bool = False
    skipped: Dict[str, int] = field(default_factory=dict)
    listed: int = 0

    def describe(self) -> Dict[str, Any]:
        """The JSON record of the report."""
        return {"source": self.source, "kind": self.kind, "count": int(len(self.features)), "listed": self.listed,
                "skipped": self.skipped, "cache": self.cache, "reused_cache": self.reused_cache}


def default_cache_root() -> Path:
    """``$UNICOM_CACHE/distractors`` or ``~/.cache/unicom/distractors``."""
    base = os.environ.get("UNICOM_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "unicom")
    return Path(base) / CACHE_SUBDIR


def revisitop1m_list(spec: str) -> Optional[Tuple[Path, Path]]:
    """(list file, image folder) when ``spec`` is the revisitop1m layout, else None."""
    p = Path(spec).expanduser()
    if p.is_dir() and (p / REVISITOP1M_LIST).is_file():
        return p / REVISITOP1M_LIST, p / REVISITOP1M_IMAGES
    if p.is_file() and p.name == REVISITOP1M_LIST:
        return p, p.parent / REVISITOP1M_IMAGES
    return None


def features_folder(spec: str) -> Optional[Path]:
    """The features folder when ``spec`` is a ``unicom-embed`` output (meta.json + shard files)."""
    from unicom.formats.features import META_FILE, resolve_features_dir

    p = Path(spec).expanduser()
    if not p.is_dir():
        return None
    d = resolve_features_dir(p)
    return d if (d / META_FILE).is_file() else None


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"distractor features must be [m, D], got shape {x.shape}")
    # rows with NaN/inf are dropped; boolean indexing copies, so the copy is normalised in place
    return l2_normalize(x[np.isfinite(x).all(axis=1)], copy=False)


def read_features_folder(fdir: Path) -> Tuple[np.ndarray, Dict[str, Any]]:
    """All shards of a features folder, in shard-name order, as float32 [m, D], and its meta."""
    from unicom.formats.features import iter_shards, read_meta

    parts = [feats for _, feats, _ in iter_shards(fdir)]
    meta = read_meta(fdir)
    dim = int(meta.get("dim") or meta.get("embed_dim") or (parts[0].shape[1] if parts else 0))
    feats = np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, dim), np.float32)
    return feats, meta


def encoder_identity(encoder, precision: str) -> Dict[str, Any]:
    """What makes two encoders give the same features: source, weights file (path, size, mtime),
    architecture record, and the effective precision; an in-memory module is identified by a
    hash of its parameters."""
    ident: Dict[str, Any] = {"kind": encoder.kind, "source": encoder.source, "image_size": encoder.image_size,
                             "embed_dim": encoder.embed_dim, "mean": list(encoder.mean), "std": list(encoder.std),
                             "precision": resolve_precision(precision, encoder.device)}
    w = Path(str(encoder.weights))
    if w.is_file():
        st = w.stat()
        ident["weights"] = {"path": str(w.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    elif encoder.kind == "module" or encoder.kind == "open_clip":
        h = hashlib.sha256()
        for name, t in sorted(encoder.model.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
        ident["parameters_sha256"] = h.hexdigest()
    return ident


def _check_meta(meta: Dict[str, Any], encoder, fdir: Path) -> None:
    """Refuse features another encoder wrote (the record ``unicom-embed`` keeps in meta.json)."""
    if encoder is None:
        return
    from unicom.data.decode import policy_mismatch
    from unicom.embed.embedder import portable_source

    if meta.get("decode") and policy_mismatch(meta["decode"]):
        raise ValueError(f"distractor features in {fdir}: {policy_mismatch(meta['decode'])}; embed the distractors "
                         "with this run's --background, or pass images")
    theirs = {k: meta.get(k) for k in ("model", "image_size", "embed_dim")}
    ours = {"model": portable_source(encoder.source) if encoder.kind != "open_clip" else encoder.source,
            "image_size": encoder.image_size, "embed_dim": encoder.embed_dim}
    for key in ours:
        if theirs[key] is not None and theirs[key] != ours[key]:
            raise ValueError(f"distractor features in {fdir} were made by another encoder ({key}: {theirs[key]!r}, "
                             f"this run: {ours[key]!r}); embed the distractors with this encoder, or pass images")


def _revisitop1m_images(list_file: Path, images: Path, cache: Path) -> Tuple[str, int, int]:
    """Write the list of existing revisitop1m images (absolute paths) into the cache; returns
    (that list file, listed, missing)."""
    names = [x.strip() for x in list_file.read_text(encoding="utf-8").splitlines() if x.strip()]
    paths = [images / n for n in names]
    present = [str(p) for p in paths if p.is_file()]
    if not present:
        raise FileNotFoundError(f"{list_file} lists {len(names)} images but none is under {images} (e.g. "
                                f"{paths[0] if paths else images}); unpack revisitop1m's jpg tars there")
    target = cache / "images.list"
    write_text(target, "".join(p + "\n" for p in present))
    return str(target), len(names), len(names) - len(present)


def load_distractors(spec: str, encoder=None, *, precision: str = DEFAULT_PRECISION, cache_root=None,
                     batch_size: int = 128, workers: int = 0, progress: bool = False,
                     lock_wait_s: float = LOCK_WAIT_S) -> Distractors:
    """Distractor features for ``spec`` (see the module docstring), embedded with ``encoder``
    (a ``LoadedEncoder``) and cached, or read when precomputed. ``encoder=None`` accepts
    precomputed features only. A cache that another job is building is waited for, at most
    ``lock_wait_s`` seconds (with a note every ``LOCK_NOTE_S``), then refused naming
    ``--distractor-cache``."""
    spec = str(spec)
    if spec.endswith(".npy") and Path(spec).is_file():
        feats = _normalize(read_npy(spec))
        return Distractors(feats, spec, "features", listed=len(feats))
    fdir = features_folder(spec)
    if fdir is not None:
        feats, meta = read_features_folder(fdir)
        _check_meta(meta, encoder, fdir)
        return Distractors(_normalize(feats), str(fdir), "features", listed=len(feats))
    if encoder is None:
        raise ValueError(f"--distractors {spec}: images need an encoder (--model or --clip-model); with "
                         "--embeddings pass precomputed distractor features (a unicom-embed folder or a .npy)")
    return _embed_cached(spec, encoder, precision, cache_root, batch_size, workers, progress, lock_wait_s)


def cache_folder(spec: str, encoder, precision: str, cache_root=None) -> Tuple[Path, Dict[str, Any]]:
    """(the cache folder of ``spec`` embedded by ``encoder``, the identity recorded in it): the
    folder is named by a hash of the identity (encoder, precision, source)."""
    source = str(Path(spec).expanduser().resolve()) if "://" not in spec and "{" not in spec else spec
    from unicom.data.decode import current_policy

    # the decode policy changes the pixels of some images (alpha, EXIF, 16-bit): part of the cache key
    identity = {"encoder": encoder_identity(encoder, precision), "source": source, "format": 1,
                "decode": current_policy().record()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_root or default_cache_root()).expanduser() / key, identity


@contextmanager
def _cache_lock(cache: Path, wait_s: float) -> Iterator[None]:
    """Hold the cache folder's lock; while another job holds it (building the same cache),
    wait up to ``wait_s`` seconds with a note now and then, then refuse in one line."""
    from unicom.cli.run_lock import FolderLockedError, lock_output_dir

    start = time.monotonic()
    noted = -LOCK_NOTE_S
    while True:
        stack = ExitStack()
        try:
            stack.enter_context(lock_output_dir(cache, "unicom-eval --distractors"))
            break
        except FolderLockedError as exn:
            waited = time.monotonic() - start
            if waited >= wait_s:
                raise ValueError(f"the distractor cache {cache} is still being built by another job after "
                                 f"{waited:.0f} s of waiting ({exn}); run again once it is done, or give this run its "
                                 "own --distractor-cache FOLDER") from None
            if waited - noted >= LOCK_NOTE_S:
                noted = waited
                log.warning("distractors: waiting for the cache %s (%.0f s so far, at most %.0f s): %s", cache,
                            waited, wait_s, exn)
            time.sleep(min(LOCK_POLL_S, max(0.0, wait_s - waited)))
    with stack:
        yield


def _embed_cached(spec: str, encoder, precision: str, cache_root, batch_size: int, workers: int,
                  progress: bool, lock_wait_s: float = LOCK_WAIT_S) -> Distractors:
    from unicom.embed import embed_to_features

    r1m = revisitop1m_list(spec)
    cache, identity = cache_folder(spec, encoder, precision, cache_root)
    cache.mkdir(parents=True, exist_ok=True)
    with _cache_lock(cache, lock_wait_s):
        id_file = cache / IDENTITY_FILE
        if id_file.is_file() and json.loads(id_file.read_text()) != identity:
            raise ValueError(f"the distractor cache {cache} was built for another encoder or source; delete it")
        fdir = cache / "features"
        reused = fdir.is_dir() and any(fdir.glob("*.keys"))
        listed, missing = 0, 0
        kind = "images"
        if r1m is not None:
            kind = "revisitop1m"
            input_spec, listed, missing = _revisitop1m_images(r1m[0], r1m[1], cache)
            input_type = "list"
        else:
            input_spec, input_type = spec, "auto"
        write_json(id_file, identity)
        log.info("distractors: %s cache %s", "reusing" if reused else "building", cache)
        res = embed_to_features(encoder, input_spec, cache, input_type=input_type, batch_size=batch_size,
                                workers=workers, precision=precision, progress=progress)
        feats, meta = read_features_folder(fdir)
    skipped = {k: int(v) for k, v in (meta.get("skipped") or {}).items() if v}
    if missing:
        skipped["missing_image"] = skipped.get("missing_image", 0) + missing
    listed = listed or len(feats) + sum(skipped.values())
    return Distractors(_normalize(feats), spec, kind, cache=str(cache), reused_cache=reused and not res.written,
                       skipped=skipped, listed=listed)
