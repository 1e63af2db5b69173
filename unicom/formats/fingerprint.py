"""Content fingerprints: what decides "already done" and "same inputs" by content, not by path.

* ``file_sha256(path)``: the SHA-256 of a file's bytes (encoder and CLIP weights, a truncated
  shard). Hashing a 1 GB weights file takes seconds, so the digest is cached by the file's
  (absolute path, size, mtime, inode) in ``$UNICOM_CACHE/fingerprints.json`` (default
  ``~/.cache/unicom``): computed once per file version. A rewrite in place changes the mtime;
  an atomic replace changes the inode; either gives a new digest. The cache file is read and
  written under a ``filelock`` and replaced atomically, so concurrent processes never see a
  half-written cache; where it cannot be written (a read-only home) the digest is computed
  anyway and kept for the process only.
* ``files_digest(paths, root)``: a digest of the sorted (path relative to ``root``, size,
  mtime) list of an image folder or list (a "folder piece"): a rename, a swap, an added or a
  removed file changes it, while moving the whole folder does not.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
CACHE_FILE = "fingerprints.json"
CACHE_ENV = "UNICOM_CACHE"
MAX_ENTRIES = 4096          # the cache keeps the newest entries (one per file path)
_CHUNK = 16 << 20
_LOCK_WAIT_S = 10.0         # a cache held longer than this is skipped, not waited for

_memo: Dict[Tuple[str, int, int, int], str] = {}


def cache_path() -> Path:
    """``$UNICOM_CACHE/fingerprints.json`` or ``~/.cache/unicom/fingerprints.json``."""
    base = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "unicom")
    return Path(base) / CACHE_FILE


def _stat_key(path: str) -> Tuple[str, int, int, int]:
    st = os.stat(path)
    return path, int(st.st_size), int(st.st_mtime_ns), int(st.st_ino)


def _hash_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def _read_cache(path: Path) -> Dict[str, list]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _cached(key: Tuple[str, int, int, int]) -> Optional[str]:
    entry = _read_cache(cache_path()).get(key[0])
    if isinstance(entry, list) and len(entry) == 4 and tuple(entry[:3]) == key[1:]:
        return str(entry[3])
    return None


def _store(key: Tuple[str, int, int, int], digest: str) -> None:
    """Add one entry to the cache file under its lock (read, merge, atomic replace)."""
    from filelock import FileLock, Timeout

    from .atomic_io import write_json

    path = cache_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock", timeout=_LOCK_WAIT_S):
            cache = _read_cache(path)
            cache.pop(key[0], None)
            cache[key[0]] = [key[1], key[2], key[3], digest]   # newest last: trimming keeps it
            if len(cache) > MAX_ENTRIES:
                cache = dict(list(cache.items())[-MAX_ENTRIES:])
            write_json(path, cache, indent=0)
    except (OSError, Timeout) as exn:  # a cache is an optimisation: never a reason to fail
        log.debug("fingerprint cache %s not updated: %s", path, exn)


def file_sha256(path: PathLike) -> str:
    """The SHA-256 (hex) of the file at ``path``, from the cache when its (path, size, mtime,
    inode) are those cached, else computed and cached. Raises ``OSError`` for a missing file."""
    key = _stat_key(os.path.abspath(os.fspath(path)))
    digest = _memo.get(key) or _cached(key)
    if digest is None:
        digest = _hash_file(key[0])
        if _stat_key(key[0]) == key:   # not changed while it was read: safe to remember
            _store(key, digest)
    _memo[key] = digest
    return digest


def weights_sha256(path: Optional[PathLike]) -> Optional[str]:
    """``file_sha256`` of a weights file, or None when ``path`` is not a local file (a released
    name resolved elsewhere, ``none``, an in-memory model)."""
    if path is None:
        return None
    text = os.fspath(path)
    return file_sha256(text) if text and os.path.isfile(text) else None


def files_digest(paths: Sequence[PathLike], root: Optional[PathLike] = None) -> str:
    """SHA-256 (hex) of the sorted ``relative path, size, mtime_ns`` lines of ``paths``, relative
    to ``root`` (default: their common folder). Raises ``OSError`` for a file that is gone."""
    texts = [os.path.abspath(os.fspath(p)) for p in paths]
    if root is None:
        root = os.path.commonpath([os.path.dirname(t) for t in texts]) if texts else ""
    base = os.path.abspath(os.fspath(root)) if root else ""
    lines = []
    for t in texts:
        try:
            st = os.stat(t)
        except OSError:  # a symlink loop or a dangling link: the link itself
            st = os.lstat(t)
        rel = os.path.relpath(t, base).replace(os.sep, "/") if base else t
        lines.append(f"{rel}\t{st.st_size}\t{st.st_mtime_ns}\n")
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def short(digest: Optional[str]) -> str:
    """The first 12 hex digits of a digest, for messages (``none`` when unknown)."""
    return digest[:12] if digest else "none"
