"""Feature shards, ``meta.json``, labels and ``class_sizes.npy`` (``docs/formats.md``, "Features"
and "Centroids and labels"): the one module that names these files and reads and writes them.

A features folder (``OUT/features/``, written by ``unicom-cluster`` and ``unicom-embed``) holds,
per input shard ``SHARD``:

  ``SHARD.npy``        float16 [n, D] (``unicom-embed --feature-dtype float32``: float32), L2-normalised features
  ``SHARD.keys``       n lines, each sample's ``__key__`` (unique), in the same order
  ``SHARD.info.json``  the shard's record: ``n``, ``dim``, ``input`` (the input's path, size in
                       bytes and mtime in ns when it was read), ``samples_read`` (good + skipped
                       records), ``skipped`` {reason: count}, ``skip_examples`` and whatever the
                       writer adds (clustering: ``ground_truth``)

and one ``meta.json`` describing the encoder. The three shard files are written atomically in
that order, the record last, and a rewrite removes the old record first: a shard whose record
exists is complete. Extraction counts a shard as done only when, besides, its input was read to
the end with at least one record (not empty, not truncated, not unreadable) and is unchanged
since (same size and mtime); anything else is extracted again (``extraction_todo``).

Labels (``OUT/labels/``, written by the clustering's assignment, read by the trainer):
``SHARD.npy`` int32 [n] aligned with ``features/SHARD.keys``, and ``class_sizes.npy`` int64 [K].
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from .atomic_io import read_npy, write_json, write_npy, write_text
from .fingerprint import file_sha256, files_digest, short

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

FEATURES_DIR = "features"
META_FILE = "meta.json"
FEATURES_SUFFIX = ".npy"
KEYS_SUFFIX = ".keys"
RECORD_SUFFIX = ".info.json"
LABELS_DIR = "labels"
LABELS_SUFFIX = ".npy"
CLASS_SIZES_FILE = "class_sizes.npy"
# Skip reasons that mean the input was not read to its end: such a shard is extracted again.
READ_ERRORS = ("truncated_tar", "unreadable_shard")


class NonFiniteFeaturesError(ValueError):
    """A feature file holds a NaN or infinite value; the message names the file and the row."""


# --------------------------------------------------------------------------- paths

def features_dir(out: PathLike) -> Path:
    """``OUT/features``: where a run writes its feature shards."""
    return Path(out) / FEATURES_DIR


def resolve_features_dir(path: PathLike) -> Path:
    """``OUT`` or ``OUT/features`` → the folder that holds the shard files."""
    p = Path(path)
    return p / FEATURES_DIR if (p / FEATURES_DIR).is_dir() else p


def shard_paths(fdir: PathLike, name: str) -> Tuple[Path, Path]:
    """(``SHARD.npy``, ``SHARD.keys``) of shard ``name`` in the features folder ``fdir``."""
    d = Path(fdir)
    return d / f"{name}{FEATURES_SUFFIX}", d / f"{name}{KEYS_SUFFIX}"


def record_path(fdir: PathLike, name: str) -> Path:
    """``SHARD.info.json``, the shard's record."""
    return Path(fdir) / f"{name}{RECORD_SUFFIX}"


def labels_dir(out: PathLike) -> Path:
    """``OUT/labels``."""
    return Path(out) / LABELS_DIR


def features_dir_of_labels(labels: PathLike) -> Path:
    """The features folder that a labels folder's files are aligned with (its sibling)."""
    return Path(labels).parent / FEATURES_DIR


def label_path(labels: PathLike, name: str) -> Path:
    """``LABELS/SHARD.npy`` in the labels folder ``labels``."""
    return Path(labels) / f"{name}{LABELS_SUFFIX}"


def class_sizes_path(labels: PathLike) -> Path:
    """``LABELS/class_sizes.npy``."""
    return Path(labels) / CLASS_SIZES_FILE


# --------------------------------------------------------------------------- shard records

