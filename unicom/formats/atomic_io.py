"""Atomic file writes: write ``name.tmp``, flush it to disk, then ``os.replace``.

A reader therefore sees either the old file or the complete new one, never a half-written
file that looks whole (``docs/formats.md``, "General rules"). On any failure the temporary
file is removed. A failure the user has to fix (a full disk, a read-only or forbidden folder)
becomes an ``OutputWriteError``: a one-line message naming the path, which every CLI prints
as ``PROG: message``.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import io
import json
import math
import os
import re
from pathlib import Path
from typing import IO, Any, Iterator, Optional, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

# errno → (what happened, what to do); the failures a user fixes by freeing space or choosing
# another folder, as opposed to bugs (which keep their traceback).
_USER_ERRNOS = {
    errno.ENOSPC: ("no space left on the device", "free some space or write to another folder"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write to another folder"),
    errno.EROFS: ("read-only file system", "write to a folder on a writable file system"),
    errno.EACCES: ("permission denied", "write to a folder you may write to"),
    errno.EPERM: ("operation not permitted", "write to a folder you may write to"),
}


_ERRNO_IN_TEXT = re.compile(r"\(os error (\d+)\)|\[Errno (\d+)\]")


class OutputWriteError(OSError):
    """An output could not be written for a reason the user must fix (disk full, read-only
    file system, no permission). ``str()`` is one line naming the path and what to do."""

    def __init__(self, code: int, path: PathLike):
        what, todo = _USER_ERRNOS.get(code, (os.strerror(code), "check the output folder"))
        super().__init__(code, f"cannot write {path}: {what}; {todo}", str(path))

    def __str__(self) -> str:
        return str(self.strerror)


def as_output_error(exn: BaseException, path: PathLike) -> BaseException:
    """``exn`` as an ``OutputWriteError`` naming ``path`` when it is a full-disk, read-only or
    permission error while writing ``path`` (or with no file named); otherwise ``exn``."""
    if isinstance(exn, OutputWriteError) or not isinstance(exn, OSError) or exn.errno not in _USER_ERRNOS:
        return exn
    named = exn.filename
    if named is not None and Path(os.fsdecode(named)).name not in (Path(path).name, tmp_path_for(path).name):
        # an error about some other file (e.g. a parent folder): name that one
        path = os.fsdecode(named)
    return OutputWriteError(exn.errno, path)


def _failure(exn: BaseException, path: Path, tmp: Path) -> BaseException:
    """What to raise for ``exn``, a failure while writing ``tmp`` for ``path`` (called before
    ``tmp`` is removed). Libraries with their own writers hide the ``OSError`` (torch raises a
    ``RuntimeError`` whose context holds it, or none at all): the context chain is searched,
    and a disk with no free block left is reported as full."""
    err = as_output_error(exn, path)
    if err is not exn or isinstance(exn, (OSError, KeyboardInterrupt, SystemExit, GeneratorExit)):
        return err
    cause: Optional[BaseException] = exn
    while cause is not None:
        if isinstance(cause, OSError) and cause.errno in _USER_ERRNOS:
            return OutputWriteError(cause.errno, path)
        cause = cause.__cause__ or cause.__context__
    m = _ERRNO_IN_TEXT.search(str(exn))  # Rust writers (safetensors): "... (os error 28)"
    if m and int(m.group(1) or m.group(2)) in _USER_ERRNOS:
        return OutputWriteError(int(m.group(1) or m.group(2)), path)
    with contextlib.suppress(OSError):
        if os.statvfs(tmp.parent).f_bavail == 0:
            return OutputWriteError(errno.ENOSPC, path)
    return exn


def tmp_path_for(path: PathLike) -> Path:
    """Return the temporary sibling ``<path>.tmp`` that an atomic write of ``path`` uses."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def make_parent(path: PathLike) -> None:
    """Create ``path``'s folder (and its parents); a user-fixable failure becomes an
    ``OutputWriteError`` naming the folder."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exn:
        raise as_output_error(exn, parent) from None


def _discard(tmp: Path, f: Optional[IO] = None) -> None:
    """Close ``f`` (its buffered bytes may fail to flush again) and remove ``tmp``, whatever happens."""
    if f is not None:
        with contextlib.suppress(OSError, ValueError):
            f.close()
    with contextlib.suppress(OSError):
        os.remove(tmp)


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open ``path.tmp`` for writing and move it onto ``path`` only if the block succeeds.

    On any exception (including KeyboardInterrupt) the temporary file is removed and
    ``path`` is left untouched; a full disk, a read-only file system or a permission error
    is raised as an ``OutputWriteError`` naming ``path``. Parent directories are created.
    """
    if "r" in mode or "a" in mode:
        raise ValueError(f"atomic_write needs a write mode ('w' or 'wb'), got {mode!r}")
    path = Path(path)
    make_parent(path)
    tmp = tmp_path_for(path)
    try:
        f = open(tmp, mode)
    except OSError as exn:
        raise as_output_error(exn, path) from None
    try:
        yield f
        f.flush()
        os.fsync(f.fileno())
        f.close()
        os.replace(tmp, path)
    except BaseException as exn:
        err = _failure(exn, path, tmp)
        _discard(tmp, f)
        if err is exn:
            raise
        raise err from None


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """For writers that take a file name (``torch.save``, safetensors' ``save_file``,
    ``faiss.write_index``): yield the temporary path to write; when the block succeeds, flush
    it to disk, give it the mode any new file gets here (``0o666`` less the umask; some
    writers create ``0o600`` files) and move it onto ``path``. Failures behave as in
    ``atomic_write``: the temporary file is removed and user-fixable errors name ``path``."""
    path = Path(path)
    make_parent(path)
    tmp = tmp_path_for(path)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException as exn:
        err = _failure(exn, path, tmp)
        _discard(tmp)
        if err is exn:
            raise
        raise err from None


