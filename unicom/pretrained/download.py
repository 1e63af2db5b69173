"""Fetch release files into the cache directory, verifying their SHA-256.

A download goes to ``FILE.<pid>.tmp`` beside its target, is hashed while it streams, and is
moved onto ``FILE`` (``os.replace``) only when the sum matches: a crash or a wrong sum never
leaves a file under the final name. A file already in the cache with the right sum is reused;
one with a wrong sum is fetched again.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Optional, Union

from tqdm import tqdm

from .registry import get_spec

CACHE_ENV = "UNICOM_CACHE"
CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded (or cached) file whose SHA-256 differs from the published sum."""


def cache_dir(root: Optional[Union[str, os.PathLike]] = None) -> Path:
    """``root`` if given, else ``$UNICOM_CACHE``, else ``~/.cache/unicom`` (not created here)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(CACHE_ENV, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "unicom"


def sha256_file(path: Union[str, os.PathLike], chunk: int = CHUNK) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Union[str, os.PathLike], sha256: Optional[str] = None, progress: bool = True,
             timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    With ``sha256``, an existing ``dest`` with that sum is reused without any network access,
    and a fresh download with another sum is deleted and raises ``ChecksumError``.
    """
    dest = Path(dest)
    expected = sha256.lower() if sha256 else None
    if dest.exists():
        if not dest.is_file():
            raise RuntimeError(f"{dest} exists and is not a regular file")
        if expected is None:
            return dest
        got = sha256_file(dest)
        if got == expected:
            return dest
        warnings.warn(f"{dest} exists but its SHA-256 ({got}) is not the published {expected}; downloading it again",
                      stacklevel=2)

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        try:
            source = urllib.request.urlopen(url, timeout=timeout)
        except (urllib.error.URLError, OSError) as exn:
            raise ConnectionError(
                f"could not download {url}: {exn}. Without network access, fetch the file elsewhere and put it at "
                f"{dest}" + (f" (SHA-256 {expected})" if expected else "")) from exn
        with source, open(tmp, "wb") as out:
            length = source.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                for block in iter(lambda: source.read(CHUNK), b""):
                    out.write(block)
                    h.update(block)
                    bar.update(len(block))
            out.flush()
            os.fsync(out.fileno())
            if total is not None and out.tell() != total:
                raise ConnectionError(f"download of {url} stopped after {out.tell()} of {total} bytes; try again")
        got = h.hexdigest()
        if expected is not None and got != expected:
            raise ChecksumError(f"SHA-256 mismatch for {url}: expected {expected}, got {got}; "
                                "the download is corrupt or not the published file, so it was discarded")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    return dest


def download_pretrained(name: str, root: Optional[Union[str, os.PathLike]] = None, progress: bool = True) -> Path:
    """Path of the released file of ``name`` in the cache, downloading (and checking) it first
    unless a copy with the right sum is already there."""
    spec = get_spec(name)
    return download(spec.url, cache_dir(root) / spec.filename, sha256=spec.sha256, progress=progress)