def input_stamp(source: Union[PathLike, Sequence[PathLike]]) -> Dict[str, Any]:
    """What a record keeps of a shard's input, taken *before* reading it: ``path`` (absolute),
    ``size`` (bytes) and ``mtime_ns``. For a list of files (an image folder read as one
    pseudo-shard) the sizes are summed and the newest mtime kept, with ``files`` their number
    and ``digest`` the ``fingerprint.files_digest`` of their (relative path, size, mtime) list,
    which catches renames and swaps. A remote input (``pipe:``, URLs) gets its path alone."""
    if isinstance(source, (list, tuple)):
        stats = [_stat(p) for p in source]
        return {"files": len(stats), "size": int(sum(s.st_size for s in stats)),
                "mtime_ns": int(max((s.st_mtime_ns for s in stats), default=0)), "digest": files_digest(source)}
    text = os.fspath(source)  # type: ignore[arg-type]  # a single path here
    if "://" in text or text.startswith("pipe:") or not os.path.isfile(text):
        return {"path": text}
    st = os.stat(text)
    return {"path": os.path.abspath(text), "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def _stat(path: PathLike) -> os.stat_result:
    """``os.stat``, or the link itself for a symlink that leads nowhere (a loop, a dangling link:
    such a file is listed, and skipped when read)."""
    try:
        return os.stat(path)
    except OSError:
        return os.lstat(path)


def read_record(fdir: PathLike, name: str) -> Dict[str, Any]:
    """The shard's record, or ``{}`` when there is none (features of another tool, or a shard
    whose rewrite did not finish)."""
    path = record_path(fdir, name)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}  # a record is written atomically; an unreadable one is treated as absent


def shard_complete(fdir: PathLike, name: str) -> bool:
    """True when the shard's features and keys exist (readable, whoever wrote them)."""
    npy, keys = shard_paths(fdir, name)
    return npy.is_file() and keys.is_file()


