"""One job per output folder: an exclusive lock on ``FOLDER/.lock`` naming its holder.

Run folders (``unicom-train``), cluster outputs (``unicom-cluster``) and embed outputs
(``unicom-embed``) are each written by one job at a time. Two jobs in one folder would resume off
each other, interleave ``log.csv`` rows or replace each other's results, so the second is refused
at once with a one-line error that names the holder (host, pid, start time, command).

The lock is ``filelock.FileLock`` (an OS ``flock``), which the kernel releases when its process
dies, however it dies: a lock left by a killed job never blocks the next one. Beside it,
``FOLDER/.lock.json`` records the holder; finding that record from a process that is gone means
the last job was killed, which is reported as a warning when the lock is taken over.

Under torchrun only global rank 0 takes the lock (the other ranks belong to the same job); when
rank 0 is refused it exits and torchrun stops the others.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"


class FolderLockedError(RuntimeError):
    """Another live job holds the folder's lock. The message names the holder."""


def _holder_record(command: str) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()), "command": command}


def _read_holder(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _describe(holder: Optional[dict]) -> str:
    if not holder:
        return "another process (no holder record)"
    return (f"{holder.get('command', '?')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
            f"started {holder.get('started', '?')})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextmanager
def lock_output_dir(folder: Union[str, Path], command: str) -> Iterator[None]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    ``command`` names the job in the refusal another job sees (e.g. ``"unicom-train"``).
    Raises ``FolderLockedError`` at once, without waiting, when a live job holds it. Ranks other
    than global rank 0 take no lock and just run the block.
    """
    if not _is_rank_zero():
        yield
        return
    from filelock import FileLock, Timeout  # imported here: CLIs import this module before --help

    from ..formats.atomic_io import as_output_error, write_text

    folder = Path(folder)
    holder_path = folder / HOLDER_FILE
    lock = FileLock(str(folder / LOCK_FILE))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock.acquire(timeout=0)
    except Timeout:  # (a subclass of OSError: caught first)
        raise FolderLockedError(f"{folder} is in use by {_describe(_read_holder(holder_path))}; wait for it to "
                                f"finish, stop it, or write to another folder") from None
    except OSError as exn:  # a read-only or forbidden folder: a one-line error naming it
        raise as_output_error(exn, folder / LOCK_FILE) from None
    try:
        previous = _read_holder(holder_path)
        if previous and previous.get("pid") != os.getpid():
            same_host = previous.get("host") == socket.gethostname()
            dead = same_host and not _pid_alive(int(previous.get("pid", -1)))
            if dead or not same_host:
                log.warning("taking over the lock of %s: the job %s did not release it (killed?)", folder,
                            _describe(previous))
        write_text(holder_path, json.dumps(_holder_record(command)))
        yield
    finally:
        try:
            if (_read_holder(holder_path) or {}).get("pid") == os.getpid():
                holder_path.unlink()
        except OSError:
            pass
        lock.release()


def run_locked(prog: str, folder: Union[str, Path], fn: Callable[[], Any]) -> int:
    """Run ``fn()`` holding the lock of the output ``folder`` for the whole run; the exit status.

    What a user must fix — the folder in use by another job, a full disk, a read-only folder,
    bad input (``ValueError``, ``FileNotFoundError``) — is printed as one line ``PROG: error: …``
    and gives status 2. ``fn`` returns an exit status, or anything else for 0."""
    from ..formats.atomic_io import OutputWriteError
    from .flags import fail

    try:
        with lock_output_dir(folder, prog):
            code = fn()
    except (FolderLockedError, OutputWriteError, ValueError, FileNotFoundError) as exn:
        return fail(prog, f"error: {exn}")
    return code if isinstance(code, int) else 0