@functools.lru_cache(maxsize=None)
def default_file_mode() -> int:
    """The permission bits ``open(..., "w")`` gives a new file: ``0o666`` less the umask
    (read once: the only portable way to read the umask is to set it, briefly)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def check_writable(folder: PathLike) -> None:
    """Create ``folder`` if needed and write, then remove, a probe file in it: a read-only,
    forbidden or full output is an ``OutputWriteError`` naming the folder before any work."""
    folder = Path(folder)
    probe = folder / f".write_check.{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
        probe.unlink()
    except OSError as exn:
        with contextlib.suppress(OSError):
            probe.unlink()
        raise as_output_error(exn, folder) from None


def write_bytes(path: PathLike, data: bytes) -> None:
    """Atomically write raw bytes to ``path``."""
    with atomic_write(path, "wb") as f:
        f.write(data)


def write_text(path: PathLike, text: str) -> None:
    """Atomically write a UTF-8 string to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: PathLike, obj: Any, indent: int = 2) -> None:
    """Atomically write ``obj`` as pretty-printed, strict JSON: numpy scalars/arrays are
    converted and non-finite floats become ``null`` (JSON has no NaN/Infinity)."""
    text = json.dumps(json_safe(obj), indent=indent, default=_json_default, allow_nan=False)
    write_text(path, text + "\n")


def json_safe(obj: Any) -> Any:
    """Return ``obj`` with every non-finite float (NaN, ±inf) replaced by None, recursively
    through dicts, lists and tuples; numpy floats are turned into Python floats first."""
    if isinstance(obj, np.floating):
        obj = float(obj)
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def write_npy(path: PathLike, array: np.ndarray) -> None:
    """Atomically write ``array`` in ``.npy`` format (no pickling: object arrays are refused)."""
    array = np.asarray(array)
    if array.dtype == object:
        raise TypeError(f"refusing to write an object array to {path}: .npy files here never hold pickles")
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    write_bytes(path, buf.getvalue())


def read_json_record(path: PathLike, fmt: str, what: str, damaged: str) -> dict:
    """The JSON object in ``path``, checked to be a record of format ``fmt`` (its ``"format"``
    field). Errors name the file: invalid JSON says ``damaged`` (what to do about it), another
    format says it is not ``what``."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except ValueError as exn:
        raise ValueError(f"{path} is not valid JSON ({exn}); {damaged}") from None
    if not isinstance(record, dict) or record.get("format") != fmt:
        found = record.get("format") if isinstance(record, dict) else None
        raise ValueError(f"{path} is not {what} (format={found!r})")
    return record


def read_npy(path: PathLike, mmap: bool = False) -> np.ndarray:
    """Read a ``.npy`` file without ever unpickling (``allow_pickle=False``)."""
    return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")
