"""unicom-embed's failure modes (docs/failure_modes.md): read-only outputs, a folder in use,
shards changed or fixed since they were embedded, duplicate keys, NaN rows when indexing."""
from __future__ import annotations

import tarfile

import numpy as np
import pytest

from tests.tar_files import write_tar
from unicom.cli.run_lock import lock_output_dir
from unicom.embed import build_index_dir, embed_to_features
from unicom.embed.cli import main as embed_main
from unicom.formats import features as ff


def _members(sample_set, n):
    root, _ = sample_set
    with tarfile.open(root / "shards" / "00000.tar") as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()][:3 * n]


def _args(model, data, out):
    return ["--model", str(model), "--data", str(data), "--output", str(out), "--workers", "0", "--no-progress"]


def test_read_only_output_folder_is_one_line(sample_set, read_only_dir, encoder, capsys):
    root, _ = sample_set
    assert embed_main(_args(encoder, root / "heldout", read_only_dir / "emb")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unicom-embed: error: cannot write ") and "\n" not in err
    assert str(read_only_dir / "emb") in err


def test_a_folder_in_use_is_refused(sample_set, encoder, tmp_path, capsys):
    root, _ = sample_set
    with lock_output_dir(tmp_path / "emb", "unicom-embed"):
        assert embed_main(_args(encoder, root / "heldout", tmp_path / "emb")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"unicom-embed: error: {tmp_path / 'emb'} is in use by unicom-embed")
    assert not (tmp_path / "emb" / "features").exists()


def test_fixed_shard_is_embedded_again_and_duplicates_are_skipped(sample_set, encoder, tmp_path):
    members = _members(sample_set, 10)
    shard = tmp_path / "data" / "00000.tar"
    shard.parent.mkdir()
    write_tar(shard, members + members[3:6])  # sample 1 twice
    full = shard.read_bytes()
    shard.write_bytes(full[: len(full) // 3])  # truncated download
    out = tmp_path / "emb"
    first = embed_to_features(str(encoder), str(shard), out, workers=0, progress=False)
    assert first.written["00000"] < 10
    shard.write_bytes(full)  # fixed
    again = embed_to_features(str(encoder), str(shard), out, workers=0, progress=False)
    assert again.written == {"00000": 10} and again.skips.counts == {"duplicate_key": 1}
    keys = ff.read_shard_keys(ff.features_dir(out), "00000")
    assert len(keys) == len(set(keys)) == 10
    assert embed_to_features(str(encoder), str(shard), out, workers=0, progress=False).skipped_shards == ["00000"]


def test_indexing_names_a_nan_row(tmp_path):
    x = np.eye(5, 8, dtype=np.float32)
    x[3, 2] = np.nan
    ff.write_shard(tmp_path / "features", "a", x, [f"k{i}" for i in range(5)], {})
    with pytest.raises(ff.NonFiniteFeaturesError, match=r"a\.npy row 3 holds NaN/Inf"):
        build_index_dir(tmp_path, tmp_path / "index", "flat")
