import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from unicom.formats.atomic_io import atomic_write, read_npy, tmp_path_for, write_json, write_npy


def test_exception_mid_write_leaves_old_file_and_no_tmp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target) as f:
            f.write(b"new partial")
            raise RuntimeError("crash mid-way")
    assert target.read_bytes() == b"old"
    assert not tmp_path_for(target).exists()


def test_killed_process_leaves_no_partial_file(tmp_path):
    """A process killed (SIGKILL) mid-write never leaves a file at the final path."""
    target = tmp_path / "big.npy"
    code = textwrap.dedent(f"""
        import os, signal
        from unicom.formats.atomic_io import atomic_write
        with atomic_write({str(target)!r}) as f:
            f.write(b"x" * 1000)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.getcwd())
    assert proc.returncode != 0
    assert not target.exists()  # only the .tmp may remain, and readers never look at it


def test_json_and_npy_roundtrip(tmp_path):
    write_json(tmp_path / "a" / "m.json", {"x": np.float32(1.5), "arr": np.arange(3)})
    assert (tmp_path / "a" / "m.json").read_text().count("1.5") == 1
    arr = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float16)
    write_npy(tmp_path / "f.npy", arr)
    np.testing.assert_array_equal(read_npy(tmp_path / "f.npy"), arr)
    with pytest.raises(TypeError):
        write_npy(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))


# --------------------------------------------------------------------------- full disks, read-only folders
import errno  # noqa: E402

from unicom.formats import atomic_io  # noqa: E402
from unicom.formats.atomic_io import OutputWriteError, atomic_path, write_bytes  # noqa: E402


class _FullDiskFile:
    """A file on a disk with no space left: like a real buffered file, a write is accepted
    into the buffer and every flush (and so close) fails with ENOSPC."""

    def __init__(self, path, mode):
        self._f = open(path, mode)

    def write(self, data):
        return len(data)

    def fileno(self):
        return self._f.fileno()

    def flush(self):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self._f.close()
        raise OSError(errno.ENOSPC, "No space left on device")


def _leftovers(folder):
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_full_disk_leaves_no_tmp_and_names_the_path(tmp_path, monkeypatch):
    """A failing flush used to fail again in close() on the way out, so the .tmp was never removed."""
    monkeypatch.setattr(atomic_io, "open", _FullDiskFile, raising=False)
    target = tmp_path / "s.json"
    with pytest.raises(OutputWriteError) as info:
        write_json(target, {"step": 3})
    msg = str(info.value)
    assert str(target) in msg and "no space left" in msg and "\n" not in msg
    assert info.value.errno == errno.ENOSPC
    assert _leftovers(tmp_path) == [] and not target.exists()


def test_failing_fsync_leaves_no_tmp(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_io.os, "fsync", no_space)
    target = tmp_path / "optimizer.pt"
    target.write_bytes(b"old")
    with pytest.raises(OutputWriteError, match="optimizer.pt: no space left"):
        write_bytes(target, b"new")
    with pytest.raises(OutputWriteError, match="model.safetensors: no space left"):
        with atomic_path(tmp_path / "model.safetensors") as tmp:
            tmp.write_bytes(b"weights")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_other_errors_keep_their_type(tmp_path, monkeypatch):
    def broken(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic_io.os, "fsync", broken)
    with pytest.raises(OSError) as info:
        write_bytes(tmp_path / "x", b"1")
    assert not isinstance(info.value, OutputWriteError) and _leftovers(tmp_path) == []


def test_real_full_disk_torch_safetensors_numpy(small_tmpfs):
    """A 64 KiB tmpfs: every writer kind (our file objects, torch.save, safetensors' own file
    writer) fails with a one-line error naming its file and leaves nothing behind."""
    import torch
    from safetensors.torch import save_file

    big = np.zeros((200, 200), np.float32)  # 160 kB
    with pytest.raises(OutputWriteError, match="features.npy: no space left"):
        write_npy(small_tmpfs / "features.npy", big)
    with pytest.raises(OutputWriteError, match="optimizer.pt: no space left"):
        with atomic_write(small_tmpfs / "optimizer.pt") as f:
            torch.save({"exp_avg": torch.from_numpy(big)}, f)
    with pytest.raises(OutputWriteError, match="backbone.safetensors: no space left"):
        with atomic_path(small_tmpfs / "backbone.safetensors") as tmp:
            save_file({"w": torch.from_numpy(big)}, str(tmp))
    assert _leftovers(small_tmpfs) == [] and list(small_tmpfs.iterdir()) == []
    write_json(small_tmpfs / "s.json", {"ok": True})  # the disk is usable again: nothing was left on it


def test_read_only_folder_is_a_one_line_error(read_only_dir):
    with pytest.raises(OutputWriteError) as info:
        write_json(read_only_dir / "run" / "report.json", {"a": 1})
    msg = str(info.value)
    assert "\n" not in msg and str(read_only_dir / "run") in msg
    assert ("read-only" in msg) or ("permission denied" in msg)


def test_library_writers_get_the_usual_file_mode(tmp_path):
    """safetensors creates its files 0o600; through atomic_path they get the mode of any other output."""
    import torch
    from safetensors.torch import save_file

    write_json(tmp_path / "config.json", {})
    with atomic_path(tmp_path / "model.safetensors") as tmp:
        save_file({"w": torch.zeros(2)}, str(tmp))
    mode = lambda p: p.stat().st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "model.safetensors") == mode(tmp_path / "config.json") == atomic_io.default_file_mode()
