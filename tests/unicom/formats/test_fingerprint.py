"""Content fingerprints (``unicom.formats.fingerprint``): the weights SHA-256 and its cache, the
folder digest, and the records of ``unicom.formats.features`` that use them."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unicom.formats import features as ff
from unicom.formats import fingerprint as fp


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    """A private fingerprint cache (and no digests remembered from earlier tests)."""
    monkeypatch.setenv(fp.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(fp, "_memo", {})
    return tmp_path / "cache" / fp.CACHE_FILE


def _bump_mtime(path: Path, seconds: int = 5) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + seconds * 10**9))


def test_sha256_is_cached_by_path_size_mtime_and_inode(tmp_path, cache):
    w = tmp_path / "weights.bin"
    w.write_bytes(b"first version" * 1000)
    assert fp.file_sha256(w) == hashlib.sha256(w.read_bytes()).hexdigest()
    st = w.stat()
    entry = json.loads(cache.read_text())[str(w.resolve())]
    assert entry[:3] == [st.st_size, st.st_mtime_ns, st.st_ino]
    # a new process reads the digest from the cache: the same bytes are not hashed again. Shown by
    # keeping (size, mtime, inode) while changing a byte: the cached digest comes back.
    data = bytearray(w.read_bytes())
    data[0] ^= 1
    with open(w, "r+b") as f:
        f.write(bytes(data))
    os.utime(w, ns=(st.st_atime_ns, st.st_mtime_ns))
    code = "import sys; from unicom.formats.fingerprint import file_sha256; print(file_sha256(sys.argv[1]))"
    out = subprocess.run([sys.executable, "-c", code, str(w)], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert out.stdout.strip() == entry[3]
    # any real rewrite moves the mtime (in place) or the inode (atomic replace): a new digest
    _bump_mtime(w)
    assert fp.file_sha256(w) == hashlib.sha256(bytes(data)).hexdigest() != entry[3]
    w2 = tmp_path / "w2.bin"
    w2.write_bytes(b"second version" * 1000)
    os.replace(w2, w)
    assert fp.file_sha256(w) == hashlib.sha256(b"second version" * 1000).hexdigest()


def test_concurrent_processes_share_the_cache_file(tmp_path, cache):
    files = []
    for i in range(4):
        files.append(tmp_path / f"w{i}.bin")
        files[-1].write_bytes(os.urandom(4096))
    code = "import sys; from unicom.formats.fingerprint import file_sha256; file_sha256(sys.argv[1])"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    procs = [subprocess.Popen([sys.executable, "-c", code, str(f)], env=env) for f in files]
    assert [p.wait(timeout=120) for p in procs] == [0] * 4
    entries = json.loads(cache.read_text())  # a whole JSON file: every writer replaced it atomically
    for f in files:
        assert entries[str(f.resolve())][3] == hashlib.sha256(f.read_bytes()).hexdigest()


def test_an_unwritable_cache_still_gives_the_digest(tmp_path, monkeypatch):
    monkeypatch.setattr(fp, "_memo", {})
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    monkeypatch.setenv(fp.CACHE_ENV, str(blocker))  # the cache "folder" is a file: nothing can be written
    w = tmp_path / "w.bin"
    w.write_bytes(b"abc")
    assert fp.file_sha256(w) == hashlib.sha256(b"abc").hexdigest()
    assert fp.weights_sha256("none") is None and fp.weights_sha256(None) is None


def _folder(root: Path) -> list:
    (root / "sub").mkdir(parents=True)
    paths = []
    for name, size in (("a.jpg", 10), ("b.jpg", 20), ("sub/c.jpg", 30)):
        (root / name).write_bytes(bytes(size))
        paths.append(root / name)
    return paths


def test_folder_digest_sees_renames_and_swaps_but_not_a_moved_folder(tmp_path):
    paths = _folder(tmp_path / "photos")
    before = fp.files_digest(paths)
    moved = tmp_path / "elsewhere"
    os.rename(tmp_path / "photos", moved)
    assert fp.files_digest(sorted(moved.rglob("*.jpg"))) == before
    # swap two files (their names now carry the other's size and mtime)
    os.rename(moved / "a.jpg", moved / "tmp")
    os.rename(moved / "b.jpg", moved / "a.jpg")
    os.rename(moved / "tmp", moved / "b.jpg")
    swapped = fp.files_digest(sorted(moved.rglob("*.jpg")))
    assert swapped != before
    os.rename(moved / "sub" / "c.jpg", moved / "sub" / "d.jpg")  # a rename keeps count, size and mtime
    assert fp.files_digest(sorted(moved.rglob("*.jpg"))) not in (before, swapped)


def test_a_folder_piece_with_renamed_files_is_not_done(tmp_path):
    """Count, summed size and newest mtime hold after a rename: the old rule called it done."""
    paths = _folder(tmp_path / "photos")
    fdir = tmp_path / "features"
    stamp = ff.input_stamp(paths)
    ff.write_shard(fdir, "images", np.eye(3, 4), ["a.jpg", "b.jpg", "sub/c.jpg"],
                   {"input": stamp, "samples_read": 3})
    assert ff.extraction_todo(fdir, "images", ff.input_stamp(paths)) is None
    os.rename(paths[2], tmp_path / "photos" / "sub" / "d.jpg")
    now = [paths[0], paths[1], tmp_path / "photos" / "sub" / "d.jpg"]
    new = ff.input_stamp(now)
    assert (new["files"], new["size"], new["mtime_ns"]) == (stamp["files"], stamp["size"], stamp["mtime_ns"])
    assert "renamed, swapped, added or removed" in ff.extraction_todo(fdir, "images", new)


def test_a_truncated_shard_unchanged_since_is_done_and_a_touched_one_is_not(tmp_path, cache, caplog):
    shard = tmp_path / "00000.tar"
    shard.write_bytes(b"x" * 5000)
    fdir = tmp_path / "features"
    ff.write_shard(fdir, "00000", np.eye(2, 4), ["a", "b"],
                   {"input": ff.input_stamp(str(shard)), "samples_read": 3, "skipped": {"truncated_tar": 1}})
    rec = ff.read_record(fdir, "00000")
    assert rec["input"]["sha256"] == hashlib.sha256(shard.read_bytes()).hexdigest()
    with caplog.at_level("INFO", logger="unicom.formats.features"):
        assert ff.extraction_todo(fdir, "00000", ff.input_stamp(str(shard))) is None
    assert "truncated when it was read and unchanged since" in caplog.text and "2 recorded rows" in caplog.text
    _bump_mtime(shard)
    assert "changed since it was read" in ff.extraction_todo(fdir, "00000", ff.input_stamp(str(shard)))
    # a record without the digest (an older toolkit) is read again, as before
    rec["input"].pop("sha256")
    ff.write_shard(fdir, "00000", np.eye(2, 4), ["a", "b"], dict(rec, input={"path": "/gone"}))
    assert "read to the end" in ff.extraction_todo(fdir, "00000", ff.input_stamp(str(shard)))


def test_rewritten_features_drop_the_labels_made_from_the_old_ones(tmp_path):
    out = tmp_path / "out"
    fdir = ff.features_dir(out)
    ff.write_shard(fdir, "s", np.eye(2, 4), ["a", "b"], {"samples_read": 2})
    ff.write_labels(ff.labels_dir(out), "s", np.array([0, 1]))
    ff.write_shard(fdir, "s", np.eye(2, 4)[::-1], ["b", "a"], {"samples_read": 2})
    assert not ff.label_path(ff.labels_dir(out), "s").exists()