def extraction_todo(fdir: PathLike, name: str, stamp: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """Why shard ``name`` must be extracted (again), or None when it is done.

    Done means: its three files exist (the record is written last), its input was read to the
    end with at least one record, and ``stamp`` (``input_stamp`` of the input now; None to skip
    the check) has the recorded size and mtime (and, for a folder, its digest). A shard that was
    truncated when it was read counts as done too when it is unchanged since: same size, mtime
    and SHA-256 (``SHARD.info.json``'s ``input.sha256``); reading it again would give the same
    rows, so its recorded rows are used and that is logged."""
    if not shard_complete(fdir, name):
        return "no features yet"
    rec = read_record(fdir, name)
    if not rec:
        return "its record (SHARD.info.json) is missing"
    # records of toolkit 0.1.0 have no samples_read and no input: trusted on n and their skip counts
    if int(rec.get("samples_read", rec.get("n", 0))) <= 0:
        return "its input was empty when it was read"
    old = rec.get("input") or {}
    if stamp is not None:
        for field in ("size", "mtime_ns", "files"):
            if field in stamp and field in old and old[field] != stamp[field]:
                return f"its input changed since it was read ({field} {old.get(field)} → {stamp[field]})"
        if "digest" in stamp and "digest" in old and old["digest"] != stamp["digest"]:
            return (f"its files were renamed, swapped, added or removed since they were read (digest "
                    f"{short(old['digest'])} → {short(stamp['digest'])})")
    errors = [r for r in READ_ERRORS if rec.get("skipped", {}).get(r)]
    if errors:
        if errors == ["truncated_tar"] and _same_truncated_input(old, stamp):
            log.info("shard %s: truncated when it was read and unchanged since (same size, mtime and SHA-256); "
                     "its %s recorded rows are used (fix or re-download the file to read it whole)", name,
                     rec.get("n", "?"))
            return None
        return f"its input could not be read to the end ({', '.join(errors)})"
    return None


def _same_truncated_input(old: Dict[str, Any], stamp: Optional[Dict[str, Any]]) -> bool:
    """True when the input recorded (with its ``sha256``) is the file ``stamp`` describes now."""
    if stamp is None or "sha256" not in old or "path" not in stamp or "size" not in stamp:
        return False
    if any(old.get(f) != stamp.get(f) for f in ("path", "size", "mtime_ns")):
        return False
    try:
        return file_sha256(stamp["path"]) == old["sha256"]
    except OSError:
        return False


# --------------------------------------------------------------------------- shard files

def check_shard(name: str, features: np.ndarray, keys: Sequence[str]) -> None:
    """Raise ValueError unless ``features`` is [len(keys), D] and the keys are unique and hold no
    line break (a key with one could not be read back from the one-key-per-line file)."""
    if features.ndim != 2 or features.shape[0] != len(keys):
        raise ValueError(f"shard {name}: features of shape {tuple(features.shape)} for {len(keys)} keys")
    bad = [k for k in keys if "\n" in k or "\r" in k]
    if bad:
        raise ValueError(f"shard {name}: key {bad[0]!r} contains a line break")
    if len(set(keys)) != len(keys):
        dup = next(k for k, n in Counter(keys).items() if n > 1)
        raise ValueError(f"shard {name}: key {dup!r} occurs twice (readers skip a second occurrence as "
                         "duplicate_key; this is a bug in the writer)")


FEATURE_DTYPES = ("float16", "float32")


def write_shard(fdir: PathLike, name: str, features: np.ndarray, keys: Sequence[str],
                record: Dict[str, Any], dtype: str = "float16") -> None:
    """Write one shard: features (as ``dtype``: float16, the default, or float32), keys, then
    the record (with ``shard``, ``n`` and ``dim`` added), each atomically. The old record is
    removed first, so a crash mid-way never leaves a complete-looking shard with stale files; the
    shard's label file (``../labels/``), made from the old features, is removed too. The record
    of a shard that was read truncated gets its input's ``sha256`` (while the file still has the
    stamped size and mtime), so that an unchanged truncated shard is read only once
    (``extraction_todo``)."""
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"feature dtype {dtype!r}: choose from {', '.join(FEATURE_DTYPES)}")
    features = np.asarray(features)
    check_shard(name, features, keys)
    record = _with_truncated_digest(record)
    rec_path = record_path(fdir, name)
    if rec_path.exists():
        rec_path.unlink()
    npy, keys_path = shard_paths(fdir, name)
    old_labels = label_path(labels_dir(Path(fdir).parent), name)
    if npy.exists() and old_labels.exists():
        old_labels.unlink()  # labels of the old features: the assignment labels the new ones again
    write_npy(npy, features.astype(dtype, copy=False))
    write_text(keys_path, "".join(k + "\n" for k in keys))
    write_json(rec_path, dict(record, shard=name, n=int(features.shape[0]), dim=int(features.shape[1])))


def _with_truncated_digest(record: Dict[str, Any]) -> Dict[str, Any]:
    inp = record.get("input") or {}
    if not (record.get("skipped") or {}).get("truncated_tar") or "path" not in inp or "size" not in inp:
        return record
    try:
        st = os.stat(inp["path"])
        if (st.st_size, st.st_mtime_ns) != (inp["size"], inp.get("mtime_ns")):
            return record  # changed while it was read: the next run reads it again anyway
        return dict(record, input=dict(inp, sha256=file_sha256(inp["path"])))
    except OSError:
        return record


def remove_shard(fdir: PathLike, name: str) -> None:
    """Delete a shard's files (record first), e.g. to have it extracted again, and the label
    file made from its features (``../labels/SHARD.npy``)."""
    for p in (record_path(fdir, name), *shard_paths(fdir, name), label_path(labels_dir(Path(fdir).parent), name)):
        if p.exists():
            os.remove(p)


def read_keys(path: PathLike) -> List[str]:
    """The keys of a ``.keys`` file, one per line (the exact inverse of the writer)."""
    text = Path(path).read_text(encoding="utf-8")
    return text.split("\n")[:-1] if text else []


def read_shard_keys(fdir: PathLike, name: str) -> List[str]:
    """The keys of shard ``name``, in row order."""
    return read_keys(shard_paths(fdir, name)[1])


