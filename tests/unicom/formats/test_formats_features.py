"""unicom.formats.features: the one owner of feature shards, records, meta.json and labels."""
from __future__ import annotations

import os

import numpy as np
import pytest

from unicom.formats import features as ff


def test_shard_round_trip_and_record_written_last(tmp_path):
    fdir = ff.features_dir(tmp_path)
    x = np.eye(3, 4, dtype=np.float32)
    src = tmp_path / "00000.tar"
    src.write_bytes(b"x" * 10)
    ff.write_shard(fdir, "00000", x, ["a", "b", "c"], {"input": ff.input_stamp(src), "samples_read": 4,
                                                       "skipped": {"bad_image": 1}})
    feats, keys = ff.read_shard(fdir, "00000")
    assert feats.dtype == np.float16 and keys == ["a", "b", "c"] and ff.shard_names(fdir) == ["00000"]
    rec = ff.read_record(fdir, "00000")
    assert rec["n"] == 3 and rec["dim"] == 4 and rec["input"]["size"] == 10 and rec["shard"] == "00000"
    times = [p.stat().st_mtime_ns for p in (*ff.shard_paths(fdir, "00000"), ff.record_path(fdir, "00000"))]
    assert times == sorted(times)
    assert ff.extraction_todo(fdir, "00000", ff.input_stamp(src)) is None
    os.utime(src, ns=(0, 10**9))
    assert "changed since" in ff.extraction_todo(fdir, "00000", ff.input_stamp(src))
    ff.remove_shard(fdir, "00000")
    assert ff.extraction_todo(fdir, "00000") == "no features yet" and list(fdir.iterdir()) == []


@pytest.mark.parametrize("record, why", [
    ({}, "record"), ({"samples_read": 0}, "empty"), ({"skipped": {}}, "empty"),
    ({"samples_read": 5, "skipped": {"truncated_tar": 1}}, "read to the end"),
    ({"samples_read": 5, "skipped": {"unreadable_shard": 1}}, "read to the end"),
])
def test_what_is_not_done(tmp_path, record, why):
    fdir = tmp_path / "features"
    ff.write_shard(fdir, "s", np.zeros((0, 4)), [], record)
    if not record:
        ff.record_path(fdir, "s").unlink()  # features written by another tool
    assert why in ff.extraction_todo(fdir, "s")


def test_a_record_of_toolkit_0_1_is_trusted_on_its_counts(tmp_path):
    fdir = tmp_path / "features"
    ff.write_shard(fdir, "s", np.zeros((2, 4)), ["a", "b"], {"skipped": {"bad_image": 1}})
    assert ff.extraction_todo(fdir, "s", {"path": "/x", "size": 5, "mtime_ns": 1}) is None


def test_a_duplicate_key_is_never_written(tmp_path):
    with pytest.raises(ValueError, match="key 'a' occurs twice"):
        ff.write_shard(tmp_path, "s", np.zeros((2, 4)), ["a", "a"], {})
    assert list(tmp_path.iterdir()) == []


def test_meta_is_an_empty_dict_when_missing(tmp_path):
    assert ff.read_meta(tmp_path) == {}
    ff.write_meta(tmp_path, {"dim": 4})
    assert ff.read_meta(tmp_path) == {"dim": 4}


def test_labels_and_class_sizes(tmp_path):
    labels = ff.labels_dir(tmp_path)
    ff.write_labels(labels, "00000", np.array([0, 2, 1]))
    ff.write_class_sizes(labels, np.array([1, 1, 1]))
    assert ff.read_labels(labels, "00000").dtype == np.int32
    assert ff.read_class_sizes(labels).dtype == np.int64
    assert ff.features_dir_of_labels(labels) == ff.features_dir(tmp_path)


def test_check_finite_names_file_and_row(tmp_path):
    x = np.ones((5, 2), np.float32)
    x[3, 1] = np.inf
    with pytest.raises(ff.NonFiniteFeaturesError, match=r"f\.npy row 13 holds NaN/Inf"):
        ff.check_finite(x, tmp_path / "f.npy", first_row=10)
    with pytest.raises(ff.NonFiniteFeaturesError, match="row 99"):
        ff.check_finite(x, "f.npy", row_ids=np.array([0, 1, 2, 99, 100]))
