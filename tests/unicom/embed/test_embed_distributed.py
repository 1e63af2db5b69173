"""unicom-embed across processes (2 gloo ranks = 1 process), --feature-dtype, and index flags
refused before any embedding."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import run_ranks
from unicom.embed.cli import main as embed_main
from unicom.formats import features as ff
from unicom.formats.atomic_io import read_npy

_SCRIPT = "import sys\nfrom unicom.embed.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def _args(encoder, data, out, *more):
    return ["--model", str(encoder), "--data", str(data), "--output", str(out), "--workers", "0", "--batch-size", "8",
            "--device", "cpu", "--no-progress", *more]


@pytest.mark.slow  # three embedding runs, two of them 2-process: ~40-80 s on the shared 2-core machine
def test_two_ranks_write_the_same_features_as_one_process(sample_set, encoder, tmp_path):
    root, manifest = sample_set
    data = root / "heldout"
    n = sum(manifest["heldout_counts"].values())
    one, two = tmp_path / "one", tmp_path / "two"
    assert embed_main(_args(encoder, data, one, "--piece-size", "30", "--index-type", "flat")) == 0
    script = tmp_path / "embed.py"
    script.write_text(_SCRIPT)
    outs = run_ranks(script, _args(encoder, data, two, "--piece-size", "30", "--index-type", "flat"), world_size=2)
    assert "index:" in outs[0] and "index:" not in outs[1]  # rank 0 alone indexes, after every rank's pieces
    names = ff.shard_names(one / "features")
    assert names == ff.shard_names(two / "features") == [f"images-{i:05d}" for i in range((n + 29) // 30)]
    for name in names:
        a, ka = ff.read_shard(one / "features", name)
        b, kb = ff.read_shard(two / "features", name)
        assert ka == kb and a.dtype == b.dtype == np.float16
        assert np.allclose(a.astype(np.float32), b.astype(np.float32), atol=2e-3)
    ia = json.loads((one / "index" / "index.json").read_text())
    ib = json.loads((two / "index" / "index.json").read_text())
    assert ia["n"] == ib["n"] == n and ia["shards"] == ib["shards"]
    # a rerun of the 2-rank job finds every piece done
    outs = run_ranks(script, _args(encoder, data, two, "--piece-size", "30", "--index-type", "none"), world_size=2)
    assert f"already done, skipped: {len(names)} shard(s)" in outs[0]


def test_feature_dtype_float32_is_stored_as_float32(sample_set, encoder, tmp_path):
    root, _ = sample_set
    imgs = sorted((root / "heldout").rglob("*.jpg"))[:6]
    (tmp_path / "list.txt").write_text("".join(f"{p}\n" for p in imgs))
    assert embed_main(_args(encoder, tmp_path / "list.txt", tmp_path / "o", "--feature-dtype", "float32",
                            "--index-type", "none")) == 0
    x = read_npy(tmp_path / "o" / "features" / "images.npy")
    assert x.dtype == np.float32 and x.shape == (6, 32)
    assert ff.read_meta(tmp_path / "o" / "features")["feature_dtype"] == "float32"


def test_index_flags_are_refused_before_any_embedding(sample_set, encoder, tmp_path, capsys):
    root, _ = sample_set
    data = root / "heldout"
    cases = [
        (["--index-type", "IVF64,PQ7"], "--index-type 'IVF64,PQ7' is not a faiss index_factory string for 32-d"),
        (["--index-type", "IVF4096,Flat"], "4096 cells need 159,744 training vectors (39 per cell) but the "
                                           "collection holds 100"),
        (["--index-type", "auto", "--max-index-memory", "1KB"], "--max-index-memory 1.0 KB is smaller than the "
                                                                "smallest index for 100 × 32 vectors"),
        (["--max-index-memory", "lots"], "--max-index-memory 'lots' is not a size"),
        (["--target-recall", "1.5"], "--target-recall 1.5: give a recall in (0, 1]"),
    ]
    for i, (flags, msg) in enumerate(cases):
        out = tmp_path / f"o{i}"
        assert embed_main(_args(encoder, data, out, *flags)) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and msg in err, err
        assert not (out / "features").exists()