def read_features(fdir: PathLike, name: str, mmap: bool = True) -> np.ndarray:
    """Shard ``name``'s features as stored (float16 [n, D]); not checked for finiteness (see
    ``check_finite``), so that a memory-mapped read stays lazy."""
    return read_npy(shard_paths(fdir, name)[0], mmap=mmap)


def check_finite(rows: np.ndarray, path: PathLike, row_ids: Optional[np.ndarray] = None, first_row: int = 0) -> None:
    """Raise ``NonFiniteFeaturesError`` naming ``path`` and the first bad row when ``rows``
    holds a NaN or infinity. Row numbers are ``row_ids[i]`` or ``first_row + i``."""
    finite = np.isfinite(rows).all(axis=1) if rows.ndim == 2 else np.isfinite(rows)
    if finite.all():
        return
    bad = np.flatnonzero(~finite)
    first = int(row_ids[bad[0]]) if row_ids is not None else first_row + int(bad[0])
    raise NonFiniteFeaturesError(
        f"{path} row {first} holds NaN/Inf values ({len(bad)} such row(s) in this block); the file is corrupt. "
        f"Delete the shard's files ({Path(path).stem}.npy/.keys/.info.json) and extract it again")


def read_shard(fdir: PathLike, name: str) -> Tuple[np.ndarray, List[str]]:
    """Shard ``name``'s features (float16 [n, D], checked finite) and keys, checked to align."""
    npy, kfile = shard_paths(fdir, name)
    feats, keys = read_npy(npy), read_keys(kfile)
    if feats.ndim != 2 or len(keys) != feats.shape[0]:
        raise ValueError(f"{npy} has shape {tuple(feats.shape)} but {kfile} has {len(keys)} keys")
    check_finite(feats, npy)
    return feats, keys


def shard_names(fdir: PathLike) -> List[str]:
    """Names of the shards in ``fdir`` whose features and keys exist, sorted."""
    d = Path(fdir)
    if not d.is_dir():
        raise FileNotFoundError(f"features directory not found: {d}")
    return sorted(p.name[:-len(FEATURES_SUFFIX)] for p in d.glob(f"*{FEATURES_SUFFIX}")
                  if shard_complete(d, p.name[:-len(FEATURES_SUFFIX)]))


def iter_shards(fdir: PathLike) -> Iterator[Tuple[str, np.ndarray, List[str]]]:
    """``(name, features, keys)`` of every shard in ``fdir``, in name order."""
    for name in shard_names(fdir):
        feats, keys = read_shard(fdir, name)
        yield name, feats, keys


# --------------------------------------------------------------------------- meta.json

def read_meta(fdir: PathLike) -> Dict[str, Any]:
    """``meta.json`` of the features folder ``fdir``, or ``{}`` when there is none yet."""
    path = Path(fdir) / META_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_meta(fdir: PathLike, meta: Dict[str, Any]) -> None:
    """Write ``meta.json`` atomically."""
    write_json(Path(fdir) / META_FILE, meta)


# --------------------------------------------------------------------------- labels

def write_labels(labels: PathLike, name: str, values: np.ndarray) -> None:
    """Write ``LABELS/SHARD.npy`` (int32 [n]) atomically."""
    write_npy(label_path(labels, name), np.asarray(values).astype(np.int32))


def read_labels(labels: PathLike, name: str) -> np.ndarray:
    """``LABELS/SHARD.npy`` as stored."""
    return read_npy(label_path(labels, name))


def write_class_sizes(labels: PathLike, sizes: np.ndarray) -> None:
    """Write ``LABELS/class_sizes.npy`` (int64 [K]) atomically."""
    write_npy(class_sizes_path(labels), np.asarray(sizes).astype(np.int64))


def read_class_sizes(labels: PathLike) -> np.ndarray:
    """``LABELS/class_sizes.npy`` as int64 [K]."""
    return read_npy(class_sizes_path(labels)).astype(np.int64)
