"""The run's inputs: checked before the first step, and fingerprinted so that ``--resume`` on
changed inputs is refused (docs/training.md, "Failure modes (training)").

A fingerprint is a dict of *entries*, one per input source. Each entry maps an item (a file
name, or a value such as ``num_classes``) to a JSON value describing it (a size, a digest, a
number). ``RUN/inputs.json`` holds the fingerprint of the inputs the run started with.
``fingerprint_changes`` compares two fingerprints item by item, so any data source can add its
own entry (``shard_entry`` and ``label_entry`` are the clustered-shards source's, ``json_label_entry``
the one of labels read from a json field, ``labelled_entry`` a labelled layout's; the sources in
``sources.py`` assemble them).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..data.shards import shard_name
from ..formats import checkpoint as layout
from ..formats.atomic_io import read_npy, write_json

log = logging.getLogger(__name__)

Entry = Dict[str, Any]
FINGERPRINT_VERSION = 1
_DIGEST_CHUNK = 16 << 20


class InputsChangedError(ValueError):
    """``--resume`` found inputs that differ from the run's ``inputs.json``."""


# --------------------------------------------------------------------------------------------
# Label files, checked up front
# --------------------------------------------------------------------------------------------
def label_problem(labels: np.ndarray, num_keys: int, num_classes: int) -> Optional[str]:
    """Why a labels array cannot be used with ``num_keys`` keys and ``num_classes`` classes, or
    None when it can (a 1-D integer array, one label per key, every label < K; negative labels
    mean "no label")."""
    if not np.issubdtype(labels.dtype, np.integer):
        nan = int(np.isnan(labels).sum()) if np.issubdtype(labels.dtype, np.floating) else 0
        return f"holds {labels.dtype} values{f' ({nan} NaN)' if nan else ''}, not integer class ids"
    if labels.ndim != 1 or len(labels) != num_keys:
        return f"holds {labels.shape} labels but its keys file lists {num_keys} keys; they must align"
    if len(labels) and int(labels.max()) >= num_classes:
        return f"holds label {int(labels.max())} but class_sizes.npy gives only {num_classes} classes"
    return None


def count_lines(path: Path) -> int:
    """Lines in a text file (a keys file), read in binary blocks."""
    n = 0
    with open(path, "rb") as f:
        while block := f.read(_DIGEST_CHUNK):
            n += block.count(b"\n")
    return n


def validate_labels(label_index, shards: Sequence[str]) -> None:
    """Check every labels file of ``shards`` against its keys file and K, before any step.
    Raises a one-line ValueError naming the bad files (at most three, and how many in all)."""
    problems = []
    for shard in shards:
        name = shard_name(shard)
        if not label_index.has_shard(name):
            continue
        path = label_index.labels_path(name)
        try:
            labels = read_npy(path, mmap=True)
        except (OSError, ValueError) as exn:
            problems.append(f"{path}: cannot be read ({exn})")
            continue
        why = label_problem(labels, count_lines(label_index.keys_path(name)), label_index.num_classes)
        if why:
            problems.append(f"{path} {why}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValueError(f"{len(problems)} label file(s) cannot be used: {'; '.join(problems[:3])}{more}. "
                         "Re-run `make cluster` for these shards, or point --labels at its OUT/labels")


# --------------------------------------------------------------------------------------------
# Fingerprints
# --------------------------------------------------------------------------------------------
def file_digest(path: Path) -> str:
    """BLAKE2b-128 of a file's bytes (hex)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while block := f.read(_DIGEST_CHUNK):
            h.update(block)
    return h.hexdigest()


def shard_entry(shards: Sequence[str]) -> Entry:
    """The shard list: each shard's name and size in bytes (shards are too big to hash)."""
    return {shard_name(s): os.path.getsize(s) if os.path.exists(s) else None for s in shards}


def label_entry(label_index, shards: Sequence[str]) -> Entry:
    """The labels: a digest of each shard's labels file and of ``class_sizes.npy``, and K."""
    entry: Entry = {"num_classes": label_index.num_classes,
                    "class_sizes.npy": file_digest(label_index.class_sizes_path)}
    for shard in shards:
        name = shard_name(shard)
        if label_index.has_shard(name):
            entry[label_index.labels_path(name).name] = file_digest(label_index.labels_path(name))
    return entry


def clustered_inputs(shards: Sequence[str], label_index) -> Dict[str, Entry]:
    """The fingerprint entries of the clustered-shards source (``--data`` + ``--labels``)."""
    return {"shards": shard_entry(shards), "labels": label_entry(label_index, shards)}


def json_label_entry(labels) -> Entry:
    """Labels read from a json field (``--label-key``): the field, K and a digest of the class
    sizes counted by the scan (they change when any sample's label does)."""
    sizes = np.ascontiguousarray(labels.class_sizes, dtype=np.int64)
    entry: Entry = {"label_key": labels.field, "num_classes": labels.num_classes,
                    "class_sizes": hashlib.blake2b(sizes.tobytes(), digest_size=16).hexdigest()}
    if getattr(labels, "names", None) is not None:  # class names: their order is the mapping to ids
        entry["class_names"] = hashlib.blake2b("\n".join(map(str, labels.names)).encode(), digest_size=16).hexdigest()
    return entry


def labelled_entry(dataset: str, data_root: str, images) -> Entry:
    """A labelled layout's train list (``--dataset``): the dataset, its root, the number of
    images, a digest of the (path, class id) list and, for a CSV, the file's size and digest."""
    h = hashlib.blake2b(digest_size=16)
    for path, label in zip(images.paths, images.labels.tolist()):
        h.update(f"{path}\t{label}\n".encode())
    entry: Entry = {"dataset": dataset, "data_root": str(Path(data_root).expanduser().resolve()),
                    "num_classes": images.num_classes, "images": len(images.paths), "list_digest": h.hexdigest()}
    if dataset == "csv":
        from ..datasets.csv_list import locate

        csv_file = locate(data_root)
        entry.update(csv_size=csv_file.stat().st_size, csv_digest=file_digest(csv_file))
    return entry


INIT_FROM = "init_from"   # the inputs.json entry of the encoder a run started from


def init_from_entry(source: Optional[str]) -> Dict[str, Entry]:
    """``{"init_from": {"source", "weights", "weights_sha256"}}`` for ``model.init_from`` (the
    SHA-256 of its weights file, ``unicom.formats.fingerprint``: an export rewritten at the same
    path is told apart); ``{}`` without one."""
    if not source:
        return {}
    from ..formats.fingerprint import weights_sha256
    from ..pretrained.load import read_dir_record, resolve_source
    from ..pretrained.registry import is_known_name

    entry: Entry = {"source": str(source)}
    if is_known_name(str(source)):
        return {INIT_FROM: entry}  # a released file: checked against its published SHA-256 when fetched
    kind, path = resolve_source(str(source))
    weights = path if kind in ("official", "weights") else read_dir_record(kind, path)[1]
    entry.update(weights=str(Path(weights).resolve()), weights_sha256=weights_sha256(weights))
    return {INIT_FROM: entry}


def fingerprint_changes(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> List[str]:
    """What differs between two fingerprints, one phrase per entry, e.g.
    ``"labels: 00000.npy changed, 1 added (00007.npy)"``."""
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a is None or b is None:
            out.append(f"{name}: {'added' if a is None else 'removed'}")
            continue
        changed = sorted(k for k in set(a) & set(b) if a[k] != b[k])
        added, removed = sorted(set(b) - set(a)), sorted(set(a) - set(b))
        parts = [f"{_names(changed)} changed" if changed else "", f"{len(added)} added ({_names(added)})" if added
                 else "", f"{len(removed)} removed ({_names(removed)})" if removed else ""]
        if any(parts):
            out.append(f"{name}: " + ", ".join(p for p in parts if p))
    return out


def _names(items: List[str]) -> str:
    return ", ".join(items[:3]) + (f" … ({len(items)} in all)" if len(items) > 3 else "")


def write_fingerprint(run_dir: Path, entries: Mapping[str, Entry]) -> None:
    """Write ``RUN/inputs.json``."""
    write_json(Path(run_dir) / layout.INPUTS_FILE, {"version": FINGERPRINT_VERSION, "entries": dict(entries)})


def read_fingerprint(run_dir: Path) -> Optional[Dict[str, Entry]]:
    """The entries of ``RUN/inputs.json``, or None when the run has none (older runs)."""
    path = Path(run_dir) / layout.INPUTS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())["entries"]
    except (ValueError, KeyError, TypeError) as exn:
        raise ValueError(f"{path} is damaged ({exn}); delete it to accept the current inputs") from None


def check_resume_inputs(run_dir: Path, entries: Mapping[str, Entry], allow_changed: bool) -> None:
    """On resume: refuse (InputsChangedError) when the inputs differ from the run's
    ``inputs.json``, unless ``allow_changed``; then record the current inputs. The ``init_from``
    entry (the encoder the run started from) is kept as it was and a change there is only
    logged: the run continues from its own checkpoint."""
    old = read_fingerprint(run_dir)
    entries = dict(entries)
    if old is not None and INIT_FROM in old:
        start = fingerprint_changes({INIT_FROM: old[INIT_FROM]}, {INIT_FROM: entries.get(INIT_FROM, {})})
        if start:
            log.warning("%s started from other weights than model.init_from holds now (%s); the run continues "
                        "from its own checkpoint", run_dir, "; ".join(start))
        entries[INIT_FROM] = old[INIT_FROM]
    elif old is not None:
        entries.pop(INIT_FROM, None)  # a run recorded before init_from was: nothing to compare
    changes = fingerprint_changes(old, entries) if old is not None else []
    if changes and not allow_changed:
        raise InputsChangedError(
            f"--resume: the inputs of {run_dir} changed since the run started ({'; '.join(changes)}). Resuming "
            "would continue on different data (re-clustered or edited labels scramble the classes). Start a new run "
            "with another --output, or pass --allow-changed-inputs to continue with the new inputs")
    if changes:
        log.warning("continuing %s with changed inputs (--allow-changed-inputs): %s", run_dir, "; ".join(changes))
    if old is None or changes:
        write_fingerprint(run_dir, entries)
